#pragma once
/// \file
/// Tree schedules.
///
///  - all_reduce / reduce / broadcast: a pipelined binary tree, the binary heap over
///    virtual ranks v = (r - root) mod P (children 2v + 1 and 2v + 2). The vector is cut into
///    pieces of `chunk_count` elements; piece k climbs one level per step, and in all_reduce
///    it turns around at the root and descends one level per step while later pieces are
///    still climbing. Depth is O(log P) and every rank sends each piece once up and at most
///    twice down, so the tree suits medium messages at large P.
///  - barrier: zero-count tokens up the tree, then down.
///  - gather / scatter: binomial trees over virtual ranks (the subtree of v is the virtual
///    range [v, v + lowbit(v))), so the data of a subtree travels as one contiguous message,
///    or two when the subtree wraps past rank P - 1 in real-rank order. Intermediate ranks
///    stage their subtree's blocks in scratch, in virtual-rank order.
///
/// `pipelined_tree` works for any binary tree shape and any tag; the double binary tree
/// reuses it with two shapes and two tags.
#include <chorus/schedule/layout.hpp>
#include <chorus/schedule/schedule.hpp>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <utility>
#include <vector>

namespace chorus::inline v0::schedule::detail {

enum class tree_mode : std::uint8_t { reduce, broadcast, all_reduce };

/// Appends to `tl` rank r's part of a pipelined reduce, broadcast or all_reduce of the
/// elements [base, base + n) over the tree `tr`, with messages tagged `tag`.
///
/// Timing (global steps; h = height, d = depth, H = height of the root):
///  - up: a node sends piece k to its parent at step k + h; so it receives piece k from a
///    child c at step k + h(c) < k + h, adding it into its accumulator. The first child to
///    arrive (the lower one) is reduced with the node's own input, the second with the
///    accumulator (when both arrive in the same step, in op order).
///  - down: the root sends piece k at step k + T (T = H for all_reduce, where the root has
///    the last contribution of piece k at step k + H - 1; T = 0 for broadcast); a node at
///    depth d receives it at step k + T + d - 1 and forwards it at step k + T + d.
/// Accumulators: all_reduce uses the output (every rank has one; the final value of a piece
/// overwrites its partial sum only after the partial sum went up). reduce uses the root's
/// output and, elsewhere, a ring of W = h - h(first child) + 1 scratch pieces: piece k lives
/// in slot k mod W from its first reduction until it is sent, exactly W steps.
inline void pipelined_tree(timeline& tl, const tree_shape& tr, int r, std::size_t base,
                           std::size_t n, std::size_t chunk, std::uint32_t tag, tree_mode mode) {
  const piece_split ps{n, chunk};
  const std::size_t pieces = ps.count();
  const std::size_t ur = idx(r);
  const bool is_root = r == tr.root;
  const int par = tr.parent[ur];
  const std::size_t h = idx(tr.height[ur]), d = idx(tr.depth[ur]);
  std::vector<int> kids;
  for (int c : tr.kids[ur]) {
    if (c >= 0) kids.push_back(c);
  }
  if (kids.size() == 2 && tr.height[idx(kids[1])] < tr.height[idx(kids[0])]) {
    std::swap(kids[0], kids[1]);
  }
  auto data = [&](buffer b, std::size_t k) { return region{b, base + ps.offset(k), ps.size(k)}; };

  if (mode != tree_mode::broadcast) {
    if (is_root && kids.empty()) {
      // A single rank: the result is its own input.
      tl.copy(0, in(base, n), out(base, n));
    } else {
      const std::size_t window = kids.empty() ? 1 : h - idx(tr.height[idx(kids[0])]) + 1;
      const bool in_scratch = mode == tree_mode::reduce && !is_root && !kids.empty();
      if (in_scratch) tl.need_scratch(std::min(window, pieces) * ps.width());
      auto acc = [&](std::size_t k) {
        return in_scratch ? scr((k % window) * ps.width(), ps.size(k)) : data(buffer::output, k);
      };
      for (std::size_t k = 0; k < pieces; ++k) {
        for (std::size_t i = 0; i < kids.size(); ++i) {
          const int c = kids[i];
          tl.recv_reduce(k + idx(tr.height[idx(c)]), c, tag,
                         i == 0 ? data(buffer::input, k) : acc(k), acc(k));
        }
        if (!is_root) tl.send(k + h, par, tag, kids.empty() ? data(buffer::input, k) : acc(k));
      }
    }
  }

  if (mode != tree_mode::reduce) {
    const std::size_t turn = mode == tree_mode::all_reduce ? idx(tr.height[idx(tr.root)]) : 0;
    if (is_root) {
      if (mode == tree_mode::broadcast) tl.copy(0, in(base, n), out(base, n));
      const buffer from = mode == tree_mode::broadcast ? buffer::input : buffer::output;
      for (std::size_t k = 0; k < pieces; ++k) {
        for (int c : kids) tl.send(turn + k, c, tag, data(from, k));
      }
    } else {
      for (std::size_t k = 0; k < pieces; ++k) {
        tl.recv(turn + k + d - 1, par, tag, data(buffer::output, k));
        for (int c : kids) tl.send(turn + k + d, c, tag, data(buffer::output, k));
      }
    }
  }
}

/// Barrier over a tree: tokens go up (a node reports once all its children reported), then
/// the root's release comes down. A node waits for its release in the same step in which it
/// reports, so the whole barrier is 2 * height message hops.
inline void tree_barrier(timeline& tl, const tree_shape& tr, int r) {
  const std::size_t ur = idx(r);
  for (int c : tr.kids[ur]) {
    if (c >= 0) tl.recv_token(0, c, 0);
  }
  if (r != tr.root) {
    tl.send_token(1, tr.parent[ur], 0);
    tl.recv_token(1, tr.parent[ur], 0);
  }
  for (int c : tr.kids[ur]) {
    if (c >= 0) tl.send_token(2, c, 0);
  }
}

/// Block layout of a rooted binomial gather / scatter: real rank j's block is
/// [off[j], off[j + 1]) in the root's buffer; virtual rank x is real rank (x + root) mod P.
struct binomial_blocks {
  int size;
  int root;
  std::vector<std::size_t> off;

  [[nodiscard]] int real(int x) const noexcept { return (x + root) % size; }
  /// Elements of the virtual ranks [a, a + len).
  [[nodiscard]] std::size_t count(int a, int len) const noexcept {
    const std::size_t start = idx(real(a));
    const std::size_t end = start + idx(len);
    if (end <= idx(size)) return off[end] - off[start];
    return off[idx(size)] - off[start] + off[end - idx(size)];
  }
  /// The virtual ranks [a, a + len) in real-rank layout: one range, or two when they wrap
  /// past rank P - 1 (the second one then starts at offset 0). Counts may be zero.
  [[nodiscard]] std::array<std::pair<std::size_t, std::size_t>, 2> pieces(int a,
                                                                          int len) const noexcept {
    const std::size_t start = idx(real(a));
    const std::size_t end = start + idx(len);
    if (end <= idx(size)) return {{{off[start], off[end] - off[start]}, {0, 0}}};
    return {{{off[start], off[idx(size)] - off[start]}, {0, off[end - idx(size)]}}};
  }
};

/// Binomial gather: in round i, the virtual ranks with lowest set bit 2^i send their whole
/// subtree to v - 2^i, which receives it next to its own data.
inline schedule tree_gather(const params& p) {
  timeline tl;
  const int size = p.size;
  const binomial_blocks bb{size, p.root, prefix_offsets(p.counts)};
  const int v = mod(p.rank - p.root, size);
  const std::size_t own = p.counts[idx(p.rank)];
  const int span = binomial_span(v, size);
  // Children v + 2^i, received in round i; for the root every 2^i < P.
  const int limit = v == 0 ? size : lowbit(v);
  if (v == 0) {
    // The root receives straight into its output at the real offsets; its own block is
    // copied (nothing to do in place, where the input is that block).
    tl.copy(0, in(0, own), out(bb.off[idx(p.root)], own));
    for (int i = 0; (1 << i) < limit && (1 << i) < size; ++i) {
      const int c = 1 << i;
      for (const auto& [o, m] : bb.pieces(c, binomial_span(c, size))) {
        tl.recv(idx(i), bb.real(c), 0, out(o, m));
      }
    }
    return tl.finish();
  }
  const int j = log2_exact(lowbit(v));
  const int parent = bb.real(v - lowbit(v));
  if (span == 1) {
    // A leaf sends its input.
    tl.send(idx(j), parent, 0, in(0, own));
    return tl.finish();
  }
  // An inner rank stages its subtree in scratch in virtual order: its own block first, then
  // each child's subtree as it arrives. It sends the lot up in round j, cut where the
  // subtree wraps in real-rank order so that the root can receive it in place.
  tl.need_scratch(bb.count(v, span));
  tl.copy(0, in(0, own), scr(0, own));
  for (int i = 0; i < j && v + (1 << i) < size; ++i) {
    const int c = v + (1 << i);
    std::size_t at = bb.count(v, c - v);
    for (const auto& piece : bb.pieces(c, binomial_span(c, size))) {
      tl.recv(idx(i), bb.real(c), 0, scr(at, piece.second));
      at += piece.second;
    }
  }
  std::size_t at = 0;
  for (const auto& piece : bb.pieces(v, span)) {
    tl.send(idx(j), parent, 0, scr(at, piece.second));
    at += piece.second;
  }
  return tl.finish();
}

/// Binomial scatter: the mirror of the gather. In round i (of L = ceil(log2 P)), every
/// virtual rank that holds a subtree of span 2^(L-i) sends its upper half to v + 2^(L-1-i).
inline schedule tree_scatter(const params& p) {
  timeline tl;
  const int size = p.size;
  const binomial_blocks bb{size, p.root, prefix_offsets(p.counts)};
  const int v = mod(p.rank - p.root, size);
  const std::size_t own = p.counts[idx(p.rank)];
  const int levels = ceil_log2(size);
  auto round = [&](int i) { return idx(levels - 1 - i); };  // round of the edge v -> v + 2^i
  if (v == 0) {
    // The root sends every child its subtree straight from the input (largest first) and
    // copies its own block (nothing to do in place, where the output is that block).
    tl.copy(0, in(bb.off[idx(p.root)], own), out(0, own));
    for (int i = levels - 1; i >= 0; --i) {
      const int c = 1 << i;
      for (const auto& [o, m] : bb.pieces(c, binomial_span(c, size))) {
        tl.send(round(i), bb.real(c), 0, in(o, m));
      }
    }
    return tl.finish();
  }
  const int j = log2_exact(lowbit(v));
  const int parent = bb.real(v - lowbit(v));
  const int span = binomial_span(v, size);
  if (span == 1) {
    tl.recv(round(j), parent, 0, out(0, own));
    return tl.finish();
  }
  // An inner rank receives its subtree into scratch (virtual order), keeps its own block
  // (copied out one step later, while it serves its first child), and hands each child its
  // part.
  tl.need_scratch(bb.count(v, span));
  std::size_t at = 0;
  for (const auto& piece : bb.pieces(v, span)) {
    tl.recv(round(j), parent, 0, scr(at, piece.second));
    at += piece.second;
  }
  tl.copy(round(j) + 1, scr(0, own), out(0, own));
  for (int i = j - 1; i >= 0; --i) {
    const int c = v + (1 << i);
    if (c >= size) continue;
    std::size_t pos = bb.count(v, c - v);
    for (const auto& piece : bb.pieces(c, binomial_span(c, size))) {
      tl.send(round(i), bb.real(c), 0, scr(pos, piece.second));
      pos += piece.second;
    }
  }
  return tl.finish();
}

/// The tree generator for every collective `supports(algorithm::tree, ...)` allows.
inline schedule build_tree(const params& p) {
  timeline tl;
  switch (p.kind) {
    case collective::all_reduce:
      pipelined_tree(tl, heap_tree(p.size, p.root), p.rank, 0, p.count, p.chunk_count, 0,
                     tree_mode::all_reduce);
      return tl.finish();
    case collective::reduce:
      pipelined_tree(tl, heap_tree(p.size, p.root), p.rank, 0, p.count, p.chunk_count, 0,
                     tree_mode::reduce);
      return tl.finish();
    case collective::broadcast:
      pipelined_tree(tl, heap_tree(p.size, p.root), p.rank, 0, p.count, p.chunk_count, 0,
                     tree_mode::broadcast);
      return tl.finish();
    case collective::barrier:
      tree_barrier(tl, heap_tree(p.size, 0), p.rank);
      return tl.finish();
    case collective::gather:
      return tree_gather(p);
    case collective::scatter:
      return tree_scatter(p);
    default:
      break;
  }
  throw std::invalid_argument("the tree algorithm does not implement this collective");
}

}  // namespace chorus::inline v0::schedule::detail

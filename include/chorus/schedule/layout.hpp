#pragma once
/// \file
/// Shared helpers of the schedule generators: block and piece arithmetic, the step timeline
/// every generator writes into, the fold that maps any rank count onto a power of two, and
/// the tree shapes (binary heap, in-order, binomial).
///
/// Generators build a `detail::timeline`: a list of global steps, where step t of every
/// rank happens "at the same time". The data generators place the send and the receive of
/// every message at the same global step; with that rule a schedule cannot deadlock, even
/// over a transport whose sends wait for the matching receive (the rank with the smallest
/// current step always finds all its peers posted). The barriers, whose tokens must be
/// chained, do not follow the rule; the simulator proves them deadlock-free. Flattening the
/// timeline into a `schedule` drops the steps where a rank has nothing to do, which changes
/// nothing since matching is by (source, destination, tag) in FIFO order.
#include <chorus/core/split.hpp>
#include <chorus/schedule/schedule.hpp>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace chorus::inline v0::schedule::detail {

/// `int` to `std::size_t` for ranks and rank counts (always non-negative here).
inline constexpr std::size_t idx(int v) noexcept { return static_cast<std::size_t>(v); }

/// `a mod p` in [0, p) for any sign of `a`.
inline constexpr int mod(int a, int p) noexcept { return ((a % p) + p) % p; }

/// The largest power of two that is <= p (p >= 1).
inline constexpr int floor_pow2(int p) noexcept {
  int q = 1;
  while (q <= p / 2) q *= 2;
  return q;
}

/// log2 of a power of two.
inline constexpr int log2_exact(int q) noexcept {
  int l = 0;
  while ((1 << l) < q) ++l;
  return l;
}

/// The smallest l with 2^l >= p (p >= 1).
inline constexpr int ceil_log2(int p) noexcept {
  int l = 0;
  while ((1 << l) < p) ++l;
  return l;
}

/// The lowest set bit of v > 0.
inline constexpr int lowbit(int v) noexcept { return v & -v; }

inline constexpr region in(std::size_t offset, std::size_t count) noexcept {
  return {buffer::input, offset, count};
}
inline constexpr region out(std::size_t offset, std::size_t count) noexcept {
  return {buffer::output, offset, count};
}
inline constexpr region scr(std::size_t offset, std::size_t count) noexcept {
  return {buffer::scratch, offset, count};
}

using chorus::detail::even_split;
using chorus::detail::prefix_offsets;

/// `n` elements cut into pipeline pieces of at most `chunk` elements (chunk 0: one piece).
/// An empty range has no piece at all.
struct piece_split {
  std::size_t n = 0;
  std::size_t chunk = 0;
  /// The size of every piece but possibly the last.
  [[nodiscard]] constexpr std::size_t width() const noexcept {
    return chunk == 0 || chunk > n ? n : chunk;
  }
  [[nodiscard]] constexpr std::size_t count() const noexcept {
    return n == 0 ? 0 : (n + width() - 1) / width();
  }
  [[nodiscard]] constexpr std::size_t offset(std::size_t k) const noexcept { return k * width(); }
  [[nodiscard]] constexpr std::size_t size(std::size_t k) const noexcept {
    return std::min(width(), n - offset(k));
  }
};

/// A schedule under construction, step by global step. `send`, `recv`, `recv_reduce` and
/// `copy` skip empty data transfers: both sides of a message compute its size from the same
/// parameters, so they skip it together. Barrier tokens use `send_token` / `recv_token`.
class timeline {
 public:
  void send(std::size_t t, int peer, std::uint32_t tag, region src) {
    if (src.count != 0) add(t, {op_code::send, peer, tag, src, {}});
  }
  void recv(std::size_t t, int peer, std::uint32_t tag, region dst) {
    if (dst.count != 0) add(t, {op_code::recv, peer, tag, {}, dst});
  }
  /// dst = op(src, received); src and dst have the same count.
  void recv_reduce(std::size_t t, int peer, std::uint32_t tag, region src, region dst) {
    if (dst.count != 0) add(t, {op_code::recv_reduce, peer, tag, src, dst});
  }
  void copy(std::size_t t, region src, region dst) {
    if (dst.count != 0) add(t, {op_code::copy, -1, 0, src, dst});
  }
  void send_token(std::size_t t, int peer, std::uint32_t tag) {
    add(t, {op_code::send, peer, tag, out(0, 0), {}});
  }
  void recv_token(std::size_t t, int peer, std::uint32_t tag) {
    add(t, {op_code::recv, peer, tag, {}, out(0, 0)});
  }
  /// Asks for at least `n` elements of scratch.
  void need_scratch(std::size_t n) noexcept { scratch_ = std::max(scratch_, n); }

  /// The flat schedule: ops sorted by step, in the order they were added within a step;
  /// global steps where this rank has nothing to do disappear.
  [[nodiscard]] schedule finish() {
    std::stable_sort(ops_.begin(), ops_.end(),
                     [](const timed& x, const timed& y) { return x.t < y.t; });
    schedule s;
    s.ops.reserve(ops_.size());
    for (std::size_t i = 0; i < ops_.size(); ++i) {
      if (i > 0 && ops_[i].t != ops_[i - 1].t) s.end_step();
      s.add(ops_[i].o);
    }
    s.end_step();
    s.scratch_count = scratch_;
    return s;
  }

 private:
  struct timed {
    std::size_t t;
    op o;
  };
  void add(std::size_t t, const op& o) { ops_.push_back({t, o}); }
  std::vector<timed> ops_;
  std::size_t scratch_ = 0;
};

/// Maps any rank count p onto q = 2^floor(log2 p) "virtual" ranks. Of the first 2 * extra
/// positions (extra = p - q), each even position 2i absorbs its odd neighbour 2i + 1 and
/// stands for both as virtual rank i; the odd one is "passive": it hands its data over at
/// the start and gets its result back at the end. Positions >= 2 * extra are virtual rank
/// position - extra on their own. Virtual rank u stands for positions [lo(u), hi(u)), so
/// the positions of consecutive virtual ranks stay contiguous and in order.
struct fold {
  int p = 1;
  int q = 1;
  int extra = 0;
  explicit fold(int size) noexcept : p(size), q(floor_pow2(size)), extra(size - q) {}
  /// log2 of the virtual rank count: rounds of halving or doubling.
  [[nodiscard]] int rounds() const noexcept { return log2_exact(q); }
  /// The position is the odd half of a merged pair.
  [[nodiscard]] bool passive(int w) const noexcept { return w < 2 * extra && w % 2 == 1; }
  /// The position is the even half of a merged pair (it receives its partner's data).
  [[nodiscard]] bool merged(int w) const noexcept { return w < 2 * extra && w % 2 == 0; }
  /// The virtual rank of an active position.
  [[nodiscard]] int virt(int w) const noexcept { return w < 2 * extra ? w / 2 : w - extra; }
  /// The active position of virtual rank u.
  [[nodiscard]] int active(int u) const noexcept { return u < extra ? 2 * u : u + extra; }
  [[nodiscard]] int lo(int u) const noexcept { return active(u); }
  [[nodiscard]] int hi(int u) const noexcept { return u < extra ? 2 * u + 2 : u + extra + 1; }
  /// Steps the fold-in takes at the start (0 or 1).
  [[nodiscard]] std::size_t lead() const noexcept { return extra > 0 ? 1 : 0; }
};

/// A rooted tree over real ranks with at most two children per node.
struct tree_shape {
  int root = 0;
  std::vector<int> parent;               ///< -1 for the root
  std::vector<std::array<int, 2>> kids;  ///< -1 where absent; kids[0] before kids[1]
  std::vector<int> height;               ///< 0 for leaves
  std::vector<int> depth;                ///< 0 for the root

  explicit tree_shape(int size)
      : parent(idx(size), -1),
        kids(idx(size), {-1, -1}),
        height(idx(size), 0),
        depth(idx(size), 0) {}

  void link(int child, int par) {
    parent[idx(child)] = par;
    std::array<int, 2>& k = kids[idx(par)];
    (k[0] < 0 ? k[0] : k[1]) = child;
  }

  /// Fills height and depth from the links (breadth-first from the root).
  void measure() {
    std::vector<int> order{root};
    for (std::size_t i = 0; i < order.size(); ++i) {
      for (int c : kids[idx(order[i])]) {
        if (c < 0) continue;
        depth[idx(c)] = depth[idx(order[i])] + 1;
        order.push_back(c);
      }
    }
    for (std::size_t i = order.size(); i-- > 0;) {
      const int v = order[i];
      for (int c : kids[idx(v)]) {
        if (c >= 0) height[idx(v)] = std::max(height[idx(v)], height[idx(c)] + 1);
      }
    }
  }
};

/// The binary heap over virtual ranks v = (r - root) mod p: children 2v + 1 and 2v + 2.
inline tree_shape heap_tree(int p, int root) {
  tree_shape t(p);
  t.root = root;
  for (int v = 1; v < p; ++v) t.link((v + root) % p, ((v - 1) / 2 + root) % p);
  t.measure();
  return t;
}

/// The in-order binary tree over positions 1..p: the root is the largest power of two
/// <= p; node x with lowest set bit b has children x - b/2 and x + b/2, where a right child
/// beyond p is replaced by the first of x + b/4, x + b/8, ..., x + 1 that exists. Leaves
/// are the odd positions, so interior nodes are the even ones. `rank_of(x)` places
/// position x on a real rank.
template <class RankOf>
tree_shape inorder_tree(int p, RankOf rank_of) {
  tree_shape t(p);
  t.root = rank_of(floor_pow2(p));
  for (int x = 1; x <= p; ++x) {
    const int b = lowbit(x);
    if (b < 2) continue;
    t.link(rank_of(x - b / 2), rank_of(x));
    for (int step = b / 2; step >= 1; step /= 2) {
      if (x + step <= p) {
        t.link(rank_of(x + step), rank_of(x));
        break;
      }
    }
  }
  t.measure();
  return t;
}

/// Binomial trees over virtual ranks v in [0, p) rooted at 0: the parent of v > 0 is
/// v - lowbit(v); its subtree is [v, v + binomial_span(v, p)).
inline constexpr int binomial_span(int v, int p) noexcept {
  return v == 0 ? p : std::min(lowbit(v), p - v);
}

}  // namespace chorus::inline v0::schedule::detail

#pragma once
/// \file
/// Recursive doubling schedules: latency-optimal, for small messages.
///
///  - all_reduce: in round j every rank exchanges its whole partial vector with the rank
///    whose (virtual) number differs in bit j and adds it: log2(P) rounds for P a power of
///    two. Other P use the fold of `layout.hpp`: the odd rank of each of the first
///    P - 2^floor(log2 P) pairs hands its input to its even neighbour first and gets the
///    result back last (two more rounds).
///  - all_gather (v-counts): the same exchange pattern, each round doubling the group of
///    blocks a rank holds; the same fold for other P.
///  - broadcast / reduce: binomial trees rooted at the root (ceil(log2 P) rounds).
///  - barrier: the dissemination barrier, ceil(log2 P) rounds of zero-count tokens: in
///    round k rank r signals r + 2^k and waits for r - 2^k.
///
/// All messages use tag 0: no two messages of one (source, destination) pair are in flight
/// in different orders on the two sides.
#include <chorus/schedule/layout.hpp>
#include <chorus/schedule/schedule.hpp>

#include <algorithm>
#include <cstddef>
#include <span>
#include <stdexcept>
#include <vector>

namespace chorus::inline v0::schedule::detail {

/// Recursive doubling among the virtual ranks of `f`. Before it, virtual rank u holds the
/// output range [vb[u], vb[u + 1]) (the ranges are contiguous and increasing); in round j,
/// at step t0 + j, u sends its group of 2^j ranges [g, g + 2^j) (g = u rounded down to a
/// multiple of 2^j) to u ^ 2^j and receives that rank's group, so after all rounds it holds
/// [vb[0], vb[q]). `first_src`, when not null, replaces the output as the source of round
/// 0 (the own range may still sit in the input). Nobody sends to virtual rank `complete`,
/// which already holds everything (-1: none).
template <class RealOf>
void doubling_rounds(timeline& tl, std::size_t t0, const fold& f, int u,
                     std::span<const std::size_t> vb, RealOf real_of, const region* first_src,
                     int complete) {
  for (int j = 0; j < f.rounds(); ++j) {
    const int d = 1 << j;
    const int partner = u ^ d;
    const std::size_t g = idx(u & ~(d - 1)), pg = idx(partner & ~(d - 1));
    const int peer = real_of(partner);
    const std::size_t t = t0 + idx(j);
    if (u != complete) tl.recv(t, peer, 0, out(vb[pg], vb[pg + idx(d)] - vb[pg]));
    if (partner != complete) {
      tl.send(t, peer, 0,
              j == 0 && first_src != nullptr ? *first_src : out(vb[g], vb[g + idx(d)] - vb[g]));
    }
  }
}

/// all_gather by recursive doubling with per-rank counts (shared with halving_doubling).
/// Virtual rank u stands for the real ranks [lo(u), hi(u)), whose blocks are contiguous.
inline schedule doubling_all_gather(const params& p) {
  timeline tl;
  const int size = p.size, r = p.rank;
  const std::vector<std::size_t> off = prefix_offsets(p.counts);
  const std::size_t own = p.counts[idx(r)], total = off.back();
  if (size == 1) {
    tl.copy(0, in(0, own), out(off[0], own));
    return tl.finish();
  }
  const fold f(size);
  const std::size_t t0 = f.lead(), done = t0 + idx(f.rounds());
  if (f.passive(r)) {
    // Fold-in: hand the own block to the even neighbour; fold-out: take the whole result.
    // (In place the input is part of the output, but it is read before anything is written.)
    tl.send(0, r - 1, 0, in(0, own));
    tl.recv(done, r - 1, 0, out(0, total));
    return tl.finish();
  }
  std::vector<std::size_t> vb(idx(f.q) + 1);
  for (int x = 0; x <= f.q; ++x) vb[idx(x)] = off[idx(f.lo(x))];
  auto real_of = [&f](int x) { return f.active(x); };
  const int u = f.virt(r);
  if (f.merged(r)) {
    // Fold-in: the odd neighbour's block arrives next to the own block (which is copied in
    // the same step; a no-op in place). The doubling rounds then send from the output.
    tl.recv(0, r + 1, 0, out(off[idx(r) + 1], p.counts[idx(r) + 1]));
    tl.copy(0, in(0, own), out(off[idx(r)], own));
    doubling_rounds(tl, t0, f, u, vb, real_of, nullptr, -1);
    tl.send(done, r + 1, 0, out(0, total));
  } else {
    // Round 0 sends the own block from the input while the same step copies it into the
    // output (no-op in place) and receives the partner's block elsewhere in the output.
    const region first = in(0, own);
    tl.copy(t0, first, out(off[idx(r)], own));
    doubling_rounds(tl, t0, f, u, vb, real_of, &first, -1);
  }
  return tl.finish();
}

/// all_reduce by recursive doubling of the whole vector.
inline schedule rd_all_reduce(const params& p) {
  timeline tl;
  const int size = p.size, r = p.rank;
  const std::size_t n = p.count;
  if (size == 1) {
    tl.copy(0, in(0, n), out(0, n));
    return tl.finish();
  }
  const fold f(size);
  const int rounds = f.rounds();
  const std::size_t t0 = f.lead(), done = t0 + idx(rounds);
  if (f.passive(r)) {
    tl.send(0, r - 1, 0, in(0, n));
    tl.recv(done, r - 1, 0, out(0, n));
    return tl.finish();
  }
  const bool merged = f.merged(r);
  const int u = f.virt(r);
  // The partial sum after round j must not live where round j reads from (the partner's
  // data is added to the own partial sum while that partial sum is being sent), so partial
  // sums alternate between two scratch slots and only the last round writes the output.
  // The input is read only in the first exchange (or fold-in), so in place is safe.
  std::size_t slots = 0;
  auto slot = [&](int i) {
    slots = std::max(slots, idx(i) + 1);
    return scr(idx(i) * n, n);
  };
  region acc = in(0, n);
  int next_slot = 0;
  if (merged) {
    // Fold-in: add the odd neighbour's vector to the own input.
    acc = slot(next_slot++);
    tl.recv_reduce(0, r + 1, 0, in(0, n), acc);
  }
  // A rank that starts from its input and has a single round would write the output while
  // sending the input (the same memory in place): it reduces into scratch and copies.
  const bool copy_out = !merged && rounds == 1;
  for (int j = 0; j < rounds; ++j) {
    const int peer = f.active(u ^ (1 << j));
    const bool last = j == rounds - 1;
    const region next = last && !copy_out ? out(0, n) : slot(next_slot++ % 2);
    tl.recv_reduce(t0 + idx(j), peer, 0, acc, next);
    tl.send(t0 + idx(j), peer, 0, acc);
    acc = next;
  }
  if (copy_out) tl.copy(done, acc, out(0, n));
  if (merged) tl.send(done, r + 1, 0, out(0, n));  // fold-out
  tl.need_scratch(slots * n);
  return tl.finish();
}

/// Binomial broadcast: in round i every virtual rank v < 2^i that has the data sends it to
/// v + 2^i (virtual ranks v = (r - root) mod P).
inline schedule binomial_broadcast(const params& p) {
  timeline tl;
  const int size = p.size;
  const int v = mod(p.rank - p.root, size);
  const std::size_t n = p.count;
  auto real = [&](int x) { return (x + p.root) % size; };
  const int levels = ceil_log2(size);
  int first = 0;  // first round in which v sends
  if (v == 0) {
    tl.copy(0, in(0, n), out(0, n));  // no-op in place
  } else {
    const int j = ceil_log2(v + 1) - 1;  // highest set bit of v
    tl.recv(idx(j), real(v - (1 << j)), 0, out(0, n));
    first = j + 1;
  }
  // The root sends from its input (never written); the others forward their output.
  const region src = v == 0 ? in(0, n) : out(0, n);
  for (int i = first; i < levels; ++i) {
    if (v + (1 << i) < size) tl.send(idx(i), real(v + (1 << i)), 0, src);
  }
  return tl.finish();
}

/// Binomial reduce: in round i every virtual rank with lowest set bit 2^i sends its partial
/// sum to v - 2^i, which adds it. Partial sums live in the root's output and in scratch
/// elsewhere (non-root outputs may be empty).
inline schedule binomial_reduce(const params& p) {
  timeline tl;
  const int size = p.size;
  const int v = mod(p.rank - p.root, size);
  const std::size_t n = p.count;
  auto real = [&](int x) { return (x + p.root) % size; };
  if (size == 1) {
    tl.copy(0, in(0, n), out(0, n));
    return tl.finish();
  }
  const int levels = ceil_log2(size);
  const int top = v == 0 ? levels : log2_exact(lowbit(v));  // v sends in round `top`
  const region acc = v == 0 ? out(0, n) : scr(0, n);
  bool received = false;
  for (int i = 0; i < top; ++i) {
    if (v + (1 << i) >= size) continue;
    // The first contribution is added to the own input, later ones to the partial sum.
    tl.recv_reduce(idx(i), real(v + (1 << i)), 0, received ? acc : in(0, n), acc);
    received = true;
  }
  if (v != 0) {
    tl.send(idx(top), real(v - (1 << top)), 0, received ? acc : in(0, n));
    if (received) tl.need_scratch(n);
  }
  return tl.finish();
}

/// Dissemination barrier: after round k every rank has heard, directly or not, from the
/// 2^(k+1) ranks before it, so after ceil(log2 P) rounds from everybody.
inline schedule dissemination_barrier(const params& p) {
  timeline tl;
  const int size = p.size, r = p.rank;
  for (int k = 0; (1 << k) < size; ++k) {
    tl.recv_token(idx(k), mod(r - (1 << k), size), 0);
    tl.send_token(idx(k), (r + (1 << k)) % size, 0);
  }
  return tl.finish();
}

/// The recursive doubling generator for every collective it supports.
inline schedule build_recursive_doubling(const params& p) {
  switch (p.kind) {
    case collective::all_reduce:
      return rd_all_reduce(p);
    case collective::all_gather:
      return doubling_all_gather(p);
    case collective::broadcast:
      return binomial_broadcast(p);
    case collective::reduce:
      return binomial_reduce(p);
    case collective::barrier:
      return dissemination_barrier(p);
    default:
      break;
  }
  throw std::invalid_argument(
      "the recursive_doubling algorithm does not implement this collective");
}

}  // namespace chorus::inline v0::schedule::detail

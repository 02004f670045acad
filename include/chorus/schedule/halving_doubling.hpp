#pragma once
/// \file
/// Halving-doubling (Rabenseifner / van de Geijn) schedules: bandwidth-optimal like the
/// ring, with only O(log P) rounds.
///
/// All of them work on the q = 2^floor(log2 P) virtual ranks of the fold (`layout.hpp`):
/// the odd rank of each of the first P - q pairs hands its whole input to its even
/// neighbour first and receives its result last.
///  - reduce_scatter (v-counts): recursive halving. In round k (distance d = q / 2^(k+1))
///    virtual u keeps the half of its current range of blocks on its side of u ^ d, sends
///    the other half to u ^ d and adds the half it receives. Virtual rank u owns the blocks
///    of the real ranks it stands for, which are contiguous.
///  - all_gather (v-counts): recursive doubling on the same structure (shared with
///    `recursive_doubling.hpp`).
///  - all_reduce: reduce_scatter over q even blocks of the vector (even over the virtual
///    ranks, so that a merged pair does no more work than anyone else), the all_gather of
///    those blocks, then the result to the passive ranks.
///  - broadcast: binomial scatter of q blocks from the root, then recursive doubling
///    all_gather; nobody sends to the root, which has everything.
///  - reduce: reduce_scatter of q blocks, then a binomial gather of the blocks to the root.
/// Rooted collectives number positions w = (r - root) mod P, so the root is virtual rank 0
/// and never passive. All messages use tag 0.
#include <chorus/schedule/layout.hpp>
#include <chorus/schedule/recursive_doubling.hpp>
#include <chorus/schedule/schedule.hpp>

#include <cstddef>
#include <functional>
#include <span>
#include <stdexcept>
#include <vector>

namespace chorus::inline v0::schedule::detail {

/// Round k of recursive halving for virtual rank u: the data ranges kept and sent away.
struct halving_round {
  int partner;
  std::size_t keep_begin, keep_count, send_begin, send_count;
};

inline halving_round halving(const fold& f, int u, int k, std::span<const std::size_t> vb) {
  const int d = f.q >> (k + 1);
  const int base = u & ~(2 * d - 1);
  const int keep = (u & d) != 0 ? base + d : base;
  const int give = (u & d) != 0 ? base : base + d;
  const std::size_t dd = idx(d);
  return {u ^ d, vb[idx(keep)], vb[idx(keep) + dd] - vb[idx(keep)], vb[idx(give)],
          vb[idx(give) + dd] - vb[idx(give)]};
}

/// Recursive halving rounds k = 0.. at steps t0 + k, accumulating into `acc` at the data's
/// own offsets. Round 0 reads the rank's contribution from the input unless `from_acc`
/// (after a fold-in the contribution is already in `acc`). The kept range of the last round
/// goes to `last_dst` when given (else to `acc`).
inline void halving_rounds(timeline& tl, std::size_t t0, const fold& f, int u,
                           std::span<const std::size_t> vb, const std::function<int(int)>& real_of,
                           buffer acc, bool from_acc, const region* last_dst) {
  for (int k = 0; k < f.rounds(); ++k) {
    const halving_round h = halving(f, u, k, vb);
    const buffer src = k == 0 && !from_acc ? buffer::input : acc;
    const bool last = k == f.rounds() - 1;
    const region keep_dst =
        last && last_dst != nullptr ? *last_dst : region{acc, h.keep_begin, h.keep_count};
    // Add the partner's half of the kept range to the own one; send it the other half.
    // Kept and sent ranges are disjoint, and in place the source and destination of the
    // reduction coincide on the first round.
    tl.recv_reduce(t0 + idx(k), real_of(h.partner), 0, {src, h.keep_begin, h.keep_count}, keep_dst);
    tl.send(t0 + idx(k), real_of(h.partner), 0, {src, h.send_begin, h.send_count});
  }
}

inline schedule hd_reduce_scatter(const params& p) {
  timeline tl;
  const int size = p.size, r = p.rank;
  const std::vector<std::size_t> off = prefix_offsets(p.counts);
  const std::size_t own = p.counts[idx(r)], total = off.back();
  if (size == 1) {
    tl.copy(0, in(off[0], own), out(0, own));
    return tl.finish();
  }
  const fold f(size);
  const std::size_t t0 = f.lead(), done = t0 + idx(f.rounds());
  if (f.passive(r)) {
    tl.send(0, r - 1, 0, in(0, total));    // fold-in: the whole input
    tl.recv(done, r - 1, 0, out(0, own));  // fold-out: the own reduced block
    return tl.finish();
  }
  std::vector<std::size_t> vb(idx(f.q) + 1);
  for (int x = 0; x <= f.q; ++x) vb[idx(x)] = off[idx(f.lo(x))];
  const std::function<int(int)> real_of = [&f](int x) { return f.active(x); };
  const int u = f.virt(r);
  if (f.merged(r)) {
    // Fold-in into scratch (laid out like the input), halving in scratch, then hand the odd
    // neighbour its block and copy the own one out.
    tl.need_scratch(total);
    tl.recv_reduce(0, r + 1, 0, in(0, total), scr(0, total));
    halving_rounds(tl, t0, f, u, vb, real_of, buffer::scratch, true, nullptr);
    tl.send(done, r + 1, 0, scr(off[idx(r) + 1], p.counts[idx(r) + 1]));
    tl.copy(done, scr(off[idx(r)], own), out(0, own));
  } else {
    // Round 0 reads the input, later rounds the partial sums in scratch; the last round's
    // kept range is exactly the own block and lands in the output (in place that is the
    // input's own block, read by no earlier round).
    if (f.rounds() > 1) tl.need_scratch(total);
    const region last = out(0, own);
    halving_rounds(tl, t0, f, u, vb, real_of, buffer::scratch, false, &last);
  }
  return tl.finish();
}

inline schedule hd_all_reduce(const params& p) {
  timeline tl;
  const int size = p.size, r = p.rank;
  const std::size_t n = p.count;
  if (size == 1) {
    tl.copy(0, in(0, n), out(0, n));
    return tl.finish();
  }
  const fold f(size);
  const std::size_t t0 = f.lead(), rounds = idx(f.rounds());
  if (f.passive(r)) {
    tl.send(0, r - 1, 0, in(0, n));
    tl.recv(t0 + 2 * rounds, r - 1, 0, out(0, n));
    return tl.finish();
  }
  const std::vector<std::size_t> vb = even_split{n, idx(f.q)}.bounds();
  const std::function<int(int)> real_of = [&f](int x) { return f.active(x); };
  const int u = f.virt(r);
  // The output is the accumulator throughout: the halving keeps shrinking ranges of it, the
  // doubling fills it back. The input is read only by the fold-in or the first round.
  if (f.merged(r)) tl.recv_reduce(0, r + 1, 0, in(0, n), out(0, n));
  halving_rounds(tl, t0, f, u, vb, real_of, buffer::output, f.merged(r), nullptr);
  doubling_rounds(tl, t0 + rounds, f, u, vb, real_of, nullptr, -1);
  if (f.merged(r)) tl.send(t0 + 2 * rounds, r + 1, 0, out(0, n));
  return tl.finish();
}

inline schedule hd_broadcast(const params& p) {
  timeline tl;
  const int size = p.size;
  const std::size_t n = p.count;
  if (size == 1) {
    tl.copy(0, in(0, n), out(0, n));
    return tl.finish();
  }
  const int w = mod(p.rank - p.root, size);
  auto real = [&](int x) { return (x + p.root) % size; };
  const fold f(size);
  const std::size_t rounds = idx(f.rounds());
  if (f.passive(w)) {
    tl.recv(2 * rounds, real(w - 1), 0, out(0, n));
    return tl.finish();
  }
  const std::vector<std::size_t> vb = even_split{n, idx(f.q)}.bounds();
  const std::function<int(int)> real_of = [&](int x) { return real(f.active(x)); };
  const int u = f.virt(w);
  if (u == 0) tl.copy(0, in(0, n), out(0, n));  // no-op in place
  // Binomial scatter: in round i (d = q / 2^(i+1)) every holder u of the blocks
  // [u, u + 2d) keeps [u, u + d) and sends [u + d, u + 2d) to u + d. The root sends from
  // its input, the others from their output, where they received.
  for (int i = 0; i < f.rounds(); ++i) {
    const int d = f.q >> (i + 1);
    const std::size_t ud = idx(u), dd = idx(d);
    if (u % (2 * d) == 0) {
      tl.send(
          idx(i), real_of(u + d), 0,
          {u == 0 ? buffer::input : buffer::output, vb[ud + dd], vb[ud + 2 * dd] - vb[ud + dd]});
    } else if (u % (2 * d) == d) {
      tl.recv(idx(i), real_of(u - d), 0, out(vb[ud], vb[ud + dd] - vb[ud]));
    }
  }
  // All-gather of the blocks; virtual rank 0 (the root) already has them all.
  doubling_rounds(tl, rounds, f, u, vb, real_of, nullptr, 0);
  if (f.merged(w)) tl.send(2 * rounds, real(w + 1), 0, out(0, n));
  return tl.finish();
}

inline schedule hd_reduce(const params& p) {
  timeline tl;
  const int size = p.size;
  const std::size_t n = p.count;
  if (size == 1) {
    tl.copy(0, in(0, n), out(0, n));
    return tl.finish();
  }
  const int w = mod(p.rank - p.root, size);
  auto real = [&](int x) { return (x + p.root) % size; };
  const fold f(size);
  if (f.passive(w)) {
    tl.send(0, real(w - 1), 0, in(0, n));  // fold-in; nothing comes back
    return tl.finish();
  }
  const std::size_t t0 = f.lead(), rounds = idx(f.rounds());
  const std::vector<std::size_t> vb = even_split{n, idx(f.q)}.bounds();
  const std::function<int(int)> real_of = [&](int x) { return real(f.active(x)); };
  const int u = f.virt(w);
  // Partial sums live in the root's output, elsewhere in scratch at the same offsets.
  const buffer acc = w == 0 ? buffer::output : buffer::scratch;
  if (w != 0) tl.need_scratch(n);
  if (f.merged(w)) tl.recv_reduce(0, real(w + 1), 0, in(0, n), {acc, 0, n});
  halving_rounds(tl, t0, f, u, vb, real_of, acc, f.merged(w), nullptr);
  // Binomial gather of the reduced blocks: in round j the virtual ranks with lowest set
  // bit 2^j send their blocks [u, u + 2^j) to u - 2^j.
  for (int j = 0; j < f.rounds(); ++j) {
    const int d = 1 << j;
    const std::size_t t = t0 + rounds + idx(j), ud = idx(u), dd = idx(d);
    if (u % (2 * d) == d) {
      tl.send(t, real_of(u - d), 0, {acc, vb[ud], vb[ud + dd] - vb[ud]});
    } else if (u % (2 * d) == 0) {
      tl.recv(t, real_of(u + d), 0, {acc, vb[ud + dd], vb[ud + 2 * dd] - vb[ud + dd]});
    }
  }
  return tl.finish();
}

/// The halving-doubling generator for every collective it supports.
inline schedule build_halving_doubling(const params& p) {
  switch (p.kind) {
    case collective::all_reduce:
      return hd_all_reduce(p);
    case collective::reduce_scatter:
      return hd_reduce_scatter(p);
    case collective::all_gather:
      return doubling_all_gather(p);
    case collective::broadcast:
      return hd_broadcast(p);
    case collective::reduce:
      return hd_reduce(p);
    default:
      break;
  }
  throw std::invalid_argument("the halving_doubling algorithm does not implement this collective");
}

}  // namespace chorus::inline v0::schedule::detail

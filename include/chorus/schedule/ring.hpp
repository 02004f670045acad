#pragma once
/// \file
/// Ring schedules: every rank sends only to its right neighbour (r + 1) and receives only
/// from its left neighbour (r - 1), so each link carries one stream and the bandwidth of
/// every link is used at once.
///
///  - all_reduce: ring reduce-scatter over P blocks, then ring all-gather (2(P-1) steps,
///    2(P-1)/P of the vector sent per rank: bandwidth optimal).
///  - reduce_scatter / all_gather (v-counts): the two halves on their own.
///  - broadcast: a pipelined chain root -> root+1 -> ...; reduce: a pipelined chain
///    root+1 -> root+2 -> ... -> root.
///  - barrier: a zero-count token around the ring, then around once more.
///
/// Every transfer longer than `chunk_count` is cut into pieces of at most `chunk_count`
/// elements inside the same step (one op per piece), so that the reduction of a piece
/// overlaps the transfer of the next. All messages use tag 0: a ring link carries one
/// ordered stream and both ends list its pieces in the same order.
#include <chorus/schedule/layout.hpp>
#include <chorus/schedule/schedule.hpp>

#include <algorithm>
#include <cstddef>
#include <stdexcept>
#include <vector>

namespace chorus::inline v0::schedule::detail {

/// Sends `[offset, offset + n)` of buffer `buf` to `peer` piece by piece at step t.
inline void ring_send_pieces(timeline& tl, std::size_t t, int peer, buffer buf, std::size_t offset,
                             std::size_t n, std::size_t chunk) {
  const piece_split ps{n, chunk};
  for (std::size_t k = 0; k < ps.count(); ++k) {
    tl.send(t, peer, 0, {buf, offset + ps.offset(k), ps.size(k)});
  }
}

/// Ring all_reduce over P even blocks of the vector.
inline schedule ring_all_reduce(const params& p) {
  timeline tl;
  const int size = p.size, r = p.rank;
  const std::size_t n = p.count;
  if (size == 1) {
    tl.copy(0, in(0, n), out(0, n));
    return tl.finish();
  }
  const even_split blocks{n, idx(size)};
  const int right = (r + 1) % size, left = mod(r - 1, size);
  std::size_t t = 0;
  // Reduce-scatter. At step s rank r passes on block r - s, which holds the sum of the s+1
  // ranks r-s..r (just its own input at s = 0), and receives block r - s - 1 from the left,
  // adding its own input of that block into the output. Output is the accumulator: block
  // r - s - 1 of the output is first written here, and the input of that block is read only
  // by this very recv_reduce (src and dst are the same memory when called in place).
  // After P - 1 steps block r + 1 holds every rank's contribution.
  for (int s = 0; s < size - 1; ++s, ++t) {
    const std::size_t sb = idx(mod(r - s, size)), rb = idx(mod(r - s - 1, size));
    const piece_split rp{blocks.size(rb), p.chunk_count};
    for (std::size_t k = 0; k < rp.count(); ++k) {
      const std::size_t o = blocks.offset(rb) + rp.offset(k);
      tl.recv_reduce(t, left, 0, in(o, rp.size(k)), out(o, rp.size(k)));
    }
    ring_send_pieces(tl, t, right, s == 0 ? buffer::input : buffer::output, blocks.offset(sb),
                     blocks.size(sb), p.chunk_count);
  }
  // All-gather. At step s rank r passes on block r + 1 - s (complete: reduced at the end of
  // the reduce-scatter, or received at step s - 1) and receives block r - s.
  for (int s = 0; s < size - 1; ++s, ++t) {
    const std::size_t sb = idx(mod(r + 1 - s, size)), rb = idx(mod(r - s, size));
    const piece_split rp{blocks.size(rb), p.chunk_count};
    for (std::size_t k = 0; k < rp.count(); ++k) {
      tl.recv(t, left, 0, out(blocks.offset(rb) + rp.offset(k), rp.size(k)));
    }
    ring_send_pieces(tl, t, right, buffer::output, blocks.offset(sb), blocks.size(sb),
                     p.chunk_count);
  }
  return tl.finish();
}

/// Ring reduce_scatter with per-rank block sizes.
inline schedule ring_reduce_scatter(const params& p) {
  timeline tl;
  const int size = p.size, r = p.rank;
  const std::vector<std::size_t> off = prefix_offsets(p.counts);
  const std::size_t own = p.counts[idx(r)];
  if (size == 1) {
    tl.copy(0, in(off[0], own), out(0, own));
    return tl.finish();
  }
  // Partial sums travel through two scratch slots, each as large as the largest block:
  // slot s % 2 receives at step s what is sent on at step s + 1.
  const std::size_t widest = *std::max_element(p.counts.begin(), p.counts.end());
  const int right = (r + 1) % size, left = mod(r - 1, size);
  if (size > 2) tl.need_scratch(idx(std::min(size - 2, 2)) * widest);
  auto slot = [&](int s) { return idx(s % 2) * widest; };
  // At step s rank r sends block r - s - 1 (its own input at s = 0, else the partial sum it
  // received at step s - 1) and receives block r - s - 2, adding its own input of that
  // block. The last step (s = P - 2) receives block r itself, and the sum lands directly in
  // the output (in place, the output is the input's block r: src and dst coincide).
  for (int s = 0; s < size - 1; ++s) {
    const std::size_t t = idx(s);
    const std::size_t sb = idx(mod(r - s - 1, size)), rb = idx(mod(r - s - 2, size));
    const bool last = s == size - 2;
    const piece_split rp{p.counts[rb], p.chunk_count};
    for (std::size_t k = 0; k < rp.count(); ++k) {
      const std::size_t o = rp.offset(k), m = rp.size(k);
      tl.recv_reduce(t, left, 0, in(off[rb] + o, m), last ? out(o, m) : scr(slot(s) + o, m));
    }
    if (s == 0) {
      ring_send_pieces(tl, t, right, buffer::input, off[sb], p.counts[sb], p.chunk_count);
    } else {
      ring_send_pieces(tl, t, right, buffer::scratch, slot(s - 1), p.counts[sb], p.chunk_count);
    }
  }
  return tl.finish();
}

/// Ring all_gather with per-rank block sizes.
inline schedule ring_all_gather(const params& p) {
  timeline tl;
  const int size = p.size, r = p.rank;
  const std::vector<std::size_t> off = prefix_offsets(p.counts);
  const std::size_t own = p.counts[idx(r)];
  // Step 0 also places the own block in the output (a no-op in place, where the input is
  // that very block); the same step sends the block from the input, which is never written.
  tl.copy(0, in(0, own), out(off[idx(r)], own));
  const int right = (r + 1) % size, left = mod(r - 1, size);
  // At step s rank r sends block r - s (from the input at s = 0, else the block received at
  // step s - 1) and receives block r - s - 1.
  for (int s = 0; s < size - 1; ++s) {
    const std::size_t t = idx(s);
    const std::size_t sb = idx(mod(r - s, size)), rb = idx(mod(r - s - 1, size));
    const piece_split rp{p.counts[rb], p.chunk_count};
    for (std::size_t k = 0; k < rp.count(); ++k) {
      tl.recv(t, left, 0, out(off[rb] + rp.offset(k), rp.size(k)));
    }
    if (s == 0) {
      ring_send_pieces(tl, t, right, buffer::input, 0, own, p.chunk_count);
    } else {
      ring_send_pieces(tl, t, right, buffer::output, off[sb], p.counts[sb], p.chunk_count);
    }
  }
  return tl.finish();
}

/// Pipelined chain broadcast root -> root + 1 -> ... -> root - 1.
inline schedule ring_broadcast(const params& p) {
  timeline tl;
  const int size = p.size, r = p.rank;
  const int v = mod(r - p.root, size);  // position in the chain
  const int next = (r + 1) % size, prev = mod(r - 1, size);
  const piece_split ps{p.count, p.chunk_count};
  if (v == 0) {
    // The root copies its input to its output while it streams the pieces from the input.
    tl.copy(0, in(0, p.count), out(0, p.count));
    if (size > 1) {
      for (std::size_t k = 0; k < ps.count(); ++k)
        tl.send(k, next, 0, in(ps.offset(k), ps.size(k)));
    }
    return tl.finish();
  }
  // Position v receives piece k at step v - 1 + k and forwards it at step v + k: while it
  // forwards piece k it already receives piece k + 1 (a wavefront down the chain).
  const std::size_t lag = idx(v);
  for (std::size_t k = 0; k < ps.count(); ++k) {
    const region piece = out(ps.offset(k), ps.size(k));
    tl.recv(lag - 1 + k, prev, 0, piece);
    if (v < size - 1) tl.send(lag + k, next, 0, piece);
  }
  return tl.finish();
}

/// Pipelined chain reduce root + 1 -> root + 2 -> ... -> root - 1 -> root.
inline schedule ring_reduce(const params& p) {
  timeline tl;
  const int size = p.size, r = p.rank;
  const int v = mod(r - p.root, size);
  const int next = (r + 1) % size, prev = mod(r - 1, size);
  const piece_split ps{p.count, p.chunk_count};
  if (size == 1) {
    tl.copy(0, in(0, p.count), out(0, p.count));
    return tl.finish();
  }
  if (v == 1) {
    // The head of the chain sends its input piece by piece: piece k at step k.
    for (std::size_t k = 0; k < ps.count(); ++k) tl.send(k, next, 0, in(ps.offset(k), ps.size(k)));
    return tl.finish();
  }
  // Position v receives the partial sum of piece k (positions 1..v-1) at step k + v - 2,
  // adds its own input, and passes it on at step k + v - 1. The root (v = 0, last in the
  // chain) adds into its output. Other ranks keep partial pieces in two scratch slots:
  // piece k in slot k % 2 is sent one step after it was filled, while piece k + 1 fills the
  // other slot.
  const std::size_t lag = v == 0 ? idx(size) : idx(v);
  if (v != 0) tl.need_scratch(std::min<std::size_t>(ps.count(), 2) * ps.width());
  for (std::size_t k = 0; k < ps.count(); ++k) {
    const std::size_t o = ps.offset(k), m = ps.size(k);
    const region acc = v == 0 ? out(o, m) : scr((k % 2) * ps.width(), m);
    tl.recv_reduce(lag - 2 + k, prev, 0, in(o, m), acc);
    if (v != 0) tl.send(lag - 1 + k, next, 0, acc);
  }
  return tl.finish();
}

/// Barrier: a token from rank 0 around the ring tells rank 0 (and, on its way, rank P - 1)
/// that everybody has entered; a second pass 0 -> 1 -> ... -> P - 2 tells the others.
inline schedule ring_barrier(const params& p) {
  timeline tl;
  const int size = p.size, r = p.rank;
  if (size == 1) return tl.finish();
  const std::size_t ur = idx(r), us = idx(size);
  if (r == 0) {
    tl.send_token(0, 1, 0);                 // first pass starts
    tl.recv_token(us - 1, size - 1, 0);     // ... and comes back: all have entered
    if (size > 2) tl.send_token(us, 1, 0);  // second pass tells 1..P-2
    return tl.finish();
  }
  // First pass: receive at step r - 1 (the token has seen ranks 0..r-1), pass it on.
  tl.recv_token(ur - 1, r - 1, 0);
  tl.send_token(ur, (r + 1) % size, 0);
  // Second pass, for ranks 1..P-2 (rank P - 1 knew everything after the first pass).
  if (r <= size - 2) {
    tl.recv_token(us + ur - 1, r - 1, 0);
    if (r + 1 <= size - 2) tl.send_token(us + ur, r + 1, 0);
  }
  return tl.finish();
}

/// The ring generator for every collective `supports(algorithm::ring, ...)` allows.
inline schedule build_ring(const params& p) {
  switch (p.kind) {
    case collective::all_reduce:
      return ring_all_reduce(p);
    case collective::reduce_scatter:
      return ring_reduce_scatter(p);
    case collective::all_gather:
      return ring_all_gather(p);
    case collective::broadcast:
      return ring_broadcast(p);
    case collective::reduce:
      return ring_reduce(p);
    case collective::barrier:
      return ring_barrier(p);
    default:
      break;
  }
  throw std::invalid_argument("the ring algorithm does not implement this collective");
}

}  // namespace chorus::inline v0::schedule::detail

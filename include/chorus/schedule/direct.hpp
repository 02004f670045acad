#pragma once
/// \file
/// Direct schedules: every rank talks to every other rank (or to the root) in one step.
/// One message hop, P - 1 messages per rank: the choice for small P or fat networks, and
/// the only algorithm for all_to_all.
///
/// Within a step, rank r lists its peers in the order r + 1, r + 2, ... for sends and
/// r - 1, r - 2, ... for receives, so at any moment the ranks are busy with different
/// peers rather than all hitting the same one. Reductions from several peers into one
/// block are applied in op order (the first adds to the own input, the next ones to the
/// running result), so the result is the same every run.
///  - all_reduce: direct reduce-scatter of P even blocks (rank j reduces block j from
///    everybody), then direct all-gather: two steps.
///  - reduce_scatter / all_gather / all_to_all(v): one step of pairwise exchanges.
///  - broadcast / reduce / gather / scatter: one step, root-centred.
///  - barrier: every rank sends a token to rank 0 and waits for its reply; rank 0 replies
///    once it heard from everybody.
/// All messages use tag 0.
#include <chorus/schedule/layout.hpp>
#include <chorus/schedule/schedule.hpp>

#include <cstddef>
#include <stdexcept>
#include <vector>

namespace chorus::inline v0::schedule::detail {

/// Receives block `dst` from every peer except r (in the order r - 1, r - 2, ...) and adds
/// them up with the own contribution `own`; `dst` is the accumulator.
inline void direct_reduce_into(timeline& tl, std::size_t t, int size, int r, region own,
                               region dst) {
  bool first = true;
  for (int s = 1; s < size; ++s) {
    if (dst.count == 0) break;
    tl.recv_reduce(t, mod(r - s, size), 0, first ? own : dst, dst);
    first = false;
  }
  if (first) tl.copy(t, own, dst);  // P == 1
}

inline schedule direct_all_reduce(const params& p) {
  timeline tl;
  const int size = p.size, r = p.rank;
  const even_split blocks{p.count, idx(size)};
  const std::size_t ur = idx(r);
  // Step 0: rank r owns block r; it sends block j of its input to rank j and adds every
  // rank's block r into its output (in place the first reduction reads and writes the
  // same block; the sends read other blocks).
  direct_reduce_into(tl, 0, size, r, in(blocks.offset(ur), blocks.size(ur)),
                     out(blocks.offset(ur), blocks.size(ur)));
  for (int s = 1; s < size; ++s) {
    const std::size_t j = idx((r + s) % size);
    tl.send(0, (r + s) % size, 0, in(blocks.offset(j), blocks.size(j)));
  }
  // Step 1: everybody sends its reduced block to everybody.
  for (int s = 1; s < size; ++s) {
    const std::size_t j = idx(mod(r - s, size));
    tl.recv(1, mod(r - s, size), 0, out(blocks.offset(j), blocks.size(j)));
  }
  for (int s = 1; s < size; ++s) {
    tl.send(1, (r + s) % size, 0, out(blocks.offset(ur), blocks.size(ur)));
  }
  return tl.finish();
}

inline schedule direct_reduce_scatter(const params& p) {
  timeline tl;
  const int size = p.size, r = p.rank;
  const std::vector<std::size_t> off = prefix_offsets(p.counts);
  const std::size_t ur = idx(r), own = p.counts[ur];
  // In place the output is the input's block r: the first reduction reads and writes it,
  // the sends read the other blocks.
  direct_reduce_into(tl, 0, size, r, in(off[ur], own), out(0, own));
  for (int s = 1; s < size; ++s) {
    const std::size_t j = idx((r + s) % size);
    tl.send(0, (r + s) % size, 0, in(off[j], p.counts[j]));
  }
  return tl.finish();
}

inline schedule direct_all_gather(const params& p) {
  timeline tl;
  const int size = p.size, r = p.rank;
  const std::vector<std::size_t> off = prefix_offsets(p.counts);
  const std::size_t ur = idx(r), own = p.counts[ur];
  for (int s = 1; s < size; ++s) {
    const std::size_t j = idx(mod(r - s, size));
    tl.recv(0, mod(r - s, size), 0, out(off[j], p.counts[j]));
  }
  for (int s = 1; s < size; ++s) tl.send(0, (r + s) % size, 0, in(0, own));
  tl.copy(0, in(0, own), out(off[ur], own));  // no-op in place
  return tl.finish();
}

inline schedule direct_all_to_all(const params& p) {
  timeline tl;
  const int size = p.size, r = p.rank;
  const std::size_t ur = idx(r);
  for (int s = 1; s < size; ++s) {
    const std::size_t j = idx(mod(r - s, size));
    tl.recv(0, mod(r - s, size), 0, out(p.recv_offsets[j], p.recv_counts[j]));
  }
  for (int s = 1; s < size; ++s) {
    const std::size_t j = idx((r + s) % size);
    tl.send(0, (r + s) % size, 0, in(p.send_offsets[j], p.send_counts[j]));
  }
  tl.copy(0, in(p.send_offsets[ur], p.send_counts[ur]), out(p.recv_offsets[ur], p.recv_counts[ur]));
  return tl.finish();
}

inline schedule direct_broadcast(const params& p) {
  timeline tl;
  const int size = p.size, r = p.rank;
  if (r == p.root) {
    tl.copy(0, in(0, p.count), out(0, p.count));  // no-op in place
    for (int s = 1; s < size; ++s) tl.send(0, (r + s) % size, 0, in(0, p.count));
  } else {
    tl.recv(0, p.root, 0, out(0, p.count));
  }
  return tl.finish();
}

inline schedule direct_reduce(const params& p) {
  timeline tl;
  const int size = p.size, r = p.rank;
  if (r == p.root) {
    direct_reduce_into(tl, 0, size, r, in(0, p.count), out(0, p.count));
  } else {
    tl.send(0, p.root, 0, in(0, p.count));
  }
  return tl.finish();
}

inline schedule direct_gather(const params& p) {
  timeline tl;
  const int size = p.size, r = p.rank;
  const std::vector<std::size_t> off = prefix_offsets(p.counts);
  const std::size_t own = p.counts[idx(r)];
  if (r == p.root) {
    for (int s = 1; s < size; ++s) {
      const std::size_t j = idx(mod(r - s, size));
      tl.recv(0, mod(r - s, size), 0, out(off[j], p.counts[j]));
    }
    tl.copy(0, in(0, own), out(off[idx(r)], own));  // no-op in place
  } else {
    tl.send(0, p.root, 0, in(0, own));
  }
  return tl.finish();
}

inline schedule direct_scatter(const params& p) {
  timeline tl;
  const int size = p.size, r = p.rank;
  const std::vector<std::size_t> off = prefix_offsets(p.counts);
  const std::size_t own = p.counts[idx(r)];
  if (r == p.root) {
    for (int s = 1; s < size; ++s) {
      const std::size_t j = idx((r + s) % size);
      tl.send(0, (r + s) % size, 0, in(off[j], p.counts[j]));
    }
    tl.copy(0, in(off[idx(r)], own), out(0, own));  // no-op in place
  } else {
    tl.recv(0, p.root, 0, out(0, own));
  }
  return tl.finish();
}

inline schedule direct_barrier(const params& p) {
  timeline tl;
  const int size = p.size, r = p.rank;
  if (r == 0) {
    for (int s = 1; s < size; ++s) tl.recv_token(0, s, 0);
    for (int s = 1; s < size; ++s) tl.send_token(1, s, 0);
  } else {
    // Report and wait for the release in one step: the release comes only after rank 0
    // heard from everybody.
    tl.send_token(0, 0, 0);
    tl.recv_token(0, 0, 0);
  }
  return tl.finish();
}

/// The direct generator (every collective).
inline schedule build_direct(const params& p) {
  switch (p.kind) {
    case collective::all_reduce:
      return direct_all_reduce(p);
    case collective::reduce_scatter:
      return direct_reduce_scatter(p);
    case collective::all_gather:
      return direct_all_gather(p);
    case collective::broadcast:
      return direct_broadcast(p);
    case collective::reduce:
      return direct_reduce(p);
    case collective::barrier:
      return direct_barrier(p);
    case collective::all_to_all:
      return direct_all_to_all(p);
    case collective::gather:
      return direct_gather(p);
    case collective::scatter:
      return direct_scatter(p);
  }
  throw std::invalid_argument("the direct algorithm does not implement this collective");
}

}  // namespace chorus::inline v0::schedule::detail

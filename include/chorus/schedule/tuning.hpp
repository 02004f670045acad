#pragma once
/// \file
/// The tuner's contract: which algorithm (and pipeline piece) a collective runs with when
/// the caller says `algo::automatic`.
///
/// A tuner is a pure function of what every rank knows alike -- the collective, one rank's
/// full vector in bytes, the rank count, how the ranks sit on hosts, what the transport can
/// do -- so that every rank picks the same algorithm without talking. Dispatch asks the
/// communicator's tuner (`communicator_options::tuner`; empty means `default_tuning`),
/// checks the answer against `supports` and what the transport can run, and runs it. A
/// measured tuner replaces the rule below by setting that option; nothing in dispatch
/// changes.
#include <chorus/schedule/schedule.hpp>

#include <cstddef>
#include <functional>

namespace chorus::inline v0::schedule {

/// What a tuner is asked.
struct tuning_query {
  collective kind = collective::all_reduce;
  std::size_t bytes = 0;  ///< one rank's full vector (the sum of the blocks where there are)
  int ranks = 1;
  /// The transport maps peers' windows into this process (`mapped_window_transport`), so
  /// `one_sided` runs with plain loads. (Transports that reach windows only with `get` run
  /// `one_sided` when named, but a tuner should not pick it there: it trails the two-sided
  /// schedules over UCX at every size measured.)
  bool mapped_windows = false;
  /// The number of hosts the ranks are on (`communicator::hosts()`; 1 when the transport
  /// puts every rank on one host: inproc, shm, NCCL).
  int hosts = 1;
  /// The fewest ranks any one host has (`ranks` on one host).
  int min_ranks_per_host = 1;
};

/// What a tuner answers. `chunk_bytes` 0: the family's default piece size.
struct tuning_choice {
  algorithm algo = algorithm::direct;
  std::size_t chunk_bytes = 0;
};

/// A replaceable tuner; empty means `default_tuning`.
using tuner = std::function<tuning_choice(const tuning_query&)>;

/// The default rule. Latency-bound sizes take the algorithms with log2(P) steps;
/// bandwidth-bound sizes take the ones that move the least data per rank. The thresholds
/// are the classic MPICH/Open MPI ones for a host interconnect; the measured tuner (a later
/// issue) replaces them. With mapped windows, all-reduce, reduce-scatter and all-gather run
/// one-sided where that beats every two-sided schedule (docs/performance.md). Before all
/// that: ranks on several hosts, each host with at least two of them, run the five
/// collectives of `hierarchical` hierarchically, whatever the size.
inline tuning_choice default_tuning(const tuning_query& q) noexcept {
  using enum collective;
  constexpr std::size_t small = 16 * 1024;
  constexpr std::size_t medium = 512 * 1024;
  const collective c = q.kind;
  const std::size_t bytes = q.bytes;
  // Several hosts with several ranks each: the links between hosts are the slow ones, and
  // the hierarchical schedules send the least over them (with L ranks on each of H hosts,
  // an all-reduce sends 2(H-1)/(H L) of the vector per rank off its host). Not measured
  // yet against the flat schedules; with one rank per host there is nothing to gain.
  if (q.hosts > 1 && q.min_ranks_per_host > 1 && supports(algorithm::hierarchical, c)) {
    return {algorithm::hierarchical};
  }
  // One-sided (mapped windows): at 2 ranks the two-sided exchange is as fast up to 64 KiB;
  // from 3 ranks on, the one-sided path wins from 4 KiB for reduce-scatter and all-gather
  // and above 16 KiB for all-reduce (docs/performance.md, 4 ranks on 2 cores).
  const std::size_t one_sided_from = q.ranks <= 2      ? 64 * 1024
                                     : c == all_reduce ? small + 1
                                                       : 4 * 1024;
  if (q.mapped_windows && q.ranks > 1 && bytes >= one_sided_from &&
      supports(algorithm::one_sided, c)) {
    return {algorithm::one_sided};
  }
  // Two ranks: one exchange is the whole all-reduce for small vectors; otherwise everything
  // is a direct exchange with the one peer.
  if (q.ranks <= 2 && c == all_reduce && bytes <= small) return {algorithm::recursive_doubling};
  if (q.ranks <= 2 && c != barrier) return {algorithm::direct};
  switch (c) {
    case all_reduce:
      if (bytes <= small) return {algorithm::recursive_doubling};
      if (bytes <= medium) return {algorithm::halving_doubling};
      return {algorithm::ring};
    case reduce_scatter:
      return {bytes <= medium ? algorithm::halving_doubling : algorithm::ring};
    case all_gather:
      return {bytes <= medium ? algorithm::recursive_doubling : algorithm::ring};
    case broadcast:
    case reduce:
      return {bytes <= small ? algorithm::recursive_doubling : algorithm::ring};
    case barrier:
      return {algorithm::recursive_doubling};
    case gather:
    case scatter:
      return {bytes <= small ? algorithm::tree : algorithm::direct};
    case all_to_all:
      return {algorithm::direct};
  }
  return {algorithm::direct};
}

}  // namespace chorus::inline v0::schedule

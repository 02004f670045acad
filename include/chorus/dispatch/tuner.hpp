#pragma once
/// \file
/// How dispatch settles a call's algorithm: the caller's tag, or the communicator's tuner
/// for `algo::automatic` (`schedule/tuning.hpp`: the contract and the default rule), checked
/// against the support table and against what the transport can run.
#include <chorus/communicator.hpp>
#include <chorus/core/error.hpp>
#include <chorus/dispatch/algo.hpp>
#include <chorus/dispatch/call.hpp>
#include <chorus/schedule/schedule.hpp>
#include <chorus/schedule/tuning.hpp>
#include <chorus/transport/contract.hpp>

#include <cstddef>
#include <string>

namespace chorus::inline v0::detail {

/// The default piece sizes of the pipelined tags, read from the tags themselves.
inline std::size_t default_chunk_bytes(schedule::algorithm a) noexcept {
  switch (a) {
    case schedule::algorithm::ring:
      return algo::ring{}.chunk_bytes;
    case schedule::algorithm::tree:
      return algo::tree{}.chunk_bytes;
    case schedule::algorithm::double_binary_tree:
      return algo::double_binary_tree{}.chunk_bytes;
    case schedule::algorithm::hierarchical:
      return algo::hierarchical{}.chunk_bytes;
    default:
      return 0;
  }
}

/// What the communicator's tuner (or the default rule) picks for `call`.
template <class Transport>
schedule::tuning_choice tune(const communicator<Transport>& comm, const collective_call& call) {
  schedule::tuning_query q;
  q.kind = call.kind;
  q.bytes = call_bytes(call);
  q.ranks = comm.size();
  // A call posted as a request runs two-sided: the one-sided path keeps its staging window
  // with the communicator and cannot interleave with other operations.
  q.mapped_windows = mapped_window_transport<Transport> && comm.posting() == nullptr;
  q.hosts = comm.host_count();
  q.min_ranks_per_host = comm.min_ranks_per_host();
  const schedule::tuner& tuner = comm.options().tuner;
  return tuner ? tuner(q) : schedule::default_tuning(q);
}

/// Settles `call.algorithm` and the pipeline piece (`call.chunk_count`) for a call on
/// `comm`: the caller's choice, or the tuner's. Throws `invalid_argument` when a run-time
/// choice (`algo::dynamic`, or a tuner's answer) cannot run the collective or needs windows
/// the transport lacks.
template <class Transport>
schedule::algorithm resolve_algorithm(const communicator<Transport>& comm, collective_call& call) {
  const bool automatic = !call.algorithm;
  std::size_t chunk_bytes = call.chunk_bytes;
  schedule::algorithm a{};
  if (automatic) {
    const schedule::tuning_choice choice = tune(comm, call);
    a = choice.algo;
    if (chunk_bytes == 0) chunk_bytes = choice.chunk_bytes;
  } else {
    a = *call.algorithm;
  }
  // "chorus::all_to_all: algorithm ring cannot ..." or "...: the tuner chose ring, which cannot"
  const std::string chosen = std::string("chorus::") + call.api + ": " +
                             (automatic ? "the tuner chose " : "algorithm ") +
                             std::string(schedule::name(a)) + (automatic ? ", which" : "");
  if (!schedule::supports(a, call.kind)) {  // reachable through algo::dynamic or a tuner
    throw error(errc::invalid_argument,
                chosen + " cannot run " + std::string(schedule::name(call.kind)) +
                    "; use one of: " + schedule::algorithms_running(call.kind) + ", or automatic");
  }
  if (a == schedule::algorithm::one_sided && !one_sided_transport<Transport>) {
    throw error(errc::invalid_argument,
                chosen +
                    " needs a transport with windows (shm_transport, ucx_transport); "
                    "pick another algorithm");
  }
  if (chunk_bytes == 0) chunk_bytes = default_chunk_bytes(a);
  call.algorithm = a;
  call.chunk_count = chunk_bytes == 0 ? 0 : std::max<std::size_t>(1, chunk_bytes / call.elem_size);
  return a;
}

}  // namespace chorus::inline v0::detail

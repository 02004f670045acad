#pragma once
/// \file
/// How dispatch settles a call's algorithm: the caller's tag, or the communicator's tuner
/// for `algo::automatic` (`schedule/tuning.hpp`: the contract and the default rule), checked
/// against the support table and against what the transport can run; and
/// `chorus::explain`, what the cost model predicts for each candidate of a call.
#include <chorus/communicator.hpp>
#include <chorus/core/error.hpp>
#include <chorus/dispatch/algo.hpp>
#include <chorus/dispatch/call.hpp>
#include <chorus/dispatch/debug.hpp>
#include <chorus/schedule/cost.hpp>
#include <chorus/schedule/schedule.hpp>
#include <chorus/schedule/tuning.hpp>
#include <chorus/transport/contract.hpp>

#include <algorithm>
#include <cstddef>
#include <string>
#include <string_view>

namespace chorus::inline v0::detail {

/// The default piece of algorithm `a` for a call of `bytes` (one rank's vector), from the
/// tags' `host_chunk_bytes`; 0 means no pieces. On a stream-ordered transport the ring
/// phases are not cut (a step's reductions all wait for the step's group, so pieces only
/// add launches), and a tree's pipeline has at most `algo::stream_pipeline_pieces` pieces.
inline std::size_t default_chunk_bytes(schedule::algorithm a, bool stream_ordered,
                                       std::size_t bytes) noexcept {
  const auto tree_piece = [&](std::size_t host) {
    if (!stream_ordered) return host;
    const std::size_t n = algo::stream_pipeline_pieces;
    return std::max(host, (bytes + n - 1) / n);
  };
  switch (a) {
    case schedule::algorithm::ring:
      return stream_ordered ? 0 : algo::ring::host_chunk_bytes;
    case schedule::algorithm::hierarchical:
      return stream_ordered ? 0 : algo::hierarchical::host_chunk_bytes;
    case schedule::algorithm::tree:
      return tree_piece(algo::tree::host_chunk_bytes);
    case schedule::algorithm::double_binary_tree:
      return tree_piece(algo::double_binary_tree::host_chunk_bytes);
    default:
      return 0;
  }
}

/// The name chorus reports a transport by ("shm", "ucx", ...; "custom" for others).
template <class Transport>
constexpr std::string_view transport_name() noexcept {
  if constexpr (requires { Transport::debug_name; }) {
    return Transport::debug_name;
  } else {
    return "custom";
  }
}

/// The query a tuner is asked for a call of `kind` on `bytes` (one rank's full vector).
template <class Transport>
schedule::tuning_query tuning_query_for(const communicator<Transport>& comm,
                                        schedule::collective kind, std::size_t bytes) {
  schedule::tuning_query q;
  q.kind = kind;
  q.bytes = bytes;
  q.ranks = comm.size();
  // A call posted as a request runs two-sided: the one-sided path keeps its staging window
  // with the communicator and cannot interleave with other operations.
  q.mapped_windows = mapped_window_transport<Transport> && comm.posting() == nullptr;
  q.hosts = comm.host_count();
  q.min_ranks_per_host = comm.min_ranks_per_host();
  return q;
}

/// The model's view of query `q` on `comm`, with the choice its tuner makes: a
/// `model_tuner`'s own, or the default rule's (or a custom tuner's) with the model's
/// predictions of every candidate under the transport's built-in profile.
template <class Transport>
schedule::tuning_explanation explain_query(const communicator<Transport>& comm,
                                           const schedule::tuning_query& q) {
  const schedule::tuner& tuner = comm.options().tuner;
  if (const auto* model = tuner.template target<schedule::model_tuner>()) return model->explain(q);
  schedule::tuning_explanation e =
      schedule::explain(q, schedule::builtin_profile(transport_name<Transport>()));
  e.choice = tuner ? tuner(q) : schedule::default_tuning(q);
  e.chooser = tuner ? "custom tuner" : "default rule";
  return e;
}

/// What the communicator's tuner (or the default rule) picks for `call`; with
/// `CHORUS_DEBUG=tuning`, explained the first time a call of its shape comes.
template <class Transport>
schedule::tuning_choice tune(const communicator<Transport>& comm, const collective_call& call) {
  const schedule::tuning_query q = tuning_query_for(comm, call.kind, call_bytes(call));
  // Explained (and so predicted: simulations) only the first time a shape comes.
  if (tuning_debug_on() && first_of_shape(transport_name<Transport>(), q)) {
    const schedule::tuning_explanation e = explain_query(comm, q);
    emit_tuning(comm.rank(), comm.size(), transport_name<Transport>(), e);
    return e.choice;
  }
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
  // "chorus::all_to_all: algorithm ring cannot ..." or "...: the tuner chose ring, which
  // cannot"; made only for an error (every call passes here: a string per call was a few
  // percent of a small all-reduce)
  const auto chosen = [&] {
    return std::string("chorus::") + call.api + ": " +
           (automatic ? "the tuner chose " : "algorithm ") + std::string(schedule::name(a)) +
           (automatic ? ", which" : "");
  };
  if (!schedule::supports(a, call.kind)) {  // reachable through algo::dynamic or a tuner
    throw error(errc::invalid_argument,
                chosen() + " cannot run " + std::string(schedule::name(call.kind)) +
                    "; use one of: " + schedule::algorithms_running(call.kind) + ", or automatic");
  }
  if (a == schedule::algorithm::one_sided && !one_sided_transport<Transport>) {
    throw error(errc::invalid_argument,
                chosen() +
                    " needs a transport with windows (shm_transport, ucx_transport); "
                    "pick another algorithm");
  }
  if (chunk_bytes == 0) {
    chunk_bytes = default_chunk_bytes(a, stream_ordered_transport<Transport>, call_bytes(call));
  }
  call.algorithm = a;
  call.chunk_count = chunk_bytes == 0 ? 0 : std::max<std::size_t>(1, chunk_bytes / call.elem_size);
  return a;
}

}  // namespace chorus::inline v0::detail

namespace chorus::inline v0 {

/// What the cost model predicts for every algorithm that could run `kind` on `bytes` (one
/// rank's full vector, as the tuner sizes a call: the whole output of an all-gather) on
/// `comm`, fastest first, and what the communicator's tuner chooses (docs/tuning.md). A
/// local computation: no rank talks to another.
template <class Transport>
schedule::tuning_explanation explain(const communicator<Transport>& comm, schedule::collective kind,
                                     std::size_t bytes) {
  return detail::explain_query(comm, detail::tuning_query_for(comm, kind, bytes));
}

}  // namespace chorus::inline v0

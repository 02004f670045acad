#pragma once
/// \file
/// `chorus::barrier`: no rank leaves before every rank has entered.
///
/// **Collective.** Every rank calls it with the same algorithm.
///
/// **Completion.** Returns once every rank of the communicator has called it. Moves no
/// data (zero-byte messages only).
///
/// **Errors.** `timeout` when a rank does not arrive before the deadline, `peer_lost`,
/// `aborted`, `mismatch` (with `CHORUS_CHECK=1`).
#include <chorus/communicator.hpp>
#include <chorus/dispatch/algo.hpp>
#include <chorus/dispatch/launch.hpp>

namespace chorus::inline v0 {

namespace detail {
struct barrier_fn {
  template <transport Transport, algo::tag Algo = algo::automatic>
  void operator()(communicator<Transport>& comm, Algo a = {}) const {
    algo::require_can_run<Algo, schedule::collective::barrier>();
    collective_call call =
        make_call<std::uint8_t>(schedule::collective::barrier, "barrier", {}, {});
    set_algorithm(call, a);
    run_collective(comm, call);
  }
};
}  // namespace detail

/// Blocks until every rank of the communicator has entered the barrier.
inline constexpr detail::barrier_fn barrier{};

}  // namespace chorus::inline v0

#pragma once
/// \file
/// What every collective does around its work, whether it runs at once (`launch.hpp`) or
/// as a request (`progress.hpp`): settle the algorithm and take a sequence number
/// (`begin_call`), and turn a failure into an error with context that poisons the
/// communicator (`with_call_context`).
#include <chorus/communicator.hpp>
#include <chorus/core/error.hpp>
#include <chorus/dispatch/call.hpp>
#include <chorus/dispatch/fingerprint.hpp>
#include <chorus/dispatch/tuner.hpp>
#include <chorus/schedule/schedule.hpp>

#include <cstdint>
#include <exception>
#include <string>

namespace chorus::inline v0::detail {

/// Runs `body()`, the work of one collective described by `fp`; a failure becomes a
/// `chorus::error` that names the rank, the call and (for a timeout) what to check, and it
/// poisons the communicator (which aborts the group) before it propagates.
template <class Comm, class Body>
void with_call_context(Comm& comm, const collective_call& call, const fingerprint& fp,
                       Body&& body) {
  // "chorus: rank 2: all_gather_v #7 (ring, float32, count 96)": the public name, then the
  // call as its fingerprint describes it. Built only on failure: not on the hot path.
  auto context = [&] {
    const std::string described = describe(fp);
    std::string who = "chorus: rank " + std::to_string(comm.rank());
    if (comm.world_rank() != comm.rank())
      who += " (world rank " + std::to_string(comm.world_rank()) + ")";
    return who + ": " + call.api + " " + described.substr(described.find('#'));
  };
  try {
    body();
  } catch (const error& e) {
    std::string message = context() + ": " + e.what();
    if (is_own_timeout(e)) {
      message += " (waited " + to_string(comm.options().timeout) +
                 "); the peer may be stuck or may not be calling the same collective "
                 "(CHORUS_CHECK=1 verifies that), or raise CHORUS_TIMEOUT if it is only slow";
    }
    error wrapped(e.value(), std::move(message));
    comm.fail(wrapped);
    throw wrapped;
  } catch (const std::exception& e) {
    error wrapped(errc::transport, context() + ": internal failure: " + e.what());
    comm.fail(wrapped);
    throw wrapped;
  }
}

/// What a call settles before it moves a byte: its algorithm, sequence number and
/// fingerprint.
struct call_start {
  schedule::algorithm algorithm;
  std::uint32_t sequence;
  fingerprint fp;
};

/// Starts `call` on `comm`, host or stream path alike: fails at once on a poisoned
/// communicator, starts the traffic count, fills the rank and size, settles the algorithm
/// (an `invalid_argument` here leaves the communicator usable: no sequence number was
/// taken) and takes the next sequence number.
template <class Transport>
call_start begin_call(communicator<Transport>& comm, collective_call& call) {
  comm.throw_if_poisoned();
  // A posted call's bytes are counted as they move (traffic(), not last_traffic()).
  if (comm.posting() == nullptr) comm.start_traffic();
  call.rank = comm.rank();
  call.size = comm.size();
  call.hosts = comm.hosts();
  const schedule::algorithm a = resolve_algorithm(comm, call);
  const std::uint32_t sequence = comm.next_sequence();
  return {a, sequence, make_fingerprint(call, a, sequence)};
}

}  // namespace chorus::inline v0::detail

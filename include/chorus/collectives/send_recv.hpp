#pragma once
/// \file
/// `chorus::send` and `chorus::recv`: blocking point-to-point messages between two ranks.
///
/// **Matching.** A `recv(comm, buf, src, tag)` takes the oldest unmatched message that
/// `src` sent to this rank with the same `tag` (0 by default); messages with equal (source,
/// destination, tag) arrive in the order they were sent. The element count must be the same
/// on both sides. User tags live apart from collective traffic: they never match a message
/// of a collective.
///
/// **Completion.** `send` returns once the buffer may be reused: small messages are
/// buffered (like MPI's eager protocol), large ones wait until the receiver has taken them,
/// so two ranks that both send a large message to each other before receiving deadlock --
/// and fail with `timeout` at the deadline instead of hanging. `recv` returns once the data
/// is in the buffer.
///
/// **Errors.** `invalid_argument` for a peer that is not another rank; `mismatch` when the
/// sizes differ; `timeout`, `peer_lost`, `aborted`. A failure poisons the communicator.
#include <chorus/communicator.hpp>
#include <chorus/core/buffer.hpp>
#include <chorus/exec/executor.hpp>
#include <chorus/transport/kit/tags.hpp>

#include <cstdint>
#include <string>

namespace chorus::inline v0 {

namespace detail {
template <class Transport, class Post>
void point_to_point(communicator<Transport>& comm, const char* api, int peer, std::uint32_t tag,
                    Post post) {
  comm.throw_if_poisoned();
  check_peer(api, peer, comm.rank(), comm.size());
  comm.start_traffic();
  try {
    request_set<Transport> pending(comm.transport());
    pending.push(post(comm.transport(), user_tag(tag)));
    comm.transport().wait(pending[0], comm.make_deadline());
    pending.completed_below(1);
  } catch (const error& e) {
    error wrapped(e.value(), "chorus: rank " + std::to_string(comm.rank()) + ": " + api +
                                 " (peer " + std::to_string(peer) + ", tag " + std::to_string(tag) +
                                 "): " + e.what());
    comm.fail(wrapped);
    throw wrapped;
  }
}

struct send_fn {
  template <transport Transport, buffer In>
  void operator()(communicator<Transport>& comm, In&& in, int peer, std::uint32_t tag = 0) const {
    const auto s = as_const_span(in);
    point_to_point(comm, "send", peer, tag, [&](Transport& t, tag_t wire) {
      auto request = t.isend(peer, wire, std::as_bytes(s));
      comm.count_sent(s.size_bytes());
      return request;
    });
  }
};

struct recv_fn {
  template <transport Transport, buffer Out>
  void operator()(communicator<Transport>& comm, Out&& out, int peer, std::uint32_t tag = 0) const {
    const auto s = as_span(out);
    point_to_point(comm, "recv", peer, tag, [&](Transport& t, tag_t wire) {
      auto request = t.irecv(peer, wire, std::as_writable_bytes(s));
      comm.count_received(s.size_bytes());
      return request;
    });
  }
};
}  // namespace detail

/// Sends `in` to rank `peer` with `tag`; returns when `in` may be reused.
inline constexpr detail::send_fn send{};
/// Receives from rank `peer` with `tag` into `out`; the sizes must match.
inline constexpr detail::recv_fn recv{};

}  // namespace chorus::inline v0

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
/// and fail with `timeout` at the deadline instead of hanging; `sendrecv`, or `isend` /
/// `irecv` / `batch_isend_irecv` (collectives/nonblocking.hpp) exchange without that risk.
/// `recv` returns once the data is in the buffer.
///
/// **Errors.** `invalid_argument` for a peer that is not another rank; `mismatch` when the
/// sizes differ; `timeout`, `peer_lost`, `aborted`. A failure poisons the communicator.
#include <chorus/communicator.hpp>
#include <chorus/core/buffer.hpp>
#include <chorus/core/request.hpp>
#include <chorus/dispatch/progress.hpp>
#include <chorus/exec/executor.hpp>
#include <chorus/transport/kit/tags.hpp>

#include <cstdint>
#include <span>
#include <string>
#include <type_traits>

namespace chorus::inline v0 {

namespace detail {
/// One blocking send (`bytes` read-only) or receive (`bytes` writable) of user traffic.
template <class Transport, class Byte>
void point_to_point(communicator<Transport>& comm, const char* api, int peer, std::uint32_t tag,
                    std::span<Byte> bytes) {
  comm.throw_if_poisoned();
  check_peer(api, peer, comm.rank(), comm.size());
  if (comm.engine() != nullptr && comm.engine()->busy()) {
    // Requests are in flight (the progress thread may be in the transport): this transfer
    // goes through the engine too, in order with the isend/irecv posted before it.
    transfer x;
    x.send = std::is_const_v<Byte>;
    x.peer = peer;
    x.tag = tag;
    x.data = const_cast<std::byte*>(reinterpret_cast<const std::byte*>(bytes.data()));
    x.bytes = bytes.size();
    request(post_transfers(comm, api, {x})).wait();
    return;
  }
  comm.start_traffic();
  try {
    Transport& t = comm.transport();
    request_set<Transport> pending(t);
    if constexpr (std::is_const_v<Byte>) {
      pending.push(t.isend(peer, user_tag(tag), bytes));
      comm.count_sent(bytes.size());
    } else {
      pending.push(t.irecv(peer, user_tag(tag), bytes));
      comm.count_received(bytes.size());
    }
    t.wait(pending[0], comm.make_deadline());
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
    point_to_point(comm, "send", peer, tag, std::as_bytes(as_const_span(in)));
  }
  /// Pointer and count.
  template <transport Transport, transferable T>
  void operator()(communicator<Transport>& comm, const T* data, std::size_t count, int peer,
                  std::uint32_t tag = 0) const {
    (*this)(comm, std::span<const T>(data, count), peer, tag);
  }
};

struct recv_fn {
  template <transport Transport, buffer Out>
  void operator()(communicator<Transport>& comm, Out&& out, int peer, std::uint32_t tag = 0) const {
    point_to_point(comm, "recv", peer, tag, std::as_writable_bytes(as_span(out)));
  }
  /// Pointer and count.
  template <transport Transport, transferable T>
  void operator()(communicator<Transport>& comm, T* data, std::size_t count, int peer,
                  std::uint32_t tag = 0) const {
    (*this)(comm, std::span<T>(data, count), peer, tag);
  }
};
}  // namespace detail

/// Sends `in` to rank `peer` with `tag`; returns when `in` may be reused.
inline constexpr detail::send_fn send{};
/// Receives from rank `peer` with `tag` into `out`; the sizes must match.
inline constexpr detail::recv_fn recv{};

}  // namespace chorus::inline v0

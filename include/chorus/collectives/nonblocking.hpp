#pragma once
/// \file
/// Nonblocking forms of every collective and of point-to-point messages: each returns a
/// `chorus::request` (core/request.hpp) at once and runs while the caller goes on.
///
///     chorus::request r = chorus::iall_reduce(comm, grads, chorus::plus{});
///     compute();                                  // the all-reduce moves meanwhile
///     r.wait();                                   // grads holds the sum
///
/// **Arguments.** Exactly those of the blocking form (`iall_reduce` takes what
/// `all_reduce` takes, an algorithm tag included), plus an optional `chorus::priority` as
/// the last argument. They are checked when the call is posted: `invalid_argument` is
/// thrown by the nonblocking call itself and leaves the communicator usable. The buffers
/// must stay alive and untouched (the output unread, the input unmodified) until the
/// request completes; counts and the op object are copied.
///
/// **Collective.** Every rank posts the same collectives in the same order, as for the
/// blocking forms; blocking and nonblocking calls may be mixed (a blocking call made while
/// requests are in flight is queued behind them). Requests may be waited for in any order.
///
/// **Order, priority, progress.** Calls of equal priority run in the order they were
/// posted; a higher `chorus::priority` is served first, step by step (a step is one chunk
/// of a pipelined algorithm). Who moves the bytes: the communicator's progress thread
/// (default) or the caller's `test()` / `wait()` (`communicator_options::progress`,
/// `CHORUS_PROGRESS`). Details: `docs/collectives.md`, "Nonblocking forms".
///
/// **Errors.** A failure while the call runs is thrown by `wait()` / `test()` with the
/// blocking form's message, and poisons the communicator as it would.
///
/// **Not here.** Compressed collectives (a policy argument) and `algo::one_sided` have no
/// nonblocking form (compile-time errors say so); streams (NCCL) are already asynchronous.
#include <chorus/collectives/all_gather.hpp>
#include <chorus/collectives/all_reduce.hpp>
#include <chorus/collectives/all_to_all.hpp>
#include <chorus/collectives/barrier.hpp>
#include <chorus/collectives/broadcast.hpp>
#include <chorus/collectives/gather.hpp>
#include <chorus/collectives/policy.hpp>
#include <chorus/collectives/reduce.hpp>
#include <chorus/collectives/reduce_scatter.hpp>
#include <chorus/collectives/scatter.hpp>
#include <chorus/collectives/send_recv.hpp>
#include <chorus/communicator.hpp>
#include <chorus/core/buffer.hpp>
#include <chorus/core/request.hpp>
#include <chorus/dispatch/algo.hpp>
#include <chorus/dispatch/progress.hpp>

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <span>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

namespace chorus::inline v0 {

namespace detail {

template <class T>
inline constexpr bool is_priority_v = std::same_as<std::remove_cvref_t<T>, priority>;

/// The nonblocking form of the blocking entry point `Blocking`: runs it with the
/// communicator in posting mode, so that dispatch posts the call instead of running it.
template <class Blocking>
struct nonblocking_fn {
  template <transport Transport, class... Args>
  [[nodiscard]] request operator()(communicator<Transport>& comm, Args&&... args) const {
    static_assert(!(collective_policy<Args> || ...),
                  "chorus: compressed collectives (a policy argument) have no nonblocking form "
                  "yet; call the blocking form");
    static_assert(!(std::same_as<std::remove_cvref_t<Args>, algo::one_sided> || ...),
                  "chorus: algo::one_sided has no nonblocking form (its staging window belongs "
                  "to the communicator, one call at a time); use another algorithm or automatic");
    if constexpr (sizeof...(Args) > 0) {
      if constexpr (is_priority_v<std::tuple_element_t<sizeof...(Args) - 1, std::tuple<Args...>>>) {
        auto all = std::forward_as_tuple(std::forward<Args>(args)...);
        return post_without_last(comm, all, std::make_index_sequence<sizeof...(Args) - 1>{});
      } else {
        return post(comm, 0, std::forward<Args>(args)...);
      }
    } else {
      return post(comm, 0);
    }
  }

  /// Stream-ordered communicators (NCCL) enqueue on a stream already.
  template <stream_ordered_transport Transport, class... Args>
  requires(!transport<Transport>) void operator()(communicator<Transport>&, Args&&...) const {
    static_assert(!stream_ordered_transport<Transport>,
                  "chorus: on a stream-ordered communicator (NCCL) the collectives are "
                  "asynchronous already: call the form with a stream, and synchronise the "
                  "stream to wait");
  }

 private:
  template <class Transport, class Tuple, std::size_t... I>
  static request post_without_last(communicator<Transport>& comm, Tuple& all,
                                   std::index_sequence<I...>) {
    const int p = std::get<sizeof...(I)>(all).value;
    return post(comm, p, std::forward<std::tuple_element_t<I, Tuple>>(std::get<I>(all))...);
  }

  template <class Transport, class... Args>
  static request post(communicator<Transport>& comm, int p, Args&&... args) {
    posting slot;
    slot.priority = p;
    comm.set_posting(&slot);
    struct restore {
      communicator<Transport>& c;
      ~restore() { c.set_posting(nullptr); }
    } guard{comm};
    Blocking{}(comm, std::forward<Args>(args)...);
    return request(std::move(slot.op));
  }
};

/// A nonblocking send or receive of user traffic.
template <bool Send>
struct nonblocking_transfer_fn {
  template <transport Transport, buffer Buffer>
  [[nodiscard]] request operator()(communicator<Transport>& comm, Buffer&& b, int peer,
                                   std::uint32_t tag = 0) const {
    const char* api = Send ? "isend" : "irecv";
    comm.throw_if_poisoned();
    check_peer(api, peer, comm.rank(), comm.size());
    transfer x;
    x.send = Send;
    x.peer = peer;
    x.tag = tag;
    if constexpr (Send) {
      const auto bytes = std::as_bytes(as_const_span(b));
      x.data = const_cast<std::byte*>(bytes.data());  // only read: it is a send
      x.bytes = bytes.size();
    } else {
      const auto bytes = std::as_writable_bytes(as_span(b));
      x.data = bytes.data();
      x.bytes = bytes.size();
    }
    return request(post_transfers(comm, api, {x}));
  }

  /// Pointer and count.
  template <transport Transport, transferable T>
  [[nodiscard]] request operator()(communicator<Transport>& comm, T* data, std::size_t count,
                                   int peer, std::uint32_t tag = 0) const {
    return (*this)(comm, std::span<T>(data, count), peer, tag);
  }
};

}  // namespace detail

/// One transfer of a `batch_isend_irecv`: made by `chorus::send_op` or `chorus::recv_op`.
struct p2p_op {
  detail::transfer what;
};

/// A send of `in` to `peer` with `tag`, for `batch_isend_irecv`.
template <buffer In>
[[nodiscard]] p2p_op send_op(In&& in, int peer, std::uint32_t tag = 0) {
  const auto bytes = std::as_bytes(detail::as_const_span(in));
  return {{true, peer, tag, const_cast<std::byte*>(bytes.data()), bytes.size()}};
}

/// A receive into `out` from `peer` with `tag`, for `batch_isend_irecv`.
template <buffer Out>
[[nodiscard]] p2p_op recv_op(Out&& out, int peer, std::uint32_t tag = 0) {
  const auto bytes = std::as_writable_bytes(detail::as_span(out));
  return {{false, peer, tag, bytes.data(), bytes.size()}};
}

/// Posts every transfer of `ops` at once (receives first) and returns one request for all
/// of them, like torch's `batch_isend_irecv` or a `ncclGroupStart`/`ncclGroupEnd` pair: a
/// ring exchange in both directions cannot deadlock, whatever the message sizes.
template <transport Transport>
[[nodiscard]] request batch_isend_irecv(communicator<Transport>& comm,
                                        std::span<const p2p_op> ops) {
  comm.throw_if_poisoned();
  std::vector<detail::transfer> transfers;
  transfers.reserve(ops.size());
  for (const p2p_op& o : ops) {
    detail::check_peer("batch_isend_irecv", o.what.peer, comm.rank(), comm.size());
    transfers.push_back(o.what);
  }
  if (transfers.empty()) return {};
  return request(detail::post_transfers(comm, "batch_isend_irecv", std::move(transfers)));
}

template <transport Transport>
[[nodiscard]] request batch_isend_irecv(communicator<Transport>& comm,
                                        std::initializer_list<p2p_op> ops) {
  return batch_isend_irecv(comm, std::span<const p2p_op>(ops.begin(), ops.size()));
}

/// Sends `in` to `dest` and receives `out` from `source` at the same time (MPI_Sendrecv);
/// returns when both are done. The classic shift of a ring or halo cannot deadlock.
template <transport Transport, buffer In, buffer Out>
void sendrecv(communicator<Transport>& comm, In&& in, int dest, Out&& out, int source,
              std::uint32_t tag = 0) {
  batch_isend_irecv(comm, {send_op(in, dest, tag), recv_op(out, source, tag)}).wait();
}

/// Nonblocking `send`: returns at once; the request completes when `in` may be reused.
inline constexpr detail::nonblocking_transfer_fn<true> isend{};
/// Nonblocking `recv`: the request completes when the message is in `out`.
inline constexpr detail::nonblocking_transfer_fn<false> irecv{};

/// Nonblocking forms of the collectives: the arguments of the blocking form, then
/// optionally a `chorus::priority`; each returns a `chorus::request`.
inline constexpr detail::nonblocking_fn<detail::all_reduce_fn> iall_reduce{};
inline constexpr detail::nonblocking_fn<detail::reduce_scatter_fn> ireduce_scatter{};
inline constexpr detail::nonblocking_fn<detail::reduce_scatter_v_fn> ireduce_scatter_v{};
inline constexpr detail::nonblocking_fn<detail::all_gather_fn> iall_gather{};
inline constexpr detail::nonblocking_fn<detail::all_gather_v_fn> iall_gather_v{};
inline constexpr detail::nonblocking_fn<detail::broadcast_fn> ibroadcast{};
inline constexpr detail::nonblocking_fn<detail::reduce_fn> ireduce{};
inline constexpr detail::nonblocking_fn<detail::barrier_fn> ibarrier{};
inline constexpr detail::nonblocking_fn<detail::all_to_all_fn> iall_to_all{};
inline constexpr detail::nonblocking_fn<detail::all_to_all_v_fn> iall_to_all_v{};
inline constexpr detail::nonblocking_fn<detail::gather_fn> igather{};
inline constexpr detail::nonblocking_fn<detail::scatter_fn> iscatter{};

}  // namespace chorus::inline v0

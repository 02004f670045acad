#pragma once
/// \file
/// Launch: where every entry point ends. From a filled call descriptor to a finished (host)
/// or enqueued (stream) collective -- the algorithm settled (`tuner.hpp`), the optional
/// fingerprint check (`fingerprint.hpp`), the schedule built from the descriptor (or kept
/// from a call of the same shape, `schedule_cache.hpp`) and run by the host, one-sided or
/// stream executor, an average finalised, failures turned into errors with context that
/// poison the communicator, and with `CHORUS_DEBUG=info` a report of the call (`debug.hpp`).
///
/// Everything here is type-erased: compiled once per transport rather than once per
/// (element type, op, algorithm).
#include <chorus/communicator.hpp>
#include <chorus/core/error.hpp>
#include <chorus/core/ops.hpp>
#include <chorus/core/split.hpp>
#include <chorus/dispatch/algo.hpp>
#include <chorus/dispatch/call.hpp>
#include <chorus/dispatch/context.hpp>
#include <chorus/dispatch/debug.hpp>
#include <chorus/dispatch/fingerprint.hpp>
#include <chorus/dispatch/progress.hpp>
#include <chorus/dispatch/schedule_cache.hpp>
#include <chorus/dispatch/tuner.hpp>
#include <chorus/exec/executor.hpp>
#include <chorus/exec/one_sided.hpp>
#include <chorus/exec/stream_executor.hpp>
#include <chorus/schedule/build.hpp>
#include <chorus/schedule/schedule.hpp>
#include <chorus/transport/contract.hpp>

#include <chrono>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace chorus::inline v0::detail {

/// The report of `call` for `CHORUS_DEBUG=info` (`debug.hpp`); `seconds` < 0: posted.
template <class Transport>
void report_call(const communicator<Transport>& comm, const collective_call& call,
                 const call_start& start, bool tuned, double seconds, bool enqueued = false,
                 bool native = false) {
  call_report r;
  r.rank = comm.rank();
  r.size = comm.size();
  r.transport = transport_name<Transport>();
  r.api = call.api;
  r.sequence = start.sequence;
  r.algorithm = start.algorithm;
  r.tuned = tuned && !native;
  r.native = native;
  r.type = call.type;
  r.bytes = call_bytes(call);
  r.count = call.elem_size == 0 ? 0 : r.bytes / call.elem_size;
  r.piece = native ? 0 : call.chunk_count;
  r.posted = seconds < 0;
  r.enqueued = enqueued;
  r.seconds = seconds < 0 ? 0 : seconds;
  if (!r.posted) {
    const struct traffic& t = comm.last_traffic();
    r.sent_bytes = t.sent_bytes;
    r.received_bytes = t.received_bytes;
    r.messages_sent = t.messages_sent;
    r.messages_received = t.messages_received;
  }
  emit(r);
}

/// Seconds since `t0`.
inline double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

/// Runs `call` one-sidedly (`exec/one_sided.hpp`); all-reduce splits the vector into P
/// near-equal blocks.
template <one_sided_transport Transport>
void run_one_sided(communicator<Transport>& comm, const collective_call& call,
                   std::uint32_t sequence) {
  std::vector<std::size_t> even;
  std::span<const std::size_t> counts = call.counts;
  if (call.kind == schedule::collective::all_reduce) {
    even = even_split{call.count, static_cast<std::size_t>(comm.size())}.sizes();
    counts = even;
  }
  execute_one_sided(comm, call.kind, call, counts, sequence);
}

/// Runs `checks`: the root's checks of its own buffers, which the other ranks cannot see.
/// When one fails, the others would go ahead without the root: those that only send to it
/// (gather, reduce) return, and their next collective fails with a misleading count
/// mismatch; those that wait for it (scatter, broadcast) wait until the deadline. So the
/// root fails the group with its `invalid_argument` (`communicator::fail`, which poisons
/// it) before throwing: every rank fails with the root's error, in this call or its next.
template <class Transport, class Checks>
void check_at_root(communicator<Transport>& comm, Checks checks) {
  try {
    checks();
  } catch (const error& e) {
    comm.fail(e);
    throw;
  }
}

/// Posts `call` as a request into `slot` (a nonblocking entry point, or a blocking call
/// made while requests are in flight).
template <transport Transport>
void post_call(communicator<Transport>& comm, collective_call& call, posting& slot) {
  const bool report = debug_on();  // first: a bad CHORUS_DEBUG throws before anything is posted
  const bool tuned = !call.algorithm.has_value();
  const call_start start = begin_call(comm, call);
  slot.op = post_collective(comm, call, start, slot.priority, std::move(slot.keep));
  if (report) report_call(comm, call, start, tuned, -1);
}

/// Runs one collective on a host transport: the single path every host entry point ends in.
/// A nonblocking entry point has set `comm.posting()`: the call is posted instead. While
/// requests are in flight, a blocking call is posted behind them and waited for (issue
/// order; one thread at a time in the transport), except a named `one_sided` call, which
/// first completes them and then runs alone.
template <transport Transport>
void run_collective(communicator<Transport>& comm, collective_call& call) {
  if (posting* slot = comm.posting(); slot != nullptr) {
    post_call(comm, call, *slot);
    return;
  }
  if (comm.engine() != nullptr && comm.engine()->busy()) {
    if (call.algorithm == schedule::algorithm::one_sided) {
      comm.drain_requests();
    } else {
      posting own;
      comm.set_posting(&own);
      try {
        post_call(comm, call, own);
      } catch (...) {
        comm.set_posting(nullptr);
        throw;
      }
      comm.set_posting(nullptr);
      request(own.op).wait();
      return;
    }
  }
  const int p = comm.size();
  const bool report = debug_on();
  const bool tuned = !call.algorithm.has_value();
  const auto t0 =
      report ? std::chrono::steady_clock::now() : std::chrono::steady_clock::time_point{};
  const call_start start = begin_call(comm, call);
  const schedule::algorithm a = start.algorithm;
  const std::uint32_t sequence = start.sequence;
  with_call_context(comm, call, start.fp, [&] {
    if (comm.options().check) check_fingerprint(comm, start.fp);
    if constexpr (one_sided_transport<Transport>) {
      if (a == schedule::algorithm::one_sided && p > 1) {
        run_one_sided(comm, call, sequence);
      } else {
        // one_sided at one rank is the copy of the direct schedule
        const auto family = a == schedule::algorithm::one_sided ? schedule::algorithm::direct : a;
        execute(comm, *cached_schedule(family, call), call, sequence);
      }
    } else {
      execute(comm, *cached_schedule(a, call), call, sequence);
    }
    const std::size_t n = call.finalize != nullptr ? finalize_count(call, comm.rank()) : 0;
    if (n != 0) call.finalize(call.output, n, p, call.op_object);
  });
  if (report) report_call(comm, call, start, tuned, seconds_since(t0));
}

/// Finishes `call` (op, algorithm) and runs it: where every host entry point ends.
template <class T, transport Transport, class Op, class Algo>
void launch(communicator<Transport>& comm, collective_call& call, const Op& op, const Algo& a) {
  if constexpr (std::same_as<Algo, algo::one_sided>) {
    static_assert(one_sided_transport<Transport>,
                  "chorus: algo::one_sided reads peers' windows; this transport has none "
                  "(shm_transport and ucx_transport have), so pick another algorithm.");
  }
  if constexpr (!std::same_as<Op, no_reduction>) set_op<T>(call, op);
  set_algorithm(call, a);
  if constexpr (!std::same_as<Op, no_reduction>) {
    // A posted call outlives this frame: it reduces with its own copy of the op.
    if (posting* slot = comm.posting(); slot != nullptr) {
      auto copy = std::make_shared<Op>(op);
      call.op_object = copy.get();
      slot->keep = std::move(copy);
    }
  }
  run_collective(comm, call);
}

/// A collective on a stream: the host call plus the stream-ordered kernels and the stream.
/// `native`: run the transport's own collective instead of a schedule.
template <class Stream>
struct stream_call {
  collective_call call;
  stream_reduce_fn<Stream> reduce = nullptr;
  stream_finalize_fn<Stream> finalize = nullptr;
  Stream stream{};
  bool native = false;
};

/// The transport's `device_scope()` where it has one (see `stream_ordered_transport`);
/// nothing to hold otherwise.
template <stream_ordered_transport Transport>
auto enter_device(Transport& t) {
  if constexpr (requires { t.device_scope(); }) {
    return t.device_scope();
  } else {
    return 0;
  }
}

/// Runs one stream-ordered collective: the stream path's `run_collective`. Returns once the
/// work is enqueued; errors found while enqueuing (and asynchronous ones the transport
/// reports by then) poison the communicator like any collective failure.
template <stream_ordered_transport Transport>
void run_stream_collective(communicator<Transport>& comm,
                           stream_call<typename Transport::stream_type>& sc) {
  collective_call& call = sc.call;
  const int p = comm.size();
  const bool report = debug_on();
  const bool tuned = !call.algorithm.has_value();
  const auto t0 =
      report ? std::chrono::steady_clock::now() : std::chrono::steady_clock::time_point{};
  const call_start start = begin_call(comm, call);
  const schedule::algorithm a = start.algorithm;
  with_call_context(comm, call, start.fp, [&] {
    Transport& t = comm.transport();
    // The transport's device for the whole call: scratch, copies and kernels go there even
    // when the calling thread has another device selected.
    [[maybe_unused]] const auto device = enter_device(t);
    t.poll_error();
    if (sc.native) {
      if constexpr (native_collective_transport<Transport>) {
        t.native(native_call_of(call, comm.rank()), sc.stream, comm.make_deadline());
        return;
      } else {
        throw error(errc::invalid_argument,
                    "algo::native: this transport has no collectives of its own; use one of "
                    "chorus's algorithms");
      }
    }
    const auto s = cached_schedule(a, call);
    execute_on_stream(comm, *s, call.input, call.output, call.elem_size, sc.reduce, call.op_object,
                      sc.stream);
    const std::size_t n = sc.finalize != nullptr ? finalize_count(call, comm.rank()) : 0;
    if (n != 0) sc.finalize(call.output, n, p, call.op_object, sc.stream);
    t.poll_error();
  });
  if (report) report_call(comm, call, start, tuned, seconds_since(t0), true, sc.native);
}

/// Finishes `call` (op, algorithm) and enqueues it on `stream`: where every entry point on
/// a stream-ordered communicator ends.
template <class T, stream_ordered_transport Transport, class Op, class Algo>
void launch(communicator<Transport>& comm, collective_call& call, const Op& op, const Algo& a,
            typename Transport::stream_type stream) {
  using stream_type = typename Transport::stream_type;
  stream_call<stream_type> sc{call};
  sc.stream = stream;
  if constexpr (std::same_as<Algo, algo::native>) {
    static_assert(native_collective_transport<Transport>,
                  "chorus: algo::native runs a transport's own collectives; this transport has "
                  "none (NCCL's has), so pick one of chorus's algorithms.");
    sc.native = true;
  } else {
    set_algorithm(sc.call, a);
  }
  if constexpr (!std::same_as<Op, no_reduction>) {
    sc.call.has_op = true;
    sc.call.op = op_kind_v<Op>;
    sc.call.op_object = &op;
    if constexpr (std::same_as<Algo, algo::native>) {
      // the transport reduces (and averages) itself
    } else if constexpr (has_stream_kernels<stream_type, T, Op>) {
      sc.reduce = &stream_kernels<stream_type, T, Op>::reduce;
      if constexpr (finalizing_op<Op, T>) {
        sc.finalize = &stream_kernels<stream_type, T, Op>::finalize;
      }
    } else {
      static_assert(has_stream_kernels<stream_type, T, Op>,
                    "chorus: reducing with chorus's algorithms on a stream needs the device "
                    "kernels: include <chorus/device/collectives.cuh> and compile this file "
                    "with nvcc (algo::native needs neither).");
    }
  }
  run_stream_collective(comm, sc);
}

}  // namespace chorus::inline v0::detail

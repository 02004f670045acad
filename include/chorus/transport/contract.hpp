#pragma once
/// \file
/// The transport contract: every concept a backend implements, in one place, so that every
/// algorithm runs on it unchanged. Adding a transport is one file that satisfies
/// `chorus::transport` (or `stream_ordered_transport`) and uses the shared pieces of
/// `transport/kit/`.
///
///     concept                      what it adds                         who has it
///     transport                    tagged isend/irecv/test/wait/cancel/  inproc, shm, ucx
///                                  abort with deadlines
///     rma_transport                register_window, get, put            shm, ucx
///     mapped_window_transport      allocate_window, peer_window (loads)  shm
///     one_sided_transport          either of the two above              shm, ucx
///     stream_ordered_transport     group_start/enqueue_send/recv/        nccl
///                                  group_end/cancel, copy, allocate,
///                                  poll_error
///     native_collective_transport  native(native_call, stream, until)   nccl
///     splittable_transport         split(group_spec), used_contexts()   inproc, shm, ucx
///     native_split_transport       split(color, key, deadline)          nccl
///     shrinkable_transport         recovery(), peer_gone(peer),         shm, ucx
///                                  T::rebuilt(point, rank, size, exch.)
///     any_transport                transport or stream_ordered_transport
///
/// A transport moves bytes between the ranks of one group, point to point, without
/// blocking: the executor posts receives and sends, then completes them with `test` and
/// `wait`. Progress is driven by the caller: `test` and `wait` are where a transport that
/// needs polling (UCX's `ucp_worker_progress`, a shared-memory ring) does its work; a
/// transport with its own progress thread may make them trivial. Nothing may wait forever:
/// `wait` takes a deadline, and `abort` (callable from any thread) makes every pending and
/// future wait of every rank of the group fail promptly.
///
/// Matching: a receive from `peer` with `tag` matches the oldest unmatched send from `peer`
/// to this rank with the same tag. Messages with equal (source, destination, tag) never
/// overtake each other. A receive whose size differs from the matching send's fails with
/// `errc::mismatch` (on the receiving side; the sending side may complete).
///
/// Refinements (see docs/design.md for how shared memory, UCX and NCCL map onto them):
///  - `rma_transport`: memory registered through the transport is readable and writable by
///    peers with one-sided `get`/`put`, so `direct` algorithms can reduce straight out of
///    peers' buffers;
///  - `mapped_window_transport`: windows peers load and store as plain memory;
///  - `stream_ordered_transport`: work is enqueued on a device stream instead of completed
///    on the host (NCCL); executed by the stream-ordered executor, not the host one;
///  - `native_collective_transport`: the transport runs whole collectives itself.
#include <chorus/bootstrap/store.hpp>
#include <chorus/core/deadline.hpp>
#include <chorus/core/error.hpp>
#include <chorus/core/ops.hpp>
#include <chorus/core/types.hpp>
#include <chorus/schedule/schedule.hpp>
#include <chorus/transport/kit/exchange.hpp>
#include <chorus/transport/kit/group_view.hpp>

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace chorus::inline v0 {

namespace detail {
/// Throws `invalid_argument` unless `peer` is another rank of a group of `size`: what every
/// transport checks before posting ("rank 2: cannot send to rank 7; peers are 0..3 ...").
inline void check_transport_peer(int rank, int size, int peer, const char* what) {
  if (peer < 0 || peer >= size || peer == rank) {
    throw error(errc::invalid_argument, "rank " + std::to_string(rank) + ": cannot " + what +
                                            " rank " + std::to_string(peer) + "; peers are 0.." +
                                            std::to_string(size - 1) +
                                            " other than the rank itself");
  }
}
}  // namespace detail

/// A point-to-point backend: non-blocking tagged sends and receives with deadlines.
///
/// `T::request` is a movable handle to one posted operation. `test` returns true once the
/// operation completed (and drives progress); `wait` blocks until completion or throws
/// `chorus::error` (`timeout` at the deadline, `aborted` / `peer_lost` when the group
/// failed, `mismatch` on a size mismatch). `cancel` withdraws an operation that has not
/// completed (used when a collective unwinds after an error) and returns only once the
/// transport no longer touches the operation's buffer; it never throws. `abort` poisons the
/// whole group with a reason; it never blocks and may be called from any thread.
///
/// Optional: `bool try_wait(request&, deadline)`, a `wait` that returns false at the
/// deadline instead of failing (nothing is reported to peers; a lost peer or an abort still
/// throw). The progress engine of nonblocking calls sleeps in it between rounds that moved
/// nothing (dispatch/progress.hpp); without it, the engine polls `test`.
template <class T>
concept transport = std::movable<T> &&
    requires(T& t, const T& ct, typename T::request& req, int peer, tag_t tag,
             std::span<const std::byte> send_bytes, std::span<std::byte> recv_bytes, deadline d,
             std::string_view reason) {
  typename T::request;
  requires std::movable<typename T::request>;
  { ct.rank() } -> std::convertible_to<int>;
  { ct.size() } -> std::convertible_to<int>;
  { t.isend(peer, tag, send_bytes) } -> std::same_as<typename T::request>;
  { t.irecv(peer, tag, recv_bytes) } -> std::same_as<typename T::request>;
  { t.test(req) } -> std::same_as<bool>;
  { t.wait(req, d) } -> std::same_as<void>;
  { t.cancel(req) }
  noexcept;
  { t.abort(reason) }
  noexcept;
};

/// A transport whose peers can read and write registered memory one-sidedly.
///
/// `register_window(bytes)` is collective over the group (every rank calls it in the same
/// order) and returns a handle naming that memory on every rank; `get`/`put` move bytes
/// between local memory and a peer's window at an offset and return a request completed
/// with `test`/`wait` like any other. Shared memory maps peers' segments (or uses
/// cross-memory attach); UCX uses `ucp_mem_map` + rkeys + `ucp_get_nbx`/`ucp_put_nbx`.
template <class T>
concept rma_transport = transport<T> &&
    requires(T& t, std::span<std::byte> local, std::span<const std::byte> src, int peer,
             std::size_t offset, typename T::window& w) {
  typename T::window;
  { t.register_window(local) } -> std::same_as<typename T::window>;
  { t.get(w, peer, offset, local) } -> std::same_as<typename T::request>;
  { t.put(w, peer, offset, src) } -> std::same_as<typename T::request>;
};

/// A transport that enqueues work on a device stream instead of completing it on the host.
///
/// Between `group_start` and `group_end(until)` the executor enqueues the sends and receives
/// of one schedule step (NCCL: `ncclGroupStart`, `ncclSend`/`ncclRecv`, `ncclGroupEnd`);
/// reductions are enqueued as kernels on the same stream. Nothing synchronises with the host
/// inside a collective, so a CUDA graph can capture it. `group_end` may still have to wait
/// on the host for the transport to take the group -- NCCL connects to a peer on the first
/// use of the pair, which needs that peer to arrive -- and it waits at most until `until`,
/// the communicator's deadline, so that a peer that is late but within the communicator's
/// timeout is waited for. When enqueuing fails between the two (a bad peer, a failed
/// `ncclSend`, an allocation), the executor calls `group_cancel()` instead of `group_end`:
/// it closes the transport's group whatever it holds, never throws, and leaves the
/// communicator to the failure path, which aborts it (the group's messages cannot be
/// matched any more). `poll_error` reports an asynchronous failure (NCCL:
/// `ncclCommGetAsyncError`) and is what the host polls under a deadline.
///
/// Matching has no tags: the k-th send from rank a to rank b matches the k-th receive of b
/// from a (NCCL's rule), and a group's sends and receives complete together, a send only
/// once its receiver has taken it (rendezvous, as NCCL's large messages). Every chorus
/// schedule lists each pair's messages in the same order on both sides, which a test
/// checks for every algorithm. Byte spans name memory the transport can reach (NCCL:
/// device memory of the communicator's device).
///
/// The executor also needs stream-ordered memory from the transport: `allocate(bytes,
/// stream)` returns scratch usable by work enqueued on `stream` after the call and
/// `deallocate(p, stream)` releases it after the work enqueued before (NCCL:
/// `cudaMallocAsync` / `cudaFreeAsync`, which a CUDA graph can capture), and
/// `copy(dst, src, stream)` enqueues a local copy (`cudaMemcpyAsync`).
///
/// Optional: `device_scope()`, returning an object that makes the transport's device the
/// calling thread's current one while it lives (NCCL: `cudaSetDevice` to the
/// communicator's device, restored after). The executor holds one around a whole
/// collective, so that its kernels and scratch land on the communicator's device whatever
/// device the thread had selected.
template <class T>
concept stream_ordered_transport = std::movable<T> &&
    requires(T& t, const T& ct, typename T::stream_type stream, int peer,
             std::span<const std::byte> send_bytes, std::span<std::byte> recv_bytes,
             std::size_t bytes, std::byte* memory, std::string_view reason, deadline until) {
  typename T::stream_type;
  { ct.rank() } -> std::convertible_to<int>;
  { ct.size() } -> std::convertible_to<int>;
  { t.group_start() } -> std::same_as<void>;
  { t.enqueue_send(peer, send_bytes, stream) } -> std::same_as<void>;
  { t.enqueue_recv(peer, recv_bytes, stream) } -> std::same_as<void>;
  { t.group_end(until) } -> std::same_as<void>;
  { t.group_cancel() }
  noexcept;
  { t.copy(recv_bytes, send_bytes, stream) } -> std::same_as<void>;
  { t.allocate(bytes, stream) } -> std::same_as<std::byte*>;
  { t.deallocate(memory, stream) }
  noexcept;
  { t.poll_error() } -> std::same_as<void>;
  { t.abort(reason) }
  noexcept;
};

/// A transport whose windows every rank can also load and store directly, as plain memory
/// (`shm_transport`: every rank maps every window). `allocate_window(bytes, deadline)` is
/// collective like `register_window`; `peer_window(w, q)` is where rank q's window is
/// mapped in this process.
template <class T>
concept mapped_window_transport = transport<T> &&
    requires(T& t, const T& ct, typename T::window w, std::size_t n, int peer, deadline d) {
  { t.allocate_window(n, d) } -> std::same_as<typename T::window>;
  { ct.peer_window(w, peer) } -> std::same_as<std::byte*>;
};

/// A transport that `algo::one_sided` runs on: mapped windows, or windows peers read with
/// `get`.
template <class T>
concept one_sided_transport = mapped_window_transport<T> || rma_transport<T>;

/// One collective handed whole to a transport that has collectives of its own
/// (`algo::native`: NCCL's `ncclAllReduce`, ...). `count` is elements per rank: the whole
/// vector for all-reduce, broadcast and reduce, one rank's block for reduce-scatter and
/// all-gather (native collectives take equal blocks only). `input` and `output` are memory
/// the transport reaches (device memory for NCCL).
struct native_call {
  schedule::collective kind = schedule::collective::all_reduce;
  dtype type = dtype::uint8;
  op_kind op = op_kind::custom;  ///< the reduction (reducing collectives only)
  const void* input = nullptr;
  void* output = nullptr;
  std::size_t count = 0;
  int root = 0;
};

/// A stream-ordered transport with collectives of its own, for `algo::native`:
/// `native(call, stream, until)` enqueues `call` on `stream` and throws `invalid_argument`
/// naming what it cannot run (a custom op, an element type it lacks, a collective it has
/// not). Like `group_end`, it may wait on the host for the transport to take the call (NCCL
/// connecting on first use), at most until `until`.
template <class T>
concept native_collective_transport = stream_ordered_transport<T> &&
    requires(T& t, const native_call& call, typename T::stream_type stream, deadline until) {
  { t.native(call, stream, until) } -> std::same_as<void>;
};

/// A group of a transport's ranks, as every rank of the parent agreed on it
/// (`communicator::split` / `subgroup`, group/split.hpp).
struct group_spec {
  std::vector<int> members;   ///< the parent's ranks that form the group, in group rank order
  int rank = 0;               ///< this rank's place in `members`
  std::uint32_t context = 0;  ///< free on every member: keeps the group's messages apart
  int color = 0;              ///< as passed to `split` (for transports that split natively)
  int key = 0;
};

/// A transport that serves groups of its ranks over its own channels: `split(spec)` returns
/// a transport for the group (sharing this one's channels; collective only in that every
/// member calls it after the same agreement), and `used_contexts()` the contexts this rank
/// uses (kit/group_view.hpp). Adding it to a transport is a `kit::group_view` member that
/// maps group ranks to world ranks and puts the context into tags.
template <class T>
concept splittable_transport = transport<T> && requires(T& t, const T& ct, const group_spec& g) {
  { t.split(g) } -> std::same_as<T>;
  { ct.used_contexts() } -> std::same_as<kit::context_mask>;
  { ct.world_rank() } -> std::convertible_to<int>;
};

/// A transport that makes groups of its ranks itself (NCCL: `ncclCommSplit`) instead of
/// serving them over its own channels: `split(color, key, until)` is collective over this
/// transport's ranks; the ranks that pass the same `color` (>= 0) form a group ordered by
/// `key`, then by rank here, returned as a new transport; a negative color joins none
/// (nullopt). Ranks cannot check each other's arguments on the way (a different list in a
/// subgroup shows as a group of another size, group/split.hpp); a rank that never calls it
/// fails the others at `until` with `errc::timeout`. A failure of the new transport and of
/// this one (an abort, a timeout) aborts both, as a group's does on the other transports.
template <class T>
concept native_split_transport = std::movable<T> &&
    requires(T& t, const T& ct, int color, int key, deadline until) {
  { t.split(color, key, until) } -> std::same_as<std::optional<T>>;
  { ct.world_rank() } -> std::convertible_to<int>;
};

/// Where a transport's group can be rebuilt from after a failure (`communicator::shrink`,
/// group/shrink.hpp): the job's store, which outlives any rank but the one serving it, and
/// this group's own key prefix in it. A transport made from a `bootstrap::world` has one.
struct recovery_point {
  bootstrap::any_store store;
  std::string prefix;  ///< e.g. `chorus/<job>/shm/comm0`; unique to this group in the job
  std::string job;     ///< the job token (names shared-memory segments)

  /// Where a job's communicator `instance` of transport `kind` ("shm", "ucx") meets:
  /// `chorus/<job>/<kind>/<instance>`.
  static recovery_point of_job(bootstrap::any_store store, const std::string& job,
                               std::string_view kind, std::string_view instance) {
    return {std::move(store),
            "chorus/" + job + "/" + std::string(kind) + "/" + std::string(instance), job};
  }
};

/// A transport whose group can be rebuilt over the ranks still alive after one dies
/// (`communicator::shrink`, group/shrink.hpp):
///  - `recovery()`: where it was made from (null when it was made without a store, e.g.
///    from a bare `blob_exchange`, or is a group made by `split`: those cannot shrink);
///  - `peer_gone(peer)`: whether `peer` is known to be gone: its process exited (a pidfd on
///    the same host), or the transport saw its connection fail (what a process on another
///    host that dies leaves behind); false when it is alive or cannot be told, so a rank
///    that cannot be probed is waited for until the shrink's deadline;
///  - `T::rebuilt(point, rank, size, exchange)`: a new transport of `size` ranks, with new
///    channels, that finds its peers through `exchange` and can shrink again from `point`.
template <class T>
concept shrinkable_transport = transport<T> &&
    requires(const T& ct, int peer, recovery_point point, int rank, const blob_exchange& e) {
  { ct.recovery() } -> std::same_as<const recovery_point*>;
  { ct.peer_gone(peer) } -> std::same_as<bool>;
  { T::rebuilt(std::move(point), rank, rank, e) } -> std::same_as<T>;
};

/// What a communicator can be built on: a host transport or a stream-ordered one.
template <class T>
concept any_transport = transport<T> || stream_ordered_transport<T>;

}  // namespace chorus::inline v0

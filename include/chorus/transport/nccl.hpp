#pragma once
/// \file
/// `chorus::nccl_transport`: the stream-ordered transport over NCCL (component
/// `chorus::nccl`). Host code: it needs NCCL and the CUDA runtime to link, not nvcc.
///
/// - **Start-up.** Rank 0 makes the NCCL unique id; every rank reads it through the
///   caller's `blob_exchange` (the bootstrap store) and joins with a non-blocking
///   `ncclCommInitRankConfig` on the CUDA device current at construction. The join is polled
///   under the timeout: a rank that never comes fails the others with `errc::timeout`
///   instead of hanging them.
/// - **Point to point.** `enqueue_send` / `enqueue_recv` are `ncclSend` / `ncclRecv` of
///   bytes inside `ncclGroupStart` / `ncclGroupEnd`, matched positionally per pair of ranks
///   (NCCL has no tags). The stream executor (`exec/stream_executor.hpp`) runs chorus's
///   schedules with them; reductions are the kernels of `chorus/device/` enqueued on the
///   same stream.
/// - **`algo::native`.** `native` runs NCCL's own `ncclAllReduce`, `ncclReduceScatter`,
///   `ncclAllGather`, `ncclBroadcast` and `ncclReduce`, so one program compares chorus's
///   algorithms with NCCL's. NCCL knows only its types (no 16-bit integers) and ops (sum,
///   prod, min, max, avg); anything else is `errc::invalid_argument` naming what to use.
/// - **Errors and deadlines.** Every NCCL call is checked; failures become `chorus::error`
///   with NCCL's text and last error message. The communicator is non-blocking, so no NCCL
///   call waits on peers: where NCCL answers `ncclInProgress` (joining, and a group or
///   collective that connects ranks on first use) chorus polls under the deadline the
///   caller passes -- the communicator's -- and `synchronize(stream, deadline)` waits for a
///   stream while polling `ncclCommGetAsyncError`, aborting the communicator
///   (`ncclCommAbort`) when the deadline passes. `abort` may be called from any thread: it
///   is serialised with every NCCL call on the family's communicators (one lock per
///   family, held for single calls and for a group's enqueues), so a call never runs on a
///   communicator that an abort has freed.
/// - **Teardown.** The destructor (and a move-assignment, for the communicator it
///   replaces) finalises the communicator (`ncclCommFinalize`, polled for at most the
///   timeout it was made with) and destroys it, or aborts it when a peer keeps it past that.
/// - **Groups.** `split(color, key, until)` is `ncclCommSplit` on the non-blocking
///   communicator, polled under `until` like the join (`communicator::split` and `subgroup`,
///   group/split.hpp). A communicator and the groups split from it (and from those) form a
///   family on each rank that shares one abort record and aborts every member's NCCL
///   communicator when any of them is aborted or fails.
/// - **Memory and device.** Buffers are device memory of the communicator's device. Scratch
///   comes from the stream-ordered allocator (`cudaMallocAsync` / `cudaFreeAsync`), which
///   CUDA graphs capture; the device's pool is told to keep the largest scratch asked so
///   far mapped across synchronisations (its release threshold). The stream executor holds
///   `device_scope()` around each collective, so that scratch, copies and kernels run on
///   the communicator's device whatever device the calling thread has selected.
#include <chorus/bootstrap/from_env.hpp>
#include <chorus/core/deadline.hpp>
#include <chorus/core/error.hpp>
#include <chorus/core/ops.hpp>
#include <chorus/core/types.hpp>
#include <chorus/transport/contract.hpp>
#include <chorus/transport/kit/abort_record.hpp>
#include <chorus/transport/kit/exchange.hpp>
#include <chorus/transport/kit/hex.hpp>
#include <chorus/transport/kit/wait_ladder.hpp>

#include <cuda_runtime_api.h>
#include <nccl.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

namespace chorus::inline v0 {

namespace detail::nccl {

/// NCCL's type for a chorus element type; nullopt where NCCL has none (16-bit integers).
inline std::optional<ncclDataType_t> type_of(dtype t) noexcept {
  switch (t) {
    case dtype::int8:
      return ncclInt8;
    case dtype::uint8:
      return ncclUint8;
    case dtype::int32:
      return ncclInt32;
    case dtype::uint32:
      return ncclUint32;
    case dtype::int64:
      return ncclInt64;
    case dtype::uint64:
      return ncclUint64;
    case dtype::float16:
      return ncclFloat16;
    case dtype::bfloat16:
      return ncclBfloat16;
    case dtype::float32:
      return ncclFloat32;
    case dtype::float64:
      return ncclFloat64;
    default:
      return std::nullopt;
  }
}

/// NCCL's op for a chorus op; nullopt for the bitwise and user ops.
inline std::optional<ncclRedOp_t> op_of(op_kind k) noexcept {
  switch (k) {
    case op_kind::sum:
      return ncclSum;
    case op_kind::product:
      return ncclProd;
    case op_kind::min:
      return ncclMin;
    case op_kind::max:
      return ncclMax;
    case op_kind::average:
      return ncclAvg;
    default:
      return std::nullopt;
  }
}

/// The chorus code of an NCCL failure.
inline errc code_of(ncclResult_t r) noexcept {
  switch (r) {
    case ncclInvalidArgument:
    case ncclInvalidUsage:
      return errc::invalid_argument;
    case ncclRemoteError:
      return errc::peer_lost;
    default:
      return errc::transport;
  }
}

/// The NCCL calls a family makes on its communicators' behalf -- an abort, and the end of a
/// communicator -- as a policy, so that tests/nccl can check the family's locking and
/// teardown against a fake without a GPU.
struct api {
  using comm_type = ncclComm_t;
  static ncclResult_t abort(ncclComm_t c) noexcept { return ncclCommAbort(c); }
  static ncclResult_t finalize(ncclComm_t c) noexcept { return ncclCommFinalize(c); }
  static ncclResult_t async_error(ncclComm_t c, ncclResult_t* r) noexcept {
    return ncclCommGetAsyncError(c, r);
  }
  static ncclResult_t destroy(ncclComm_t c) noexcept { return ncclCommDestroy(c); }
};

/// What a world communicator and every group split from it (`ncclCommSplit`) share on this
/// rank: the first abort's cause, and every live NCCL communicator of the family, so that
/// an abort of any of them (this rank's, or a failure NCCL reported) aborts them all -- a
/// failed parent poisons its groups and a failed group its parent, as on the host
/// transports. `abort` may be called from any thread.
///
/// `ncclCommAbort` frees a communicator, so it must never run while another thread is
/// inside an NCCL call on the same one. The family's `mutex` serialises the two: every
/// NCCL call on a member runs with it held (`run`, or a whole `ncclGroupStart` ..
/// `ncclGroupEnd`, which only enqueues), and so does `abort`; a call therefore either
/// completes before the abort or finds its handle aborted and is never made. None of the
/// calls made under the lock waits for a peer, so `abort` waits for a few enqueues at most.
template <class Api>
struct basic_family {
  using comm_type = typename Api::comm_type;

  /// One communicator of the family, as the family's `abort` reaches it. Guarded by
  /// `mutex`.
  struct handle {
    comm_type comm{};
    bool aborted = false;  ///< Api::abort was called on it (`comm` is then null: freed)
  };

  std::atomic<bool> aborted{false};  ///< set once every registered communicator is aborted
  kit::abort_record<1024> cause{};   ///< why: the first abort's world rank, code and reason
  std::mutex mutex;
  std::vector<handle*> members;  ///< the live communicators (guarded by `mutex`)
  /// Where `ncclCommSplit` may still write after a failed split (see `split`); kept until
  /// the family goes, so that a late write never lands in freed memory.
  std::vector<std::unique_ptr<comm_type>> parked;

  /// Records the cause (the first one wins) and aborts every communicator of the family.
  /// Blocks only while another thread makes an NCCL call on one of them, aborts or
  /// registers a communicator; never on peers.
  void abort(int world_rank, errc code, std::string_view reason) noexcept {
    cause.record(world_rank, code, reason);
    std::lock_guard lock(mutex);
    for (handle* h : members) abort_one(*h);
    aborted.store(true);
  }

  /// Adds `h` to the family; aborts it at once when the family already is. The caller
  /// then sees `aborted`.
  void join(handle& h) {
    std::lock_guard lock(mutex);
    members.push_back(&h);
    if (aborted.load()) abort_one(h);
  }

  /// Runs `call(h.comm)` with the family locked, so that no abort frees the communicator
  /// under it; false, without calling, when `h` was aborted (or never made).
  template <class Call>
  bool run(handle& h, Call&& call) {
    std::lock_guard lock(mutex);
    if (h.aborted || h.comm == comm_type{}) return false;
    call(h.comm);
    return true;
  }

  /// Ends `h`'s communicator and takes it out of the family: `ncclCommFinalize`, which
  /// flushes what was enqueued on it, polled until `until` with the lock released between
  /// polls (so that an abort still gets in), then `ncclCommDestroy`. A failure, or `until`,
  /// aborts it instead: a destructor must not wait on a peer that is gone.
  void release(handle& h, deadline until) noexcept {
    std::unique_lock lock(mutex);
    if (!h.aborted && h.comm != comm_type{}) {
      ncclResult_t r = Api::finalize(h.comm);
      kit::wait_ladder ladder(64, std::numeric_limits<int>::max());
      while (r == ncclSuccess || r == ncclInProgress) {
        ncclResult_t now = ncclInProgress;
        if (Api::async_error(h.comm, &now) != ncclSuccess) break;
        if (now == ncclSuccess) {
          Api::destroy(h.comm);
          h.comm = comm_type{};
          break;
        }
        if (now != ncclInProgress || until.expired()) break;
        lock.unlock();
        ladder.idle();
        lock.lock();
        if (h.aborted) break;
      }
      abort_one(h);  // nothing to do once destroyed or aborted
    }
    std::erase(members, &h);
  }

  /// Aborts `h`'s communicator (lock held) and forgets it: NCCL has freed it.
  static void abort_one(handle& h) noexcept {
    if (h.aborted || h.comm == comm_type{}) return;
    h.aborted = true;
    Api::abort(std::exchange(h.comm, comm_type{}));
  }
};

using family_state = basic_family<api>;
using handle = family_state::handle;

/// One communicator's state: its handle in the family, where it stands, and the family.
struct state {
  handle self;
  int rank = 0;
  int size = 1;
  int device = 0;
  int world_rank = 0;  ///< this rank in the world communicator the family started from
  bool group = false;  ///< made by `split` (errors name the world rank)
  duration timeout = default_timeout;  ///< how long the destructor's finalize may take
  std::size_t pool_kept = 0;           ///< scratch the device's pool was told to keep (`allocate`)
  /// The family's lock, held from `group_start` to `group_end` (or `group_cancel`).
  std::unique_lock<std::mutex> open_group;
  std::shared_ptr<family_state> family = std::make_shared<family_state>();
};

/// The release threshold the memory pool needs so that it keeps `bytes` of scratch mapped
/// across synchronisations (CUDA's default of 0 hands every freed byte back to the driver
/// whenever a stream or the device synchronises, so each collective would map its scratch
/// again); nullopt when `current` already keeps as much.
inline std::optional<std::uint64_t> raised_threshold(std::uint64_t current,
                                                     std::size_t bytes) noexcept {
  if (current >= bytes) return std::nullopt;
  return static_cast<std::uint64_t>(bytes);
}

}  // namespace detail::nccl

class nccl_transport {
 public:
  /// The name reports and messages give this transport (`CHORUS_DEBUG=info`).
  static constexpr std::string_view debug_name = "nccl";
  using stream_type = cudaStream_t;

  /// Joins the NCCL communicator of `size` ranks as `rank`, on the current CUDA device;
  /// `exchange` carries rank 0's unique id to the others. Throws `errc::timeout` when the
  /// group is not complete within `timeout`, `errc::transport` with NCCL's or CUDA's text
  /// for any other failure (no device, NCCL cannot start).
  nccl_transport(int rank, int size, const blob_exchange& exchange,
                 duration timeout = default_timeout)
      : state_(std::make_unique<detail::nccl::state>()) {
    detail::nccl::state& s = *state_;
    if (size < 1 || rank < 0 || rank >= size) {
      throw error(errc::invalid_argument, "chorus::nccl_transport: rank " + std::to_string(rank) +
                                              " is outside a group of " + std::to_string(size));
    }
    s.rank = rank;
    s.size = size;
    s.world_rank = rank;
    s.timeout = timeout;
    cuda_check(cudaGetDevice(&s.device), "cudaGetDevice (is there a usable CUDA device?)");
    ncclUniqueId id{};
    std::string mine = "-";
    if (rank == 0) {
      nccl_check(ncclGetUniqueId(&id), "ncclGetUniqueId");
      mine = detail::to_hex(id.internal, sizeof id.internal);
    }
    const std::vector<std::string> blobs = exchange(mine);
    const std::vector<unsigned char> root_id = blobs.size() == static_cast<std::size_t>(size)
                                                   ? detail::from_hex(blobs[0])
                                                   : std::vector<unsigned char>{};
    if (root_id.size() != sizeof id.internal) {
      throw error(errc::transport, "chorus::nccl_transport: rank " + std::to_string(rank) +
                                       ": rank 0 published no usable NCCL unique id");
    }
    std::memcpy(id.internal, root_id.data(), root_id.size());
    ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
    config.blocking = 0;
    const ncclResult_t r = ncclCommInitRankConfig(&s.self.comm, size, id, rank, &config);
    if (r != ncclSuccess && r != ncclInProgress) {
      s.self.comm = nullptr;
      nccl_check(r, "ncclCommInitRankConfig");
    }
    s.family->join(s.self);
    wait_ready(deadline::after(timeout), "joining the NCCL communicator of " +
                                             std::to_string(size) +
                                             " ranks (a rank that never "
                                             "starts, or a different unique id, keeps it waiting)");
  }

  /// The transport of the job `bootstrap::from_env()` found: the unique id travels through
  /// the job's store under `chorus/<job_id>/nccl/<instance>/...`. One GPU per rank: set the
  /// device first (`cudaSetDevice(world.local_rank)` where ranks share a node).
  explicit nccl_transport(const bootstrap::world& world, std::string_view instance = "comm0")
      : nccl_transport(
            world.rank, world.size,
            store_exchange(world.store, "chorus/" + world.job_id + "/nccl/" + std::string(instance),
                           world.rank, world.size, world.timeout),
            world.timeout) {}

  nccl_transport(nccl_transport&&) noexcept = default;
  /// Ends this transport's communicator (as the destructor does), then takes `other`'s.
  nccl_transport& operator=(nccl_transport&& other) noexcept {
    if (this != &other) {
      release();
      state_ = std::move(other.state_);
    }
    return *this;
  }

  /// Ends the communicator: `ncclCommFinalize`, polled for at most the timeout it was made
  /// with, then `ncclCommDestroy`; past that (a peer gone while work was still enqueued)
  /// `ncclCommAbort`. After an abort there is nothing left to end.
  ~nccl_transport() { release(); }

  [[nodiscard]] int rank() const noexcept { return state_->rank; }
  [[nodiscard]] int size() const noexcept { return state_->size; }
  /// This rank in the world communicator its family was split from (`rank()` there).
  [[nodiscard]] int world_rank() const noexcept { return state_->world_rank; }
  /// The CUDA device of the communicator.
  [[nodiscard]] int device() const noexcept { return state_->device; }
  /// NCCL's communicator, for calling NCCL directly alongside chorus; null once aborted
  /// (NCCL has freed it). An abort from another thread may free it after this returns:
  /// calls on it race with `abort` as chorus's own calls do not.
  [[nodiscard]] ncclComm_t native_handle() const {
    std::lock_guard lock(state_->family->mutex);
    return state_->self.comm;
  }

  /// Splits this communicator's ranks with `ncclCommSplit` (collective over them): the ranks
  /// that pass the same `color` (>= 0) form a group, ordered by `key`, then by rank here; a
  /// negative color (`NCCL_SPLIT_NOCOLOR`) joins none and gets nullopt. The group is a
  /// non-blocking NCCL communicator of its own (no resources shared with this one, so it
  /// may outlive it) on the same device, in this one's family: an abort of either aborts
  /// both. Polled under `until`: a rank that never calls it fails the others with
  /// `errc::timeout`; any failure once NCCL has the call aborts the family (this
  /// communicator and its groups), since NCCL's state of the split is then unknown.
  std::optional<nccl_transport> split(int color, int key, deadline until) {
    detail::nccl::state& s = *state_;
    poll_error();  // a failed communicator cannot split: its cause is thrown
    const int nccl_color = color < 0 ? NCCL_SPLIT_NOCOLOR : color;
    const std::string what = "ncclCommSplit (color " +
                             (color < 0 ? std::string("none") : std::to_string(color)) + ", key " +
                             std::to_string(key) + ") of the NCCL communicator of " +
                             std::to_string(s.size) + " ranks";
    // NCCL writes the new communicator here from its own thread, possibly after
    // ncclCommSplit returned: it lives on the heap, and in the family if the split fails.
    auto slot = std::make_unique<ncclComm_t>(nullptr);
    bool joined = false;
    try {
      ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
      config.blocking = 0;
      config.splitShare = 0;  // its own resources: a group may outlive its parent
      const ncclResult_t r = on_comm(
          [&](ncclComm_t c) { return ncclCommSplit(c, nccl_color, key, slot.get(), &config); });
      if (r != ncclSuccess && r != ncclInProgress) nccl_check(r, what.c_str());
      // The parent stays in ncclInProgress until NCCL is done with the split.
      wait_ready(until, what +
                            ": every rank of the communicator must call split or subgroup, "
                            "in the same order relative to its other calls (a rank that "
                            "never calls it, or threw before calling it for a bad color "
                            "or list, keeps the others waiting)");
      if (nccl_color == NCCL_SPLIT_NOCOLOR) return std::nullopt;
      ncclComm_t made = nullptr;
      poll_until(
          until,
          [&] {
            throw_if_aborted();
            made = std::atomic_ref<ncclComm_t>(*slot).load(std::memory_order_acquire);
            return made != nullptr;
          },
          what + ": NCCL did not hand over the new communicator");
      auto child = std::make_unique<detail::nccl::state>();
      child->self.comm = made;
      child->device = s.device;
      child->world_rank = s.world_rank;
      child->timeout = s.timeout;
      child->group = true;
      child->family = s.family;
      s.family->join(child->self);
      joined = true;
      nccl_transport group(std::move(child));
      group.wait_ready(until, "joining the group made by " + what);
      detail::nccl::state& g = *group.state_;
      group.nccl_check(group.on_comm([&](ncclComm_t c) { return ncclCommUserRank(c, &g.rank); }),
                       "ncclCommUserRank");
      group.nccl_check(group.on_comm([&](ncclComm_t c) { return ncclCommCount(c, &g.size); }),
                       "ncclCommCount");
      return std::optional<nccl_transport>(std::move(group));
    } catch (const error& e) {
      end_failed_split(std::move(slot), joined, e.value(), e.what());
      throw;
    } catch (...) {
      end_failed_split(std::move(slot), joined, errc::transport, what + " failed");
      throw;
    }
  }

  /// Opens an NCCL group. The family stays locked until `group_end` or `group_cancel`, so
  /// that an abort from another thread waits for the group's enqueues instead of freeing
  /// the communicator under them.
  void group_start() {
    detail::nccl::state& s = *state_;
    std::unique_lock lock(s.family->mutex);
    if (s.self.aborted || s.self.comm == nullptr) {
      lock.unlock();
      throw_aborted();
    }
    nccl_check(ncclGroupStart(), "ncclGroupStart");
    s.open_group = std::move(lock);
  }
  void enqueue_send(int peer, std::span<const std::byte> bytes, cudaStream_t stream) {
    detail::check_transport_peer(rank(), size(), peer, "send to");
    nccl_check(on_comm([&](ncclComm_t c) {
                 return ncclSend(bytes.data(), bytes.size(), ncclUint8, peer, c, stream);
               }),
               "ncclSend");
  }
  void enqueue_recv(int peer, std::span<std::byte> bytes, cudaStream_t stream) {
    detail::check_transport_peer(rank(), size(), peer, "receive from");
    nccl_check(on_comm([&](ncclComm_t c) {
                 return ncclRecv(bytes.data(), bytes.size(), ncclUint8, peer, c, stream);
               }),
               "ncclRecv");
  }
  /// Closes the group. On a non-blocking communicator NCCL may still be taking it
  /// (`ncclInProgress`): on the first use of a pair of ranks it connects to the peer, which
  /// needs the peer to get there too, so it is waited for until `until` (the
  /// communicator's deadline), not some shorter launch time.
  void group_end(deadline until) {
    const ncclResult_t r = ncclGroupEnd();
    state_->open_group = {};  // unlocks: the group's calls are made
    if (r == ncclInProgress) {
      wait_ready(until,
                 "NCCL taking a group of sends and receives (the first one between two ranks "
                 "connects them, which needs the peer to get there too)");
    } else {
      nccl_check(r, "ncclGroupEnd");
    }
  }
  /// Closes a group the executor gives up on after a failure between `group_start` and
  /// `group_end`: NCCL's group is per thread, and left open it would take this thread's
  /// next calls on any communicator. What the group holds may be launched; the failure
  /// path aborts the communicator next, since peers can no longer match it.
  void group_cancel() noexcept {
    (void)ncclGroupEnd();
    state_->open_group = {};
  }
  void copy(std::span<std::byte> dst, std::span<const std::byte> src, cudaStream_t stream) {
    if (dst.size() != src.size()) {
      throw error(errc::invalid_argument, "chorus::nccl_transport: copy of " +
                                              std::to_string(src.size()) + " bytes into " +
                                              std::to_string(dst.size()));
    }
    cuda_check(
        cudaMemcpyAsync(dst.data(), src.data(), src.size(), cudaMemcpyDeviceToDevice, stream),
        "cudaMemcpyAsync");
  }
  std::byte* allocate(std::size_t bytes, cudaStream_t stream) {
    keep_pool(bytes);
    void* p = nullptr;
    cuda_check(cudaMallocAsync(&p, bytes, stream),
               ("cudaMallocAsync of " + std::to_string(bytes) + " bytes of scratch").c_str());
    return static_cast<std::byte*>(p);
  }
  void deallocate(std::byte* p, cudaStream_t stream) noexcept { (void)cudaFreeAsync(p, stream); }

  /// Throws the group's failure, if any: an abort (this rank's or a peer's that NCCL
  /// reported) or an asynchronous NCCL error, which aborts the communicator.
  void poll_error() {
    throw_if_aborted();
    ncclResult_t async = ncclSuccess;
    nccl_check(on_comm([&](ncclComm_t c) { return ncclCommGetAsyncError(c, &async); }),
               "ncclCommGetAsyncError");
    if (async != ncclSuccess && async != ncclInProgress) {
      const std::string what = "NCCL reported an asynchronous error: " + text(async);
      abort(detail::nccl::code_of(async), what);
      throw error(detail::nccl::code_of(async), rank_prefix() + what);
    }
  }

  /// Waits until the work enqueued on `stream` so far is done, polling for NCCL errors;
  /// at `until` the communicator is aborted (so no rank waits on this one forever) and
  /// `errc::timeout` is thrown.
  void synchronize(cudaStream_t stream, deadline until) {
    poll_until(
        until,
        [&] {
          const cudaError_t q = cudaStreamQuery(stream);
          if (q == cudaSuccess) return true;
          if (q != cudaErrorNotReady) cuda_check(q, "cudaStreamQuery");
          poll_error();
          return false;
        },
        "the stream's work did not finish before the deadline; the communicator is aborted "
        "(a peer may not be calling the same collectives, or may be stuck)");
  }

  /// Aborts the group and its family (the communicator it was split from and every group
  /// split from either): their NCCL communicators are aborted, so this rank's pending work
  /// ends and peers waiting on it see a remote error. Any thread; never blocks on peers.
  void abort(std::string_view reason) noexcept { abort(errc::aborted, reason); }
  void abort(errc code, std::string_view reason) noexcept {
    detail::nccl::state& s = *state_;
    s.family->abort(s.world_rank, code, reason);
  }

  /// NCCL's own collective for `call` (`algo::native`), enqueued on `stream`; like
  /// `group_end`, waits until `until` where NCCL is still connecting to peers.
  void native(const native_call& call, cudaStream_t stream, deadline until) {
    using enum schedule::collective;
    throw_if_aborted();
    const auto type = detail::nccl::type_of(call.type);
    if (!type) {
      throw error(errc::invalid_argument,
                  "algo::native: NCCL has no " + std::string(name(call.type)) +
                      " type; use one of chorus's algorithms, or a 32-bit integer type");
    }
    const bool reduces =
        call.kind == all_reduce || call.kind == reduce || call.kind == reduce_scatter;
    if (!reduces && call.kind != broadcast && call.kind != all_gather) {
      throw error(errc::invalid_argument,
                  "algo::native: NCCL has no " + std::string(name(call.kind)) + " of its own");
    }
    const ncclRedOp_t op = reduces ? reduce_op(call) : ncclSum;
    const ncclResult_t r = on_comm([&](ncclComm_t comm) {
      switch (call.kind) {
        case all_reduce:
          return ncclAllReduce(call.input, call.output, call.count, *type, op, comm, stream);
        case reduce:
          return ncclReduce(call.input, call.output, call.count, *type, op, call.root, comm,
                            stream);
        case broadcast:
          return ncclBroadcast(call.input, call.output, call.count, *type, call.root, comm, stream);
        case reduce_scatter:
          return ncclReduceScatter(call.input, call.output, call.count, *type, op, comm, stream);
        default:
          return ncclAllGather(call.input, call.output, call.count, *type, comm, stream);
      }
    });
    if (r == ncclInProgress) {
      wait_ready(until,
                 "NCCL taking a collective (the first one connects the ranks, which "
                 "needs every peer to get there too)");
    } else {
      nccl_check(r, (std::string("nccl") + std::string(name(call.kind))).c_str());
    }
  }

  /// While it lives, the communicator's device is the calling thread's current one (the
  /// previous one is restored after); the stream executor holds one around a collective,
  /// so that its scratch and kernels land on the communicator's device. A thread already
  /// on that device pays one `cudaGetDevice`.
  class current_device {
   public:
    explicit current_device(const nccl_transport& t) {
      t.cuda_check(cudaGetDevice(&previous_), "cudaGetDevice");
      if (previous_ != t.device()) {
        t.cuda_check(cudaSetDevice(t.device()), "cudaSetDevice to the communicator's device");
        changed_ = true;
      }
    }
    current_device(const current_device&) = delete;
    current_device& operator=(const current_device&) = delete;
    ~current_device() {
      if (changed_) (void)cudaSetDevice(previous_);
    }

   private:
    int previous_ = 0;
    bool changed_ = false;
  };
  [[nodiscard]] current_device device_scope() const { return current_device(*this); }

 private:
  /// Ends the communicator and leaves the family (destructor, move-assignment).
  void release() noexcept {
    if (!state_) return;
    detail::nccl::state& s = *state_;
    if (s.open_group.owns_lock()) group_cancel();  // the family's lock is this thread's
    s.family->release(s.self, deadline::after(s.timeout));
  }

  /// Runs `call(comm)`, one NCCL call on this communicator, where no abort can free the
  /// communicator under it (the family's lock; inside a group this thread holds it
  /// already); throws the abort's cause instead of calling when the family was aborted.
  template <class Call>
  ncclResult_t on_comm(Call&& call) {
    detail::nccl::state& s = *state_;
    if (s.open_group.owns_lock()) return call(s.self.comm);
    ncclResult_t r = ncclSuccess;
    if (!s.family->run(s.self, [&](ncclComm_t c) { r = call(c); })) throw_aborted();
    return r;
  }

  /// Tells the memory pool that `cudaMallocAsync` draws from on this device to keep
  /// `bytes` of scratch mapped between collectives (`raised_threshold`); asked again only
  /// when a call needs more scratch than any before on this communicator.
  void keep_pool(std::size_t bytes) {
    detail::nccl::state& s = *state_;
    if (bytes <= s.pool_kept) return;
    cudaMemPool_t pool = nullptr;
    cuda_check(cudaDeviceGetMemPool(&pool, s.device), "cudaDeviceGetMemPool");
    std::uint64_t current = 0;
    cuda_check(cudaMemPoolGetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &current),
               "cudaMemPoolGetAttribute");
    if (auto raised = detail::nccl::raised_threshold(current, bytes)) {
      cuda_check(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &*raised),
                 "cudaMemPoolSetAttribute (release threshold)");
    }
    s.pool_kept = bytes;
  }

  /// A group's transport, made by `split` around a communicator NCCL is still starting.
  explicit nccl_transport(std::unique_ptr<detail::nccl::state> s) noexcept : state_(std::move(s)) {}

  /// "rank 2: " for the world's communicator, "rank 1 (world rank 3): " for a group's.
  std::string rank_prefix() const {
    if (!state_->group) return "rank " + std::to_string(rank()) + ": ";
    return "rank " + std::to_string(rank()) + " (world rank " + std::to_string(world_rank()) +
           "): ";
  }

  /// After a failed split: aborts the family (the parent's abort ends NCCL's work on the
  /// split), aborts a new communicator NCCL handed over but the family never held, and
  /// parks the slot NCCL writes into, so that a late write lands in live memory.
  void end_failed_split(std::unique_ptr<ncclComm_t> slot, bool joined, errc code,
                        std::string_view why) noexcept {
    detail::nccl::state& s = *state_;
    s.family->abort(s.world_rank, code, why);
    const ncclComm_t late = std::atomic_ref<ncclComm_t>(*slot).load(std::memory_order_acquire);
    if (late != nullptr && !joined) ncclCommAbort(late);
    try {
      std::lock_guard lock(s.family->mutex);
      s.family->parked.push_back(std::move(slot));
    } catch (...) {
      (void)slot.release();  // never freed rather than freed under NCCL's feet
    }
  }

  std::string text(ncclResult_t r) const {
    std::string s = ncclGetErrorString(r);
    // NCCL keeps the last error per thread and ignores the communicator argument: passing
    // none never reads a communicator another thread may have aborted.
    const char* last = ncclGetLastError(nullptr);
    if (last != nullptr && *last != '\0') s += std::string(" (") + last + ")";
    return s;
  }

  void nccl_check(ncclResult_t r, const char* what) const {
    if (r == ncclSuccess) return;
    throw error(detail::nccl::code_of(r), rank_prefix() + what + " failed: " + text(r));
  }
  void cuda_check(cudaError_t e, const char* what) const {
    if (e == cudaSuccess) return;
    throw error(errc::transport, "chorus::nccl_transport: " + rank_prefix() + what + ": " +
                                     cudaGetErrorName(e) + ": " + cudaGetErrorString(e));
  }

  ncclRedOp_t reduce_op(const native_call& call) const {
    const auto op = detail::nccl::op_of(call.op);
    if (!op) {
      throw error(errc::invalid_argument,
                  "algo::native: NCCL has no " + std::string(name(call.op)) +
                      " reduction (only sum, prod, min, max, avg); use one of chorus's "
                      "algorithms, which run any op");
    }
    return *op;
  }

  /// Throws the family's abort, where there was one.
  void throw_if_aborted() const {
    if (state_->family->aborted.load()) throw_aborted();
  }
  [[noreturn]] void throw_aborted() const {
    const detail::nccl::family_state& f = *state_->family;
    if (f.cause.state.load(std::memory_order_acquire) == 0) {  // ended, not aborted
      throw error(errc::aborted, rank_prefix() + "the NCCL communicator was ended");
    }
    f.cause.wait_complete();
    throw error(f.cause.error_code(),
                rank_prefix() +
                    (state_->group ? "the NCCL communicators of this group's family (its parent "
                                     "and every group split from it) were aborted: "
                                   : "the NCCL communicator was aborted: ") +
                    std::string(f.cause.text()));
  }

  /// Polls the non-blocking communicator until its last operation left `ncclInProgress`.
  void wait_ready(deadline until, const std::string& doing) {
    poll_until(
        until,
        [&] {
          ncclResult_t r = ncclSuccess;
          // on_comm: an aborted communicator is freed, so its abort is thrown instead
          nccl_check(on_comm([&](ncclComm_t c) { return ncclCommGetAsyncError(c, &r); }),
                     "ncclCommGetAsyncError");
          if (r != ncclSuccess && r != ncclInProgress) {
            abort(detail::nccl::code_of(r), doing + ": " + text(r));
            throw error(detail::nccl::code_of(r), rank_prefix() + doing + " failed: " + text(r));
          }
          return r == ncclSuccess;
        },
        "timed out " + doing);
  }

  /// Polls `done()` (which throws on a failure) until it returns true; at `until` the
  /// communicator is aborted, so that no peer waits on this rank, and `errc::timeout`
  /// thrown with `timed_out`.
  template <class Done>
  void poll_until(deadline until, Done done, const std::string& timed_out) {
    // NCCL progresses on its own threads: spin briefly, then yield; never sleep.
    kit::wait_ladder ladder(64, std::numeric_limits<int>::max());
    while (!done()) {
      if (until.expired()) {
        abort(errc::timeout, timed_out);
        throw error(errc::timeout, rank_prefix() + timed_out);
      }
      ladder.idle();
    }
  }

  std::unique_ptr<detail::nccl::state> state_;
};

static_assert(stream_ordered_transport<nccl_transport>);

}  // namespace chorus::inline v0

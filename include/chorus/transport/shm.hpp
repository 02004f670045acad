#pragma once
/// \file
/// `chorus::shm_transport`: processes on one host exchange messages through POSIX shared
/// memory.
///
/// Every rank creates one segment, its *inbox*: a header (doorbell, abort record, pid) and
/// one single-producer/single-consumer channel per peer. A channel is a ring of slots, each
/// published by a sequence number in its header (a small message is one cache line), with
/// the consumer's index on a line of its own; a message occupies one slot per `slot_bytes`
/// of payload, so a large message streams through the ring while the receiver copies
/// earlier slots out (copy-in and copy-out overlap). The receiver matches arriving messages
/// to posted receives by tag in FIFO order and buffers messages that arrive before their
/// receive is posted.
///
/// Segments are created 0600 under unguessable names, mapped by every rank, and unlinked
/// as soon as every rank has mapped them, so /dev/shm holds nothing of a running job.
///
/// Waiting is a short spin, a few yields, then a futex sleep on the inbox doorbell, which
/// peers ring after writing into (or draining) a channel if the owner sleeps; the sleep
/// wakes at least every `liveness_period` to check the peers' pidfds, so a dead peer
/// becomes `errc::peer_lost` naming it, and to see an abort. Progress is driven by the
/// caller (`test`, `wait`), as the transport concept requires.
///
/// The pieces live under transport/shm/: segment.hpp (the inbox layout and the segments),
/// matching.hpp (operations, per-peer matching), endpoint.hpp (the channels, progress,
/// waiting, liveness, aborts), cross_memory.hpp (single-copy and registered windows),
/// windows.hpp (what a window is). This file is the group's transport over them.
#include <chorus/bootstrap/from_env.hpp>
#include <chorus/bootstrap/store.hpp>
#include <chorus/core/deadline.hpp>
#include <chorus/core/error.hpp>
#include <chorus/transport/contract.hpp>
#include <chorus/transport/kit/copy.hpp>
#include <chorus/transport/kit/exchange.hpp>
#include <chorus/transport/kit/group_view.hpp>
#include <chorus/transport/kit/records.hpp>
#include <chorus/transport/kit/tags.hpp>
#include <chorus/transport/shm/cross_memory.hpp>
#include <chorus/transport/shm/endpoint.hpp>
#include <chorus/transport/shm/matching.hpp>
#include <chorus/transport/shm/segment.hpp>
#include <chorus/transport/shm/windows.hpp>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <sys/mman.h>

namespace chorus::inline v0 {
/// Point-to-point transport between processes of one host over POSIX shared memory.
///
/// A group of the job's ranks (`communicator::split`, `subgroup`) is another
/// `shm_transport` over the same endpoint: no new segment, its own context in the tags,
/// its own windows. Peers in transport errors are named by their world rank.
class shm_transport {
 public:
  /// The name reports and messages give this transport (`CHORUS_DEBUG=info`).
  static constexpr std::string_view debug_name = "shm";
  using request = detail::shm::operation_ptr;

  /// Creates this rank's inbox, exchanges names through `exchange`, maps every peer's inbox
  /// and unlinks its own once all ranks have mapped it. `exchange` is called twice with this
  /// rank's blob (see `blob_exchange`; `store_exchange` makes one from a bootstrap store).
  /// `job` names the segments (use a job-unique token, e.g. chorusrun's CHORUS_JOB_ID); a
  /// random suffix makes them unguessable.
  shm_transport(int rank, int size, std::string_view job, const blob_exchange& exchange)
      : ep_(std::make_shared<detail::shm::endpoint>(rank, size, job, exchange)),
        view_(kit::group_view::world(rank, size)) {}

  /// The transport of the job `bootstrap::from_env()` found (chorusrun, torchrun, mpirun,
  /// srun): ranks meet through the job's store under
  /// `chorus/<job_id>/shm/<instance>/...`. Give each communicator of a job its own
  /// `instance` name.
  explicit shm_transport(const bootstrap::world& world, std::string_view instance = "comm0")
      : shm_transport(world, recovery_point::of_job(world.store, world.job_id, "shm", instance)) {}

  /// A new transport of `size` ranks with new segments, finding its peers through
  /// `exchange`, that can be rebuilt again from `point` (`communicator::shrink`).
  static shm_transport rebuilt(recovery_point point, int rank, int size,
                               const blob_exchange& exchange) {
    shm_transport t(rank, size, point.job, exchange);
    t.recovery_ = std::make_shared<const recovery_point>(std::move(point));
    return t;
  }

  /// Where this group can be rebuilt from after a failure; null for a transport made
  /// without a store and for a group made by `split` (shrinkable_transport).
  [[nodiscard]] const recovery_point* recovery() const noexcept {
    return view_.members ? nullptr : recovery_.get();
  }
  /// Whether the process of `peer` (a rank of this group) has exited.
  [[nodiscard]] bool peer_gone(int peer) const noexcept {
    return peer >= 0 && peer < view_.size && peer != view_.rank &&
           ep_->peer_gone(view_.world(peer));
  }

  shm_transport(shm_transport&&) = default;
  shm_transport& operator=(shm_transport&&) = default;

  [[nodiscard]] int rank() const noexcept { return view_.rank; }
  [[nodiscard]] int size() const noexcept { return view_.size; }
  /// This rank in the job's world.
  [[nodiscard]] int world_rank() const noexcept { return ep_->rank(); }
  /// Whether large messages to `peer` go single-copy (enabled, and the kernel allowed the
  /// peer to read this process's memory at start-up).
  [[nodiscard]] bool single_copy_to(int peer) const noexcept {
    return ep_->single_copy_to(view_.world(peer));
  }

  /// The transport of a group of this one's ranks, on the same endpoint (group/split.hpp).
  [[nodiscard]] shm_transport split(const group_spec& g) const {
    shm_transport t(ep_, view_.subgroup(g.members, g.rank, g.context, ep_->contexts, ep_));
    return t;
  }
  [[nodiscard]] kit::context_mask used_contexts() const { return ep_->contexts.used(); }

  /// Names one window of the group, as returned by `allocate_window` or `register_window`.
  struct window {
    std::size_t index = static_cast<std::size_t>(-1);
  };

  /// Collective (every rank calls it, in the same order relative to other window calls):
  /// allocates `bytes` bytes of shared memory on this rank (each rank may ask for a
  /// different size, 0 included) that every peer maps. Peers reach it with `get`/`put`, or
  /// load and store it directly through `peer_window` -- what the one-sided collectives
  /// do. Like the inboxes, the segments are unlinked as soon as every rank has mapped them.
  /// The memory lives as long as the transport.
  window allocate_window(std::size_t bytes, deadline until = deadline::after(default_timeout)) {
    detail::shm::window_state w;
    detail::shm::window_record mine{};
    mine.bytes = bytes;
    std::string name;
    if (bytes != 0) {
      name = detail::shm::segment_name(ep_->job(), ep_->rank(),
                                       "w" + std::to_string(windows_.size()) + "-");
      w.own = detail::shm::create_segment(ep_->rank(), name, bytes);
      w.local = {w.own.data(), bytes};
      std::snprintf(mine.segment, sizeof mine.segment, "%s", name.c_str());
      mine.address = reinterpret_cast<std::uintptr_t>(w.own.data());
    }
    try {
      w.records = exchange_window_records(mine, until);
      w.peers.resize(static_cast<std::size_t>(view_.size));
      for (int p = 0; p < view_.size; ++p) {
        const detail::shm::window_record& rec = w.records[static_cast<std::size_t>(p)];
        if (p == view_.rank || rec.bytes == 0) continue;
        w.peers[static_cast<std::size_t>(p)] =
            detail::shm::open_segment(ep_->rank(), rec.segment, rec.bytes, view_.world(p));
      }
      // Everybody has mapped everything: the names can go.
      exchange_window_records(detail::shm::window_record{}, until);
    } catch (...) {
      if (!name.empty()) ::shm_unlink(name.c_str());
      throw;
    }
    if (!name.empty()) ::shm_unlink(name.c_str());
    w.mapped = true;
    windows_.push_back(std::move(w));
    return window{windows_.size() - 1};
  }

  /// Collective: makes `local`, ordinary memory of this process, a window that peers reach
  /// with `get`/`put` through cross-memory attach (process_vm_readv/writev; the kernel must
  /// allow it: same user, and Yama's ptrace_scope 0, or chorusrun's ranks). `peer_window`
  /// is null for such windows: use `allocate_window` for memory peers load directly.
  window register_window(std::span<std::byte> local,
                         deadline until = deadline::after(default_timeout)) {
    detail::shm::window_state w;
    detail::shm::window_record mine{};
    mine.bytes = local.size();
    mine.address = reinterpret_cast<std::uintptr_t>(local.data());
    w.local = local;
    w.records = exchange_window_records(mine, until);
    windows_.push_back(std::move(w));
    return window{windows_.size() - 1};
  }

  /// This rank's memory of window `w`.
  [[nodiscard]] std::span<std::byte> local_window(window w) const {
    return window_at(w, "local_window").local;
  }

  /// Rank `peer`'s memory of window `w` as mapped into this process (this rank's own memory
  /// for `peer == rank()`), or null for a registered window or an empty one.
  [[nodiscard]] std::byte* peer_window(window w, int peer) const {
    const detail::shm::window_state& s = window_at(w, "peer_window");
    check_window_rank(peer, "peer_window");
    if (peer == view_.rank) return s.local.empty() ? nullptr : s.local.data();
    return s.mapped ? s.peers[static_cast<std::size_t>(peer)].data() : nullptr;
  }

  /// Size of rank `peer`'s part of window `w`.
  [[nodiscard]] std::size_t window_bytes(window w, int peer) const {
    check_window_rank(peer, "window_bytes");
    return window_at(w, "window_bytes").records[static_cast<std::size_t>(peer)].bytes;
  }

  /// Copies `local.size()` bytes at `offset` in rank `peer`'s part of window `w` into
  /// `local`. Completes before returning (the returned request is already done): a memcpy
  /// from the mapped segment, or one process_vm_readv for a registered window.
  request get(window w, int peer, std::size_t offset, std::span<std::byte> local) {
    ep_->check_aborted();
    std::byte* mapped = one_sided_target(w, peer, offset, local.size(), "get");
    if (mapped != nullptr) {
      if (!local.empty()) detail::copy_bytes(local.data(), mapped, local.size());
    } else if (!local.empty() && !detail::shm::read_peer_memory(ep_->pid(view_.world(peer)),
                                                                remote_address(w, peer, offset),
                                                                local.data(), local.size())) {
      throw_cross_memory(peer, "read from");
    }
    return completed_request();
  }

  /// Copies `src` to `offset` in rank `peer`'s part of window `w`; completes before
  /// returning, like `get`.
  request put(window w, int peer, std::size_t offset, std::span<const std::byte> src) {
    ep_->check_aborted();
    std::byte* mapped = one_sided_target(w, peer, offset, src.size(), "put");
    if (mapped != nullptr) {
      if (!src.empty()) detail::copy_bytes(mapped, src.data(), src.size());
    } else if (!src.empty() && !detail::shm::write_peer_memory(ep_->pid(view_.world(peer)),
                                                               remote_address(w, peer, offset),
                                                               src.data(), src.size())) {
      throw_cross_memory(peer, "write to");
    }
    return completed_request();
  }

  request isend(int peer, tag_t tag, std::span<const std::byte> data) {
    check_peer(peer, "send to");
    return ep_->isend(view_.world(peer), view_.tag(tag), data);
  }

  request irecv(int peer, tag_t tag, std::span<std::byte> data) {
    check_peer(peer, "receive from");
    return ep_->irecv(view_.world(peer), view_.tag(tag), data);
  }

  bool test(request& req) { return ep_->test(req); }
  void wait(request& req, deadline until) { ep_->wait(req, until); }
  bool try_wait(request& req, deadline until) { return ep_->try_wait(req, until); }
  void cancel(request& req) noexcept { ep_->cancel(req); }

  /// Aborts the job's shared-memory group: every group on it fails.
  void abort(std::string_view reason) noexcept { abort(errc::aborted, reason); }

  /// Aborts with the code of the failure that caused it; peers fail with the same code.
  void abort(errc code, std::string_view reason) noexcept {
    if (ep_) ep_->abort(code, reason);
  }

 private:
  /// The world constructor's work: meets through the store at `at`, which it keeps for a
  /// shrink.
  shm_transport(const bootstrap::world& world, recovery_point at)
      : shm_transport(world.rank, world.size, world.job_id,
                      store_exchange(at.store, at.prefix, world.rank, world.size, world.timeout)) {
    recovery_ = std::make_shared<const recovery_point>(std::move(at));
  }

  shm_transport(std::shared_ptr<detail::shm::endpoint> ep, kit::group_view view)
      : ep_(std::move(ep)), view_(std::move(view)) {}

  void check_peer(int peer, const char* what) const {
    detail::check_transport_peer(view_.rank, view_.size, peer, what);
  }

  /// The tag of the window bookkeeping messages (sequence 0, never a schedule's tag).
  static constexpr tag_t window_tag = detail::collective_tag(0, 0xfffffffeu);

  /// Every rank's record of the window being set up (kit::exchange_records).
  std::vector<detail::shm::window_record> exchange_window_records(
      const detail::shm::window_record& mine, deadline until) {
    return kit::exchange_records(
        *this, view_.rank, view_.size, mine,
        [&](int p, std::span<std::byte> b) { return irecv(p, window_tag, b); },
        [&](int p, std::span<const std::byte> b) { return isend(p, window_tag, b); }, until);
  }

  const detail::shm::window_state& window_at(window w, const char* what) const {
    if (w.index >= windows_.size()) {
      throw error(errc::invalid_argument,
                  std::string("chorus::shm_transport::") + what + ": rank " +
                      std::to_string(view_.rank) +
                      ": not a window of this transport; use the value allocate_window or "
                      "register_window returned");
    }
    return windows_[w.index];
  }

  void check_window_rank(int peer, const char* what) const {
    if (peer < 0 || peer >= view_.size) {
      throw error(errc::invalid_argument,
                  std::string("chorus::shm_transport::") + what + ": rank " + std::to_string(peer) +
                      " is outside the group; ranks are 0.." + std::to_string(view_.size - 1));
    }
  }

  /// Checks a one-sided access of `bytes` at `offset` in `peer`'s part of `w` and returns
  /// where it lands when the window is mapped here (null: go through cross-memory attach).
  std::byte* one_sided_target(window w, int peer, std::size_t offset, std::size_t bytes,
                              const char* what) const {
    const detail::shm::window_state& s = window_at(w, what);
    check_window_rank(peer, what);
    const std::size_t size = s.records[static_cast<std::size_t>(peer)].bytes;
    if (offset > size || bytes > size - offset) {
      throw error(errc::invalid_argument,
                  std::string("chorus::shm_transport::") + what + ": rank " +
                      std::to_string(view_.rank) + ": " + std::to_string(bytes) +
                      " bytes at offset " + std::to_string(offset) + " do not fit rank " +
                      std::to_string(peer) + "'s window of " + std::to_string(size) + " bytes");
    }
    if (peer == view_.rank) return s.local.data() + offset;
    if (!s.mapped) return nullptr;
    return s.peers[static_cast<std::size_t>(peer)].data() + offset;
  }

  std::uint64_t remote_address(window w, int peer, std::size_t offset) const {
    return windows_[w.index].records[static_cast<std::size_t>(peer)].address + offset;
  }

  [[noreturn]] void throw_cross_memory(int peer, const char* what) const {
    const int e = errno;
    throw error(e == ESRCH ? errc::peer_lost : errc::transport,
                "rank " + std::to_string(view_.rank) + ": cannot " + what + " rank " +
                    std::to_string(peer) + "'s registered window: " + std::strerror(e) +
                    (e == EPERM ? " (cross-memory attach needs ptrace permission: same user and "
                                  "kernel.yama.ptrace_scope=0; or use allocate_window)"
                                : ""));
  }

  static request completed_request() {
    auto op = std::make_shared<detail::shm::operation>();
    op->status = detail::shm::state::done;
    return op;
  }

  std::shared_ptr<detail::shm::endpoint> ep_;
  kit::group_view view_;
  std::vector<detail::shm::window_state> windows_;  ///< by `window::index`
  std::shared_ptr<const recovery_point> recovery_;  ///< null: cannot be rebuilt
};

static_assert(transport<shm_transport>);
static_assert(rma_transport<shm_transport>);
static_assert(shrinkable_transport<shm_transport>);

}  // namespace chorus::inline v0

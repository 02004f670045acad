#pragma once
/// \file
/// `chorus::shm_transport`: processes on one host exchange messages through POSIX shared
/// memory.
///
/// Every rank creates one segment, its *inbox*: a header (doorbell, abort record, pid) and
/// one single-producer/single-consumer channel per peer. A channel is a ring of slots with
/// the producer's and the consumer's index on separate cache lines; a message occupies one
/// slot per `slot_bytes` of payload, so a large message streams through the ring while the
/// receiver copies earlier slots out (copy-in and copy-out overlap). The receiver matches
/// arriving messages to posted receives by tag in FIFO order and buffers messages that
/// arrive before their receive is posted.
///
/// Segments are created 0600 under unguessable names, mapped by every rank, and unlinked
/// as soon as every rank has mapped them, so /dev/shm holds nothing of a running job.
///
/// Waiting is a short spin, a few yields, then a futex sleep on the inbox doorbell that
/// peers ring after writing into (or draining) a channel; the sleep wakes at least every
/// `liveness_period` to check the peers' pidfds, so a dead peer becomes `errc::peer_lost`
/// naming it, and to see an abort. Progress is driven by the caller (`test`, `wait`), as
/// the transport concept requires.
#include <chorus/bootstrap/from_env.hpp>
#include <chorus/bootstrap/posix.hpp>
#include <chorus/bootstrap/store.hpp>
#include <chorus/core/deadline.hpp>
#include <chorus/core/error.hpp>
#include <chorus/transport/contract.hpp>
#include <chorus/transport/kit/abort_record.hpp>
#include <chorus/transport/kit/copy.hpp>
#include <chorus/transport/kit/cpus.hpp>
#include <chorus/transport/kit/exchange.hpp>
#include <chorus/transport/kit/peer_processes.hpp>
#include <chorus/transport/kit/per_peer.hpp>
#include <chorus/transport/kit/records.hpp>
#include <chorus/transport/kit/tags.hpp>
#include <chorus/transport/kit/wait_ladder.hpp>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <linux/futex.h>
#include <poll.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

namespace chorus::inline v0 {

namespace detail::shm {

inline constexpr std::size_t cache_line = 64;

/// How often a sleeping rank wakes to check its peers' liveness and the abort flag. 50 ms:
/// a dead peer is reported well inside the 5 s the issue asks for, and the cost (a futex
/// timeout and one poll() per period while idle) is invisible.
inline constexpr auto liveness_period = std::chrono::milliseconds(50);

/// Spin iterations before yielding, and yields before sleeping. A round trip between two
/// processes on separate cores takes well under a microsecond, so a short spin catches the
/// common case without a syscall. When there are more ranks than cores (8 ranks on 2
/// cores), spinning only burns the time slice of the peer being waited for, so the spin
/// shrinks to almost nothing and the rank yields, then sleeps, almost at once.
inline constexpr int spin_iterations = 2000;
inline constexpr int oversubscribed_spin_iterations = 16;
inline constexpr int yield_iterations = 4;

inline int futex_wait(std::atomic<std::uint32_t>* word, std::uint32_t expected,
                      std::chrono::nanoseconds timeout) noexcept {
  timespec ts{};
  ts.tv_sec = static_cast<time_t>(timeout.count() / 1'000'000'000);
  ts.tv_nsec = static_cast<long>(timeout.count() % 1'000'000'000);
  return static_cast<int>(::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(word), FUTEX_WAIT,
                                    expected, &ts, nullptr, 0));
}

inline void futex_wake_all(std::atomic<std::uint32_t>* word) noexcept {
  ::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(word), FUTEX_WAKE, INT32_MAX, nullptr,
            nullptr, 0);
}

/// The header at the start of every rank's inbox segment.
struct inbox_header {
  /// Incremented (seq_cst) by whoever changes something this rank may wait for; the futex
  /// word this rank sleeps on.
  alignas(cache_line) std::atomic<std::uint32_t> doorbell;
  /// How many of this rank's threads are (about to be) asleep: peers only pay for
  /// FUTEX_WAKE when it is not zero.
  std::atomic<std::uint32_t> sleeping;
  /// 1 + the rank this rank's sleeping wait is for; 0 while it is not waiting. Peers read
  /// it to explain a timeout (`endpoint::holdup`); a diagnosis, never used for matching.
  std::atomic<std::int32_t> waiting_for;
  /// The group's abort record as this rank sees it (any rank writes it; zero bytes: none).
  alignas(cache_line) kit::abort_record<480> abort;
  alignas(cache_line) std::int32_t pid;
  std::uint32_t ranks;
  std::uint64_t slot_bytes;
  std::uint32_t slots;
};

/// One direction of one pair: the producer writes slots and advances `head`; the consumer
/// reads them and advances `tail`. Indices count slots forever (64-bit: no wrap in practice).
struct channel_header {
  alignas(cache_line) std::atomic<std::uint64_t> head;  ///< release-stored by the producer
  alignas(cache_line) std::atomic<std::uint64_t> tail;  ///< release-stored by the consumer
};

/// The first bytes of every slot.
struct slot_header {
  std::uint64_t tag;
  std::uint64_t total_bytes;  ///< the whole message (same in every slot of the message)
  std::uint64_t offset;       ///< where this slot's payload starts within the message
  std::uint64_t bytes;        ///< payload bytes in this slot
  std::uint64_t address;      ///< single-copy descriptor: the message in the sender's memory
  std::uint32_t single_copy;  ///< 1: no payload; the receiver reads `address` itself
};

/// Messages at least this large go single-copy (the receiver reads them straight from the
/// sender's memory with process_vm_readv) when the kernel allows it. Below it the two
/// copies through the ring cost less than the system call and page pinning.
inline constexpr std::size_t single_copy_threshold = 128 * 1024;

/// A value at a fixed address in every process, which peers read at start-up to find out
/// whether cross-memory attach works between them (it needs ptrace permission).
inline const std::uint64_t single_copy_probe = 0x63686f7275732121ull;  // "chorus!!"

/// Reads `bytes` bytes at `remote` in process `pid` into `local`. False with errno set on
/// failure.
inline bool read_peer_memory(pid_t pid, std::uint64_t remote, std::byte* local,
                             std::size_t bytes) noexcept {
  std::size_t done = 0;
  while (done < bytes) {
    iovec l{local + done, bytes - done};
    iovec r{reinterpret_cast<void*>(remote + done), bytes - done};
    const ssize_t n = ::process_vm_readv(pid, &l, 1, &r, 1, 0);
    if (n <= 0) {
      if (n == 0) errno = EFAULT;
      return false;
    }
    done += static_cast<std::size_t>(n);
  }
  return true;
}

/// Writes `bytes` bytes from `local` to `remote` in process `pid`. False with errno set.
inline bool write_peer_memory(pid_t pid, std::uint64_t remote, const std::byte* local,
                              std::size_t bytes) noexcept {
  std::size_t done = 0;
  while (done < bytes) {
    iovec l{const_cast<std::byte*>(local) + done, bytes - done};
    iovec r{reinterpret_cast<void*>(remote + done), bytes - done};
    const ssize_t n = ::process_vm_writev(pid, &l, 1, &r, 1, 0);
    if (n <= 0) {
      if (n == 0) errno = EFAULT;
      return false;
    }
    done += static_cast<std::size_t>(n);
  }
  return true;
}

inline constexpr std::size_t slot_header_bytes = 64;  // keeps payloads cache-line aligned
static_assert(sizeof(slot_header) <= slot_header_bytes);

/// Geometry of one inbox, identical on every rank.
struct geometry {
  std::size_t ranks = 1;
  std::size_t slots = 8;
  std::size_t slot_bytes = 64 * 1024;

  [[nodiscard]] std::size_t payload_bytes() const noexcept {
    return slot_bytes - slot_header_bytes;
  }
  [[nodiscard]] std::size_t channel_bytes() const noexcept {
    return sizeof(channel_header) + slots * slot_bytes;
  }
  [[nodiscard]] std::size_t header_bytes() const noexcept {
    return (sizeof(inbox_header) + cache_line - 1) / cache_line * cache_line;
  }
  [[nodiscard]] std::size_t segment_bytes() const noexcept {
    return header_bytes() + ranks * channel_bytes();
  }

  /// 8 slots per channel; slots of 64 KiB, shrunk for many ranks so that an inbox stays
  /// near 16 MiB (P inboxes of P channels each: memory grows with P^2).
  static geometry for_ranks(std::size_t ranks) noexcept {
    geometry g;
    g.ranks = ranks;
    const std::size_t budget = std::size_t{16} << 20;
    std::size_t slot = budget / (ranks * g.slots);
    slot = slot > (std::size_t{64} << 10) ? (std::size_t{64} << 10) : slot;
    slot = slot < std::size_t{4096} ? std::size_t{4096} : slot;
    g.slot_bytes = slot / cache_line * cache_line;
    return g;
  }
};

/// A mapped segment; unmapped on destruction.
class mapping {
 public:
  mapping() = default;
  mapping(void* base, std::size_t bytes) noexcept : base_(base), bytes_(bytes) {}
  mapping(mapping&& o) noexcept : base_(std::exchange(o.base_, nullptr)), bytes_(o.bytes_) {}
  mapping& operator=(mapping&& o) noexcept {
    if (this != &o) {
      reset();
      base_ = std::exchange(o.base_, nullptr);
      bytes_ = o.bytes_;
    }
    return *this;
  }
  ~mapping() { reset(); }
  [[nodiscard]] std::byte* data() const noexcept { return static_cast<std::byte*>(base_); }

 private:
  void reset() noexcept {
    if (base_ != nullptr) ::munmap(base_, bytes_);
    base_ = nullptr;
  }
  void* base_ = nullptr;
  std::size_t bytes_ = 0;
};

[[noreturn]] inline void throw_errno(int rank, const std::string& what) {
  throw error(errc::transport, "chorus::shm_transport: rank " + std::to_string(rank) + ": " + what +
                                   ": " + std::strerror(errno));
}

/// What a rank tells its peers about one window: the segment holding it (empty for
/// registered process memory, which peers reach through cross-memory attach), its size and
/// its address in the owner's process.
struct window_record {
  char segment[168];
  std::uint64_t bytes;
  std::uint64_t address;
};

/// One window as this rank sees it.
struct window_state {
  std::span<std::byte> local;          ///< this rank's memory of the window
  mapping own;                         ///< allocated windows: this rank's segment
  std::vector<mapping> peers;          ///< allocated windows: every rank's segment, mapped
  std::vector<window_record> records;  ///< every rank's record
  bool mapped = false;                 ///< allocated (load/store) or registered (CMA)
};

enum class state : int { posted, active, done };

/// One posted send or receive. Process-local; the shared memory only holds slots.
struct operation {
  bool is_send = false;
  int peer = 0;
  tag_t tag = 0;
  const std::byte* send_data = nullptr;
  std::byte* recv_data = nullptr;
  std::size_t bytes = 0;
  std::size_t progress = 0;      ///< bytes moved so far
  std::vector<std::byte> owned;  ///< a private copy of a send cancelled mid-stream (`cancel`)
  state status = state::posted;
  bool failed = false;
  std::string failure;
};

using operation_ptr = std::shared_ptr<operation>;

/// A message that arrived before its receive was posted. Its storage is not initialised:
/// only the pages the message's bytes are written to are touched (a page fault each), so a
/// large message whose receive is posted while it streams in (which then takes the rest
/// over, see `endpoint::irecv`) costs only what had arrived.
struct unexpected_message {
  tag_t tag = 0;
  std::unique_ptr<std::byte[]> data;
  std::size_t bytes = 0;
  std::size_t received = 0;
  [[nodiscard]] bool complete() const noexcept { return received == bytes; }
};

/// One process's end of the shared-memory channels of a job: the inboxes, the rings to
/// every peer, matching and progress, in world ranks and with the groups' contexts
/// already in the tags. `shm_transport` (below) is one group's view of it; every group of
/// the job made by `split` shares the endpoint of the world. Thread-safe: each group's
/// progress thread and callers may use it at once (`lock_`).
class endpoint {
 public:
  using request = detail::shm::operation_ptr;

  /// Creates this rank's inbox, exchanges names through `exchange`, maps every peer's inbox
  /// and unlinks its own once all ranks have mapped it. `exchange` is called twice with this
  /// rank's blob (see `blob_exchange`; `store_exchange` makes one from a bootstrap store).
  /// `job` names the segments (use a job-unique token, e.g. chorusrun's CHORUS_JOB_ID); a
  /// random suffix makes them unguessable.
  endpoint(int rank, int size, std::string_view job, const blob_exchange& exchange)
      : rank_(rank),
        size_(size),
        geometry_(detail::shm::geometry::for_ranks(static_cast<std::size_t>(size))) {
    if (size < 1 || rank < 0 || rank >= size) {
      throw error(errc::invalid_argument, "chorus::shm_transport: rank " + std::to_string(rank) +
                                              " is outside a group of " + std::to_string(size));
    }
    job_.assign(job.substr(0, 64));
    const std::string name = segment_name("");
    const std::size_t bytes = geometry_.segment_bytes();
    {
      links_ = kit::per_peer<link>(size);
      links_[rank].inbox = create_segment(name, bytes);
      bool unlinked = false;
      auto unlink_own = [&] {
        if (!unlinked) ::shm_unlink(name.c_str());
        unlinked = true;
      };
      try {
        auto* h = new (inbox(rank)) detail::shm::inbox_header{};
        h->pid = static_cast<std::int32_t>(::getpid());
        h->ranks = static_cast<std::uint32_t>(size);
        h->slot_bytes = geometry_.slot_bytes;
        h->slots = static_cast<std::uint32_t>(geometry_.slots);
        for (int s = 0; s < size; ++s) new (channel_in(s)) detail::shm::channel_header{};
        // Round 1: names and pids.
        const std::vector<std::string> blobs = exchange(
            name + " " + std::to_string(::getpid()) + " " +
            std::to_string(reinterpret_cast<std::uintptr_t>(&detail::shm::single_copy_probe)));
        if (blobs.size() != static_cast<std::size_t>(size)) {
          throw error(errc::transport, "chorus::shm_transport: the exchange returned " +
                                           std::to_string(blobs.size()) + " entries for " +
                                           std::to_string(size) + " ranks");
        }
        peers_ = kit::peer_processes(size);
        std::string readable(static_cast<std::size_t>(size), '0');  // peers we can read
        const bool single_copy_allowed = single_copy_enabled();
        for (int p = 0; p < size; ++p) {
          const std::string& blob = blobs[static_cast<std::size_t>(p)];
          const auto first = blob.find(' ');
          const auto second = blob.find(' ', first + 1);
          const std::string peer_name = blob.substr(0, first);
          const int pid = std::stoi(blob.substr(first + 1, second - first - 1));
          if (p == rank) continue;
          peers_.watch(p, pid);
          std::uint64_t probe = 0;
          if (single_copy_allowed &&
              detail::shm::read_peer_memory(pid, std::stoull(blob.substr(second + 1)),
                                            reinterpret_cast<std::byte*>(&probe), sizeof probe) &&
              probe == detail::shm::single_copy_probe) {
            readable[static_cast<std::size_t>(p)] = '1';
            links_[p].single_copy_from = true;
          }
          links_[p].inbox = open_segment(peer_name, bytes, p);
          check_inbox(p, pid);
        }
        // Round 2: everybody has mapped everything, so the names can go; and each rank says
        // which peers it can read single-copy, so that senders know whom to offer it.
        const std::vector<std::string> readers = exchange(readable);
        for (int p = 0; p < size; ++p) {
          const std::string& r = readers[static_cast<std::size_t>(p)];
          links_[p].single_copy_to = p != rank && r.size() == static_cast<std::size_t>(size) &&
                                     r[static_cast<std::size_t>(rank)] == '1';
        }
        unlink_own();
      } catch (...) {
        unlink_own();
        throw;
      }
    }
    if (size > kit::usable_cpus()) spin_limit_ = detail::shm::oversubscribed_spin_iterations;
  }
  endpoint(const endpoint&) = delete;
  endpoint& operator=(const endpoint&) = delete;
  [[nodiscard]] int pid(int peer) const noexcept { return peers_.pid(peer); }

  [[nodiscard]] int rank() const noexcept { return rank_; }
  [[nodiscard]] int size() const noexcept { return size_; }
  /// Whether large messages to `peer` go single-copy (enabled, and the kernel allowed the
  /// peer to read this process's memory at start-up).
  [[nodiscard]] bool single_copy_to(int peer) const noexcept { return links_[peer].single_copy_to; }

  request isend(int peer, tag_t tag, std::span<const std::byte> data) {
    check_peer(peer, "send to");
    check_aborted();
    auto op = std::make_shared<detail::shm::operation>();
    std::lock_guard g(lock_);
    op->is_send = true;
    op->peer = peer;
    op->tag = tag;
    op->send_data = data.data();
    op->bytes = data.size();
    links_[peer].outgoing.push_back(op);
    push(peer);
    return op;
  }

  request irecv(int peer, tag_t tag, std::span<std::byte> data) {
    check_peer(peer, "receive from");
    check_aborted();
    auto op = std::make_shared<detail::shm::operation>();
    std::lock_guard g(lock_);
    op->peer = peer;
    op->tag = tag;
    op->recv_data = data.data();
    op->bytes = data.size();
    auto& arrived = links_[peer].unexpected;
    for (auto it = arrived.begin(); it != arrived.end(); ++it) {
      detail::shm::unexpected_message& u = **it;
      if (u.tag != tag) continue;
      if (u.complete()) {
        deliver_buffered(u, *op);
      } else {
        take_over(links_[peer].incoming, u, op);
      }
      arrived.erase(it);
      return op;
    }
    links_[peer].posted.push_back(op);
    return op;
  }

  bool test(request& req) {
    std::lock_guard g(lock_);
    progress();
    return finished(req);
  }

  void wait(request& req, deadline until) {
    if (wait_until(req, until, true)) return;
    throw error(errc::timeout, "rank " + std::to_string(rank_) + ": no " +
                                   (req->is_send ? "room at" : "message from") + " rank " +
                                   std::to_string(req->peer) + " before the deadline" +
                                   holdup(req->peer));
  }

  /// Why rank `peer` may have been silent, from what this host shows: the chain of ranks
  /// each waiting for the next (`inbox_header::waiting_for`), to the first that does not
  /// wait, named when its process is stopped. Empty when `peer` itself is not waiting and
  /// not stopped: then it is the rank to look at.
  [[nodiscard]] std::string holdup(int peer) const {
    std::string why;
    std::vector<bool> seen(static_cast<std::size_t>(size_), false);
    seen[static_cast<std::size_t>(rank_)] = true;
    for (int r = peer;;) {
      seen[static_cast<std::size_t>(r)] = true;
      if (std::string stopped = peers_.stopped_clause(r); !stopped.empty()) {
        return why + stopped;
      }
      const int next = inbox(r)->waiting_for.load(std::memory_order_relaxed) - 1;
      if (next < 0 || next >= size_ || next == r) return why;
      why += "; rank " + std::to_string(r) + " is itself waiting for rank " + std::to_string(next);
      if (seen[static_cast<std::size_t>(next)]) return why + " (a cycle of waits)";
      r = next;
    }
  }

  /// Like `wait`, but returns false at the deadline instead of failing (the request stays
  /// posted); a lost peer or an abort still throws.
  bool try_wait(request& req, deadline until) { return wait_until(req, until, false); }

  /// `try_wait`; with `failing`, a deadline is the end of this rank's part in the group.
  bool wait_until(request& req, deadline until, bool failing) {
    // The endpoint's lock is held for each pass of progress and never while spinning,
    // yielding or sleeping: another thread (another group's progress thread, or a caller)
    // then moves its own work, and whichever thread polls moves everybody's bytes.
    kit::wait_ladder ladder(spin_limit_, detail::shm::yield_iterations);
    detail::shm::inbox_header* me = inbox(rank_);
    // Says whom this rank waits for once it sleeps (peers' timeouts read it), until it
    // returns; or for good when it fails at its deadline (`failing`): a peer that times out
    // a moment later on this rank must still see whom this rank waited for.
    struct waiting_mark {
      std::atomic<std::int32_t>* word = nullptr;
      waiting_mark() = default;
      waiting_mark(const waiting_mark&) = delete;
      waiting_mark& operator=(const waiting_mark&) = delete;
      ~waiting_mark() {
        if (word != nullptr) word->store(0, std::memory_order_relaxed);
      }
    } mark;
    for (;;) {
      {
        std::lock_guard g(lock_);
        const bool moved = progress();
        if (finished(req)) return true;
        if (moved) {
          ladder.reset();
          continue;
        }
      }
      if (ladder.idle() != kit::wait_ladder::rung::sleep) continue;
      const auto now = clock::now();
      if (peer_gone(req->peer)) {
        // Whatever it sent before exiting is in our inbox already: take it, then decide.
        std::lock_guard g(lock_);
        progress();
        if (finished(req)) return true;
        throw error(errc::peer_lost,
                    "rank " + std::to_string(rank_) + ": rank " + std::to_string(req->peer) +
                        " (pid " + std::to_string(peers_.pid(req->peer)) +
                        ") exited while this rank " +
                        (req->is_send ? "was sending to it" : "waited for a message from it"));
      }
      if (now >= until.at) {
        if (failing) mark.word = nullptr;
        return false;
      }
      // Sleep. Announce it first (a count: several threads of this process may sleep), then
      // re-check: a peer that changed something after our last progress() has incremented
      // the doorbell, so the futex returns at once.
      struct sleeper {
        std::atomic<std::uint32_t>& count;
        explicit sleeper(std::atomic<std::uint32_t>& c) : count(c) {
          count.fetch_add(1, std::memory_order_seq_cst);
        }
        sleeper(const sleeper&) = delete;
        sleeper& operator=(const sleeper&) = delete;
        ~sleeper() { count.fetch_sub(1, std::memory_order_relaxed); }
      } announced(me->sleeping);
      mark.word = &me->waiting_for;
      me->waiting_for.store(req->peer + 1, std::memory_order_relaxed);
      const std::uint32_t bell = me->doorbell.load(std::memory_order_seq_cst);
      bool idle = false;
      {
        std::lock_guard g(lock_);
        idle = !progress() && !finished(req);
      }
      if (idle) {
        const auto left = std::chrono::duration_cast<std::chrono::nanoseconds>(until.at - now);
        detail::shm::futex_wait(
            &me->doorbell, bell,
            std::min<std::chrono::nanoseconds>(left, detail::shm::liveness_period));
      }
      ladder.reset();
    }
  }

  void cancel(request& req) noexcept {
    std::lock_guard g(lock_);
    if (!req || req->status == detail::shm::state::done) return;
    try {
      if (req->is_send) {
        auto& queue = links_[req->peer].outgoing;
        if (req->progress == 0) {
          std::erase(queue, req);
        } else {
          // Part of it is in the ring already: the receiver expects the rest. Keep
          // streaming it from a private copy, so the caller's buffer is free.
          req->owned.assign(req->send_data, req->send_data + req->bytes);
          req->send_data = req->owned.data();
        }
      } else {
        auto& queue = links_[req->peer].posted;
        std::erase(queue, req);
        auto& in = links_[req->peer].incoming;
        if (in.target == req) in.discard = true;  // drain the rest of it into nowhere
      }
    } catch (...) {
    }
    req->failed = true;
    req->failure = "cancelled";
    req->status = detail::shm::state::done;
  }

  void abort(std::string_view reason) noexcept { abort(errc::aborted, reason); }

  /// Aborts with the code of the failure that caused it; peers fail with the same code.
  void abort(errc code, std::string_view reason) noexcept {
    for (int p = 0; p < size_; ++p) {
      detail::shm::inbox_header* h = inbox(p);
      if (h == nullptr) continue;
      h->abort.record(rank_, code, reason);
      ring(p);
    }
  }

  // The rest is also used by shm_transport's windows.
  struct incoming_state {
    request target;                                           ///< the receive being filled, or null
    std::shared_ptr<detail::shm::unexpected_message> buffer;  ///< or the buffered message
    bool discard = false;  ///< drop the rest (cancelled or size mismatch)
    bool active = false;
    std::size_t total = 0;
    std::size_t received = 0;
  };

  /// Everything this rank holds for one peer (itself included: its own inbox).
  struct link {
    detail::shm::mapping inbox;    ///< the peer's inbox segment, mapped here
    std::deque<request> outgoing;  ///< sends to the peer, in send order
    /// single-copy sends the peer has not finished reading, with their descriptor slot
    std::deque<std::pair<request, std::uint64_t>> in_flight;
    bool single_copy_to = false;    ///< whether the peer reads our memory directly
    bool single_copy_from = false;  ///< whether we read the peer's (we told it so)
    std::deque<request> posted;     ///< unmatched receives from the peer
    /// messages from the peer that arrived before their receive, in arrival order
    std::deque<std::shared_ptr<detail::shm::unexpected_message>> unexpected;
    incoming_state incoming;  ///< the message from the peer streaming in
  };

  /// Single-copy transfers are used only with `CHORUS_SHM_SINGLE_COPY=1`. Measured on the
  /// development machine (docs/transports.md), process_vm_readv moves 4.5-10 GB/s where a
  /// memcpy moves 7.5-36 GB/s, and the two copies through a cache-resident ring cost about
  /// one memcpy of the message: single-copy loses at every size there. It stays available
  /// (and tested) for hosts where page pinning is cheap.
  static bool single_copy_enabled() {
    const char* v = std::getenv("CHORUS_SHM_SINGLE_COPY");
    return v != nullptr && std::string_view(v) == "1";
  }

  static detail::shm::mapping map(int f, std::size_t bytes, const std::string& name) {
    void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, f, 0);
    if (p == MAP_FAILED) {
      throw error(errc::transport, "chorus::shm_transport: mmap of " + name + " (" +
                                       std::to_string(bytes) + " bytes): " + std::strerror(errno));
    }
    return {p, bytes};
  }

  /// Creates segment `name` (0600, exclusive) of `bytes` bytes and maps it; the caller
  /// unlinks it once every peer has mapped it. Unlinks it itself if it cannot be mapped.
  detail::shm::mapping create_segment(const std::string& name, std::size_t bytes) const {
    bootstrap::detail::unique_fd f(
        ::shm_open(name.c_str(), O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0600));
    if (f.get() < 0) detail::shm::throw_errno(rank_, "shm_open(" + name + ")");
    try {
      if (::ftruncate(f.get(), static_cast<off_t>(bytes)) != 0) {
        detail::shm::throw_errno(rank_, "ftruncate of " + std::to_string(bytes) + " bytes for " +
                                            name + " (is /dev/shm large enough?)");
      }
      return map(f.get(), bytes, name);
    } catch (...) {
      ::shm_unlink(name.c_str());
      throw;
    }
  }

  /// Rank `p`'s inbox, just mapped, must carry what its owner wrote before announcing it:
  /// its pid and this job's geometry.
  void check_inbox(int p, int pid) const {
    const detail::shm::inbox_header* h = inbox(p);
    if (h->pid != pid || h->ranks != static_cast<std::uint32_t>(size_) ||
        h->slot_bytes != geometry_.slot_bytes ||
        h->slots != static_cast<std::uint32_t>(geometry_.slots)) {
      throw error(errc::transport,
                  "chorus::shm_transport: rank " + std::to_string(rank_) + ": the inbox of rank " +
                      std::to_string(p) + " says pid " + std::to_string(h->pid) + ", " +
                      std::to_string(h->ranks) + " ranks, slots of " +
                      std::to_string(h->slot_bytes) + " bytes, where rank " + std::to_string(p) +
                      " announced pid " + std::to_string(pid) + " in a job of " +
                      std::to_string(size_) +
                      " ranks: it is not that rank's inbox (a forged or stale segment)");
    }
  }

  /// Maps rank `owner`'s segment `name` of `bytes` bytes, after checking that it is what
  /// that rank made: a regular object of this user, unreadable to anybody else (0600), of
  /// exactly that size. A segment that fails a check was not made by a rank of this job (a
  /// name another user forged, or planted under a guessed name) -- or a shorter one, which
  /// would make this process die of SIGBUS at the first access beyond its end.
  detail::shm::mapping open_segment(const std::string& name, std::size_t bytes, int owner) const {
    bootstrap::detail::unique_fd f(::shm_open(name.c_str(), O_RDWR | O_CLOEXEC | O_NOFOLLOW, 0600));
    if (f.get() < 0) {
      detail::shm::throw_errno(rank_, "shm_open(" + name + ") of rank " + std::to_string(owner));
    }
    struct stat st {};
    if (::fstat(f.get(), &st) != 0) {
      detail::shm::throw_errno(rank_, "fstat of " + name + " of rank " + std::to_string(owner));
    }
    const auto refuse = [&](const std::string& why) {
      throw error(errc::transport,
                  "chorus::shm_transport: rank " + std::to_string(rank_) + ": the segment " + name +
                      " that rank " + std::to_string(owner) + " announced " + why +
                      "; it was not made by a rank of this job (another user's, or a stale "
                      "or forged name), so it is not used");
    };
    if (!S_ISREG(st.st_mode)) refuse("is not a regular shared-memory object");
    if (st.st_uid != ::geteuid()) {
      refuse("belongs to uid " + std::to_string(st.st_uid) + ", not to this process's uid " +
             std::to_string(::geteuid()));
    }
    if ((st.st_mode & 077) != 0) {
      char mode[8];
      std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
      refuse(std::string("has mode ") + mode + " (a rank makes its segments 0600)");
    }
    if (static_cast<std::uint64_t>(st.st_size) != bytes) {
      refuse("has " + std::to_string(st.st_size) + " bytes, not the " + std::to_string(bytes) +
             " expected");
    }
    return map(f.get(), bytes, name);
  }

  /// "/chorus-<job>-<rank>-<what><32 random hex digits>".
  std::string segment_name(std::string_view what) const {
    std::random_device rd;
    const std::uint64_t a = (static_cast<std::uint64_t>(rd()) << 32) | rd();
    const std::uint64_t b = (static_cast<std::uint64_t>(rd()) << 32) | rd();
    char suffix[40];
    std::snprintf(suffix, sizeof suffix, "%016llx%016llx", static_cast<unsigned long long>(a),
                  static_cast<unsigned long long>(b));
    std::string clean;
    for (char c : job_)
      clean += (std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_') ? c : '_';
    return "/chorus-" + clean + "-" + std::to_string(rank_) + "-" + std::string(what) + suffix;
  }

  [[nodiscard]] detail::shm::inbox_header* inbox(int r) const noexcept {
    return reinterpret_cast<detail::shm::inbox_header*>(links_[r].inbox.data());
  }
  /// The channel in rank `owner`'s inbox that carries messages from rank `sender`.
  [[nodiscard]] detail::shm::channel_header* channel(int owner, int sender) const noexcept {
    return reinterpret_cast<detail::shm::channel_header*>(
        links_[owner].inbox.data() + geometry_.header_bytes() +
        static_cast<std::size_t>(sender) * geometry_.channel_bytes());
  }
  [[nodiscard]] detail::shm::channel_header* channel_in(int sender) const noexcept {
    return channel(rank_, sender);
  }
  [[nodiscard]] std::byte* slot(detail::shm::channel_header* c,
                                std::uint64_t index) const noexcept {
    return reinterpret_cast<std::byte*>(c) + sizeof(detail::shm::channel_header) +
           (index % geometry_.slots) * geometry_.slot_bytes;
  }

  /// Tells rank `r` that something it may wait for changed.
  void ring(int r) noexcept {
    detail::shm::inbox_header* h = inbox(r);
    h->doorbell.fetch_add(1, std::memory_order_seq_cst);
    if (h->sleeping.load(std::memory_order_seq_cst) != 0) detail::shm::futex_wake_all(&h->doorbell);
  }

  /// Moves as many bytes as the rings allow, in both directions. True if anything moved.
  bool progress() {
    bool moved = false;
    for (int p = 0; p < size_; ++p) {
      if (p == rank_) continue;
      moved |= drain(p);
      moved |= push(p);
    }
    return moved;
  }

  /// Producer side: writes pending sends to `peer` into free slots of its channel, and
  /// completes single-copy sends the peer has finished reading.
  bool push(int peer) {
    auto& queue = links_[peer].outgoing;
    auto& reading = links_[peer].in_flight;
    if (queue.empty() && reading.empty()) return false;
    detail::shm::channel_header* c = channel(peer, rank_);
    std::uint64_t head = c->head.load(std::memory_order_relaxed);
    const std::uint64_t tail = c->tail.load(std::memory_order_acquire);
    bool moved = false;
    // The consumer moves `tail` past a descriptor only after its read has finished.
    while (!reading.empty() && reading.front().second < tail) {
      reading.front().first->status = detail::shm::state::done;
      reading.pop_front();
      moved = true;
    }
    bool published = false;
    while (!queue.empty() && head - tail < geometry_.slots) {
      detail::shm::operation& op = *queue.front();
      std::byte* s = slot(c, head);
      auto* hdr = reinterpret_cast<detail::shm::slot_header*>(s);
      hdr->tag = op.tag;
      hdr->total_bytes = op.bytes;
      hdr->offset = op.progress;
      if (op.progress == 0 && op.bytes >= detail::shm::single_copy_threshold &&
          links_[peer].single_copy_to && op.owned.empty()) {
        hdr->bytes = 0;
        hdr->address = reinterpret_cast<std::uintptr_t>(op.send_data);
        hdr->single_copy = 1;
        op.progress = op.bytes;
        op.status = detail::shm::state::active;
        reading.emplace_back(queue.front(), head);
        queue.pop_front();
      } else {
        const std::size_t n = std::min(op.bytes - op.progress, geometry_.payload_bytes());
        hdr->bytes = n;
        hdr->single_copy = 0;
        if (n != 0)
          detail::copy_bytes(s + detail::shm::slot_header_bytes, op.send_data + op.progress, n);
        op.progress += n;
        if (op.progress == op.bytes) {
          op.status = detail::shm::state::done;
          queue.pop_front();
        } else {
          op.status = detail::shm::state::active;
        }
      }
      ++head;
      published = true;
    }
    if (published) {
      c->head.store(head, std::memory_order_release);  // publishes the slots written above
      ring(peer);
    }
    return moved || published;
  }

  /// Consumer side: reads the slots that `peer` has published into this rank's inbox.
  bool drain(int peer) {
    detail::shm::channel_header* c = channel_in(peer);
    std::uint64_t tail = c->tail.load(std::memory_order_relaxed);
    const std::uint64_t head = c->head.load(std::memory_order_acquire);
    if (tail == head) return false;
    incoming_state& in = links_[peer].incoming;
    if (head - tail > geometry_.slots) corrupt_slot(peer, "head", head - tail);
    while (tail != head) {
      const std::byte* s = slot(c, tail);
      // One read of the header: the checks below hold for the values used after them even
      // if the peer writes the slot meanwhile.
      const detail::shm::slot_header h = *reinterpret_cast<const detail::shm::slot_header*>(s);
      const std::byte* payload = s + detail::shm::slot_header_bytes;
      if (!in.active) start_message(peer, h.tag, h.total_bytes, in);
      check_slot(peer, h, in);
      std::byte* const into = in.discard  ? nullptr
                              : in.target ? in.target->recv_data
                                          : in.buffer->data.get();
      std::size_t n = h.bytes;
      if (h.single_copy != 0) {
        n = h.total_bytes;
        if (into != nullptr &&
            !detail::shm::read_peer_memory(peers_.pid(peer), h.address, into, n)) {
          throw error(errno == ESRCH ? errc::peer_lost : errc::transport,
                      "rank " + std::to_string(rank_) + ": reading a message of " +
                          std::to_string(n) + " bytes from rank " + std::to_string(peer) +
                          "'s memory failed: " + std::strerror(errno));
        }
      } else if (into != nullptr && n != 0) {
        detail::copy_bytes(into + h.offset, payload, n);
      }
      in.received += n;
      ++tail;
      if (in.received == in.total) finish_message(in);
    }
    c->tail.store(tail, std::memory_order_release);  // the slots may be reused
    ring(peer);
    return true;
  }

  /// A slot must continue the message streaming in from `peer` exactly where it stands and
  /// stay inside it and inside the slot; anything else would make this rank read or write
  /// out of bounds, so it is refused before any copy.
  void check_slot(int peer, const detail::shm::slot_header& h, const incoming_state& in) const {
    if (h.total_bytes != in.total) corrupt_slot(peer, "total_bytes", h.total_bytes);
    if (h.offset != in.received) corrupt_slot(peer, "offset", h.offset);
    if (h.single_copy != 0) {
      if (h.single_copy != 1 || in.received != 0 || !links_[peer].single_copy_from) {
        corrupt_slot(peer, "single_copy", h.single_copy);
      }
      return;
    }
    if (h.bytes > geometry_.payload_bytes() || h.bytes > in.total - in.received ||
        (h.bytes == 0 && in.total != 0)) {
      corrupt_slot(peer, "bytes", h.bytes);
    }
  }

  [[noreturn]] void corrupt_slot(int peer, const char* field, std::uint64_t value) const {
    throw error(errc::transport,
                "rank " + std::to_string(rank_) + ": a corrupt slot in the channel from rank " +
                    std::to_string(peer) + " (" + field + " = " + std::to_string(value) +
                    "): that process wrote outside chorus's protocol (damaged memory, or not a "
                    "chorus rank of this job); nothing was copied");
  }

  void start_message(int peer, tag_t tag, std::size_t total, incoming_state& in) {
    in = incoming_state{};
    in.active = true;
    in.total = total;
    auto& posted = links_[peer].posted;
    for (auto it = posted.begin(); it != posted.end(); ++it) {
      if ((*it)->tag != tag) continue;
      in.target = *it;
      posted.erase(it);
      in.target->status = detail::shm::state::active;
      if (in.target->bytes != total) {
        mismatch(*in.target, total);
        in.discard = true;
      }
      return;
    }
    in.buffer = std::make_shared<detail::shm::unexpected_message>();
    in.buffer->tag = tag;
    in.buffer->data.reset(new std::byte[total]);  // not value-initialised: see the struct
    in.buffer->bytes = total;
    links_[peer].unexpected.push_back(in.buffer);
  }

  void finish_message(incoming_state& in) {
    if (in.target) {
      if (in.target->status != detail::shm::state::done) {  // not cancelled, no mismatch
        in.target->progress = in.total;
        in.target->status = detail::shm::state::done;
      }
    } else if (in.buffer) {
      in.buffer->received = in.buffer->bytes;
    }
    in = incoming_state{};
  }

  /// A receive `op` matches `u`, the message from this peer that is still streaming in
  /// (`in`, the only one that can be incomplete): what has arrived is copied and the rest
  /// streams straight into the receive. A size mismatch fails `op` and drops the rest.
  void take_over(incoming_state& in, detail::shm::unexpected_message& u, const request& op) {
    in.buffer.reset();  // `u` stays alive in the caller's list until it is erased
    if (op->bytes != u.bytes) {
      mismatch(*op, u.bytes);
      in.discard = true;
      return;
    }
    if (in.received != 0) detail::copy_bytes(op->recv_data, u.data.get(), in.received);
    in.target = op;
    op->status = detail::shm::state::active;
  }

  void deliver_buffered(const detail::shm::unexpected_message& u, detail::shm::operation& op) {
    if (op.bytes != u.bytes) {
      mismatch(op, u.bytes);
    } else if (u.bytes != 0) {
      detail::copy_bytes(op.recv_data, u.data.get(), u.bytes);
    }
    op.progress = op.bytes;
    op.status = detail::shm::state::done;
  }

  void mismatch(detail::shm::operation& op, std::size_t sent) {
    op.failed = true;
    op.failure = "rank " + std::to_string(rank_) + " posted a receive of " +
                 std::to_string(op.bytes) + " bytes from rank " + std::to_string(op.peer) +
                 " but that rank sent " + std::to_string(sent) +
                 " bytes with the same tag: the ranks called with different counts or types";
    op.status = detail::shm::state::done;
  }

  bool finished(request& req) {
    if (req->status != detail::shm::state::done) {
      check_aborted();
      return false;
    }
    if (req->failed) throw error(errc::mismatch, req->failure);
    return true;
  }

  void check_aborted() const { inbox(rank_)->abort.throw_if_raised(rank_); }

  /// Whether the process of rank `p` has exited.
  bool peer_gone(int p) const noexcept { return peers_.gone(p); }

  void check_peer(int peer, const char* what) const {
    detail::check_transport_peer(rank_, size_, peer, what);
  }

  int rank_;
  int size_;
  std::string job_;  ///< names this job's segments
  int spin_limit_ = detail::shm::spin_iterations;
  detail::shm::geometry geometry_;
  kit::peer_processes peers_;
  kit::per_peer<link> links_;
  kit::context_pool contexts;  ///< the group contexts this process uses
  /// Every group of the job shares this endpoint, and each may be driven by its own thread
  /// (a communicator's progress thread, or its caller): posting, progress, completion and
  /// cancellation all hold this lock. Aborts do not (they only touch the shared memory).
  std::mutex lock_;
};

}  // namespace detail::shm

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
      : shm_transport(
            world.rank, world.size, world.job_id,
            store_exchange(world.store, "chorus/" + world.job_id + "/shm/" + std::string(instance),
                           world.rank, world.size, world.timeout)) {}

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
      name = ep_->segment_name("w" + std::to_string(windows_.size()) + "-");
      w.own = ep_->create_segment(name, bytes);
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
            ep_->open_segment(rec.segment, rec.bytes, view_.world(p));
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
};

static_assert(transport<shm_transport>);
static_assert(rma_transport<shm_transport>);

}  // namespace chorus::inline v0

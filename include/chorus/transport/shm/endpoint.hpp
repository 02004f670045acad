#pragma once
/// \file
/// `detail::shm::endpoint`: one process's end of the shared-memory channels of a job --
/// its inbox and every peer's (segment.hpp), the rings it pushes into and drains (the
/// channel of each pair), matching (matching.hpp), waiting, liveness and aborts.
/// `chorus::shm_transport` (shm.hpp) is one group's view of it.
///
/// Waiting is a short spin, a few yields, then a futex sleep on the inbox doorbell that
/// peers ring after writing into (or draining) a channel; the sleep wakes at least every
/// `liveness_period` to check the peers' pidfds, so a dead peer becomes `errc::peer_lost`
/// naming it, and to see an abort.
#include <chorus/core/deadline.hpp>
#include <chorus/core/error.hpp>
#include <chorus/transport/contract.hpp>
#include <chorus/transport/kit/copy.hpp>
#include <chorus/transport/kit/cpus.hpp>
#include <chorus/transport/kit/exchange.hpp>
#include <chorus/transport/kit/group_view.hpp>
#include <chorus/transport/kit/peer_processes.hpp>
#include <chorus/transport/kit/per_peer.hpp>
#include <chorus/transport/kit/tags.hpp>
#include <chorus/transport/kit/wait_ladder.hpp>
#include <chorus/transport/shm/cross_memory.hpp>
#include <chorus/transport/shm/matching.hpp>
#include <chorus/transport/shm/segment.hpp>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <deque>
#include <memory>
#include <mutex>
#include <new>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <sys/mman.h>
#include <unistd.h>

namespace chorus::inline v0::detail::shm {

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

/// One process's end of the shared-memory channels of a job: the inboxes, the rings to
/// every peer, matching and progress, in world ranks and with the groups' contexts
/// already in the tags. `shm_transport` (shm.hpp) is one group's view of it; every group of
/// the job made by `split` shares the endpoint of the world. Thread-safe: each group's
/// progress thread and callers may use it at once (`lock_`).
class endpoint {
 public:
  using request = operation_ptr;

  /// Creates this rank's inbox, exchanges names through `exchange`, maps every peer's inbox
  /// and unlinks its own once all ranks have mapped it. `exchange` is called twice with this
  /// rank's blob (see `blob_exchange`; `store_exchange` makes one from a bootstrap store).
  /// `job` names the segments (use a job-unique token, e.g. chorusrun's CHORUS_JOB_ID); a
  /// random suffix makes them unguessable.
  endpoint(int rank, int size, std::string_view job, const blob_exchange& exchange)
      : rank_(rank), size_(size), geometry_(geometry::for_ranks(static_cast<std::size_t>(size))) {
    if (size < 1 || rank < 0 || rank >= size) {
      throw error(errc::invalid_argument, "chorus::shm_transport: rank " + std::to_string(rank) +
                                              " is outside a group of " + std::to_string(size));
    }
    job_.assign(job.substr(0, 64));
    const std::string name = segment_name(job_, rank_, "");
    const std::size_t bytes = geometry_.segment_bytes();
    {
      links_ = kit::per_peer<link>(size);
      links_[rank].inbox = create_segment(rank_, name, bytes);
      bool unlinked = false;
      auto unlink_own = [&] {
        if (!unlinked) ::shm_unlink(name.c_str());
        unlinked = true;
      };
      try {
        auto* h = new (inbox(rank)) inbox_header{};
        h->pid = static_cast<std::int32_t>(::getpid());
        h->ranks = static_cast<std::uint32_t>(size);
        h->slot_bytes = geometry_.slot_bytes;
        h->slots = static_cast<std::uint32_t>(geometry_.slots);
        for (int s = 0; s < size; ++s) new (channel_in(s)) channel_header{};
        // Round 1: names and pids.
        const std::vector<std::string> blobs =
            exchange(name + " " + std::to_string(::getpid()) + " " +
                     std::to_string(reinterpret_cast<std::uintptr_t>(&single_copy_probe)));
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
              read_peer_memory(pid, std::stoull(blob.substr(second + 1)),
                               reinterpret_cast<std::byte*>(&probe), sizeof probe) &&
              probe == single_copy_probe) {
            readable[static_cast<std::size_t>(p)] = '1';
            links_[p].single_copy_from = true;
          }
          links_[p].inbox = open_segment(rank_, peer_name, bytes, p);
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
    if (size > kit::usable_cpus()) spin_limit_ = oversubscribed_spin_iterations;
  }
  endpoint(const endpoint&) = delete;
  endpoint& operator=(const endpoint&) = delete;
  [[nodiscard]] int pid(int peer) const noexcept { return peers_.pid(peer); }
  /// Whether the process of rank `p` has exited.
  [[nodiscard]] bool peer_gone(int p) const noexcept { return peers_.gone(p); }

  [[nodiscard]] int rank() const noexcept { return rank_; }
  /// The job token that names this job's segments.
  [[nodiscard]] const std::string& job() const noexcept { return job_; }
  [[nodiscard]] int size() const noexcept { return size_; }
  /// Whether large messages to `peer` go single-copy (enabled, and the kernel allowed the
  /// peer to read this process's memory at start-up).
  [[nodiscard]] bool single_copy_to(int peer) const noexcept { return links_[peer].single_copy_to; }

  request isend(int peer, tag_t tag, std::span<const std::byte> data) {
    request op = new_operation(peer, tag, data.size(), "send to");
    op->is_send = true;
    op->send_data = data.data();
    std::lock_guard g(lock_);
    links_[peer].outgoing.push_back(op);
    push(peer);
    return op;
  }

  request irecv(int peer, tag_t tag, std::span<std::byte> data) {
    request op = new_operation(peer, tag, data.size(), "receive from");
    op->recv_data = data.data();
    std::lock_guard g(lock_);
    links_[peer].box.post(op, rank_);
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
    kit::wait_ladder ladder(spin_limit_, yield_iterations);
    inbox_header* me = inbox(rank_);
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
          std::atomic_thread_fence(std::memory_order_seq_cst);  // pairs with ring()'s
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
        futex_wait(&me->doorbell, bell, std::min<std::chrono::nanoseconds>(left, liveness_period));
      }
      ladder.reset();
    }
  }

  void cancel(request& req) noexcept {
    std::lock_guard g(lock_);
    if (!req || req->status == state::done) return;
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
        links_[req->peer].box.cancel(req);  // a message streaming into it drains into nowhere
      }
    } catch (...) {
    }
    req->failed = true;
    req->failure = "cancelled";
    req->status = state::done;
  }

  void abort(std::string_view reason) noexcept { abort(errc::aborted, reason); }

  /// Aborts with the code of the failure that caused it; peers fail with the same code.
  /// Every rank's inbox gets the cause; one aborted by a peer already passes that on.
  void abort(errc code, std::string_view reason) noexcept {
    const inbox_header* mine = inbox(rank_);
    const kit::abort_cause cause = mine != nullptr
                                       ? mine->abort.cause_to_pass_on(rank_, code, reason)
                                       : kit::abort_cause{rank_, code, reason};
    for (int p = 0; p < size_; ++p) {
      inbox_header* h = inbox(p);
      if (h == nullptr) continue;
      h->abort.record(cause.rank, cause.code, cause.reason);
      ring(p);
    }
  }

  /// Throws the job's abort record, if any rank raised one.
  void check_aborted() const { inbox(rank_)->abort.throw_if_raised(rank_); }

  kit::context_pool contexts;  ///< the group contexts this process uses

 private:
  /// A new send or receive of `bytes` bytes with `peer`, after checking the peer and that
  /// the job has not been aborted (`what`: "send to" or "receive from", for errors).
  request new_operation(int peer, tag_t tag, std::size_t bytes, const char* what) const {
    check_peer(peer, what);
    check_aborted();
    auto op = std::make_shared<operation>();
    op->peer = peer;
    op->tag = tag;
    op->bytes = bytes;
    return op;
  }

  /// Everything this rank holds for one peer (itself included: its own inbox).
  struct link {
    mapping inbox;                 ///< the peer's inbox segment, mapped here
    std::deque<request> outgoing;  ///< sends to the peer, in send order
    /// single-copy sends the peer has not finished reading, with their descriptor slot
    std::deque<std::pair<request, std::uint64_t>> in_flight;
    std::uint64_t head = 0;         ///< the next slot this rank fills in the peer's channel
    std::uint64_t tail_seen = 0;    ///< the peer's `tail` as this rank last read it
    bool single_copy_to = false;    ///< whether the peer reads our memory directly
    bool single_copy_from = false;  ///< whether we read the peer's (we told it so)
    mailbox box;                    ///< receives from the peer and its messages: matching
  };

  /// Rank `p`'s inbox, just mapped, must carry what its owner wrote before announcing it:
  /// its pid and this job's geometry.
  void check_inbox(int p, int pid) const {
    const inbox_header* h = inbox(p);
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

  [[nodiscard]] inbox_header* inbox(int r) const noexcept {
    return reinterpret_cast<inbox_header*>(links_[r].inbox.data());
  }
  /// The channel in rank `owner`'s inbox that carries messages from rank `sender`.
  [[nodiscard]] channel_header* channel(int owner, int sender) const noexcept {
    return geometry_.channel(links_[owner].inbox.data(), sender);
  }
  [[nodiscard]] channel_header* channel_in(int sender) const noexcept {
    return channel(rank_, sender);
  }
  [[nodiscard]] std::byte* slot(channel_header* c, std::uint64_t index) const noexcept {
    return geometry_.slot(c, index);
  }

  /// Tells rank `r` that something it may wait for changed: wakes it if it sleeps. A rank
  /// that is not asleep sees the change at its next poll, so the doorbell (a line every
  /// message would otherwise move between cores) is left alone. The fence pairs with the
  /// one a sleeper makes between announcing itself and its last poll: either this load
  /// sees the announcement, or that poll sees the change.
  void ring(int r) noexcept {
    inbox_header* h = inbox(r);
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (h->sleeping.load(std::memory_order_relaxed) != 0) {
      h->doorbell.fetch_add(1, std::memory_order_seq_cst);
      futex_wake_all(&h->doorbell);
    }
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
    channel_header* c = channel(peer, rank_);
    link& to = links_[peer];
    std::uint64_t head = to.head;
    // The consumer's tail is read only when it can change something here: a ring that looks
    // full, or single-copy sends waiting to be read.
    if (!reading.empty() || head - to.tail_seen >= geometry_.slots) {
      to.tail_seen = c->tail.load(std::memory_order_acquire);
    }
    const std::uint64_t tail = to.tail_seen;
    bool moved = false;
    // The consumer moves `tail` past a descriptor only after its read has finished.
    while (!reading.empty() && reading.front().second < tail) {
      reading.front().first->status = state::done;
      reading.pop_front();
      moved = true;
    }
    bool published = false;
    while (!queue.empty() && head - tail < geometry_.slots) {
      operation& op = *queue.front();
      std::byte* s = slot(c, head);
      auto* hdr = reinterpret_cast<slot_header*>(s);
      std::uint32_t bytes = 0;
      hdr->tag = op.tag;
      hdr->total_bytes = op.bytes;
      hdr->offset = op.progress;
      if (op.progress == 0 && op.bytes >= single_copy_threshold && links_[peer].single_copy_to &&
          op.owned.empty()) {
        hdr->address = reinterpret_cast<std::uintptr_t>(op.send_data);
        hdr->single_copy = 1;
        op.progress = op.bytes;
        op.status = state::active;
        reading.emplace_back(queue.front(), head);
        queue.pop_front();
      } else {
        const std::size_t n = std::min(op.bytes - op.progress, geometry_.payload_bytes());
        bytes = static_cast<std::uint32_t>(n);
        hdr->single_copy = 0;
        if (n != 0) detail::copy_bytes(s + payload_offset(n), op.send_data + op.progress, n);
        op.progress += n;
        if (op.progress == op.bytes) {
          op.status = state::done;
          queue.pop_front();
        } else {
          op.status = state::active;
        }
      }
      hdr->bytes = bytes;
      // Publishes the slot: everything written above is visible to whoever reads this.
      std::atomic_ref<std::uint64_t>(hdr->sequence).store(head + 1, std::memory_order_release);
      ++head;
      published = true;
    }
    if (published) {
      to.head = head;
      ring(peer);
    }
    return moved || published;
  }

  /// Consumer side: reads the slots that `peer` has published into this rank's inbox.
  bool drain(int peer) {
    channel_header* c = channel_in(peer);
    const std::uint64_t first = c->tail.load(std::memory_order_relaxed);
    mailbox& box = links_[peer].box;
    incoming_state& in = box.incoming;
    std::uint64_t tail = first;
    // At most a ring's worth: the producer refills no slot before `tail` is stored below.
    while (tail - first < geometry_.slots) {
      std::byte* s = slot(c, tail);
      const std::uint64_t sequence =
          std::atomic_ref<std::uint64_t>(reinterpret_cast<slot_header*>(s)->sequence)
              .load(std::memory_order_acquire);
      if (sequence != tail + 1) {
        // Not written yet: the number of a lap before (or 0). A number ahead of the ring
        // was not written by chorus's producer.
        if (sequence > tail + 1) corrupt_slot(peer, "sequence", sequence);
        break;
      }
      // One read of the header: the checks below hold for the values used after them even
      // if the peer writes the slot meanwhile.
      const slot_header h = *reinterpret_cast<const slot_header*>(s);
      const std::byte* payload = s + payload_offset(h.bytes);
      if (!in.active) box.start(h.tag, h.total_bytes, rank_);
      check_slot(peer, h, in);
      std::byte* const into = in.destination();
      std::size_t n = h.bytes;
      if (h.single_copy != 0) {
        n = h.total_bytes;
        if (into != nullptr && !read_peer_memory(peers_.pid(peer), h.address, into, n)) {
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
      if (in.received == in.total) box.finish();
    }
    if (tail == first) return false;
    c->tail.store(tail, std::memory_order_release);  // the slots may be reused
    ring(peer);
    return true;
  }

  /// A slot must continue the message streaming in from `peer` exactly where it stands and
  /// stay inside it and inside the slot; anything else would make this rank read or write
  /// out of bounds, so it is refused before any copy.
  void check_slot(int peer, const slot_header& h, const incoming_state& in) const {
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

  bool finished(request& req) {
    if (req->status != state::done) {
      check_aborted();
      return false;
    }
    if (req->failed) throw error(errc::mismatch, req->failure);
    return true;
  }

  void check_peer(int peer, const char* what) const {
    detail::check_transport_peer(rank_, size_, peer, what);
  }

  int rank_;
  int size_;
  std::string job_;  ///< names this job's segments
  int spin_limit_ = spin_iterations;
  geometry geometry_;
  kit::peer_processes peers_;
  kit::per_peer<link> links_;
  /// Every group of the job shares this endpoint, and each may be driven by its own thread
  /// (a communicator's progress thread, or its caller): posting, progress, completion and
  /// cancellation all hold this lock. Aborts do not (they only touch the shared memory).
  std::mutex lock_;
};

}  // namespace chorus::inline v0::detail::shm

#pragma once
// A stream-ordered transport with NCCL's rendezvous semantics for tests of the stream
// executor, over a memory policy: on host memory without a GPU (`fake::transport`, every
// test of tests/stream), and on device memory with real kernels, several ranks as threads
// on one GPU (`cuda_loopback.hpp`), which NCCL itself refuses ("Duplicate GPU").
//
// The rules are NCCL's: sends and receives must be enqueued inside group_start/group_end
// and match positionally per pair of ranks with no tags, so a schedule or executor that
// lists a pair's messages in different orders on the two sides delivers the wrong bytes or
// sizes -- which the tests see; a group completes when all its sends and receives have
// (a send once its receiver took it: rendezvous, so a schedule that only works with
// buffering hangs here as on NCCL's large messages); group_end waits at most until the
// deadline the executor passes (the communicator's). On the host a stream runs at once
// (work is done when enqueued, a valid stream order); on the GPU the receiver's stream
// waits for an event of the sender's before copying, and the sender's for the copy.
//
// It counts what the executor does with it: groups, cancelled groups, enqueues outside a
// group (must stay 0), live scratch allocations (must return to 0), and calls of
// `native`; the host stream logs every operation and the pointers of every reduction.
// `split` makes groups as NCCL's `ncclCommSplit` does (a collective over the group's ranks,
// ordered by key then rank, a negative color joining none); a group and the group it was
// split from share their abort, as NCCL's do in `nccl_transport`.
#include <chorus/communicator.hpp>
#include <chorus/core/deadline.hpp>
#include <chorus/core/error.hpp>
#include <chorus/core/ops.hpp>
#include <chorus/dispatch/launch.hpp>
#include <chorus/exec/stream_executor.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <new>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace fake {

/// One reduction the executor enqueued on a host stream: where its arrays were.
struct reduction {
  const void* dst;
  const void* a;
  const void* b;
  std::size_t n;
  int device;  ///< the thread's device (`current_device`) when it was enqueued
};

/// A host stream: the ops enqueued on it, by kind, in order ("send", "recv", "reduce", ...).
struct stream {
  std::vector<std::string> log;
  std::vector<reduction> reductions;
  std::size_t count(const std::string& what) const {
    std::size_t n = 0;
    for (const auto& s : log) n += s == what ? 1 : 0;
    return n;
  }
};

/// The host's stand-in for CUDA's current device of the calling thread (-1: none chosen).
inline thread_local int current_device = -1;

/// Host memory, host streams that run at once, and a stand-in for CUDA's current device.
struct host_memory {
  using stream_type = stream*;
  using stream_holder = stream;
  static stream* get(stream_holder& s) noexcept { return &s; }
  static void note(stream* s, const char* what) { s->log.emplace_back(what); }

  /// Nothing to order on the host: the sender waits in group_end until the copy is done.
  struct message_events {};
  static void sent(message_events&, stream*) {}
  static void receive(std::span<std::byte> dst, const std::byte* src, message_events&, stream*) {
    if (!dst.empty()) std::memcpy(dst.data(), src, dst.size());
  }
  static void taken(message_events&, stream*) {}

  static void copy(std::span<std::byte> dst, std::span<const std::byte> src, stream*) {
    std::memmove(dst.data(), src.data(), src.size());
  }
  /// Aligned as cudaMallocAsync's memory is, and poisoned, so that reading scratch before
  /// writing it shows up in results.
  static std::byte* allocate(std::size_t bytes, stream*) {
    auto* p = static_cast<std::byte*>(::operator new (bytes, std::align_val_t{256}));
    std::memset(p, 0xA5, bytes);
    return p;
  }
  static void deallocate(std::byte* p, stream*) noexcept {
    ::operator delete (p, std::align_val_t{256});
  }

  /// Makes `device` the thread's current one while it lives.
  class device_scope {
   public:
    explicit device_scope(int device) noexcept : previous_(current_device) {
      current_device = device;
    }
    device_scope(const device_scope&) = delete;
    device_scope& operator=(const device_scope&) = delete;
    ~device_scope() { current_device = previous_; }

   private:
    int previous_;
  };
};

/// What a group and every group split from it share: one lock, one abort.
struct family {
  std::mutex mutex;
  std::condition_variable changed;
  std::string aborted;  // empty: not aborted
};

/// One message between two ranks: the sender's bytes, read by the receiver while the
/// sender waits for it (rendezvous).
template <class Memory>
struct message {
  const std::byte* src = nullptr;
  std::size_t bytes = 0;
  bool taken = false;  // guarded by the family's mutex
  typename Memory::message_events events;
};

template <class Memory>
struct group;

/// One `split` of a group: each rank's (color, key), and the groups made of them.
template <class Memory>
struct split_round {
  std::vector<std::optional<std::pair<int, int>>> entries;
  int arrived = 0;
  int left = 0;
  std::map<int, std::shared_ptr<group<Memory>>> made;  // by color
};

/// What the ranks of one group share: one FIFO of messages per (source, destination).
template <class Memory>
struct group {
  explicit group(int n, std::shared_ptr<family> f = std::make_shared<family>())
      : size(n),
        fam(std::move(f)),
        mutex(fam->mutex),
        changed(fam->changed),
        aborted(fam->aborted) {}
  int size;
  std::shared_ptr<family> fam;
  std::mutex& mutex;
  std::condition_variable& changed;
  std::string& aborted;
  std::map<std::pair<int, int>, std::deque<std::shared_ptr<message<Memory>>>> fifo;
  std::map<int, split_round<Memory>> splits;  // by the split's number
};

template <class Memory>
class basic_transport {
 public:
  using stream_type = typename Memory::stream_type;
  using stream_holder = typename Memory::stream_holder;
  using memory = Memory;

  basic_transport(std::shared_ptr<group<Memory>> g, int rank)
      : device(rank + 1), group_(std::move(g)), rank_(rank) {}
  basic_transport(basic_transport&&) noexcept = default;
  basic_transport& operator=(basic_transport&&) noexcept = default;

  [[nodiscard]] int rank() const noexcept { return rank_; }
  [[nodiscard]] int size() const noexcept { return group_->size; }
  [[nodiscard]] bool in_group() const noexcept { return in_group_; }

  void group_start() {
    if (in_group_) throw std::logic_error("fake: nested group_start");
    in_group_ = true;
    ++groups;
  }
  void enqueue_send(int peer, std::span<const std::byte> bytes, stream_type s) {
    chorus::detail::check_transport_peer(rank_, size(), peer, "send to");
    fail_if_asked();
    if (!in_group_) ++outside_group;
    sends_.emplace_back(peer, bytes);
    Memory::note(s, "send");
    stream_ = s;
  }
  void enqueue_recv(int peer, std::span<std::byte> bytes, stream_type s) {
    chorus::detail::check_transport_peer(rank_, size(), peer, "receive from");
    fail_if_asked();
    if (!in_group_) ++outside_group;
    recvs_.emplace_back(peer, bytes);
    Memory::note(s, "recv");
    stream_ = s;
  }
  /// Posts the group's sends, takes each receive's message (positional matching per pair;
  /// across peers in whatever order they arrive, so that one late peer holds up no other),
  /// then waits until every send was taken: the group completes as a whole, by `until`.
  void group_end(chorus::deadline until) {
    if (!in_group_) throw std::logic_error("fake: group_end without group_start");
    in_group_ = false;
    std::vector<std::pair<int, std::span<const std::byte>>> sends = std::move(sends_);
    std::vector<std::pair<int, std::span<std::byte>>> recvs = std::move(recvs_);
    sends_.clear();
    recvs_.clear();
    std::vector<std::shared_ptr<message<Memory>>> posted;
    for (const auto& [peer, bytes] : sends) {
      auto m = std::make_shared<message<Memory>>();
      m->src = bytes.data();
      m->bytes = bytes.size();
      Memory::sent(m->events, stream_);
      posted.push_back(std::move(m));
    }
    std::unique_lock lock(group_->mutex);
    // A rank leaves a group early only when the group is aborted (a timeout aborts it too),
    // and may then free the buffers of its posted sends: after an abort, nobody takes any.
    if (!group_->aborted.empty()) throw chorus::error(chorus::errc::aborted, group_->aborted);
    for (std::size_t i = 0; i < sends.size(); ++i) {
      group_->fifo[{rank_, sends[i].first}].push_back(posted[i]);
    }
    group_->changed.notify_all();
    std::vector<bool> done(recvs.size(), false);
    std::size_t left = recvs.size();
    while (left > 0) {
      bool progress = false;
      std::vector<int> blocked;  // peers whose earlier receive in this group is still open
      for (std::size_t i = 0; i < recvs.size(); ++i) {
        const auto& [peer, bytes] = recvs[i];
        if (done[i] || std::ranges::find(blocked, peer) != blocked.end()) continue;
        auto& q = group_->fifo[{peer, rank_}];
        if (q.empty()) {
          blocked.push_back(peer);
          continue;
        }
        if (q.front()->bytes != bytes.size()) {
          fail_locked(chorus::errc::mismatch, "fake: rank " + std::to_string(peer) + " sent " +
                                                  std::to_string(q.front()->bytes) +
                                                  " bytes, the receive has " +
                                                  std::to_string(bytes.size()));
        }
        const std::shared_ptr<message<Memory>> m = q.front();
        q.pop_front();
        Memory::receive(bytes, m->src, m->events, stream_);
        m->taken = true;
        done[i] = true;
        --left;
        progress = true;
      }
      if (progress) {
        group_->changed.notify_all();
        continue;
      }
      wait_locked(lock, until, "fake: no message arrived for a receive of the group");
    }
    for (const auto& m : posted) {
      while (!m->taken) wait_locked(lock, until, "fake: a send of the group was never received");
      Memory::taken(m->events, stream_);
    }
  }
  /// Drops the group's operations: the executor failed while enqueuing them.
  void group_cancel() noexcept {
    in_group_ = false;
    sends_.clear();
    recvs_.clear();
    ++cancelled;
  }
  void copy(std::span<std::byte> dst, std::span<const std::byte> src, stream_type s) {
    if (dst.size() != src.size()) throw std::logic_error("fake: copy of unequal sizes");
    Memory::copy(dst, src, s);
    Memory::note(s, "copy");
  }
  std::byte* allocate(std::size_t bytes, stream_type s) {
    std::byte* p = Memory::allocate(bytes, s);
    ++live_allocations;
    Memory::note(s, "allocate");
    return p;
  }
  void deallocate(std::byte* p, stream_type s) noexcept {
    --live_allocations;
    try {
      Memory::note(s, "deallocate");
    } catch (...) {
    }
    Memory::deallocate(p, s);
  }
  void poll_error() {
    std::lock_guard lock(group_->mutex);
    if (!group_->aborted.empty()) throw chorus::error(chorus::errc::aborted, group_->aborted);
  }
  void abort(std::string_view reason) noexcept {
    try {
      std::lock_guard lock(group_->mutex);
      if (group_->aborted.empty()) group_->aborted = std::string(reason);
      group_->changed.notify_all();
    } catch (...) {
    }
  }
  /// Makes this rank's `device` the thread's current one while the result lives.
  [[nodiscard]] typename Memory::device_scope device_scope() const {
    return typename Memory::device_scope(device);
  }

  /// NCCL's split on the fake: collective over this group, `until` for the others to come.
  std::optional<basic_transport> split(int color, int key, chorus::deadline until) {
    poll_error();
    std::unique_lock lock(group_->mutex);
    const int n = splits_++;
    split_round<Memory>& round = group_->splits[n];
    round.entries.resize(static_cast<std::size_t>(size()));
    round.entries[static_cast<std::size_t>(rank_)] = std::pair{color, key};
    ++round.arrived;
    group_->changed.notify_all();
    while (round.arrived < size() && group_->aborted.empty()) {
      if (group_->changed.wait_until(lock, until.at) == std::cv_status::timeout) {
        fail_locked(chorus::errc::timeout, "fake: split #" + std::to_string(n) +
                                               " timed out on rank " + std::to_string(rank_) +
                                               " (a rank never called it)");
      }
    }
    if (!group_->aborted.empty()) throw chorus::error(chorus::errc::aborted, group_->aborted);
    std::optional<basic_transport> out;
    if (color >= 0) {
      std::vector<int> members;
      for (int r = 0; r < size(); ++r) {
        if (round.entries[static_cast<std::size_t>(r)]->first == color) members.push_back(r);
      }
      std::stable_sort(members.begin(), members.end(), [&](int a, int b) {
        return round.entries[static_cast<std::size_t>(a)]->second <
               round.entries[static_cast<std::size_t>(b)]->second;
      });
      auto& g = round.made[color];
      if (!g) g = std::make_shared<group<Memory>>(static_cast<int>(members.size()), group_->fam);
      const auto at = std::find(members.begin(), members.end(), rank_) - members.begin();
      out.emplace(g, static_cast<int>(at));
      out->world_rank_ = world_rank_;
      out->device = device;
    }
    if (++round.left == size()) group_->splits.erase(n);
    return out;
  }
  [[nodiscard]] int world_rank() const noexcept { return world_rank_; }

  int groups = 0;
  int cancelled = 0;
  int outside_group = 0;
  int live_allocations = 0;
  /// The enqueue (send or receive) that throws, counted from 1 (0: none), to test unwinding.
  int fail_at_enqueue = 0;
  int device;  ///< world rank + 1 (never the host's "none chosen", -1)

 private:
  void fail_if_asked() {
    if (fail_at_enqueue != 0 && ++enqueues_ == fail_at_enqueue) {
      throw std::runtime_error("fake: enqueue #" + std::to_string(enqueues_) + " failed");
    }
  }
  /// Waits for a change of the group (lock held) until `until`; throws the abort, or at
  /// `until` aborts the group and throws a timeout.
  void wait_locked(std::unique_lock<std::mutex>& lock, chorus::deadline until,
                   const std::string& why) {
    if (!group_->aborted.empty()) throw chorus::error(chorus::errc::aborted, group_->aborted);
    if (group_->changed.wait_until(lock, until.at) == std::cv_status::timeout) {
      fail_locked(chorus::errc::timeout, why + " (rank " + std::to_string(rank_) + ")");
    }
    if (!group_->aborted.empty()) throw chorus::error(chorus::errc::aborted, group_->aborted);
  }
  /// Aborts the group with `why` (lock held) and throws it with `code`.
  [[noreturn]] void fail_locked(chorus::errc code, const std::string& why) {
    if (group_->aborted.empty()) group_->aborted = why;
    group_->changed.notify_all();
    throw chorus::error(code, why);
  }

  std::shared_ptr<group<Memory>> group_;
  int rank_;
  int world_rank_ = rank_;
  int splits_ = 0;
  int enqueues_ = 0;
  bool in_group_ = false;
  stream_type stream_{};
  std::vector<std::pair<int, std::span<const std::byte>>> sends_;
  std::vector<std::pair<int, std::span<std::byte>>> recvs_;
};

using transport = basic_transport<host_memory>;

/// The fake with collectives of its own, to check that `algo::native` reaches them and
/// with which deadline.
class native_transport : public transport {
 public:
  using transport::transport;
  void native(const chorus::native_call& call, stream* s, chorus::deadline until) {
    last_native = call.kind;
    last_deadline = until;
    ++natives;
    s->log.emplace_back("native");
  }
  int natives = 0;
  chorus::schedule::collective last_native{};
  chorus::deadline last_deadline{};
};

/// Runs `fn(comm, stream)` on `ranks` threads over one fake group (`stream` is the
/// transport's `stream_holder`: pass `&s` on the host); rethrows the first exception of
/// any rank after all have finished.
template <class Transport = transport, class Fn>
void run(int ranks, Fn&& fn) {
  auto g = std::make_shared<group<typename Transport::memory>>(ranks);
  std::vector<std::thread> threads;
  std::mutex m;
  std::exception_ptr first;
  for (int r = 0; r < ranks; ++r) {
    threads.emplace_back([&, r] {
      try {
        chorus::communicator_options options;
        options.timeout = std::chrono::seconds(20);
        chorus::communicator<Transport> comm(Transport(g, r), options);
        typename Transport::stream_holder s;
        fn(comm, s);
      } catch (...) {
        std::lock_guard lock(m);
        if (!first) first = std::current_exception();
      }
    });
  }
  for (auto& t : threads) t.join();
  if (first) std::rethrow_exception(first);
}

}  // namespace fake

#ifndef FAKE_STREAM_NO_KERNELS  // tests/compile_fail/stream_kernels_missing.cpp
/// Host "kernels" for the fake stream: the element-wise reduction the host executor uses,
/// logged on the stream with the arrays it was given and the thread's device.
template <class T, class Op>
struct chorus::detail::stream_kernels<fake::stream*, T, Op> {
  static void reduce(void* dst, const void* a, const void* b, std::size_t n, const void* op,
                     fake::stream* s) {
    s->log.emplace_back("reduce");
    s->reductions.push_back({dst, a, b, n, fake::current_device});
    reduce_kernel<T, Op>(dst, a, b, n, op);
  }
  static void finalize(void* data, std::size_t n, int ranks, const void* op, fake::stream* s) {
    s->log.emplace_back("finalize");
    finalize_kernel<T, Op>(data, n, ranks, op);
  }
};
#endif

#pragma once
// A stream-ordered transport for host tests of the stream executor: NCCL's contract on host
// memory, without a GPU. Work is done when it is enqueued (a stream that runs at once is a
// valid stream order); sends and receives must be enqueued inside group_start/group_end and
// match positionally per pair of ranks with no tags (NCCL's rule), so a schedule or executor
// that lists a pair's messages in different orders on the two sides delivers the wrong
// bytes or sizes here -- which the tests see. It counts what the executor does with it:
// groups, enqueues outside a group (must stay 0), live scratch allocations (must return
// to 0), and calls of `native`. `split` makes groups as NCCL's `ncclCommSplit` does (a
// collective over the group's ranks, ordered by key then rank, a negative color joining
// none); a group and the group it was split from share their abort, as NCCL's do in
// `nccl_transport`.
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
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace fake {

/// A stream: the ops enqueued on it, by kind, in order ("send", "recv", "reduce", ...).
struct stream {
  std::vector<std::string> log;
  std::size_t count(const std::string& what) const {
    std::size_t n = 0;
    for (const auto& s : log) n += s == what ? 1 : 0;
    return n;
  }
};

/// What a group and every group split from it share: one lock, one abort.
struct family {
  std::mutex mutex;
  std::condition_variable changed;
  std::string aborted;  // empty: not aborted
};

struct group;

/// One `split` of a group: each rank's (color, key), and the groups made of them.
struct split_round {
  std::vector<std::optional<std::pair<int, int>>> entries;
  int arrived = 0;
  int left = 0;
  std::map<int, std::shared_ptr<group>> made;  // by color
};

/// What the ranks of one group share: one FIFO of messages per (source, destination).
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
  std::map<std::pair<int, int>, std::deque<std::vector<std::byte>>> fifo;
  std::map<int, split_round> splits;  // by the split's number
};

class transport {
 public:
  using stream_type = stream*;

  transport(std::shared_ptr<group> g, int rank) : group_(std::move(g)), rank_(rank) {}
  transport(transport&&) noexcept = default;
  transport& operator=(transport&&) noexcept = default;

  [[nodiscard]] int rank() const noexcept { return rank_; }
  [[nodiscard]] int size() const noexcept { return group_->size; }

  void group_start() {
    if (in_group_) throw std::logic_error("fake: nested group_start");
    in_group_ = true;
    ++groups;
  }
  void enqueue_send(int peer, std::span<const std::byte> bytes, stream* s) {
    chorus::detail::check_transport_peer(rank_, size(), peer, "send to");
    if (!in_group_) ++outside_group;
    sends_.emplace_back(peer, std::vector<std::byte>(bytes.begin(), bytes.end()));
    s->log.emplace_back("send");
  }
  void enqueue_recv(int peer, std::span<std::byte> bytes, stream* s) {
    chorus::detail::check_transport_peer(rank_, size(), peer, "receive from");
    if (!in_group_) ++outside_group;
    recvs_.emplace_back(peer, bytes);
    s->log.emplace_back("recv");
  }
  /// Delivers the group's sends, then takes each receive's message (positional matching).
  void group_end() {
    if (!in_group_) throw std::logic_error("fake: group_end without group_start");
    in_group_ = false;
    std::unique_lock lock(group_->mutex);
    for (auto& [peer, bytes] : sends_) group_->fifo[{rank_, peer}].push_back(std::move(bytes));
    sends_.clear();
    group_->changed.notify_all();
    const chorus::deadline until = chorus::deadline::after(std::chrono::seconds(20));
    for (auto& [peer, bytes] : recvs_) {
      auto& q = group_->fifo[{peer, rank_}];
      while (q.empty() && group_->aborted.empty()) {
        if (group_->changed.wait_until(lock, until.at) == std::cv_status::timeout) {
          throw chorus::error(chorus::errc::timeout,
                              "fake: no message from rank " + std::to_string(peer));
        }
      }
      if (!group_->aborted.empty()) throw chorus::error(chorus::errc::aborted, group_->aborted);
      if (q.front().size() != bytes.size()) {
        throw chorus::error(chorus::errc::mismatch,
                            "fake: rank " + std::to_string(peer) + " sent " +
                                std::to_string(q.front().size()) + " bytes, the receive has " +
                                std::to_string(bytes.size()));
      }
      if (!bytes.empty()) std::memcpy(bytes.data(), q.front().data(), bytes.size());
      q.pop_front();
    }
    recvs_.clear();
  }
  void copy(std::span<std::byte> dst, std::span<const std::byte> src, stream* s) {
    if (dst.size() != src.size()) throw std::logic_error("fake: copy of unequal sizes");
    std::memmove(dst.data(), src.data(), src.size());
    s->log.emplace_back("copy");
  }
  std::byte* allocate(std::size_t bytes, stream* s) {
    ++live_allocations;
    s->log.emplace_back("allocate");
    // Poisoned, so that reading scratch before writing it shows up in results.
    auto* p = new std::byte[bytes];
    std::memset(p, 0xA5, bytes);
    return p;
  }
  void deallocate(std::byte* p, stream* s) noexcept {
    --live_allocations;
    try {
      s->log.emplace_back("deallocate");
    } catch (...) {
    }
    delete[] p;
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

  /// NCCL's split on the fake: collective over this group, `until` for the others to come.
  std::optional<transport> split(int color, int key, chorus::deadline until) {
    poll_error();
    std::unique_lock lock(group_->mutex);
    const int n = splits_++;
    split_round& round = group_->splits[n];
    round.entries.resize(static_cast<std::size_t>(size()));
    round.entries[static_cast<std::size_t>(rank_)] = std::pair{color, key};
    ++round.arrived;
    group_->changed.notify_all();
    while (round.arrived < size() && group_->aborted.empty()) {
      if (group_->changed.wait_until(lock, until.at) == std::cv_status::timeout) {
        const std::string why = "fake: split #" + std::to_string(n) + " timed out on rank " +
                                std::to_string(rank_) + " (a rank never called it)";
        group_->aborted = why;
        group_->changed.notify_all();
        throw chorus::error(chorus::errc::timeout, why);
      }
    }
    if (!group_->aborted.empty()) throw chorus::error(chorus::errc::aborted, group_->aborted);
    std::optional<transport> out;
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
      if (!g) g = std::make_shared<group>(static_cast<int>(members.size()), group_->fam);
      const auto at = std::find(members.begin(), members.end(), rank_) - members.begin();
      out.emplace(g, static_cast<int>(at));
      out->world_rank_ = world_rank_;
    }
    if (++round.left == size()) group_->splits.erase(n);
    return out;
  }
  [[nodiscard]] int world_rank() const noexcept { return world_rank_; }

  int groups = 0;
  int outside_group = 0;
  int live_allocations = 0;

 private:
  std::shared_ptr<group> group_;
  int rank_;
  int world_rank_ = rank_;
  int splits_ = 0;
  bool in_group_ = false;
  std::vector<std::pair<int, std::vector<std::byte>>> sends_;
  std::vector<std::pair<int, std::span<std::byte>>> recvs_;
};

/// The fake with collectives of its own, to check that `algo::native` reaches them.
class native_transport : public transport {
 public:
  using transport::transport;
  void native(const chorus::native_call& call, stream* s) {
    last_native = call.kind;
    ++natives;
    s->log.emplace_back("native");
  }
  int natives = 0;
  chorus::schedule::collective last_native{};
};

/// Runs `fn(comm, stream)` on `ranks` threads over one fake group; rethrows the first
/// exception of any rank after all have finished.
template <class Transport = transport, class Fn>
void run(int ranks, Fn&& fn) {
  auto g = std::make_shared<group>(ranks);
  std::vector<std::thread> threads;
  std::mutex m;
  std::exception_ptr first;
  for (int r = 0; r < ranks; ++r) {
    threads.emplace_back([&, r] {
      try {
        chorus::communicator_options options;
        options.timeout = std::chrono::seconds(20);
        chorus::communicator<Transport> comm(Transport(g, r), options);
        stream s;
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
/// logged on the stream.
template <class T, class Op>
struct chorus::detail::stream_kernels<fake::stream*, T, Op> {
  static void reduce(void* dst, const void* a, const void* b, std::size_t n, const void* op,
                     fake::stream* s) {
    s->log.emplace_back("reduce");
    reduce_kernel<T, Op>(dst, a, b, n, op);
  }
  static void finalize(void* data, std::size_t n, int ranks, const void* op, fake::stream* s) {
    s->log.emplace_back("finalize");
    finalize_kernel<T, Op>(data, n, ranks, op);
  }
};
#endif

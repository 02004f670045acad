#pragma once
/// \file
/// The progress engine: the operations of one communicator that are in flight as requests
/// (`core/request.hpp`), and whoever advances them -- the communicator's progress thread or
/// the caller's `test()` / `wait()` (`communicator_options::progress`).
///
/// **Operations.** A collective in flight is its schedule run step by step without
/// blocking: post a step's receives and sends (the host executor's `post_step`), then test
/// its receives in op order, reducing each payload as it arrives, then its sends, then the
/// next step -- the executor's step semantics exactly, so results are bit-identical to the
/// blocking call's. Each has its own scratch and sequence number (taken when it is posted,
/// so every rank numbers it alike and its messages never match another call's). A batch of
/// point-to-point transfers (`isend`, `irecv`, `batch_isend_irecv`) is posted whole at once.
///
/// **Order and priority.** Collectives of equal priority run one after another in the order
/// they were posted (only the oldest of each priority level is advanced). Each round of
/// progress serves the levels from the highest priority down and stops at the first level
/// that moved, and an operation advances by at most one step per round: a lower level moves
/// only while every higher one waits for its peers. A
/// high-priority call posted behind a large low-priority one therefore overtakes it at the
/// next step (chunk) boundary. Point-to-point batches are not ordered: they are posted at
/// once and complete as their messages arrive.
///
/// **Deadlines and errors.** An operation fails with `timeout` when nothing on its
/// communicator has moved for the communicator's timeout; a lost peer or an abort is seen
/// as in a blocking wait. A failure carries the same context as the blocking form's, poisons
/// the communicator (aborting the group) and fails every other operation in flight with
/// the poisoning error.
///
/// **Threads.** One thread at a time touches the transport: the engine's `drive_` mutex.
/// Posting only queues (another mutex), so posting never waits for a round of progress.
#include <chorus/communicator.hpp>
#include <chorus/core/error.hpp>
#include <chorus/core/request.hpp>
#include <chorus/dispatch/call.hpp>
#include <chorus/dispatch/context.hpp>
#include <chorus/dispatch/fingerprint.hpp>
#include <chorus/exec/executor.hpp>
#include <chorus/schedule/build.hpp>
#include <chorus/schedule/schedule.hpp>
#include <chorus/transport/contract.hpp>
#include <chorus/transport/kit/tags.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <memory>
#include <mutex>
#include <new>
#include <span>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace chorus::inline v0::detail {

template <transport Transport>
class engine;

/// One operation in flight, as the engine sees it.
template <transport Transport>
class operation : public pending_operation {
 public:
  using request_type = typename Transport::request;

  operation(std::weak_ptr<engine<Transport>> e, int priority, bool ordered)
      : engine_(std::move(e)), priority_(priority), ordered_(ordered) {}

  [[nodiscard]] int priority() const noexcept { return priority_; }
  /// Ordered operations (collectives) run one per priority level, in posting order.
  [[nodiscard]] bool ordered() const noexcept { return ordered_; }

  /// Does whatever can be done now without blocking; true if anything moved. Throws the
  /// operation's error (with its context; the communicator is poisoned by then).
  virtual bool advance(communicator<Transport>& comm) = 0;
  /// Whether the operation has done all its work (the engine then completes it).
  [[nodiscard]] virtual bool finished() const noexcept = 0;
  /// Waits until `until` for the first request the operation is blocked on; throws like
  /// `advance`. `final`: the communicator's deadline has passed, so a wait that ends
  /// without completion is the operation's `timeout`.
  virtual void idle_wait(communicator<Transport>& comm, clock::time_point until, bool final) = 0;
  /// Cancels every posted request that has not completed (the buffers are about to go).
  virtual void cancel(Transport& t) noexcept = 0;

  bool wait_until(clock::time_point until) override;
  void poke() override;

 protected:
  /// `t.try_wait(req, until)` where the transport has it; otherwise polls until then.
  static bool soft_wait(Transport& t, request_type& req, clock::time_point until) {
    if constexpr (requires { t.try_wait(req, deadline{until}); }) {
      return t.try_wait(req, deadline{until});
    } else {
      while (!t.test(req)) {
        if (clock::now() >= until) return false;
        std::this_thread::yield();
      }
      return true;
    }
  }

 private:
  std::weak_ptr<engine<Transport>> engine_;
  int priority_;
  bool ordered_;
};

/// Scratch areas (64-byte aligned) of finished collectives, kept for the next ones: a fresh
/// area costs a page fault for every page it touches, which for a collective of megabytes
/// costs more than the transfer itself (measured: 16 MiB all-reduce at 2 ranks on shm,
/// 2-3 ms with a reused area against 25-30 ms with a fresh one; the blocking path reuses
/// the communicator's scratch the same way). At most `kept` areas stay, the largest ones.
/// Used under the engine's `drive_` mutex only.
class scratch_pool {
 public:
  struct aligned_delete {
    void operator()(std::byte* p) const noexcept { ::operator delete[](p, std::align_val_t{64}); }
  };
  struct area {
    std::unique_ptr<std::byte[], aligned_delete> memory;
    std::size_t bytes = 0;
  };

  /// The smallest kept area of at least `bytes`, or a new one.
  area take(std::size_t bytes) {
    auto best = free_.end();
    for (auto it = free_.begin(); it != free_.end(); ++it) {
      if (it->bytes >= bytes && (best == free_.end() || it->bytes < best->bytes)) best = it;
    }
    if (best != free_.end()) {
      area a = std::move(*best);
      free_.erase(best);
      return a;
    }
    return {std::unique_ptr<std::byte[], aligned_delete>(
                static_cast<std::byte*>(::operator new[](bytes, std::align_val_t{64}))),
            bytes};
  }

  void give(area a) {
    if (!a.memory) return;
    free_.push_back(std::move(a));
    if (free_.size() > kept) {
      const auto smallest =
          std::min_element(free_.begin(), free_.end(),
                           [](const area& x, const area& y) { return x.bytes < y.bytes; });
      free_.erase(smallest);
    }
  }

 private:
  static constexpr std::size_t kept = 4;
  std::vector<area> free_;
};

/// Requests of one step, oldest first, with the count of those known to be complete.
template <transport Transport>
struct step_requests {
  std::vector<typename Transport::request> list;
  std::size_t completed = 0;

  void cancel(Transport& t) noexcept {
    for (std::size_t i = completed; i < list.size(); ++i) t.cancel(list[i]);
    completed = list.size();
  }
};

/// A collective in flight: its own copy of everything the call pointed to that the caller
/// may release once the nonblocking call returns (counts, the op object), the schedule,
/// and where it is in it.
template <transport Transport>
class collective_operation final : public operation<Transport> {
 public:
  collective_operation(std::weak_ptr<engine<Transport>> e, scratch_pool& pool, int priority,
                       const collective_call& c, const call_start& start,
                       std::shared_ptr<void> keep, bool check)
      : operation<Transport>(std::move(e), priority, true),
        call_(c),
        start_(start),
        keep_(std::move(keep)),
        check_(check && c.size > 1),
        counts_(c.counts.begin(), c.counts.end()),
        send_counts_(c.send_counts.begin(), c.send_counts.end()),
        send_offsets_(c.send_offsets.begin(), c.send_offsets.end()),
        recv_counts_(c.recv_counts.begin(), c.recv_counts.end()),
        recv_offsets_(c.recv_offsets.begin(), c.recv_offsets.end()),
        pool_(&pool) {
    call_.counts = counts_;
    call_.send_counts = send_counts_;
    call_.send_offsets = send_offsets_;
    call_.recv_counts = recv_counts_;
    call_.recv_offsets = recv_offsets_;
    // one_sided at one rank is the copy of the direct schedule (as in run_collective)
    const schedule::algorithm a = start_.algorithm == schedule::algorithm::one_sided
                                      ? schedule::algorithm::direct
                                      : start_.algorithm;
    schedule_ = schedule::build(a, call_);
  }

  bool advance(communicator<Transport>& comm) override {
    bool moved = false;
    with_call_context(comm, call_, start_.fp, [&] { moved = run(comm); });
    return moved;
  }

  [[nodiscard]] bool finished() const noexcept override { return finished_; }

  void idle_wait(communicator<Transport>& comm, clock::time_point until, bool final) override {
    with_call_context(comm, call_, start_.fp, [&] {
      if (requests_.completed >= requests_.list.size()) return;
      Transport& t = comm.transport();
      auto& req = requests_.list[requests_.completed];
      if (final) {
        t.wait(req, deadline{clock::now()});  // the transport's own timeout message
      } else {
        (void)operation<Transport>::soft_wait(t, req, until);
      }
    });
  }

  void cancel(Transport& t) noexcept override { requests_.cancel(t); }

 private:
  bool run(communicator<Transport>& comm) {
    Transport& t = comm.transport();
    bool moved = false;
    if (!started_) {
      started_ = true;
      moved = true;
      area_ = pool_->take(
          std::max<std::size_t>(64, call_memory::bytes_for(schedule_, call_.elem_size)));
      if (check_) post_check(comm);
    }
    if (checking_) {
      if (!test_all(t, moved)) return moved;
      checking_ = false;
      requests_ = {};
      throw_if_mismatched(comm.rank(), comm.size(), theirs_, start_.fp);
    }
    const call_memory m(call_, schedule_, area_.memory.get());
    const std::size_t es = call_.elem_size;
    while (step_ < schedule_.steps()) {
      const std::span<const schedule::op> step = schedule_.step(step_);
      if (!posted_) {
        requests_.list.clear();
        requests_.completed = 0;
        post_step(comm, step, m, start_.sequence,
                  [&](typename Transport::request r) { requests_.list.push_back(std::move(r)); });
        posted_ = true;
        moved = true;
        next_op_ = 0;
        staged_ = 0;
      }
      // receives in op order, each reduction applied as soon as its payload is in
      for (; next_op_ < step.size(); ++next_op_) {
        const schedule::op& o = step[next_op_];
        if (o.code != schedule::op_code::recv && o.code != schedule::op_code::recv_reduce) continue;
        if (!t.test(requests_.list[requests_.completed])) return moved;
        ++requests_.completed;
        moved = true;
        if (o.code == schedule::op_code::recv_reduce) {
          reduce_received(m, o, m.staging + staged_);
          staged_ += o.dst.count * es;
        }
      }
      // then the sends
      if (!test_all(t, moved)) return moved;
      posted_ = false;
      ++step_;
      // One step per call: the engine looks at higher priorities again before the next.
      if (step_ < schedule_.steps()) return true;
    }
    const int p = comm.size();
    const std::size_t n = call_.finalize != nullptr ? finalize_count(call_, comm.rank()) : 0;
    if (n != 0) call_.finalize(call_.output, n, p, call_.op_object);
    pool_->give(std::move(area_));
    finished_ = true;
    return true;
  }

  /// Tests the requests from `completed` on, in order; true when all are complete.
  bool test_all(Transport& t, bool& moved) {
    while (requests_.completed < requests_.list.size()) {
      if (!t.test(requests_.list[requests_.completed])) return false;
      ++requests_.completed;
      moved = true;
    }
    return true;
  }

  /// `CHORUS_CHECK`: the fingerprint exchange of `check_fingerprint`, without blocking and
  /// on this call's own sequence number (so it never meets another request's).
  void post_check(communicator<Transport>& comm) {
    Transport& t = comm.transport();
    const int p = comm.size();
    const int r = comm.rank();
    const tag_t tag = collective_tag(start_.sequence, check_tag);
    requests_.list.push_back(
        t.irecv((r + p - 1) % p, tag, {reinterpret_cast<std::byte*>(&theirs_), sizeof theirs_}));
    comm.count_received(sizeof theirs_);
    requests_.list.push_back(t.isend(
        (r + 1) % p, tag, {reinterpret_cast<const std::byte*>(&start_.fp), sizeof start_.fp}));
    comm.count_sent(sizeof start_.fp);
    checking_ = true;
  }

  collective_call call_;
  call_start start_;
  std::shared_ptr<void> keep_;
  bool check_;
  std::vector<std::size_t> counts_, send_counts_, send_offsets_, recv_counts_, recv_offsets_;
  schedule::schedule schedule_;
  scratch_pool* pool_;  ///< the engine's (the engine outlives every round of its operations)
  scratch_pool::area area_;
  step_requests<Transport> requests_;
  fingerprint theirs_{};
  std::size_t step_ = 0;
  std::size_t next_op_ = 0;
  std::size_t staged_ = 0;
  bool started_ = false;
  bool checking_ = false;
  bool posted_ = false;
  bool finished_ = false;
};

/// One point-to-point transfer of a batch: a send of `bytes` from `data` or a receive into
/// it, to or from `peer` with the user's `tag`.
struct transfer {
  bool send = false;
  int peer = 0;
  std::uint32_t tag = 0;
  std::byte* data = nullptr;
  std::size_t bytes = 0;
};

/// A batch of point-to-point transfers (`isend`, `irecv`, `batch_isend_irecv`): posted whole
/// at the first round of progress (receives first), complete when every transfer is.
template <transport Transport>
class transfer_operation final : public operation<Transport> {
 public:
  transfer_operation(std::weak_ptr<engine<Transport>> e, const char* api,
                     std::vector<transfer> transfers)
      : operation<Transport>(std::move(e), 0, false), api_(api), transfers_(std::move(transfers)) {}

  bool advance(communicator<Transport>& comm) override {
    bool moved = false;
    in_context(comm, [&] {
      Transport& t = comm.transport();
      if (!posted_) {
        posted_ = true;
        moved = true;
        for (int pass = 0; pass < 2; ++pass) {
          for (const transfer& x : transfers_) {
            if (x.send != (pass == 1)) continue;
            if (x.send) {
              requests_.list.push_back(t.isend(x.peer, user_tag(x.tag), {x.data, x.bytes}));
              comm.count_sent(x.bytes);
            } else {
              requests_.list.push_back(t.irecv(x.peer, user_tag(x.tag), {x.data, x.bytes}));
              comm.count_received(x.bytes);
            }
          }
        }
      }
      // Any order: a batch's transfers are independent. Completed ones are swapped to
      // the front so that `completed` counts them.
      for (std::size_t i = requests_.completed; i < requests_.list.size(); ++i) {
        if (!t.test(requests_.list[i])) continue;
        std::swap(requests_.list[i], requests_.list[requests_.completed]);
        ++requests_.completed;
        moved = true;
      }
    });
    return moved;
  }

  [[nodiscard]] bool finished() const noexcept override {
    return posted_ && requests_.completed == requests_.list.size();
  }

  void idle_wait(communicator<Transport>& comm, clock::time_point until, bool final) override {
    in_context(comm, [&] {
      if (requests_.completed >= requests_.list.size()) return;
      Transport& t = comm.transport();
      auto& req = requests_.list[requests_.completed];
      if (final) {
        t.wait(req, deadline{clock::now()});
      } else {
        (void)operation<Transport>::soft_wait(t, req, until);
      }
    });
  }

  void cancel(Transport& t) noexcept override { requests_.cancel(t); }

 private:
  /// Like `point_to_point`'s errors: "chorus: rank 1: isend (peer 2, tag 5): ...".
  template <class Body>
  void in_context(communicator<Transport>& comm, Body&& body) {
    try {
      body();
    } catch (const error& e) {
      std::string where = "chorus: rank " + std::to_string(comm.rank()) + ": " + api_;
      if (transfers_.size() == 1) {
        where += " (peer " + std::to_string(transfers_[0].peer) + ", tag " +
                 std::to_string(transfers_[0].tag) + ")";
      } else {
        where += " (" + std::to_string(transfers_.size()) + " transfers)";
      }
      std::string message = where + ": " + e.what();
      if (is_own_timeout(e)) {
        message += " (waited " + to_string(comm.options().timeout) +
                   "); the peer may not have posted the matching transfer";
      }
      error wrapped(e.value(), std::move(message));
      comm.fail(wrapped);
      throw wrapped;
    }
  }

  const char* api_;
  std::vector<transfer> transfers_;
  step_requests<Transport> requests_;
  bool posted_ = false;
};

/// The engine of one communicator (see the file comment).
template <transport Transport>
class engine final : public async_engine, public std::enable_shared_from_this<engine<Transport>> {
 public:
  using op_ptr = std::shared_ptr<operation<Transport>>;

  explicit engine(communicator<Transport>& comm) : comm_(&comm), mode_(comm.options().progress) {}
  engine(const engine&) = delete;
  engine& operator=(const engine&) = delete;
  ~engine() override { shut_down(); }

  /// The engine of `comm`, made on first use.
  static engine& of(communicator<Transport>& comm) {
    if (comm.engine() == nullptr) comm.set_engine(std::make_shared<engine>(comm));
    return static_cast<engine&>(*comm.engine());
  }

  [[nodiscard]] std::weak_ptr<engine> weak() { return this->weak_from_this(); }
  [[nodiscard]] scratch_pool& scratch() noexcept { return scratch_; }

  /// Queues `op` (in posting order); the thread or the caller's next round starts it.
  void post(op_ptr op) {
    {
      std::lock_guard g(state_);
      incoming_.push_back(std::move(op));
      in_flight_.fetch_add(1, std::memory_order_acq_rel);
      if (mode_ == progress_mode::thread && !thread_.joinable() && !stopping_) {
        thread_ = std::thread([this] { thread_main(); });
      }
    }
    changed_.notify_all();
  }

  void rebind(void* comm) noexcept override {
    std::lock_guard g(drive_);
    comm_ = static_cast<communicator<Transport>*>(comm);
  }

  [[nodiscard]] bool busy() const noexcept override {
    return in_flight_.load(std::memory_order_acquire) != 0;
  }

  void drain() override {
    if (mode_ == progress_mode::thread) {
      std::unique_lock lk(state_);
      while (in_flight_.load(std::memory_order_acquire) != 0) {
        changed_.wait_for(lk, std::chrono::milliseconds{100});
      }
      lk.unlock();
      std::lock_guard g(drive_);  // the thread has left its round
    } else {
      drive([&] { return in_flight_.load(std::memory_order_acquire) == 0; },
            clock::time_point::max());
    }
  }

  void shut_down() noexcept override {
    {
      std::lock_guard g(state_);
      stopping_ = true;
    }
    changed_.notify_all();
    if (thread_.joinable()) thread_.join();
    std::lock_guard g(drive_);
    take_incoming();
    if (ops_.empty()) return;
    const std::string reason = "its communicator was destroyed with " +
                               std::to_string(ops_.size()) + " nonblocking operation(s) in flight";
    Transport& t = comm_->transport();
    for (const op_ptr& op : ops_) op->cancel(t);
    comm_->abort(reason);
    for (const op_ptr& op : ops_) {
      complete(*op, std::make_exception_ptr(
                        error(errc::aborted,
                              "chorus: rank " + std::to_string(comm_->rank()) + ": " + reason)));
    }
    ops_.clear();
  }

  /// The request side: wait for `op` until `until`.
  bool wait_for(operation<Transport>& op, clock::time_point until) {
    if (op.done()) return true;
    if (mode_ == progress_mode::thread) {
      std::unique_lock lk(state_);
      while (!op.done()) {
        const auto now = clock::now();
        if (now >= until) return false;
        const auto step = std::chrono::milliseconds{100};
        changed_.wait_for(lk, until - now < step ? until - now : clock::duration(step));
      }
      return true;
    }
    return drive([&] { return op.done(); }, until);
  }

  /// One round of progress by the caller (no thread); nothing when a thread drives.
  void poke() {
    if (mode_ == progress_mode::thread) return;
    std::unique_lock g(drive_, std::try_to_lock);
    if (g.owns_lock()) round();
  }

 private:
  /// Rounds of progress until `done()` or `until`. Between rounds that moved nothing: a
  /// few yields, then a wait in the transport (on the most urgent operation's first pending
  /// request, at most `idle_slice`), which sleeps until a peer changes something -- and is
  /// where lost peers are noticed. A newly posted operation starts after at most one slice.
  template <class Done>
  bool drive(Done done, clock::time_point until) {
    unsigned idle = 0;
    for (;;) {
      {
        std::lock_guard g(drive_);
        const bool moved = round();
        if (done()) return true;
        idle = moved ? 0 : idle + 1;
        if (idle > spin_rounds) {
          const auto now = clock::now();
          idle_wait(std::min(until, now + idle_slice));
        }
      }
      if (done()) return true;
      if (clock::now() >= until) return false;
      if (idle != 0 && idle <= spin_rounds) std::this_thread::yield();
    }
  }

  static constexpr unsigned spin_rounds = 16;
  static constexpr std::chrono::microseconds idle_slice{500};

  void thread_main() {
    for (;;) {
      {
        std::unique_lock lk(state_);
        changed_.wait(lk, [&] { return stopping_ || in_flight_.load() != 0; });
        if (stopping_) return;
      }
      drive([&] { return in_flight_.load(std::memory_order_acquire) == 0 || stop_requested(); },
            clock::time_point::max());
      if (stop_requested()) return;
    }
  }

  bool stop_requested() {
    std::lock_guard g(state_);
    return stopping_;
  }

  /// Moves newly posted operations into `ops_` (drive_ held).
  void take_incoming() {
    std::lock_guard g(state_);
    if (incoming_.empty()) return;
    // The deadline counts from the newest work too: an engine idle for long is not late.
    last_moved_ = clock::now();
    for (op_ptr& op : incoming_) ops_.push_back(std::move(op));
    incoming_.clear();
  }

  /// One round (drive_ held): every unordered operation, then the head of each priority
  /// level from the highest down, stopping at the first level that moved. True if
  /// anything moved.
  bool round() {
    take_incoming();
    if (ops_.empty()) return false;
    bool moved = false;
    for (std::size_t i = 0; i < ops_.size(); ++i) {
      if (!ops_[i]->ordered() && !ops_[i]->done()) moved |= advance(ops_[i]);
    }
    for (operation<Transport>* head : heads()) {
      if (head->done()) continue;
      if (advance_one(*head)) {
        moved = true;
        break;
      }
    }
    retire();
    if (moved) last_moved_ = clock::now();
    return moved;
  }

  /// The oldest ordered operation of each priority level, highest priority first.
  std::vector<operation<Transport>*> heads() {
    std::vector<operation<Transport>*> h;
    for (const op_ptr& op : ops_) {
      if (!op->ordered() || op->done()) continue;
      const bool seen = std::any_of(h.begin(), h.end(), [&](operation<Transport>* x) {
        return x->priority() == op->priority();
      });
      if (!seen) h.push_back(op.get());
    }
    std::stable_sort(h.begin(), h.end(), [](operation<Transport>* a, operation<Transport>* b) {
      return a->priority() > b->priority();
    });
    return h;
  }

  bool advance(const op_ptr& op) { return advance_one(*op); }

  bool advance_one(operation<Transport>& op) {
    try {
      const bool moved = op.advance(*comm_);
      if (op.finished()) complete(op, nullptr);
      return moved;
    } catch (...) {
      fail(op, std::current_exception());
      return true;
    }
  }

  /// Nothing moved for a while: wait in the transport on the most urgent operation's first
  /// pending request (lost peers are noticed there); past the communicator's deadline, that
  /// wait is the operation's timeout.
  void idle_wait(clock::time_point until) {
    operation<Transport>* target = nullptr;
    for (operation<Transport>* head : heads()) {
      target = head;
      break;
    }
    if (target == nullptr) {
      for (const op_ptr& op : ops_) {
        if (!op->done()) {
          target = op.get();
          break;
        }
      }
    }
    if (target == nullptr) return;
    const auto now = clock::now();
    const bool final = now - last_moved_ >= comm_->options().timeout;
    try {
      target->idle_wait(*comm_, until, final);
    } catch (...) {
      fail(*target, std::current_exception());
    }
    retire();
  }

  /// `op` failed (its context added, the communicator poisoned): every other operation in
  /// flight fails with the poisoning error, its requests cancelled.
  void fail(operation<Transport>& op, std::exception_ptr failure) {
    Transport& t = comm_->transport();
    op.cancel(t);
    complete(op, std::move(failure));
    for (const op_ptr& other : ops_) {
      if (other->done()) continue;
      other->cancel(t);
      std::exception_ptr poisoned;
      try {
        comm_->throw_if_poisoned();
        throw error(errc::aborted, "chorus: rank " + std::to_string(comm_->rank()) +
                                       ": an earlier operation on this communicator failed");
      } catch (...) {
        poisoned = std::current_exception();
      }
      complete(*other, poisoned);
    }
  }

  void complete(operation<Transport>& op, std::exception_ptr failure) {
    if (op.done()) return;
    op.finish(std::move(failure), ++completed_);
    in_flight_.fetch_sub(1, std::memory_order_acq_rel);
    { std::lock_guard g(state_); }
    changed_.notify_all();
  }

  void retire() {
    std::erase_if(ops_, [](const op_ptr& op) { return op->done(); });
  }

  communicator<Transport>* comm_;
  progress_mode mode_;
  std::mutex drive_;  ///< held by whoever touches the transport and `ops_`
  std::mutex state_;  ///< guards `incoming_`, `stopping_`; `changed_` waits on it
  std::condition_variable changed_;
  std::vector<op_ptr> incoming_;
  std::vector<op_ptr> ops_;
  std::atomic<std::size_t> in_flight_{0};
  std::uint64_t completed_ = 0;
  clock::time_point last_moved_{};
  scratch_pool scratch_;
  bool stopping_ = false;
  std::thread thread_;
};

template <transport Transport>
bool operation<Transport>::wait_until(clock::time_point until) {
  if (done()) return true;
  if (auto e = engine_.lock()) return e->wait_for(*this, until);
  return done();
}

template <transport Transport>
void operation<Transport>::poke() {
  if (done()) return;
  if (auto e = engine_.lock()) e->poke();
}

/// Posts `call` (begun: algorithm and sequence settled) as a collective request on `comm`.
template <transport Transport>
std::shared_ptr<pending_operation> post_collective(communicator<Transport>& comm,
                                                   const collective_call& call,
                                                   const call_start& start, int priority,
                                                   std::shared_ptr<void> keep) {
  engine<Transport>& e = engine<Transport>::of(comm);
  auto op = std::make_shared<collective_operation<Transport>>(
      e.weak(), e.scratch(), priority, call, start, std::move(keep), comm.options().check);
  e.post(op);
  return op;
}

/// Posts a batch of point-to-point transfers on `comm`.
template <transport Transport>
std::shared_ptr<pending_operation> post_transfers(communicator<Transport>& comm, const char* api,
                                                  std::vector<transfer> transfers) {
  engine<Transport>& e = engine<Transport>::of(comm);
  auto op = std::make_shared<transfer_operation<Transport>>(e.weak(), api, std::move(transfers));
  e.post(op);
  return op;
}

}  // namespace chorus::inline v0::detail

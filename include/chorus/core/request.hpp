#pragma once
/// \file
/// `chorus::request`: the handle of a nonblocking collective or point-to-point operation
/// (`chorus::iall_reduce`, `chorus::isend`, ... in <chorus/collectives/nonblocking.hpp>),
/// and `wait_all` / `wait_any` over several.
///
/// A request is complete when its operation has finished on this rank: the output holds the
/// result and the buffers may be reused. `wait()` returns then, or throws the operation's
/// `chorus::error` -- the same code and message as the blocking form would have thrown.
/// `test()` says whether it is complete without blocking (and throws the same way);
/// `wait_for(d)` waits at most `d` and says whether it completed (the operation stays in
/// flight when it did not; its own deadline is the communicator's timeout, as for a
/// blocking call). Requests are cheap to move and copy (copies share the operation).
///
/// Who moves the bytes: `docs/collectives.md` ("Nonblocking forms"). In short, a
/// communicator's progress thread (the default), or the caller's `test()` / `wait()`.
#include <chorus/core/deadline.hpp>
#include <chorus/core/error.hpp>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <memory>
#include <span>
#include <thread>

namespace chorus::inline v0 {

namespace detail {

/// What a request points to: one operation's completion, shared by the request and the
/// progress engine that runs it (dispatch/progress.hpp).
class pending_operation {
 public:
  virtual ~pending_operation() = default;

  /// Whether the operation has finished (successfully or not).
  [[nodiscard]] bool done() const noexcept { return done_.load(std::memory_order_acquire); }
  /// The order in which operations of one communicator completed: 1, 2, ...; 0 in flight.
  [[nodiscard]] std::uint64_t completion() const noexcept { return completion_; }
  /// Throws the failure, if the operation failed.
  void rethrow() const {
    if (failure_) std::rethrow_exception(failure_);
  }

  /// Drives (or waits for) progress until the operation is done or `until` passes; returns
  /// done(). Never throws the operation's own failure (that is `rethrow`'s).
  virtual bool wait_until(clock::time_point until) = 0;
  /// One round of progress without blocking (may do nothing when another thread drives).
  virtual void poke() = 0;

  /// The engine's side: finish with `failure` (null: success) as completion number `n`.
  void finish(std::exception_ptr failure, std::uint64_t n) noexcept {
    failure_ = std::move(failure);
    completion_ = n;
    done_.store(true, std::memory_order_release);
  }

 private:
  std::atomic<bool> done_{false};
  std::uint64_t completion_ = 0;
  std::exception_ptr failure_;
};

}  // namespace detail

/// The priority of a nonblocking operation: higher is served first (`docs/collectives.md`).
/// Pass it as the last argument of a nonblocking call: `iall_reduce(comm, v, plus{},
/// chorus::priority{2})`. Operations of equal priority run in the order they were posted.
struct priority {
  int value = 0;
};

/// A nonblocking operation in flight, or finished. Empty (default-constructed) requests
/// are complete.
class request {
 public:
  request() = default;
  explicit request(std::shared_ptr<detail::pending_operation> op) noexcept : op_(std::move(op)) {}

  /// Blocks until the operation is complete; throws its error if it failed. Never waits
  /// forever: the operation fails with `timeout` once nothing has moved on its
  /// communicator for the communicator's timeout.
  void wait() const {
    if (!op_) return;
    while (!op_->wait_until(clock::time_point::max())) {
    }
    op_->rethrow();
  }

  /// Whether the operation is complete; throws its error if it failed. Drives progress
  /// once when the communicator has no progress thread.
  [[nodiscard]] bool test() const {
    if (!op_) return true;
    if (!op_->done()) op_->poke();
    if (!op_->done()) return false;
    op_->rethrow();
    return true;
  }

  /// Waits at most `d`; true if the operation completed (throws its error if it failed),
  /// false if it is still in flight.
  template <class Rep, class Period>
  [[nodiscard]] bool wait_for(std::chrono::duration<Rep, Period> d) const {
    if (!op_) return true;
    const auto until = clock::now() + std::chrono::duration_cast<duration>(d);
    if (!op_->wait_until(until)) return false;
    op_->rethrow();
    return true;
  }

  /// Whether this request refers to an operation (false for a default-constructed one).
  [[nodiscard]] bool valid() const noexcept { return op_ != nullptr; }

  /// When the operation completed relative to the other operations of its communicator:
  /// 1 for the first to complete, 2 for the next, ...; 0 while in flight. Lets a program
  /// (or a test) see the order in which priorities were served.
  [[nodiscard]] std::uint64_t completion_order() const noexcept {
    return op_ && op_->done() ? op_->completion() : 0;
  }

 private:
  std::shared_ptr<detail::pending_operation> op_;
};

/// Waits for every request; if any failed, throws the first failure in list order after
/// all have finished (a failure poisons the communicator, so the others end promptly).
inline void wait_all(std::span<const request> requests) {
  std::exception_ptr first;
  for (const request& r : requests) {
    try {
      r.wait();
    } catch (...) {
      if (!first) first = std::current_exception();
    }
  }
  if (first) std::rethrow_exception(first);
}

/// Waits until one of `requests` is complete and returns its index (the lowest index among
/// those complete); throws that request's error if it failed. Returns `requests.size()`
/// for an empty list.
inline std::size_t wait_any(std::span<const request> requests) {
  if (requests.empty()) return 0;
  for (unsigned idle = 0;; ++idle) {
    for (std::size_t i = 0; i < requests.size(); ++i) {
      if (requests[i].test()) return i;
    }
    if (idle < 64) {
      std::this_thread::yield();
    } else {
      std::this_thread::sleep_for(std::chrono::microseconds{idle < 1024 ? 10 : 100});
    }
  }
}

}  // namespace chorus::inline v0

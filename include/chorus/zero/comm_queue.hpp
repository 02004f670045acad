#pragma once
/// \file
/// `zero::comm_queue`: the communication thread of `sharded_optimizer` (the host analogue of
/// a CUDA communication stream). Collectives are blocking calls; queued in order to one
/// thread, they run one after another while the caller's thread computes, and each
/// completes a future. With the thread off, `submit` runs the work at once on the caller's
/// thread and returns a ready future: the same calls in the same order, so the same result.
#include <condition_variable>
#include <deque>
#include <functional>
#include <future>
#include <mutex>
#include <thread>

namespace chorus::inline v0::zero {

class comm_queue {
 public:
  /// `threaded`: run work on a thread of its own (overlap on) or inline (overlap off).
  explicit comm_queue(bool threaded) {
    if (threaded) thread_ = std::thread([this] { loop(); });
  }
  comm_queue(const comm_queue&) = delete;
  comm_queue& operator=(const comm_queue&) = delete;

  /// Runs what is queued, then stops the thread. Every queued collective ends (the
  /// communicator's deadline bounds each), so this never waits forever.
  ~comm_queue() {
    if (!thread_.joinable()) return;
    {
      std::lock_guard lock(mutex_);
      stop_ = true;
    }
    ready_.notify_one();
    thread_.join();
  }

  /// Queues `work`; the future completes (or carries its exception) when it has run.
  std::shared_future<void> submit(std::function<void()> work) {
    std::packaged_task<void()> task(std::move(work));
    std::shared_future<void> done = task.get_future().share();
    if (!thread_.joinable()) {
      task();  // inline: the exception, if any, is stored in the future
      return done;
    }
    {
      std::lock_guard lock(mutex_);
      queue_.push_back(std::move(task));
    }
    ready_.notify_one();
    return done;
  }

  [[nodiscard]] bool threaded() const noexcept { return thread_.joinable(); }

 private:
  void loop() {
    for (;;) {
      std::packaged_task<void()> task;
      {
        std::unique_lock lock(mutex_);
        ready_.wait(lock, [&] { return stop_ || !queue_.empty(); });
        if (queue_.empty()) return;  // stop_ and drained
        task = std::move(queue_.front());
        queue_.pop_front();
      }
      task();
    }
  }

  std::mutex mutex_;
  std::condition_variable ready_;
  std::deque<std::packaged_task<void()>> queue_;
  bool stop_ = false;
  std::thread thread_;  // last: started after the members it uses exist
};

}  // namespace chorus::inline v0::zero

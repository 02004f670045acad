#pragma once
/// \file
/// The ladder a waiting rank climbs while polling finds nothing to do: spin (a `pause` per
/// poll) for a budget of polls, then yield the CPU for a number of polls and/or a time
/// window (a peer that needs this core gets it, and a message that arrives meanwhile is
/// still caught without a system call), then sleep in the transport's own way -- a futex on
/// the shared-memory doorbell, UCX's event fd -- for at most a liveness period. Any progress
/// puts the rank back on the bottom rung. Each transport keeps its own budgets (measured
/// and explained where they are set); the climb is written once.
#include <chorus/transport/kit/cpus.hpp>

#include <chrono>
#include <thread>

namespace chorus::inline v0::kit {

class wait_ladder {
 public:
  enum class rung { spin, yield, sleep };
  using clock = std::chrono::steady_clock;

  /// `spins` polls with a pause, then yields for `yields` polls and at least `yield_window`
  /// (either may be zero), then sleeps.
  wait_ladder(int spins, int yields, clock::duration yield_window = {}) noexcept
      : spin_limit_(spins), yield_limit_(yields), yield_window_(yield_window) {}

  /// Call after a poll that moved nothing. Spins or yields here and returns the rung; on
  /// `rung::sleep` the caller sleeps (and may check deadlines and peers first).
  rung idle() noexcept {
    if (spins_ < spin_limit_) {
      ++spins_;
      cpu_relax();
      return rung::spin;
    }
    if (yield_window_ != clock::duration::zero() && idle_since_ == clock::time_point{}) {
      idle_since_ = clock::now();
    }
    if (yields_ < yield_limit_ ||
        (yield_window_ != clock::duration::zero() && clock::now() - idle_since_ < yield_window_)) {
      ++yields_;
      std::this_thread::yield();
      return rung::yield;
    }
    return rung::sleep;
  }

  /// Call after a poll that moved something, or after a sleep: back to the bottom rung.
  void reset() noexcept {
    spins_ = 0;
    yields_ = 0;
    idle_since_ = {};
  }

 private:
  int spin_limit_;
  int yield_limit_;
  clock::duration yield_window_;
  int spins_ = 0;
  int yields_ = 0;
  clock::time_point idle_since_{};
};

}  // namespace chorus::inline v0::kit

#pragma once
// Catch2's assertions are not thread-safe: tests whose ranks are threads wrap each one in
// LOCKED(...), which holds one mutex shared by the whole test program.
#include <mutex>

namespace harness {
inline std::mutex catch_mutex;
}  // namespace harness

#define LOCKED(...)                                   \
  do {                                                \
    std::lock_guard catch_lock(harness::catch_mutex); \
    __VA_ARGS__;                                      \
  } while (false)

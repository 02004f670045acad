#pragma once
/// \file
/// `chorus::bootstrap::memory_store`: a store inside one process.
///
/// For worlds of one rank (what `from_env()` gives a size-1 job that names no store), for
/// ranks that are threads, and for tests. Copies share the same keys, so each thread-rank
/// takes a copy. Blocking calls sleep on a condition variable until a key is set.
#include <chorus/bootstrap/store.hpp>
#include <chorus/core/deadline.hpp>
#include <chorus/core/error.hpp>

#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>

namespace chorus::inline v0::bootstrap {

/// A store in the memory of one process; thread-safe; copies share the keys.
class memory_store {
 public:
  memory_store() : state_(std::make_shared<state>()) {}

  void set(std::string_view key, std::span<const std::byte> value) {
    detail::check_key(key, name);
    {
      std::lock_guard lock(state_->mutex);
      state_->data.insert_or_assign(std::string(key), bytes(value.begin(), value.end()));
    }
    state_->changed.notify_all();
  }

  bytes get(std::string_view key, deadline d) {
    detail::check_key(key, name);
    std::unique_lock lock(state_->mutex);
    auto& data = state_->data;
    if (!state_->changed.wait_until(lock, d.at, [&] { return data.contains(key); })) {
      throw error(errc::timeout, "chorus: memory_store: get('" + std::string(key) +
                                     "') timed out: no rank set the key before the deadline");
    }
    return data.find(key)->second;
  }

  void wait(std::span<const std::string> keys, deadline d) {
    for (const auto& k : keys) detail::check_key(k, name);
    std::unique_lock lock(state_->mutex);
    auto& data = state_->data;
    const auto all_set = [&] {
      for (const auto& k : keys) {
        if (!data.contains(k)) return false;
      }
      return true;
    };
    if (!state_->changed.wait_until(lock, d.at, all_set)) {
      std::string missing;
      for (const auto& k : keys) {
        if (!data.contains(k)) missing += (missing.empty() ? "'" : ", '") + k + "'";
      }
      throw error(errc::timeout, "chorus: memory_store: wait timed out; never set: " + missing);
    }
  }

  std::int64_t add(std::string_view key, std::int64_t delta) {
    detail::check_key(key, name);
    std::int64_t value = 0;
    {
      std::lock_guard lock(state_->mutex);
      auto it = state_->data.find(key);
      const std::int64_t current =
          it == state_->data.end() ? 0 : detail::parse_counter(it->second, key, name);
      value = detail::add_counter(current, delta, key, name);
      state_->data.insert_or_assign(std::string(key), to_bytes(std::to_string(value)));
    }
    state_->changed.notify_all();
    return value;
  }

  bytes compare_set(std::string_view key, std::span<const std::byte> expected,
                    std::span<const std::byte> desired) {
    detail::check_key(key, name);
    bytes now;
    {
      std::lock_guard lock(state_->mutex);
      auto it = state_->data.find(key);
      if (!detail::compare_matches(it == state_->data.end() ? nullptr : &it->second, expected)) {
        return it == state_->data.end() ? bytes{} : it->second;
      }
      now.assign(desired.begin(), desired.end());
      state_->data.insert_or_assign(std::string(key), now);
    }
    state_->changed.notify_all();
    return now;
  }

  bool check(std::span<const std::string> keys) {
    for (const auto& k : keys) detail::check_key(k, name);
    std::lock_guard lock(state_->mutex);
    for (const auto& k : keys) {
      if (!state_->data.contains(k)) return false;
    }
    return true;
  }

 private:
  static constexpr std::string_view name = "memory_store";
  struct state {
    std::mutex mutex;
    std::condition_variable changed;  ///< notified after every set, add and compare_set
    std::map<std::string, bytes, std::less<>> data;
  };
  std::shared_ptr<state> state_;
};

static_assert(store<memory_store>);

}  // namespace chorus::inline v0::bootstrap

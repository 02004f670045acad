#pragma once
/// \file
/// `chorus::bootstrap::store`: the key-value rendezvous the ranks of a job share, the
/// type-erased `any_store`, and the two helpers transports are built on (`all_gather_blob`,
/// `barrier`).
///
/// A store is how ranks find each other before any transport exists: rank 3 publishes its
/// address under a key, the others wait for that key and read it. Values are bytes
/// (`std::vector<std::byte>`); keys are strings. A key, once set, can be overwritten but is
/// never removed by the store while the job runs.
///
/// **Keys of different users must not collide.** Everything chorus writes goes under
///
///     chorus/<job_id>/<component>/<instance>/<name>
///
/// e.g. `chorus/7f3a.../shm/comm0/addr/3`: `job_id` from `world::job_id` (unique per job, so
/// that jobs sharing a `file_store` directory stay apart), `component` the transport or
/// layer (`shm`, `ucx`, `barrier`), `instance` whatever tells two communicators of one job
/// apart (a communicator counter agreed by all ranks). Applications that use the same
/// store for their own keys should pick a first component other than `chorus`.
///
/// Counters (`add`) are stored as decimal text ("42"), so `get` on a counter key returns
/// its value readably, and `add` on a key set to something that is not an integer fails.
#include <chorus/core/deadline.hpp>
#include <chorus/core/error.hpp>

#include <algorithm>
#include <charconv>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace chorus::inline v0::bootstrap {

/// A store value.
using bytes = std::vector<std::byte>;

/// The bytes of a string (for text values: addresses, names, numbers).
inline bytes to_bytes(std::string_view text) {
  const auto* p = reinterpret_cast<const std::byte*>(text.data());
  return bytes(p, p + text.size());
}

/// The bytes of a value as a string.
inline std::string as_string(std::span<const std::byte> value) {
  return std::string(reinterpret_cast<const char*>(value.data()), value.size());
}

/// A key-value store shared by the ranks of a job.
///
/// - `set(key, value)`: publishes (or overwrites) `key`.
/// - `get(key, deadline) -> bytes`: the value, waiting until the key exists; throws
///   `chorus::error` with `errc::timeout`, naming the key, when the deadline passes first.
/// - `wait(keys, deadline)`: returns when every key exists; `errc::timeout` otherwise.
/// - `add(key, delta) -> int64`: atomically adds `delta` to the counter `key` (a missing key
///   counts as 0) and returns the new value; `add(key, 0)` reads a counter.
/// - `check(keys) -> bool`: whether every key exists now, without waiting.
/// - `compare_set(key, expected, desired) -> bytes`: atomically, sets `key` to `desired` if
///   it holds exactly `expected`, or if it does not exist and `expected` is empty; returns
///   the key's value afterwards (`desired` when it was set, the value that stayed
///   otherwise, empty for a key that does not exist). The first of several ranks to
///   `compare_set(key, {}, proposal)` wins, and every rank learns which proposal won from
///   the value returned: agreement through the store (`communicator::shrink` decides a
///   group's survivors this way). Atomic against other `compare_set` and `add` calls on the
///   key; a plain `set` overwrites regardless. Getting `desired` back means the key holds
///   it, not that this call wrote it: when that matters, make every caller's value its own.
///
/// Keys are non-empty strings. Every call may also throw `errc::peer_lost` (the store's
/// server went away), `errc::transport` (a system call failed) or `errc::invalid_argument`
/// (an empty key, `add` on a non-integer value). Calls without a deadline parameter use the
/// store's own timeout.
template <class S>
concept store = requires(S& s, std::string_view key, std::span<const std::byte> value,
                         std::span<const std::string> keys, deadline d, std::int64_t delta) {
  s.set(key, value);
  { s.compare_set(key, value, value) } -> std::same_as<bytes>;
  { s.get(key, d) } -> std::same_as<bytes>;
  s.wait(keys, d);
  { s.add(key, delta) } -> std::same_as<std::int64_t>;
  { s.check(keys) } -> std::same_as<bool>;
};

/// Any store behind one small virtual interface, so that transports and the `world` can
/// hold a store without being templates on its type. Copies share the same store (shared
/// ownership); the store is destroyed with the last copy. A default-constructed `any_store`
/// is empty, and calling it throws `errc::invalid_argument`.
class any_store {
 public:
  any_store() = default;

  /// Takes `s` (moved or copied in).
  template <class S>
  requires(!std::same_as<std::remove_cvref_t<S>, any_store>) &&
      store<std::remove_cvref_t<S>>&& std::constructible_from<std::remove_cvref_t<S>, S> any_store(
          S&& s)  // NOLINT(google-explicit-constructor): a store converts to any_store
      : impl_(std::make_shared<model<std::remove_cvref_t<S>>>(
            std::make_shared<std::remove_cvref_t<S>>(std::forward<S>(s)))) {}

  /// Shares ownership of `s` with the caller.
  template <store S>
  explicit any_store(std::shared_ptr<S> s)
      : impl_(s ? std::make_shared<model<S>>(std::move(s)) : nullptr) {}

  explicit operator bool() const noexcept { return impl_ != nullptr; }

  void set(std::string_view key, std::span<const std::byte> value) { ref().set(key, value); }
  bytes get(std::string_view key, deadline d) { return ref().get(key, d); }
  void wait(std::span<const std::string> keys, deadline d) { ref().wait(keys, d); }
  std::int64_t add(std::string_view key, std::int64_t delta) { return ref().add(key, delta); }
  bool check(std::span<const std::string> keys) { return ref().check(keys); }
  bytes compare_set(std::string_view key, std::span<const std::byte> expected,
                    std::span<const std::byte> desired) {
    return ref().compare_set(key, expected, desired);
  }

 private:
  struct interface {
    virtual ~interface() = default;
    virtual void set(std::string_view key, std::span<const std::byte> value) = 0;
    virtual bytes get(std::string_view key, deadline d) = 0;
    virtual void wait(std::span<const std::string> keys, deadline d) = 0;
    virtual std::int64_t add(std::string_view key, std::int64_t delta) = 0;
    virtual bool check(std::span<const std::string> keys) = 0;
    virtual bytes compare_set(std::string_view key, std::span<const std::byte> expected,
                              std::span<const std::byte> desired) = 0;
  };

  template <class S>
  struct model final : interface {
    explicit model(std::shared_ptr<S> s) : store_(std::move(s)) {}
    void set(std::string_view key, std::span<const std::byte> value) override {
      store_->set(key, value);
    }
    bytes get(std::string_view key, deadline d) override { return store_->get(key, d); }
    void wait(std::span<const std::string> keys, deadline d) override { store_->wait(keys, d); }
    std::int64_t add(std::string_view key, std::int64_t delta) override {
      return store_->add(key, delta);
    }
    bool check(std::span<const std::string> keys) override { return store_->check(keys); }
    bytes compare_set(std::string_view key, std::span<const std::byte> expected,
                      std::span<const std::byte> desired) override {
      return store_->compare_set(key, expected, desired);
    }
    std::shared_ptr<S> store_;
  };

  interface& ref() const {
    if (!impl_) {
      throw error(errc::invalid_argument,
                  "chorus: this any_store is empty; construct it from a store (tcp_store, "
                  "file_store, memory_store) or use the one bootstrap::from_env() returns");
    }
    return *impl_;
  }

  std::shared_ptr<interface> impl_;
};

static_assert(store<any_store>);

namespace detail {

/// Throws `invalid_argument` for a key no store accepts.
inline void check_key(std::string_view key, std::string_view store_name) {
  if (key.empty()) {
    throw error(errc::invalid_argument,
                "chorus: " + std::string(store_name) + ": a key must not be empty");
  }
}

/// The counter held in `value` (decimal text), or throws `invalid_argument` naming `key`.
inline std::int64_t parse_counter(std::span<const std::byte> value, std::string_view key,
                                  std::string_view store_name) {
  const std::string text = as_string(value);
  std::int64_t n = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
  if (text.empty() || ec != std::errc{} || end != text.data() + text.size()) {
    throw error(errc::invalid_argument,
                "chorus: " + std::string(store_name) + ": add('" + std::string(key) +
                    "') on a key whose value is not a decimal integer; counters and plain "
                    "values must use different keys");
  }
  return n;
}

/// `current + delta`, or throws `invalid_argument` on overflow.
inline std::int64_t add_counter(std::int64_t current, std::int64_t delta, std::string_view key,
                                std::string_view store_name) {
  std::int64_t sum = 0;
  if (__builtin_add_overflow(current, delta, &sum)) {
    throw error(errc::invalid_argument, "chorus: " + std::string(store_name) + ": add('" +
                                            std::string(key) + "', " + std::to_string(delta) +
                                            ") overflows the counter (" + std::to_string(current) +
                                            ")");
  }
  return sum;
}

/// Whether a key holding `current` (nullptr: missing) matches `expected` for `compare_set`.
inline bool compare_matches(const bytes* current, std::span<const std::byte> expected) noexcept {
  if (current == nullptr) return expected.empty();
  return std::equal(current->begin(), current->end(), expected.begin(), expected.end());
}

inline void check_group(std::string_view what, int rank, int size) {
  if (size < 1 || rank < 0 || rank >= size) {
    throw error(errc::invalid_argument, "chorus: " + std::string(what) + ": rank " +
                                            std::to_string(rank) + " of " + std::to_string(size) +
                                            " is not a valid rank (need 0 <= rank < size)");
  }
}

}  // namespace detail

/// Every rank's blob, indexed by rank: each rank publishes `blob` under
/// `<prefix>/<rank>` and reads the others'. Transports use it to exchange addresses, worker
/// ids and segment names.
///
/// **Collective**: every rank of the group calls it with the same `prefix` and `size`.
/// A prefix must not be reused within a job for different blobs (keys are never removed):
/// put a sequence number or communicator id in it.
/// **Errors**: `errc::timeout` naming the rank whose blob never appeared (and its key), when
/// `d` passes; `invalid_argument` for a rank outside [0, size).
template <store S>
std::vector<bytes> all_gather_blob(S& s, std::string_view prefix, int rank, int size,
                                   std::span<const std::byte> blob, deadline d) {
  detail::check_group("all_gather_blob", rank, size);
  const std::string base = std::string(prefix) + "/";
  s.set(base + std::to_string(rank), blob);
  std::vector<bytes> out(static_cast<std::size_t>(size));
  out[static_cast<std::size_t>(rank)].assign(blob.begin(), blob.end());
  // Read the others starting after our own rank, so that ranks do not all wait for rank 0
  // first (no difference to the result; it spreads the load on the store's server).
  for (int i = 1; i < size; ++i) {
    const int peer = (rank + i) % size;
    const std::string key = base + std::to_string(peer);
    try {
      out[static_cast<std::size_t>(peer)] = s.get(key, d);
    } catch (const error& e) {
      if (e.value() != errc::timeout) throw;
      throw error(errc::timeout, "chorus: all_gather_blob '" + std::string(prefix) + "': rank " +
                                     std::to_string(rank) + " of " + std::to_string(size) +
                                     " never received rank " + std::to_string(peer) +
                                     "'s blob (key '" + key +
                                     "'): did that rank start, and does it use the same "
                                     "prefix? (" +
                                     e.what() + ")");
    }
  }
  return out;
}

/// Returns when all `size` ranks have entered the barrier named `prefix`.
///
/// Each rank adds 1 to `<prefix>/arrived`; the one that brings it to `size` sets
/// `<prefix>/done`, which everyone waits for. **Collective**; a prefix serves ONE barrier
/// (use `chorus/<job>/barrier/<n>` with a counter `n` for repeated barriers).
/// **Errors**: `errc::timeout` saying how many ranks had arrived; `invalid_argument` when
/// the prefix was already used (more than `size` arrivals) or the rank is out of range.
template <store S>
void barrier(S& s, std::string_view prefix, int rank, int size, deadline d) {
  detail::check_group("barrier", rank, size);
  const std::string arrived = std::string(prefix) + "/arrived";
  const std::string done = std::string(prefix) + "/done";
  const std::int64_t n = s.add(arrived, 1);
  if (n > size) {
    throw error(errc::invalid_argument,
                "chorus: barrier '" + std::string(prefix) + "': " + std::to_string(n) +
                    " arrivals for " + std::to_string(size) +
                    " ranks: the prefix was used for an earlier barrier; give every barrier a "
                    "prefix of its own");
  }
  if (n == size) {
    // The last to arrive releases the others and has nothing to wait for.
    s.set(done, bytes{});
    return;
  }
  try {
    (void)s.get(done, d);
  } catch (const error& e) {
    if (e.value() != errc::timeout) throw;
    std::int64_t now = n;
    try {
      now = s.add(arrived, 0);
    } catch (const error&) {
      // The count is only for the message; report the timeout either way.
    }
    throw error(errc::timeout, "chorus: barrier '" + std::string(prefix) + "': rank " +
                                   std::to_string(rank) + " timed out with " + std::to_string(now) +
                                   " of " + std::to_string(size) + " ranks arrived (" + e.what() +
                                   ")");
  }
}

}  // namespace chorus::inline v0::bootstrap

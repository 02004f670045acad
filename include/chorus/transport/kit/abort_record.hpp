#pragma once
/// \file
/// The abort record every transport keeps: the first abort of a group and its cause -- who,
/// with which error code, why. The first writer wins; later aborts change nothing, so every
/// rank reports the failure that started it.
///
/// Lock-free and of fixed size, so that it can live in shared memory (each rank's inbox
/// header of `shm_transport`, written by whichever rank aborts) as well as in a
/// transport's own state; all zero bytes is "no record", so zero-filled memory needs no
/// constructor. `record` may be called from any thread, also concurrently; readers that see
/// a record being written wait the few instructions it takes to complete.
#include <chorus/core/error.hpp>
#include <chorus/transport/kit/cpus.hpp>

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

namespace chorus::inline v0::kit {

/// A cause of an abort: who, with which code, why (a view into a record or the caller's).
struct abort_cause {
  int rank;
  errc code;
  std::string_view reason;
};

template <std::size_t ReasonBytes>
struct abort_record {
  static_assert(ReasonBytes >= 16, "an abort record needs room for its reason");

  /// 0: none; 1: being written; 2: complete. Acquire/release: a reader that loads 2 sees
  /// the fields the writer stored before its release store of 2.
  std::atomic<std::uint32_t> state;
  std::int32_t rank;
  std::int32_t code;
  char reason[ReasonBytes];

  /// Stores the record unless one is there (truncating `why`); true if this call stored it.
  bool record(int who, errc c, std::string_view why) noexcept {
    std::uint32_t expected = 0;
    if (!state.compare_exchange_strong(expected, 1, std::memory_order_acq_rel)) return false;
    rank = who;
    code = static_cast<std::int32_t>(c);
    const std::size_t n = std::min(why.size(), sizeof reason - 1);
    std::memcpy(reason, why.data(), n);
    reason[n] = '\0';
    state.store(2, std::memory_order_release);
    return true;
  }

  /// Whether the group was aborted (the record may still be being written).
  [[nodiscard]] bool raised() const noexcept { return state.load(std::memory_order_acquire) != 0; }

  /// Waits until a raised record is complete (its writer is a few stores away).
  void wait_complete() const noexcept {
    while (state.load(std::memory_order_acquire) != 2) cpu_relax();
  }

  [[nodiscard]] errc error_code() const noexcept { return static_cast<errc>(code); }
  [[nodiscard]] std::string_view text() const noexcept {
    return {reason, ::strnlen(reason, sizeof reason)};
  }

  /// What a rank passes on when it aborts with (`who`, `c`, `why`) and this is its own
  /// record, where a transport keeps one per rank (shm's inboxes): the cause already here
  /// when the group was aborted before -- a rank that fails because a peer aborted passes
  /// the first cause on, so that a rank whose record the first writer has not reached yet
  /// gets that cause, not a chain of ranks that each described the one before (which the
  /// record's size cut short of the cause) -- else its own. The view stays valid: a
  /// complete record never changes.
  [[nodiscard]] abort_cause cause_to_pass_on(int who, errc c, std::string_view why) const noexcept {
    if (!raised()) return {who, c, why};
    wait_complete();
    return {rank, error_code(), text()};
  }

  /// "rank 3: rank 1 aborted the group: <reason>", as rank `me` reports it.
  [[nodiscard]] std::string describe(int me) const {
    return "rank " + std::to_string(me) + ": rank " + std::to_string(rank) +
           " aborted the group: " + std::string(text());
  }

  /// Throws the record's error as rank `me` reports it, if the group was aborted.
  void throw_if_raised(int me) const {
    if (!raised()) return;
    wait_complete();
    throw error(error_code(), describe(me));
  }
};

}  // namespace chorus::inline v0::kit

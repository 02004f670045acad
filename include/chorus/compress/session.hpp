#pragma once
/// \file
/// `compress::session`: what the compressed collectives of one communicator keep between
/// calls -- the step counter per tensor that keys the stochastic codecs' draws, and the
/// scratch memory the calls reuse. One per communicator, made on its first compressed call
/// (`session_of(comm)`), so no call needs an object from the caller; a ledger is only an
/// observer.
#include <chorus/communicator.hpp>

#include <cstddef>
#include <cstdint>
#include <map>
#include <span>
#include <type_traits>
#include <vector>

namespace chorus::inline v0::compress {

/// Step counters and scratch of one communicator's compressed collectives.
class session {
 public:
  /// The step of the next call on `tensor` (0, 1, 2, ...), advancing the counter.
  std::uint64_t next_step(std::uint64_t tensor) { return steps_[tensor]++; }
  /// The step the next call on `tensor` will take, without advancing it.
  [[nodiscard]] std::uint64_t step(std::uint64_t tensor) const {
    const auto it = steps_.find(tensor);
    return it == steps_.end() ? 0 : it->second;
  }
  /// Sets the step counter of `tensor` (after loading a checkpoint); every rank alike.
  void set_step(std::uint64_t tensor, std::uint64_t step) { steps_[tensor] = step; }

  /// Scratch slot `slot` as at least `count` elements of T (contents unspecified), grown
  /// when needed and kept, so that a steady stream of calls stops allocating after the first
  /// (a fresh 64 MiB buffer per call costs page faults on every call). The collectives use
  /// a few fixed slots each.
  template <class T>
  std::span<T> scratch(std::size_t slot, std::size_t count) {
    static_assert(std::is_trivially_copyable_v<T> &&
                  alignof(T) <= __STDCPP_DEFAULT_NEW_ALIGNMENT__);
    if (slot >= scratch_.size()) scratch_.resize(slot + 1);
    std::vector<std::byte>& s = scratch_[slot];
    if (s.size() < count * sizeof(T)) s.resize(count * sizeof(T));
    return {reinterpret_cast<T*>(s.data()), count};
  }

 private:
  std::map<std::uint64_t, std::uint64_t> steps_;
  std::vector<std::vector<std::byte>> scratch_;
};

/// The session of `comm`'s compressed collectives (made on first use).
template <class Transport>
session& session_of(communicator<Transport>& comm) {
  return comm.template extension<session>();
}

}  // namespace chorus::inline v0::compress

#pragma once
/// \file
/// The windows of `chorus::shm_transport` (one-sided access): what a rank tells its peers
/// about a window, and what it holds of one. An allocated window is a segment of its own
/// (segment.hpp) that every peer maps and loads from or stores to directly; a registered
/// window is ordinary process memory that peers reach through cross-memory attach
/// (cross_memory.hpp).
#include <chorus/transport/shm/segment.hpp>

#include <cstdint>
#include <span>
#include <vector>

namespace chorus::inline v0::detail::shm {

/// What a rank tells its peers about one window: the segment holding it (empty for
/// registered process memory, which peers reach through cross-memory attach), its size and
/// its address in the owner's process.
struct window_record {
  char segment[168];
  std::uint64_t bytes;
  std::uint64_t address;
};

/// One window as this rank sees it.
struct window_state {
  std::span<std::byte> local;          ///< this rank's memory of the window
  mapping own;                         ///< allocated windows: this rank's segment
  std::vector<mapping> peers;          ///< allocated windows: every rank's segment, mapped
  std::vector<window_record> records;  ///< every rank's record
  bool mapped = false;                 ///< allocated (load/store) or registered (CMA)
};

}  // namespace chorus::inline v0::detail::shm

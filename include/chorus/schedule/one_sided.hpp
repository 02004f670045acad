#pragma once
/// \file
/// The geometry of `algorithm::one_sided`, which is no schedule of messages (its executor,
/// `exec/one_sided.hpp`, has ranks read each other's windows): how the vectors are cut into
/// chunks. The executor runs by it and the cost model (`cost.hpp`) predicts by it.
#include <algorithm>
#include <cstddef>

namespace chorus::inline v0::schedule {

/// Bytes of one piece of the one-sided staging window: 256 KiB (a chunk of P pieces stays in
/// the L2 of the core that copies it), less for large groups so that a window (2 slots of P
/// pieces) stays within 4 MiB per rank.
inline std::size_t one_sided_piece_bytes(int ranks) noexcept {
  std::size_t piece = (std::size_t{2} << 20) / static_cast<std::size_t>(std::max(ranks, 1));
  piece = std::min<std::size_t>(piece, std::size_t{256} << 10);
  piece = std::max<std::size_t>(piece, 4096);
  return piece / 64 * 64;
}

}  // namespace chorus::inline v0::schedule

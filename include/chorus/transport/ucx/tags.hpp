#pragma once
/// \file
/// The UCX tags of `chorus::ucx_transport`. UCX matches on one 64-bit tag per worker, so
/// the sender's world rank and the group's context are inside it (the layout is in
/// ucx.hpp's opening comment): `encode` for messages of a schedule or of the user,
/// `control_tag` for the transport's own (aborts, windows).
#include <chorus/core/error.hpp>
#include <chorus/transport/kit/tags.hpp>

#include <ucp/api/ucp.h>

#include <cstdint>
#include <string>

namespace chorus::inline v0::detail::ucx {

inline constexpr int rank_shift = 46;
inline constexpr int context_shift = 34;
inline constexpr int kind_shift = 32;
inline constexpr std::uint64_t kind_collective = 0;
inline constexpr std::uint64_t kind_user = 1;
inline constexpr std::uint64_t kind_control = 2;
inline constexpr int max_ranks = 1 << 18;
/// Control codes (kind 2).
inline constexpr std::uint32_t control_abort = 1;
inline constexpr std::uint32_t control_window = 2;
inline constexpr std::uint32_t control_rkey = 3;
/// Matches every tag bit except the sender's rank: the abort receive takes any sender (abort
/// records travel on context 0, whichever group raised them).
inline constexpr ucp_tag_t any_sender_mask = (std::uint64_t{1} << rank_shift) - 1;

/// The UCX tag of chorus tag `tag` sent by rank `sender`; throws for a schedule tag that
/// does not fit (no schedule makes one today).
inline ucp_tag_t encode(int sender, tag_t tag) {
  const std::uint64_t context =
      (tag >> chorus::detail::context_shift) & (chorus::detail::context_count - 1);
  const auto rank = (static_cast<std::uint64_t>(sender) << rank_shift) | (context << context_shift);
  if ((tag & chorus::detail::user_tag_bit) != 0) {
    return rank | (kind_user << kind_shift) | (tag & 0xffffffffu);
  }
  const auto op = static_cast<std::uint32_t>(tag & 0xffffffffu);
  const auto sequence = (tag >> 32) & 0xffffu;  // the low 16 of kit/tags.hpp's 19 bits
  if (op >= 0x10000u && op < 0xffff0000u) {
    throw error(errc::invalid_argument,
                "chorus::ucx_transport: schedule tag " + std::to_string(op) +
                    " does not fit the 16 bits the UCX tag layout gives it (ucx.hpp)");
  }
  return rank | (kind_collective << kind_shift) | (sequence << 16) | (op & 0xffffu);
}

inline ucp_tag_t control_tag(int sender, std::uint32_t code, std::uint32_t context = 0) {
  return (static_cast<std::uint64_t>(sender) << rank_shift) |
         (static_cast<std::uint64_t>(context) << context_shift) | (kind_control << kind_shift) |
         code;
}

}  // namespace chorus::inline v0::detail::ucx

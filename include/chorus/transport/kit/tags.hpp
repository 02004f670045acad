#pragma once
/// \file
/// How chorus packs its matching information into a 64-bit transport tag.
///
///     bit 63      : 0 = collective traffic, 1 = user point-to-point (`chorus::send`/`recv`)
///     collective  : bits 32..62 = sequence number of the collective (mod 2^31),
///                   bits  0..31 = the schedule op's tag
///     user        : bits  0..31 = the user's tag
///
/// Collectives with different sequence numbers never match each other, so a late message of
/// collective n cannot be taken by collective n+1. The sequence wraps after 2^31 collectives;
/// since messages of one (source, destination, tag) are FIFO, wrapping is harmless unless
/// 2^31 collectives are in flight at once.
#include <chorus/transport/contract.hpp>

#include <cstdint>

namespace chorus::inline v0::detail {

inline constexpr tag_t user_tag_bit = tag_t{1} << 63;

/// The schedule tag reserved for the fingerprint exchange of `CHORUS_CHECK` mode; it is
/// sent with sequence number 0 so that ranks at different sequence numbers still meet.
inline constexpr std::uint32_t check_tag = 0xffffffffu;

inline constexpr tag_t collective_tag(std::uint32_t sequence, std::uint32_t op_tag) noexcept {
  return (static_cast<tag_t>(sequence & 0x7fffffffu) << 32) | op_tag;
}

inline constexpr tag_t user_tag(std::uint32_t tag) noexcept { return user_tag_bit | tag; }

}  // namespace chorus::inline v0::detail

#pragma once
/// \file
/// How chorus packs its matching information into a 64-bit transport tag.
///
///     bit 63      : 0 = collective traffic, 1 = user point-to-point (`chorus::send`/`recv`)
///     bits 51..62 : the group's context (0 for the world; see kit/group_view.hpp), added
///                   by the transport, so that groups sharing the parent's channels never
///                   match each other's messages
///     collective  : bits 32..50 = sequence number of the collective (mod 2^19),
///                   bits  0..31 = the schedule op's tag
///     user        : bits  0..31 = the user's tag
///
/// Collectives with different sequence numbers never match each other, so a late message of
/// collective n cannot be taken by collective n+1. The sequence wraps after 2^19 collectives;
/// since messages of one (source, destination, tag) are FIFO, wrapping is harmless unless
/// 2^19 collectives of one group are in flight at once.
#include <cstdint>

namespace chorus::inline v0 {
/// A message tag. The executor packs (collective sequence number, schedule tag) into it;
/// user point-to-point messages use a separate range (below).
using tag_t = std::uint64_t;
}  // namespace chorus::inline v0

namespace chorus::inline v0::detail {

inline constexpr tag_t user_tag_bit = tag_t{1} << 63;

/// The schedule tag reserved for the fingerprint exchange of `CHORUS_CHECK` mode; it is
/// sent with sequence number 0 so that ranks at different sequence numbers still meet.
inline constexpr std::uint32_t check_tag = 0xffffffffu;

/// Where a group's context sits in a tag, and how many contexts there are.
inline constexpr unsigned context_shift = 51;
inline constexpr std::uint32_t context_count = 4096;

inline constexpr tag_t collective_tag(std::uint32_t sequence, std::uint32_t op_tag) noexcept {
  return (static_cast<tag_t>(sequence & 0x7ffffu) << 32) | op_tag;
}

/// `tag` as sent within the group of context `context`.
inline constexpr tag_t with_context(tag_t tag, std::uint32_t context) noexcept {
  return tag | (static_cast<tag_t>(context & (context_count - 1)) << context_shift);
}

inline constexpr tag_t user_tag(std::uint32_t tag) noexcept { return user_tag_bit | tag; }

}  // namespace chorus::inline v0::detail

#pragma once
/// \file
/// FNV-1a 64: the one checksum chorus uses -- checkpoint files, the fingerprints of
/// `CHORUS_CHECK`, the benchmarks' result digests. Not cryptographic: it catches corruption
/// and disagreement, not an attacker.
#include <cstddef>
#include <cstdint>
#include <span>

namespace chorus::inline v0 {

/// An FNV-1a 64 hash fed piece by piece.
struct fnv1a {
  std::uint64_t value = 14695981039346656037ull;  ///< the offset basis
  constexpr void add(std::span<const unsigned char> bytes) noexcept {
    for (unsigned char c : bytes) {
      value ^= c;
      value *= 1099511628211ull;  // the 64-bit FNV prime
    }
  }
  constexpr void add(std::span<const std::byte> bytes) noexcept {
    for (std::byte c : bytes) {
      value ^= std::to_integer<unsigned char>(c);
      value *= 1099511628211ull;
    }
  }
  /// Adds the 8 little-endian bytes of `v`.
  constexpr void add_value(std::uint64_t v) noexcept {
    for (int i = 0; i < 8; ++i) {
      value ^= (v >> (8 * i)) & 0xffu;
      value *= 1099511628211ull;
    }
  }
};

/// The FNV-1a 64 hash of `bytes`.
constexpr std::uint64_t fnv1a_of(std::span<const std::byte> bytes) noexcept {
  fnv1a h;
  h.add(bytes);
  return h.value;
}

}  // namespace chorus::inline v0

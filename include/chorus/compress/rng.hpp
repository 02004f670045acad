#pragma once
/// \file
/// `chorus::compress::counter_rng`: a counter-based random generator keyed by (seed, step,
/// tensor, rank), so that stochastic compressors are reproducible bit for bit and need no
/// state between calls.
///
/// Element i of a stream is a pure function of the key and i (a keyed 64-bit mix in the
/// style of SplitMix64, applied twice), as in counter-based generators such as Philox:
/// there is no sequence to advance, any element can be drawn in any order, and two streams
/// with different keys are independent for every practical purpose. Ranks that must draw
/// the same numbers (random-k indices) use a key without the rank; ranks whose noise must
/// be independent (QSGD, TernGrad) put their rank in the key.
#include <cstdint>

namespace chorus::inline v0::compress {

/// The finaliser of SplitMix64: a bijective 64-bit mix with full avalanche.
constexpr std::uint64_t mix64(std::uint64_t z) noexcept {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

/// What a stochastic compressor's randomness is keyed by.
struct rng_key {
  std::uint64_t seed = 0;
  std::uint64_t step = 0;
  std::uint64_t tensor = 0;
  /// The rank, or `shared` for draws every rank must make identically.
  std::uint64_t rank = 0;
  static constexpr std::uint64_t shared = ~std::uint64_t{0};
};

/// Counter-based generator: `bits(i)` and `uniform(i)` are pure functions of (key, i).
class counter_rng {
 public:
  constexpr explicit counter_rng(const rng_key& k) noexcept
      : key_(mix64(mix64(mix64(mix64(k.seed ^ 0x243f6a8885a308d3ull) ^ k.step) ^ k.tensor) ^
                   k.rank)) {}

  /// 64 random bits for counter `i`.
  [[nodiscard]] constexpr std::uint64_t bits(std::uint64_t i) const noexcept {
    // Two rounds: the first decorrelates consecutive counters under one key, the second
    // mixes the key in again so that keys differing in one bit give unrelated streams.
    return mix64(mix64(i * 0x9e3779b97f4a7c15ull + key_) ^ key_);
  }

  /// A double uniform in [0, 1) with 53 random bits, for counter `i`.
  [[nodiscard]] constexpr double uniform(std::uint64_t i) const noexcept {
    return static_cast<double>(bits(i) >> 11) * 0x1.0p-53;
  }

 private:
  std::uint64_t key_;
};

}  // namespace chorus::inline v0::compress

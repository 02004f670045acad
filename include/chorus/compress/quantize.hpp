#pragma once
/// \file
/// Quantisers: `block_quant<std::int8_t>` (deterministic, one scale per block, as ZeRO++'s
/// quantised communication), `qsgd{.levels}` and `terngrad` (stochastic rounding, unbiased).
///
/// Wires:
///  - `block_quant`: per block of `block` elements a float scale (max |x| / 127), then one
///    int8 code per element: 4 ceil(n / block) + n bytes. Round-to-nearest: every element
///    is within scale / 2 of its input.
///  - `qsgd`: the L2 norm (gradient type), then per element a sign bit and a level in
///    [0, levels], `1 + bit_width(levels)` bits each, packed: sizeof(T) + ceil(n b / 8).
///    Level l = floor(|x| / norm * levels + u), u uniform in [0, 1) (QSGD).
///  - `terngrad`: the max magnitude, then 2 bits per element for -1, 0, +1:
///    sizeof(T) + ceil(n / 4). Element x becomes sign(x) * max with probability |x| / max.
/// The draws are keyed by (seed, step, tensor, rank): noise is independent across ranks and
/// steps, and a rerun with the same key gives the same bits.
#include <chorus/compress/compressor.hpp>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <type_traits>

namespace chorus::inline v0::compress {

namespace detail {
/// The largest |x[i]|, NaNs skipped, +0 when no element is above zero: what the loop
/// `amax = std::max(amax, |x[i]|)` from +0 gives (a maximum is exact in any order).
template <class T>
T abs_max_scalar(const T* x, std::size_t n) noexcept {
  T amax = 0;
  for (std::size_t i = 0; i < n; ++i) amax = std::max(amax, x[i] < 0 ? -x[i] : x[i]);
  return amax;
}

/// `codes[i] = int8(clamp(nearbyint(x[i] * inv), -127, 127))`; a NaN gives code 0.
template <class T>
void quantize_int8_scalar(const T* x, std::int8_t* codes, std::size_t n, T inv) noexcept {
  for (std::size_t i = 0; i < n; ++i) {
    const T q = std::nearbyint(x[i] * inv);
    codes[i] = q == q ? static_cast<std::int8_t>(std::clamp(q, T(-127), T(127))) : 0;
  }
}

#if CHORUS_FLOAT16_X86_DISPATCH
/// `abs_max_scalar` for float with AVX: `vmaxps` keeps its second operand, the running
/// maximum, when the element is a NaN.
__attribute__((target("avx"))) inline float abs_max_avx(const float* x, std::size_t n) noexcept {
  const __m256 sign = _mm256_set1_ps(-0.0f);
  __m256 m0 = _mm256_setzero_ps(), m1 = _mm256_setzero_ps();
  std::size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    m0 = _mm256_max_ps(_mm256_andnot_ps(sign, _mm256_loadu_ps(x + i)), m0);
    m1 = _mm256_max_ps(_mm256_andnot_ps(sign, _mm256_loadu_ps(x + i + 8)), m1);
  }
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, _mm256_max_ps(m0, m1));
  float amax = abs_max_scalar(x + i, n - i);
  for (const float v : lanes) amax = std::max(amax, v);
  return amax;
}

/// 8 codes of `quantize_int8_scalar` in 32-bit lanes: `vroundps` in the current rounding
/// mode is `nearbyint`; NaN lanes are zeroed after the clamp (which would make them -127).
__attribute__((target("avx"))) inline __m256i quantize_int8_8(const float* x, __m256 inv) noexcept {
  const __m256 q =
      _mm256_round_ps(_mm256_mul_ps(_mm256_loadu_ps(x), inv), _MM_FROUND_CUR_DIRECTION);
  const __m256 ordered = _mm256_cmp_ps(q, q, _CMP_ORD_Q);
  const __m256 clamped =
      _mm256_min_ps(_mm256_max_ps(q, _mm256_set1_ps(-127.0f)), _mm256_set1_ps(127.0f));
  return _mm256_castps_si256(
      _mm256_and_ps(_mm256_castsi256_ps(_mm256_cvttps_epi32(clamped)), ordered));
}

/// `quantize_int8_scalar` for float with AVX2, 32 codes per step.
__attribute__((target("avx2"))) inline void quantize_int8_avx2(const float* x, std::int8_t* codes,
                                                               std::size_t n, float inv) noexcept {
  const __m256 vinv = _mm256_set1_ps(inv);
  // The packs work within 128-bit halves; this puts the four groups of 8 back in order.
  const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
  std::size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    const __m256i ab =
        _mm256_packs_epi32(quantize_int8_8(x + i, vinv), quantize_int8_8(x + i + 8, vinv));
    const __m256i cd =
        _mm256_packs_epi32(quantize_int8_8(x + i + 16, vinv), quantize_int8_8(x + i + 24, vinv));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(codes + i),
                        _mm256_permutevar8x32_epi32(_mm256_packs_epi16(ab, cd), order));
  }
  quantize_int8_scalar(x + i, codes + i, n - i, inv);
}
#endif

}  // namespace detail

/// Per-block symmetric quantisation to `Q` (int8) with a float scale per block.
template <class Q>
struct block_quant {
  static_assert(std::is_same_v<Q, std::int8_t>,
                "chorus::compress::block_quant<Q> quantises to std::int8_t codes only.");
  static constexpr bool summable = false;
  static constexpr bool stochastic = false;
  static constexpr bool unbiased = false;

  /// Elements per scale (ZeRO++ uses blocks of a few hundred to a few thousand).
  std::size_t block = 256;

  template <gradient_type T>
  [[nodiscard]] std::size_t wire_bytes(std::size_t n) const {
    check_block();
    return sizeof(float) * detail::ceil_div(n, block) + n;
  }
  template <gradient_type T>
  void encode(std::span<const T> x, std::span<std::byte> wire, const context&) const {
    detail::check_wire("block_quant", wire.size(), wire_bytes<T>(x.size()));
    const std::size_t n = x.size();
    const std::size_t blocks = detail::ceil_div(n, block);
    std::byte* scales = wire.data();
    auto* codes = reinterpret_cast<std::int8_t*>(wire.data() + sizeof(float) * blocks);
    bool vector = false;
    if constexpr (std::is_same_v<T, float>) vector = detail::vector_codecs();
    for (std::size_t b = 0; b < blocks; ++b) {
      const std::size_t lo = b * block, m = std::min(n, lo + block) - lo;
      const T* in = x.data() + lo;
#if CHORUS_FLOAT16_X86_DISPATCH
      if constexpr (std::is_same_v<T, float>) {
        if (vector) {
          const float scale = detail::abs_max_avx(in, m) / 127.0f;
          std::memcpy(scales + b * sizeof(float), &scale, sizeof(float));
          detail::quantize_int8_avx2(in, codes + lo, m, scale > 0 ? 1.0f / scale : 0.0f);
          continue;
        }
      }
#endif
      const float scale = static_cast<float>(detail::abs_max_scalar(in, m)) / 127.0f;
      std::memcpy(scales + b * sizeof(float), &scale, sizeof(float));
      detail::quantize_int8_scalar(in, codes + lo, m,
                                   scale > 0 ? T(1) / static_cast<T>(scale) : T(0));
    }
  }
  template <gradient_type T>
  void decode_add(std::span<const std::byte> wire, std::span<T> y, const context&) const {
    detail::check_wire("block_quant", wire.size(), wire_bytes<T>(y.size()));
    const std::size_t n = y.size();
    const std::size_t blocks = detail::ceil_div(n, block);
    const auto* codes = reinterpret_cast<const std::int8_t*>(wire.data() + sizeof(float) * blocks);
    for (std::size_t b = 0; b < blocks; ++b) {
      float scale;
      std::memcpy(&scale, wire.data() + b * sizeof(float), sizeof(float));
      const std::size_t lo = b * block, hi = std::min(n, lo + block);
      for (std::size_t i = lo; i < hi; ++i)
        y[i] += static_cast<T>(scale) * static_cast<T>(codes[i]);
    }
  }

 private:
  void check_block() const {
    if (block == 0) detail::invalid("block_quant", "block is 0; pass e.g. .block = 256");
  }
};

namespace detail {
/// Stochastic rounding of |x| / scale to `levels` levels, sign and level packed per element:
/// the codec behind `qsgd` (scale = L2 norm) and `terngrad` (scale = max, one level).
template <bool MaxNorm>
struct stochastic_levels {
  static constexpr bool summable = false;
  static constexpr bool stochastic = true;
  static constexpr bool unbiased = true;
  static constexpr const char* name = MaxNorm ? "terngrad" : "qsgd";

  static unsigned bits_for(unsigned levels) {
    if (levels == 0 || levels > 127) {
      invalid(name, "levels " + std::to_string(levels) + " is outside 1..127");
    }
    return 1u + static_cast<unsigned>(std::bit_width(levels));
  }

  template <class T>
  static std::size_t bytes(std::size_t n, unsigned levels) {
    return sizeof(T) + ceil_div(n * bits_for(levels), 8);
  }

  template <class T>
  static void encode(std::span<const T> x, std::span<std::byte> wire, unsigned levels,
                     const rng_key& key) {
    check_wire(name, wire.size(), bytes<T>(x.size(), levels));
    T scale = 0;
    if constexpr (MaxNorm) {
      for (const T v : x) scale = std::max(scale, v < 0 ? -v : v);
    } else {
      T sq = 0;
      for (const T v : x) sq += v * v;
      scale = std::sqrt(sq);
    }
    wire_writer out(wire);
    out.put<T>(scale);
    const unsigned b = bits_for(levels);
    bit_packer packer(out.position(), b);
    const counter_rng rng(key);
    const T s = static_cast<T>(levels);
    const T inv = scale > 0 ? s / scale : T(0);
    for (std::size_t i = 0; i < x.size(); ++i) {
      const T a = x[i] < 0 ? -x[i] : x[i];
      auto level = static_cast<std::uint64_t>(std::floor(a * inv + static_cast<T>(rng.uniform(i))));
      if (level > levels) level = levels;  // rounding at |x| == scale
      packer.put((level << 1) | (x[i] < 0 ? 1u : 0u));
    }
    packer.flush();
  }

  template <class T>
  static void decode_add(std::span<const std::byte> wire, std::span<T> y, unsigned levels) {
    check_wire(name, wire.size(), bytes<T>(y.size(), levels));
    wire_reader in(wire);
    const T scale = in.get<T>();
    const T step = scale / static_cast<T>(levels);
    const unsigned b = bits_for(levels);
    bit_unpacker codes(in.position(), ceil_div(y.size() * b, 8), b);
    for (T& v : y) {
      const std::uint64_t c = codes.get();
      const T mag = static_cast<T>(c >> 1) * step;
      v += (c & 1u) ? -mag : mag;
    }
  }
};
}  // namespace detail

/// QSGD: L2 norm plus stochastic levels; unbiased, variance at most
/// min(n / s^2, sqrt(n) / s) ||x||^2.
struct qsgd {
  static constexpr bool summable = false;
  static constexpr bool stochastic = true;
  static constexpr bool unbiased = true;
  unsigned levels = 16;
  std::uint64_t seed = 0;

  template <gradient_type T>
  [[nodiscard]] std::size_t wire_bytes(std::size_t n) const {
    return impl::bytes<T>(n, levels);
  }
  template <gradient_type T>
  void encode(std::span<const T> x, std::span<std::byte> wire, const context& ctx) const {
    impl::encode(x, wire, levels, ctx.private_key(seed));
  }
  template <gradient_type T>
  void decode_add(std::span<const std::byte> wire, std::span<T> y, const context&) const {
    impl::decode_add(wire, y, levels);
  }

 private:
  using impl = detail::stochastic_levels<false>;
};

/// TernGrad: max magnitude plus a stochastic ternary {-1, 0, +1} per element; unbiased.
struct terngrad {
  static constexpr bool summable = false;
  static constexpr bool stochastic = true;
  static constexpr bool unbiased = true;
  std::uint64_t seed = 0;

  template <gradient_type T>
  [[nodiscard]] std::size_t wire_bytes(std::size_t n) const {
    return impl::bytes<T>(n, 1);
  }
  template <gradient_type T>
  void encode(std::span<const T> x, std::span<std::byte> wire, const context& ctx) const {
    impl::encode(x, wire, 1, ctx.private_key(seed));
  }
  template <gradient_type T>
  void decode_add(std::span<const std::byte> wire, std::span<T> y, const context&) const {
    impl::decode_add(wire, y, 1);
  }

 private:
  using impl = detail::stochastic_levels<true>;
};

}  // namespace chorus::inline v0::compress

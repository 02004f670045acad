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
///
/// Special values in `qsgd` and `terngrad`: an element whose |x| / scale * levels + u is NaN
/// (a NaN element; an infinity, which makes the scale infinite and the quotient inf * 0;
/// a zero when the scale is so small that levels / scale overflows) gets level 0, with the
/// sign bit `x < 0` gives (0 for every NaN); one whose quotient is +inf (a nonzero element
/// under such a tiny scale) gets the top level. Every path, scalar and vector, applies
/// this rule; before it was written down, these cases converted a NaN or an infinity to an
/// integer, which is undefined, and GCC's and Clang's builds wrote different codes.
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

#endif

/// The largest |x[i]| as `abs_max_scalar` gives it: with `abs_max_avx` for float when
/// `vector` (the vector paths may run), else with the scalar loop.
template <class T>
T abs_max(const T* x, std::size_t n, bool vector) noexcept {
#if CHORUS_FLOAT16_X86_DISPATCH
  if constexpr (std::is_same_v<T, float>) {
    if (vector) return abs_max_avx(x, n);
  }
#endif
  static_cast<void>(vector);
  return abs_max_scalar(x, n);
}

#if CHORUS_FLOAT16_X86_DISPATCH
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
/// `v` unchanged, but opaque to the optimiser: a product passed through it is rounded on its
/// own before the add that follows. GCC in its GNU modes (`-std=gnu++20`, its default)
/// contracts `a * b + c` into one FMA wherever the target has FMA (the AVX-512 kernels'
/// target does, and so does a `-march=native` build's scalar loop); the FMA rounds once
/// instead of twice, and the paths would write different codes.
template <class T>
inline T unfused(T v) noexcept {
#if CHORUS_FLOAT16_X86_DISPATCH
  __asm__("" : "+x"(v));
#endif
  return v;
}

/// Packs 8 codes of `bits` bits (at most 8), one per byte of `w`, the first in the lowest
/// byte, into the low 8 * bits bits of the result, the first lowest: what `bit_packer`
/// writes for them. Three steps each join neighbouring fields (bytes into 16-bit fields,
/// those into 32-bit fields, those into one), with shifts and masks only, for the AVX2
/// kernels: `pext` does it in one instruction, and the AVX-512 kernels use it, but AMD's
/// CPUs before Zen 3 (AVX2, no AVX-512) take hundreds of cycles over it.
constexpr std::uint64_t pack_codes8(std::uint64_t w, unsigned bits) noexcept {
  w = (w & 0x00ff00ff00ff00ffull) | ((w >> 8) & 0x00ff00ff00ff00ffull) << bits;
  w = (w & 0x0000ffff0000ffffull) | ((w >> 16) & 0x0000ffff0000ffffull) << (2 * bits);
  return (w & 0xffffffffull) | (w >> 32) << (4 * bits);
}

/// The inverse of `pack_codes8`: the 8 codes in the low 8 * bits bits of `w` (the bits above
/// are ignored), one per byte.
constexpr std::uint64_t unpack_codes8(std::uint64_t w, unsigned bits) noexcept {
  const std::uint64_t quad = (std::uint64_t{1} << (4 * bits)) - 1;
  const std::uint64_t pair = ((std::uint64_t{1} << (2 * bits)) - 1) * 0x0000000100000001ull;
  const std::uint64_t one = ((std::uint64_t{1} << bits) - 1) * 0x0001000100010001ull;
  w = (w & quad) | ((w >> (4 * bits)) & quad) << 32;
  w = (w & pair) | ((w >> (2 * bits)) & pair) << 16;
  return (w & one) | ((w >> bits) & one) << 8;
}

#if CHORUS_FLOAT16_X86_DISPATCH
__attribute__((target("avx"))) inline __m256 unfused(__m256 v) noexcept {
  __asm__("" : "+x"(v));
  return v;
}
__attribute__((target("avx"))) inline __m256d unfused(__m256d v) noexcept {
  __asm__("" : "+x"(v));
  return v;
}

/// `stochastic_levels::code` for the 8 floats at `x` with the uniforms `u0` (the first 4)
/// and `u1`, as 8 bytes, the first lowest. The same operations lane by lane: `vcvtpd2ps`
/// rounds the uniform to float as the cast does (a uniform just below 1 can round to 1),
/// `vroundps` toward -inf is `floor`, `vmaxps` with 0 turns a NaN into level 0 (it returns
/// its second operand when the first is a NaN) and `vminps` clamps to the top level.
__attribute__((target("avx2"))) inline std::uint64_t level_codes8(const float* x, __m256d u0,
                                                                  __m256d u1, float inv,
                                                                  float top) noexcept {
  const __m256 u = _mm256_set_m128(_mm256_cvtpd_ps(u1), _mm256_cvtpd_ps(u0));
  const __m256 v = _mm256_loadu_ps(x);
  const __m256 zero = _mm256_setzero_ps();
  const __m256 neg = _mm256_cmp_ps(v, zero, _CMP_LT_OQ);  // x < 0: false for every NaN
  const __m256 a = _mm256_xor_ps(v, _mm256_and_ps(neg, _mm256_set1_ps(-0.0f)));
  const __m256 f =
      _mm256_floor_ps(_mm256_add_ps(unfused(_mm256_mul_ps(a, _mm256_set1_ps(inv))), u));
  const __m256 level = _mm256_min_ps(_mm256_max_ps(f, zero), _mm256_set1_ps(top));
  const __m256i code = _mm256_or_si256(_mm256_slli_epi32(_mm256_cvttps_epi32(level), 1),
                                       _mm256_srli_epi32(_mm256_castps_si256(neg), 31));
  // the low byte of each 32-bit lane, 4 per 128-bit half
  const __m256i bytes = _mm256_shuffle_epi8(
      code, _mm256_setr_epi8(0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, 0, 4, 8,
                             12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1));
  return static_cast<std::uint32_t>(_mm256_cvtsi256_si32(bytes)) |
         std::uint64_t{static_cast<std::uint32_t>(_mm256_extract_epi32(bytes, 4))} << 32;
}

/// `level_codes8` for 4 doubles, as 4 bytes.
__attribute__((target("avx2"))) inline std::uint32_t level_codes4(const double* x, __m256d u,
                                                                  double inv, double top) noexcept {
  const __m256d v = _mm256_loadu_pd(x);
  const __m256d zero = _mm256_setzero_pd();
  const __m256d neg = _mm256_cmp_pd(v, zero, _CMP_LT_OQ);
  const __m256d a = _mm256_xor_pd(v, _mm256_and_pd(neg, _mm256_set1_pd(-0.0)));
  const __m256d f =
      _mm256_floor_pd(_mm256_add_pd(unfused(_mm256_mul_pd(a, _mm256_set1_pd(inv))), u));
  const __m256d level = _mm256_min_pd(_mm256_max_pd(f, zero), _mm256_set1_pd(top));
  // the sign from the high half of each 64-bit mask lane, next to the 32-bit levels
  const __m128i sign =
      _mm_srli_epi32(_mm256_castsi256_si128(_mm256_permutevar8x32_epi32(
                         _mm256_castpd_si256(neg), _mm256_setr_epi32(1, 3, 5, 7, 1, 3, 5, 7))),
                     31);
  const __m128i code = _mm_or_si128(_mm_slli_epi32(_mm256_cvttpd_epi32(level), 1), sign);
  return static_cast<std::uint32_t>(_mm_cvtsi128_si32(_mm_shuffle_epi8(
      code, _mm_setr_epi8(0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1))));
}
__attribute__((target("avx2"))) inline std::uint64_t level_codes8(const double* x, __m256d u0,
                                                                  __m256d u1, double inv,
                                                                  double top) noexcept {
  return level_codes4(x, u0, inv, top) | std::uint64_t{level_codes4(x + 4, u1, inv, top)} << 32;
}

// The encode kernels below stop at least 32 elements short of the end: each store writes 8
// bytes of which only `bits` are its own (8 codes of `bits` bits), and 32 codes of at least
// 2 bits fill at least 8 bytes, so no store passes the end of the wire. Each returns where
// it stopped, a multiple of 8, where the packed codes end on a byte boundary.

CHORUS_AVX512_BEGIN
__attribute__((target("avx512f"))) inline __m512 unfused(__m512 v) noexcept {
  __asm__("" : "+v"(v));
  return v;
}
__attribute__((target("avx512f"))) inline __m512d unfused(__m512d v) noexcept {
  __asm__("" : "+v"(v));
  return v;
}

/// `level_codes8` for 16 floats with AVX-512 (`u0`: the first 8 uniforms), as 16 bytes:
/// the same operations, the sign as a mask, and the codes narrowed to bytes by `vpmovdb`.
__attribute__((target("avx512f,avx512dq"))) inline __m128i level_codes16_avx512(
    const float* x, __m512d u0, __m512d u1, float inv, float top) noexcept {
  const __m512 u =
      _mm512_insertf32x8(_mm512_castps256_ps512(_mm512_cvtpd_ps(u0)), _mm512_cvtpd_ps(u1), 1);
  const __m512 v = _mm512_loadu_ps(x);
  const __m512 zero = _mm512_setzero_ps();
  const __mmask16 neg = _mm512_cmp_ps_mask(v, zero, _CMP_LT_OQ);
  const __m512 a = _mm512_mask_xor_ps(v, neg, v, _mm512_set1_ps(-0.0f));
  const __m512 f =
      _mm512_floor_ps(_mm512_add_ps(unfused(_mm512_mul_ps(a, _mm512_set1_ps(inv))), u));
  const __m512 level = _mm512_min_ps(_mm512_max_ps(f, zero), _mm512_set1_ps(top));
  const __m512i shifted = _mm512_slli_epi32(_mm512_cvttps_epi32(level), 1);
  return _mm512_cvtepi32_epi8(_mm512_mask_or_epi32(shifted, neg, shifted, _mm512_set1_epi32(1)));
}

/// `level_codes8` for 8 doubles with AVX-512, as 8 bytes.
__attribute__((target("avx512f,avx512dq"))) inline std::uint64_t level_codes8_avx512(
    const double* x, __m512d u, double inv, double top) noexcept {
  const __m512d v = _mm512_loadu_pd(x);
  const __m512d zero = _mm512_setzero_pd();
  const __mmask8 neg = _mm512_cmp_pd_mask(v, zero, _CMP_LT_OQ);
  const __m512d a = _mm512_mask_xor_pd(v, neg, v, _mm512_set1_pd(-0.0));
  const __m512d f =
      _mm512_floor_pd(_mm512_add_pd(unfused(_mm512_mul_pd(a, _mm512_set1_pd(inv))), u));
  const __m512d level = _mm512_min_pd(_mm512_max_pd(f, zero), _mm512_set1_pd(top));
  const __m512i shifted = _mm512_slli_epi64(_mm512_cvttpd_epi64(level), 1);
  return static_cast<std::uint64_t>(_mm_cvtsi128_si64(
      _mm512_cvtepi64_epi8(_mm512_mask_or_epi64(shifted, neg, shifted, _mm512_set1_epi64(1)))));
}

/// `stochastic_levels::encode`'s codes with the AVX-512 draws, packed `bits` wide into
/// `out` by `pext` (8 codes, one per byte, into 8 bits-wide fields), 16 floats or 8
/// doubles per step. The float kernel's second store reaches 8 codes further, so it stops
/// 40 elements short of the end.
template <class T>
__attribute__((target("avx512f,avx512dq,bmi2"))) inline std::size_t stochastic_codes_avx512(
    const T* x, std::size_t n, T inv, T top, unsigned bits, std::uint64_t key,
    std::byte* out) noexcept {
  const __m512i vkey = _mm512_set1_epi64(static_cast<long long>(key));
  const std::uint64_t fields = ((std::uint64_t{1} << bits) - 1) * 0x0101010101010101ull;
  __m512i z = counters_avx512(0, key);
  std::size_t i = 0;
  if constexpr (std::is_same_v<T, float>) {
    for (; i + 40 <= n; i += 16) {
      const __m512d u0 = uniform8_avx512(z, vkey);
      const __m512d u1 = uniform8_avx512(_mm512_add_epi64(z, counter_steps_avx512()), vkey);
      z = _mm512_add_epi64(z, _mm512_add_epi64(counter_steps_avx512(), counter_steps_avx512()));
      const __m128i codes = level_codes16_avx512(x + i, u0, u1, inv, top);
      const std::uint64_t lo =
          _pext_u64(static_cast<std::uint64_t>(_mm_cvtsi128_si64(codes)), fields);
      const std::uint64_t hi =
          _pext_u64(static_cast<std::uint64_t>(_mm_extract_epi64(codes, 1)), fields);
      std::memcpy(out, &lo, sizeof(lo));
      std::memcpy(out + bits, &hi, sizeof(hi));
      out += 2 * bits;
    }
  } else {
    for (; i + 32 <= n; i += 8) {
      const __m512d u = uniform8_avx512(z, vkey);
      z = _mm512_add_epi64(z, counter_steps_avx512());
      const std::uint64_t packed = _pext_u64(level_codes8_avx512(x + i, u, inv, top), fields);
      std::memcpy(out, &packed, sizeof(packed));
      out += bits;
    }
  }
  return i;
}

CHORUS_AVX512_END

/// `stochastic_codes_avx512` with the AVX2 draws.
template <class T>
__attribute__((target("avx2"))) inline std::size_t stochastic_codes_avx2(const T* x, std::size_t n,
                                                                         T inv, T top,
                                                                         unsigned bits,
                                                                         std::uint64_t key,
                                                                         std::byte* out) noexcept {
  const __m256i vkey = _mm256_set1_epi64x(static_cast<long long>(key));
  const __m256i four = _mm256_set1_epi64x(static_cast<long long>(4 * counter_stride));
  __m256i z = counters_avx2(0, key);
  std::size_t i = 0;
  for (; i + 32 <= n; i += 8) {
    const __m256d u0 = uniform4_avx2(z, vkey);
    const __m256d u1 = uniform4_avx2(_mm256_add_epi64(z, four), vkey);
    z = _mm256_add_epi64(z, _mm256_add_epi64(four, four));
    const std::uint64_t packed = pack_codes8(level_codes8(x + i, u0, u1, inv, top), bits);
    std::memcpy(out, &packed, sizeof(packed));
    out += bits;
  }
  return i;
}

/// y += the 8 decoded values of the codes in the bytes of `codes`: level * step with the
/// sign bit flipped when the code's sign is set (what `-mag` does), then one add.
__attribute__((target("avx2"))) inline void add_levels8(float* y, std::uint64_t codes,
                                                        float step) noexcept {
  const __m256i code = _mm256_cvtepu8_epi32(_mm_cvtsi64_si128(static_cast<long long>(codes)));
  const __m256 mag =
      unfused(_mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_srli_epi32(code, 1)), _mm256_set1_ps(step)));
  const __m256 sign = _mm256_castsi256_ps(_mm256_slli_epi32(code, 31));
  _mm256_storeu_ps(y, _mm256_add_ps(_mm256_loadu_ps(y), _mm256_xor_ps(mag, sign)));
}
__attribute__((target("avx2"))) inline void add_levels8(double* y, std::uint64_t codes,
                                                        double step) noexcept {
  const __m128i bytes = _mm_cvtsi64_si128(static_cast<long long>(codes));
  for (int half = 0; half < 2; ++half) {
    const __m128i code = _mm_cvtepu8_epi32(half == 0 ? bytes : _mm_srli_epi64(bytes, 32));
    const __m256d mag =
        unfused(_mm256_mul_pd(_mm256_cvtepi32_pd(_mm_srli_epi32(code, 1)), _mm256_set1_pd(step)));
    const __m256d sign = _mm256_castsi256_pd(_mm256_slli_epi64(_mm256_cvtepu32_epi64(code), 63));
    _mm256_storeu_pd(y + 4 * half,
                     _mm256_add_pd(_mm256_loadu_pd(y + 4 * half), _mm256_xor_pd(mag, sign)));
  }
}

/// `stochastic_levels::decode_add` with AVX2, 8 elements (`bits` bytes) per step; stops 32
/// elements short of the end, so that its 8-byte loads stay inside the wire, and returns
/// where it stopped (a multiple of 8).
template <class T>
__attribute__((target("avx2"))) inline std::size_t stochastic_decode_avx2(const std::byte* in, T* y,
                                                                          std::size_t n,
                                                                          unsigned bits,
                                                                          T step) noexcept {
  std::size_t i = 0;
  for (; i + 32 <= n; i += 8) {
    std::uint64_t w;
    std::memcpy(&w, in, sizeof(w));
    in += bits;
    add_levels8(y + i, unpack_codes8(w, bits), step);
  }
  return i;
}
#endif

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
    const std::size_t n = x.size();
    const draw_kernel kernel = draw_kernel_now();
    T scale = 0;
    if constexpr (MaxNorm) {
      scale = abs_max(x.data(), n, kernel != draw_kernel::scalar);
    } else {
      // One element after the other: the float sum's rounding depends on its order, so no
      // faster order gives the same norm. This loop, one add's latency per element, takes
      // half of QSGD's encode time (docs/performance.md).
      T sq = 0;
      for (const T v : x) sq += v * v;
      scale = std::sqrt(sq);
    }
    wire_writer out(wire);
    out.put<T>(scale);
    const unsigned b = bits_for(levels);
    const counter_rng rng(key);
    const T top = static_cast<T>(levels);
    const T inv = scale > 0 ? top / scale : T(0);
    std::size_t i = 0;
#if CHORUS_FLOAT16_X86_DISPATCH
    if (kernel == draw_kernel::avx512) {
      i = stochastic_codes_avx512(x.data(), n, inv, top, b, rng.key(), out.position());
    } else if (kernel == draw_kernel::avx2) {
      i = stochastic_codes_avx2(x.data(), n, inv, top, b, rng.key(), out.position());
    }
#endif
    // The kernels stop at a multiple of 8 elements, where the codes end on a byte boundary.
    bit_packer packer(out.position() + i / 8 * b, b);
    for (; i < n; ++i) packer.put(code(x[i], inv, top, levels, rng.uniform(i)));
    packer.flush();
  }

  /// The code of one element: (level << 1) | sign, where level = floor(|x| inv + u) at most
  /// `levels` (rounding at |x| == scale can reach levels + 1), 0 where that is NaN, and the
  /// sign is x < 0. `top` is `levels` as a T.
  template <class T>
  static std::uint64_t code(T x, T inv, T top, unsigned levels, double u) noexcept {
    const T a = x < 0 ? -x : x;
    const T f = std::floor(unfused(a * inv) + static_cast<T>(u));
    const std::uint64_t level = f >= T(0) ? (f < top ? static_cast<std::uint64_t>(f) : levels) : 0;
    return (level << 1) | (x < 0 ? 1u : 0u);
  }

  template <class T>
  static void decode_add(std::span<const std::byte> wire, std::span<T> y, unsigned levels) {
    check_wire(name, wire.size(), bytes<T>(y.size(), levels));
    wire_reader in(wire);
    const T scale = in.get<T>();
    const T step = scale / static_cast<T>(levels);
    const unsigned b = bits_for(levels);
    std::size_t i = 0;
#if CHORUS_FLOAT16_X86_DISPATCH
    if (vector_codecs()) i = stochastic_decode_avx2(in.position(), y.data(), y.size(), b, step);
#endif
    // The kernel stops at a multiple of 8 elements, where the codes start on a byte boundary.
    const std::size_t done = i / 8 * b;
    bit_unpacker codes(in.position() + done, ceil_div(y.size() * b, 8) - done, b);
    for (; i < y.size(); ++i) {
      const std::uint64_t c = codes.get();
      const T mag = unfused(static_cast<T>(c >> 1) * step);
      y[i] += (c & 1u) ? -mag : mag;
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

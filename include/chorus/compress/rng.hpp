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
///
/// Because no element depends on the one before, consecutive counters are drawn 8 (AVX-512)
/// or 4 (AVX2) at a time with the very same bits: `counter_rng::uniforms` fills a run of
/// them, and the stochastic codecs call the vector draws below from their own kernels.
#include <chorus/core/float16.hpp>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <span>

/// Around the AVX-512 kernels: GCC 12.2 (Debian 12's) warns that the AVX-512 intrinsics
/// read an uninitialised variable, wrongly. Many build their unused merge operand with
/// `_mm512_undefined_*`, a variable initialised with itself; the warning names the
/// outermost function they are inlined into, so the whole kernel sits between these.
#if defined(__GNUC__) && !defined(__clang__)
#define CHORUS_AVX512_BEGIN                                                            \
  _Pragma("GCC diagnostic push") _Pragma("GCC diagnostic ignored \"-Wuninitialized\"") \
      _Pragma("GCC diagnostic ignored \"-Wmaybe-uninitialized\"")
#define CHORUS_AVX512_END _Pragma("GCC diagnostic pop")
#else
#define CHORUS_AVX512_BEGIN
#define CHORUS_AVX512_END
#endif

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

namespace detail {

/// The odd constant that spreads consecutive counters before the first mix (2^64 / phi).
inline constexpr std::uint64_t counter_stride = 0x9e3779b97f4a7c15ull;

/// The instructions the stochastic codecs' draws run on, narrowest first.
enum class draw_kernel { scalar, avx2, avx512 };

/// Whether the CPU and the operating system offer what the AVX-512 kernels use: AVX-512 F
/// (the 512-bit registers) and DQ (`vpmullq`, the 64-bit multiply the mix needs, and
/// `vcvtuqq2pd`), with the OS saving the opmask and zmm state (XCR0 bits 5-7), and BMI2
/// (`pext`, which packs the quantisers' codes; every CPU with AVX-512 has it and runs it
/// fast, unlike the AMD CPUs before Zen 3, which have AVX2 only).
inline bool detect_avx512_draws() noexcept {
#if CHORUS_FLOAT16_X86_DISPATCH
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (__get_cpuid(1, &a, &b, &c, &d) == 0 || ((c >> 27) & 1u) == 0) return false;  // OSXSAVE
  unsigned xcr0 = 0, xcr0_high = 0;
  __asm__ volatile("xgetbv" : "=a"(xcr0), "=d"(xcr0_high) : "c"(0u));
  if ((xcr0 & 0xe6u) != 0xe6u) return false;
  if (__get_cpuid_count(7, 0, &a, &b, &c, &d) == 0) return false;
  return ((b >> 16) & 1u) != 0 && ((b >> 17) & 1u) != 0 && ((b >> 8) & 1u) != 0;
#else
  return false;
#endif
}

/// The widest draw kernel allowed (the tests lower it to reach the AVX2 path on a CPU that
/// has AVX-512); `set_vector_conversions(false)` forces the scalar loops below it. Read and
/// written relaxed: it is a setting, not a handshake, and a call that sees either value
/// writes the same bits.
inline std::atomic<draw_kernel>& widest_draw_kernel() noexcept {
  static std::atomic<draw_kernel> widest{draw_kernel::avx512};
  return widest;
}

/// The kernel the stochastic codecs draw with now: the widest the CPU offers, within
/// `widest_draw_kernel` and the vector switch. Every kernel gives the same bits.
inline draw_kernel draw_kernel_now() noexcept {
#if CHORUS_FLOAT16_X86_DISPATCH
  if (!vector_conversions() || !chorus::detail::cpu_float16().avx2) return draw_kernel::scalar;
  static const bool avx512 = detect_avx512_draws();
  const draw_kernel widest = widest_draw_kernel().load(std::memory_order_relaxed);
  if (widest == draw_kernel::avx512 && !avx512) return draw_kernel::avx2;
  return widest;
#else
  return draw_kernel::scalar;
#endif
}

}  // namespace detail

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
    return mix64(mix64(i * detail::counter_stride + key_) ^ key_);
  }

  /// A double uniform in [0, 1) with 53 random bits, for counter `i`.
  [[nodiscard]] constexpr double uniform(std::uint64_t i) const noexcept {
    return static_cast<double>(bits(i) >> 11) * 0x1.0p-53;
  }

  /// `out[j] = uniform(first + j)` for every j, with the vector draws where the CPU has
  /// them (the same bits as the element-wise form).
  void uniforms(std::uint64_t first, std::span<double> out) const noexcept;

  /// The mixed key every draw starts from (what the vector draws broadcast).
  [[nodiscard]] constexpr std::uint64_t key() const noexcept { return key_; }

 private:
  std::uint64_t key_;
};

#if CHORUS_FLOAT16_X86_DISPATCH
namespace detail {

// ---- AVX-512: 8 counters per vector ------------------------------------------------------
CHORUS_AVX512_BEGIN

/// `mix64` on 8 lanes: `vpmullq` is the 64-bit multiply's low half, as `*` on uint64_t.
__attribute__((target("avx512f,avx512dq"))) inline __m512i mix64_avx512(__m512i z) noexcept {
  z = _mm512_xor_si512(z, _mm512_srli_epi64(z, 30));
  z = _mm512_mullo_epi64(z, _mm512_set1_epi64(static_cast<long long>(0xbf58476d1ce4e5b9ull)));
  z = _mm512_xor_si512(z, _mm512_srli_epi64(z, 27));
  z = _mm512_mullo_epi64(z, _mm512_set1_epi64(static_cast<long long>(0x94d049bb133111ebull)));
  return _mm512_xor_si512(z, _mm512_srli_epi64(z, 31));
}

/// The first mix's inputs `i * counter_stride + key` for the counters first .. first + 7;
/// adding `counter_steps_avx512()` moves them 8 counters on (the products are modulo 2^64,
/// so (i + 8) * stride = i * stride + 8 * stride exactly).
__attribute__((target("avx512f,avx512dq"))) inline __m512i counters_avx512(
    std::uint64_t first, std::uint64_t key) noexcept {
  const __m512i lane = _mm512_setr_epi64(0, 1, 2, 3, 4, 5, 6, 7);
  return _mm512_add_epi64(
      _mm512_set1_epi64(static_cast<long long>(first * counter_stride + key)),
      _mm512_mullo_epi64(lane, _mm512_set1_epi64(static_cast<long long>(counter_stride))));
}
__attribute__((target("avx512f,avx512dq"))) inline __m512i counter_steps_avx512() noexcept {
  return _mm512_set1_epi64(static_cast<long long>(8 * counter_stride));
}

/// `uniform` for the 8 counters whose first-mix inputs are `z`: `vcvtuqq2pd` converts the
/// 53-bit integers exactly, and the scaling by 2^-53 is exact too.
__attribute__((target("avx512f,avx512dq"))) inline __m512d uniform8_avx512(__m512i z,
                                                                           __m512i key) noexcept {
  const __m512i b = mix64_avx512(_mm512_xor_si512(mix64_avx512(z), key));
  return _mm512_mul_pd(_mm512_cvtepu64_pd(_mm512_srli_epi64(b, 11)), _mm512_set1_pd(0x1.0p-53));
}

CHORUS_AVX512_END

// ---- AVX2: 4 counters per vector ---------------------------------------------------------

/// The low 64 bits of z * c per lane from 32 x 32 -> 64-bit multiplies: lo(z) lo(c) plus
/// (hi(z) lo(c) + lo(z) hi(c)) << 32; the hi(z) hi(c) term lies wholly above bit 63.
__attribute__((target("avx2"))) inline __m256i mullo64_avx2(__m256i z, std::uint64_t c) noexcept {
  const __m256i c_lo = _mm256_set1_epi64x(static_cast<long long>(c & 0xffffffffull));
  const __m256i c_hi = _mm256_set1_epi64x(static_cast<long long>(c >> 32));
  const __m256i cross =
      _mm256_add_epi64(_mm256_mul_epu32(_mm256_srli_epi64(z, 32), c_lo), _mm256_mul_epu32(z, c_hi));
  return _mm256_add_epi64(_mm256_mul_epu32(z, c_lo), _mm256_slli_epi64(cross, 32));
}

__attribute__((target("avx2"))) inline __m256i mix64_avx2(__m256i z) noexcept {
  z = _mm256_xor_si256(z, _mm256_srli_epi64(z, 30));
  z = mullo64_avx2(z, 0xbf58476d1ce4e5b9ull);
  z = _mm256_xor_si256(z, _mm256_srli_epi64(z, 27));
  z = mullo64_avx2(z, 0x94d049bb133111ebull);
  return _mm256_xor_si256(z, _mm256_srli_epi64(z, 31));
}

/// The first mix's inputs for the counters first .. first + 3 (see `counters_avx512`).
__attribute__((target("avx2"))) inline __m256i counters_avx2(std::uint64_t first,
                                                             std::uint64_t key) noexcept {
  const std::uint64_t z = first * counter_stride + key;
  return _mm256_setr_epi64x(static_cast<long long>(z), static_cast<long long>(z + counter_stride),
                            static_cast<long long>(z + 2 * counter_stride),
                            static_cast<long long>(z + 3 * counter_stride));
}

/// `uniform` for 4 counters. AVX2 has no 64-bit integer to double conversion; the 53-bit
/// integer v = hi 2^32 + lo is split so that each half lands in a double's significand
/// by bit pattern alone: 2^52 + lo and 2^84 + hi 2^32. Then
/// (2^84 + hi 2^32) - (2^84 + 2^52) = hi 2^32 - 2^52 and adding 2^52 + lo gives v, both
/// steps exact (each result is a multiple of a power of two that fits 53 bits), so the
/// double is v itself, as `vcvtuqq2pd` or `static_cast<double>` give.
__attribute__((target("avx2"))) inline __m256d uniform4_avx2(__m256i z, __m256i key) noexcept {
  const __m256i v = _mm256_srli_epi64(mix64_avx2(_mm256_xor_si256(mix64_avx2(z), key)), 11);
  const __m256i lo = _mm256_blend_epi32(v, _mm256_set1_epi64x(0x4330000000000000ll), 0xaa);
  const __m256i hi =
      _mm256_or_si256(_mm256_srli_epi64(v, 32), _mm256_set1_epi64x(0x4530000000000000ll));
  const __m256d high = _mm256_sub_pd(_mm256_castsi256_pd(hi), _mm256_set1_pd(0x1.00000001p84));
  return _mm256_mul_pd(_mm256_add_pd(high, _mm256_castsi256_pd(lo)), _mm256_set1_pd(0x1.0p-53));
}

/// `counter_rng::uniforms` for the whole vectors of 8 in `out[0, n)`; the caller draws the
/// rest.
CHORUS_AVX512_BEGIN
__attribute__((target("avx512f,avx512dq"))) inline void uniforms_avx512(std::uint64_t key,
                                                                        std::uint64_t first,
                                                                        double* out,
                                                                        std::size_t n) noexcept {
  const __m512i k = _mm512_set1_epi64(static_cast<long long>(key));
  __m512i z = counters_avx512(first, key);
  for (std::size_t j = 0; j + 8 <= n; j += 8) {
    _mm512_storeu_pd(out + j, uniform8_avx512(z, k));
    z = _mm512_add_epi64(z, counter_steps_avx512());
  }
}
CHORUS_AVX512_END

/// `uniforms_avx512` with AVX2, 4 at a time.
__attribute__((target("avx2"))) inline void uniforms_avx2(std::uint64_t key, std::uint64_t first,
                                                          double* out, std::size_t n) noexcept {
  const __m256i k = _mm256_set1_epi64x(static_cast<long long>(key));
  const __m256i four = _mm256_set1_epi64x(static_cast<long long>(4 * counter_stride));
  __m256i z = counters_avx2(first, key);
  for (std::size_t j = 0; j + 4 <= n; j += 4) {
    _mm256_storeu_pd(out + j, uniform4_avx2(z, k));
    z = _mm256_add_epi64(z, four);
  }
}

}  // namespace detail
#endif  // CHORUS_FLOAT16_X86_DISPATCH

inline void counter_rng::uniforms(std::uint64_t first, std::span<double> out) const noexcept {
  std::size_t j = 0;
#if CHORUS_FLOAT16_X86_DISPATCH
  switch (detail::draw_kernel_now()) {
    case detail::draw_kernel::avx512:
      detail::uniforms_avx512(key_, first, out.data(), out.size());
      j = out.size() / 8 * 8;
      break;
    case detail::draw_kernel::avx2:
      detail::uniforms_avx2(key_, first, out.data(), out.size());
      j = out.size() / 4 * 4;
      break;
    case detail::draw_kernel::scalar:
      break;
  }
#endif
  for (; j < out.size(); ++j) out[j] = uniform(first + j);
}

}  // namespace chorus::inline v0::compress

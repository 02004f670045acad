#pragma once
/// \file
/// Bulk conversion between float arrays and the 16-bit floats `chorus::half` and
/// `chorus::bfloat16`, bit-identical to the element-wise conversions of
/// `<chorus/core/types.hpp>` (round to nearest even; every NaN to the same quiet NaN the
/// scalar code makes; subnormals, infinities and overflow alike).
///
/// On x86 the library picks at run time, once, the vector instructions the CPU has: F16C
/// (`vcvtps2ph` / `vcvtph2ps`, 8 lanes) for `half`, AVX2 integer rounding (16 lanes) for
/// `bfloat16`. The functions carrying them are compiled with `target` attributes, so the
/// headers need no `-mf16c` / `-mavx2` and still run on CPUs without them; elsewhere (other
/// architectures, other compilers) the scalar loops run.
///
/// They serve the 16-bit reductions (`detail::reduce_float16`: sum and product of half and
/// bfloat16 vectors, converted in blocks, combined in float, rounded back) and the
/// compression codecs (`compress::cast`).
///
/// The vector paths can be switched off for a whole process with the environment variable
/// `CHORUS_FLOAT16_SCALAR=1` (read once, at the first conversion) or from code with
/// `set_vector_conversions(false)`; the results are the same bits either way, so the switch
/// exists to test the fallback and to compare speed.
///
/// Throughput (bench/micro/compress_codecs.cpp, docs/compression.md): encoding 64 MiB of
/// float runs faster than a memcpy of the same bytes with either vector path.
#include <chorus/core/types.hpp>

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <type_traits>

/// 1 where the x86 vector paths are compiled in (x86 with GCC or Clang); define it to 0
/// before including to build the scalar loops only.
#ifndef CHORUS_FLOAT16_X86_DISPATCH
#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define CHORUS_FLOAT16_X86_DISPATCH 1
#else
#define CHORUS_FLOAT16_X86_DISPATCH 0
#endif
#endif
#if CHORUS_FLOAT16_X86_DISPATCH
#include <cpuid.h>
#include <immintrin.h>
#endif

namespace chorus::inline v0 {

/// The instructions a bulk 16-bit float conversion runs on.
enum class float16_kernel { scalar, f16c, avx2 };

namespace detail {

/// What the CPU offers, asked once with `cpuid` (GCC's and Clang's `__builtin_cpu_supports`
/// do not agree on the feature names: Clang before 16 has no "f16c"). AVX counts only when
/// the operating system saves the 256-bit registers (OSXSAVE and XCR0 bits 1-2).
struct float16_cpu {
  bool f16c = false;
  bool avx2 = false;
};

inline float16_cpu detect_float16_cpu() noexcept {
  float16_cpu c;
#if CHORUS_FLOAT16_X86_DISPATCH
  unsigned a = 0, b = 0, ecx = 0, d = 0;
  if (__get_cpuid(1, &a, &b, &ecx, &d) == 0) return c;
  const bool osxsave = (ecx >> 27) & 1u, avx = (ecx >> 28) & 1u, f16c = (ecx >> 29) & 1u;
  if (!osxsave || !avx) return c;
  unsigned xcr0 = 0, xcr0_high = 0;
  __asm__ volatile("xgetbv" : "=a"(xcr0), "=d"(xcr0_high) : "c"(0u));
  if ((xcr0 & 0x6u) != 0x6u) return c;  // XMM and YMM state not enabled by the OS
  c.f16c = f16c;
  if (__get_cpuid_count(7, 0, &a, &b, &ecx, &d) != 0) c.avx2 = (b >> 5) & 1u;
#endif
  return c;
}

inline const float16_cpu& cpu_float16() noexcept {
  static const float16_cpu c = detect_float16_cpu();
  return c;
}

/// 1: vector paths allowed; 0: scalar only. Starts from CHORUS_FLOAT16_SCALAR.
inline std::atomic<bool>& vector_conversion_switch() noexcept {
  static std::atomic<bool> on{[] {
    const char* e = std::getenv("CHORUS_FLOAT16_SCALAR");
    return e == nullptr || *e == '\0' || std::strcmp(e, "0") == 0;
  }()};
  return on;
}

// ---- scalar loops (the reference; also the tails of the vector loops) --------------------

inline void float_to_half_scalar(const float* in, std::byte* out, std::size_t n) noexcept {
  for (std::size_t i = 0; i < n; ++i) {
    const std::uint16_t h = chorus::detail::float_to_half_bits(in[i]);
    std::memcpy(out + 2 * i, &h, 2);
  }
}

inline void half_to_float_scalar(const std::byte* in, float* out, std::size_t n) noexcept {
  for (std::size_t i = 0; i < n; ++i) {
    std::uint16_t h;
    std::memcpy(&h, in + 2 * i, 2);
    out[i] = chorus::detail::half_bits_to_float(h);
  }
}

/// The same rounding as `float_to_bfloat16_bits`, written without a branch so that
/// compilers vectorise it where no explicit vector path exists.
inline void float_to_bfloat16_scalar(const float* in, std::byte* out, std::size_t n) noexcept {
  for (std::size_t i = 0; i < n; ++i) {
    std::uint32_t x;
    std::memcpy(&x, in + i, 4);
    const std::uint32_t rounded = (x + 0x7fffu + ((x >> 16) & 1u)) >> 16;
    const std::uint32_t quiet_nan = (x >> 16) | 0x40u;
    const auto b =
        static_cast<std::uint16_t>((x & 0x7fffffffu) > 0x7f800000u ? quiet_nan : rounded);
    std::memcpy(out + 2 * i, &b, 2);
  }
}

inline void bfloat16_to_float_scalar(const std::byte* in, float* out, std::size_t n) noexcept {
  for (std::size_t i = 0; i < n; ++i) {
    std::uint16_t b;
    std::memcpy(&b, in + 2 * i, 2);
    const std::uint32_t x = static_cast<std::uint32_t>(b) << 16;
    std::memcpy(out + i, &x, 4);
  }
}

// ---- minimum / maximum on the bit patterns --------------------------------------------------

/// The bits of infinity in `W`; a magnitude above it is a NaN.
template <class W>
inline constexpr std::uint16_t float16_infinity_bits = std::is_same_v<W, half> ? 0x7c00 : 0x7f80;

/// `minimum{}(a, b)` (or `maximum` with `Max`) of two 16-bit floats given as bits, without
/// converting them: a NaN `a` wins, then a NaN `b`, otherwise the smaller (larger) value,
/// `a` on a tie (+0 and -0 tie). IEEE 754 binary formats order like their sign-magnitude
/// bits: read as the integer -magnitude for negative values and +magnitude for positive
/// ones, so the comparison is the float comparison, and the result is one of the inputs'
/// bits, as with the element-wise ops.
template <bool Max>
constexpr std::uint16_t select_float16_bits(std::uint16_t a, std::uint16_t b,
                                            std::uint16_t infinity) noexcept {
  const int ma = a & 0x7fff, mb = b & 0x7fff;
  if (ma > infinity) return a;
  if (mb > infinity) return b;
  const int ka = (a & 0x8000) != 0 ? -ma : ma, kb = (b & 0x8000) != 0 ? -mb : mb;
  return (Max ? ka < kb : kb < ka) ? b : a;
}

template <bool Max>
inline void select_float16_scalar(const std::byte* a, const std::byte* b, std::byte* dst,
                                  std::size_t n, std::uint16_t infinity) noexcept {
  for (std::size_t i = 0; i < n; ++i) {
    std::uint16_t x, y;
    std::memcpy(&x, a + 2 * i, 2);
    std::memcpy(&y, b + 2 * i, 2);
    const std::uint16_t r = select_float16_bits<Max>(x, y, infinity);
    std::memcpy(dst + 2 * i, &r, 2);
  }
}

#if CHORUS_FLOAT16_X86_DISPATCH

// ---- half: F16C ---------------------------------------------------------------------------

/// 8 floats to 8 halves with `vcvtps2ph` (round to nearest even, exact subnormals and
/// overflow), then every NaN lane replaced by sign | 0x7e00 as the scalar code does (the
/// instruction would keep the top payload bits).
__attribute__((target("avx,f16c"))) inline __m128i float_to_half_8(__m256 v) noexcept {
  const __m128i h = _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m128i magnitude = _mm_and_si128(h, _mm_set1_epi16(0x7fff));
  const __m128i nan = _mm_cmpgt_epi16(magnitude, _mm_set1_epi16(0x7c00));  // both sides >= 0
  const __m128i quiet =
      _mm_or_si128(_mm_and_si128(h, _mm_set1_epi16(-0x8000)), _mm_set1_epi16(0x7e00));
  return _mm_or_si128(_mm_andnot_si128(nan, h), _mm_and_si128(nan, quiet));
}

__attribute__((target("avx,f16c"))) inline void float_to_half_f16c(const float* in, std::byte* out,
                                                                   std::size_t n) noexcept {
  std::size_t i = 0;
  for (; i + 16 <= n; i += 16) {  // two independent conversions per step
    const __m128i a = float_to_half_8(_mm256_loadu_ps(in + i));
    const __m128i b = float_to_half_8(_mm256_loadu_ps(in + i + 8));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + 2 * i), a);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + 2 * i + 16), b);
  }
  if (i + 8 <= n) {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + 2 * i),
                     float_to_half_8(_mm256_loadu_ps(in + i)));
    i += 8;
  }
  float_to_half_scalar(in + i, out + 2 * i, n - i);
}

/// 8 halves to 8 floats with `vcvtph2ps` (exact), then the quiet bit cleared again in
/// lanes that held a signalling NaN: the scalar code keeps NaN payloads as they are.
__attribute__((target("avx,f16c"))) inline __m256 half_to_float_8(__m128i h) noexcept {
  const __m256 f = _mm256_cvtph_ps(h);
  const __m128i magnitude = _mm_and_si128(h, _mm_set1_epi16(0x7fff));
  const __m128i nan = _mm_cmpgt_epi16(magnitude, _mm_set1_epi16(0x7c00));
  const __m128i quiet_bit = _mm_and_si128(h, _mm_set1_epi16(0x0200));
  const __m128i signalling =
      _mm_andnot_si128(_mm_cmpeq_epi16(quiet_bit, _mm_set1_epi16(0x0200)), nan);
  // widen the 16-bit lane mask to 32-bit lanes (AVX has no 256-bit integer ops)
  const __m256i wide =
      _mm256_insertf128_si256(_mm256_castsi128_si256(_mm_unpacklo_epi16(signalling, signalling)),
                              _mm_unpackhi_epi16(signalling, signalling), 1);
  const __m256 clear =
      _mm256_and_ps(_mm256_castsi256_ps(wide), _mm256_castsi256_ps(_mm256_set1_epi32(0x00400000)));
  return _mm256_andnot_ps(clear, f);
}

__attribute__((target("avx,f16c"))) inline void half_to_float_f16c(const std::byte* in, float* out,
                                                                   std::size_t n) noexcept {
  std::size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m128i a = _mm_loadu_si128(reinterpret_cast<const __m128i*>(in + 2 * i));
    const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(in + 2 * i + 16));
    _mm256_storeu_ps(out + i, half_to_float_8(a));
    _mm256_storeu_ps(out + i + 8, half_to_float_8(b));
  }
  if (i + 8 <= n) {
    const __m128i a = _mm_loadu_si128(reinterpret_cast<const __m128i*>(in + 2 * i));
    _mm256_storeu_ps(out + i, half_to_float_8(a));
    i += 8;
  }
  half_to_float_scalar(in + 2 * i, out + i, n - i);
}

// ---- bfloat16: AVX2 -----------------------------------------------------------------------

/// 8 floats to 8 bfloat16 in 32-bit lanes: (x + 0x7fff + lsb) >> 16, NaN lanes x >> 16 | 0x40.
__attribute__((target("avx2"))) inline __m256i float_to_bfloat16_8(__m256i x) noexcept {
  const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(x, 16), _mm256_set1_epi32(1));
  const __m256i rounded =
      _mm256_srli_epi32(_mm256_add_epi32(x, _mm256_add_epi32(lsb, _mm256_set1_epi32(0x7fff))), 16);
  const __m256i quiet = _mm256_or_si256(_mm256_srli_epi32(x, 16), _mm256_set1_epi32(0x40));
  const __m256i magnitude = _mm256_and_si256(x, _mm256_set1_epi32(0x7fffffff));
  const __m256i nan = _mm256_cmpgt_epi32(magnitude, _mm256_set1_epi32(0x7f800000));
  return _mm256_blendv_epi8(rounded, quiet, nan);
}

__attribute__((target("avx2"))) inline void float_to_bfloat16_avx2(const float* in, std::byte* out,
                                                                   std::size_t n) noexcept {
  std::size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m256i a =
        float_to_bfloat16_8(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(in + i)));
    const __m256i b =
        float_to_bfloat16_8(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(in + i + 8)));
    // packus works per 128-bit half: a0-3 b0-3 a4-7 b4-7; the permute restores the order
    const __m256i packed = _mm256_permute4x64_epi64(_mm256_packus_epi32(a, b), 0xd8);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + 2 * i), packed);
  }
  float_to_bfloat16_scalar(in + i, out + 2 * i, n - i);
}

__attribute__((target("avx2"))) inline void bfloat16_to_float_avx2(const std::byte* in, float* out,
                                                                   std::size_t n) noexcept {
  std::size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m256i b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(in + 2 * i));
    const __m256i lo = _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm256_castsi256_si128(b)), 16);
    const __m256i hi = _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm256_extracti128_si256(b, 1)), 16);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i), lo);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i + 8), hi);
  }
  bfloat16_to_float_scalar(in + 2 * i, out + i, n - i);
}

// ---- fused sum / product: widen, combine and round in registers ---------------------------

/// The scalar sum / product (the vector loops' tails): widen one value at a time, combine,
/// round back.
template <bool Multiply>
inline void combine_scalar(const std::byte* a, const std::byte* b, std::byte* dst, std::size_t n,
                           void (*widen)(const std::byte*, float*, std::size_t) noexcept,
                           void (*narrow)(const float*, std::byte*,
                                          std::size_t) noexcept) noexcept {
  for (std::size_t i = 0; i < n; ++i) {
    float x, y;
    widen(a + 2 * i, &x, 1);
    widen(b + 2 * i, &y, 1);
    const float r = Multiply ? x * y : x + y;
    narrow(&r, dst + 2 * i, 1);
  }
}

/// x + y, or x * y with `Multiply`, in 8 float lanes.
template <bool Multiply>
__attribute__((target("avx"))) inline __m256 combine_8(__m256 x, __m256 y) noexcept {
  return Multiply ? _mm256_mul_ps(x, y) : _mm256_add_ps(x, y);
}

/// 8 halves at `p` to 8 floats with `vcvtph2ps` alone (signalling NaNs come out quiet).
__attribute__((target("avx,f16c"))) inline __m256 load_half_8(const std::byte* p) noexcept {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}

/// `dst = a + b` (or `a * b`) for n halves with F16C, 16 per step: no float buffer in between.
/// The inputs are widened by `vcvtph2ps` alone, without `half_to_float_8`'s repair of
/// signalling NaNs: the instruction quiets them, but a NaN result is rounded to
/// sign | 0x7e00 by `float_to_half_8` whatever its payload, and quieting keeps the sign, so
/// the bits are the same (and the repair was most of the kernel's instructions).
template <bool Multiply>
__attribute__((target("avx,f16c"))) inline void combine_half_f16c(const std::byte* a,
                                                                  const std::byte* b,
                                                                  std::byte* dst,
                                                                  std::size_t n) noexcept {
  std::size_t i = 0;
  for (; i + 16 <= n; i += 16) {  // two independent chains per step
    const __m256 r0 = combine_8<Multiply>(load_half_8(a + 2 * i), load_half_8(b + 2 * i));
    const __m256 r1 = combine_8<Multiply>(load_half_8(a + 2 * i + 16), load_half_8(b + 2 * i + 16));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + 2 * i), float_to_half_8(r0));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + 2 * i + 16), float_to_half_8(r1));
  }
  if (i + 8 <= n) {
    _mm_storeu_si128(
        reinterpret_cast<__m128i*>(dst + 2 * i),
        float_to_half_8(combine_8<Multiply>(load_half_8(a + 2 * i), load_half_8(b + 2 * i))));
    i += 8;
  }
  combine_scalar<Multiply>(a + 2 * i, b + 2 * i, dst + 2 * i, n - i, half_to_float_scalar,
                           float_to_half_scalar);
}

/// 8 bfloat16 to 8 floats (exact: the bits move up by 16).
__attribute__((target("avx2"))) inline __m256 bfloat16_to_float_8(__m128i h) noexcept {
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

/// `dst = a + b` (or `a * b`) for n bfloat16 with AVX2, 16 per step.
template <bool Multiply>
__attribute__((target("avx2"))) inline void combine_bfloat16_avx2(const std::byte* a,
                                                                  const std::byte* b,
                                                                  std::byte* dst,
                                                                  std::size_t n) noexcept {
  std::size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m256i va = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a + 2 * i));
    const __m256i vb = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + 2 * i));
    const __m256 lo = combine_8<Multiply>(bfloat16_to_float_8(_mm256_castsi256_si128(va)),
                                          bfloat16_to_float_8(_mm256_castsi256_si128(vb)));
    const __m256 hi = combine_8<Multiply>(bfloat16_to_float_8(_mm256_extracti128_si256(va, 1)),
                                          bfloat16_to_float_8(_mm256_extracti128_si256(vb, 1)));
    const __m256i packed =
        _mm256_permute4x64_epi64(_mm256_packus_epi32(float_to_bfloat16_8(_mm256_castps_si256(lo)),
                                                     float_to_bfloat16_8(_mm256_castps_si256(hi))),
                                 0xd8);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + 2 * i), packed);
  }
  combine_scalar<Multiply>(a + 2 * i, b + 2 * i, dst + 2 * i, n - i, bfloat16_to_float_scalar,
                           float_to_bfloat16_scalar);
}

/// `select_float16_bits` in 16 lanes: integer compares on the sign-magnitude keys and a
/// blend of the inputs' bits.
template <bool Max>
__attribute__((target("avx2"))) inline __m256i select_float16_16(__m256i a, __m256i b,
                                                                 __m256i infinity) noexcept {
  const __m256i magnitude = _mm256_set1_epi16(0x7fff);
  const __m256i ma = _mm256_and_si256(a, magnitude);
  const __m256i mb = _mm256_and_si256(b, magnitude);
  const __m256i nan_a = _mm256_cmpgt_epi16(ma, infinity);  // magnitudes are >= 0 as int16
  const __m256i nan_b = _mm256_cmpgt_epi16(mb, infinity);
  const __m256i sa = _mm256_srai_epi16(a, 15);  // all ones where negative
  const __m256i sb = _mm256_srai_epi16(b, 15);
  const __m256i ka = _mm256_sub_epi16(_mm256_xor_si256(ma, sa), sa);  // -magnitude if negative
  const __m256i kb = _mm256_sub_epi16(_mm256_xor_si256(mb, sb), sb);
  const __m256i b_wins = Max ? _mm256_cmpgt_epi16(kb, ka) : _mm256_cmpgt_epi16(ka, kb);
  const __m256i take_b = _mm256_andnot_si256(nan_a, _mm256_or_si256(nan_b, b_wins));
  return _mm256_blendv_epi8(a, b, take_b);
}

/// `dst = minimum(a, b)` (or `maximum`) for n 16-bit floats with AVX2, 32 per step.
template <bool Max>
__attribute__((target("avx2"))) inline void select_float16_avx2(const std::byte* a,
                                                                const std::byte* b, std::byte* dst,
                                                                std::size_t n,
                                                                std::uint16_t infinity) noexcept {
  const __m256i inf = _mm256_set1_epi16(static_cast<short>(infinity));
  std::size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    const __m256i a0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a + 2 * i));
    const __m256i a1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a + 2 * i + 32));
    const __m256i b0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + 2 * i));
    const __m256i b1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + 2 * i + 32));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + 2 * i),
                        select_float16_16<Max>(a0, b0, inf));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + 2 * i + 32),
                        select_float16_16<Max>(a1, b1, inf));
  }
  if (i + 16 <= n) {
    const __m256i a0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a + 2 * i));
    const __m256i b0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + 2 * i));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + 2 * i),
                        select_float16_16<Max>(a0, b0, inf));
    i += 16;
  }
  select_float16_scalar<Max>(a + 2 * i, b + 2 * i, dst + 2 * i, n - i, infinity);
}

#else  // no vector kernels: null pointers under the same names keep the dispatch uniform

inline constexpr void (*float_to_half_f16c)(const float*, std::byte*, std::size_t) = nullptr;
inline constexpr void (*half_to_float_f16c)(const std::byte*, float*, std::size_t) = nullptr;
inline constexpr void (*float_to_bfloat16_avx2)(const float*, std::byte*, std::size_t) = nullptr;
inline constexpr void (*bfloat16_to_float_avx2)(const std::byte*, float*, std::size_t) = nullptr;

#endif  // CHORUS_FLOAT16_X86_DISPATCH

}  // namespace detail

/// Allows (the default) or forbids the vector conversion paths for the whole process; the
/// results are bit-identical either way. Overrides `CHORUS_FLOAT16_SCALAR`.
inline void set_vector_conversions(bool enabled) noexcept {
  detail::vector_conversion_switch().store(enabled, std::memory_order_relaxed);
}

/// Whether the vector conversion paths are allowed now.
[[nodiscard]] inline bool vector_conversions() noexcept {
  return detail::vector_conversion_switch().load(std::memory_order_relaxed);
}

/// The instructions that converting to and from `W` (`half` or `bfloat16`) runs on now.
template <class W>
[[nodiscard]] float16_kernel float16_kernel_for() noexcept {
  static_assert(is_float16_v<W>, "chorus::float16_kernel_for<W> takes half or bfloat16.");
  if (!vector_conversions()) return float16_kernel::scalar;
  if constexpr (std::is_same_v<W, half>) {
    return detail::cpu_float16().f16c ? float16_kernel::f16c : float16_kernel::scalar;
  } else {
    return detail::cpu_float16().avx2 ? float16_kernel::avx2 : float16_kernel::scalar;
  }
}

namespace detail {
/// Runs `vector` where `float16_kernel_for<W>()` allows a vector kernel, else `scalar`.
template <class W, class In, class Out, class Vector>
void run_float16_kernel(void (*scalar)(const In*, Out*, std::size_t) noexcept, Vector vector,
                        const In* in, Out* out, std::size_t n) noexcept {
  static_assert(is_float16_v<W>, "chorus float16 conversions take half or bfloat16.");
  if (vector != nullptr && float16_kernel_for<W>() != float16_kernel::scalar) {
    vector(in, out, n);
  } else {
    scalar(in, out, n);
  }
}
}  // namespace detail

/// Rounds n floats to n 16-bit floats `W`, written to `out` (2n bytes, any alignment),
/// bit-identical to `W(in[i])`.
template <class W>
void to_float16(const float* in, std::byte* out, std::size_t n) noexcept {
  if constexpr (std::is_same_v<W, half>) {
    detail::run_float16_kernel<W>(detail::float_to_half_scalar, detail::float_to_half_f16c, in, out,
                                  n);
  } else {
    detail::run_float16_kernel<W>(detail::float_to_bfloat16_scalar, detail::float_to_bfloat16_avx2,
                                  in, out, n);
  }
}

/// Widens n 16-bit floats `W` read from `in` (2n bytes, any alignment) to floats,
/// bit-identical to `static_cast<float>(W)` (NaN payloads kept, signalling ones too).
template <class W>
void from_float16(const std::byte* in, float* out, std::size_t n) noexcept {
  if constexpr (std::is_same_v<W, half>) {
    detail::run_float16_kernel<W>(detail::half_to_float_scalar, detail::half_to_float_f16c, in, out,
                                  n);
  } else {
    detail::run_float16_kernel<W>(detail::bfloat16_to_float_scalar, detail::bfloat16_to_float_avx2,
                                  in, out, n);
  }
}

namespace detail {
/// `dst[i] = minimum{}(a[i], b[i])` (or `maximum` with `Max`) for 16-bit floats `W`, on the
/// bit patterns (`select_float16_bits`): with AVX2 32 per step, else one at a time -- the
/// same bits as the element-wise ops either way. `dst` may equal `a` or `b`.
template <class W, bool Max>
void select_float16(W* dst, const W* a, const W* b, std::size_t n) noexcept {
  static_assert(is_float16_v<W>, "chorus::detail::select_float16 takes half or bfloat16.");
  const auto* x = reinterpret_cast<const std::byte*>(a);
  const auto* y = reinterpret_cast<const std::byte*>(b);
  auto* out = reinterpret_cast<std::byte*>(dst);
#if CHORUS_FLOAT16_X86_DISPATCH
  if (vector_conversions() && cpu_float16().avx2) {
    select_float16_avx2<Max>(x, y, out, n, float16_infinity_bits<W>);
    return;
  }
#endif
  select_float16_scalar<Max>(x, y, out, n, float16_infinity_bits<W>);
}

/// `dst[i] = a[i] + b[i]` (or `*` with `multiply`) for 16-bit floats `W`, bit-identical to
/// the element-wise `W(float(a[i]) op float(b[i]))` (which NaN's payload survives a NaN op
/// NaN is left open, as by IEEE 754): with F16C / AVX2 fused in registers, else in blocks
/// of 256 widened, combined in float and rounded back. `dst` may equal `a` or `b`.
template <class W>
void reduce_float16(W* dst, const W* a, const W* b, std::size_t n, bool multiply) noexcept {
#if CHORUS_FLOAT16_X86_DISPATCH
  if (float16_kernel_for<W>() != float16_kernel::scalar) {  // fused, in registers
    const auto* x = reinterpret_cast<const std::byte*>(a);
    const auto* y = reinterpret_cast<const std::byte*>(b);
    auto* out = reinterpret_cast<std::byte*>(dst);
    if constexpr (std::is_same_v<W, half>) {
      multiply ? combine_half_f16c<true>(x, y, out, n) : combine_half_f16c<false>(x, y, out, n);
    } else {
      multiply ? combine_bfloat16_avx2<true>(x, y, out, n)
               : combine_bfloat16_avx2<false>(x, y, out, n);
    }
    return;
  }
#endif
  constexpr std::size_t block = 256;
  alignas(64) float x[block];
  alignas(64) float y[block];
  for (std::size_t i = 0; i < n; i += block) {
    const std::size_t m = std::min(block, n - i);
    from_float16<W>(reinterpret_cast<const std::byte*>(a + i), x, m);
    from_float16<W>(reinterpret_cast<const std::byte*>(b + i), y, m);
    if (multiply) {
      for (std::size_t j = 0; j < m; ++j) x[j] *= y[j];
    } else {
      for (std::size_t j = 0; j < m; ++j) x[j] += y[j];
    }
    to_float16<W>(x, reinterpret_cast<std::byte*>(dst + i), m);
  }
}
}  // namespace detail

}  // namespace chorus::inline v0

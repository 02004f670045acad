#pragma once
/// \file
/// One-bit codecs: `scaled_sign` (EF-signSGD: sign times the mean magnitude) and
/// `two_means` (1-bit with a reconstruction value per sign: the mean of the non-negative
/// and of the negative elements, as 1-bit SGD).
///
/// Wire: the scale(s) in the gradient type, then one bit per element (1 = negative),
/// packed little-endian: `scaled_sign`: sizeof(T) + ceil(n / 8) bytes; `two_means`:
/// 2 sizeof(T) + ceil(n / 8). Biased and deterministic: use them under `error_feedback`.
#include <chorus/compress/compressor.hpp>

#include <bit>
#include <cstdint>
#include <cstring>
#include <type_traits>

namespace chorus::inline v0::compress {

namespace detail {
#if CHORUS_FLOAT16_X86_DISPATCH
/// The sign bits of 32 floats at a time with AVX (`vcmpltps` + `vmovmskps`: bit i of byte
/// j is element 8 j + i, as `bit_packer` writes them); returns how many elements it packed.
__attribute__((target("avx"))) inline std::size_t pack_signs_avx(const float* x, std::byte* out,
                                                                 std::size_t n) noexcept {
  const __m256 zero = _mm256_setzero_ps();
  std::size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    std::uint32_t word = 0;
    for (int q = 0; q < 4; ++q) {
      const __m256 negative = _mm256_cmp_ps(_mm256_loadu_ps(x + i + 8 * q), zero, _CMP_LT_OQ);
      word |= static_cast<std::uint32_t>(_mm256_movemask_ps(negative)) << (8 * q);
    }
    std::memcpy(out + i / 8, &word, sizeof word);  // little-endian: byte q is lanes 8q..8q+7
  }
  return i;
}

/// `y[i] += bit i ? negative : positive` for 8 floats per byte with AVX2; returns how many
/// elements it did (a multiple of 8).
__attribute__((target("avx2"))) inline std::size_t unpack_signs_add_avx2(const std::byte* in,
                                                                         float* y, std::size_t n,
                                                                         float positive,
                                                                         float negative) noexcept {
  const __m256i lane_bit = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
  const __m256 pos = _mm256_set1_ps(positive), neg = _mm256_set1_ps(negative);
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256i byte = _mm256_set1_epi32(std::to_integer<int>(in[i / 8]));
    const __m256i set = _mm256_cmpeq_epi32(_mm256_and_si256(byte, lane_bit), lane_bit);
    const __m256 add = _mm256_blendv_ps(pos, neg, _mm256_castsi256_ps(set));
    _mm256_storeu_ps(y + i, _mm256_add_ps(_mm256_loadu_ps(y + i), add));
  }
  return i;
}
#endif

/// One bit per element, 1 for a negative one (NaN and -0 are not negative).
template <class T>
void pack_signs(std::span<const T> x, std::byte* out) {
  std::size_t done = 0;
#if CHORUS_FLOAT16_X86_DISPATCH
  if constexpr (std::is_same_v<T, float>) {
    if (vector_codecs()) done = pack_signs_avx(x.data(), out, x.size());
  }
#endif
  bit_packer bits(out + done / 8, 1);  // `done` is a multiple of 8: a byte boundary
  for (std::size_t i = done; i < x.size(); ++i) bits.put(x[i] < T(0) ? 1u : 0u);
  bits.flush();
}

/// y[i] += (bit i set ? negative : positive).
template <class T>
void unpack_signs_add(const std::byte* in, std::size_t bytes, std::span<T> y, T positive,
                      T negative) {
  std::size_t done = 0;
#if CHORUS_FLOAT16_X86_DISPATCH
  if constexpr (std::is_same_v<T, float>) {
    if (vector_codecs()) done = unpack_signs_add_avx2(in, y.data(), y.size(), positive, negative);
  }
#endif
  bit_unpacker bits(in + done / 8, bytes - done / 8, 1);
  for (std::size_t i = done; i < y.size(); ++i) y[i] += bits.get() ? negative : positive;
}

/// The codec behind both one-bit policies; `TwoMeans` picks the reconstruction values.
template <bool TwoMeans>
struct one_bit {
  static constexpr bool summable = false;
  static constexpr bool stochastic = false;
  static constexpr bool unbiased = false;
  static constexpr const char* name = TwoMeans ? "two_means" : "scaled_sign";
  static constexpr std::size_t scales = TwoMeans ? 2 : 1;

  template <gradient_type T>
  [[nodiscard]] std::size_t wire_bytes(std::size_t n) const noexcept {
    return scales * sizeof(T) + ceil_div(n, 8);
  }
  template <gradient_type T>
  void encode(std::span<const T> x, std::span<std::byte> wire, const context&) const {
    check_wire(name, wire.size(), wire_bytes<T>(x.size()));
    wire_writer out(wire);
    if constexpr (TwoMeans) {
      // Each sum takes every element in order, the other sign's as +0, picked with a bit
      // mask so that no branch follows the data's signs (compilers keep a branch for a
      // floating-point select, and its misprediction on every other element was nearly
      // all of the encode's time). Adding +0 leaves a sum's bits as they are: neither sum,
      // starting at +0, can become -0, and NaN + 0 keeps the NaN's payload.
      using bits_t = std::conditional_t<sizeof(T) == 4, std::uint32_t, std::uint64_t>;
      T pos = 0, neg = 0;
      std::size_t npos = 0;
      for (const T v : x) {
        const bool negative = v < T(0);
        const bits_t is_negative = bits_t{0} - static_cast<bits_t>(negative);  // all ones
        const auto b = std::bit_cast<bits_t>(v);
        neg += std::bit_cast<T>(b & is_negative);
        pos += std::bit_cast<T>(b & ~is_negative);
        npos += negative ? 0u : 1u;
      }
      const std::size_t nneg = x.size() - npos;
      out.put<T>(npos ? pos / static_cast<T>(npos) : T(0));
      out.put<T>(nneg ? neg / static_cast<T>(nneg) : T(0));
    } else {
      T sum = 0;
      for (const T v : x) sum += v < T(0) ? -v : v;
      out.put<T>(x.empty() ? T(0) : sum / static_cast<T>(x.size()));
    }
    pack_signs(x, out.position());
  }
  template <gradient_type T>
  void decode_add(std::span<const std::byte> wire, std::span<T> y, const context&) const {
    check_wire(name, wire.size(), wire_bytes<T>(y.size()));
    wire_reader in(wire);
    const T first = in.get<T>();
    const T second = TwoMeans ? in.get<T>() : -first;
    unpack_signs_add(in.position(), ceil_div(y.size(), 8), y, first, second);
  }
};
}  // namespace detail

/// sign(x) * mean(|x|): one bit per element and one scale (EF-signSGD).
struct scaled_sign : detail::one_bit<false> {};

/// One bit per element; non-negative elements decode to their mean, negative ones to
/// theirs (1-bit SGD's reconstruction).
struct two_means : detail::one_bit<true> {};

}  // namespace chorus::inline v0::compress

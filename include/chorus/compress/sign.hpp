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

#include <cstdint>

namespace chorus::inline v0::compress {

namespace detail {
template <class T>
void pack_signs(std::span<const T> x, std::byte* out) {
  bit_packer bits(out, 1);
  for (const T v : x) bits.put(v < T(0) ? 1u : 0u);
  bits.flush();
}

/// y[i] += (bit i set ? negative : positive).
template <class T>
void unpack_signs_add(const std::byte* in, std::size_t bytes, std::span<T> y, T positive,
                      T negative) {
  bit_unpacker bits(in, bytes, 1);
  for (T& v : y) v += bits.get() ? negative : positive;
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
      T pos = 0, neg = 0;
      std::size_t npos = 0;
      for (const T v : x) {
        if (v < T(0)) {
          neg += v;
        } else {
          pos += v;
          ++npos;
        }
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

#pragma once
/// \file
/// `compress::none` and `compress::cast<W>`: the summable codecs that keep every element.
///
/// `none` sends the gradient as it is (the baseline every report compares against).
/// `cast<half>` / `cast<bfloat16>` send each element rounded to a 16-bit float (as PyTorch's
/// fp16/bf16 communication hooks and Horovod's fp16 compression do); the reduction then
/// runs on the 16-bit values, each addition in float and rounded back. `.pre_divide = true`
/// divides by the rank count before rounding and multiplies back after decoding, so that a
/// sum over many ranks stays inside half's range (65504): 8 ranks each holding 1e4 sum to
/// 8e4, which overflows half, but 8 x 1250 = 1e4 does not.
///
/// The conversions run in bulk (`<chorus/core/float16.hpp>`: F16C for half,
/// AVX2 for bfloat16 where the CPU has them, chosen at run time) and give the same bits as
/// converting element by element.
#include <chorus/compress/compressor.hpp>
#include <chorus/core/float16.hpp>
#include <chorus/core/types.hpp>

#include <cstring>
#include <type_traits>

namespace chorus::inline v0::compress {

/// No compression: the payload is the gradient itself. Summable, exact.
struct none {
  static constexpr bool summable = true;
  static constexpr bool stochastic = false;
  static constexpr bool unbiased = true;

  template <gradient_type T>
  using wire_t = T;
  template <gradient_type T>
  [[nodiscard]] std::size_t wire_count(std::size_t n) const noexcept {
    return n;
  }
  template <gradient_type T>
  [[nodiscard]] std::size_t wire_bytes(std::size_t n) const noexcept {
    return n * sizeof(T);
  }
  template <gradient_type T>
  void encode(std::span<const T> x, std::span<std::byte> wire, const context&) const {
    detail::check_wire("none", wire.size(), wire_bytes<T>(x.size()));
    if (!x.empty()) std::memcpy(wire.data(), x.data(), x.size_bytes());
  }
  template <gradient_type T>
  void decode_add(std::span<const std::byte> wire, std::span<T> y, const context&) const {
    detail::check_wire("none", wire.size(), wire_bytes<T>(y.size()));
    detail::wire_reader in(wire);
    for (T& v : y) v += in.get<T>();
  }
};

/// Rounds each element to the floating type `W` (`half`, `bfloat16` or `float` for double
/// gradients). Summable: the 16-bit payloads are reduced as they are.
template <class W>
struct cast {
  static_assert(is_float16_v<W> || std::is_same_v<W, float>,
                "chorus::compress::cast<W> casts to chorus::half, chorus::bfloat16 or float only.");
  static constexpr bool summable = true;
  static constexpr bool stochastic = false;
  static constexpr bool unbiased = false;  // round-to-nearest: exact in expectation only on average

  /// Divide by the rank count before rounding (and multiply back after the sum): protects
  /// half's range when many ranks add large values.
  bool pre_divide = false;

  template <gradient_type T>
  using wire_t = W;
  template <gradient_type T>
  [[nodiscard]] std::size_t wire_count(std::size_t n) const noexcept {
    return n;
  }
  template <gradient_type T>
  [[nodiscard]] std::size_t wire_bytes(std::size_t n) const noexcept {
    return n * sizeof(W);
  }
  template <gradient_type T>
  void encode(std::span<const T> x, std::span<std::byte> wire, const context& ctx) const {
    detail::check_wire("cast", wire.size(), wire_bytes<T>(x.size()));
    std::byte* out = wire.data();
    const std::size_t n = x.size();
    const T scale = pre_divide ? T(1) / static_cast<T>(ctx.ranks) : T(1);
    if constexpr (is_float16_v<W>) {
      if constexpr (std::is_same_v<T, float>) {
        if (!pre_divide) {
          if (n != 0) to_float16<W>(x.data(), out, n);
          return;
        }
      }
      // scale (and narrow double to float) a block at a time into a buffer that stays in L1
      float block[staging];
      for (std::size_t i = 0; i < n; i += staging) {
        const std::size_t m = n - i < staging ? n - i : staging;
        const T* xi = x.data() + i;
        if (pre_divide) {
          each(m, [&](std::size_t j) { block[j] = static_cast<float>(xi[j] * scale); });
        } else {
          each(m, [&](std::size_t j) { block[j] = static_cast<float>(xi[j]); });
        }
        to_float16<W>(block, out + i * sizeof(W), m);
      }
    } else {
      for (std::size_t i = 0; i < n; ++i) {
        const W w = static_cast<W>(pre_divide ? x[i] * scale : x[i]);
        std::memcpy(out + i * sizeof(W), &w, sizeof(W));
      }
    }
  }
  template <gradient_type T>
  void decode_add(std::span<const std::byte> wire, std::span<T> y, const context& ctx) const {
    detail::check_wire("cast", wire.size(), wire_bytes<T>(y.size()));
    const std::byte* in = wire.data();
    const std::size_t n = y.size();
    const T scale = pre_divide ? static_cast<T>(ctx.ranks) : T(1);
    if constexpr (is_float16_v<W>) {
      // widen a block at a time into a buffer that stays in L1, then add
      float block[staging];
      for (std::size_t i = 0; i < n; i += staging) {
        const std::size_t m = n - i < staging ? n - i : staging;
        from_float16<W>(in + i * sizeof(W), block, m);
        T* yi = y.data() + i;
        each(m, [&](std::size_t j) { yi[j] += static_cast<T>(block[j]) * scale; });
      }
    } else {
      for (std::size_t i = 0; i < n; ++i) {
        W w;
        std::memcpy(&w, in + i * sizeof(W), sizeof(W));
        y[i] += static_cast<T>(w) * scale;
      }
    }
  }

 private:
  /// Elements per conversion block: 4 KiB of float, small enough to stay in L1 next to
  /// the streams, large enough that the per-block dispatch does not show.
  static constexpr std::size_t staging = 1024;

  /// f(0) .. f(m - 1); a full block runs as a loop of constant length, which compilers
  /// vectorise even under cost models that refuse loops needing a scalar remainder
  /// (GCC's -O2).
  template <class F>
  static void each(std::size_t m, F f) {
    if (m == staging) {
      for (std::size_t j = 0; j < staging; ++j) f(j);
    } else {
      for (std::size_t j = 0; j < m; ++j) f(j);
    }
  }
};

}  // namespace chorus::inline v0::compress

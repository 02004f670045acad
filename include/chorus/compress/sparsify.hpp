#pragma once
/// \file
/// Sparsifiers: `top_k` (exact), `threshold_top_k` (sampled threshold, as Deep Gradient
/// Compression) and `random_k` (indices drawn from a seed every rank shares).
///
/// `top_k` and `threshold_top_k` send k = ceil(ratio * n) (index, value) pairs: k 32-bit
/// indices in increasing order, then k values of the gradient type, so
/// `wire_bytes<T>(n) = k * (4 + sizeof(T))`. Different ranks keep different indices, so
/// their payloads cannot be added without decoding. `random_k` keeps the same k indices on
/// every rank (drawn from the shared key: seed, step, tensor), so it sends the k values
/// only (`k * sizeof(T)`) and its payloads add as they are; values are scaled by n / k so
/// that the estimate is unbiased.
#include <chorus/compress/compressor.hpp>

#include <algorithm>
#include <bit>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

namespace chorus::inline v0::compress {

namespace detail {
/// Unsigned integer of the same width as `T`, in which |x| compares like the magnitude
/// (IEEE: with the sign bit cleared, the bit patterns of non-negative floats are ordered).
template <class T>
using magnitude_key_t = std::conditional_t<sizeof(T) == 4, std::uint32_t, std::uint64_t>;

template <class T>
magnitude_key_t<T> magnitude_key(T v) noexcept {
  using K = magnitude_key_t<T>;
  return std::bit_cast<K>(v) & (~K{0} >> 1);
}

/// Writes, in increasing order, the indices of the k elements of `x` with the largest
/// magnitude; ties go to the lower index (so the selection is exact and reproducible).
///
/// Radix select on the magnitude's bit pattern: each pass histograms the next digit of the
/// elements that still share the prefix of the k-th largest key, which pins the k-th largest
/// key exactly; a last pass emits every element above it and the lowest-indexed ones equal
/// to it. Linear time, no sort and no copy of the data. Digits are 16 bits wide for large
/// tensors (2 passes for float, 4 for double) and 8 bits for small ones, whose time would
/// otherwise go to clearing a 65,536-entry histogram; the histogram is the calling
/// thread's, kept between calls, so selecting allocates nothing after the first call.
template <class T>
void select_top_k(std::span<const T> x, std::size_t k, std::uint32_t* indices) {
  using K = magnitude_key_t<T>;
  const std::size_t n = x.size();
  if (k == 0) return;
  const int bits = n < (std::size_t{1} << 14) ? 8 : 16;
  const std::size_t digits = std::size_t{1} << bits;
  const K digit_mask = static_cast<K>(digits - 1);
  thread_local std::vector<std::uint32_t> hist;
  if (hist.size() < digits) hist.resize(digits);
  K prefix = 0;
  K mask = 0;
  std::size_t remaining = k;  // how many of the k we still have to find below `prefix`
  for (int shift = static_cast<int>(sizeof(K) * 8) - bits; shift >= 0; shift -= bits) {
    std::fill(hist.begin(), hist.begin() + static_cast<std::ptrdiff_t>(digits), 0u);
    if (mask == 0) {
      for (std::size_t i = 0; i < n; ++i)
        ++hist[static_cast<std::size_t>(magnitude_key(x[i]) >> shift)];
    } else {
      for (std::size_t i = 0; i < n; ++i) {
        const K key = magnitude_key(x[i]);
        if ((key & mask) == prefix) ++hist[static_cast<std::size_t>((key >> shift) & digit_mask)];
      }
    }
    std::size_t above = 0;
    std::size_t d = digits - 1;
    for (;; --d) {
      if (above + hist[d] >= remaining) break;
      above += hist[d];
    }
    remaining -= above;
    prefix |= static_cast<K>(d) << shift;
    mask |= digit_mask << shift;
  }
  // `prefix` is now the k-th largest key; `remaining` elements equal to it are taken.
  std::size_t out = 0;
  std::size_t equal_left = remaining;
  for (std::size_t i = 0; i < n; ++i) {
    const K key = magnitude_key(x[i]);
    if (key > prefix || (key == prefix && equal_left > 0)) {
      if (key == prefix) --equal_left;
      indices[out++] = static_cast<std::uint32_t>(i);
    }
  }
}

/// The (index, value) wire of `top_k` and `threshold_top_k`.
struct sparse_wire {
  template <class T>
  static std::size_t bytes(std::size_t k) noexcept {
    return k * (sizeof(std::uint32_t) + sizeof(T));
  }
  /// Writes the k indices (already in `wire`) and gathers their values.
  template <class T>
  static void gather_values(std::span<const T> x, std::span<std::byte> wire, std::size_t k) {
    std::uint32_t* idx = reinterpret_cast<std::uint32_t*>(wire.data());
    std::byte* values = wire.data() + k * sizeof(std::uint32_t);
    for (std::size_t j = 0; j < k; ++j) std::memcpy(values + j * sizeof(T), &x[idx[j]], sizeof(T));
  }
  template <class T>
  static void decode_add(const char* who, std::span<const std::byte> wire, std::span<T> y,
                         std::size_t k) {
    const std::byte* idx = wire.data();
    const std::byte* values = wire.data() + k * sizeof(std::uint32_t);
    for (std::size_t j = 0; j < k; ++j) {
      std::uint32_t i;
      T v;
      std::memcpy(&i, idx + j * sizeof(std::uint32_t), sizeof(i));
      std::memcpy(&v, values + j * sizeof(T), sizeof(T));
      if (i >= y.size()) {
        invalid(who, "the payload names index " + std::to_string(i) + " of a tensor of " +
                         std::to_string(y.size()) +
                         " elements; every rank must pass the same element count");
      }
      y[i] += v;
    }
  }
};

/// A 4-byte-aligned index array inside a byte span (the collectives allocate wires
/// 8-byte aligned; a misaligned wire goes through a temporary).
inline bool aligned_for_indices(std::span<std::byte> wire) noexcept {
  return reinterpret_cast<std::uintptr_t>(wire.data()) % alignof(std::uint32_t) == 0;
}
}  // namespace detail

/// Exact top-k by magnitude (ties to the lowest index). Biased: use it under
/// `error_feedback` (the pair is the alias `dgc`).
struct top_k {
  static constexpr bool summable = false;
  static constexpr bool stochastic = false;
  static constexpr bool unbiased = false;

  /// Fraction of elements kept: k = ceil(ratio * n), at least 1.
  double ratio = 0.01;

  template <gradient_type T>
  [[nodiscard]] std::size_t wire_bytes(std::size_t n) const {
    return detail::sparse_wire::bytes<T>(detail::kept("top_k", ratio, n));
  }
  template <gradient_type T>
  void encode(std::span<const T> x, std::span<std::byte> wire, const context&) const {
    detail::check_index_range("top_k", x.size());
    const std::size_t k = detail::kept("top_k", ratio, x.size());
    detail::check_wire("top_k", wire.size(), detail::sparse_wire::bytes<T>(k));
    if (detail::aligned_for_indices(wire)) {
      detail::select_top_k(x, k, reinterpret_cast<std::uint32_t*>(wire.data()));
      detail::sparse_wire::gather_values(x, wire, k);
    } else {
      std::vector<std::byte> tmp(wire.size() + sizeof(std::uint32_t));
      std::span<std::byte> aligned(
          tmp.data() + (4 - reinterpret_cast<std::uintptr_t>(tmp.data()) % 4) % 4, wire.size());
      detail::select_top_k(x, k, reinterpret_cast<std::uint32_t*>(aligned.data()));
      detail::sparse_wire::gather_values(x, aligned, k);
      if (!wire.empty()) std::memcpy(wire.data(), aligned.data(), wire.size());
    }
  }
  template <gradient_type T>
  void decode_add(std::span<const std::byte> wire, std::span<T> y, const context&) const {
    const std::size_t k = detail::kept("top_k", ratio, y.size());
    detail::check_wire("top_k", wire.size(), detail::sparse_wire::bytes<T>(k));
    detail::sparse_wire::decode_add("top_k", wire, y, k);
  }
};

/// Deep Gradient Compression's selection: a threshold estimated from a strided sample of
/// `sample_ratio * n` magnitudes, then every element above it; when that yields more than
/// k, the exact top-k of those candidates (DGC's hierarchical selection), and when fewer,
/// the exact top-k of the whole tensor. The wire is the same as `top_k`'s.
struct threshold_top_k {
  static constexpr bool summable = false;
  static constexpr bool stochastic = false;
  static constexpr bool unbiased = false;

  double ratio = 0.01;
  /// Fraction of elements sampled to estimate the threshold (at least 256 of them).
  double sample_ratio = 0.01;

  template <gradient_type T>
  [[nodiscard]] std::size_t wire_bytes(std::size_t n) const {
    return detail::sparse_wire::bytes<T>(detail::kept("threshold_top_k", ratio, n));
  }
  template <gradient_type T>
  void encode(std::span<const T> x, std::span<std::byte> wire, const context& ctx) const {
    const std::size_t n = x.size();
    detail::check_index_range("threshold_top_k", n);
    const std::size_t k = detail::kept("threshold_top_k", ratio, n);
    detail::check_wire("threshold_top_k", wire.size(), detail::sparse_wire::bytes<T>(k));
    if (k == 0) return;
    // 1. threshold from a strided sample (deterministic: no draw, no state)
    const std::size_t m =
        std::min(n, std::max<std::size_t>(256, static_cast<std::size_t>(sample_ratio * double(n))));
    const std::size_t stride = n / m;
    std::vector<T> sample(m);
    for (std::size_t j = 0; j < m; ++j)
      sample[j] = x[j * stride] < 0 ? -x[j * stride] : x[j * stride];
    const std::size_t ks = detail::kept("threshold_top_k", ratio, m);
    std::nth_element(sample.begin(), sample.begin() + static_cast<std::ptrdiff_t>(ks - 1),
                     sample.end(), [](T a, T b) { return a > b; });
    const T threshold = sample[ks - 1];
    // 2. candidates above the threshold
    std::vector<std::uint32_t> candidates;
    candidates.reserve(2 * k);
    for (std::size_t i = 0; i < n; ++i) {
      if ((x[i] < 0 ? -x[i] : x[i]) >= threshold)
        candidates.push_back(static_cast<std::uint32_t>(i));
    }
    std::vector<std::byte> aligned(wire.size());
    auto* idx = reinterpret_cast<std::uint32_t*>(aligned.data());
    if (candidates.size() < k) {
      top_k{.ratio = ratio}.encode(x, wire, ctx);  // too few: fall back to the exact selection
      return;
    }
    // 3. exact top-k among the candidates, mapped back to tensor indices (still increasing)
    std::vector<T> values(candidates.size());
    for (std::size_t j = 0; j < candidates.size(); ++j) values[j] = x[candidates[j]];
    detail::select_top_k(std::span<const T>(values), k, idx);
    for (std::size_t j = 0; j < k; ++j) idx[j] = candidates[idx[j]];
    detail::sparse_wire::gather_values(x, std::span<std::byte>(aligned), k);
    if (!wire.empty()) std::memcpy(wire.data(), aligned.data(), wire.size());
  }
  template <gradient_type T>
  void decode_add(std::span<const std::byte> wire, std::span<T> y, const context&) const {
    const std::size_t k = detail::kept("threshold_top_k", ratio, y.size());
    detail::check_wire("threshold_top_k", wire.size(), detail::sparse_wire::bytes<T>(k));
    detail::sparse_wire::decode_add("threshold_top_k", wire, y, k);
  }
};

/// k elements at indices drawn uniformly (a uniform k-subset, by selection sampling) from
/// the key (seed, step, tensor) shared by every rank; summable. `Scaled`: values times
/// n / k, an unbiased estimate (`random_k`); unscaled, the form to use under
/// `error_feedback` (`random_k_unscaled`; the scaled one amplifies the residual by
/// n / k - 1 each time an element is kept, which diverges). The step keys the draws:
/// the ledger advances it every call, or the same indices would repeat.
template <bool Scaled>
struct basic_random_k {
  static constexpr bool summable = true;
  static constexpr bool stochastic = true;
  static constexpr bool unbiased = Scaled;

  double ratio = 0.01;
  std::uint64_t seed = 0;

  template <gradient_type T>
  using wire_t = T;
  template <gradient_type T>
  [[nodiscard]] std::size_t wire_count(std::size_t n) const {
    return detail::kept("random_k", ratio, n);
  }
  template <gradient_type T>
  [[nodiscard]] std::size_t wire_bytes(std::size_t n) const {
    return wire_count<T>(n) * sizeof(T);
  }

  /// Calls `fn(j, i)` for the j-th kept index i, in increasing order of i; the same on
  /// every rank for the same (seed, step, tensor, block).
  template <class Fn>
  void for_each_index(std::size_t n, const context& ctx, Fn&& fn) const {
    const std::size_t k = detail::kept("random_k", ratio, n);
    const counter_rng rng(ctx.shared_key(seed));
    std::size_t chosen = 0;
    for (std::size_t i = 0; i < n && chosen < k; ++i) {
      // Knuth's selection sampling: keep i with probability (still needed) / (still left).
      if (static_cast<double>(n - i) * rng.uniform(i) < static_cast<double>(k - chosen)) {
        fn(chosen++, i);
      }
    }
  }

  template <gradient_type T>
  void encode(std::span<const T> x, std::span<std::byte> wire, const context& ctx) const {
    const std::size_t n = x.size();
    detail::check_wire("random_k", wire.size(), wire_bytes<T>(n));
    const T scale =
        (n == 0 || !Scaled) ? T(1) : static_cast<T>(n) / static_cast<T>(wire_count<T>(n));
    std::byte* out = wire.data();
    for_each_index(n, ctx, [&](std::size_t j, std::size_t i) {
      const T v = x[i] * scale;
      std::memcpy(out + j * sizeof(T), &v, sizeof(T));
    });
  }
  template <gradient_type T>
  void decode_add(std::span<const std::byte> wire, std::span<T> y, const context& ctx) const {
    detail::check_wire("random_k", wire.size(), wire_bytes<T>(y.size()));
    const std::byte* in = wire.data();
    for_each_index(y.size(), ctx, [&](std::size_t j, std::size_t i) {
      T v;
      std::memcpy(&v, in + j * sizeof(T), sizeof(T));
      y[i] += v;
    });
  }
};

/// Random-k scaled by n / k: unbiased, for use without error feedback.
using random_k = basic_random_k<true>;
/// Random-k without scaling: biased, for use under `error_feedback`.
using random_k_unscaled = basic_random_k<false>;

}  // namespace chorus::inline v0::compress

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
#include <functional>
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

#if CHORUS_FLOAT16_X86_DISPATCH
/// `candidates_at_least` for float, 16 elements per step with AVX2: the magnitude keys
/// compared as 32-bit integers (they are below 2^31), a mask, and a push for each set bit
/// (few: the threshold keeps a small fraction). Returns how many elements it looked at.
__attribute__((target("avx2"))) inline std::size_t candidates_at_least_avx2(
    const float* x, std::size_t n, std::uint32_t threshold, std::vector<std::uint32_t>& indices,
    std::vector<std::uint32_t>& keys) {
  const __m256i magnitude = _mm256_set1_epi32(0x7fffffff);
  // key >= threshold  <=>  key > threshold - 1 (threshold 0: -1, below every key)
  const __m256i below = _mm256_set1_epi32(static_cast<int>(threshold) - 1);
  std::size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m256i a =
        _mm256_and_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + i)), magnitude);
    const __m256i b = _mm256_and_si256(
        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + i + 8)), magnitude);
    auto mask =
        static_cast<unsigned>(
            _mm256_movemask_ps(_mm256_castsi256_ps(_mm256_cmpgt_epi32(a, below)))) |
        static_cast<unsigned>(_mm256_movemask_ps(_mm256_castsi256_ps(_mm256_cmpgt_epi32(b, below))))
            << 8;
    while (mask != 0) {
      const std::size_t at = i + static_cast<unsigned>(std::countr_zero(mask));
      indices.push_back(static_cast<std::uint32_t>(at));
      keys.push_back(magnitude_key(x[at]));
      mask &= mask - 1;
    }
  }
  return i;
}
#endif

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

/// Appends to `indices` and `keys`, in increasing order of index, every element whose
/// magnitude key is at least `threshold` (the order of `select_top_k`: NaNs above
/// infinities), and that key: one pass that reads each element once.
template <class T>
void candidates_at_least(std::span<const T> x, magnitude_key_t<T> threshold,
                         std::vector<std::uint32_t>& indices,
                         std::vector<magnitude_key_t<T>>& keys) {
  std::size_t i = 0;
#if CHORUS_FLOAT16_X86_DISPATCH
  if constexpr (std::is_same_v<T, float>) {
    if (vector_codecs()) {
      i = candidates_at_least_avx2(x.data(), x.size(), threshold, indices, keys);
    }
  }
#endif
  for (; i < x.size(); ++i) {
    if (const auto key = magnitude_key(x[i]); key >= threshold) {
      indices.push_back(static_cast<std::uint32_t>(i));
      keys.push_back(key);
    }
  }
}

/// `select_top_k` over keys already computed, for a few candidates: writes the positions
/// (into `keys`) of the k largest, ties to the lowest position, in increasing order. An
/// introselect on a copy of the keys (`order`: scratch) pins the k-th largest; a radix
/// select's histograms cost more than that when the keys are few and crowd a narrow range.
template <class K>
void select_top_k_keys(const std::vector<K>& keys, std::size_t k, std::uint32_t* positions,
                       std::vector<K>& order) {
  if (k == 0) return;
  order.assign(keys.begin(), keys.end());
  std::nth_element(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(k - 1), order.end(),
                   std::greater<K>{});
  const K kth = order[k - 1];
  std::size_t equal_left = k;  // how many equal to the k-th key are taken: k minus those above
  for (const K key : keys) equal_left -= key > kth ? 1 : 0;
  std::size_t out = 0;
  for (std::size_t j = 0; j < keys.size(); ++j) {
    if (keys[j] > kth || (keys[j] == kth && equal_left > 0)) {
      if (keys[j] == kth) --equal_left;
      positions[out++] = static_cast<std::uint32_t>(j);
    }
  }
}

/// A 4-byte-aligned index array inside a byte span (the collectives allocate wires
/// 8-byte aligned; a misaligned wire goes through a temporary).
inline bool aligned_for_indices(std::span<std::byte> wire) noexcept {
  return reinterpret_cast<std::uintptr_t>(wire.data()) % alignof(std::uint32_t) == 0;
}

/// Runs `fill(out)` on `wire` itself when its index array is aligned, else on an aligned
/// temporary of the same size that is then copied into `wire`.
template <class Fill>
void fill_sparse_wire(std::span<std::byte> wire, Fill&& fill) {
  if (aligned_for_indices(wire)) {
    fill(wire);
    return;
  }
  // Words, so that the temporary is aligned for the indices by its type.
  std::vector<std::uint32_t> tmp((wire.size() + sizeof(std::uint32_t) - 1) / sizeof(std::uint32_t));
  const std::span<std::byte> aligned(reinterpret_cast<std::byte*>(tmp.data()), wire.size());
  fill(aligned);
  if (!wire.empty()) std::memcpy(wire.data(), aligned.data(), wire.size());
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
    detail::fill_sparse_wire(wire, [&](std::span<std::byte> out) {
      detail::select_top_k(x, k, reinterpret_cast<std::uint32_t*>(out.data()));
      detail::sparse_wire::gather_values(x, out, k);
    });
  }
  template <gradient_type T>
  void decode_add(std::span<const std::byte> wire, std::span<T> y, const context&) const {
    const std::size_t k = detail::kept("top_k", ratio, y.size());
    detail::check_wire("top_k", wire.size(), detail::sparse_wire::bytes<T>(k));
    detail::sparse_wire::decode_add("top_k", wire, y, k);
  }
};

/// Deep Gradient Compression's selection: a threshold estimated from a strided sample of
/// `sample_ratio * n` magnitudes, then every element at or above it; when that yields at
/// least k, the exact top-k of those candidates (DGC's hierarchical selection), and when
/// fewer, the exact top-k of the whole tensor. Magnitudes compare as `top_k`'s do (on their
/// bits: a NaN above every number), so either way the result is `top_k`'s, bit for bit (k
/// candidates at or above a threshold hold the k largest), at one pass over the tensor
/// instead of a radix select's three. The wire is the same as `top_k`'s.
///
/// The threshold is the sample's (1.25 k_s + 8)-th largest magnitude rather than its
/// k_s-th (k_s = ceil(ratio * samples)): candidates number about 1.25 k, and fewer than k,
/// which costs the whole exact selection on top, is rare (with the default 1 % sample of
/// a large tensor the margin is many standard deviations of the sample's quantile).
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
    // The calling thread's buffers, kept between calls: fresh ones cost more in page faults
    // and zeroing than the selection itself.
    using key_t = detail::magnitude_key_t<T>;
    struct scratch {
      std::vector<key_t> sample, keys, order;
      std::vector<std::uint32_t> candidates;
    };
    thread_local scratch buffers;
    // 1. threshold from a strided sample (deterministic: no draw, no state)
    const std::size_t m =
        std::min(n, std::max<std::size_t>(256, static_cast<std::size_t>(sample_ratio * double(n))));
    const std::size_t stride = n / m;
    std::vector<key_t>& sample = buffers.sample;
    sample.resize(m);
    for (std::size_t j = 0; j < m; ++j) sample[j] = detail::magnitude_key(x[j * stride]);
    const std::size_t ks = std::min(m, detail::kept("threshold_top_k", ratio, m) * 5 / 4 + 8);
    std::nth_element(sample.begin(), sample.begin() + static_cast<std::ptrdiff_t>(ks - 1),
                     sample.end(), std::greater<key_t>{});
    const key_t threshold = sample[ks - 1];
    // 2. candidates at or above the threshold
    std::vector<std::uint32_t>& candidates = buffers.candidates;
    std::vector<key_t>& keys = buffers.keys;
    candidates.clear();
    keys.clear();
    detail::candidates_at_least(x, threshold, candidates, keys);
    if (candidates.size() < k) {
      top_k{.ratio = ratio}.encode(x, wire, ctx);  // too few: fall back to the exact selection
      return;
    }
    // 3. exact top-k among the candidates, mapped back to tensor indices (still increasing)
    detail::fill_sparse_wire(wire, [&](std::span<std::byte> out) {
      auto* idx = reinterpret_cast<std::uint32_t*>(out.data());
      detail::select_top_k_keys(keys, k, idx, buffers.order);
      for (std::size_t j = 0; j < k; ++j) idx[j] = candidates[idx[j]];
      detail::sparse_wire::gather_values(x, out, k);
    });
  }
  template <gradient_type T>
  void decode_add(std::span<const std::byte> wire, std::span<T> y, const context&) const {
    const std::size_t k = detail::kept("threshold_top_k", ratio, y.size());
    detail::check_wire("threshold_top_k", wire.size(), detail::sparse_wire::bytes<T>(k));
    detail::sparse_wire::decode_add("threshold_top_k", wire, y, k);
  }
};

namespace detail {
/// Where a selection-sampling walk stands: the next position and how many are kept so far.
struct selection_walk {
  std::size_t i = 0;
  std::size_t chosen = 0;
};

/// The vector walks hold n - i in a double and step it down exactly: every integer up to
/// 2^53 is a double, so each lane's value is `static_cast<double>(n - i)` itself. Longer
/// tensors (past 2^53 elements) take the scalar walk.
inline constexpr std::size_t vector_walk_limit = std::size_t{1} << 53;

// The vector walks run in two phases per block of positions. The first draws, multiplies
// and compares every position of the block against the number still needed at its start,
// without a branch, and keeps the products and one bit per position: the hash behind each
// draw is a long chain of dependent multiplies, and a mispredicted branch on every batch
// that keeps something (at a 1 % ratio, one batch of 16 in seven) would throw away the
// chains in flight behind it. The second walks the candidates (the positions below that
// number) with the scalar rule. A block without candidates is skipped whole, which is
// what the scalar rule does with it.
inline constexpr std::size_t walk_block = 256;

#if CHORUS_FLOAT16_X86_DISPATCH
/// The second phase: the scalar rule of `basic_random_k::for_each_index` over the `m`
/// positions of a block from `i` on, given the products (n - i) u of all of them and the
/// bits (`below`, 64 positions a word) of those below the number still needed at the start
/// of the block. Only those can be kept, since that number only falls; each is tested
/// against the number still needed when the walk reaches it. Writes each kept position to
/// `out`; returns the position just past the last kept one where the walk stops (k kept,
/// or `cap` positions written), else 0.
///
/// The set bits are listed first, two per word unconditionally (a word of 64 positions
/// holds fewer than three candidates 97 % of the time at a 1 % ratio) and any more in a
/// loop, so that the listing seldom mispredicts; the walk is then one loop per block.
inline std::size_t walk_candidates(const double* products, const std::uint64_t* below,
                                   std::size_t m, std::size_t i, std::size_t k, std::size_t& chosen,
                                   std::size_t* out, std::size_t& got, std::size_t cap) noexcept {
  std::uint32_t at[walk_block + 2];
  std::size_t count = 0;
  for (std::size_t word = 0; word < (m + 63) / 64; ++word) {
    std::uint64_t bits = below[word];
    const auto base = static_cast<std::uint32_t>(64 * word);
    const auto total = static_cast<std::size_t>(std::popcount(bits));
    // countr_zero(0) is 64: such entries lie past `total` and are overwritten or unused
    at[count] = base + static_cast<std::uint32_t>(std::countr_zero(bits));
    bits &= bits - 1;
    at[count + 1] = base + static_cast<std::uint32_t>(std::countr_zero(bits));
    bits &= bits - 1;
    for (std::size_t c = count + 2; bits != 0; ++c, bits &= bits - 1) {
      at[c] = base + static_cast<std::uint32_t>(std::countr_zero(bits));
    }
    count += total;
  }
  for (std::size_t c = 0; c < count; ++c) {
    if (products[at[c]] < static_cast<double>(k - chosen)) {
      out[got++] = i + at[c];
      if (++chosen == k || got == cap) return i + at[c] + 1;
    }
  }
  return 0;
}

/// The first phase of a block with AVX-512 draws, 16 positions per step: for the `m`
/// positions from `i` (m a multiple of 16), the products (n - i) u into `products` and a
/// bit for each product below `need` into `below` (zeroed by the caller).
CHORUS_AVX512_BEGIN
__attribute__((target("avx512f,avx512dq"))) inline void draw_block_avx512(
    std::uint64_t key, std::size_t n, std::size_t i, std::size_t m, double need_now,
    double* products, std::uint64_t* below) noexcept {
  const __m512i vkey = _mm512_set1_epi64(static_cast<long long>(key));
  const __m512i sixteen = _mm512_set1_epi64(static_cast<long long>(16 * counter_stride));
  const __m512d need = _mm512_set1_pd(need_now);
  __m512i z0 = counters_avx512(i, key);
  __m512i z1 = _mm512_add_epi64(z0, counter_steps_avx512());
  __m512d left = _mm512_sub_pd(_mm512_set1_pd(static_cast<double>(n - i)),
                               _mm512_setr_pd(0, 1, 2, 3, 4, 5, 6, 7));
  for (std::size_t b = 0; b < m; b += 16) {
    const __m512d p0 = _mm512_mul_pd(left, uniform8_avx512(z0, vkey));
    const __m512d p1 =
        _mm512_mul_pd(_mm512_sub_pd(left, _mm512_set1_pd(8.0)), uniform8_avx512(z1, vkey));
    _mm512_storeu_pd(products + b, p0);
    _mm512_storeu_pd(products + b + 8, p1);
    const std::uint64_t bits = _mm512_cmp_pd_mask(p0, need, _CMP_LT_OQ) |
                               static_cast<unsigned>(_mm512_cmp_pd_mask(p1, need, _CMP_LT_OQ)) << 8;
    below[b / 64] |= bits << (b % 64);
    z0 = _mm512_add_epi64(z0, sixteen);
    z1 = _mm512_add_epi64(z1, sixteen);
    left = _mm512_sub_pd(left, _mm512_set1_pd(16.0));
  }
}
CHORUS_AVX512_END

/// `draw_block_avx512` with AVX2 draws, 8 positions per step (m a multiple of 8).
__attribute__((target("avx2"))) inline void draw_block_avx2(std::uint64_t key, std::size_t n,
                                                            std::size_t i, std::size_t m,
                                                            double need_now, double* products,
                                                            std::uint64_t* below) noexcept {
  const __m256i vkey = _mm256_set1_epi64x(static_cast<long long>(key));
  const __m256i eight = _mm256_set1_epi64x(static_cast<long long>(8 * counter_stride));
  const __m256d need = _mm256_set1_pd(need_now);
  __m256i z0 = counters_avx2(i, key);
  __m256i z1 = counters_avx2(i + 4, key);
  __m256d left =
      _mm256_sub_pd(_mm256_set1_pd(static_cast<double>(n - i)), _mm256_setr_pd(0, 1, 2, 3));
  for (std::size_t b = 0; b < m; b += 8) {
    const __m256d p0 = _mm256_mul_pd(left, uniform4_avx2(z0, vkey));
    const __m256d p1 =
        _mm256_mul_pd(_mm256_sub_pd(left, _mm256_set1_pd(4.0)), uniform4_avx2(z1, vkey));
    _mm256_storeu_pd(products + b, p0);
    _mm256_storeu_pd(products + b + 4, p1);
    const auto bits =
        static_cast<std::uint64_t>(_mm256_movemask_pd(_mm256_cmp_pd(p0, need, _CMP_LT_OQ))) |
        static_cast<std::uint64_t>(_mm256_movemask_pd(_mm256_cmp_pd(p1, need, _CMP_LT_OQ))) << 4;
    below[b / 64] |= bits << (b % 64);
    z0 = _mm256_add_epi64(z0, eight);
    z1 = _mm256_add_epi64(z1, eight);
    left = _mm256_sub_pd(left, _mm256_set1_pd(8.0));
  }
}

/// Selection sampling (see `basic_random_k::for_each_index`) with the vector draws of
/// `kernel` (AVX-512 or AVX2), in the blocks described above. Writes up to `cap` kept
/// positions to `out`, advances `w`, and returns how many; stops when k are kept or fewer
/// positions are left than one vector step takes.
inline std::size_t select_sampling(draw_kernel kernel, std::uint64_t key, std::size_t n,
                                   std::size_t k, selection_walk& w, std::size_t* out,
                                   std::size_t cap) noexcept {
  const bool wide = kernel == draw_kernel::avx512;
  const std::size_t step = wide ? 16 : 8;
  // Locals, not `w`'s members: `out` might alias those, which would keep them in memory.
  std::size_t i = w.i, chosen = w.chosen, got = 0;
  alignas(64) double products[walk_block];
  while (chosen < k) {
    const std::size_t m = std::min(walk_block, (n - i) / step * step);
    if (m == 0) break;
    std::uint64_t below[walk_block / 64] = {};
    const auto need = static_cast<double>(k - chosen);
    if (wide) {
      draw_block_avx512(key, n, i, m, need, products, below);
    } else {
      draw_block_avx2(key, n, i, m, need, products, below);
    }
    if (const std::size_t stop = walk_candidates(products, below, m, i, k, chosen, out, got, cap)) {
      w = {stop, chosen};
      return got;
    }
    i += m;
  }
  w = {i, chosen};
  return got;
}
#endif
}  // namespace detail

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
    detail::selection_walk w;
#if CHORUS_FLOAT16_X86_DISPATCH
    // The vector walks (the same rule on the same draws, see `walk_candidates`) hand over
    // the kept positions a buffer at a time and stop short of the last few positions,
    // which the scalar loop below finishes. Past 2^53 elements, n - i would not be exact
    // in the double lanes they count with.
    const detail::draw_kernel kernel = detail::draw_kernel_now();
    if (kernel != detail::draw_kernel::scalar && n <= detail::vector_walk_limit) {
      constexpr std::size_t cap = 256;
      std::size_t kept[cap];
      while (w.chosen < k) {
        const std::size_t first = w.chosen;
        const std::size_t got = detail::select_sampling(kernel, rng.key(), n, k, w, kept, cap);
        for (std::size_t j = 0; j < got; ++j) fn(first + j, kept[j]);
        if (got < cap) break;
      }
    }
#endif
    for (; w.i < n && w.chosen < k; ++w.i) {
      // Knuth's selection sampling: keep i with probability (still needed) / (still left).
      if (static_cast<double>(n - w.i) * rng.uniform(w.i) < static_cast<double>(k - w.chosen)) {
        fn(w.chosen++, w.i);
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

#pragma once
/// \file
/// ZeRO partition geometries: who owns which elements of a model's tensors.
///
/// A model is a list of tensor sizes (in elements). A geometry cuts it into one *shard* per
/// rank and says, for every rank, which pieces of which tensors its shard holds, in shard
/// order: a list of `segment`s (tensor, offset in the tensor, length), some of which may
/// be *padding* (elements past the end of a tensor that exist only so that shards or
/// pieces have equal sizes; they are always zero). Every element of every tensor belongs
/// to exactly one segment of exactly one rank (the partition is an exact cover), and every
/// rank lists its segments in increasing tensor order, so the part of a shard that belongs
/// to a group of consecutive tensors (a bucket) is contiguous.
///
/// Three geometries, as in the frameworks that made them popular:
///  - `flat`: the tensors concatenated, the total padded to a multiple of
///    world x alignment, cut into equal contiguous ranges. A tensor may straddle a rank
///    boundary (at most world - 1 tensors do). DeepSpeed ZeRO-1/2, FSDP1.
///  - `per_tensor`: every tensor padded to a multiple of world x alignment and cut into
///    world equal pieces; rank r owns piece r of every tensor. A bucket of tensors laid out
///    rank-major (all of rank 0's pieces, then rank 1's, ...) moves with one reduce-scatter
///    or all-gather of equal blocks. DeepSpeed ZeRO-3, FSDP2.
///  - `whole_tensor`: whole tensors assigned to ranks, largest first, each to the least
///    loaded rank (ties: the lower tensor index first, the lower rank). No padding; shards
///    are uneven. torch's ZeroRedundancyOptimizer.
///
/// All functions are pure and `constexpr`: a partition of a constexpr size list can be
/// computed and checked at compile time.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <numeric>
#include <span>
#include <stdexcept>
#include <string_view>
#include <vector>

namespace chorus::inline v0::zero {

/// A run of consecutive elements of one tensor held by one rank. A padding segment covers
/// positions `[offset, offset + length)` past the end of tensor `tensor` (those elements
/// exist only in the sharded layout, and are zero).
struct segment {
  std::size_t tensor = 0;
  std::size_t offset = 0;
  std::size_t length = 0;
  bool padding = false;
  friend constexpr bool operator==(const segment&, const segment&) = default;
};

/// The result of a geometry: each rank's segments in shard order.
struct partition {
  std::vector<std::size_t> sizes;            ///< the tensor sizes partitioned
  std::vector<std::vector<segment>> shards;  ///< shards[r]: rank r's segments, in order

  [[nodiscard]] constexpr int world() const noexcept { return static_cast<int>(shards.size()); }
  /// Elements of rank r's shard, padding included.
  [[nodiscard]] constexpr std::size_t shard_size(int r) const noexcept {
    std::size_t n = 0;
    for (const segment& s : shards[static_cast<std::size_t>(r)]) n += s.length;
    return n;
  }
  /// Padding elements of rank r's shard.
  [[nodiscard]] constexpr std::size_t padding(int r) const noexcept {
    std::size_t n = 0;
    for (const segment& s : shards[static_cast<std::size_t>(r)]) n += s.padding ? s.length : 0;
    return n;
  }
  /// The largest shard.
  [[nodiscard]] constexpr std::size_t max_shard_size() const noexcept {
    std::size_t m = 0;
    for (int r = 0; r < world(); ++r) m = std::max(m, shard_size(r));
    return m;
  }
  /// Total elements of the tensors (no padding).
  [[nodiscard]] constexpr std::size_t elements() const noexcept {
    std::size_t n = 0;
    for (std::size_t s : sizes) n += s;
    return n;
  }
};

namespace detail {
/// Checks the arguments and returns a partition of `sizes` with `world` empty shards.
constexpr partition empty_partition(std::span<const std::size_t> sizes, int world,
                                    std::size_t alignment) {
  if (world < 1) throw std::invalid_argument("chorus::zero: the world size must be at least 1");
  if (alignment < 1) {
    throw std::invalid_argument("chorus::zero: the alignment must be at least 1 element");
  }
  return {{sizes.begin(), sizes.end()},
          std::vector<std::vector<segment>>(static_cast<std::size_t>(world))};
}
constexpr std::size_t round_up(std::size_t n, std::size_t unit) {
  return (n + unit - 1) / unit * unit;
}
constexpr void push(std::vector<segment>& v, segment s) {
  if (s.length != 0) v.push_back(s);
}
}  // namespace detail

/// Flat geometry: concatenate, pad the total to a multiple of world x alignment, cut into
/// equal contiguous ranges. The padding is at the end of the last tensor's range.
struct flat {
  static constexpr std::string_view name = "flat";
  static constexpr std::uint32_t id = 1;
  std::size_t alignment = 1;  ///< shard sizes are multiples of this (elements)

  [[nodiscard]] constexpr partition operator()(std::span<const std::size_t> sizes,
                                               int world) const {
    partition p = detail::empty_partition(sizes, world, alignment);
    std::size_t total = 0;
    for (std::size_t s : sizes) total += s;
    const std::size_t padded = detail::round_up(total, static_cast<std::size_t>(world) * alignment);
    const std::size_t shard = padded / static_cast<std::size_t>(world);
    std::size_t t = 0, start = 0;  // tensor t occupies [start, start + sizes[t])
    for (std::size_t r = 0; r < p.shards.size(); ++r) {
      const std::size_t lo = r * shard, hi = lo + shard;
      auto& out = p.shards[r];
      while (t < sizes.size() && start < hi) {
        const std::size_t a = std::max(lo, start), b = std::min(hi, start + sizes[t]);
        if (a < b) out.push_back({t, a - start, b - a, false});
        if (start + sizes[t] <= hi) {
          start += sizes[t];
          ++t;
        } else {
          break;
        }
      }
      if (hi > total && !sizes.empty()) {  // tail padding, owned by the last tensor
        const std::size_t a = std::max(lo, total);
        detail::push(out, {sizes.size() - 1, sizes.back() + (a - total), hi - a, true});
      }
    }
    return p;
  }
};

/// Per-tensor geometry: each tensor padded to a multiple of world x alignment and cut into
/// world equal pieces; rank r owns piece r of every tensor.
struct per_tensor {
  static constexpr std::string_view name = "per_tensor";
  static constexpr std::uint32_t id = 2;
  std::size_t alignment = 1;  ///< piece sizes are multiples of this (elements)

  [[nodiscard]] constexpr partition operator()(std::span<const std::size_t> sizes,
                                               int world) const {
    partition p = detail::empty_partition(sizes, world, alignment);
    const std::size_t w = static_cast<std::size_t>(world);
    for (std::size_t t = 0; t < sizes.size(); ++t) {
      const std::size_t piece = detail::round_up(sizes[t], w * alignment) / w;
      for (std::size_t r = 0; r < w; ++r) {
        const std::size_t lo = r * piece, hi = lo + piece;
        const std::size_t real_end = std::min(hi, std::max(lo, sizes[t]));
        detail::push(p.shards[r], {t, lo, real_end - lo, false});
        detail::push(p.shards[r], {t, real_end, hi - real_end, true});
      }
    }
    return p;
  }
};

/// Whole-tensor geometry: tensors assigned whole, largest first, to the least loaded rank.
/// Ties: equal sizes in tensor order; equal loads to the lower rank. No padding.
struct whole_tensor {
  static constexpr std::string_view name = "whole_tensor";
  static constexpr std::uint32_t id = 3;

  [[nodiscard]] constexpr partition operator()(std::span<const std::size_t> sizes,
                                               int world) const {
    partition p = detail::empty_partition(sizes, world, 1);
    // (n, 0), not (n): clang 14 with libstdc++ 12 rejects a value-initialised vector in a
    // constant expression.
    std::vector<std::size_t> order(sizes.size(), 0);
    for (std::size_t t = 0; t < order.size(); ++t) order[t] = t;
    std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
      return sizes[a] != sizes[b] ? sizes[a] > sizes[b] : a < b;
    });
    std::vector<std::size_t> load(static_cast<std::size_t>(world), 0);
    std::vector<int> owner(sizes.size(), 0);
    for (std::size_t t : order) {
      const auto least = std::min_element(load.begin(), load.end());  // first minimum
      owner[t] = static_cast<int>(least - load.begin());
      *least += sizes[t];
    }
    for (std::size_t t = 0; t < sizes.size(); ++t) {
      detail::push(p.shards[static_cast<std::size_t>(owner[t])], {t, 0, sizes[t], false});
    }
    return p;
  }
};

/// A partition geometry: called with the tensor sizes and the world size.
template <class G>
concept geometry = requires(const G& g, std::span<const std::size_t> sizes, int world) {
  { g(sizes, world) } -> std::same_as<partition>;
  { G::name } -> std::convertible_to<std::string_view>;
  { G::id } -> std::convertible_to<std::uint32_t>;
};

}  // namespace chorus::inline v0::zero

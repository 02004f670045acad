#pragma once
/// \file
/// Cutting a vector into blocks: the even split every collective uses to share `n` elements
/// among P ranks (schedules, the one-sided executor, the compressed collectives), and the
/// prefix offsets of a list of block counts.
#include <algorithm>
#include <cstddef>
#include <span>
#include <vector>

namespace chorus::inline v0::detail {

/// `n` elements cut into `k` blocks as evenly as possible: every block has n / k elements
/// and the first n % k blocks one more.
struct even_split {
  std::size_t n = 0;
  std::size_t k = 1;
  [[nodiscard]] constexpr std::size_t offset(std::size_t j) const noexcept {
    return j * (n / k) + std::min(j, n % k);
  }
  [[nodiscard]] constexpr std::size_t size(std::size_t j) const noexcept {
    return n / k + (j < n % k ? 1 : 0);
  }
  /// The k block sizes.
  [[nodiscard]] std::vector<std::size_t> sizes() const {
    std::vector<std::size_t> s(k);
    for (std::size_t j = 0; j < k; ++j) s[j] = size(j);
    return s;
  }
  /// The k + 1 block boundaries.
  [[nodiscard]] std::vector<std::size_t> bounds() const {
    std::vector<std::size_t> b(k + 1);
    for (std::size_t j = 0; j <= k; ++j) b[j] = offset(j);
    return b;
  }
};

/// Prefix sums of `counts`: block j is [b[j], b[j+1]); b.back() is the total.
inline std::vector<std::size_t> prefix_offsets(std::span<const std::size_t> counts) {
  std::vector<std::size_t> b(counts.size() + 1, 0);
  for (std::size_t j = 0; j < counts.size(); ++j) b[j + 1] = b[j] + counts[j];
  return b;
}

}  // namespace chorus::inline v0::detail

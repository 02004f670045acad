#pragma once
/// \file
/// The median chorus quotes for repeated timings (`chorus::calibrate`, the benchmark
/// tools): of an even count, the mean of the two middle values; 0 for none.
#include <algorithm>
#include <cstddef>
#include <vector>

namespace chorus::inline v0::detail {

inline double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const std::size_t m = v.size() / 2;
  return v.size() % 2 == 1 ? v[m] : (v[m - 1] + v[m]) / 2;
}

}  // namespace chorus::inline v0::detail

#pragma once
// The median the benchmark tools quote (chorus-perf's --compare and --calibrate,
// chorus-compress-perf): of an even count, the mean of the two middle values; 0 for none.
#include <algorithm>
#include <cstddef>
#include <vector>

namespace chorus_perf {

inline double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const std::size_t m = v.size() / 2;
  return v.size() % 2 == 1 ? v[m] : (v[m - 1] + v[m]) / 2;
}

}  // namespace chorus_perf

#pragma once
// The median the benchmark tools quote (chorus-perf's --compare, chorus-compress-perf):
// chorus's own (chorus/core/median.hpp), the one chorus::calibrate quotes.
#include <chorus/core/median.hpp>

namespace chorus_perf {

using chorus::detail::median;

}  // namespace chorus_perf

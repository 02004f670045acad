#pragma once
/// \file
/// `detail::reduce_elements`: the element-wise loop every host reduction runs, with the
/// fused 16-bit kernels of `core/float16.hpp` for sums and products of half and bfloat16.
/// Kept apart from `core/ops.hpp` (the op tags), which stays free of the SIMD headers.
#include <chorus/core/float16.hpp>
#include <chorus/core/ops.hpp>
#include <chorus/core/types.hpp>

#include <cstddef>
#include <type_traits>

namespace chorus::inline v0::detail {

/// `dst[i] = op(a[i], b[i])` for i < n. `dst` may equal `a` (in-place accumulate).
/// Sums and products of half and bfloat16 go through the block conversions of
/// `core/float16.hpp` (the same bits, several times faster than element by element).
template <class T, class Op>
inline void reduce_elements(T* dst, const T* a, const T* b, std::size_t n, const Op& op) {
  if constexpr (is_float16_v<T> && (std::is_same_v<Op, plus> || std::is_same_v<Op, average> ||
                                    std::is_same_v<Op, multiplies>)) {
    reduce_float16(dst, a, b, n, std::is_same_v<Op, multiplies>);
  } else {
    for (std::size_t i = 0; i < n; ++i) dst[i] = static_cast<T>(op(a[i], b[i]));
  }
}

}  // namespace chorus::inline v0::detail

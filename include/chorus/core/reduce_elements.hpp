#pragma once
/// \file
/// `detail::reduce_elements`: the element-wise loop every host reduction runs, with the
/// 16-bit kernels of `core/float16.hpp` for half and bfloat16: fused sums and products, and
/// minimum and maximum on the bit patterns.
/// Kept apart from `core/ops.hpp` (the op tags), which stays free of the SIMD headers.
#include <chorus/core/float16.hpp>
#include <chorus/core/ops.hpp>
#include <chorus/core/types.hpp>

#include <cstddef>
#include <type_traits>

namespace chorus::inline v0::detail {

/// `dst[i] = op(a[i], b[i])` for i < n. `dst` may equal `a` (in-place accumulate).
/// Sums and products of half and bfloat16 go through the block conversions of
/// `core/float16.hpp`, minimum and maximum compare their bits (the same bits either way,
/// several times faster than element by element).
template <class T, class Op>
inline void reduce_elements(T* dst, const T* a, const T* b, std::size_t n, const Op& op) {
  if constexpr (is_float16_v<T> && (std::is_same_v<Op, plus> || std::is_same_v<Op, average> ||
                                    std::is_same_v<Op, multiplies>)) {
    reduce_float16(dst, a, b, n, std::is_same_v<Op, multiplies>);
  } else if constexpr (is_float16_v<T> &&
                       (std::is_same_v<Op, minimum> || std::is_same_v<Op, maximum>)) {
    select_float16<T, std::is_same_v<Op, maximum>>(dst, a, b, n);
  } else {
    for (std::size_t i = 0; i < n; ++i) dst[i] = static_cast<T>(op(a[i], b[i]));
  }
}

}  // namespace chorus::inline v0::detail

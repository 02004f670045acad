#pragma once
/// \file
/// `device::reduce` and `device::finalize`: the element-wise reduction of two device arrays
/// and the last step of `average`, as kernels enqueued on a CUDA stream.
///
/// Semantics are the host ops' (core/ops.hpp), element for element: integers wrap; min and
/// max return the NaN operand when there is one (else the smaller / larger operand, bits
/// unchanged); half and bfloat16 (and fp8, device only) are widened to float, combined, and
/// rounded to nearest even; `average` sums, and `finalize` divides by the rank count once.
/// Non-NaN results are bit-identical to the host's; a NaN result is a NaN whose payload may
/// differ (the GPU makes NaNs canonical).
///
/// Pointers are device memory (or managed / mapped memory the device can reach). Arrays
/// whose addresses agree modulo 16 bytes move in 16-byte vectors after a scalar head, with
/// a scalar tail; any other alignment runs element by element, correct but slower.
#include <chorus/core/ops.hpp>
#include <chorus/device/convert.cuh>
#include <chorus/device/launch.cuh>

#include <cstddef>
#include <type_traits>

namespace chorus::inline v0::device {

namespace detail {

template <class Op>
inline constexpr bool is_builtin_sum_v =
    std::is_same_v<Op, chorus::plus> || std::is_same_v<Op, chorus::average>;

/// `op(a, b)` on the device: the built-ins on narrow floats run with the fast conversions
/// of convert.cuh (same bits as the host's element-wise code); everything else calls the
/// op itself, which must be callable in device code (the built-ins are; user functors are
/// marked `__host__ __device__`).
template <class Op, class T>
struct combiner {
  Op op;
  __device__ T operator()(T a, T b) const {
    if constexpr (is_narrow_float_v<T> &&
                  (is_builtin_sum_v<Op> || std::is_same_v<Op, chorus::multiplies>)) {
      const float x = widen(a), y = widen(b);
      return narrow<T>(is_builtin_sum_v<Op> ? __fadd_rn(x, y) : __fmul_rn(x, y));
    } else if constexpr (is_narrow_float_v<T> && (std::is_same_v<Op, chorus::minimum> ||
                                                  std::is_same_v<Op, chorus::maximum>)) {
      const float x = widen(a), y = widen(b);
      if (isnan(x)) return a;
      if (isnan(y)) return b;
      if constexpr (std::is_same_v<Op, chorus::minimum>) {
        return y < x ? b : a;
      } else {
        return x < y ? b : a;
      }
    } else {
      return static_cast<T>(op(a, b));
    }
  }
};

/// `op.finalize(v, ranks)` on the device (narrow floats: divide in float, round once).
template <class Op, class T>
struct finalizer {
  Op op;
  int ranks;
  __device__ T operator()(T v) const {
    if constexpr (is_narrow_float_v<T>) {
      return narrow<T>(__fdiv_rn(widen(v), static_cast<float>(ranks)));
    } else {
      return static_cast<T>(op.finalize(v, ranks));
    }
  }
};

/// out[i] = f(a[i], b[i]) (Binary) or f(a[i]) for the elements of `s`, 16-byte vectors
/// through the body, the scalar head and tail spread over the threads.
template <bool Binary, class F, class T>
__global__ void __launch_bounds__(block_threads)
    elementwise_kernel(F f, split s, T* out, const T* a, const T* b) {
  constexpr std::size_t lanes = vec16<T>::lanes;
  constexpr unsigned per_thread = vectors_per_thread;
  const std::size_t threads = static_cast<std::size_t>(gridDim.x) * blockDim.x;
  T* out_body = out + s.head;
  const T* a_body = a + s.head;
  const T* b_body = Binary ? b + s.head : nullptr;
  for (std::size_t base =
           static_cast<std::size_t>(blockIdx.x) * blockDim.x * per_thread + threadIdx.x;
       base < s.vectors; base += threads * per_thread) {
    vec16<T> x[per_thread], y[per_thread];
#pragma unroll
    for (unsigned k = 0; k < per_thread; ++k) {  // every load issued before the first use
      const std::size_t v = base + k * blockDim.x;
      if (v < s.vectors) {
        x[k] = load16(a_body + v * lanes);
        if constexpr (Binary) y[k] = load16(b_body + v * lanes);
      }
    }
#pragma unroll
    for (unsigned k = 0; k < per_thread; ++k) {
      const std::size_t v = base + k * blockDim.x;
      if (v < s.vectors) {
#pragma unroll
        for (std::size_t j = 0; j < lanes; ++j) {
          if constexpr (Binary) {
            x[k].v[j] = f(x[k].v[j], y[k].v[j]);
          } else {
            x[k].v[j] = f(x[k].v[j]);
          }
        }
        store16(out_body + v * lanes, x[k]);
      }
    }
  }
  const std::size_t scalars = s.scalars(lanes);
  for (std::size_t k = static_cast<std::size_t>(blockIdx.x) * blockDim.x + threadIdx.x; k < scalars;
       k += threads) {
    const std::size_t i = s.scalar_index(k, lanes);
    if constexpr (Binary) {
      out[i] = f(a[i], b[i]);
    } else {
      out[i] = f(a[i]);
    }
  }
}

/// Splits n elements for 16-byte access and launches the element-wise kernel.
template <bool Binary, class F, class T>
void run_elementwise(const char* what, F f, T* out, const T* a, const T* b, std::size_t n,
                     cudaStream_t stream) {
  const split s = Binary ? split_for<T>(n, out, a, b) : split_for<T>(n, out, a);
  const unsigned blocks =
      s.vectors > 0 ? blocks_for(s.vectors, vectors_per_thread) : blocks_for(n, 1);
  launch(what, elementwise_kernel<Binary, F, T>, blocks, stream, f, s, out, a, b);
}

template <class Op, class T>
consteval void check_device_op() {
  static_assert(device_element<T>,
                "chorus::device: the element type must be a chorus element type (integers, "
                "float, double, chorus::half, chorus::bfloat16) or __nv_fp8_e4m3 / "
                "__nv_fp8_e5m2.");
  if constexpr (element_type<T>) {
    chorus::detail::check_reduction_op<Op, T>();
  } else {
    static_assert(!is_bitwise_op_v<Op>,
                  "chorus::device: bit_and, bit_or and bit_xor reduce integer element types "
                  "only; fp8 reduces with plus, multiplies, minimum, maximum, average or a "
                  "custom op.");
  }
}

}  // namespace detail

/// `out[i] = op(a[i], b[i])` for i < n, enqueued on `stream`; returns without waiting.
///
/// `a`, `b` and `out` are device pointers to n elements; `out` may be `a` or `b` (in place)
/// but must not overlap them otherwise. `Op` is a built-in op (`average` sums here; see
/// `finalize`) or a functor whose call operator is `__host__ __device__` (or `__device__`).
///
/// Errors: `chorus::error` with `invalid_argument` for a null pointer with n > 0 or a
/// partial overlap (before anything is enqueued), and with CUDA's text when the launch
/// fails. Errors inside the kernel surface at the next synchronisation of `stream`.
template <class Op, class T>
void reduce(const Op& op, const T* a, const T* b, T* out, std::size_t n, cudaStream_t stream) {
  detail::check_device_op<Op, T>();
  if (n == 0) return;
  detail::check_pointer(a, n, "reduce", "a");
  detail::check_pointer(b, n, "reduce", "b");
  detail::check_pointer(out, n, "reduce", "out");
  detail::check_overlap(out, n * sizeof(T), a, n * sizeof(T), "reduce");
  detail::check_overlap(out, n * sizeof(T), b, n * sizeof(T), "reduce");
  detail::run_elementwise<true>("launching chorus::device::reduce", detail::combiner<Op, T>{op},
                                out, a, b, n, stream);
}

/// `data[i] = op.finalize(data[i], ranks)` for i < n, enqueued on `stream`: turns the sum
/// that `reduce` built for `average` into the mean (integers truncate toward zero; narrow
/// floats divide in float and round once). Only ops with a `finalize` (among the built-ins,
/// `average`) are accepted; `ranks` must be positive.
template <class Op, class T>
void finalize(const Op& op, T* data, std::size_t n, int ranks, cudaStream_t stream) {
  static_assert(device_element<T>, "chorus::device::finalize: unsupported element type.");
  if constexpr (element_type<T>) {
    static_assert(finalizing_op<Op, T>,
                  "chorus::device::finalize takes an op with a finalize step (chorus::average); "
                  "other ops need no final step.");
  } else {
    static_assert(std::is_same_v<Op, chorus::average>,
                  "chorus::device::finalize of fp8 takes chorus::average.");
  }
  if (ranks <= 0) {
    throw error(errc::invalid_argument, "chorus::device::finalize: ranks is " +
                                            std::to_string(ranks) + "; it must be positive");
  }
  if (n == 0) return;
  detail::check_pointer(data, n, "finalize", "data");
  detail::run_elementwise<false>(
      "launching chorus::device::finalize", detail::finalizer<Op, T>{op, ranks}, data,
      static_cast<const T*>(data), static_cast<const T*>(nullptr), n, stream);
}

}  // namespace chorus::inline v0::device

// The reduction kernels of the GPU tests: every op x element type of chorus::device::reduce
// and finalize, instantiated here and reached from device_test.cpp through kernels.hpp.
#include <chorus/device/reduce.cuh>

#include "kernels.hpp"

#include <cstdint>
#include <stdexcept>

namespace chorus_test {
namespace {

/// f(T{}) for the element type named by `t`.
template <class F>
void with_dtype(chorus::dtype t, F&& f) {
  using chorus::dtype;
  switch (t) {
    case dtype::int8:
      return f(std::int8_t{});
    case dtype::uint8:
      return f(std::uint8_t{});
    case dtype::int16:
      return f(std::int16_t{});
    case dtype::uint16:
      return f(std::uint16_t{});
    case dtype::int32:
      return f(std::int32_t{});
    case dtype::uint32:
      return f(std::uint32_t{});
    case dtype::int64:
      return f(std::int64_t{});
    case dtype::uint64:
      return f(std::uint64_t{});
    case dtype::float16:
      return f(chorus::half{});
    case dtype::bfloat16:
      return f(chorus::bfloat16{});
    case dtype::float32:
      return f(float{});
    case dtype::float64:
      return f(double{});
    case dtype::byte:
    case dtype::user:
      break;  // no device kernels: moved, not reduced
  }
  throw std::invalid_argument("chorus_test: no device kernels for this dtype");
}

/// f(Op{}) for the op named by `k` (custom: spread_op).
template <class F>
void with_op(chorus::op_kind k, F&& f) {
  using chorus::op_kind;
  switch (k) {
    case op_kind::sum:
      return f(chorus::plus{});
    case op_kind::product:
      return f(chorus::multiplies{});
    case op_kind::min:
      return f(chorus::minimum{});
    case op_kind::max:
      return f(chorus::maximum{});
    case op_kind::average:
      return f(chorus::average{});
    case op_kind::bit_and:
      return f(chorus::bit_and{});
    case op_kind::bit_or:
      return f(chorus::bit_or{});
    case op_kind::bit_xor:
      return f(chorus::bit_xor{});
    case op_kind::custom:
      return f(spread_op{});
  }
  throw std::invalid_argument("chorus_test: unknown op");
}

template <class F>
void with_fp8(fp8 t, F&& f) {
  if (t == fp8::e4m3) return f(__nv_fp8_e4m3{});
  return f(__nv_fp8_e5m2{});
}

template <class Op, class T>
void reduce_as(Op op, const void* a, const void* b, void* out, std::size_t n, cudaStream_t stream) {
  if constexpr (chorus::is_bitwise_op_v<Op> && !std::is_integral_v<T>) {
    throw std::invalid_argument("chorus_test: bitwise op on a floating type");
  } else {
    chorus::device::reduce(op, static_cast<const T*>(a), static_cast<const T*>(b),
                           static_cast<T*>(out), n, stream);
  }
}

// Every float bit pattern through both narrowing conversions, every 16-bit pattern through
// both widening ones; mismatches against the host's functions (run on the device) counted.
__global__ void conversion_kernel(unsigned long long* counts) {
  const std::uint64_t threads = static_cast<std::uint64_t>(gridDim.x) * blockDim.x;
  unsigned long long to_half = 0, to_bf = 0, from_half = 0, from_bf = 0, to_e4m3 = 0, to_e5m2 = 0;
  for (std::uint64_t i = static_cast<std::uint64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
       i < (std::uint64_t{1} << 32); i += threads) {
    const float f = __uint_as_float(static_cast<std::uint32_t>(i));
    to_half +=
        chorus::device::detail::float_to_half_bits(f) != chorus::detail::float_to_half_bits(f);
    to_bf += chorus::device::detail::float_to_bfloat16_bits(f) !=
             chorus::detail::float_to_bfloat16_bits(f);
    // fp8: the fast path against cuda_fp8.h's software rounding, NaN for NaN
    const auto fp8_differs = [f](auto tag) {
      using T = decltype(tag);
      const __nv_fp8_storage_t fast = chorus::device::detail::float_to_fp8_bits<T>(f);
      const __nv_fp8_storage_t soft = __nv_cvt_float_to_fp8(
          f, __NV_NOSAT, std::is_same_v<T, __nv_fp8_e4m3> ? __NV_E4M3 : __NV_E5M2);
      const auto as_float = [](__nv_fp8_storage_t v) {
        return __half2float(__half(
            __nv_cvt_fp8_to_halfraw(v, std::is_same_v<T, __nv_fp8_e4m3> ? __NV_E4M3 : __NV_E5M2)));
      };
      return fast != soft && !(isnan(as_float(fast)) && isnan(as_float(soft)));
    };
    to_e4m3 += fp8_differs(__nv_fp8_e4m3{});
    to_e5m2 += fp8_differs(__nv_fp8_e5m2{});
    if (i < 65536) {
      const auto h = static_cast<std::uint16_t>(i);
      from_half += __float_as_uint(chorus::device::detail::half_bits_to_float(h)) !=
                   __float_as_uint(chorus::detail::half_bits_to_float(h));
      from_bf += __float_as_uint(chorus::device::detail::bfloat16_bits_to_float(h)) !=
                 __float_as_uint(chorus::detail::bfloat16_bits_to_float(h));
    }
  }
  atomicAdd(&counts[4], to_e4m3);
  atomicAdd(&counts[5], to_e5m2);
  atomicAdd(&counts[0], to_half);
  atomicAdd(&counts[1], from_half);
  atomicAdd(&counts[2], to_bf);
  atomicAdd(&counts[3], from_bf);
}

}  // namespace

void device_reduce(chorus::op_kind op, chorus::dtype t, const void* a, const void* b, void* out,
                   std::size_t n, cudaStream_t stream) {
  with_dtype(t, [&]<class T>(T) {
    with_op(op, [&]<class Op>(Op o) { reduce_as<Op, T>(o, a, b, out, n, stream); });
  });
}

void device_reduce_fp8(chorus::op_kind op, fp8 t, const void* a, const void* b, void* out,
                       std::size_t n, cudaStream_t stream) {
  with_fp8(t, [&]<class T>(T) {
    with_op(op, [&]<class Op>(Op o) {
      if constexpr (std::is_same_v<Op, spread_op>) {
        throw std::invalid_argument("chorus_test: spread_op is not defined for fp8");
      } else {
        reduce_as<Op, T>(o, a, b, out, n, stream);
      }
    });
  });
}

void device_finalize(chorus::dtype t, void* data, std::size_t n, int ranks, cudaStream_t stream) {
  with_dtype(t, [&]<class T>(T) {
    chorus::device::finalize(chorus::average{}, static_cast<T*>(data), n, ranks, stream);
  });
}

void device_finalize_fp8(fp8 t, void* data, std::size_t n, int ranks, cudaStream_t stream) {
  with_fp8(t, [&]<class T>(T) {
    chorus::device::finalize(chorus::average{}, static_cast<T*>(data), n, ranks, stream);
  });
}

conversion_mismatches device_conversion_mismatches() {
  unsigned long long* counts = nullptr;
  unsigned long long host[6] = {};
  chorus::device::check(cudaMalloc(&counts, sizeof host), "cudaMalloc");
  try {
    chorus::device::check(cudaMemset(counts, 0, sizeof host), "cudaMemset");
    conversion_kernel<<<4096, 256>>>(counts);
    chorus::device::check(cudaGetLastError(), "launching conversion_kernel");
    chorus::device::check(cudaMemcpy(host, counts, sizeof host, cudaMemcpyDeviceToHost),
                          "cudaMemcpy");
  } catch (...) {
    (void)cudaFree(counts);
    throw;
  }
  (void)cudaFree(counts);
  return {host[0], host[1], host[2], host[3], host[4], host[5]};
}

}  // namespace chorus_test

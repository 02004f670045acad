#pragma once
// The seam between the GPU tests (device_test.cpp, compiled by the host compiler, where the
// references and Catch2 live) and the kernels (reduce_kernels.cu and move_kernels.cu,
// compiled by nvcc): plain functions over run-time tags, so that each side is compiled by
// the compiler it needs and nvcc never parses Catch2. Every function forwards to the
// chorus::device call of the same name, instantiated for the tagged types.
#include <chorus/core/ops.hpp>
#include <chorus/core/types.hpp>

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <type_traits>

namespace chorus_test {

/// The user functor of the tests: |a - b| (integers modulo 2^bits), written as a user would,
/// callable on the host (the reference) and on the device (CHORUS_HOST_DEVICE is
/// `__host__ __device__` under nvcc). Not associative, which does not matter element-wise.
struct spread_op {
  template <class T>
  CHORUS_HOST_DEVICE constexpr T operator()(T a, T b) const noexcept {
    if constexpr (std::is_integral_v<T>) {
      using U = chorus::detail::wrap_t<T>;
      return a < b ? static_cast<T>(U(b) - U(a)) : static_cast<T>(U(a) - U(b));
    } else {
      return a < b ? b - a : a - b;
    }
  }
};

/// The fp8 types of the device layer (device only: not chorus element types).
enum class fp8 { e4m3, e5m2 };

/// chorus::device::reduce for element type `t` and op `op` (`op_kind::custom`: spread_op).
void device_reduce(chorus::op_kind op, chorus::dtype t, const void* a, const void* b, void* out,
                   std::size_t n, cudaStream_t stream);
void device_reduce_fp8(chorus::op_kind op, fp8 t, const void* a, const void* b, void* out,
                       std::size_t n, cudaStream_t stream);
/// chorus::device::finalize(chorus::average{}, ...).
void device_finalize(chorus::dtype t, void* data, std::size_t n, int ranks, cudaStream_t stream);
void device_finalize_fp8(fp8 t, void* data, std::size_t n, int ranks, cudaStream_t stream);

/// Counts of the conversions of device/convert.cuh that differ from the reference, over
/// every float and every 16-bit pattern: the 16-bit ones against the host's (core/types.hpp,
/// run on the device), the fp8 fast path against cuda_fp8.h's software rounding.
struct conversion_mismatches {
  std::uint64_t to_half = 0, from_half = 0, to_bfloat16 = 0, from_bfloat16 = 0, to_e4m3 = 0,
                to_e5m2 = 0;
};
conversion_mismatches device_conversion_mismatches();

/// device/launch.cuh's split of n elements of `elem_bytes` bytes at addresses p0, p1, p2
/// into a scalar head, 16-byte vectors and a scalar tail (host code: runs without a GPU).
struct vector_split {
  std::size_t head = 0, vectors = 0, lanes = 0;
};
vector_split device_split(std::size_t elem_bytes, std::size_t n, std::uintptr_t p0,
                          std::uintptr_t p1, std::uintptr_t p2);

/// chorus::device::copy / pack / unpack of elements of `elem_bytes` (1, 2, 4 or 8) bytes.
void device_copy(std::size_t elem_bytes, const void* src, void* dst, std::size_t n,
                 cudaStream_t stream);
void device_pack(std::size_t elem_bytes, bool gather, const void* src, void* dst, std::size_t count,
                 std::size_t length, std::size_t stride, cudaStream_t stream);

/// chorus::device::encode / decode_add of compress::cast<W> (wire: float16, bfloat16 or
/// float32) for gradients of float (`dbl` false) or double.
void device_cast_encode(chorus::dtype wire_type, bool dbl, bool pre_divide, int ranks,
                        const void* x, std::size_t n, void* wire, std::size_t wire_bytes,
                        cudaStream_t stream);
void device_cast_decode_add(chorus::dtype wire_type, bool dbl, bool pre_divide, int ranks,
                            const void* wire, std::size_t wire_bytes, void* y, std::size_t n,
                            cudaStream_t stream);
/// chorus::device::encode / decode_add of compress::block_quant<std::int8_t>{.block = block}.
void device_quant_encode(bool dbl, std::size_t block, const void* x, std::size_t n, void* wire,
                         std::size_t wire_bytes, cudaStream_t stream);
void device_quant_decode_add(bool dbl, std::size_t block, const void* wire, std::size_t wire_bytes,
                             void* y, std::size_t n, cudaStream_t stream);
/// chorus::device::encode / decode_add of compress::top_k{.ratio = ratio}.
void device_top_k_encode(bool dbl, double ratio, const void* x, std::size_t n, void* wire,
                         std::size_t wire_bytes, cudaStream_t stream);
void device_top_k_decode_add(bool dbl, double ratio, const void* wire, std::size_t wire_bytes,
                             void* y, std::size_t n, cudaStream_t stream);

}  // namespace chorus_test

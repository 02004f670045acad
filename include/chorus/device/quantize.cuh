#pragma once
/// \file
/// `compress::block_quant<std::int8_t>` on the device: per block of `block` elements a
/// float scale (max |x| / 127) and one int8 code per element, in the host codec's wire
/// format (compress/quantize.hpp: all the scales, then all the codes), so either side
/// decodes what the other encoded.
///
/// Bit-identical to the host for finite inputs: the block maximum is exact whatever the
/// order, and every later step (scale, reciprocal, product, round to nearest even, clamp,
/// and the decode's product and sum) rounds once, as the host does, with no fused
/// multiply-add. As on the host, NaN and infinite inputs give unspecified codes.
///
/// One thread block per quantisation block (grid-stride over more blocks than a launch
/// holds): the threads find the block's maximum together, then quantise its elements.
#include <chorus/compress/quantize.hpp>
#include <chorus/device/cast.cuh>
#include <chorus/device/launch.cuh>

#include <cstddef>
#include <cstdint>
#include <span>

namespace chorus::inline v0::device {

namespace detail {

/// The largest of every thread's `v` in the block (`block_threads` threads); the same
/// value in every thread. Values are never NaN here.
template <class T>
__device__ inline T block_max(T v) noexcept {
  __shared__ T partial[block_threads / 32];
  for (int offset = 16; offset > 0; offset /= 2) {
    const T other = __shfl_down_sync(0xffffffffu, v, offset);
    v = v < other ? other : v;
  }
  if (threadIdx.x % 32 == 0) partial[threadIdx.x / 32] = v;
  __syncthreads();
  T m = partial[0];
  for (unsigned w = 1; w < block_threads / 32; ++w) m = m < partial[w] ? partial[w] : m;
  __syncthreads();  // `partial` is reused by the next call
  return m;
}

template <class T>
__global__ void __launch_bounds__(block_threads)
    quant_encode_kernel(const T* x, float* scales, std::int8_t* codes, std::size_t n,
                        std::size_t block, std::size_t blocks) {
  for (std::size_t b = blockIdx.x; b < blocks; b += gridDim.x) {
    const std::size_t lo = b * block, hi = lo + block < n ? lo + block : n;
    // The host's max: amax < |x| ? |x| : amax, which never picks a NaN.
    T amax = 0;
    for (std::size_t i = lo + threadIdx.x; i < hi; i += blockDim.x) {
      const T a = x[i] < 0 ? -x[i] : x[i];
      amax = amax < a ? a : amax;
    }
    amax = block_max(amax);
    float amax_f;
    if constexpr (std::is_same_v<T, double>) {
      amax_f = host_double_to_float(amax);
    } else {
      amax_f = amax;
    }
    const float scale = __fdiv_rn(amax_f, 127.0f);
    if (threadIdx.x == 0) scales[b] = scale;
    T inv = 0;
    if (scale > 0) {
      if constexpr (std::is_same_v<T, double>) {
        inv = __ddiv_rn(1.0, static_cast<double>(scale));
      } else {
        inv = __fdiv_rn(1.0f, scale);
      }
    }
    for (std::size_t i = lo + threadIdx.x; i < hi; i += blockDim.x) {
      T q = rint(mul_rn(x[i], inv));  // nearest even, as std::nearbyint in the default mode
      q = q < T(-127) ? T(-127) : (T(127) < q ? T(127) : q);
      codes[i] = static_cast<std::int8_t>(q);
    }
  }
}

template <class T>
__global__ void __launch_bounds__(block_threads)
    quant_decode_add_kernel(const float* scales, const std::int8_t* codes, T* y, std::size_t n,
                            std::size_t block, std::size_t blocks) {
  for (std::size_t b = blockIdx.x; b < blocks; b += gridDim.x) {
    const std::size_t lo = b * block, hi = lo + block < n ? lo + block : n;
    const T scale = scales[b];
    for (std::size_t i = lo + threadIdx.x; i < hi; i += blockDim.x) {
      y[i] = add_rn(y[i], mul_rn(scale, static_cast<T>(codes[i])));
    }
  }
}

/// Blocks for a launch over `blocks` quantisation blocks (the kernels loop over more).
inline unsigned quant_grid(std::size_t blocks) noexcept {
  return static_cast<unsigned>(blocks < max_blocks ? blocks : max_blocks);
}

}  // namespace detail

/// Encodes the n device values `x` into the device buffer `wire`
/// (`codec.wire_bytes<T>(n)` bytes, 4-byte aligned), enqueued on `stream`.
template <compress::gradient_type T>
void encode(const compress::block_quant<std::int8_t>& codec, std::span<const T> x,
            std::span<std::byte> wire, const compress::context&, cudaStream_t stream) {
  compress::detail::check_wire("block_quant", wire.size(), codec.template wire_bytes<T>(x.size()));
  if (x.empty()) return;
  detail::check_pointer(x.data(), x.size(), "encode(block_quant)", "x");
  auto* scales = const_cast<float*>(detail::wire_array<float>(wire.data(), "encode(block_quant)"));
  const std::size_t blocks = compress::detail::ceil_div(x.size(), codec.block);
  auto* codes = reinterpret_cast<std::int8_t*>(wire.data() + sizeof(float) * blocks);
  detail::launch("launching chorus::device::encode(block_quant)", detail::quant_encode_kernel<T>,
                 detail::quant_grid(blocks), stream, x.data(), scales, codes, x.size(), codec.block,
                 blocks);
}

/// Adds the decoded values of the device buffer `wire` to the n device values `y`
/// (`y[i] += scale[i / block] * code[i]`), enqueued on `stream`.
template <compress::gradient_type T>
void decode_add(const compress::block_quant<std::int8_t>& codec, std::span<const std::byte> wire,
                std::span<T> y, const compress::context&, cudaStream_t stream) {
  compress::detail::check_wire("block_quant", wire.size(), codec.template wire_bytes<T>(y.size()));
  if (y.empty()) return;
  detail::check_pointer(y.data(), y.size(), "decode_add(block_quant)", "y");
  const float* scales = detail::wire_array<float>(wire.data(), "decode_add(block_quant)");
  const std::size_t blocks = compress::detail::ceil_div(y.size(), codec.block);
  const auto* codes = reinterpret_cast<const std::int8_t*>(wire.data() + sizeof(float) * blocks);
  detail::launch("launching chorus::device::decode_add(block_quant)",
                 detail::quant_decode_add_kernel<T>, detail::quant_grid(blocks), stream, scales,
                 codes, y.data(), y.size(), codec.block, blocks);
}

}  // namespace chorus::inline v0::device

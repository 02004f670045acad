#pragma once
/// \file
/// `compress::cast<W>` on the device: gradients of float or double rounded to half,
/// bfloat16 (or float, for double) into a device wire buffer, and widened and added back.
///
/// The wire is `compress::cast<W>`'s (compress/cast.hpp): n values of W, nothing
/// else, so a payload encoded on the GPU decodes on the host and the other way round.
/// The bits are the host's: encode is bit-identical for every input (NaN included) without
/// `pre_divide`; with it, a NaN input may come out with another NaN payload. decode_add is
/// bit-identical except for NaN payloads. No fused multiply-add: each step rounds like the
/// host's.
#include <chorus/compress/cast.hpp>
#include <chorus/device/convert.cuh>
#include <chorus/device/launch.cuh>

#include <cstddef>
#include <span>
#include <type_traits>

namespace chorus::inline v0::device {

namespace detail {

/// x * s with one rounding, never contracted into a fused multiply-add.
template <class T>
__device__ inline T mul_rn(T x, T s) noexcept {
  if constexpr (std::is_same_v<T, float>) {
    return __fmul_rn(x, s);
  } else {
    return __dmul_rn(x, s);
  }
}

/// y + x with one rounding, never contracted.
template <class T>
__device__ inline T add_rn(T y, T x) noexcept {
  if constexpr (std::is_same_v<T, float>) {
    return __fadd_rn(y, x);
  } else {
    return __dadd_rn(y, x);
  }
}

/// `static_cast<W>(v)` as the host's codec computes it (W: half, bfloat16 or float).
template <class W, class T>
__device__ inline W to_wire(T v) noexcept {
  float f;
  if constexpr (std::is_same_v<T, double>) {
    f = host_double_to_float(v);
  } else {
    f = v;
  }
  if constexpr (std::is_same_v<W, float>) {
    return f;
  } else {
    return narrow<W>(f);
  }
}

/// `static_cast<T>(w)` as the host's codec computes it.
template <class T, class W>
__device__ inline T from_wire(W w) noexcept {
  float f;
  if constexpr (std::is_same_v<W, float>) {
    f = w;
  } else {
    f = widen(w);
  }
  if constexpr (std::is_same_v<T, double>) {
    return host_float_to_double(f);
  } else {
    return f;
  }
}

template <class W, class T>
__global__ void __launch_bounds__(block_threads)
    cast_encode_kernel(const T* x, W* wire, std::size_t n, bool scaled, T scale) {
  const std::size_t threads = static_cast<std::size_t>(gridDim.x) * blockDim.x;
  for (std::size_t i = static_cast<std::size_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += threads) {
    wire[i] = to_wire<W>(scaled ? mul_rn(x[i], scale) : x[i]);
  }
}

template <class W, class T>
__global__ void __launch_bounds__(block_threads)
    cast_decode_add_kernel(const W* wire, T* y, std::size_t n, T scale) {
  const std::size_t threads = static_cast<std::size_t>(gridDim.x) * blockDim.x;
  for (std::size_t i = static_cast<std::size_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += threads) {
    y[i] = add_rn(y[i], mul_rn(from_wire<T>(wire[i]), scale));
  }
}

/// The wire as an array of W; throws `invalid_argument` when it is not aligned for W.
template <class W>
inline const W* wire_array(const std::byte* wire, const char* what) {
  if (reinterpret_cast<std::uintptr_t>(wire) % alignof(W) != 0) {
    throw error(errc::invalid_argument, std::string("chorus::device::") + what +
                                            ": the wire buffer is not aligned to " +
                                            std::to_string(alignof(W)) + " bytes");
  }
  return reinterpret_cast<const W*>(wire);
}

}  // namespace detail

/// Encodes the n device values `x` into the device buffer `wire`
/// (`codec.wire_bytes<T>(n)` bytes, aligned to `sizeof(W)`), enqueued on `stream`.
template <class W, compress::gradient_type T>
void encode(const compress::cast<W>& codec, std::span<const T> x, std::span<std::byte> wire,
            const compress::context& ctx, cudaStream_t stream) {
  compress::detail::check_wire("cast", wire.size(), codec.template wire_bytes<T>(x.size()));
  if (x.empty()) return;
  detail::check_pointer(x.data(), x.size(), "encode(cast)", "x");
  auto* out = const_cast<W*>(detail::wire_array<W>(wire.data(), "encode(cast)"));
  // The host's scale: 1 / ranks, computed in T.
  const T scale = codec.pre_divide ? T(1) / static_cast<T>(ctx.ranks) : T(1);
  detail::launch("launching chorus::device::encode(cast)", detail::cast_encode_kernel<W, T>,
                 detail::blocks_for(x.size(), 4), stream, x.data(), out, x.size(), codec.pre_divide,
                 scale);
}

/// Adds the decoded values of the device buffer `wire` to the n device values `y`
/// (`y[i] += T(w[i]) * (pre_divide ? ranks : 1)`), enqueued on `stream`.
template <class W, compress::gradient_type T>
void decode_add(const compress::cast<W>& codec, std::span<const std::byte> wire, std::span<T> y,
                const compress::context& ctx, cudaStream_t stream) {
  compress::detail::check_wire("cast", wire.size(), codec.template wire_bytes<T>(y.size()));
  if (y.empty()) return;
  detail::check_pointer(y.data(), y.size(), "decode_add(cast)", "y");
  const W* in = detail::wire_array<W>(wire.data(), "decode_add(cast)");
  const T scale = codec.pre_divide ? static_cast<T>(ctx.ranks) : T(1);
  detail::launch("launching chorus::device::decode_add(cast)", detail::cast_decode_add_kernel<W, T>,
                 detail::blocks_for(y.size(), 4), stream, in, y.data(), y.size(), scale);
}

}  // namespace chorus::inline v0::device

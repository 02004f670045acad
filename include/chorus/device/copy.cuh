#pragma once
/// \file
/// Stream-ordered data movement on the device: `copy` (a device-to-device copy of n
/// elements) and `pack` / `unpack` (gather equally strided blocks into a contiguous buffer,
/// and scatter them back), the staging steps of collectives over non-contiguous layouts.
///
/// Pointers are device memory (or memory the device can reach: managed, mapped host).
/// Everything is enqueued on the caller's stream and returns without waiting.
#include <chorus/device/launch.cuh>

#include <cstddef>
#include <string>

namespace chorus::inline v0::device {

/// `dst[i] = src[i]` for i < n, enqueued on `stream` (`cudaMemcpyAsync` with
/// `cudaMemcpyDefault`, so any pointers the device can reach work). `src == dst` is a no-op;
/// other overlaps are rejected with `invalid_argument`.
template <class T>
void copy(const T* src, T* dst, std::size_t n, cudaStream_t stream) {
  if (n == 0 || src == dst) return;
  detail::check_pointer(src, n, "copy", "src");
  detail::check_pointer(dst, n, "copy", "dst");
  detail::check_overlap(dst, n * sizeof(T), src, n * sizeof(T), "copy");
  check(cudaMemcpyAsync(dst, src, n * sizeof(T), cudaMemcpyDefault, stream),
        "cudaMemcpyAsync in chorus::device::copy");
}

/// A layout of `count` blocks of `length` elements each, block b starting at element
/// `b * stride` (stride >= length; stride == length is contiguous).
struct strided_blocks {
  std::size_t count = 0;
  std::size_t length = 0;
  std::size_t stride = 0;
};

namespace detail {

/// Moves every element of a strided layout: blockIdx.y walks the blocks, the x dimension
/// their elements, so neighbouring threads touch neighbouring addresses on both sides.
/// `Gather`: strided src -> contiguous dst; else contiguous src -> strided dst.
template <bool Gather, class T>
__global__ void __launch_bounds__(block_threads)
    strided_kernel(const T* src, T* dst, strided_blocks layout) {
  const std::size_t threads = static_cast<std::size_t>(gridDim.x) * blockDim.x;
  for (std::size_t b = blockIdx.y; b < layout.count; b += gridDim.y) {
    const std::size_t strided = b * layout.stride;
    const std::size_t packed = b * layout.length;
    for (std::size_t j = static_cast<std::size_t>(blockIdx.x) * blockDim.x + threadIdx.x;
         j < layout.length; j += threads) {
      if constexpr (Gather) {
        dst[packed + j] = src[strided + j];
      } else {
        dst[strided + j] = src[packed + j];
      }
    }
  }
}

template <bool Gather, class T>
void run_strided(const char* name, const T* src, T* dst, strided_blocks layout,
                 cudaStream_t stream) {
  if (layout.length > layout.stride) {
    throw error(errc::invalid_argument, std::string("chorus::device::") + name + ": length " +
                                            std::to_string(layout.length) + " exceeds stride " +
                                            std::to_string(layout.stride) +
                                            "; blocks would overlap");
  }
  const std::size_t n = layout.count * layout.length;
  if (n == 0) return;
  const std::size_t span = (layout.count - 1) * layout.stride + layout.length;
  check_pointer(src, n, name, "src");
  check_pointer(dst, n, name, "dst");
  const std::size_t src_elems = Gather ? span : n, dst_elems = Gather ? n : span;
  const auto* s = reinterpret_cast<const char*>(src);
  const auto* d = reinterpret_cast<const char*>(dst);
  if (s < d + dst_elems * sizeof(T) && d < s + src_elems * sizeof(T)) {
    throw error(errc::invalid_argument, std::string("chorus::device::") + name +
                                            ": src and dst overlap; pass separate buffers");
  }
  // x: enough blocks for one layout block (at most 64), y: the layout blocks (at most
  // 65,535 per launch dimension; the kernel loops over more).
  const unsigned x = blocks_for(layout.length, 1) < 64 ? blocks_for(layout.length, 1) : 64;
  const unsigned y = layout.count < 65535 ? static_cast<unsigned>(layout.count) : 65535;
  launch(Gather ? "launching chorus::device::pack" : "launching chorus::device::unpack",
         strided_kernel<Gather, T>, dim3(x, y), stream, src, dst, layout);
}

}  // namespace detail

/// Gathers the blocks of `layout` from `src` into the contiguous `dst`
/// (`layout.count * layout.length` elements): `dst[b * length + j] = src[b * stride + j]`.
/// Enqueued on `stream`; `src` and `dst` must not overlap.
template <class T>
void pack(const T* src, T* dst, strided_blocks layout, cudaStream_t stream) {
  detail::run_strided<true>("pack", src, dst, layout, stream);
}

/// The inverse of `pack`: `dst[b * stride + j] = src[b * length + j]`; the gaps between the
/// blocks of `dst` are left as they are.
template <class T>
void unpack(const T* src, T* dst, strided_blocks layout, cudaStream_t stream) {
  detail::run_strided<false>("unpack", src, dst, layout, stream);
}

}  // namespace chorus::inline v0::device

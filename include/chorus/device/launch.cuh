#pragma once
/// \file
/// What every chorus kernel shares: the launch shape, 16-byte vectors of elements, the
/// split of an array into an aligned vector body and scalar edges, and a checked launch.
#include <chorus/device/runtime.hpp>

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

namespace chorus::inline v0::device {

namespace detail {

/// Threads per block of the element-wise kernels. On sm_90 registers, not the SM's 2,048
/// threads, decide how many such blocks are resident: ptxas (CUDA 13.0, `-Xptxas -v` on
/// tests/cuda/reduce_kernels.cu for sm_90) gives `reduce` 57-64 registers for 32- and
/// 64-bit elements (4 blocks of 256 threads per SM), 64-71 for 16-bit elements (3-4
/// blocks), 58 for 8-bit plus and average (4 blocks), 97 for 8-bit bitwise ops and 112-119
/// for the other 8-bit ops and every fp8 op (2 blocks); `finalize` 40-53 (4-6 blocks); no
/// spills. The four vectors each thread keeps in flight per operand are what hides memory
/// latency at that occupancy. Not measured on a GPU yet (docs/gpu.md).
inline constexpr unsigned block_threads = 256;

/// 16-byte vectors each thread of the element-wise kernels keeps in flight: four loads per
/// operand issued before the first use hide the memory latency without needing more
/// resident threads. Not measured yet (no GPU where this was written, see docs/gpu.md).
inline constexpr unsigned vectors_per_thread = 4;

/// Most blocks one launch asks for; the kernels loop (grid-stride) over anything larger.
inline constexpr std::size_t max_blocks = 1u << 20;

/// Blocks for `work` items when every thread takes `per_thread` of them.
inline unsigned blocks_for(std::size_t work, std::size_t per_thread) noexcept {
  const std::size_t per_block = block_threads * per_thread;
  const std::size_t blocks = (work + per_block - 1) / per_block;
  return static_cast<unsigned>(blocks < 1 ? 1 : (blocks > max_blocks ? max_blocks : blocks));
}

/// Sixteen bytes of elements `T`, loaded and stored as one 128-bit access.
template <class T>
struct vec16 {
  static constexpr unsigned lanes = 16 / sizeof(T);
  T v[lanes];
};

template <class T>
__device__ inline vec16<T> load16(const T* p) noexcept {
  const uint4 raw = *reinterpret_cast<const uint4*>(p);
  vec16<T> out;
  memcpy(&out, &raw, 16);
  return out;
}

template <class T>
__device__ inline void store16(T* p, const vec16<T>& v) noexcept {
  uint4 raw;
  memcpy(&raw, &v, 16);
  *reinterpret_cast<uint4*>(p) = raw;
}

/// An array of n elements split for 16-byte access: `head` scalar elements until the
/// pointers reach a 16-byte boundary, `vectors` whole vectors, then the scalar rest.
/// When the pointers disagree on their offset within 16 bytes, everything is scalar.
struct split {
  std::size_t head = 0;
  std::size_t vectors = 0;
  std::size_t n = 0;
  /// Elements handled one by one: the head and the tail.
  [[nodiscard]] __host__ __device__ std::size_t scalars(std::size_t lanes) const noexcept {
    return n - vectors * lanes;
  }
  /// Index of the k-th scalar element (k < scalars()).
  [[nodiscard]] __host__ __device__ std::size_t scalar_index(std::size_t k,
                                                             std::size_t lanes) const noexcept {
    return k < head ? k : k + vectors * lanes;
  }
};

/// The split for pointers `p0, p...` to arrays of n elements `T`.
template <class T, class... P>
split split_for(std::size_t n, const void* p0, const P*... p) noexcept {
  constexpr std::size_t lanes = vec16<T>::lanes;
  split s;
  s.n = n;
  const std::uintptr_t first = reinterpret_cast<std::uintptr_t>(p0) % 16;
  const bool same = ((reinterpret_cast<std::uintptr_t>(p) % 16 == first) && ...);
  if (!same || first % sizeof(T) != 0) return s;  // all scalar
  const std::size_t head = first == 0 ? 0 : (16 - first) / sizeof(T);
  if (head >= n) {
    s.head = n;
    return s;
  }
  s.head = head;
  s.vectors = (n - head) / lanes;
  return s;
}

/// Launches `kernel<<<grid, block_threads, 0, stream>>>(args...)` and throws
/// `chorus::error` naming `what` when the launch fails (a kernel's own failure shows at the
/// next synchronisation, as for every CUDA kernel).
template <class... Params, class... Args>
void launch(const char* what, void (*kernel)(Params...), dim3 grid, cudaStream_t stream,
            Args&&... args) {
  cudaLaunchConfig_t config{};
  config.gridDim = grid;
  config.blockDim = dim3(block_threads);
  config.dynamicSmemBytes = 0;
  config.stream = stream;
  check(cudaLaunchKernelEx(&config, kernel, static_cast<Args&&>(args)...), what);
}

/// Throws `invalid_argument` when [a, a + a_bytes) and [b, b + b_bytes) overlap without
/// being the same range start (element-wise kernels allow exact aliasing only).
inline void check_overlap(const void* a, std::size_t a_bytes, const void* b, std::size_t b_bytes,
                          const char* what) {
  const auto x = reinterpret_cast<std::uintptr_t>(a);
  const auto y = reinterpret_cast<std::uintptr_t>(b);
  if (x == y || a_bytes == 0 || b_bytes == 0) return;
  if (x < y + b_bytes && y < x + a_bytes) {
    throw error(errc::invalid_argument,
                std::string("chorus::device::") + what +
                    ": the output partly overlaps an input; pass the same pointer for an "
                    "in-place operation, or buffers that do not overlap");
  }
}

/// Throws `invalid_argument` when a pointer is null while there are elements to touch.
inline void check_pointer(const void* p, std::size_t n, const char* what, const char* name) {
  if (p == nullptr && n != 0) {
    throw error(errc::invalid_argument, std::string("chorus::device::") + what + ": " + name +
                                            " is null with " + std::to_string(n) +
                                            " elements to process");
  }
}

}  // namespace detail

}  // namespace chorus::inline v0::device

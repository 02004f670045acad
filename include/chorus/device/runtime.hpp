#pragma once
/// \file
/// The host side of chorus's device layer: is a GPU usable here, and CUDA errors as
/// `chorus::error`. Plain C++ over the CUDA runtime API (`<cuda_runtime_api.h>`, link
/// `chorus::cuda` or `CUDA::cudart`): host compilers include it, nvcc is not needed. The
/// kernels themselves live in the `.cuh` headers beside it, which only nvcc compiles.
#include <chorus/core/error.hpp>

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>

namespace chorus::inline v0::device {

/// The chorus error code for a CUDA error: `invalid_argument` for the errors a caller's
/// arguments cause (bad pointer, stream, device, size, launch configuration), `transport`
/// for everything else (out of memory, a failed kernel, no driver, a lost device).
[[nodiscard]] inline errc errc_for(cudaError_t e) noexcept {
  switch (e) {
    case cudaErrorInvalidValue:
    case cudaErrorInvalidDevicePointer:
    case cudaErrorInvalidDevice:
    case cudaErrorInvalidConfiguration:
    case cudaErrorInvalidResourceHandle:
    case cudaErrorInvalidPitchValue:
    case cudaErrorInvalidMemcpyDirection:
    case cudaErrorInvalidSymbol:
    case cudaErrorInvalidDeviceFunction:
      return errc::invalid_argument;
    default:
      return errc::transport;
  }
}

/// The message `check` throws with: what was attempted, CUDA's error name and text.
[[nodiscard]] inline std::string message_for(cudaError_t e, const char* what) {
  std::string m = "chorus::device: ";
  m += what != nullptr ? what : "a CUDA call";
  m += " failed: ";
  m += cudaGetErrorName(e);
  m += " (";
  m += cudaGetErrorString(e);
  m += ")";
  if (errc_for(e) == errc::transport) {
    m += "; run under compute-sanitizer or with CUDA_LAUNCH_BLOCKING=1 to find the failing call";
  }
  return m;
}

/// Throws `chorus::error` when `e` is not `cudaSuccess`; `what` names the attempt
/// ("launching chorus::device::reduce", "cudaMemcpyAsync of 4096 bytes").
inline void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw error(errc_for(e), message_for(e, what));
}

/// Why no GPU can be used here, in CUDA's words (empty when one can). Asks the runtime for
/// the device count. (Where the runtime cannot initialise at all, e.g. without a driver,
/// every later CUDA call reports that same error again.)
[[nodiscard]] inline std::string unavailable_reason() {
  int count = 0;
  const cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess) {
    // Not sticky: clear it so that it does not surface in a later cudaGetLastError.
    (void)cudaGetLastError();
    return std::string(cudaGetErrorName(e)) + ": " + cudaGetErrorString(e);
  }
  if (count == 0) return "the CUDA runtime reports 0 devices";
  return {};
}

/// True when a CUDA device is present and the driver can use it.
[[nodiscard]] inline bool available() noexcept {
  try {
    return unavailable_reason().empty();
  } catch (...) {  // std::bad_alloc from the message
    return false;
  }
}

/// Device memory from `cudaMalloc`, freed with its owner (move-only): for programs, tools
/// and tests around the collectives, which themselves take any device pointer. Failures
/// throw `chorus::error`.
///
/// The copies and the fill go on the legacy default stream (`cudaMemcpy`, `cudaMemset`),
/// and are not all synchronous: `download` returns with the bytes on the host, but
/// `upload` from pageable memory may return once CUDA has staged the bytes, before they
/// reach the device, and `fill` returns at once. Work on a blocking stream (e.g. one from
/// `cudaStreamCreate`) is ordered after them, as the legacy stream orders it; work on a
/// `cudaStreamNonBlocking` stream is not: synchronise first (`cudaDeviceSynchronize`), or
/// enqueue the copies on that stream (`cudaMemcpyAsync`).
class memory {
 public:
  memory() = default;
  explicit memory(std::size_t bytes) : bytes_(bytes) {
    check(cudaMalloc(&p_, bytes == 0 ? 1 : bytes),
          ("cudaMalloc of " + std::to_string(bytes) + " bytes").c_str());
  }
  memory(memory&& other) noexcept
      : p_(std::exchange(other.p_, nullptr)), bytes_(std::exchange(other.bytes_, 0)) {}
  memory& operator=(memory&& other) noexcept {
    std::swap(p_, other.p_);
    std::swap(bytes_, other.bytes_);
    return *this;
  }
  ~memory() {
    if (p_ != nullptr) (void)cudaFree(p_);
  }

  [[nodiscard]] std::byte* get() const noexcept { return static_cast<std::byte*>(p_); }
  /// The memory as elements of T.
  template <class T>
  [[nodiscard]] T* as() const noexcept {
    return static_cast<T*>(p_);
  }
  [[nodiscard]] std::size_t size() const noexcept { return bytes_; }

  /// Host `src` to bytes [at, at + bytes) of this memory, on the legacy stream (see above:
  /// may return before the device has them).
  void upload(const void* src, std::size_t bytes, std::size_t at = 0) const {
    check(cudaMemcpy(get() + at, src, bytes, cudaMemcpyHostToDevice), "cudaMemcpy to the device");
  }
  /// Bytes [at, at + bytes) of this memory to host `dst`.
  void download(void* dst, std::size_t bytes, std::size_t at = 0) const {
    check(cudaMemcpy(dst, get() + at, bytes, cudaMemcpyDeviceToHost), "cudaMemcpy to the host");
  }
  /// Every byte set to `byte` (e.g. 0xFF to poison an output), enqueued on the legacy
  /// stream: returns before the device has done it.
  void fill(int byte) const { check(cudaMemset(p_, byte, bytes_), "cudaMemset"); }

 private:
  void* p_ = nullptr;
  std::size_t bytes_ = 0;
};

}  // namespace chorus::inline v0::device

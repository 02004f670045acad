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

}  // namespace chorus::inline v0::device

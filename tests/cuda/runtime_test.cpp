// device/runtime.hpp, compiled by the host compiler beside the whole host library: the
// header needs no nvcc, pulls in no kernel, and turns CUDA errors into chorus::error.
// Runs with or without a GPU.
#include <chorus/chorus.hpp>
#include <chorus/device/runtime.hpp>

#include <catch2/catch.hpp>

#include <string>

TEST_CASE("device::check passes success and throws chorus::error with CUDA's text") {
  CHECK_NOTHROW(chorus::device::check(cudaSuccess, "nothing"));
  try {
    chorus::device::check(cudaErrorMemoryAllocation, "cudaMalloc of 64 GiB");
    FAIL("no exception");
  } catch (const chorus::error& e) {
    const std::string what = e.what();
    CHECK(e.value() == chorus::errc::transport);
    CHECK(what.find("cudaMalloc of 64 GiB") != std::string::npos);
    CHECK(what.find("cudaErrorMemoryAllocation") != std::string::npos);
    CHECK(what.find(cudaGetErrorString(cudaErrorMemoryAllocation)) != std::string::npos);
  }
}

TEST_CASE("device::errc_for maps argument errors to invalid_argument, the rest to transport") {
  using chorus::errc;
  using chorus::device::errc_for;
  CHECK(errc_for(cudaErrorInvalidValue) == errc::invalid_argument);
  CHECK(errc_for(cudaErrorInvalidDevicePointer) == errc::invalid_argument);
  CHECK(errc_for(cudaErrorInvalidResourceHandle) == errc::invalid_argument);
  CHECK(errc_for(cudaErrorInvalidConfiguration) == errc::invalid_argument);
  CHECK(errc_for(cudaErrorMemoryAllocation) == errc::transport);
  CHECK(errc_for(cudaErrorIllegalAddress) == errc::transport);
  CHECK(errc_for(cudaErrorInsufficientDriver) == errc::transport);
  CHECK(errc_for(cudaErrorNoDevice) == errc::transport);
}

TEST_CASE("device::available agrees with the runtime's device count") {
  int count = 0;
  const cudaError_t e = cudaGetDeviceCount(&count);
  (void)cudaGetLastError();
  const bool expected = e == cudaSuccess && count > 0;
  CHECK(chorus::device::available() == expected);
  const std::string reason = chorus::device::unavailable_reason();
  CHECK(reason.empty() == expected);
  if (!expected) {
    // CUDA's own words, e.g. "cudaErrorInsufficientDriver: CUDA driver version is
    // insufficient for CUDA runtime version" on a machine without a GPU driver.
    if (e != cudaSuccess) CHECK(reason.find(cudaGetErrorName(e)) != std::string::npos);
    WARN("no CUDA device here: " << reason);
  }
  // Asking again gives the same answer; with a device, no error is left behind (without a
  // usable driver every runtime call, cudaGetLastError included, repeats the init error).
  CHECK(chorus::device::available() == expected);
  if (expected) CHECK(cudaGetLastError() == cudaSuccess);
}

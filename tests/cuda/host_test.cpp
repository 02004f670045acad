// The host side of the device layer, which runs with or without a GPU: device/runtime.hpp
// compiled by the host compiler beside the whole host library (no nvcc, no kernel pulled
// in), CUDA errors as chorus::error, the argument checks that run before any CUDA call, a
// launch failing without a device, and the split of arrays into 16-byte vectors.
#include <chorus/chorus.hpp>
#include <chorus/device/runtime.hpp>

#include <catch2/catch.hpp>

#include "kernels.hpp"

#include <algorithm>
#include <cstdint>
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

namespace {

/// The code of the chorus::error `f` throws (errc{} when it throws none).
template <class F>
chorus::errc code_of(F f) {
  try {
    f();
  } catch (const chorus::error& e) {
    return e.value();
  }
  return chorus::errc{};
}

/// A device-looking address that is never dereferenced: the checks below fail before any
/// CUDA call, so no memory (and no GPU) is needed.
float* fake(std::uintptr_t at) { return reinterpret_cast<float*>(std::uintptr_t{1} << 20 | at); }

}  // namespace

TEST_CASE("bad arguments throw invalid_argument before anything reaches CUDA") {
  using chorus::dtype;
  using chorus::errc;
  using chorus::op_kind;
  float* p = fake(0);
  // out overlaps a without being a (or b)
  CHECK(code_of([&] {
          chorus_test::device_reduce(op_kind::sum, dtype::float32, p, p + 64, p + 1, 16, nullptr);
        }) == errc::invalid_argument);
  CHECK(code_of([&] {
          chorus_test::device_reduce(op_kind::sum, dtype::float32, p + 64, p, p + 63, 16, nullptr);
        }) == errc::invalid_argument);
  CHECK(code_of([&] {
          chorus_test::device_reduce(op_kind::max, dtype::float16, nullptr, p, p, 16, nullptr);
        }) == errc::invalid_argument);
  CHECK(code_of([&] { chorus_test::device_finalize(dtype::float32, p, 16, 0, nullptr); }) ==
        errc::invalid_argument);
  CHECK(code_of([&] { chorus_test::device_finalize(dtype::int32, nullptr, 16, 2, nullptr); }) ==
        errc::invalid_argument);
  CHECK(code_of([&] { chorus_test::device_copy(4, p, p + 1, 16, nullptr); }) ==
        errc::invalid_argument);
  // pack: length > stride, and src overlapping dst
  CHECK(code_of([&] { chorus_test::device_pack(4, true, p, p + 4096, 4, 8, 4, nullptr); }) ==
        errc::invalid_argument);
  CHECK(code_of([&] { chorus_test::device_pack(4, true, p, p + 8, 4, 4, 8, nullptr); }) ==
        errc::invalid_argument);
  // codecs: a wire too small, a misaligned wire
  CHECK(code_of([&] {
          chorus_test::device_cast_encode(dtype::float16, false, false, 1, p, 16, p + 64, 31,
                                          nullptr);
        }) == errc::invalid_argument);
  CHECK(code_of([&] {
          chorus_test::device_quant_encode(false, 8, p, 16, reinterpret_cast<char*>(p + 64) + 1,
                                           8 + 16, nullptr);
        }) == errc::invalid_argument);
  CHECK(code_of([&] {
          chorus_test::device_top_k_encode(false, 1.5, p, 16, p + 64, 128, nullptr);
        }) == errc::invalid_argument);
  CHECK(code_of([&] {
          chorus_test::device_top_k_decode_add(true, 0.5, p, 8 * 12 - 1, p + 64, 16, nullptr);
        }) == errc::invalid_argument);
  // n == 0 touches nothing and calls nothing, whatever the pointers
  CHECK_NOTHROW(chorus_test::device_reduce(op_kind::sum, dtype::float32, nullptr, nullptr, nullptr,
                                           0, nullptr));
  CHECK_NOTHROW(chorus_test::device_copy(8, nullptr, nullptr, 0, nullptr));
  CHECK_NOTHROW(chorus_test::device_pack(2, false, nullptr, nullptr, 0, 5, 7, nullptr));
  // the exact alias (in place) passes the checks: only the launch can fail then, which
  // needs a device to try (see the next test for the failure without one)
}

TEST_CASE("without a device a launch fails with chorus::error naming it and CUDA's error") {
  if (chorus::device::available()) {
    SUCCEED("a device is present: the kernels run in cuda.device instead");
    return;
  }
  float* p = fake(0);
  const auto message_of = [](auto f) -> std::string {
    try {
      f();
    } catch (const chorus::error& e) {
      CHECK(e.value() == chorus::errc::transport);
      return e.what();
    }
    return "no exception";
  };
  const std::string reduce = message_of([&] {
    chorus_test::device_reduce(chorus::op_kind::sum, chorus::dtype::float32, p, p, p, 16, nullptr);
  });
  CHECK(reduce.find("launching chorus::device::reduce") != std::string::npos);
  CHECK(reduce.find("cudaError") != std::string::npos);
  const std::string copy = message_of([&] { chorus_test::device_copy(4, p, p + 64, 16, nullptr); });
  CHECK(copy.find("cudaMemcpyAsync in chorus::device::copy") != std::string::npos);
  const std::string pack =
      message_of([&] { chorus_test::device_pack(4, true, p, p + 4096, 4, 3, 5, nullptr); });
  CHECK(pack.find("launching chorus::device::pack") != std::string::npos);
}

TEST_CASE("the vector split covers every element once and aligns the vector body") {
  for (const std::size_t width : {1, 2, 4, 8}) {
    const std::size_t lanes = 16 / width;
    for (std::size_t n = 0; n < 70; ++n) {
      for (std::size_t o0 = 0; o0 < lanes; ++o0) {
        for (std::size_t o1 = 0; o1 < lanes; o1 += 3) {
          const std::uintptr_t base = 4096;
          const std::uintptr_t p0 = base + o0 * width, p1 = base + 256 + o1 * width,
                               p2 = base + 512 + o0 * width;
          const chorus_test::vector_split s = chorus_test::device_split(width, n, p0, p1, p2);
          INFO("width " << width << " n " << n << " offsets " << o0 << " " << o1);
          REQUIRE(s.lanes == lanes);
          REQUIRE(s.head + s.vectors * lanes <= n);
          if (o0 != o1) {  // the addresses disagree modulo 16: everything scalar
            CHECK(s.vectors == 0);
            CHECK(s.head == 0);
            continue;
          }
          const std::size_t to_boundary = (lanes - o0) % lanes;
          CHECK(s.head == std::min(n, to_boundary));
          CHECK(s.vectors == (n - s.head) / lanes);
          if (s.vectors > 0) {
            CHECK((p0 + s.head * width) % 16 == 0);
            CHECK((p1 + s.head * width) % 16 == 0);
          }
        }
      }
    }
  }
  // misaligned for the element itself (an odd address of 4-byte elements): scalar
  const chorus_test::vector_split odd = chorus_test::device_split(4, 100, 4097, 4097, 4097);
  CHECK(odd.vectors == 0);
  CHECK(odd.head == 0);
}

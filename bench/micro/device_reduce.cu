// chorus::device::reduce against a device-to-device cudaMemcpy of the same arrays, timed
// with CUDA events (a plain program: Google Benchmark's timer measures the host, and these
// launches are asynchronous).
//
//   build/bench/micro/chorus_micro_device_reduce [MiB per array, default 256] [iterations, 20]
//
// Bytes per call, decimal GB/s:
//   reduce  3 n sizeof(T)  (reads a and b, writes out)
//   copy    2 n sizeof(T)  (reads src, writes dst)
// so "% of copy" compares how close each comes to the memory bandwidth the copy engine /
// copy kernel reaches; the target (issue 6) is >= 85 % for float32 sum at 256 MiB.
//
// Without a usable device it prints "no CUDA device: <CUDA's reason>; nothing measured" and
// exits with 77 (the tests' skip code).
#include <chorus/device/reduce.cuh>
#include <chorus/device/runtime.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

namespace {

/// Milliseconds per call of `enqueue` on `stream`, over `iterations` calls after 3 warm-ups.
template <class F>
float time_ms(cudaStream_t stream, int iterations, F enqueue) {
  for (int i = 0; i < 3; ++i) enqueue();
  cudaEvent_t start, stop;
  chorus::device::check(cudaEventCreate(&start), "cudaEventCreate");
  chorus::device::check(cudaEventCreate(&stop), "cudaEventCreate");
  chorus::device::check(cudaEventRecord(start, stream), "cudaEventRecord");
  for (int i = 0; i < iterations; ++i) enqueue();
  chorus::device::check(cudaEventRecord(stop, stream), "cudaEventRecord");
  chorus::device::check(cudaEventSynchronize(stop), "cudaEventSynchronize");
  float ms = 0;
  chorus::device::check(cudaEventElapsedTime(&ms, start, stop), "cudaEventElapsedTime");
  (void)cudaEventDestroy(start);
  (void)cudaEventDestroy(stop);
  return ms / static_cast<float>(iterations);
}

double gbps(double bytes, float ms) { return bytes / (static_cast<double>(ms) * 1e6); }

/// One row: reduce (out of place, and in place into a) and the copy of the same arrays.
template <class T>
void run(const char* type, std::size_t bytes, int iterations, cudaStream_t stream,
         bool check_target) {
  const std::size_t n = bytes / sizeof(T);
  chorus::device::memory a(n * sizeof(T)), b(n * sizeof(T)), out(n * sizeof(T));
  chorus::device::check(cudaMemsetAsync(a.get(), 0, n * sizeof(T), stream), "cudaMemsetAsync");
  chorus::device::check(cudaMemsetAsync(b.get(), 0, n * sizeof(T), stream), "cudaMemsetAsync");
  const T* pa = a.as<T>();
  const T* pb = b.as<T>();
  T* pout = out.as<T>();

  const float copy_ms = time_ms(stream, iterations, [&] {
    chorus::device::check(
        cudaMemcpyAsync(out.get(), a.get(), n * sizeof(T), cudaMemcpyDeviceToDevice, stream),
        "cudaMemcpyAsync");
  });
  const float reduce_ms = time_ms(
      stream, iterations, [&] { chorus::device::reduce(chorus::plus{}, pa, pb, pout, n, stream); });
  const float in_place_ms = time_ms(stream, iterations, [&] {
    chorus::device::reduce(chorus::plus{}, static_cast<const T*>(pout), pb, pout, n, stream);
  });
  const double copy = gbps(2.0 * n * sizeof(T), copy_ms);
  const double reduce = gbps(3.0 * n * sizeof(T), reduce_ms);
  const double in_place = gbps(3.0 * n * sizeof(T), in_place_ms);
  std::printf("%-9s %9.1f %10.3f %9.1f %10.3f %9.1f %10.3f %9.1f %7.1f %%\n", type,
              static_cast<double>(bytes) / (1 << 20), copy_ms, copy, reduce_ms, reduce, in_place_ms,
              in_place, 100.0 * reduce / copy);
  if (check_target) {
    std::printf("target: float32 sum >= 85 %% of the copy's bytes/s: %s (%.1f %%)\n",
                reduce >= 0.85 * copy ? "met" : "MISSED", 100.0 * reduce / copy);
  }
}

}  // namespace

int main(int argc, char** argv) {
  const std::string reason = chorus::device::unavailable_reason();
  if (!reason.empty()) {
    std::printf("no CUDA device: %s; nothing measured\n", reason.c_str());
    return 77;
  }
  const std::size_t mib = argc > 1 ? std::strtoull(argv[1], nullptr, 10) : 256;
  const int iterations = argc > 2 ? std::atoi(argv[2]) : 20;
  if (mib == 0 || iterations <= 0) {
    std::fprintf(stderr, "usage: %s [MiB per array > 0] [iterations > 0]\n", argv[0]);
    return 2;
  }
  try {
    int device = 0;
    cudaDeviceProp prop{};
    chorus::device::check(cudaGetDevice(&device), "cudaGetDevice");
    chorus::device::check(cudaGetDeviceProperties(&prop, device), "cudaGetDeviceProperties");
    std::printf(
        "device %d: %s, %d SMs, %.1f GiB; %d iterations; GB/s decimal; reduce counts "
        "3 n sizeof(T) bytes, copy 2 n sizeof(T)\n",
        device, prop.name, prop.multiProcessorCount,
        static_cast<double>(prop.totalGlobalMem) / (1 << 30), iterations);
    std::printf("%-9s %9s %10s %9s %10s %9s %10s %9s %9s\n", "type", "MiB", "copy ms", "copy GB/s",
                "reduce ms", "GB/s", "inplace ms", "GB/s", "of copy");
    cudaStream_t stream;
    chorus::device::check(cudaStreamCreate(&stream), "cudaStreamCreate");
    const std::size_t bytes = mib << 20;
    run<float>("float32", bytes, iterations, stream, true);
    run<chorus::bfloat16>("bfloat16", bytes, iterations, stream, false);
    run<chorus::half>("float16", bytes, iterations, stream, false);
    run<double>("float64", bytes, iterations, stream, false);
    run<std::int8_t>("int8", bytes, iterations, stream, false);
    (void)cudaStreamDestroy(stream);
  } catch (const chorus::error& e) {
    std::fprintf(stderr, "device_reduce: %s\n", e.what());
    return 1;
  }
  return 0;
}

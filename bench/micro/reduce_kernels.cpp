// Host reduction kernels: every op x element type, in bytes per second, next to the two
// memory baselines measured in the same binary on the same bytes -- memcpy and a
// STREAM-style add (c[i] = a[i] + b[i] on floats). A kernel is memory-bound when its
// bytes/s (2 reads + 1 write counted, like STREAM add) come near the STREAM add's;
// docs/benchmarking.md says how to read them, docs/performance.md what they were.
//
//   chorus_micro_reduce_kernels --benchmark_filter='float32|bfloat16|float16|stream|memcpy'
#include <chorus/chorus.hpp>

#include <benchmark/benchmark.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <tuple>
#include <vector>

namespace {

/// 256 KiB: a kernel's own speed (three buffers fit in L2); 64 MiB: main memory.
const std::vector<std::int64_t> sizes = {256 << 10, 64 << 20};

template <class T>
std::vector<T> filled(std::size_t n, int v) {
  if constexpr (chorus::is_float16_v<T>) {
    return std::vector<T>(n, T(v));
  } else {
    return std::vector<T>(n, static_cast<T>(v));
  }
}

/// The kernel exactly as the executor calls it: the type-erased pointer of (T, Op).
template <class T, class Op>
void reduce_kernel(benchmark::State& state) {
  const auto bytes = static_cast<std::size_t>(state.range(0));
  const std::size_t n = bytes / sizeof(T);
  auto a = filled<T>(n, 1), b = filled<T>(n, 1), dst = filled<T>(n, 0);
  const Op op{};
  const chorus::detail::reduce_kernel_fn kernel = &chorus::detail::reduce_kernel<T, Op>;
  for (auto _ : state) {
    kernel(dst.data(), a.data(), b.data(), n, &op);
    benchmark::DoNotOptimize(dst.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * 3 * n * sizeof(T)));
}

void stream_add(benchmark::State& state) {
  const auto n = static_cast<std::size_t>(state.range(0)) / sizeof(float);
  std::vector<float> av(n, 1.0f), bv(n, 2.0f), cv(n, 0.0f);
  // Raw pointers: the loop must not pay for _GLIBCXX_ASSERTIONS' bounds checks.
  const float* a = av.data();
  const float* b = bv.data();
  float* c = cv.data();
  for (auto _ : state) {
    for (std::size_t i = 0; i < n; ++i) c[i] = a[i] + b[i];
    benchmark::DoNotOptimize(c);
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * 3 * n * sizeof(float)));
}

void memcpy_baseline(benchmark::State& state) {
  const auto bytes = static_cast<std::size_t>(state.range(0));
  std::vector<char> src(bytes, 1), dst(bytes, 0);
  for (auto _ : state) {
    std::memcpy(dst.data(), src.data(), bytes);
    benchmark::DoNotOptimize(dst.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * 2 * bytes));
}

template <class T, class Op>
void add(const char* op_name) {
  const std::string name =
      "reduce/" + std::string(chorus::name(chorus::dtype_of<T>)) + "/" + op_name;
  auto* b = benchmark::RegisterBenchmark(name.c_str(), &reduce_kernel<T, Op>);
  for (auto s : sizes) b->Arg(s);
}

template <class T>
void add_type() {
  add<T, chorus::plus>("sum");
  add<T, chorus::multiplies>("prod");
  add<T, chorus::minimum>("min");
  add<T, chorus::maximum>("max");
  if constexpr (std::is_integral_v<T>) {
    add<T, chorus::bit_and>("bit_and");
    add<T, chorus::bit_or>("bit_or");
    add<T, chorus::bit_xor>("bit_xor");
  }
}

template <class... T>
void add_types(std::tuple<T...>*) {
  (add_type<T>(), ...);
}

const int registered = [] {
  for (auto s : sizes) {
    benchmark::RegisterBenchmark("baseline/stream_add/float32", &stream_add)->Arg(s);
    benchmark::RegisterBenchmark("baseline/memcpy", &memcpy_baseline)->Arg(s);
  }
  add_types(static_cast<std::tuple<float, chorus::bfloat16, chorus::half, double, std::int8_t,
                                   std::uint8_t, std::int16_t, std::uint16_t, std::int32_t,
                                   std::uint32_t, std::int64_t, std::uint64_t>*>(nullptr));
  return 0;
}();

}  // namespace

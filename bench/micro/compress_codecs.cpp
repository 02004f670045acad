// Codec throughput of chorus::compress on one core, against a memcpy of the same bytes
// measured in the same run. Bytes processed = the input gradient's bytes (64 MiB of float).
//
//   bench/micro/compress_codecs --benchmark_repetitions=5 --benchmark_report_aggregates_only
//
// Ratios to quote (docs/performance.md): cast<half>/cast<bfloat16> encode vs memcpy of the
// 64 MiB input; top_k(1 %) encode in GB/s of input.
#include <chorus/compress/compress.hpp>

#include <benchmark/benchmark.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

namespace cc = chorus::compress;

namespace {
constexpr std::size_t elements = std::size_t{64} << 20 >> 2;  // 64 MiB of float

const std::vector<float>& gradient() {
  static const std::vector<float> g = [] {
    std::mt19937 gen(1);
    std::normal_distribution<float> d(0.0f, 1.0f);
    std::vector<float> v(elements);
    for (auto& x : v) x = d(gen);
    return v;
  }();
  return g;
}

void set_bytes(benchmark::State& state) {
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) *
                          static_cast<std::int64_t>(elements * sizeof(float)));
}

void memcpy_input(benchmark::State& state) {
  const auto& g = gradient();
  std::vector<float> out(g.size());
  for (auto _ : state) {
    std::memcpy(out.data(), g.data(), g.size() * sizeof(float));
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  set_bytes(state);
}
BENCHMARK(memcpy_input)->Unit(benchmark::kMillisecond)->UseRealTime();

template <class C>
void encode(benchmark::State& state, C codec) {
  const auto& g = gradient();
  std::vector<std::byte> wire(codec.template wire_bytes<float>(g.size()));
  const cc::context ctx{};
  for (auto _ : state) {
    codec.encode(std::span<const float>(g), std::span<std::byte>(wire), ctx);
    benchmark::DoNotOptimize(wire.data());
    benchmark::ClobberMemory();
  }
  set_bytes(state);
}

template <class C>
void decode(benchmark::State& state, C codec) {
  const auto& g = gradient();
  std::vector<std::byte> wire(codec.template wire_bytes<float>(g.size()));
  codec.encode(std::span<const float>(g), std::span<std::byte>(wire), cc::context{});
  std::vector<float> out(g.size());
  for (auto _ : state) {
    cc::decode(codec, std::span<const std::byte>(wire), std::span<float>(out), cc::context{});
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  set_bytes(state);
}

#define CODEC_BENCH(name, ...)                                                                \
  BENCHMARK_CAPTURE(encode, name, __VA_ARGS__)->Unit(benchmark::kMillisecond)->UseRealTime(); \
  BENCHMARK_CAPTURE(decode, name, __VA_ARGS__)->Unit(benchmark::kMillisecond)->UseRealTime()

CODEC_BENCH(cast_half, cc::cast<chorus::half>{});
CODEC_BENCH(cast_bfloat16, cc::cast<chorus::bfloat16>{});
CODEC_BENCH(top_k_1pct, cc::top_k{.ratio = 0.01});
CODEC_BENCH(threshold_top_k_1pct, cc::threshold_top_k{.ratio = 0.01});
CODEC_BENCH(random_k_1pct, cc::random_k{.ratio = 0.01});
CODEC_BENCH(block_quant_int8, cc::block_quant<std::int8_t>{});
CODEC_BENCH(scaled_sign, cc::scaled_sign{});
CODEC_BENCH(two_means, cc::two_means{});
CODEC_BENCH(qsgd_16, cc::qsgd{.levels = 16});
CODEC_BENCH(terngrad, cc::terngrad{});
}  // namespace

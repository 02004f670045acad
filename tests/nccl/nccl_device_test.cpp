// The NCCL transport on a GPU: a communicator of one rank through every collective NCCL
// has, with every chorus algorithm and with algo::native, on device buffers; a CUDA graph
// capturing a collective; the stream deadline; the teardown (finalise under a deadline, a
// transport moved over another), the device's memory pool kept across synchronisations.
// One rank moves no data: the executor at 2-8 ranks with its kernels is
// tests/stream's stream.loopback.device, on the same GPU. Without a usable GPU the binary says so
// and exits with 77, which ctest reports as skipped (never as passed).
#define CATCH_CONFIG_RUNNER
#include "nccl_collectives.hpp"
#include "support/device_vector.hpp"

#include <chorus/device/runtime.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

namespace {

using chorus::schedule::collective;
using chorus_test::nccl_comm;

using device_floats = harness::device_vector<float>;

chorus::nccl_transport one_rank_transport() {
  auto exchange = [](const std::string& mine) { return std::vector<std::string>{mine}; };
  return chorus::nccl_transport(0, 1, exchange, std::chrono::seconds(30));
}

nccl_comm one_rank() { return nccl_comm(one_rank_transport()); }

std::vector<float> random_floats(std::size_t n, unsigned seed) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> dist(-100.0f, 100.0f);
  std::vector<float> v(n);
  for (float& x : v) x = dist(gen);
  return v;
}

TEST_CASE("nccl: one rank through every collective, every algorithm and native", "[cuda]") {
  nccl_comm comm = one_rank();
  cudaStream_t stream = nullptr;
  chorus::device::check(cudaStreamCreate(&stream), "cudaStreamCreate");
  const collective kinds[] = {collective::all_reduce, collective::reduce_scatter,
                              collective::all_gather, collective::broadcast, collective::reduce};
  unsigned seed = 1;
  int runs = 0;
  for (collective kind : kinds) {
    std::vector<std::optional<chorus::schedule::algorithm>> algorithms{std::nullopt};
    for (auto a : chorus::schedule::all_algorithms) {
      if (chorus::schedule::supports(a, kind) && chorus::schedule::has_schedule(a))
        algorithms.emplace_back(a);
    }
    for (bool native : {false, true}) {
      for (const auto& algorithm : algorithms) {
        if (native && algorithm) continue;  // native once per collective
        for (chorus::op_kind op :
             {chorus::op_kind::sum, chorus::op_kind::max, chorus::op_kind::average}) {
          for (std::size_t count :
               {std::size_t{0}, std::size_t{1}, std::size_t{1000}, (std::size_t{1} << 20) + 3}) {
            const std::vector<float> in = random_floats(count, seed++);
            device_floats d_in(count), d_out(count);
            d_in.upload(in);
            d_out.poison();
            chorus_test::enqueue_collective(comm, kind, d_in.data(), d_out.data(), count, op,
                                            algorithm, native, 0, stream);
            comm.transport().synchronize(stream, chorus::deadline::after(std::chrono::seconds(30)));
            // One rank: every collective's result is its input (an average over 1 rank too).
            const std::vector<float> out = d_out.download();
            INFO(std::string(chorus::schedule::name(kind))
                 << " "
                 << (native      ? "native"
                     : algorithm ? chorus::schedule::name(*algorithm)
                                 : "automatic")
                 << " op " << chorus::name(op) << " count " << count);
            REQUIRE(std::memcmp(out.data(), in.data(), count * sizeof(float)) == 0);
            ++runs;
          }
        }
      }
    }
  }
  CHECK(runs > 100);
  cudaStreamDestroy(stream);
}

TEST_CASE("nccl: a CUDA graph captures a chorus all-reduce and replays it", "[cuda]") {
  nccl_comm comm = one_rank();
  cudaStream_t stream = nullptr;
  chorus::device::check(cudaStreamCreate(&stream), "cudaStreamCreate");
  constexpr std::size_t count = 1 << 16;
  const std::vector<float> in = random_floats(count, 99);
  device_floats d_in(count), d_out(count);
  d_in.upload(in);
  d_out.poison();
  chorus::device::check(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal),
                        "cudaStreamBeginCapture");
  chorus_test::enqueue_collective(comm, collective::all_reduce, d_in.data(), d_out.data(), count,
                                  chorus::op_kind::average, chorus::schedule::algorithm::ring,
                                  false, 0, stream);
  cudaGraph_t graph = nullptr;
  chorus::device::check(cudaStreamEndCapture(stream, &graph), "cudaStreamEndCapture");
  cudaGraphExec_t exec = nullptr;
  chorus::device::check(cudaGraphInstantiate(&exec, graph, 0), "cudaGraphInstantiate");
  CHECK(d_out.download()[0] != in[0]);  // captured, not run
  for (int replay = 0; replay < 2; ++replay) {
    d_out.poison();
    chorus::device::check(cudaGraphLaunch(exec, stream), "cudaGraphLaunch");
    comm.transport().synchronize(stream, chorus::deadline::after(std::chrono::seconds(30)));
    const std::vector<float> out = d_out.download();
    CHECK(std::memcmp(out.data(), in.data(), count * sizeof(float)) == 0);
  }
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
  cudaStreamDestroy(stream);
}

TEST_CASE("nccl: teardown and move-assignment end communicators promptly", "[cuda]") {
  cudaStream_t stream = nullptr;
  chorus::device::check(cudaStreamCreate(&stream), "cudaStreamCreate");
  constexpr std::size_t count = 1 << 16;
  const std::vector<float> in = random_floats(count, 7);
  device_floats d_in(count), d_out(count);
  d_in.upload(in);
  const auto start = std::chrono::steady_clock::now();
  {
    // A moved-over transport ends its communicator (finalise, destroy) before taking the
    // other's; the survivor still works.
    chorus::nccl_transport a = one_rank_transport();
    chorus::nccl_transport b = one_rank_transport();
    a = std::move(b);
    nccl_comm comm(std::move(a));
    d_out.poison();
    chorus_test::enqueue_collective(comm, collective::all_reduce, d_in.data(), d_out.data(), count,
                                    chorus::op_kind::sum, std::nullopt, true, 0, stream);
    comm.transport().synchronize(stream, chorus::deadline::after(std::chrono::seconds(30)));
    const std::vector<float> out = d_out.download();
    CHECK(std::memcmp(out.data(), in.data(), count * sizeof(float)) == 0);
    // Work still enqueued when the communicator goes: the destructor's finalise flushes it.
    chorus_test::enqueue_collective(comm, collective::all_reduce, d_in.data(), d_out.data(), count,
                                    chorus::op_kind::sum, std::nullopt, true, 0, stream);
  }
  CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(20));
  chorus::device::check(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
  cudaStreamDestroy(stream);
}

TEST_CASE("nccl: scratch stays mapped: the device's pool keeps what a collective asked for",
          "[cuda]") {
  nccl_comm comm = one_rank();
  cudaStream_t stream = nullptr;
  chorus::device::check(cudaStreamCreate(&stream), "cudaStreamCreate");
  cudaMemPool_t pool = nullptr;
  chorus::device::check(cudaDeviceGetMemPool(&pool, comm.transport().device()),
                        "cudaDeviceGetMemPool");
  std::uint64_t zero = 0, threshold = 0;
  chorus::device::check(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &zero),
                        "cudaMemPoolSetAttribute");
  constexpr std::size_t bytes = std::size_t{64} << 20;
  std::byte* p = comm.transport().allocate(bytes, stream);
  comm.transport().deallocate(p, stream);
  chorus::device::check(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
  chorus::device::check(cudaMemPoolGetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &threshold),
                        "cudaMemPoolGetAttribute");
  CHECK(threshold >= bytes);
  // And the memory is still reserved after the synchronisation.
  std::uint64_t reserved = 0;
  chorus::device::check(cudaMemPoolGetAttribute(pool, cudaMemPoolAttrReservedMemCurrent, &reserved),
                        "cudaMemPoolGetAttribute");
  CHECK(reserved >= bytes);
  int device = -1;
  chorus::device::check(cudaGetDevice(&device), "cudaGetDevice");
  CHECK(device == comm.transport().device());
  cudaStreamDestroy(stream);
}

}  // namespace

int main(int argc, char** argv) {
  const std::string why = chorus::device::unavailable_reason();
  if (!why.empty()) {
    std::printf("no CUDA device: %s; the NCCL device tests were not run\n", why.c_str());
    return 77;  // ctest: SKIP_RETURN_CODE
  }
  return Catch::Session().run(argc, argv);
}

// The stream executor with its real kernels at 2-8 ranks on one GPU, over the loopback
// transport (cuda_loopback.hpp: NCCL's rendezvous semantics; NCCL itself takes one rank
// per GPU): every collective NCCL has, through every algorithm, with the default pieces
// (none on a stream) and with small ones, aligned and misaligned, in place; then, tagged
// [perf] and run by tools/gpu-validate.sh, a 256 MiB ring all-reduce at 4 ranks unchunked
// against 1 MiB pieces. Without a usable GPU the binary says so and exits with 77, which
// ctest reports as skipped (never as passed).
#define CATCH_CONFIG_RUNNER
#include "loopback_collectives.hpp"

#include <chorus/device/runtime.hpp>

#include <catch2/catch.hpp>

#include <cstdio>
#include <string>
#include <vector>

namespace {

using chorus::schedule::collective;

TEST_CASE("loopback: every NCCL collective, every algorithm, 2-8 ranks on one GPU", "[cuda]") {
  const collective kinds[] = {collective::all_reduce, collective::reduce_scatter,
                              collective::all_gather, collective::broadcast, collective::reduce};
  int runs = 0;
  for (int p : {2, 3, 4, 5, 8}) {
    for (collective kind : kinds) {
      std::vector<std::optional<chorus::schedule::algorithm>> algorithms{std::nullopt};
      for (auto a : chorus::schedule::all_algorithms) {
        if (chorus::schedule::supports(a, kind) && chorus::schedule::has_schedule(a))
          algorithms.emplace_back(a);
      }
      for (const auto& algorithm : algorithms) {
        for (chorus::op_kind op :
             {chorus::op_kind::sum, chorus::op_kind::max, chorus::op_kind::average}) {
          const bool reduces = kind != collective::all_gather && kind != collective::broadcast;
          if (!reduces && op != chorus::op_kind::sum) continue;  // moves data: no op
          for (std::size_t count :
               {std::size_t{1}, std::size_t{1000}, (std::size_t{1} << 18) + 3}) {
            for (std::size_t chunk : {std::size_t{0}, std::size_t{64} << 10}) {
              if (chunk != 0 && count < (std::size_t{64} << 10)) continue;  // one piece anyway
              loopback::spec s;
              s.ranks = p;
              s.kind = kind;
              s.algorithm = algorithm;
              s.chunk_bytes = chunk;
              s.op = op;
              s.count = count;
              s.in_place = runs % 2 == 1;
              s.offset = runs % 3 == 2 ? 1 : 0;
              const loopback::outcome o = loopback::run(s);
              INFO(std::string(chorus::schedule::name(kind))
                   << " " << (algorithm ? chorus::schedule::name(*algorithm) : "automatic")
                   << " P=" << p << " op " << chorus::name(op) << " count " << count << " chunk "
                   << chunk << (s.in_place ? " in place" : "") << " offset " << s.offset << ": "
                   << o.first_wrong);
              REQUIRE(o.wrong == 0);
              ++runs;
            }
          }
        }
      }
    }
  }
  CHECK(runs > 500);
}

TEST_CASE("loopback: 256 MiB ring all-reduce at 4 ranks, unchunked against 1 MiB pieces",
          "[.perf]") {
  for (std::size_t offset : {std::size_t{0}, std::size_t{1}}) {
    for (std::size_t chunk : {std::size_t{0}, std::size_t{1} << 20}) {
      loopback::spec s;
      s.ranks = 4;
      s.algorithm = chorus::schedule::algorithm::ring;
      s.chunk_bytes = chunk;
      s.count = std::size_t{64} << 20;
      s.offset = offset;
      s.iterations = 5;
      const loopback::outcome o = loopback::run(s);
      std::printf(
          "perf loopback ring all_reduce 256 MiB P=4 %s, %s: %.3f ms per call, %.1f GB/s "
          "algbw, %lld groups (all ranks, 6 calls)\n",
          chunk == 0 ? "unchunked (stream default)" : "1 MiB pieces",
          offset == 0 ? "aligned" : "misaligned by 4 bytes", o.seconds * 1e3,
          256.0 * 1048576 / o.seconds / 1e9, o.groups);
      CHECK(o.wrong == 0);
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  const std::string why = chorus::device::unavailable_reason();
  if (!why.empty()) {
    std::printf("no CUDA device: %s; the loopback device tests were not run\n", why.c_str());
    return 77;  // ctest: SKIP_RETURN_CODE
  }
  return Catch::Session().run(argc, argv);
}

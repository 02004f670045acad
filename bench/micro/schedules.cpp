// Schedule generation: how long building one rank's schedule takes, per algorithm and
// collective, at 8 to 512 ranks. Schedules are built on every call (they are pure
// functions of rank, size and counts), so this is per-call overhead.
#include <chorus/schedule/build.hpp>
#include <chorus/schedule/schedule.hpp>

#include <benchmark/benchmark.h>

#include <string>
#include <vector>

namespace {

namespace sch = chorus::schedule;

void build(benchmark::State& state, sch::algorithm a, sch::collective c) {
  const int ranks = static_cast<int>(state.range(0));
  const std::size_t block = std::size_t{1} << 14;  // elements per rank block
  const std::vector<std::size_t> counts(static_cast<std::size_t>(ranks), block);
  std::vector<std::size_t> offsets(counts.size());
  for (std::size_t i = 0; i < offsets.size(); ++i) offsets[i] = i * block;
  sch::params p;
  p.kind = c;
  p.rank = ranks / 2;
  p.size = ranks;
  p.count = block * static_cast<std::size_t>(ranks);
  if (c == sch::collective::reduce_scatter || c == sch::collective::all_gather) p.counts = counts;
  if (c == sch::collective::all_to_all) {
    p.send_counts = p.recv_counts = counts;
    p.send_offsets = p.recv_offsets = offsets;
  }
  p.chunk_count = std::size_t{1} << 18;
  std::size_t ops = 0;
  for (auto _ : state) {
    const sch::schedule s = sch::build(a, p);
    ops = s.ops.size();
    benchmark::DoNotOptimize(s.ops.data());
  }
  state.counters["ops"] = static_cast<double>(ops);
}

const int registered = [] {
  for (sch::collective c :
       {sch::collective::all_reduce, sch::collective::reduce_scatter, sch::collective::all_gather,
        sch::collective::broadcast, sch::collective::all_to_all}) {
    for (sch::algorithm a : sch::all_algorithms) {
      if (!sch::supports(a, c) || !sch::has_schedule(a)) continue;
      const std::string name =
          "build/" + std::string(sch::name(c)) + "/" + std::string(sch::name(a));
      benchmark::RegisterBenchmark(name.c_str(), &build, a, c)->RangeMultiplier(8)->Range(8, 512);
    }
  }
  return 0;
}();

}  // namespace

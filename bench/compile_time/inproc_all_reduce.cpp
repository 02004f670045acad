// Compile-time benchmark: the README's first program, cut down to one all-reduce over the
// in-process transport (two threads). Compiled by measure.sh, never run.
#include <chorus/chorus.hpp>

#include <atomic>
#include <cstdio>
#include <vector>

int main() {
  std::atomic<float> total{0.f};
  chorus::inproc::run(2, [&total](chorus::inproc_communicator& comm) {
    std::vector<float> v(16, 1.f);
    chorus::all_reduce(comm, v, chorus::plus{});
    if (comm.rank() == 0) total = v[0];
  });
  std::printf("%g\n", static_cast<double>(total.load()));  // 2
  return total.load() == 2.f ? 0 : 1;
}

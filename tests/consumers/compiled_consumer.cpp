// The compiled-mode program of the find_package consumer: includes only
// <chorus/compiled.hpp>, links chorus::compiled from the installed package, and runs as a
// one-rank job (the test sets CHORUS_RANK=0 CHORUS_SIZE=1, as the launcher-less
// from_env error asks). Prints "chorus compiled consumer: ok".
#include <chorus/compiled.hpp>

#include <cstdio>
#include <vector>

int main() {
  auto comm = chorus::compiled::communicator::from_env();
  std::vector<double> v{1.5, 2.5};
  chorus::compiled::all_reduce(comm, v, chorus::maximum{});
  std::vector<double> all(2 * static_cast<std::size_t>(comm.size()));
  chorus::compiled::all_gather(comm, v, all);
  const bool ok = comm.size() == 1 && v[1] == 2.5 && all[0] == 1.5;
  std::printf("chorus compiled consumer: %s\n", ok ? "ok" : "FAILED");
  return ok ? 0 : 1;
}

// Compile-time benchmark: shm_all_reduce.cpp's program in compiled mode: the same from_env,
// shared-memory communicator and all_reduce, declared by <chorus/compiled.hpp> and compiled
// once into the chorus::compiled library. Compiled by measure.sh, never run.
#include <chorus/compiled.hpp>

#include <cstdio>
#include <vector>

int main() {
  auto comm = chorus::compiled::communicator::from_env(chorus::compiled::transport_kind::shm);
  std::vector<float> v(1024, 1.f);
  chorus::compiled::all_reduce(comm, v, chorus::plus{});
  std::printf("rank %d: %g\n", comm.rank(), static_cast<double>(v[0]));  // the rank count
  return 0;
}

// Compile-time benchmark: the README's "Running N processes" program, one all-reduce over
// the shared-memory transport between processes started by chorusrun (or torchrun, mpirun,
// srun). Compiled by measure.sh, never run.
#include <chorus/bootstrap/from_env.hpp>
#include <chorus/chorus.hpp>

#include <cstdio>
#include <vector>

int main() {
  auto world = chorus::bootstrap::from_env();
  chorus::communicator<chorus::shm_transport> comm{chorus::shm_transport{world}};
  std::vector<float> v(1024, 1.f);
  chorus::all_reduce(comm, v, chorus::plus{});
  std::printf("rank %d: %g\n", comm.rank(), static_cast<double>(v[0]));  // the rank count
  return 0;
}

// bootstrap::mpi_world under mpiexec, with no CHORUS_* variable set: every rank gets MPI's
// rank, size and node-local rank; the store rank 0 serves answers every rank; a shared-memory
// communicator built on the world all-reduces exactly; and a bad setting fails on every
// rank with from_env's message. Run as `mpiexec -n 3 bootstrap.mpi_world` (tests/bootstrap's
// CMakeLists.txt); prints "mpi_world: N ranks ok" on rank 0 and exits non-zero on any
// mismatch. With --bad-setting-on-rank-0 (rank 0 alone started with CHORUS_TIMEOUT=never),
// it checks instead that rank 0 throws that setting's error and every other rank one that
// points at another rank, at once (none waits for rank 0's broadcast).
#include <chorus/bootstrap/mpi.hpp>
#include <chorus/chorus.hpp>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

namespace {

int failures = 0;

void expect(bool ok, const std::string& what, int rank) {
  if (!ok) {
    std::fprintf(stderr, "rank %d: FAILED: %s\n", rank, what.c_str());
    ++failures;
  }
}

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int mpi_rank = 0, mpi_size = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &mpi_rank);
  MPI_Comm_size(MPI_COMM_WORLD, &mpi_size);
  if (argc > 1 && std::string(argv[1]) == "--bad-setting-on-rank-0") {
    std::string said = "nothing";
    try {
      auto w = chorus::bootstrap::mpi_world(MPI_COMM_WORLD);
    } catch (const chorus::error& e) {
      said = e.what();
    }
    const std::string want =
        mpi_rank == 0 ? "CHORUS_TIMEOUT='never'" : "another rank's CHORUS_* settings";
    expect(said.find(want) != std::string::npos, "wanted '" + want + "', got: " + said, mpi_rank);
    int total = failures;
    MPI_Allreduce(MPI_IN_PLACE, &total, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    if (mpi_rank == 0 && total == 0) std::printf("mpi_world: bad setting on rank 0 ok\n");
    MPI_Finalize();
    return total == 0 ? 0 : 1;
  }
  // The point of mpi_world: nothing but mpiexec's own variables.
  for (const char* var : {"CHORUS_STORE", "CHORUS_RANK", "CHORUS_JOB_SECRET", "MASTER_ADDR"}) {
    expect(std::getenv(var) == nullptr, std::string(var) + " is set", mpi_rank);
  }
  try {
    auto w = chorus::bootstrap::mpi_world(MPI_COMM_WORLD);
    expect(w.rank == mpi_rank && w.size == mpi_size, "rank and size are MPI's", mpi_rank);
    // mpiexec on one host: the node-local ranks are the world's.
    expect(w.local_rank == mpi_rank && w.local_size == mpi_size, "local rank and size", mpi_rank);
    expect(w.detected == chorus::bootstrap::launcher::open_mpi ||
               w.detected == chorus::bootstrap::launcher::mpich,
           "the launcher is named", mpi_rank);
    expect(!w.secret.empty() && !w.job_id.empty(), "a secret and a job id", mpi_rank);

    // The store: each rank writes its key, reads every other rank's.
    const std::string mine = "test/" + std::to_string(w.rank);
    w.store.set(mine, chorus::bootstrap::to_bytes("value " + std::to_string(w.rank)));
    for (int r = 0; r < w.size; ++r) {
      const auto got = chorus::bootstrap::as_string(
          w.store.get("test/" + std::to_string(r), chorus::deadline::after(w.timeout)));
      expect(got == "value " + std::to_string(r), "store key of rank " + std::to_string(r), w.rank);
    }

    // A communicator on the world.
    {
      chorus::communicator<chorus::shm_transport> comm{chorus::shm_transport(w)};
      std::vector<double> v(1000, w.rank + 1.0);
      chorus::all_reduce(comm, v, chorus::plus{});
      const double want = mpi_size * (mpi_size + 1) / 2.0;
      for (double x : v) {
        if (x != want) {
          expect(false, "all_reduce gave " + std::to_string(x), w.rank);
          break;
        }
      }
    }
    chorus::bootstrap::barrier(w.store, "test/done", w.rank, w.size,
                               chorus::deadline::after(w.timeout));
  } catch (const std::exception& e) {
    expect(false, std::string("mpi_world threw: ") + e.what(), mpi_rank);
  }

  // A bad setting: every rank throws from_env's invalid_argument, none hangs.
  try {
    auto bad = chorus::bootstrap::mpi_world(
        MPI_COMM_WORLD, chorus::bootstrap::environment_from({{"CHORUS_TIMEOUT", "never"}}));
    expect(false, "CHORUS_TIMEOUT=never was accepted", mpi_rank);
  } catch (const chorus::error& e) {
    expect(e.code() == chorus::errc::invalid_argument &&
               std::string(e.what()).find("CHORUS_TIMEOUT='never'") != std::string::npos,
           std::string("CHORUS_TIMEOUT=never: ") + e.what(), mpi_rank);
  }

  int total = failures;
  MPI_Allreduce(MPI_IN_PLACE, &total, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
  if (mpi_rank == 0 && total == 0) std::printf("mpi_world: %d ranks ok\n", mpi_size);
  MPI_Finalize();
  return total == 0 ? 0 : 1;
}

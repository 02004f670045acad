#pragma once
// How chorus-perf starts other processes: itself under chorusrun (--np N), and, for
// --compare mpi, interleaved child runs of itself and of chorus-mpi-perf under mpirun.
#include "options.hpp"

#include <string>
#include <vector>

namespace chorus_perf {

class launch_context {
 public:
  launch_context(int argc, char** argv);

  /// Whether a launcher started this process as one rank of a job (chorusrun, torchrun,
  /// Open MPI, MPICH/PMI, Slurm: the rank variables bootstrap::from_env reads).
  static bool under_launcher();
  /// The launcher's rank of this process; 0 when not under a launcher or unreadable.
  static int launcher_rank();

  /// This program's path (/proc/self/exe).
  [[nodiscard]] std::string self() const;
  /// chorusrun: next to this binary, then where the build tree put it, then in PATH.
  [[nodiscard]] std::string find_chorusrun() const;
  /// chorus-mpi-perf: next to this binary, then in PATH.
  [[nodiscard]] std::string find_mpi_perf() const;
  /// Replaces this process by `chorusrun -n N --no-prefix -- <this program> <args>`; the
  /// children see the launcher and measure. Returns only by throwing.
  [[noreturn]] int relaunch_under_chorusrun(const options& o) const;

 private:
  std::vector<std::string> args_;
};

/// --compare mpi: runs chorus-perf and chorus-mpi-perf alternately `o.rounds` times on the
/// same sizes, prints the medians side by side with the ratio chorus/MPI and the floor.
/// Returns the exit status.
int run_compare(const options& o, const launch_context& ctx);

}  // namespace chorus_perf

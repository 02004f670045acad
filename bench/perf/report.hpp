#pragma once
// What chorus-perf, chorus-mpi-perf and chorus-gloo-perf print and write: nccl-tests' header,
// columns and closing lines (a parser written for nccl-tests reads them), one table per
// algorithm streamed one row per test, an OSU-style latency table with --latency, JSON and
// CSV files with the build, the environment and every rank's time, and the series for the
// plot. Used by rank 0 only.
#include "options.hpp"

#include <nlohmann/json.hpp>

#include <cstddef>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace chorus_perf {

/// Statistics of the per-iteration times (each iteration: its slowest rank, per call), after
/// the -K iterations that are left out.
struct iteration_stats {
  double min_us = 0, max_us = 0, avg_us = 0, p50_us = 0, p99_us = 0, cv_pct = 0;
  std::vector<double> times_us;
};

/// One measurement: one test (type, op, size), one algorithm, out-of-place or in-place.
struct cell {
  bool valid = false;           ///< false: not measured (no in-place form)
  double time_us = 0;           ///< the ranks' mean times combined as -a says
  double algbw = 0;             ///< GB/s (1e9), size / time
  double busbw = 0;             ///< GB/s, algbw * bus_factor
  long long wrong = -1;         ///< mismatched elements over all ranks; -1: not checked
  std::vector<double> rank_us;  ///< every rank's mean time per call
  std::optional<iteration_stats> iterations;  ///< of each iteration's slowest rank
};

/// Builds a cell from every rank's mean seconds (combined as `o.average` says) and each
/// iteration's slowest-rank seconds.
cell make_cell(const options& o, int ranks, std::size_t bytes, std::vector<double> rank_s,
               std::vector<double> iteration_s, long long wrong);

/// One row of a table: one test of one algorithm.
struct size_row {
  std::size_t algorithm = 0;  ///< index into run_info::algorithms
  chorus::dtype type = chorus::dtype::float32;
  chorus::op_kind op = chorus::op_kind::sum;
  int cycle = 0;  ///< -N
  std::size_t bytes = 0;
  std::size_t count = 0;
  cell out_of_place, in_place;
  std::string timestamp;  ///< -S
};

/// What the run is, for the header, JSON and CSV.
struct run_info {
  std::string tool;       ///< chorus-perf or chorus-mpi-perf
  std::string transport;  ///< inproc, shm, mpi
  std::string library;    ///< "chorus 0.1.0", or the MPI library's version line
  std::string launcher;   ///< chorusrun, Open MPI, threads, none
  int ranks = 1;
  /// "2 hosts x 2 ranks", "2 hosts: 3,1 ranks"; empty for one host.
  std::string hosts;
  std::vector<std::string> algorithms;
  std::optional<double> copy_gbs;  ///< --floor: STREAM copy GB/s of all ranks together
};

/// A line of the plot: (size in bytes, y) and, where known, the spread (low, high) of y.
struct series {
  std::string name;
  std::vector<std::pair<double, double>> points;
  std::vector<std::pair<double, double>> spread;  ///< empty, or one per point
};

/// The build (commit, compiler, flags), host, CPU, date and the CHORUS_*, UCX_*, NCCL_*,
/// OMPI_* variables, as JSON (also the CSV's comment lines).
nlohmann::json environment_json(const run_info& info);

class reporter {
 public:
  reporter(const options& o, run_info info);

  /// nccl-tests' header lines, then chorus's (ranks, host, how times combine, ceiling).
  void print_header() const;
  /// The headings of algorithm `algorithm`'s table.
  void begin_table(std::size_t algorithm) const;
  /// Prints one row at once and keeps it.
  void add(size_row row);
  /// Peak busbw per algorithm, #wrong, then nccl-tests' closing lines ("# Out of bounds
  /// values", "# Avg bus bandwidth"). `buffer_bytes`: what -M reports as the buffers.
  void print_footer(std::size_t buffer_bytes);
  /// Writes --json and --csv if they were asked for.
  void write_files() const;

  [[nodiscard]] long long wrong_total() const;
  /// Tests (row and placement) with any wrong element: nccl-tests' "Out of bounds values".
  [[nodiscard]] long long out_of_bounds() const;
  /// The mean busbw over every measured cell: nccl-tests' "Avg bus bandwidth".
  [[nodiscard]] double average_busbw() const;
  /// False when NCCL_TESTS_MIN_BW is set and the average busbw is below 90 % of it.
  [[nodiscard]] bool bandwidth_ok() const;
  [[nodiscard]] nlohmann::json to_json() const;
  /// Out-of-place busbw against size per algorithm, with the spread of the iterations.
  [[nodiscard]] std::vector<series> busbw_series() const;
  /// Out-of-place time (us) against size per algorithm, up to 64 KiB.
  [[nodiscard]] std::vector<series> latency_series() const;
  [[nodiscard]] const run_info& info() const noexcept { return info_; }

 private:
  /// Per algorithm, `value` of the out-of-place cells up to `max_bytes` (the first cycle,
  /// type and op) and `spread` of their iterations.
  [[nodiscard]] std::vector<series> out_of_place_series(
      std::size_t max_bytes, double (*value)(const cell&, std::size_t, double),
      std::pair<double, double> (*spread)(const iteration_stats&, std::size_t, double)) const;

  const options& o_;
  run_info info_;
  std::vector<size_row> rows_;
  nlohmann::json memory_;  ///< -M
};

/// Writes `j` to `path` (pretty-printed); throws std::runtime_error naming the path.
void write_json_file(const std::string& path, const nlohmann::json& j);

/// The commit chorus-perf was built from ("unknown" outside a git checkout), and how.
std::string build_commit();
std::string build_flags();

}  // namespace chorus_perf

#pragma once
// What chorus-perf and chorus-mpi-perf print and write: nccl-tests' columns streamed one
// row per size, a footer that never averages over sizes, JSON and CSV files with the
// environment, and the series for the plot. Used by rank 0 only.
#include "options.hpp"

#include <nlohmann/json.hpp>

#include <cstddef>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace chorus_perf {

/// One measurement: one size, one algorithm, out-of-place or in-place.
struct cell {
  bool valid = false;             ///< false: not measured (no in-place form)
  double time_us = 0;             ///< slowest rank's mean time per iteration
  double algbw = 0;               ///< GB/s (1e9), size / time
  double busbw = 0;               ///< GB/s, algbw * bus_factor
  long long wrong = -1;           ///< mismatched elements over all ranks; -1: not checked
  double p50_us = 0, p99_us = 0;  ///< with --percentiles: of the per-iteration slowest rank
};

/// Builds a cell from the slowest rank's mean seconds and, with --percentiles, the
/// per-iteration slowest-rank seconds.
cell make_cell(collective c, int ranks, std::size_t bytes, double mean_s,
               std::vector<double> iteration_s, long long wrong);

struct size_row {
  std::size_t bytes = 0;
  std::size_t count = 0;
  std::vector<cell> out_of_place, in_place;  ///< one per algorithm, in -a order
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

/// A line of the plot: (size in bytes, busbw GB/s).
struct series {
  std::string name;
  std::vector<std::pair<double, double>> points;
};

/// The host, CPU, compiler, date... as JSON (also the CSV's comment lines).
nlohmann::json environment_json(const run_info& info);

class reporter {
 public:
  reporter(const options& o, run_info info);

  /// The environment lines and the column headings.
  void print_header() const;
  /// Prints one row at once (the progress display) and keeps it.
  void add(size_row row);
  /// Peak busbw and busbw at the largest size per algorithm, #wrong in total.
  void print_footer() const;
  /// Writes --json and --csv if they were asked for.
  void write_files() const;

  [[nodiscard]] long long wrong_total() const;
  [[nodiscard]] nlohmann::json to_json() const;
  [[nodiscard]] std::vector<series> busbw_series() const;
  [[nodiscard]] const run_info& info() const noexcept { return info_; }

 private:
  const options& o_;
  run_info info_;
  std::vector<size_row> rows_;
};

/// Writes `j` to `path` (pretty-printed); throws std::runtime_error naming the path.
void write_json_file(const std::string& path, const nlohmann::json& j);

}  // namespace chorus_perf

#pragma once
// The command line of chorus-perf, chorus-mpi-perf and chorus-gloo-perf: every flag of
// nccl-tests with its letter and meaning, plus chorus's own as long options (--transport,
// --algo, --np, --compare, --floor, --latency, --plot, --json, --csv).
//
// The tools share this file so that the same flags mean the same thing in all of them; the
// baselines accept only the long options that make sense for them (no --transport, --algo,
// --np, --compare).
#include <chorus/core/ops.hpp>
#include <chorus/core/types.hpp>
#include <chorus/schedule/schedule.hpp>

#include <cstddef>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace chorus_perf {

/// A mistake on the command line: printed as one line, exit status 2.
struct usage_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// The collectives the tools measure.
enum class collective {
  all_reduce,
  reduce_scatter,
  all_gather,
  broadcast,
  reduce,
  all_to_all,
  sendrecv,  ///< ping-pong between rank pairs (0,1), (2,3), ...
};

inline constexpr collective all_collectives[] = {collective::all_reduce, collective::reduce_scatter,
                                                 collective::all_gather, collective::broadcast,
                                                 collective::reduce,     collective::all_to_all,
                                                 collective::sendrecv};

std::string_view name(collective c) noexcept;
bool is_reducing(collective c) noexcept;
bool is_rooted(collective c) noexcept;
/// Whether the collective has an in-place form (all_to_all and sendrecv have none).
bool has_in_place(collective c) noexcept;
/// The schedule collective behind it (nullopt for sendrecv, which has no schedule).
std::optional<chorus::schedule::collective> schedule_kind(collective c) noexcept;

/// busbw = algbw * bus_factor (nccl-tests' definitions; see docs/benchmarking.md).
double bus_factor(collective c, int ranks) noexcept;
/// Bytes every rank together must at least read and write, in units of the size S, if each
/// input is read once and each output written once: the memory-traffic floor is
/// t = traffic_factor * S / B_copy (see docs/benchmarking.md).
double traffic_factor(collective c, int ranks) noexcept;
/// The busbw at the memory-bandwidth floor, for a copy bandwidth of `copy_gbs` (GB/s,
/// read + write bytes counted as STREAM does). 0 where it is not defined (one rank).
double floor_busbw(collective c, int ranks, double copy_gbs) noexcept;

/// One entry of -a: a name as the user wrote it and the algorithm (nullopt: automatic).
struct algorithm_choice {
  std::string name;
  std::optional<chorus::schedule::algorithm> id;
  bool native = false;        ///< "native": the transport's own collective (-t nccl)
  bool reproducible = false;  ///< --reproducible: under chorus::reproducible ("<name>+repro")
};

/// -a: how the ranks' times combine into the time column (nccl-tests' --average).
enum class combine { rank0 = 0, average = 1, minimum = 2, maximum = 3 };

struct options {
  // -- nccl-tests' flags, with nccl-tests' letters and meanings (docs/benchmarking.md) --
  int nthreads = 1;  ///< -t: threads per process, each one rank (--transport inproc only)
  int ngpus = 1;     ///< -g: GPUs per thread; chorus drives one GPU per rank
  std::size_t min_bytes = 8;
  std::size_t max_bytes = std::size_t{32} << 20;
  double step_factor = 2;
  std::size_t step_bytes = 0;  ///< -i: additive step; 0 means use step_factor
  int iters = 20;
  int agg_iters = 1;  ///< -m: calls per timed iteration; the time is per call
  int warmup = 5;
  int run_cycles = 1;          ///< -N: run the whole sweep this many times (0: until interrupted)
  bool parallel_init = false;  ///< -p: accepted; chorus ranks always initialise concurrently
  int check_iters = 1;         ///< -c: checked calls per test (0: no checking)
  std::vector<chorus::op_kind> ops{chorus::op_kind::sum};    ///< -o: one, or all
  std::vector<chorus::dtype> types{chorus::dtype::float32};  ///< -d: one, or all
  int root = 0;
  int blocking = 0;                ///< -z: 0/2 no barrier, 1 barrier after each call, 3 after each
                                   ///< iteration (outside the time)
  bool stream_null = false;        ///< -y: NCCL on the default stream (--transport nccl)
  double timeout_s = 0;            ///< -T: CHORUS_TIMEOUT for this run; 0: the environment's
  bool report_cputime = false;     ///< -C: host clock (the heading says cputime)
  bool report_timestamps = false;  ///< -S: a timestamp at the end of every row
  combine average = combine::average;  ///< -a
  bool memory_report = false;          ///< -M
  int unalign = 0;                     ///< -u: buffers start this many elements past an alignment
  bool per_iter = false;               ///< -I: per-iteration columns i_min, i_max, i_p99, i_cv%
  int per_iter_skip = 0;               ///< -K: leading iterations left out of the -I statistics
  // -G, -R, -x, -D, -V are parsed and refused unless at their defaults (NCCL features
  // chorus-perf does not drive); see parse_options.

  // -- chorus's own (long options) --
  collective coll = collective::all_reduce;
  std::string transport = "shm";
  std::vector<algorithm_choice> algorithms{{"automatic", std::nullopt}};
  int np = 0;  ///< --np; 0 when not given
  /// --ranks-per-host: the layout the run must have (every host this many ranks; hosts as
  /// the transport finds them); 0 when not given.
  int ranks_per_host = 0;
  bool latency = false;  ///< --latency: OSU-style latency table (avg, min, p50, max)
  std::string json, csv, plot;
  bool floor = false;
  std::size_t floor_bytes = std::size_t{64} << 20;
  std::string compare;  ///< "" or "mpi"
  int rounds = 3;
  std::string mpirun = "mpirun";
  std::vector<std::string> mpirun_args;
  bool reproducible = false;  ///< --reproducible: each algorithm also as "<name>+repro"
  std::string calibrate;      ///< --calibrate FILE: measure the cost model's parameters instead
  std::string profile;        ///< --profile FILE: automatic tunes by the model with this profile
  bool explain = false;       ///< --explain: print the tuner's reasons for each size first
  int corrupt_rank = -1;  ///< test hook: this rank damages one result element after the check run
  std::vector<std::string> args;  ///< the arguments as given (without argv[0])

  // -- the test being run: one (type, op) of the -d x -o loops, set by run_sweep --
  chorus::dtype type = chorus::dtype::float32;
  chorus::op_kind op = chorus::op_kind::sum;
  [[nodiscard]] bool check() const noexcept { return check_iters > 0; }
};

/// Which tool parses: the baselines (MPI, Gloo) know no transports or algorithms.
enum class tool { chorus, mpi, gloo };

/// Parses the command line. Throws `usage_error` (one line) for every mistake; prints the
/// help and returns nullopt for -h/--help.
std::optional<options> parse_options(int argc, char** argv, tool which);

/// "256M" -> 268435456. Suffixes K, M, G (powers of 1024), either case.
std::size_t parse_bytes(std::string_view flag, std::string_view text);

/// The sizes of the sweep: min_bytes, then *step_factor (or +step_bytes), up to max_bytes.
std::vector<std::size_t> sweep_sizes(const options& o);

/// Elements per rank buffer unit for a size: the count column of nccl-tests (per-rank
/// input count for all_reduce/broadcast/reduce/sendrecv, per-rank block for the others).
std::size_t count_for(collective c, std::size_t bytes, std::size_t elem, int ranks) noexcept;
/// The size column for a count (the whole buffer: count * elem, times ranks where blocks).
std::size_t bytes_for(collective c, std::size_t count, std::size_t elem, int ranks) noexcept;

/// nccl-tests' name of a type (float, half, int32...), as its type column prints it.
std::string_view nccl_name(chorus::dtype t) noexcept;

/// Name lookups shared with tests and messages.
std::optional<chorus::dtype> dtype_from_name(std::string_view text) noexcept;
std::optional<chorus::op_kind> op_from_name(std::string_view text) noexcept;

/// Human size, "256M", "8", "64K".
std::string format_bytes(std::size_t bytes);

}  // namespace chorus_perf

#include "options.hpp"

#include <CLI/CLI.hpp>

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <limits>

namespace chorus_perf {

// The collectives chorus has answer from the library's own table (schedule.hpp);
// sendrecv, the benchmark's ping-pong, is the one that is not a chorus collective.
std::string_view name(collective c) noexcept {
  const auto k = schedule_kind(c);
  return k ? chorus::schedule::name(*k) : std::string_view("sendrecv");
}

bool is_reducing(collective c) noexcept {
  const auto k = schedule_kind(c);
  return k && chorus::schedule::is_reducing(*k);
}

bool is_rooted(collective c) noexcept {
  const auto k = schedule_kind(c);
  return k && chorus::schedule::is_rooted(*k);
}

bool has_in_place(collective c) noexcept {
  return c != collective::all_to_all && c != collective::sendrecv;
}

std::optional<chorus::schedule::collective> schedule_kind(collective c) noexcept {
  using chorus::schedule::collective;
  switch (c) {
    case chorus_perf::collective::all_reduce:
      return collective::all_reduce;
    case chorus_perf::collective::reduce_scatter:
      return collective::reduce_scatter;
    case chorus_perf::collective::all_gather:
      return collective::all_gather;
    case chorus_perf::collective::broadcast:
      return collective::broadcast;
    case chorus_perf::collective::reduce:
      return collective::reduce;
    case chorus_perf::collective::all_to_all:
      return collective::all_to_all;
    case chorus_perf::collective::sendrecv:
      return std::nullopt;
  }
  return std::nullopt;
}

double bus_factor(collective c, int ranks) noexcept {
  const double p = ranks;
  switch (c) {
    case collective::all_reduce:
      return 2 * (p - 1) / p;
    case collective::reduce_scatter:
    case collective::all_gather:
    case collective::all_to_all:
      return (p - 1) / p;
    case collective::broadcast:
    case collective::reduce:
    case collective::sendrecv:
      return 1;
  }
  return 1;
}

double traffic_factor(collective c, int ranks) noexcept {
  const double p = ranks;
  switch (c) {
    case collective::all_reduce:  // P inputs of S read, P outputs of S written
    case collective::all_to_all:  // the same: every rank reads S and writes S
      return 2 * p;
    case collective::reduce_scatter:  // P inputs of S read, P outputs of S/P written
    case collective::all_gather:      // P inputs of S/P read, P outputs of S written
    case collective::broadcast:       // the root's S read, P outputs of S written
    case collective::reduce:          // P inputs of S read, the root's S written
      return p + 1;
    case collective::sendrecv:  // P/2 pairs, each message read once and written once
      return p;
  }
  return 2 * p;
}

double floor_busbw(collective c, int ranks, double copy_gbs) noexcept {
  if (ranks < 2 || copy_gbs <= 0) return 0;
  // t = traffic * S / B, algbw = S / t = B / traffic, busbw = algbw * bus_factor.
  return copy_gbs / traffic_factor(c, ranks) * bus_factor(c, ranks);
}

std::optional<chorus::dtype> dtype_from_name(std::string_view t) noexcept {
  using chorus::dtype;
  for (int i = 0; i <= static_cast<int>(dtype::float64); ++i) {
    if (chorus::name(static_cast<dtype>(i)) == t) return static_cast<dtype>(i);
  }
  // nccl-tests' names
  struct alias {
    std::string_view name;
    dtype type;
  };
  constexpr alias aliases[] = {
      {"char", dtype::int8},       {"int", dtype::int32},       {"uint", dtype::uint32},
      {"half", dtype::float16},    {"float", dtype::float32},   {"double", dtype::float64},
      {"bf16", dtype::bfloat16},   {"fp16", dtype::float16},    {"fp32", dtype::float32},
      {"fp64", dtype::float64},    {"int32_t", dtype::int32},   {"int64_t", dtype::int64},
      {"uint32_t", dtype::uint32}, {"uint64_t", dtype::uint64}, {"int8_t", dtype::int8},
      {"uint8_t", dtype::uint8}};
  for (const auto& a : aliases) {
    if (a.name == t) return a.type;
  }
  return std::nullopt;
}

std::optional<chorus::op_kind> op_from_name(std::string_view t) noexcept {
  using chorus::op_kind;
  for (op_kind k : {op_kind::sum, op_kind::product, op_kind::min, op_kind::max, op_kind::average}) {
    if (chorus::name(k) == t) return k;
  }
  return std::nullopt;
}

std::string format_bytes(std::size_t b) {
  const char* suffix = "";
  for (const char* s : {"K", "M", "G"}) {
    if (b == 0 || b % 1024 != 0) break;
    b /= 1024;
    suffix = s;
  }
  return std::to_string(b) + suffix;
}

std::size_t parse_bytes(std::string_view flag, std::string_view text) {
  const auto bad = [&] {
    return usage_error(std::string(flag) + " '" + std::string(text) +
                       "' is not a size: use bytes with an optional K, M or G suffix (powers of "
                       "1024), e.g. 8, 64K, 256M, 1G");
  };
  std::uint64_t v = 0;
  const char* end = text.data() + text.size();
  const auto [p, ec] = std::from_chars(text.data(), end, v);
  if (ec != std::errc{} || p == text.data()) throw bad();
  std::uint64_t scale = 1;
  if (p != end) {
    if (p + 1 != end) throw bad();
    switch (*p) {
      case 'K':
      case 'k':
        scale = std::uint64_t{1} << 10;
        break;
      case 'M':
      case 'm':
        scale = std::uint64_t{1} << 20;
        break;
      case 'G':
      case 'g':
        scale = std::uint64_t{1} << 30;
        break;
      default:
        throw bad();
    }
  }
  if (v > std::numeric_limits<std::uint64_t>::max() / scale) throw bad();
  return static_cast<std::size_t>(v * scale);
}

std::vector<std::size_t> sweep_sizes(const options& o) {
  std::vector<std::size_t> sizes;
  for (std::size_t s = o.min_bytes; s <= o.max_bytes;) {
    sizes.push_back(s);
    std::size_t next = o.step_bytes != 0
                           ? s + o.step_bytes
                           : static_cast<std::size_t>(static_cast<double>(s) * o.step_factor);
    if (next <= s) next = s + 1;  // -b 0 with a factor still moves on
    if (s == 0 && o.step_bytes == 0) next = 1;
    s = next;
  }
  return sizes;
}

std::size_t count_for(collective c, std::size_t bytes, std::size_t elem, int ranks) noexcept {
  const auto p = static_cast<std::size_t>(ranks);
  switch (c) {
    case collective::reduce_scatter:
    case collective::all_gather:
      return bytes / elem / p;  // one rank's block
    case collective::all_to_all:
      return bytes / elem / p * p;  // one rank's whole buffer, P equal blocks
    default:
      return bytes / elem;
  }
}

std::size_t bytes_for(collective c, std::size_t count, std::size_t elem, int ranks) noexcept {
  if (c == collective::reduce_scatter || c == collective::all_gather) {
    return count * elem * static_cast<std::size_t>(ranks);
  }
  return count * elem;
}

namespace {

collective collective_from_name(const std::string& text) {
  for (collective c : all_collectives) {
    if (name(c) == text) return c;
  }
  std::string list;
  for (collective c : all_collectives) list += (list.empty() ? "" : ", ") + std::string(name(c));
  throw usage_error("unknown collective '" + text + "'; choose one of: " + list);
}

std::vector<algorithm_choice> algorithms_from(const std::vector<std::string>& names, collective c) {
  std::vector<algorithm_choice> out;
  const auto kind = schedule_kind(c);
  for (const std::string& n : names) {
    algorithm_choice choice{n, std::nullopt};
    if (n == "native") {
      choice.native = true;
      const bool nccl_has =
          kind && *kind != chorus::schedule::collective::all_to_all;  // NCCL's five
      if (!nccl_has) {
        throw usage_error("--algo native: NCCL has no " + std::string(name(c)) + " of its own");
      }
    } else if (n != "automatic") {
      choice.id = chorus::schedule::algorithm_from_name(n);
      if (!choice.id) {
        std::string list;
        for (auto a : chorus::schedule::all_algorithms) list += std::string(name(a)) + ", ";
        throw usage_error("unknown algorithm '" + n + "'; choose from: " + list + "automatic");
      }
      if (!kind) {
        throw usage_error("--algo " + n + ": " + std::string(name(c)) +
                          " is point-to-point and has no algorithm; leave --algo out");
      }
      if (!chorus::schedule::supports(*choice.id, *kind)) {
        std::string can;
        for (auto a : chorus::schedule::all_algorithms) {
          if (chorus::schedule::supports(a, *kind)) can += std::string(name(a)) + ", ";
        }
        throw usage_error("algorithm " + n + " cannot run " + std::string(name(c)) +
                          "; it runs with: " + can + "automatic");
      }
    }
    const bool seen =
        std::any_of(out.begin(), out.end(), [&](const algorithm_choice& a) { return a.name == n; });
    if (!seen) out.push_back(choice);
  }
  if (out.empty()) throw usage_error("--algo needs at least one algorithm name");
  return out;
}

}  // namespace

namespace {

/// A whole number from a flag's text, or a usage error naming the flag; `hint` is added
/// when the text is not a number (an old chorus-perf flag that moved to a long option).
int integer_flag(const std::string& flag, const std::string& text, const std::string& hint = "") {
  int v = 0;
  const char* end = text.data() + text.size();
  const auto [p, ec] = std::from_chars(text.data(), end, v);
  if (ec != std::errc{} || p != end || text.empty()) {
    throw usage_error(flag + " '" + text + "' is not a whole number" +
                      (hint.empty() ? std::string() : "; " + hint));
  }
  return v;
}

/// A 0/1 flag of nccl-tests.
bool boolean_flag(const std::string& flag, const std::string& text) {
  const int v = integer_flag(flag, text);
  if (v != 0 && v != 1) throw usage_error(flag + " must be 0 or 1, not " + text);
  return v == 1;
}

}  // namespace

std::string_view nccl_name(chorus::dtype t) noexcept {
  using chorus::dtype;
  switch (t) {
    case dtype::float16:
      return "half";
    case dtype::float32:
      return "float";
    case dtype::float64:
      return "double";
    default:
      return chorus::name(t);
  }
}

std::optional<options> parse_options(int argc, char** argv, tool which) {
  options o;
  for (int i = 1; i < argc; ++i) o.args.emplace_back(argv[i]);
  const bool chorus_tool = which == tool::chorus;
  const std::string self = chorus_tool           ? "chorus-perf"
                           : which == tool::gloo ? "chorus-gloo-perf"
                                                 : "chorus-mpi-perf";
  const std::string baseline = which == tool::gloo ? "Gloo" : "MPI";

  CLI::App app{chorus_tool ? "chorus-perf: measure chorus collectives with nccl-tests' flags "
                             "and output (docs/benchmarking.md)"
               : which == tool::gloo
                   ? "chorus-gloo-perf: measure Gloo's all-reduce (tcp, ring) with "
                     "chorus-perf's flags and columns, as a baseline; start it with chorusrun"
                   : "chorus-mpi-perf: measure MPI collectives with chorus-perf's flags "
                     "and columns, as the baseline for chorus-perf --compare mpi",
               self};
  std::string coll = "all_reduce", minb = "8", maxb = "32M", stepb = "0", floorb = "64M";
  std::string type = "float32", op = "sum";
  std::string threads = "1", gpus = "1", average = "1", check = "1";
  std::string parallel = "0", stream_null = "0", cputime = "0", stamps = "0", memory = "0";
  std::string per_iter = "0", json_out;
  int graph = 0, local_register = 0, cta_policy = -1, device_impl = 0, device_ctas = 16;
  std::vector<std::string> algos{"automatic"};
  // As with getopt in nccl-tests, a flag given twice takes its last value.
  app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  app.add_option("collective", coll,
                 "all_reduce (default), reduce_scatter, all_gather, broadcast, reduce, "
                 "all_to_all or sendrecv (ping-pong)");
  // nccl-tests' flags, in the order of its --help.
  const auto nccl = "nccl-tests' flags";
  app.add_option("-t,--nthreads", threads,
                 "threads per process, each one rank (--transport inproc); default 1")
      ->group(nccl);
  app.add_option("-g,--ngpus", gpus, "GPUs per thread: 1 (chorus drives one GPU per rank)")
      ->group(nccl);
  app.add_option("-b,--minbytes", minb, "smallest size in bytes (K, M, G suffixes); default 8")
      ->group(nccl);
  app.add_option("-e,--maxbytes", maxb, "largest size in bytes; default 32M")->group(nccl);
  app.add_option("-i,--stepbytes", stepb, "add this many bytes instead of -f")->group(nccl);
  app.add_option("-f,--stepfactor", o.step_factor, "multiply the size by this; default 2")
      ->group(nccl);
  app.add_option("-n,--iters", o.iters, "timed iterations per size; default 20")->group(nccl);
  app.add_option("-m,--agg_iters", o.agg_iters,
                 "collectives per timed iteration (the time is per collective); default 1")
      ->group(nccl);
  app.add_option("-w,--warmup_iters", o.warmup, "untimed iterations first; default 5")->group(nccl);
  app.add_option("-N,--run_cycles", o.run_cycles,
                 "run and print the sweep this many times (0: until interrupted); default 1")
      ->group(nccl);
  app.add_option("-p,--parallel_init", parallel,
                 "0/1; chorus ranks always set up their communicators concurrently")
      ->group(nccl);
  app.add_option("-c,--check", check, "checked calls per test (0: no checking); default 1")
      ->group(nccl);
  app.add_option(
         "-o,--op", op,
         "sum, prod, min, max" + std::string(chorus_tool ? ", avg" : "") + " or all; default sum")
      ->group(nccl);
  app.add_option("-d,--datatype", type,
                 "element type or all: float (float32), double (float64), half (float16), "
                 "bfloat16, int8, uint8, int16, uint16, int32, uint32, int64, uint64")
      ->group(nccl);
  app.add_option("-r,--root", o.root, "root rank of broadcast and reduce; default 0")->group(nccl);
  app.add_option("-z,--blocking", o.blocking,
                 "0/2: no barrier, 1: barrier after each call, 3: barrier after each "
                 "iteration, outside the time; default 0")
      ->group(nccl);
  app.add_option("-y,--stream_null", stream_null, "1: NCCL on the default stream (nccl)")
      ->group(nccl);
  app.add_option("-T,--timeout", o.timeout_s,
                 "seconds any wait may take before the run fails (CHORUS_TIMEOUT)")
      ->group(nccl);
  app.add_option("-G,--cudagraph", graph, "CUDA graph launches: 0 (not driven by chorus-perf)")
      ->group(nccl);
  app.add_option("-C,--report_cputime", cputime, "1: time with the host clock (cputime)")
      ->group(nccl);
  app.add_option("-S,--report_timestamps", stamps, "1: a timestamp at the end of every row")
      ->group(nccl);
  app.add_option("-J,--output_file,--json", json_out,
                 "write the results, environment and per-rank times to this JSON file")
      ->group(nccl);
  app.add_option("-a,--average", average,
                 "how rank times combine: 0 rank 0, 1 average (default), 2 minimum, 3 maximum")
      ->group(nccl);
  app.add_option("-R,--local_register", local_register,
                 "NCCL buffer registration: 0 (not driven by chorus-perf)")
      ->group(nccl);
  app.add_option("-x,--cta_policy", cta_policy, "NCCL CTA policy: unset (not driven)")->group(nccl);
  app.add_option("-D,--device_implementation", device_impl,
                 "NCCL device implementation: 0 (not driven)")
      ->group(nccl);
  app.add_option("-V,--device_cta_count", device_ctas, "NCCL device CTAs (with -D)")->group(nccl);
  app.add_option("-M,--memory", memory, "1: report the memory the run used")->group(nccl);
  app.add_option("-u,--unalign", o.unalign,
                 "start the buffers this many elements past their alignment; default 0")
      ->group(nccl);
  app.add_option("-I,--per_iter_timing", per_iter,
                 "1: per-iteration columns i_min, i_max, i_p99, i_cv% (max over ranks)")
      ->group(nccl);
  app.add_option("-K,--per_iter_skip", o.per_iter_skip,
                 "leading iterations left out of the -I statistics")
      ->group(nccl);
  const auto own = std::string(chorus_tool ? "chorus-perf's own" : "this tool's own");
  app.add_flag("--latency", o.latency,
               "an OSU-style latency table instead: avg, min, p50, max (us) per size")
      ->group(own);
  app.add_option("--csv", o.csv, "write the results to this CSV file")->group(own);
  app.add_flag("--floor", o.floor,
               "measure a STREAM-style copy and print the memory-bandwidth ceiling")
      ->group(own);
  app.add_option("--floor-bytes", floorb, "bytes each rank copies for --floor; default 64M")
      ->group(own);
  if (chorus_tool) {
    app.add_option("--transport", o.transport,
                   "inproc, shm (default), ucx (built with UCX) or nccl (built with NCCL and "
                   "CUDA; device buffers, one GPU per rank)")
        ->group(own);
    app.add_option("--algo,--algorithm", algos,
                   "ring, tree, double_binary_tree, recursive_doubling, halving_doubling, "
                   "direct, automatic (and native: NCCL's own, with --transport nccl); several, "
                   "comma-separated, one table each")
        ->delimiter(',')
        ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll)
        ->group(own);
    app.add_option("--np", o.np, "ranks to start: threads (inproc) or processes via chorusrun")
        ->group(own);
    app.add_option("--ranks-per-host", o.ranks_per_host,
                   "fail unless every host has this many ranks (hosts as the transport finds "
                   "them: UCX tells hosts and network namespaces apart)")
        ->check(CLI::PositiveNumber)
        ->group(own);
    app.add_flag("--reproducible", o.reproducible,
                 "also run each algorithm under chorus::reproducible (all_reduce, "
                 "reduce_scatter; sum or avg of float types), as '<algorithm>+repro'")
        ->group(own);
    app.add_option("--calibrate", o.calibrate,
                   "measure the cost model's parameters (latency, bandwidth, per-message "
                   "overhead, reduction and copy rates) and write them to this JSON file "
                   "instead of a sweep (docs/tuning.md)")
        ->group(own);
    app.add_option("--profile", o.profile,
                   "automatic picks the algorithm the cost model predicts fastest under this "
                   "profile (a --calibrate file) instead of the default rule; 'auto': the "
                   "per-host cache's profile, measured on first use (chorus::tune_by_model)")
        ->group(own);
    app.add_flag("--explain", o.explain,
                 "before the table, print every candidate algorithm's predicted time for each "
                 "size, and the tuner's choice")
        ->group(own);
    app.add_option("--plot", o.plot,
                   "draw busbw (with the spread of the iterations) and small-size latency "
                   "into this PNG (needs gnuplot)")
        ->group(own);
    app.add_option("--compare", o.compare, "mpi: run chorus-mpi-perf interleaved, add ratios")
        ->group(own);
    app.add_option("--rounds", o.rounds, "--compare: interleaved rounds, medians; default 3")
        ->group(own);
    app.add_option("--mpirun", o.mpirun, "--compare: the mpirun to use; default mpirun")
        ->group(own);
    app.add_option("--mpirun-arg", o.mpirun_args, "--compare: an extra mpirun argument")
        ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll)
        ->group(own);
  }
  // Test hook (tests/perf): after the check run, this rank damages one element of its
  // result, so that a test can prove that #wrong counts and the exit status follows.
  app.add_option("--test-corrupt-rank", o.corrupt_rank)->group("");

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp&) {
    std::fputs(app.help().c_str(), stdout);
    return std::nullopt;
  } catch (const CLI::ParseError& e) {
    throw usage_error(std::string(e.what()) + "; see " + self + " --help");
  }

  o.coll = collective_from_name(coll);
  o.min_bytes = parse_bytes("-b", minb);
  o.max_bytes = parse_bytes("-e", maxb);
  o.step_bytes = parse_bytes("-i", stepb);
  o.floor_bytes = parse_bytes("--floor-bytes", floorb);
  o.json = json_out;
  if (o.min_bytes > o.max_bytes) {
    throw usage_error("-b " + minb + " is larger than -e " + maxb +
                      "; the sweep runs from -b up to -e");
  }
  if (o.step_bytes == 0 && !(o.step_factor > 1)) {
    throw usage_error("-f must be larger than 1 (or give -i, a step in bytes)");
  }
  if (o.iters < 1) throw usage_error("-n must be 1 or more");
  if (o.agg_iters < 1) throw usage_error("-m must be 1 or more");
  if (o.warmup < 0) throw usage_error("-w must be 0 or more");
  if (o.run_cycles < 0) throw usage_error("-N must be 0 (until interrupted) or more");
  o.check_iters = integer_flag("-c", check);
  if (o.check_iters < 0) throw usage_error("-c must be 0 (no checking) or more");
  if (o.floor_bytes < 4096) throw usage_error("--floor-bytes must be at least 4K");

  // -t and -a were chorus-perf's transport and algorithm before they took nccl-tests'
  // meanings: say where those went.
  o.nthreads = integer_flag("-t", threads,
                            chorus_tool ? "-t is nccl-tests' --nthreads; the transport is "
                                          "--transport " +
                                              threads
                                        : "");
  if (o.nthreads < 1) throw usage_error("-t must be 1 or more");
  const int a = integer_flag("-a", average,
                             chorus_tool ? "-a is nccl-tests' --average (0-3); the algorithm "
                                           "is --algo " +
                                               average
                                         : "");
  if (a < 0 || a > 3) {
    throw usage_error("-a " + average +
                      ": choose 0 (rank 0's time), 1 (average), 2 (minimum) or 3 (maximum)");
  }
  o.average = static_cast<combine>(a);
  o.ngpus = integer_flag("-g", gpus);
  o.parallel_init = boolean_flag("-p", parallel);
  o.stream_null = boolean_flag("-y", stream_null);
  o.report_cputime = boolean_flag("-C", cputime);
  o.report_timestamps = boolean_flag("-S", stamps);
  o.memory_report = boolean_flag("-M", memory);
  o.per_iter = boolean_flag("-I", per_iter);
  if (o.blocking < 0 || o.blocking > 3) throw usage_error("-z must be 0, 1, 2 or 3");
  if (o.timeout_s < 0) throw usage_error("-T must be 0 (the environment's) or more seconds");
  if (o.unalign < 0) throw usage_error("-u must be 0 or more elements");
  if (o.per_iter_skip < 0 || o.per_iter_skip >= o.iters) {
    throw usage_error("-K must be between 0 and " + std::to_string(o.iters - 1) + " (-n - 1)");
  }
  if (o.per_iter_skip > 0 && !o.per_iter) throw usage_error("-K needs -I 1");

  // NCCL features that chorus-perf does not drive: refused rather than ignored.
  const bool nccl_transport = chorus_tool && o.transport == "nccl";
  const std::string where =
      nccl_transport ? "chorus-perf does not drive it yet"
                     : "it is an NCCL setting, and this run has no NCCL (--transport nccl)";
  if (o.ngpus != 1) {
    throw usage_error("-g " + gpus +
                      ": chorus drives one GPU per rank; start more ranks (--np, or the "
                      "launcher) instead");
  }
  if (graph != 0) throw usage_error("-G " + std::to_string(graph) + ": CUDA graphs; " + where);
  if (local_register != 0) {
    throw usage_error("-R " + std::to_string(local_register) + ": buffer registration; " + where);
  }
  if (cta_policy != -1) {
    throw usage_error("-x " + std::to_string(cta_policy) + ": NCCL's CTA policy; " + where);
  }
  if (device_impl != 0 || device_ctas != 16) {
    throw usage_error("-D/-V: NCCL's device implementation; " + where);
  }
  if (o.stream_null && !nccl_transport) {
    throw usage_error("-y 1 runs NCCL on the default CUDA stream; it needs --transport nccl");
  }

  if (type == "all") {
    o.types.clear();
    for (int i = 0; i <= static_cast<int>(chorus::dtype::float64); ++i) {
      o.types.push_back(static_cast<chorus::dtype>(i));
    }
  } else if (const auto t = dtype_from_name(type)) {
    o.types = {*t};
  } else {
    throw usage_error("unknown datatype '" + type +
                      "'; choose from: float32 (float), float64 (double), float16 (half), "
                      "bfloat16, int8, uint8, int16, uint16, int32, uint32, int64, uint64, all");
  }
  if (op == "all") {
    using chorus::op_kind;
    o.ops = {op_kind::sum, op_kind::product, op_kind::max, op_kind::min};  // nccl-tests' order
    if (chorus_tool) o.ops.push_back(op_kind::average);
  } else if (const auto k = op_from_name(op);
             k && (chorus_tool || *k != chorus::op_kind::average)) {
    o.ops = {*k};
  } else if (op == "mulsum") {
    throw usage_error("-o mulsum is NCCL's pre-multiplied sum, which chorus does not have");
  } else {
    throw usage_error("unknown op '" + op + "'; choose from: sum, prod, min, max" +
                      (chorus_tool ? ", avg" : " (" + baseline + " has no average)") + ", all");
  }
  if (!is_reducing(o.coll)) o.ops.resize(1);  // the op plays no part: one pass
  o.type = o.types.front();
  o.op = o.ops.front();
  if (o.root < 0) throw usage_error("-r must be 0 or more");
  if (chorus_tool) {
    if (o.nthreads > 1 && o.transport != "inproc") {
      throw usage_error("-t " + threads +
                        " runs ranks as threads of one process, which needs "
                        "--transport inproc; --transport " +
                        o.transport + " has one rank per process (--np N or a launcher starts N)");
    }
    if (o.nthreads > 1 && o.np > 0 && o.np != o.nthreads) {
      throw usage_error("--np " + std::to_string(o.np) + " and -t " + threads +
                        " both say how many threads run ranks; give one");
    }
    if (o.nthreads > 1) o.np = o.nthreads;
    o.algorithms = algorithms_from(algos, o.coll);
    const bool native = std::any_of(o.algorithms.begin(), o.algorithms.end(),
                                    [](const algorithm_choice& c) { return c.native; });
    if (native && o.transport != "nccl") {
      throw usage_error("--algo native runs NCCL's own collectives, so it needs --transport nccl");
    }
    if (o.reproducible) {
      const auto floating = [](chorus::dtype t) {
        return t == chorus::dtype::float32 || t == chorus::dtype::float64 ||
               t == chorus::dtype::float16 || t == chorus::dtype::bfloat16;
      };
      if (o.coll != collective::all_reduce && o.coll != collective::reduce_scatter) {
        throw usage_error(
            "--reproducible: chorus::reproducible runs all_reduce and "
            "reduce_scatter, not " +
            coll);
      }
      const bool sums = std::all_of(o.ops.begin(), o.ops.end(), [](chorus::op_kind k) {
        return k == chorus::op_kind::sum || k == chorus::op_kind::average;
      });
      if (!sums || !std::all_of(o.types.begin(), o.types.end(), floating)) {
        throw usage_error(
            "--reproducible sums float32, float64, float16 or bfloat16 with -o sum "
            "or avg");
      }
      if (native || o.transport == "nccl") {
        throw usage_error(
            "--reproducible runs on the host transports (shm, ucx, inproc), not "
            "on NCCL");
      }
      const auto plain = o.algorithms;
      for (const auto& c : plain) {
        algorithm_choice r = c;
        r.name += "+repro";
        r.reproducible = true;
        o.algorithms.push_back(r);
      }
    }
    if (o.np < 0) throw usage_error("--np must be 1 or more");
    if (!o.compare.empty() && o.compare != "mpi") {
      throw usage_error("--compare '" + o.compare + "': only 'mpi' is known");
    }
    if (o.rounds < 1) throw usage_error("--rounds must be 1 or more");
    if (!o.compare.empty()) o.floor = true;  // the comparison table has the floor column
  } else if (o.nthreads > 1) {
    throw usage_error("-t " + threads + ": " + baseline +
                      " ranks are processes; start more "
                      "with the launcher");
  }
  return o;
}

}  // namespace chorus_perf

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
        throw usage_error("-a native: NCCL has no " + std::string(name(c)) + " of its own");
      }
    } else if (n != "automatic") {
      choice.id = chorus::schedule::algorithm_from_name(n);
      if (!choice.id) {
        std::string list;
        for (auto a : chorus::schedule::all_algorithms) list += std::string(name(a)) + ", ";
        throw usage_error("unknown algorithm '" + n + "'; choose from: " + list + "automatic");
      }
      if (!kind) {
        throw usage_error("-a " + n + ": " + std::string(name(c)) +
                          " is point-to-point and has no algorithm; leave -a out");
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
  if (out.empty()) throw usage_error("-a needs at least one algorithm name");
  return out;
}

}  // namespace

std::optional<options> parse_options(int argc, char** argv, tool which) {
  options o;
  for (int i = 1; i < argc; ++i) o.args.emplace_back(argv[i]);
  const bool chorus_tool = which == tool::chorus;
  const std::string self = chorus_tool           ? "chorus-perf"
                           : which == tool::gloo ? "chorus-gloo-perf"
                                                 : "chorus-mpi-perf";
  const std::string baseline = which == tool::gloo ? "Gloo" : "MPI";

  CLI::App app{chorus_tool ? "chorus-perf: measure chorus collectives with nccl-tests' flags "
                             "and columns (docs/benchmarking.md)"
               : which == tool::gloo
                   ? "chorus-gloo-perf: measure Gloo's all-reduce (tcp, ring) with "
                     "chorus-perf's flags and columns, as a baseline; start it with chorusrun"
                   : "chorus-mpi-perf: measure MPI collectives with chorus-perf's flags "
                     "and columns, as the baseline for chorus-perf --compare mpi",
               self};
  std::string coll = "all_reduce", minb = "8", maxb = "32M", stepb = "0", floorb = "64M";
  std::string type = "float32", op = "sum";
  std::vector<std::string> algos{"automatic"};
  // As with getopt in nccl-tests, a flag given twice takes its last value.
  app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  int check = 1;
  app.add_option("collective", coll,
                 "all_reduce (default), reduce_scatter, all_gather, broadcast, reduce, "
                 "all_to_all or sendrecv (ping-pong)");
  app.add_option("-b,--minbytes", minb, "smallest size in bytes (K, M, G suffixes); default 8");
  app.add_option("-e,--maxbytes", maxb, "largest size in bytes; default 32M");
  app.add_option("-f,--stepfactor", o.step_factor, "multiply the size by this; default 2");
  app.add_option("-i,--stepbytes", stepb, "add this many bytes instead of -f");
  app.add_option("-n,--iters", o.iters, "timed iterations per size; default 20");
  app.add_option("-w,--warmup_iters", o.warmup, "untimed iterations first; default 5");
  app.add_option("-c,--check", check, "1: verify every result (default), 0: do not");
  app.add_option("-d,--datatype", type,
                 "element type: float32 (float), float64 (double), float16 (half), bfloat16, "
                 "int8, uint8, int16, uint16, int32, uint32, int64, uint64");
  app.add_option("-o,--op", op,
                 "reduction: sum, prod, min, max" + std::string(chorus_tool ? ", avg" : ""));
  app.add_option("-r,--root", o.root, "root rank of broadcast and reduce; default 0");
  app.add_flag("--percentiles", o.percentiles, "also print p50 and p99 of the iteration times");
  app.add_option("--json", o.json, "write the results and the environment to this JSON file");
  app.add_option("--csv", o.csv, "write the results to this CSV file");
  app.add_flag("--floor", o.floor,
               "measure a STREAM-style copy and print the memory-bandwidth floor");
  app.add_option("--floor-bytes", floorb, "bytes each rank copies for --floor; default 64M");
  if (chorus_tool) {
    app.add_option("-t,--transport", o.transport,
                   "inproc, shm (default), ucx (built with UCX) or nccl (built with NCCL and "
                   "CUDA; device buffers, one GPU per rank)");
    app.add_option("-a,--algorithm", algos,
                   "ring, tree, double_binary_tree, recursive_doubling, halving_doubling, "
                   "direct, automatic (and native: NCCL's own, with -t nccl); several, "
                   "comma-separated, print side by side")
        ->delimiter(',')
        ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
    app.add_option("--np", o.np, "ranks to start: threads (inproc) or processes via chorusrun");
    app.add_option("--ranks-per-host", o.ranks_per_host,
                   "fail unless every host has this many ranks (hosts as the transport finds "
                   "them: UCX tells hosts and network namespaces apart)")
        ->check(CLI::PositiveNumber);
    app.add_flag("--reproducible", o.reproducible,
                 "also run each algorithm under chorus::reproducible (all_reduce, "
                 "reduce_scatter; sum or avg of float types), as '<algorithm>+repro'");
    app.add_option("--plot", o.plot, "draw busbw against size into this PNG (needs gnuplot)");
    app.add_option("--compare", o.compare, "mpi: run chorus-mpi-perf interleaved, add ratios");
    app.add_option("--rounds", o.rounds, "--compare: interleaved rounds, medians; default 3");
    app.add_option("--mpirun", o.mpirun, "--compare: the mpirun to use; default mpirun");
    app.add_option("--mpirun-arg", o.mpirun_args, "--compare: an extra mpirun argument")
        ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
    // Test hook (tests/perf): after the check run, this rank damages one element of its
    // result, so that a test can prove that #wrong counts and the exit status follows.
    app.add_option("--test-corrupt-rank", o.corrupt_rank)->group("");
  } else {
    app.add_option("--test-corrupt-rank", o.corrupt_rank)->group("");
  }

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
  if (o.min_bytes > o.max_bytes) {
    throw usage_error("-b " + minb + " is larger than -e " + maxb +
                      "; the sweep runs from -b up to -e");
  }
  if (o.step_bytes == 0 && !(o.step_factor > 1)) {
    throw usage_error("-f must be larger than 1 (or give -i, a step in bytes)");
  }
  if (o.iters < 1) throw usage_error("-n must be 1 or more");
  if (o.warmup < 0) throw usage_error("-w must be 0 or more");
  if (check != 0 && check != 1) throw usage_error("-c must be 0 or 1");
  o.check = check == 1;
  if (o.floor_bytes < 4096) throw usage_error("--floor-bytes must be at least 4K");
  const auto t = dtype_from_name(type);
  if (!t) {
    throw usage_error("unknown datatype '" + type +
                      "'; choose from: float32 (float), float64 (double), float16 (half), "
                      "bfloat16, int8, uint8, int16, uint16, int32, uint32, int64, uint64");
  }
  o.type = *t;
  const auto k = op_from_name(op);
  if (!k || (!chorus_tool && *k == chorus::op_kind::average)) {
    throw usage_error("unknown op '" + op + "'; choose from: sum, prod, min, max" +
                      (chorus_tool ? ", avg" : " (" + baseline + " has no average)"));
  }
  o.op = *k;
  if (o.root < 0) throw usage_error("-r must be 0 or more");
  if (chorus_tool) {
    o.algorithms = algorithms_from(algos, o.coll);
    const bool native = std::any_of(o.algorithms.begin(), o.algorithms.end(),
                                    [](const algorithm_choice& a) { return a.native; });
    if (native && o.transport != "nccl") {
      throw usage_error("-a native runs NCCL's own collectives, so it needs -t nccl");
    }
    if (o.reproducible) {
      const bool floating = o.type == chorus::dtype::float32 || o.type == chorus::dtype::float64 ||
                            o.type == chorus::dtype::float16 || o.type == chorus::dtype::bfloat16;
      if (o.coll != collective::all_reduce && o.coll != collective::reduce_scatter) {
        throw usage_error(
            "--reproducible: chorus::reproducible runs all_reduce and "
            "reduce_scatter, not " +
            coll);
      }
      if ((o.op != chorus::op_kind::sum && o.op != chorus::op_kind::average) || !floating) {
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
      for (const auto& a : plain) {
        algorithm_choice r = a;
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
  }
  return o;
}

}  // namespace chorus_perf

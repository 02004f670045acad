#include "compare.hpp"

#include "median.hpp"

#include "plot.hpp"
#include "report.hpp"

#include <nlohmann/json.hpp>

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <stdexcept>

extern char** environ;

namespace chorus_perf {

namespace {

namespace fs = std::filesystem;

constexpr const char* rank_variables[] = {"CHORUS_RANK", "RANK", "OMPI_COMM_WORLD_RANK", "PMI_RANK",
                                          "SLURM_PROCID"};

bool executable(const std::string& p) { return !p.empty() && ::access(p.c_str(), X_OK) == 0; }

std::string beside(const std::string& self, const std::string& program) {
  return (fs::path(self).parent_path() / program).string();
}

/// Runs `argv` with stdout and stderr to `log`, stdin from /dev/null; returns the exit
/// status (128 + signal when killed).
int run_child(const std::vector<std::string>& argv, const std::string& log) {
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  posix_spawn_file_actions_adddup2(&actions, 1, 2);
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = -1;
  const int rc = ::posix_spawn(&pid, args[0], &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) throw std::runtime_error("cannot start " + argv[0] + ": " + std::strerror(rc));
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) throw std::runtime_error("waitpid: " + std::string(std::strerror(errno)));
  }
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return WEXITSTATUS(status);
}

std::string tail_of(const std::string& path, std::size_t lines) {
  std::ifstream in(path);
  std::vector<std::string> all;
  for (std::string line; std::getline(in, line);) all.push_back(line);
  std::string out;
  for (std::size_t i = all.size() > lines ? all.size() - lines : 0; i < all.size(); ++i) {
    out += "    " + all[i] + "\n";
  }
  return out;
}

std::string join(const std::vector<std::string>& v, const char* sep) {
  std::string out;
  for (const auto& s : v) out += (out.empty() ? "" : sep) + s;
  return out;
}

/// The flags both tools understand, rebuilt from the parsed options.
std::vector<std::string> common_args(const options& o) {
  std::ostringstream factor;
  factor << o.step_factor;
  std::vector<std::string> a = {std::string(name(o.coll)),
                                "-b",
                                std::to_string(o.min_bytes),
                                "-e",
                                std::to_string(o.max_bytes),
                                "-f",
                                factor.str(),
                                "-i",
                                std::to_string(o.step_bytes),
                                "-n",
                                std::to_string(o.iters),
                                "-w",
                                std::to_string(o.warmup),
                                "-m",
                                std::to_string(o.agg_iters),
                                "-c",
                                std::to_string(o.check_iters),
                                "-a",
                                std::to_string(static_cast<int>(o.average)),
                                "-z",
                                std::to_string(o.blocking),
                                "-u",
                                std::to_string(o.unalign),
                                "-d",
                                std::string(chorus::name(o.type)),
                                "-o",
                                std::string(chorus::name(o.op)),
                                "-r",
                                std::to_string(o.root),
                                "--floor-bytes",
                                std::to_string(o.floor_bytes)};
  if (o.corrupt_rank >= 0) {
    a.emplace_back("--test-corrupt-rank");
    a.push_back(std::to_string(o.corrupt_rank));
  }
  return a;
}

/// Open MPI's mpirun needs to be told that 4 ranks on 2 cores are fine, and, as root, that
/// root is fine; other MPIs get no extra flags.
std::vector<std::string> mpirun_flags(const std::string& mpirun) {
  std::vector<std::string> flags;
  FILE* p = ::popen(("'" + mpirun + "' --version 2>&1").c_str(), "r");
  std::string text;
  if (p != nullptr) {
    char buf[256];
    while (std::fgets(buf, sizeof buf, p) != nullptr) text += buf;
    ::pclose(p);
  }
  if (text.find("Open MPI") != std::string::npos || text.find("OpenRTE") != std::string::npos) {
    flags = {"--oversubscribe", "--bind-to", "none"};
    if (::geteuid() == 0) flags.emplace_back("--allow-run-as-root");
  }
  return flags;
}

/// Out-of-place time per (algorithm, size) from a tool's JSON.
std::map<std::pair<std::string, std::size_t>, double> times_of(const nlohmann::json& j) {
  std::map<std::pair<std::string, std::size_t>, double> out;
  for (const auto& r : j.at("results")) {
    if (r.at("placement") != "out-of-place") continue;
    out[{r.at("algorithm").get<std::string>(), r.at("size").get<std::size_t>()}] =
        r.at("time_us").get<double>();
  }
  return out;
}

nlohmann::json read_json(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("the child run wrote no results to " + path);
  return nlohmann::json::parse(in);
}

/// The comparison table's header: what runs against what, the ceiling, the headings.
void print_compare_header(const options& o, int np, const std::string& mpi_library, double copy_gbs,
                          double floor, const std::vector<std::string>& names) {
  std::printf("# chorus-perf --compare mpi: %s, %s %s, %d ranks; chorus over %s vs %s\n",
              std::string(name(o.coll)).c_str(), std::string(chorus::name(o.type)).c_str(),
              is_reducing(o.coll) ? std::string(chorus::name(o.op)).c_str() : "", np,
              o.transport.c_str(), mpi_library.c_str());
  std::printf(
      "# out-of-place; time per call = the ranks' mean times over %d iterations combined as -a "
      "%d says (1: average); medians of %d interleaved rounds per size (chorus, MPI, chorus, "
      "MPI, ...)\n",
      o.iters, static_cast<int>(o.average), o.rounds);
  std::printf(
      "# ceiling: STREAM copy %.2f GB/s over %d ranks -> busbw at most %.2f GB/s beyond the "
      "caches; x/MPI = MPI time / chorus time (> 1: chorus is faster)\n#\n",
      copy_gbs, np, floor);
  std::string h1 = "#        size        count", h2 = "#         (B)   (elements)";
  for (const auto& n : names) {
    char buf[64];
    std::snprintf(buf, sizeof buf, " %18s", n.c_str());
    h1 += buf;
    h2 += "  time(us)   busbw";
  }
  h1 += "                MPI   floor";
  h2 += "  time(us)   busbw   busbw";
  for (const auto& n : names) {
    char buf[64];
    std::snprintf(buf, sizeof buf, " %9s", (n.size() > 9 ? n.substr(0, 9) : n).c_str());
    h1 += buf;
    h2 += "      /MPI";
  }
  std::printf("%s\n%s\n", h1.c_str(), h2.c_str());
  std::fflush(stdout);
}

}  // namespace

launch_context::launch_context(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) args_.emplace_back(argv[i]);
}

bool launch_context::under_launcher() {
  for (const char* v : rank_variables) {
    const char* value = std::getenv(v);
    if (value != nullptr && *value != '\0') return true;
  }
  return false;
}

int launch_context::launcher_rank() {
  for (const char* v : rank_variables) {
    const char* value = std::getenv(v);
    if (value != nullptr && *value != '\0') return std::atoi(value);
  }
  return 0;
}

std::string launch_context::self() const {
  std::error_code ec;
  const auto p = fs::read_symlink("/proc/self/exe", ec);
  if (ec) throw std::runtime_error("cannot find this program's path (/proc/self/exe)");
  return p.string();
}

std::string launch_context::find_chorusrun() const {
  if (const auto p = beside(self(), "chorusrun"); executable(p)) return p;
#ifdef CHORUS_PERF_BUILD_CHORUSRUN
  if (executable(CHORUS_PERF_BUILD_CHORUSRUN)) return CHORUS_PERF_BUILD_CHORUSRUN;
#endif
  if (auto p = find_in_path("chorusrun"); !p.empty()) return p;
  throw std::runtime_error(
      "--np needs chorusrun to start the ranks, and it is neither next to " + self() +
      " nor in PATH; build it (target chorusrun) or install chorus, or start the ranks with "
      "another launcher (mpirun, srun) and leave --np out");
}

std::string launch_context::find_mpi_perf() const {
  if (const auto p = beside(self(), "chorus-mpi-perf"); executable(p)) return p;
  if (auto p = find_in_path("chorus-mpi-perf"); !p.empty()) return p;
  throw std::runtime_error(
      "--compare mpi needs chorus-mpi-perf, which is neither next to " + self() +
      " nor in PATH; it is built when CMake finds MPI (Debian: libopenmpi-dev openmpi-bin)");
}

int launch_context::relaunch_under_chorusrun(const options& o) const {
  const std::string chorusrun = find_chorusrun();
  std::vector<std::string> argv = {chorusrun,     "-n", std::to_string(o.np),
                                   "--no-prefix", "--", self()};
  argv.insert(argv.end(), args_.begin(), args_.end());
  std::vector<char*> raw;
  for (auto& a : argv) raw.push_back(a.data());
  raw.push_back(nullptr);
  std::fflush(stdout);
  ::execv(raw[0], raw.data());
  throw std::runtime_error("cannot run " + chorusrun + ": " + std::strerror(errno));
}

int run_compare(const options& o, const launch_context& ctx) {
  if (launch_context::under_launcher()) {
    throw usage_error("--compare starts the ranks of both tools itself; run it without a launcher");
  }
  if (o.types.size() > 1 || o.ops.size() > 1 || o.run_cycles != 1) {
    throw usage_error(
        "--compare mpi compares one type and one op in one cycle: give -d, -o "
        "other than all, and leave -N out");
  }
  if (is_reducing(o.coll) && o.op == chorus::op_kind::average) {
    throw usage_error("--compare mpi: MPI has no average op; use -o sum, prod, min or max");
  }
  const int np = o.np > 0 ? o.np : 1;
  const std::string self = ctx.self();
  const std::string mpi_perf = ctx.find_mpi_perf();
  const std::string mpirun =
      o.mpirun.find('/') == std::string::npos ? find_in_path(o.mpirun) : o.mpirun;
  if (!executable(mpirun)) {
    throw std::runtime_error(
        "--compare mpi needs " + o.mpirun +
        ", which is not found (Debian: openmpi-bin), or name it with --mpirun");
  }
  std::vector<std::string> chorus_argv;
  if (o.transport != "inproc") {
    chorus_argv = {ctx.find_chorusrun(), "-n", std::to_string(np), "--no-prefix", "--"};
  }
  chorus_argv.push_back(self);
  const auto common = common_args(o);
  chorus_argv.insert(chorus_argv.end(), common.begin(), common.end());
  std::vector<std::string> names;
  for (const auto& a : o.algorithms) names.push_back(a.name);
  for (const std::string& s :
       {std::string("--transport"), o.transport, std::string("--algo"), join(names, ",")}) {
    chorus_argv.push_back(s);
  }
  if (o.transport == "inproc") {
    chorus_argv.emplace_back("--np");
    chorus_argv.push_back(std::to_string(np));
  }
  std::vector<std::string> mpi_argv = {mpirun};
  for (const auto& f : mpirun_flags(mpirun)) mpi_argv.push_back(f);
  for (const auto& f : o.mpirun_args) mpi_argv.push_back(f);
  for (const std::string& s : {std::string("-np"), std::to_string(np), mpi_perf}) {
    mpi_argv.push_back(s);
  }
  mpi_argv.insert(mpi_argv.end(), common.begin(), common.end());

  char tmpl[] = "/tmp/chorus-perf-compare-XXXXXX";
  if (::mkdtemp(tmpl) == nullptr)
    throw std::runtime_error("mkdtemp: " + std::string(std::strerror(errno)));
  const fs::path dir = tmpl;

  std::vector<nlohmann::json> chorus_runs, mpi_runs;
  std::fprintf(stderr, "# chorus: %s\n# MPI:    %s\n", join(chorus_argv, " ").c_str(),
               join(mpi_argv, " ").c_str());
  // One child run of one size: its JSON (exit 1 with a complete file means wrong results,
  // reported below; anything else is a failed run).
  const auto run_one = [&](bool mpi, std::size_t bytes, int round, bool floor) {
    const std::string stem =
        std::string(mpi ? "mpi-" : "chorus-") + std::to_string(bytes) + "-" + std::to_string(round);
    const std::string json = (dir / (stem + ".json")).string();
    const std::string log = (dir / (stem + ".log")).string();
    auto argv = mpi ? mpi_argv : chorus_argv;
    // this size only (a flag given twice takes its last value)
    for (const std::string& a : {std::string("-b"), std::to_string(bytes), std::string("-e"),
                                 std::to_string(bytes), std::string("--json"), json}) {
      argv.push_back(a);
    }
    if (floor) argv.emplace_back("--floor");
    const auto start = std::chrono::steady_clock::now();
    const int status = run_child(argv, log);
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::fprintf(stderr, "# %s B, round %d/%d: %-15s exit %d, %.1f s\n",
                 format_bytes(bytes).c_str(), round, o.rounds,
                 mpi ? "chorus-mpi-perf" : "chorus-perf", status, secs);
    if (status != 0 && !(status == 1 && fs::exists(json))) {
      throw std::runtime_error(std::string(mpi ? "chorus-mpi-perf" : "chorus-perf") +
                               " failed (exit " + std::to_string(status) + "); its last lines (" +
                               log + "):\n" + tail_of(log, 15));
    }
    return read_json(json);
  };

  // Size by size: the rounds of one size (chorus, MPI, chorus, MPI, ...), then its row at
  // once, so that the table streams as a plain run's does.
  const double factor = bus_factor(o.coll, np);
  auto busbw_of = [&](std::size_t size, double t_us) {
    return t_us > 0 ? static_cast<double>(size) / (t_us * 1e-6) / 1e9 * factor : 0;
  };
  nlohmann::json rows = nlohmann::json::array();
  std::vector<series> lines;
  double copy_gbs = 0, floor = 0;
  std::string mpi_library;
  long long chorus_wrong = 0, mpi_wrong = 0;
  const auto sizes = sweep_sizes(o);
  for (std::size_t si = 0; si < sizes.size(); ++si) {
    std::vector<nlohmann::json> chorus_round, mpi_round;
    for (int round = 1; round <= o.rounds; ++round) {
      chorus_round.push_back(run_one(false, sizes[si], round, si == 0));
      mpi_round.push_back(run_one(true, sizes[si], round, false));
    }
    for (const auto& j : chorus_round) chorus_wrong += j.at("wrong_total").get<long long>();
    for (const auto& j : mpi_round) mpi_wrong += j.at("wrong_total").get<long long>();
    if (si == 0) {  // the ceiling and the MPI library are known now: the header
      std::vector<double> copies;
      for (const auto& j : chorus_round) {
        if (!j.at("floor").is_null()) copies.push_back(j.at("floor").at("copy_gbs").get<double>());
      }
      copy_gbs = median(copies);
      floor = floor_busbw(o.coll, np, copy_gbs);
      const std::string lib = mpi_round.front().at("environment").at("library").get<std::string>();
      mpi_library = lib.substr(0, lib.find(','));
      print_compare_header(o, np, mpi_library, copy_gbs, floor, names);
      for (const auto& n : names) lines.push_back({"chorus " + n, {}, {}});
      lines.push_back({mpi_library, {}, {}});
    }
    std::vector<std::map<std::pair<std::string, std::size_t>, double>> ct, mt;
    for (const auto& j : chorus_round) ct.push_back(times_of(j));
    for (const auto& j : mpi_round) mt.push_back(times_of(j));
    chorus_runs.insert(chorus_runs.end(), chorus_round.begin(), chorus_round.end());
    mpi_runs.insert(mpi_runs.end(), mpi_round.begin(), mpi_round.end());
    const auto& first = chorus_round.front().at("results");
    if (first.empty()) continue;
    const auto size = first.front().at("size").get<std::size_t>();
    const auto count = first.front().at("count").get<std::size_t>();
    auto median_time = [&](const auto& runs, const std::string& algo) {
      std::vector<double> v;
      for (const auto& m : runs) {
        if (auto it = m.find({algo, size}); it != m.end()) v.push_back(it->second);
      }
      return median(v);
    };
    std::printf(" %12zu %12zu", size, count);
    nlohmann::json row = {{"size", size}, {"count", count}};
    std::vector<double> chorus_t;
    for (std::size_t a = 0; a < names.size(); ++a) {
      const double t = median_time(ct, names[a]);
      chorus_t.push_back(t);
      std::printf(" %9.2f %7.2f", t, busbw_of(size, t));
      row["chorus"][names[a]] = {{"time_us", t}, {"busbw_gbs", busbw_of(size, t)}};
      if (size > 0) lines[a].points.emplace_back(static_cast<double>(size), busbw_of(size, t));
    }
    const double m = median_time(mt, "mpi");
    std::printf(" %9.2f %7.2f %7.2f", m, busbw_of(size, m), floor);
    row["mpi"] = {{"time_us", m}, {"busbw_gbs", busbw_of(size, m)}};
    row["floor_busbw_gbs"] = floor;
    if (size > 0) lines.back().points.emplace_back(static_cast<double>(size), busbw_of(size, m));
    for (std::size_t a = 0; a < names.size(); ++a) {
      const double ratio = chorus_t[a] > 0 ? m / chorus_t[a] : 0;
      std::printf(" %9.3g", ratio);
      row["ratio_vs_mpi"][names[a]] = ratio;
    }
    std::printf("\n");
    std::fflush(stdout);
    rows.push_back(row);
  }
  std::printf("#\n");
  for (const auto& s : lines) {
    if (s.points.empty()) continue;
    const auto peak = *std::max_element(s.points.begin(), s.points.end(),
                                        [](auto& x, auto& y) { return x.second < y.second; });
    std::printf("# %-24s peak busbw %8.2f GB/s at %s B; at the largest size (%s B) %8.2f GB/s\n",
                s.name.c_str(), peak.second,
                format_bytes(static_cast<std::size_t>(peak.first)).c_str(),
                format_bytes(static_cast<std::size_t>(s.points.back().first)).c_str(),
                s.points.back().second);
  }
  std::printf("# #wrong over all rounds and ranks: chorus %lld, MPI %lld %s\n", chorus_wrong,
              mpi_wrong, chorus_wrong + mpi_wrong == 0 ? "(OK)" : "(WRONG RESULTS)");
  std::fflush(stdout);

  if (!o.json.empty()) {
    write_json_file(o.json, {{"tool", "chorus-perf --compare mpi"},
                             {"command", o.args},
                             {"rounds", o.rounds},
                             {"floor", {{"copy_gbs", copy_gbs}, {"busbw_gbs", floor}}},
                             {"rows", rows},
                             {"chorus_runs", chorus_runs},
                             {"mpi_runs", mpi_runs}});
  }
  if (!o.csv.empty()) {
    std::ofstream out(o.csv);
    out << "size,count,series,time_us,busbw_gbs,ratio_vs_mpi,floor_busbw_gbs\n";
    for (const auto& r : rows) {
      for (const auto& [algo, v] : r["chorus"].items()) {
        out << r["size"] << "," << r["count"] << ",chorus " << algo << "," << v["time_us"] << ","
            << v["busbw_gbs"] << "," << r["ratio_vs_mpi"][algo] << "," << floor << "\n";
      }
      out << r["size"] << "," << r["count"] << ",mpi," << r["mpi"]["time_us"] << ","
          << r["mpi"]["busbw_gbs"] << ",1," << floor << "\n";
    }
  }
  if (!o.plot.empty()) {
    plot_busbw(o.plot,
               std::string(name(o.coll)) + ", " + std::to_string(np) + " ranks, " +
                   std::string(chorus::name(o.type)) + ": chorus (" + o.transport + ") vs " +
                   mpi_library,
               lines, floor > 0 ? std::optional<double>(floor) : std::nullopt);
  }
  fs::remove_all(dir);
  return chorus_wrong + mpi_wrong == 0 ? 0 : 1;
}

}  // namespace chorus_perf

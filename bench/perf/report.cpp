#include "report.hpp"

#include "build_info.hpp"  // generated: CHORUS_PERF_COMMIT

#if CHORUS_PERF_HWLOC
#include <hwloc.h>
#endif

#include <chorus/version.hpp>

#include <sys/resource.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <limits>
#include <numeric>
#include <stdexcept>
#include <thread>

extern char** environ;

namespace chorus_perf {

namespace {

/// The machine as hwloc sees it: CPU model, cores, hardware threads, last-level cache.
struct machine {
  std::string cpu = "unknown";
  unsigned cores = 0, threads = 0;
  std::uint64_t llc_bytes = 0;  ///< the largest cache (one of them); 0: unknown
};

const machine& this_machine() {
  static const machine m = [] {
    machine out;
    out.threads = std::thread::hardware_concurrency();
#if CHORUS_PERF_HWLOC
    hwloc_topology_t topo = nullptr;
    if (hwloc_topology_init(&topo) == 0 && hwloc_topology_load(topo) == 0) {
      if (hwloc_obj_t pkg = hwloc_get_obj_by_type(topo, HWLOC_OBJ_PACKAGE, 0); pkg != nullptr) {
        if (const char* model = hwloc_obj_get_info_by_name(pkg, "CPUModel"); model != nullptr) {
          out.cpu = model;
          out.cpu.erase(out.cpu.find_last_not_of(' ') + 1);  // some processors pad it
        }
      }
      out.cores =
          static_cast<unsigned>(std::max(0, hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_CORE)));
      out.threads =
          static_cast<unsigned>(std::max(0, hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_PU)));
      for (hwloc_obj_type_t level : {HWLOC_OBJ_L3CACHE, HWLOC_OBJ_L2CACHE}) {
        if (hwloc_obj_t c = hwloc_get_obj_by_type(topo, level, 0); c != nullptr && c->attr) {
          out.llc_bytes = c->attr->cache.size;
          break;
        }
      }
    }
    if (topo != nullptr) hwloc_topology_destroy(topo);
#endif
    return out;
  }();
  return m;
}

std::string hostname() {
  char buf[256] = {};
  if (::gethostname(buf, sizeof buf - 1) != 0) return "unknown";
  return buf;
}

std::string utc_now(const char* format) {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  ::gmtime_r(&t, &tm);
  char buf[64];
  std::strftime(buf, sizeof buf, format, &tm);
  return buf;
}

std::string compiler() {
#if defined(__clang__)
  return std::string("clang ") + __clang_version__;
#elif defined(__GNUC__)
  return std::string("gcc ") + __VERSION__;
#else
  return "unknown";
#endif
}

/// Nearest rank: the smallest value with at least q of the samples at or below it.
double percentile(const std::vector<double>& sorted, double q) {
  if (sorted.empty()) return 0;
  const auto rank = static_cast<std::size_t>(std::ceil(q * static_cast<double>(sorted.size())));
  return sorted[std::min(sorted.size() - 1, rank == 0 ? 0 : rank - 1)];
}

std::string placement_name(bool in_place) { return in_place ? "in-place" : "out-of-place"; }

int root_of(const options& o) { return is_rooted(o.coll) ? o.root : -1; }

std::string redop_text(const options& o, chorus::op_kind op) {
  return is_reducing(o.coll) ? std::string(chorus::name(op)) : std::string("none");
}

/// nccl-tests' number format: `width` characters, as many decimals as fit (2, 1, 0), then
/// an exponent.
std::string fit(double value, int width) {
  char buf[64];
  for (const char* f : {"%*.2f", "%*.1f", "%*.0f"}) {
    if (std::snprintf(buf, sizeof buf, f, width, value) <= width) return buf;
  }
  std::snprintf(buf, sizeof buf, width >= 7 ? "%*.1e" : "%*.0e", width, value);
  return buf;
}

const char* combine_text(combine c) {
  switch (c) {
    case combine::rank0:
      return "rank 0's mean time (-a 0)";
    case combine::minimum:
      return "the fastest rank's mean time (-a 2)";
    case combine::maximum:
      return "the slowest rank's mean time (-a 3)";
    default:
      return "the average of the ranks' mean times (-a 1)";
  }
}

/// The variables that change what a run measures; CHORUS_JOB_SECRET stays out.
nlohmann::json variables() {
  nlohmann::json v = nlohmann::json::object();
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string kv = *e;
    const auto eq = kv.find('=');
    if (eq == std::string::npos) continue;
    const std::string key = kv.substr(0, eq);
    bool wanted = false;
    for (const char* prefix : {"CHORUS_", "UCX_", "NCCL_", "OMPI_MCA_", "CUDA_VISIBLE"}) {
      wanted = wanted || key.rfind(prefix, 0) == 0;
    }
    if (!wanted) continue;
    const bool secret = key.find("SECRET") != std::string::npos;
    v[key] = secret ? std::string("(not recorded)") : kv.substr(eq + 1);
  }
  return v;
}

/// The summary of one algorithm and placement over the rows: peak busbw, busbw at the
/// largest size, #wrong.
struct summary_of {
  bool any = false;
  double peak = 0, at_largest = 0;
  std::size_t peak_at = 0, largest = 0;
  long long wrong = 0;
};

summary_of summarize(const std::vector<size_row>& rows, std::size_t algorithm, bool in_place) {
  summary_of s;
  for (const auto& r : rows) {
    const cell& x = in_place ? r.in_place : r.out_of_place;
    if (r.algorithm != algorithm || !x.valid) continue;
    if (!s.any || x.busbw > s.peak) {
      s.peak = x.busbw;
      s.peak_at = r.bytes;
    }
    if (!s.any || r.bytes >= s.largest) {
      s.largest = r.bytes;
      s.at_largest = x.busbw;
    }
    s.any = true;
    s.wrong += std::max(0LL, x.wrong);
  }
  return s;
}

}  // namespace

cell make_cell(const options& o, int ranks, std::size_t bytes, std::vector<double> rank_s,
               std::vector<double> iteration_s, long long wrong) {
  cell x;
  x.valid = true;
  double t = 0;
  if (!rank_s.empty()) {
    switch (o.average) {
      case combine::rank0:
        t = rank_s.front();
        break;
      case combine::minimum:
        t = *std::min_element(rank_s.begin(), rank_s.end());
        break;
      case combine::maximum:
        t = *std::max_element(rank_s.begin(), rank_s.end());
        break;
      case combine::average:
        t = std::accumulate(rank_s.begin(), rank_s.end(), 0.0) / static_cast<double>(rank_s.size());
        break;
    }
  }
  x.time_us = t * 1e6;
  x.algbw = t > 0 ? static_cast<double>(bytes) / t / 1e9 : 0;
  x.busbw = x.algbw * bus_factor(o.coll, ranks);
  x.wrong = wrong;
  for (double s : rank_s) x.rank_us.push_back(s * 1e6);
  const auto skip = std::min(iteration_s.size(), static_cast<std::size_t>(o.per_iter_skip));
  if (iteration_s.size() > skip) {
    iteration_stats st;
    for (std::size_t i = skip; i < iteration_s.size(); ++i)
      st.times_us.push_back(iteration_s[i] * 1e6);
    std::vector<double> sorted = st.times_us;
    std::sort(sorted.begin(), sorted.end());
    const auto n = static_cast<double>(sorted.size());
    st.min_us = sorted.front();
    st.max_us = sorted.back();
    st.p50_us = percentile(sorted, 0.50);
    st.p99_us = percentile(sorted, 0.99);
    st.avg_us = std::accumulate(sorted.begin(), sorted.end(), 0.0) / n;
    double var = 0;
    for (double v : sorted) var += (v - st.avg_us) * (v - st.avg_us);
    st.cv_pct = st.avg_us > 0 ? std::sqrt(var / n) / st.avg_us * 100 : 0;
    x.iterations = std::move(st);
  }
  return x;
}

std::string build_commit() { return CHORUS_PERF_COMMIT; }

std::string build_flags() {
#ifdef CHORUS_PERF_FLAGS
  return CHORUS_PERF_FLAGS;
#else
  return "unknown";
#endif
}

nlohmann::json environment_json(const run_info& info) {
  utsname u{};
  std::string os = "unknown";
  if (::uname(&u) == 0) os = std::string(u.sysname) + " " + u.release + " " + u.machine;
  return {
      {"host", hostname()},
      {"os", os},
      {"cpu", this_machine().cpu},
      {"cores", this_machine().cores},
      {"hardware_threads", this_machine().threads},
      {"last_level_cache_bytes", this_machine().llc_bytes},
      {"compiler", compiler()},
      {"build_flags", build_flags()},
      {"commit", build_commit()},
      {"chorus_version", CHORUS_VERSION_STRING},
      {"library", info.library},
      {"launcher", info.launcher},
      {"date", utc_now("%Y-%m-%dT%H:%M:%SZ")},
      {"hosts", info.hosts.empty() ? "1" : info.hosts},
      {"variables", variables()},
  };
}

reporter::reporter(const options& o, run_info info) : o_(o), info_(std::move(info)) {}

void reporter::print_header() const {
  // nccl-tests' lines first, with its words, so that its parsers find what they look for.
  std::printf("# %s version %s (chorus %s, commit %s)\n", info_.tool.c_str(), CHORUS_VERSION_STRING,
              CHORUS_VERSION_STRING, build_commit().c_str());
  std::printf("# Collective test starting: %s %s\n", info_.tool.c_str(),
              std::string(name(o_.coll)).c_str());
  char step[64];
  if (o_.step_bytes == 0) {
    std::snprintf(step, sizeof step, "%g(factor)", o_.step_factor);
  } else {
    std::snprintf(step, sizeof step, "%zu(bytes)", o_.step_bytes);
  }
  std::printf(
      "# nThread %d nGpus %d minBytes %zu maxBytes %zu step: %s warmup iters: %d iters: %d agg "
      "iters: %d validation: %d graph: 0 unalign: %d\n",
      o_.nthreads, o_.ngpus, o_.min_bytes, o_.max_bytes, step, o_.warmup, o_.iters, o_.agg_iters,
      o_.check_iters, o_.unalign);
  if (o_.blocking == 1)
    std::printf("# Blocking Enabled: wait and barrier after each inner iteration (-m)\n");
  if (o_.blocking == 2)
    std::printf("# Blocking Enabled: wait after each inner iteration (-m), no barrier\n");
  if (o_.blocking == 3) {
    std::printf(
        "# Blocking Enabled: wait and barrier after each outer iteration (-n); time excludes "
        "barrier\n");
  }
  if (o_.per_iter) {
    std::printf("# Per-Iteration Report: i_* uses max over ranks");
    if (o_.per_iter_skip > 0) std::printf("; summary skips first %d iterations", o_.per_iter_skip);
    std::printf("\n");
  }
  if (o_.parallel_init) {
    std::printf("# Parallel Init Enabled: every rank sets up its communicator concurrently\n");
  }
  std::printf("#\n");
  // chorus's own lines.
  const auto env = environment_json(info_);
  std::printf("# Using %d ranks over %s (%s)%s%s\n", info_.ranks, info_.transport.c_str(),
              info_.launcher.c_str(), info_.hosts.empty() ? "" : ", on ", info_.hosts.c_str());
  const machine& m = this_machine();
  std::printf("# %s; host %s, %s, %u cores, %u hardware threads, last-level cache %s; %s\n",
              info_.library.c_str(), env["host"].get<std::string>().c_str(), m.cpu.c_str(), m.cores,
              m.threads, m.llc_bytes ? (format_bytes(m.llc_bytes) + " B").c_str() : "unknown",
              env["compiler"].get<std::string>().c_str());
  std::printf("# time = %s per call%s\n", combine_text(o_.average),
              o_.report_cputime ? ", host clock (-C 1)" : "");
  if (info_.copy_gbs) {
    std::printf(
        "# memory-bandwidth ceiling (--floor): STREAM copy %.2f GB/s over %d ranks (%s each) -> "
        "%s busbw at most %.2f GB/s once the ranks' buffers no longer fit in the caches\n",
        *info_.copy_gbs, info_.ranks, format_bytes(o_.floor_bytes).c_str(),
        std::string(name(o_.coll)).c_str(), floor_busbw(o_.coll, info_.ranks, *info_.copy_gbs));
  }
  std::fflush(stdout);
}

void reporter::begin_table(std::size_t algorithm) const {
  std::printf("#\n# Algorithm: %s\n", info_.algorithms[algorithm].c_str());
  const char* time = o_.report_cputime ? "cputime" : "time";
  const char* stamp_label = o_.report_timestamps ? "timestamp" : "";
  const char* stamp_format = o_.report_timestamps ? "(UTC)" : "";
  const int pad = o_.report_timestamps ? 19 : 0;
  if (o_.latency) {
    std::printf("# %-10s %18s %18s %18s %18s %12s\n", "Size", "Avg Latency(us)", "Min Latency(us)",
                "P50 Latency(us)", "Max Latency(us)", "Iterations");
  } else if (o_.per_iter) {
    std::printf(
        "# %10s  %12s  %8s  %6s  %6s              out-of-place (+ per-iteration)                "
        "                in-place (+ per-iteration)\n",
        "", "", "", "", "");
    std::printf(
        "# %10s  %12s  %8s  %6s  %6s  %7s  %6s  %6s  %6s  %7s  %7s  %7s  %7s  %7s  %6s  %6s  %6s  "
        "%7s  %7s  %7s  %7s %*s\n",
        "size", "count", "type", "redop", "root", time, "algbw", "busbw", "#wrong", "i_min",
        "i_max", "i_p99", "i_cv%", time, "algbw", "busbw", "#wrong", "i_min", "i_max", "i_p99",
        "i_cv%", pad, stamp_label);
    std::printf(
        "# %10s  %12s  %8s  %6s  %6s  %7s  %6s  %6s  %6s  %7s  %7s  %7s  %7s  %7s  %6s  %6s  %6s  "
        "%7s  %7s  %7s  %7s %*s\n",
        "(B)", "(elements)", "", "", "", "(us)", "(GB/s)", "(GB/s)", "", "(us)", "(us)", "(us)",
        "(%)", "(us)", "(GB/s)", "(GB/s)", "", "(us)", "(us)", "(us)", "(%)", pad, stamp_format);
  } else {
    std::printf(
        "# %10s  %12s  %8s  %6s  %6s           out-of-place                       in-place      "
        "    \n",
        "", "", "", "", "");
    std::printf("# %10s  %12s  %8s  %6s  %6s  %7s  %6s  %6s  %6s  %7s  %6s  %6s  %6s %*s\n", "size",
                "count", "type", "redop", "root", time, "algbw", "busbw", "#wrong", time, "algbw",
                "busbw", "#wrong", pad, stamp_label);
    std::printf("# %10s  %12s  %8s  %6s  %6s  %7s  %6s  %6s  %6s  %7s  %6s  %6s  %6s %*s\n", "(B)",
                "(elements)", "", "", "", "(us)", "(GB/s)", "(GB/s)", "", "(us)", "(GB/s)",
                "(GB/s)", "", pad, stamp_format);
  }
  std::fflush(stdout);
}

void reporter::add(size_row row) {
  if (o_.report_timestamps) row.timestamp = utc_now("%Y-%m-%d %H:%M:%S");
  if (o_.latency) {
    const cell& x = row.out_of_place;
    const iteration_stats none;
    const iteration_stats& st = x.iterations ? *x.iterations : none;
    std::printf("  %-10zu %18.2f %18.2f %18.2f %18.2f %12d\n", row.bytes, x.time_us, st.min_us,
                st.p50_us, st.max_us, o_.iters);
  } else {
    std::printf("%12zu  %12zu  %8s  %6s  %6d", row.bytes, row.count,
                std::string(nccl_name(row.type)).c_str(), redop_text(o_, row.op).c_str(),
                root_of(o_));
    for (const cell* x : {&row.out_of_place, &row.in_place}) {
      if (!x->valid) {  // no in-place form: nothing was measured
        std::printf("  %7s  %6s  %6s  %6s", "N/A", "N/A", "N/A", "N/A");
        if (o_.per_iter) std::printf("  %7s  %7s  %7s  %7s", "N/A", "N/A", "N/A", "N/A");
        continue;
      }
      std::printf("  %7s  %6s  %6s", fit(x->time_us, 7).c_str(), fit(x->algbw, 6).c_str(),
                  fit(x->busbw, 6).c_str());
      if (x->wrong < 0) {
        std::printf("    N/A");
      } else {
        std::printf("  %6g", static_cast<double>(x->wrong));
      }
      if (o_.per_iter) {
        const iteration_stats none;
        const iteration_stats& st = x->iterations ? *x->iterations : none;
        std::printf("  %7s  %7s  %7s  %7s", fit(st.min_us, 7).c_str(), fit(st.max_us, 7).c_str(),
                    fit(st.p99_us, 7).c_str(), fit(st.cv_pct, 7).c_str());
      }
    }
    if (o_.report_timestamps) std::printf("  %19s", row.timestamp.c_str());
    std::printf("\n");
  }
  std::fflush(stdout);
  rows_.push_back(std::move(row));
}

long long reporter::wrong_total() const {
  long long n = 0;
  for (const auto& r : rows_) {
    for (const cell* x : {&r.out_of_place, &r.in_place}) n += std::max(0LL, x->wrong);
  }
  return n;
}

long long reporter::out_of_bounds() const {
  long long n = 0;
  for (const auto& r : rows_) {
    for (const cell* x : {&r.out_of_place, &r.in_place}) n += x->wrong > 0 ? 1 : 0;
  }
  return n;
}

double reporter::average_busbw() const {
  double sum = 0;
  int n = 0;
  for (const auto& r : rows_) {
    for (const cell* x : {&r.out_of_place, &r.in_place}) {
      if (!x->valid) continue;
      sum += x->busbw;
      ++n;
    }
  }
  return n > 0 ? sum / n : 0;
}

bool reporter::bandwidth_ok() const {
  const char* min_bw = std::getenv("NCCL_TESTS_MIN_BW");
  return min_bw == nullptr || average_busbw() >= std::atof(min_bw) * 0.9;
}

void reporter::print_footer(std::size_t buffer_bytes) {
  std::printf("#\n");
  // Per algorithm the peak and the largest size: an average over sizes (nccl-tests' line
  // below, kept for its parsers) depends on which sizes were swept and hides both ends.
  for (std::size_t a = 0; a < info_.algorithms.size(); ++a) {
    for (bool in_place : {false, true}) {
      const summary_of m = summarize(rows_, a, in_place);
      if (!m.any) continue;
      std::printf(
          "# %-18s %-12s peak busbw %8.2f GB/s at %s B; at the largest size (%s B) %8.2f "
          "GB/s\n",
          info_.algorithms[a].c_str(), placement_name(in_place).c_str(), m.peak,
          format_bytes(m.peak_at).c_str(), format_bytes(m.largest).c_str(), m.at_largest);
    }
  }
  if (info_.copy_gbs) {
    std::printf(
        "# memory-bandwidth ceiling: busbw %.2f GB/s (STREAM copy %.2f GB/s), for buffers "
        "larger than the caches\n",
        floor_busbw(o_.coll, info_.ranks, *info_.copy_gbs), *info_.copy_gbs);
  }
  if (!o_.check()) {
    std::printf("# results not checked (-c 0)\n");
  } else {
    const long long w = wrong_total();
    std::printf("# #wrong over all sizes and ranks: %lld %s\n", w,
                w == 0 ? "(OK)" : "(WRONG RESULTS)");
  }
  if (o_.memory_report) {
    rusage ru{};
    ::getrusage(RUSAGE_SELF, &ru);
    const auto peak = static_cast<std::size_t>(ru.ru_maxrss) * 1024;
    memory_ = {{"buffers_bytes", buffer_bytes}, {"peak_resident_bytes", peak}};
    std::printf("# %-20s : buffers %.1f MiB per rank, peak resident %.1f MiB (rank 0's process)\n",
                "Host memory usage", static_cast<double>(buffer_bytes) / (1 << 20),
                static_cast<double>(peak) / (1 << 20));
  }
  const long long oob = out_of_bounds();
  std::printf("# %-20s : %lld %s\n", "Out of bounds values", oob, oob ? "FAILED" : "OK");
  const char* min_bw = std::getenv("NCCL_TESTS_MIN_BW");
  std::printf("# %-20s : %g %s\n", "Avg bus bandwidth", average_busbw(),
              min_bw == nullptr ? "" : (bandwidth_ok() ? "OK" : "FAILED"));
  std::printf("#\n# Collective test concluded: %s %s\n", info_.tool.c_str(),
              std::string(name(o_.coll)).c_str());
  std::fflush(stdout);
}

nlohmann::json reporter::to_json() const {
  nlohmann::json results = nlohmann::json::array();
  for (const auto& r : rows_) {
    for (bool in_place : {false, true}) {
      const cell& x = in_place ? r.in_place : r.out_of_place;
      if (!x.valid) continue;
      nlohmann::json per_iteration = nullptr;
      if (x.iterations) {
        const auto& st = *x.iterations;
        per_iteration = {{"skipped_iterations", o_.per_iter_skip},
                         {"min_us", st.min_us},
                         {"max_us", st.max_us},
                         {"avg_us", st.avg_us},
                         {"p50_us", st.p50_us},
                         {"p99_us", st.p99_us},
                         {"cv_pct", st.cv_pct},
                         {"times_us", st.times_us}};
      }
      results.push_back({
          {"size", r.bytes},
          {"count", r.count},
          {"type", chorus::name(r.type)},
          {"redop", redop_text(o_, r.op)},
          {"root", root_of(o_)},
          {"algorithm", info_.algorithms[r.algorithm]},
          {"placement", placement_name(in_place)},
          {"cycle", r.cycle},
          {"time_us", x.time_us},
          {"algbw_gbs", x.algbw},
          {"busbw_gbs", x.busbw},
          {"wrong", x.wrong},
          {"rank_time_us", x.rank_us},
          {"per_iteration", per_iteration},
      });
    }
  }
  nlohmann::json summary = nlohmann::json::array();
  for (std::size_t a = 0; a < info_.algorithms.size(); ++a) {
    for (bool in_place : {false, true}) {
      const summary_of m = summarize(rows_, a, in_place);
      if (!m.any) continue;
      summary.push_back({{"algorithm", info_.algorithms[a]},
                         {"placement", placement_name(in_place)},
                         {"peak_busbw_gbs", m.peak},
                         {"peak_size", m.peak_at},
                         {"largest_size", m.largest},
                         {"largest_busbw_gbs", m.at_largest},
                         {"wrong", m.wrong}});
    }
  }
  nlohmann::json floor = nullptr;
  if (info_.copy_gbs) {
    floor = {{"copy_gbs", *info_.copy_gbs},
             {"bytes_per_rank", o_.floor_bytes},
             {"busbw_gbs", floor_busbw(o_.coll, info_.ranks, *info_.copy_gbs)}};
  }
  nlohmann::json types = nlohmann::json::array(), ops = nlohmann::json::array();
  for (auto t : o_.types) types.push_back(chorus::name(t));
  for (auto k : o_.ops) ops.push_back(redop_text(o_, k));
  return {
      {"tool", info_.tool},
      {"command", o_.args},
      {"environment", environment_json(info_)},
      {"settings",
       {{"collective", name(o_.coll)},
        {"transport", info_.transport},
        {"ranks", info_.ranks},
        {"algorithms", info_.algorithms},
        {"type", chorus::name(o_.types.front())},
        {"types", types},
        {"redop", redop_text(o_, o_.ops.front())},
        {"redops", ops},
        {"root", root_of(o_)},
        {"min_bytes", o_.min_bytes},
        {"max_bytes", o_.max_bytes},
        {"step_factor", o_.step_factor},
        {"step_bytes", o_.step_bytes},
        {"iters", o_.iters},
        {"agg_iters", o_.agg_iters},
        {"warmup_iters", o_.warmup},
        {"run_cycles", o_.run_cycles},
        {"check", o_.check_iters},
        {"average", static_cast<int>(o_.average)},
        {"blocking", o_.blocking},
        {"timeout_s", o_.timeout_s},
        {"report_cputime", o_.report_cputime},
        {"unalign", o_.unalign},
        {"per_iter_timing", o_.per_iter},
        {"per_iter_skip", o_.per_iter_skip},
        {"nthreads", o_.nthreads},
        {"ngpus", o_.ngpus}}},
      {"floor", floor},
      {"results", results},
      {"summary", summary},
      {"wrong_total", wrong_total()},
      {"out_of_bounds", out_of_bounds()},
      {"average_busbw_gbs", average_busbw()},
      {"memory", memory_.is_null() ? nlohmann::json() : memory_},
  };
}

void write_json_file(const std::string& path, const nlohmann::json& j) {
  std::ofstream out(path);
  out << j.dump(2) << "\n";
  out.close();
  if (!out) {
    throw std::runtime_error("cannot write '" + path + "': " + std::strerror(errno));
  }
}

void reporter::write_files() const {
  if (!o_.json.empty()) write_json_file(o_.json, to_json());
  if (!o_.csv.empty()) {
    const auto j = to_json();
    std::ofstream out(o_.csv);
    // The environment as comment lines (pandas: read_csv(path, comment='#')); the columns
    // that tell runs apart are repeated on every row, so that files concatenate.
    for (const auto& [k, v] : j["environment"].items()) {
      out << "# " << k << ": " << (v.is_string() ? v.get<std::string>() : v.dump()) << "\n";
    }
    out << "tool,host,transport,ranks,collective,algorithm,placement,size,count,type,redop,root,"
           "time_us,algbw_gbs,busbw_gbs,wrong,p50_us,p99_us\n";
    const std::string prefix = info_.tool + "," + j["environment"]["host"].get<std::string>() +
                               "," + info_.transport + "," + std::to_string(info_.ranks) + "," +
                               std::string(name(o_.coll)) + ",";
    for (const auto& r : j["results"]) {
      auto num = [](const nlohmann::json& v) { return v.is_null() ? std::string() : v.dump(); };
      const auto& it = r["per_iteration"];
      out << prefix << r["algorithm"].get<std::string>() << "," << r["placement"].get<std::string>()
          << "," << r["size"] << "," << r["count"] << "," << r["type"].get<std::string>() << ","
          << r["redop"].get<std::string>() << "," << r["root"] << "," << num(r["time_us"]) << ","
          << num(r["algbw_gbs"]) << "," << num(r["busbw_gbs"]) << "," << r["wrong"] << ","
          << (it.is_null() ? "" : num(it["p50_us"])) << ","
          << (it.is_null() ? "" : num(it["p99_us"])) << "\n";
    }
    out.close();
    if (!out) throw std::runtime_error("cannot write '" + o_.csv + "': " + std::strerror(errno));
  }
}

std::vector<series> reporter::out_of_place_series(
    std::size_t max_bytes, double (*value)(const cell&, std::size_t, double),
    std::pair<double, double> (*spread)(const iteration_stats&, std::size_t, double)) const {
  std::vector<series> out;
  const double factor = bus_factor(o_.coll, info_.ranks);
  for (std::size_t a = 0; a < info_.algorithms.size(); ++a) {
    series s{info_.tool == "chorus-perf" ? "chorus " + info_.algorithms[a] : info_.algorithms[a],
             {},
             {}};
    bool spread_known = true;
    for (const auto& r : rows_) {
      const cell& x = r.out_of_place;
      // the first cycle of the first type and op: one line per algorithm
      if (r.algorithm != a || r.cycle != 0 || r.type != o_.types.front() ||
          r.op != o_.ops.front() || !x.valid || r.bytes == 0 || r.bytes > max_bytes) {
        continue;
      }
      s.points.emplace_back(static_cast<double>(r.bytes), value(x, r.bytes, factor));
      if (x.iterations && x.iterations->min_us > 0) {
        s.spread.push_back(spread(*x.iterations, r.bytes, factor));
      } else {
        spread_known = false;
      }
    }
    if (!spread_known) s.spread.clear();
    out.push_back(std::move(s));
  }
  return out;
}

std::vector<series> reporter::busbw_series() const {
  return out_of_place_series(
      std::numeric_limits<std::size_t>::max(),
      [](const cell& x, std::size_t, double) { return x.busbw; },
      [](const iteration_stats& st, std::size_t bytes, double factor) {
        // the slowest iteration is the lowest busbw
        return std::pair{static_cast<double>(bytes) / st.max_us / 1e3 * factor,
                         static_cast<double>(bytes) / st.min_us / 1e3 * factor};
      });
}

std::vector<series> reporter::latency_series() const {
  return out_of_place_series(
      std::size_t{64} << 10, [](const cell& x, std::size_t, double) { return x.time_us; },
      [](const iteration_stats& st, std::size_t, double) {
        return std::pair{st.min_us, st.max_us};
      });
}

}  // namespace chorus_perf

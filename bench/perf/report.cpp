#include "report.hpp"

#include <chorus/version.hpp>

#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <fstream>
#include <stdexcept>
#include <thread>

namespace chorus_perf {

namespace {

std::string cpu_model() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) == 0) {
      const auto colon = line.find(':');
      if (colon != std::string::npos) return line.substr(line.find_first_not_of(' ', colon + 1));
    }
  }
  return "unknown";
}

std::string hostname() {
  char buf[256] = {};
  if (::gethostname(buf, sizeof buf - 1) != 0) return "unknown";
  return buf;
}

std::string utc_now() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  ::gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
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

double percentile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  // nearest rank: the smallest value with at least q of the samples at or below it
  const auto rank = static_cast<std::size_t>(std::ceil(q * static_cast<double>(v.size())));
  return v[std::min(v.size() - 1, rank == 0 ? 0 : rank - 1)];
}

std::string placement_name(bool in_place) { return in_place ? "in-place" : "out-of-place"; }

std::string root_text(const options& o) {
  return is_rooted(o.coll) ? std::to_string(o.root) : std::string("-1");
}

std::string redop_text(const options& o) {
  return is_reducing(o.coll) ? std::string(chorus::name(o.op)) : std::string("none");
}

}  // namespace

cell make_cell(collective c, int ranks, std::size_t bytes, double mean_s,
               std::vector<double> iteration_s, long long wrong) {
  cell x;
  x.valid = true;
  x.time_us = mean_s * 1e6;
  x.algbw = mean_s > 0 ? static_cast<double>(bytes) / mean_s / 1e9 : 0;
  x.busbw = x.algbw * bus_factor(c, ranks);
  x.wrong = wrong;
  if (!iteration_s.empty()) {
    x.p50_us = percentile(iteration_s, 0.50) * 1e6;
    x.p99_us = percentile(std::move(iteration_s), 0.99) * 1e6;
  }
  return x;
}

nlohmann::json environment_json(const run_info& info) {
  utsname u{};
  std::string os = "unknown";
  if (::uname(&u) == 0) os = std::string(u.sysname) + " " + u.release + " " + u.machine;
  return {
      {"host", hostname()},      {"os", os},
      {"cpu", cpu_model()},      {"cores", std::thread::hardware_concurrency()},
      {"compiler", compiler()},  {"chorus_version", CHORUS_VERSION_STRING},
      {"library", info.library}, {"launcher", info.launcher},
      {"date", utc_now()},       {"hosts", info.hosts.empty() ? "1" : info.hosts},
  };
}

reporter::reporter(const options& o, run_info info) : o_(o), info_(std::move(info)) {}

void reporter::print_header() const {
  const auto env = environment_json(info_);
  std::printf("# %s %s: %s, %d ranks (%s, %s), %s %s%s\n", info_.tool.c_str(),
              CHORUS_VERSION_STRING, std::string(name(o_.coll)).c_str(), info_.ranks,
              info_.transport.c_str(), info_.launcher.c_str(),
              std::string(chorus::name(o_.type)).c_str(), redop_text(o_).c_str(),
              is_rooted(o_.coll) ? (", root " + root_text(o_)).c_str() : "");
  std::printf("# %s; host %s, %s, %u cores; %s\n", info_.library.c_str(),
              env["host"].get<std::string>().c_str(), env["cpu"].get<std::string>().c_str(),
              env["cores"].get<unsigned>(), env["compiler"].get<std::string>().c_str());
  if (!info_.hosts.empty()) std::printf("# ranks on %s\n", info_.hosts.c_str());
  std::printf("# sizes %s to %s, %d iterations after %d warm-up, check %s; time = slowest rank\n",
              format_bytes(o_.min_bytes).c_str(), format_bytes(o_.max_bytes).c_str(), o_.iters,
              o_.warmup, o_.check ? "on" : "off");
  if (info_.copy_gbs) {
    std::printf(
        "# floor: STREAM copy %.2f GB/s over %d ranks (%s each) -> %s busbw floor %.2f GB/s\n",
        *info_.copy_gbs, info_.ranks, format_bytes(o_.floor_bytes).c_str(),
        std::string(name(o_.coll)).c_str(), floor_busbw(o_.coll, info_.ranks, *info_.copy_gbs));
  }
  std::printf("#\n");
  // Group labels, then the two heading lines of nccl-tests.
  std::string labels = "#" + std::string(54, ' ');
  std::string h1 = "#        size        count      type   redop  root";
  std::string h2 = "#         (B)   (elements)                          ";
  const bool several = info_.algorithms.size() > 1;
  for (const auto& a : info_.algorithms) {
    for (bool in_place : {false, true}) {
      std::string label = (several ? a + " " : std::string()) + placement_name(in_place);
      const std::size_t width = o_.percentiles ? 55 : 35;
      if (label.size() < width) label = std::string((width - label.size()) / 2, ' ') + label;
      label.resize(width + 2, ' ');
      labels += label;
      h1 += "     time   algbw   busbw  #wrong";
      h2 += "     (us)  (GB/s)  (GB/s)        ";
      if (o_.percentiles) {
        h1 += "       p50       p99";
        h2 += "      (us)      (us)";
      }
      h1 += "  ";
      h2 += "  ";
    }
  }
  std::printf("%s\n%s\n%s\n", labels.c_str(), h1.c_str(), h2.c_str());
  std::fflush(stdout);
}

void reporter::add(size_row row) {
  std::printf(" %12zu %12zu %9s %7s %5s", row.bytes, row.count,
              std::string(chorus::name(o_.type)).c_str(), redop_text(o_).c_str(),
              root_text(o_).c_str());
  for (std::size_t a = 0; a < row.out_of_place.size(); ++a) {
    for (const cell* x : {&row.out_of_place[a], &row.in_place[a]}) {
      if (!x->valid) {
        std::printf(" %8s %7s %7s %7s", "n/a", "n/a", "n/a", "n/a");
        if (o_.percentiles) std::printf(" %9s %9s", "n/a", "n/a");
      } else {
        std::printf(" %8.2f %7.2f %7.2f", x->time_us, x->algbw, x->busbw);
        if (x->wrong < 0) {
          std::printf(" %7s", "n/a");
        } else {
          std::printf(" %7lld", x->wrong);
        }
        if (o_.percentiles) std::printf(" %9.2f %9.2f", x->p50_us, x->p99_us);
      }
      std::printf("  ");
    }
  }
  std::printf("\n");
  std::fflush(stdout);
  rows_.push_back(std::move(row));
}

long long reporter::wrong_total() const {
  long long n = 0;
  for (const auto& r : rows_) {
    for (const auto* cells : {&r.out_of_place, &r.in_place}) {
      for (const auto& x : *cells) n += std::max(0LL, x.wrong);
    }
  }
  return n;
}

void reporter::print_footer() const {
  std::printf("#\n");
  if (rows_.empty()) {
    std::printf("# no sizes measured\n");
    return;
  }
  // Never an average over sizes: it depends on which sizes were swept and hides both the
  // small-message latency and the large-message bandwidth. Peak and largest size instead.
  const auto& last = rows_.back();
  for (std::size_t a = 0; a < info_.algorithms.size(); ++a) {
    for (bool in_place : {false, true}) {
      double peak = -1;
      std::size_t peak_at = 0;
      for (const auto& r : rows_) {
        const cell& x = in_place ? r.in_place[a] : r.out_of_place[a];
        if (x.valid && x.busbw > peak) {
          peak = x.busbw;
          peak_at = r.bytes;
        }
      }
      if (peak < 0) continue;
      const cell& l = in_place ? last.in_place[a] : last.out_of_place[a];
      std::printf(
          "# %-18s %-12s peak busbw %8.2f GB/s at %s B; at the largest size (%s B) %8.2f "
          "GB/s\n",
          info_.algorithms[a].c_str(), placement_name(in_place).c_str(), peak,
          format_bytes(peak_at).c_str(), format_bytes(last.bytes).c_str(), l.busbw);
    }
  }
  if (info_.copy_gbs) {
    std::printf("# memory-bandwidth floor: busbw %.2f GB/s (STREAM copy %.2f GB/s)\n",
                floor_busbw(o_.coll, info_.ranks, *info_.copy_gbs), *info_.copy_gbs);
  }
  if (!o_.check) {
    std::printf("# results not checked (-c 0)\n");
  } else {
    const long long w = wrong_total();
    std::printf("# #wrong over all sizes and ranks: %lld %s\n", w,
                w == 0 ? "(OK)" : "(WRONG RESULTS)");
  }
  std::fflush(stdout);
}

nlohmann::json reporter::to_json() const {
  nlohmann::json results = nlohmann::json::array();
  nlohmann::json summary = nlohmann::json::array();
  for (std::size_t a = 0; a < info_.algorithms.size(); ++a) {
    for (bool in_place : {false, true}) {
      double peak = 0;
      std::size_t peak_at = 0;
      bool any = false;
      long long wrong = 0;
      for (const auto& r : rows_) {
        const cell& x = in_place ? r.in_place[a] : r.out_of_place[a];
        if (!x.valid) continue;
        any = true;
        wrong += std::max(0LL, x.wrong);
        if (x.busbw > peak) {
          peak = x.busbw;
          peak_at = r.bytes;
        }
        results.push_back({
            {"size", r.bytes},
            {"count", r.count},
            {"type", chorus::name(o_.type)},
            {"redop", redop_text(o_)},
            {"root", is_rooted(o_.coll) ? o_.root : -1},
            {"algorithm", info_.algorithms[a]},
            {"placement", placement_name(in_place)},
            {"time_us", x.time_us},
            {"algbw_gbs", x.algbw},
            {"busbw_gbs", x.busbw},
            {"wrong", x.wrong},
            {"p50_us", o_.percentiles ? nlohmann::json(x.p50_us) : nlohmann::json()},
            {"p99_us", o_.percentiles ? nlohmann::json(x.p99_us) : nlohmann::json()},
        });
      }
      if (!any) continue;
      const cell& l = in_place ? rows_.back().in_place[a] : rows_.back().out_of_place[a];
      summary.push_back({{"algorithm", info_.algorithms[a]},
                         {"placement", placement_name(in_place)},
                         {"peak_busbw_gbs", peak},
                         {"peak_size", peak_at},
                         {"largest_size", rows_.back().bytes},
                         {"largest_busbw_gbs", l.busbw},
                         {"wrong", wrong}});
    }
  }
  nlohmann::json floor = nullptr;
  if (info_.copy_gbs) {
    floor = {{"copy_gbs", *info_.copy_gbs},
             {"bytes_per_rank", o_.floor_bytes},
             {"busbw_gbs", floor_busbw(o_.coll, info_.ranks, *info_.copy_gbs)}};
  }
  return {
      {"tool", info_.tool},
      {"command", o_.args},
      {"environment", environment_json(info_)},
      {"settings",
       {{"collective", name(o_.coll)},
        {"transport", info_.transport},
        {"ranks", info_.ranks},
        {"algorithms", info_.algorithms},
        {"type", chorus::name(o_.type)},
        {"redop", redop_text(o_)},
        {"root", is_rooted(o_.coll) ? o_.root : -1},
        {"min_bytes", o_.min_bytes},
        {"max_bytes", o_.max_bytes},
        {"step_factor", o_.step_factor},
        {"step_bytes", o_.step_bytes},
        {"iters", o_.iters},
        {"warmup_iters", o_.warmup},
        {"check", o_.check}}},
      {"floor", floor},
      {"results", results},
      {"summary", summary},
      {"wrong_total", wrong_total()},
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
      out << prefix << r["algorithm"].get<std::string>() << "," << r["placement"].get<std::string>()
          << "," << r["size"] << "," << r["count"] << "," << r["type"].get<std::string>() << ","
          << r["redop"].get<std::string>() << "," << r["root"] << "," << num(r["time_us"]) << ","
          << num(r["algbw_gbs"]) << "," << num(r["busbw_gbs"]) << "," << r["wrong"] << ","
          << num(r["p50_us"]) << "," << num(r["p99_us"]) << "\n";
    }
    out.close();
    if (!out) throw std::runtime_error("cannot write '" + o_.csv + "': " + std::strerror(errno));
  }
}

std::vector<series> reporter::busbw_series() const {
  std::vector<series> out;
  for (std::size_t a = 0; a < info_.algorithms.size(); ++a) {
    series s{info_.tool == "chorus-perf" ? "chorus " + info_.algorithms[a] : info_.algorithms[a],
             {}};
    for (const auto& r : rows_) {
      if (r.out_of_place[a].valid && r.bytes > 0) {
        s.points.emplace_back(static_cast<double>(r.bytes), r.out_of_place[a].busbw);
      }
    }
    out.push_back(std::move(s));
  }
  return out;
}

}  // namespace chorus_perf

// chorus-compress-perf: the time of one compressed all-reduce over UCX, per compression
// method, set against what compress::report predicts for it. See docs/compression.md
// ("Over a shaped link"); bench/perf/compress-netns.sh runs it across network-namespace hosts.
//
//   chorus-compress-perf [--size 64M] [--iters 5] [--warmup 2] [--methods none,cast,topk,powersgd]
//                        [--link-gbps X] [--json F]
//
// (--methods all: every method below, the default four and the six after them.)
//
// Every rank is one process of a launcher's job (chorusrun, torchrun-style RANK/WORLD_SIZE +
// CHORUS_STORE, ...: bootstrap::from_env) and joins one UCX communicator. For each method
// the same seeded fp32 gradient is averaged with chorus::all_reduce and a compression policy:
//   none      compress::none
//   cast      compress::cast<chorus::half>
//   topk      compress::error_feedback{top_k{.ratio = 0.01}, residual}   (the two-stage path)
//   powersgd  compress::error_feedback{power_sgd{.rank = 4, .rows = R}, residual}, the
//             gradient as an R x (n / R) matrix, R the largest divisor of n up to sqrt(n)
//             (4096 x 4096 for 64 MiB)
//   threshold  compress::error_feedback{threshold_top_k{.ratio = 0.01}, residual}
//   blockquant compress::block_quant<std::int8_t>{}
//   sign       compress::error_feedback{scaled_sign{}, residual}
//   qsgd       compress::qsgd{.levels = 16}
//   terngrad   compress::terngrad{}
//   randomk    compress::random_k{.ratio = 0.01}                    (the sum path)
// Each call starts after a barrier and is timed alone; a call's time is the slowest rank's.
// After the warm-up the ledger is reset, so the report covers the timed calls only.
//
// The prediction is the report's own arithmetic, compressed_seconds(B) = sent / B + codec,
// at two rates B:
//   link       --link-gbps, the raw link rate (what ucx_perftest measured);
//   effective  the rate at which the plain all-reduce moved its bytes in this run:
//              plain bytes / (none's median - none's codec time). It needs `none` among
//              the methods; the `none` row then predicts itself exactly, by construction.
// Each report field is the maximum over ranks (the slowest rank bounds the call).
//
// Results are checked on the first call: `none` and `cast` against the average computed
// here (cast within half's rounding), every method for finite values and identical bits on
// every rank. Exit status 0, 1 when a check failed or a rank failed, 2 for a usage error.
#include "median.hpp"
#include "options.hpp"

#include <chorus/chorus.hpp>
#include <chorus/compress/compress.hpp>
#include <chorus/transport/ucx.hpp>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <bit>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <fstream>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace chorus_compress_perf {
namespace {

namespace cc = chorus::compress;
using chorus_perf::usage_error;
using communicator = chorus::communicator<chorus::ucx_transport>;

struct options {
  std::size_t bytes = std::size_t{64} << 20;
  int iters = 5;
  int warmup = 2;
  std::vector<std::string> methods{"none", "cast", "topk", "powersgd"};
  double link_gbps = 0;  ///< 0: not given
  std::string json;
  double top_k_ratio = 0.01;
  std::size_t power_sgd_rank = 4;
  std::uint64_t seed = 1;
};

constexpr std::array<std::string_view, 10> known_methods{
    "none",       "cast", "topk", "powersgd", "threshold",
    "blockquant", "sign", "qsgd", "terngrad", "randomk"};

/// The methods as one comma-separated list, for messages.
std::string method_list() {
  std::string list;
  for (const std::string_view m : known_methods)
    list += (list.empty() ? "" : ", ") + std::string(m);
  return list;
}

/// Parses the command line; nullopt after --help.
std::optional<options> parse(int argc, char** argv) {
  options o;
  CLI::App app{
      "chorus-compress-perf: time compressed all-reduces over UCX and set them against "
      "compress::report's prediction; run one process per rank under a launcher"};
  std::string size = "64M";
  std::string methods = "none,cast,topk,powersgd";
  app.add_option("--size", size, "gradient bytes (fp32; K, M, G suffixes); default 64M");
  app.add_option("--iters", o.iters, "timed calls per method; default 5")
      ->check(CLI::PositiveNumber);
  app.add_option("--warmup", o.warmup, "untimed calls per method first; default 2")
      ->check(CLI::NonNegativeNumber);
  app.add_option(
      "--methods", methods,
      "comma-separated, from " + method_list() + ", or all; default none,cast,topk,powersgd");
  app.add_option("--link-gbps", o.link_gbps,
                 "the raw link rate in Gbit/s (10^9 bit/s), e.g. ucx_perftest's; predictions "
                 "at this rate are printed when given")
      ->check(CLI::PositiveNumber);
  app.add_option("--json", o.json, "write the results to this JSON file");
  app.add_option("--topk-ratio", o.top_k_ratio,
                 "the ratio of top-k, threshold top-k and random-k; default 0.01");
  app.add_option("--powersgd-rank", o.power_sgd_rank, "PowerSGD's rank; default 4");
  app.add_option("--seed", o.seed, "seed of the gradients; default 1");
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp&) {
    std::fputs(app.help().c_str(), stdout);
    return std::nullopt;
  } catch (const CLI::ParseError& e) {
    throw usage_error(e.what());
  }
  o.bytes = chorus_perf::parse_bytes("--size", size);
  if (o.bytes == 0 || o.bytes % sizeof(float) != 0) {
    throw usage_error("--size " + size + " is not a positive multiple of 4 bytes (fp32)");
  }
  if (!(o.top_k_ratio > 0 && o.top_k_ratio <= 1)) {
    throw usage_error("--topk-ratio needs a value in (0, 1]");
  }
  if (o.power_sgd_rank == 0) throw usage_error("--powersgd-rank needs a value >= 1");
  o.methods.clear();
  if (methods == "all") {
    methods.clear();
    for (const std::string_view m : known_methods)
      methods += (methods.empty() ? "" : ",") + std::string(m);
  }
  for (std::size_t start = 0; start <= methods.size();) {
    const std::size_t comma = std::min(methods.find(',', start), methods.size());
    const std::string m = methods.substr(start, comma - start);
    if (std::find(known_methods.begin(), known_methods.end(), m) == known_methods.end()) {
      throw usage_error("--methods: unknown method '" + m + "'; choose from " + method_list() +
                        ", or all");
    }
    if (std::find(o.methods.begin(), o.methods.end(), m) == o.methods.end()) o.methods.push_back(m);
    start = comma + 1;
  }
  return o;
}

/// Rank `rank`'s gradient element i: uniform in [-1, 1), from a counter-based hash
/// (splitmix64), so that any rank can compute any other rank's gradient for the check.
float gradient_element(std::uint64_t seed, int rank, std::size_t i) noexcept {
  std::uint64_t z = seed * 0x9e3779b97f4a7c15ull + (std::uint64_t(rank) << 40) + i;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  z ^= z >> 31;
  return static_cast<float>(static_cast<double>(z >> 40) * 0x1p-23 - 1.0);
}

/// The largest divisor of n that is at most sqrt(n): the rows of PowerSGD's matrix.
std::size_t matrix_rows(std::size_t n) {
  std::size_t rows = 1;
  for (std::size_t d = 1; d * d <= n; ++d) {
    if (n % d == 0) rows = d;
  }
  return rows;
}

/// Whether the first call's result is right: identical bits and finite values on every rank,
/// and for the exact-enough methods, within `tolerance` of the average computed here
/// (tolerance < 0: no reference).
bool check_result(communicator& comm, const options& o, std::span<const float> got,
                  double tolerance) {
  chorus::fnv1a digest;  // over the bits
  long long bad = 0;
  for (const float v : got) {
    digest.add_value(std::bit_cast<std::uint32_t>(v));
    if (!std::isfinite(v)) ++bad;
  }
  const std::uint64_t hash = digest.value;
  if (tolerance >= 0) {
    const int p = comm.size();
    for (std::size_t i = 0; i < got.size(); ++i) {
      double sum = 0;
      for (int r = 0; r < p; ++r) sum += gradient_element(o.seed, r, i);
      if (!(std::abs(got[i] - sum / p) <= tolerance)) ++bad;
    }
  }
  const auto as_signed = static_cast<long long>(hash >> 1);
  std::array<long long, 2> high{as_signed, -as_signed};
  chorus::all_reduce(comm, std::span<long long>(high), chorus::maximum{});
  std::array<long long, 1> wrong{bad + (high[0] != -high[1] ? 1 : 0)};
  chorus::all_reduce(comm, std::span<long long>(wrong), chorus::plus{});
  return wrong[0] == 0;
}

/// What one method measured.
struct result {
  std::string method;
  std::vector<double> seconds;  ///< each timed call, the slowest rank's
  double median = 0;
  cc::report report;  ///< each field the maximum over ranks
  cc::report rank0;   ///< rank 0's own report
  bool checked_ok = true;
};

/// The first line of /proc/loadavg ("0.42 1.31 2.21 1/234 5678"), or "unknown": the machine
/// is shared, and the load is part of what a measurement says.
std::string load_average() {
  std::ifstream f("/proc/loadavg");
  std::string line;
  if (!std::getline(f, line)) return "unknown";
  return line;
}

/// Runs `call(grad, book)` warmup + iters times on fresh copies of this rank's gradient.
template <class Call>
result measure(communicator& comm, const options& o, const std::string& method,
               const std::vector<float>& gradient, double tolerance, Call call) {
  result res;
  res.method = method;
  std::vector<float> grad(gradient.size());
  cc::ledger book;
  std::vector<double> seconds;
  for (int i = 0; i < o.warmup + o.iters; ++i) {
    std::copy(gradient.begin(), gradient.end(), grad.begin());
    if (i == o.warmup) book.reset();
    chorus::barrier(comm);
    const auto start = std::chrono::steady_clock::now();
    call(std::span<float>(grad), book);
    const auto stop = std::chrono::steady_clock::now();
    if (i >= o.warmup) seconds.push_back(std::chrono::duration<double>(stop - start).count());
    if (i == 0) res.checked_ok = check_result(comm, o, grad, tolerance);
  }
  chorus::all_reduce(comm, std::span<double>(seconds), chorus::maximum{});
  res.seconds = seconds;
  res.median = chorus_perf::median(seconds);
  res.rank0 = cc::report(book);
  res.report = res.rank0;
  std::array<double, 5> fields{res.report.plain_bytes, res.report.sent_bytes,
                               res.report.encode_seconds, res.report.decode_seconds,
                               res.report.other_seconds};
  chorus::all_reduce(comm, std::span<double>(fields), chorus::maximum{});
  res.report.plain_bytes = fields[0];
  res.report.sent_bytes = fields[1];
  res.report.encode_seconds = fields[2];
  res.report.decode_seconds = fields[3];
  res.report.other_seconds = fields[4];
  return res;
}

std::vector<result> run_methods(communicator& comm, const options& o) {
  const std::size_t n = o.bytes / sizeof(float);
  std::vector<float> gradient(n);
  for (std::size_t i = 0; i < n; ++i) gradient[i] = gradient_element(o.seed, comm.rank(), i);
  const double ranks = comm.size();
  std::vector<result> results;
  for (const std::string& m : o.methods) {
    if (m == "none") {
      results.push_back(measure(comm, o, m, gradient, 1e-6 * ranks, [&](auto g, auto& book) {
        chorus::all_reduce(comm, g, chorus::average{}, cc::none{}, book);
      }));
    } else if (m == "cast") {
      // Each value and each partial sum rounded to half (below 2^-11 relative each).
      results.push_back(measure(comm, o, m, gradient, 1e-3 * ranks, [&](auto g, auto& book) {
        chorus::all_reduce(comm, g, chorus::average{}, cc::cast<chorus::half>{}, book);
      }));
    } else if (m == "topk") {
      cc::residual<float> residual;
      const cc::top_k codec{.ratio = o.top_k_ratio};
      results.push_back(measure(comm, o, m, gradient, -1, [&](auto g, auto& book) {
        chorus::all_reduce(comm, g, chorus::average{}, cc::error_feedback{codec, residual}, book);
      }));
    } else if (m == "threshold") {
      cc::residual<float> residual;
      const cc::threshold_top_k codec{.ratio = o.top_k_ratio};
      results.push_back(measure(comm, o, m, gradient, -1, [&](auto g, auto& book) {
        chorus::all_reduce(comm, g, chorus::average{}, cc::error_feedback{codec, residual}, book);
      }));
    } else if (m == "blockquant") {
      results.push_back(measure(comm, o, m, gradient, -1, [&](auto g, auto& book) {
        chorus::all_reduce(comm, g, chorus::average{}, cc::block_quant<std::int8_t>{}, book);
      }));
    } else if (m == "sign") {
      cc::residual<float> residual;
      results.push_back(measure(comm, o, m, gradient, -1, [&](auto g, auto& book) {
        chorus::all_reduce(comm, g, chorus::average{},
                           cc::error_feedback{cc::scaled_sign{}, residual}, book);
      }));
    } else if (m == "qsgd") {
      results.push_back(measure(comm, o, m, gradient, -1, [&](auto g, auto& book) {
        chorus::all_reduce(comm, g, chorus::average{}, cc::qsgd{.levels = 16, .seed = o.seed},
                           book);
      }));
    } else if (m == "terngrad") {
      results.push_back(measure(comm, o, m, gradient, -1, [&](auto g, auto& book) {
        chorus::all_reduce(comm, g, chorus::average{}, cc::terngrad{.seed = o.seed}, book);
      }));
    } else if (m == "randomk") {
      results.push_back(measure(comm, o, m, gradient, -1, [&](auto g, auto& book) {
        chorus::all_reduce(comm, g, chorus::average{},
                           cc::random_k{.ratio = o.top_k_ratio, .seed = o.seed}, book);
      }));
    } else {
      cc::residual<float> residual;
      cc::power_sgd_state state;
      const cc::power_sgd codec{
          .rank = o.power_sgd_rank, .rows = matrix_rows(n), .state = &state, .seed = o.seed};
      results.push_back(measure(comm, o, m, gradient, -1, [&](auto g, auto& book) {
        chorus::all_reduce(comm, g, chorus::average{}, cc::error_feedback{codec, residual}, book);
      }));
    }
  }
  return results;
}

/// A prediction at one rate: the report's compressed time and the measured / predicted ratio.
struct prediction {
  double bytes_per_second = 0;  ///< 0: not available
  double predicted(const result& r) const { return r.report.compressed_seconds(bytes_per_second); }
  double ratio(const result& r) const { return r.median / predicted(r); }
  /// The report's speed-up over the plain all-reduce at this rate (> 1: compression wins).
  double speedup(const result& r) const {
    return r.report.plain_seconds(bytes_per_second) / predicted(r);
  }
};

std::string verdict(double speedup) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%s %.2fx", speedup > 1 ? "wins" : "loses", speedup);
  return buf;
}

void print_table(const communicator& comm, const options& o, const std::vector<result>& results,
                 const prediction& link, const prediction& effective, const result* none,
                 const std::string& load_before) {
  std::printf(
      "# chorus-compress-perf: compressed all_reduce (average) of %s fp32 (%zu elements), %d "
      "ranks, UCX; median of %d calls after %d warm-up\n",
      chorus_perf::format_bytes(o.bytes).c_str(), o.bytes / sizeof(float), comm.size(), o.iters,
      o.warmup);
  std::printf(
      "# topk: error_feedback{top_k{.ratio = %g}}; powersgd: error_feedback{power_sgd{"
      ".rank = %zu}} on a %zu x %zu matrix\n",
      o.top_k_ratio, o.power_sgd_rank, matrix_rows(o.bytes / sizeof(float)),
      o.bytes / sizeof(float) / matrix_rows(o.bytes / sizeof(float)));
  const auto rate_line = [](const char* name, const prediction& p, const char* how) {
    if (p.bytes_per_second > 0) {
      std::printf("# %s rate: %.4f Gbit/s (%.4f GB/s), %s\n", name, p.bytes_per_second * 8e-9,
                  p.bytes_per_second * 1e-9, how);
    } else {
      std::printf("# %s rate: not available (%s)\n", name, how);
    }
  };
  std::printf("# load average (rank 0's host, /proc/loadavg): before %s, after %s\n",
              load_before.c_str(), load_average().c_str());
  rate_line("link", link, "--link-gbps");
  rate_line("effective", effective,
            "plain bytes / (none's median - none's codec time); needs method none");
  std::printf("# %-9s %10s %9s %7s %9s %10s | %10s %9s %11s | %10s %9s %11s | %12s %s\n", "method",
              "median_ms", "sent_MB", "ratio", "codec_ms", "b-e_Gbit/s", "link_ms", "meas/pred",
              "report", "eff_ms", "meas/pred", "report", "vs_none", "check");
  for (const result& r : results) {
    const cc::report& rep = r.report;
    std::printf("  %-9s %10.1f %9.3f %7.1f %9.1f %10.3g |", r.method.c_str(), r.median * 1e3,
                rep.sent_bytes / 1e6, rep.ratio(), rep.codec_seconds() * 1e3,
                rep.break_even_bytes_per_second() * 8e-9);
    for (const prediction* p : {&link, &effective}) {
      if (p->bytes_per_second > 0) {
        std::printf(" %10.1f %9.2f %11s |", p->predicted(r) * 1e3, p->ratio(r),
                    r.method == "none" ? "-" : verdict(p->speedup(r)).c_str());
      } else {
        std::printf(" %10s %9s %11s |", "-", "-", "-");
      }
    }
    const std::string measured =
        none == nullptr || r.method == "none" ? "-" : verdict(none->median / r.median);
    std::printf(" %12s %s\n", measured.c_str(), r.checked_ok ? "ok" : "WRONG");
  }
  std::printf(
      "# sent_MB, ratio, codec_ms (encode + decode + other local work): compress::report per "
      "call, each the "
      "maximum over ranks; b-e: its break-even rate\n"
      "# link_ms / eff_ms: the report's compressed_seconds at that rate; report: its "
      "plain_seconds / compressed_seconds there; vs_none: none's median / this median\n");
  for (const result& r : results) {
    std::printf("# %s, rank 0's report: %s\n", r.method.c_str(), r.rank0.to_string().c_str());
  }
}

nlohmann::json to_json(const communicator& comm, const options& o,
                       const std::vector<result>& results, const prediction& link,
                       const prediction& effective) {
  nlohmann::json j;
  j["tool"] = "chorus-compress-perf";
  j["library"] = std::string("chorus ") + CHORUS_VERSION_STRING;
  j["ranks"] = comm.size();
  j["bytes"] = o.bytes;
  j["iters"] = o.iters;
  j["warmup"] = o.warmup;
  j["link_bytes_per_second"] = link.bytes_per_second;
  j["effective_bytes_per_second"] = effective.bytes_per_second;
  for (const result& r : results) {
    const cc::report& rep = r.report;
    nlohmann::json m;
    m["method"] = r.method;
    m["seconds"] = r.seconds;
    m["median_seconds"] = r.median;
    m["plain_bytes"] = rep.plain_bytes;
    m["sent_bytes"] = rep.sent_bytes;
    m["encode_seconds"] = rep.encode_seconds;
    m["decode_seconds"] = rep.decode_seconds;
    m["break_even_bytes_per_second"] = rep.break_even_bytes_per_second();
    m["rank0_report"] = r.rank0.to_string();
    for (const auto& [name, p] : {std::pair{"link", &link}, std::pair{"effective", &effective}}) {
      if (p->bytes_per_second > 0) {
        m[std::string("predicted_seconds_") + name] = p->predicted(r);
        m[std::string("measured_over_predicted_") + name] = p->ratio(r);
      }
    }
    m["checked_ok"] = r.checked_ok;
    j["methods"].push_back(m);
  }
  return j;
}

int run(const options& o) {
  const chorus::bootstrap::world world = chorus::bootstrap::from_env();
  communicator comm{chorus::ucx_transport{world}};
  const std::string load_before = load_average();
  const std::vector<result> results = run_methods(comm, o);

  prediction link{o.link_gbps * 1e9 / 8};
  prediction effective;
  const result* none = nullptr;
  for (const result& r : results) {
    if (r.method == "none") none = &r;
  }
  if (none != nullptr && none->median > none->report.codec_seconds() &&
      none->report.plain_bytes > 0) {
    effective.bytes_per_second =
        none->report.plain_bytes / (none->median - none->report.codec_seconds());
  }
  bool ok = true;
  for (const result& r : results) ok = ok && r.checked_ok;
  if (comm.rank() == 0) {
    print_table(comm, o, results, link, effective, none, load_before);
    if (!o.json.empty()) {
      std::ofstream f(o.json);
      f << to_json(comm, o, results, link, effective).dump(2) << '\n';
      if (!f) throw std::runtime_error("cannot write " + o.json);
    }
    if (!ok) std::printf("# some results were WRONG\n");
    std::fflush(stdout);
  }
  chorus::barrier(comm);  // rank 0 may serve the store: nobody leaves before everyone is done
  return ok ? 0 : 1;
}

}  // namespace
}  // namespace chorus_compress_perf

int main(int argc, char** argv) {
  using namespace chorus_compress_perf;
  try {
    const auto o = parse(argc, argv);
    if (!o) return 0;
    return run(*o);
  } catch (const usage_error& e) {
    std::fprintf(stderr, "chorus-compress-perf: %s\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "chorus-compress-perf: %s\n", e.what());
    return 1;
  }
}

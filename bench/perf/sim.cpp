// chorus-sim: what each algorithm would take for a collective at rank counts and layouts
// this machine cannot run, predicted by chorus's cost model from the schedules themselves
// (chorus/schedule/cost.hpp; docs/tuning.md).
//
//   chorus-sim [collective] --ranks N [--hosts H] [-b 8 -e 256M -f 4]
//              [--profile FILE | --alpha US --bandwidth GBS --overhead US --reduce GBS
//               --copy GBS] [--inter-alpha US --inter-bandwidth GBS] [--mapped-windows]
//              [--max-pieces N] [--algo A,B,...] [--pieces best|default] [--json FILE]
//              [--explain]
//
// Prints one row per size: every candidate's predicted time, the fastest, and where the
// fastest changes (the crossover sizes); then, for the largest size, each algorithm's
// messages, bytes per rank and per link, bytes between hosts and the hops on its critical
// path. --algo and --pieces default predict the runs chorus-perf makes with `--algo A,B`
// (each family with dispatch's default piece), which bench/perf/model-check.py compares
// with the measured times.
#include "options.hpp"
#include "report.hpp"

#include <chorus/dispatch/profile_json.hpp>
#include <chorus/dispatch/tuner.hpp>
#include <chorus/schedule/cost.hpp>

#include <CLI/CLI.hpp>

#include <cstdio>
#include <exception>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace {

using namespace chorus::schedule;

std::optional<collective> collective_named(const std::string& text) {
  for (std::size_t i = 0; i < collective_count; ++i) {
    const auto c = static_cast<collective>(i);
    if (name(c) == text) return c;
  }
  return std::nullopt;
}

int run(int argc, char** argv) {
  CLI::App app{"chorus-sim: predicted collective times at any scale, from chorus's schedules"};
  std::string coll = "all_reduce", minb = "8", maxb = "256M", profile_file;
  int ranks = 0, hosts = 1;
  double factor = 4;
  double alpha_us = -1, gbs = -1, overhead_us = -1, reduce_gbs = -1, copy_gbs = -1;
  double inter_alpha_us = -1, inter_gbs = -1;
  bool mapped = false, explain_each = false;
  std::size_t max_pieces = 8;
  std::vector<std::string> algo_names;
  std::string pieces = "best", json_file;
  app.add_option("collective", coll,
                 "all_reduce (default), reduce_scatter, all_gather, broadcast, reduce, barrier, "
                 "all_to_all, gather, scatter");
  app.add_option("--ranks,-n", ranks, "ranks in the job")->required()->check(CLI::Range(1, 65536));
  app.add_option("--hosts", hosts, "hosts the ranks are on, in equal consecutive blocks; default 1")
      ->check(CLI::PositiveNumber);
  app.add_option("-b,--minbytes", minb, "smallest size (one rank's full vector); default 8");
  app.add_option("-e,--maxbytes", maxb, "largest size; default 256M");
  app.add_option("-f,--stepfactor", factor, "multiply the size by this; default 4");
  app.add_option("--profile", profile_file,
                 "a cost profile (chorus-perf --calibrate FILE); the flags below override it");
  app.add_option("--alpha", alpha_us, "latency of a message within a host, us");
  app.add_option("--bandwidth", gbs, "bandwidth of a message within a host, GB/s");
  app.add_option("--overhead", overhead_us, "per message at each end, us");
  app.add_option("--reduce", reduce_gbs, "local reduction rate, GB/s of one operand");
  app.add_option("--copy", copy_gbs, "local copy rate, GB/s");
  app.add_option("--inter-alpha", inter_alpha_us, "latency between hosts, us");
  app.add_option("--inter-bandwidth", inter_gbs, "bandwidth between hosts, GB/s");
  app.add_flag("--mapped-windows", mapped,
               "the transport maps peers' windows (shm): one_sided is a candidate");
  app.add_option("--max-pieces", max_pieces,
                 "pipelined families are tried with at most this many pieces; default 8")
      ->check(CLI::Range(1, 64));
  app.add_option("--algo,--algorithm", algo_names,
                 "predict only these algorithms (comma-separated), candidates or not")
      ->delimiter(',');
  app.add_option("--pieces", pieces,
                 "best (default: each family's best piece, as the model tuner tries them) or "
                 "default (the piece chorus runs a named algorithm with)")
      ->check(CLI::IsMember({"best", "default"}));
  app.add_option("--json", json_file, "also write every prediction to this JSON file");
  app.add_flag("--explain", explain_each, "print the full explanation of every size too");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  const auto kind = collective_named(coll);
  if (!kind) {
    std::fprintf(stderr, "chorus-sim: unknown collective '%s'\n", coll.c_str());
    return 2;
  }
  if (hosts > ranks) {
    std::fprintf(stderr, "chorus-sim: --hosts %d is more than --ranks %d\n", hosts, ranks);
    return 2;
  }
  if (!(factor > 1)) {
    std::fprintf(stderr, "chorus-sim: -f must be larger than 1\n");
    return 2;
  }
  cost_profile p =
      profile_file.empty() ? builtin_profile("shm") : chorus::load_cost_profile(profile_file);
  const bool overridden = alpha_us >= 0 || gbs > 0 || overhead_us >= 0 || reduce_gbs > 0 ||
                          copy_gbs > 0 || inter_alpha_us >= 0 || inter_gbs > 0;
  if (alpha_us >= 0) p.alpha = alpha_us * 1e-6;
  if (gbs > 0) p.beta = 1e-9 / gbs;
  if (overhead_us >= 0) p.overhead = overhead_us * 1e-6;
  if (reduce_gbs > 0) p.reduce = 1e-9 / reduce_gbs;
  if (copy_gbs > 0) p.copy = 1e-9 / copy_gbs;
  if (inter_alpha_us >= 0) p.inter_alpha = inter_alpha_us * 1e-6;
  if (inter_gbs > 0) p.inter_beta = 1e-9 / inter_gbs;
  if (overridden) p.source += ", with the command line's values";

  const std::size_t lo = chorus_perf::parse_bytes("-b", minb);
  const std::size_t hi = chorus_perf::parse_bytes("-e", maxb);
  std::vector<std::size_t> sizes;
  for (double b = static_cast<double>(lo); b <= static_cast<double>(hi) * 1.0000001; b *= factor) {
    sizes.push_back(static_cast<std::size_t>(b));
  }
  tuning_query q;
  q.kind = *kind;
  q.ranks = ranks;
  q.hosts = hosts;
  q.min_ranks_per_host = ranks / hosts;
  q.mapped_windows = mapped;

  std::printf("# chorus-sim: %s on %d ranks", coll.c_str(), ranks);
  if (hosts > 1) std::printf(" on %d hosts (%d or more each)", hosts, q.min_ranks_per_host);
  std::printf("%s\n", mapped ? ", mapped windows" : "");
  std::vector<algorithm> shown;
  for (const std::string& text : algo_names) {
    const auto a = algorithm_from_name(text);
    if (!a) throw chorus_perf::usage_error("--algo: unknown algorithm '" + text + "'");
    if (!supports(*a, *kind)) {
      throw chorus_perf::usage_error("--algo: " + text + " cannot run " + coll +
                                     "; use one of: " + algorithms_running(*kind));
    }
    shown.push_back(*a);
  }
  if (shown.empty()) {
    for (algorithm a : all_algorithms) {
      if (is_candidate(a, q)) shown.push_back(a);
    }
  }
  // Every shown algorithm's prediction for q: its best piece, or dispatch's default one.
  const auto predictions_for = [&](const tuning_query& query) {
    tuning_explanation e = explain(query, p, max_pieces);
    if (algo_names.empty() && pieces == "best") return e;
    std::vector<prediction> mine;
    for (algorithm a : shown) {
      std::optional<prediction> got;
      if (pieces == "default") {
        got = predict(a, query, p, chorus::detail::default_chunk_bytes(a, false, query.bytes));
      } else {
        for (const prediction& c : e.candidates) {
          if (c.algo == a) got = c;
        }
        if (!got) got = predict(a, query, p);
      }
      if (got) mine.push_back(*got);
    }
    std::stable_sort(mine.begin(), mine.end(), [](const prediction& x, const prediction& y) {
      return x.seconds < y.seconds;
    });
    e.candidates = std::move(mine);
    if (!e.candidates.empty()) e.choice = {e.candidates.front().algo, 0};
    return e;
  };
  std::vector<tuning_explanation> all;
  for (std::size_t i = 0; i < sizes.size(); ++i) {
    q.bytes = sizes[i];
    all.push_back(predictions_for(q));
    if (i == 0) {
      std::printf("# %s\n", describe(p).c_str());
      std::printf("# predicted time per call (us); * the fastest\n");
      std::printf("%12s", "size");
      for (algorithm a : shown) std::printf(" %20s", std::string(name(a)).c_str());
      std::printf("  %s\n", "fastest");
    }
    const tuning_explanation& e = all.back();
    std::printf("%12s", detail::size_text(sizes[i]).c_str());
    for (algorithm a : shown) {
      const prediction* found = nullptr;
      for (const prediction& c : e.candidates) {
        if (c.algo == a) found = &c;
      }
      if (found == nullptr) {
        std::printf(" %20s", "-");
      } else {
        char cell[40];
        std::snprintf(cell, sizeof cell, "%.4g%s", found->seconds * 1e6,
                      a == e.choice.algo ? "*" : "");
        std::printf(" %20s", cell);
      }
    }
    std::printf("  %s\n", e.candidates.empty() ? "-" : std::string(name(e.choice.algo)).c_str());
  }
  std::printf("# crossovers:");
  bool any = false;
  for (std::size_t i = 1; i < all.size(); ++i) {
    if (all[i].candidates.empty() || all[i - 1].candidates.empty()) continue;
    if (all[i].choice.algo != all[i - 1].choice.algo) {
      std::printf(
          "%s %s from %s (%s below)", any ? ";" : "", std::string(name(all[i].choice.algo)).c_str(),
          detail::size_text(sizes[i]).c_str(), std::string(name(all[i - 1].choice.algo)).c_str());
      any = true;
    }
  }
  std::printf("%s\n", any ? "" : " none in this range");
  if (!all.empty()) {
    const tuning_explanation& last = all.back();
    std::printf("# at %s: per algorithm\n", detail::size_text(sizes.back()).c_str());
    std::printf("%20s %9s %12s %10s %14s %14s %14s\n", "algorithm", "piece", "predicted",
                "messages", "bytes/rank", "bytes/link", "between hosts");
    for (const prediction& c : last.candidates) {
      const std::string piece = !c.pieces            ? "-"
                                : c.chunk_bytes == 0 ? "whole"
                                                     : detail::size_text(c.chunk_bytes);
      std::printf("%20s %9s %12s %10zu %14s %14s %14s   hops %zu\n",
                  std::string(name(c.algo)).c_str(), piece.c_str(),
                  detail::time_text(c.seconds).c_str(), c.messages,
                  c.from_schedule ? std::to_string(c.max_rank_bytes).c_str() : "-",
                  c.from_schedule ? std::to_string(c.max_link_bytes).c_str() : "-",
                  c.from_schedule ? std::to_string(c.inter_host_bytes).c_str() : "-", c.hops);
    }
  }
  if (!json_file.empty()) {
    nlohmann::json rows = nlohmann::json::array();
    for (const tuning_explanation& e : all) {
      nlohmann::json row = {{"bytes", e.query.bytes}, {"predictions", nlohmann::json::array()}};
      if (!e.candidates.empty()) row["fastest"] = std::string(name(e.choice.algo));
      for (const prediction& c : e.candidates) {
        row["predictions"].push_back({{"algorithm", std::string(name(c.algo))},
                                      {"piece", c.pieces ? c.chunk_bytes : 0},
                                      {"seconds", c.seconds},
                                      {"hops", c.hops},
                                      {"messages", c.messages},
                                      {"max_rank_bytes", c.max_rank_bytes},
                                      {"max_link_bytes", c.max_link_bytes},
                                      {"inter_host_bytes", c.inter_host_bytes},
                                      {"from_schedule", c.from_schedule}});
      }
      rows.push_back(std::move(row));
    }
    chorus_perf::write_json_file(json_file, {{"tool", "chorus-sim"},
                                             {"collective", coll},
                                             {"ranks", ranks},
                                             {"hosts", hosts},
                                             {"mapped_windows", mapped},
                                             {"pieces", pieces},
                                             {"profile", chorus::to_json(p)},
                                             {"rows", rows}});
  }
  if (explain_each) {
    for (const tuning_explanation& e : all) std::printf("%s", to_string(e).c_str());
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const chorus_perf::usage_error& e) {
    std::fprintf(stderr, "chorus-sim: %s\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "chorus-sim: %s\n", e.what());
    return 1;
  }
}

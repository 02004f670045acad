#pragma once
/// \file
/// The cost model and the model tuner: what each algorithm would take for a call, predicted
/// from the schedules themselves, and the choice of the fastest.
///
/// A `cost_profile` holds a transport's measured parameters on one machine (latency, time
/// per byte, per-message overhead, the local reduction and copy rates; `chorus-perf
/// --calibrate` measures them). `predict` builds every rank's schedule of an algorithm for
/// the call and runs them through the simulator (`simulate.hpp`) under those parameters:
/// the predicted time is the critical path of the very steps the executor would run, so the
/// model cannot drift from the schedules (`detail::time_schedules`: the simulator without its
/// checks, which the schedule tests make; it compiles in a fraction of the time). The one exception
/// is `one_sided`, which has no schedule of messages; its prediction is the formula of its chunked
/// phases
/// (`exec/one_sided.hpp`), written out in `predict_one_sided`.
///
/// `explain` predicts every candidate (each algorithm that runs the collective, with the
/// pipeline pieces worth trying) and orders them; `model_tuner` is a `schedule::tuner` that
/// answers the fastest, and explains itself. Both are pure functions of the query and the
/// profile, so every rank with the same profile picks the same algorithm without talking.
///
/// What the model leaves out (docs/tuning.md): contention for memory bandwidth between the
/// ranks of a host, and for links shared by several pairs; the cost of waking a sleeping
/// peer. It prices a vector of `bytes` as `bytes` one-byte elements.
#include <chorus/schedule/build.hpp>
#include <chorus/schedule/one_sided.hpp>
#include <chorus/schedule/schedule.hpp>
#include <chorus/schedule/simulate.hpp>
#include <chorus/schedule/tuning.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdio>
#include <exception>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

namespace chorus::inline v0::schedule {

/// What a transport costs on one machine, in seconds and seconds per byte.
struct cost_profile {
  std::string source = "built-in guess";  ///< where the numbers come from
  double alpha = 1e-6;                    ///< latency of one message between two ranks of one host
  double beta = 1e-10;                    ///< time per byte of a message (1 / bandwidth)
  double overhead = 0;      ///< per message, at each end: a rank sending to k peers pays k of it
  double reduce = 0;        ///< time per byte a rank combines (bytes of one operand)
  double copy = 0;          ///< time per byte a rank copies within its own memory
  double inter_alpha = -1;  ///< latency between hosts (negative: as within a host)
  double inter_beta = -1;   ///< time per byte between hosts (negative: as within a host)
  /// one_sided: time per byte to bring a peer's byte into reach, over what the copy of it
  /// costs (0 where windows are mapped: plain loads; negative: `beta`)
  double window = -1;
  /// one_sided: the same for a byte a reduction reads, over the reduction (negative:
  /// `window`). Measured apart: on the development VM a peer's byte cost a reduction less
  /// than half of what it cost a copy (docs/tuning.md, "Calibrating a machine").
  double window_reduce = -1;
  /// Calls on vectors of more than `cache_bytes` run at the speed of main memory, not of the
  /// caches: their messages, reductions and copies cost `memory_beta`, `memory_reduce` and
  /// `memory_copy` per byte (negative: as above). 0: one regime for every size.
  std::size_t cache_bytes = 0;
  double memory_beta = -1;
  double memory_reduce = -1;
  double memory_copy = -1;
};

/// The rates a call of `bytes` (one rank's vector) runs at: `p` with the memory regime's
/// rates in place of the cache's where the vector is larger than `p.cache_bytes`.
inline cost_profile at_size(const cost_profile& p, std::size_t bytes) noexcept {
  cost_profile r = p;
  if (p.cache_bytes == 0 || bytes <= p.cache_bytes) return r;
  if (p.memory_beta >= 0) r.beta = p.memory_beta;
  if (p.memory_reduce >= 0) r.reduce = p.memory_reduce;
  if (p.memory_copy >= 0) r.copy = p.memory_copy;
  return r;
}

/// One candidate's prediction.
struct prediction {
  algorithm algo = algorithm::direct;
  /// The pipeline piece it was predicted with: 0 for families without pieces (and
  /// one_sided, whose chunks are fixed); otherwise the piece the tuner answers.
  std::size_t chunk_bytes = 0;
  bool pieces = false;  ///< the family cuts transfers into pieces
  double seconds = 0;
  std::size_t hops = 0;              ///< messages one after another on the critical path
  std::size_t messages = 0;          ///< messages of all ranks together
  std::size_t max_rank_bytes = 0;    ///< most bytes one rank sends
  std::size_t max_link_bytes = 0;    ///< most bytes one rank sends one other rank
  std::size_t inter_host_bytes = 0;  ///< bytes between hosts, all ranks together
  bool from_schedule = true;         ///< false: one_sided's formula
};

/// Every candidate for one query, fastest first, and the choice.
struct tuning_explanation {
  tuning_query query{};
  cost_profile profile{};
  std::vector<prediction> candidates;  ///< fastest first
  tuning_choice choice{};              ///< what `model_tuner` answers: candidates[0]
  /// Who made `choice`: "model" (the fastest candidate), or, where a communicator's tuner
  /// is not a `model_tuner` (`chorus::explain`), "default rule" or "custom tuner" -- the
  /// candidates are then the model's view of that choice.
  std::string chooser = "model";
  /// The fastest candidate of another algorithm than the choice's, if there is one.
  [[nodiscard]] const prediction* runner_up() const noexcept {
    for (const prediction& p : candidates) {
      if (p.algo != choice.algo) return &p;
    }
    return nullptr;
  }
};

namespace detail {

/// Whole numbers of bytes, "1 KiB", "256 KiB", "3 MiB", "1.5 GiB".
inline std::string size_text(std::size_t bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(bytes);
  int u = 0;
  while (v >= 1024 && u < 4) {
    v /= 1024;
    ++u;
  }
  char buf[32];
  if (v == std::floor(v)) {
    std::snprintf(buf, sizeof buf, "%.0f %s", v, units[u]);
  } else {
    std::snprintf(buf, sizeof buf, "%.1f %s", v, units[u]);
  }
  return buf;
}

/// Seconds as "0.52 us", "1.31 ms", "2.05 s" (three significant digits).
inline std::string time_text(double s) {
  char buf[32];
  if (s < 1e-3) {
    std::snprintf(buf, sizeof buf, "%.3g us", s * 1e6);
  } else if (s < 1) {
    std::snprintf(buf, sizeof buf, "%.3g ms", s * 1e3);
  } else {
    std::snprintf(buf, sizeof buf, "%.3g s", s);
  }
  return buf;
}

/// The host of each rank when `q.hosts` hosts hold the ranks in equal consecutive blocks
/// (the remainder on the first hosts); empty for one host.
inline std::vector<int> host_layout(const tuning_query& q) {
  std::vector<int> hosts;
  if (q.hosts <= 1 || q.ranks <= 1) return hosts;
  const int h = std::min(q.hosts, q.ranks);
  const int base = q.ranks / h, extra = q.ranks % h;
  for (int host = 0; host < h; ++host) {
    hosts.insert(hosts.end(), static_cast<std::size_t>(base + (host < extra ? 1 : 0)), host);
  }
  return hosts;
}

/// The largest transfer of one step of a pipelined family, the unit its pieces cut.
inline std::size_t largest_transfer(algorithm a, const tuning_query& q) {
  const std::size_t p = static_cast<std::size_t>(std::max(q.ranks, 1));
  if (a == algorithm::ring || a == algorithm::hierarchical) {
    // ring all_reduce / reduce_scatter / all_gather move blocks; chains move it all
    const collective c = q.kind;
    if (c == collective::all_reduce || c == collective::reduce_scatter ||
        c == collective::all_gather) {
      return (q.bytes + p - 1) / p;
    }
  }
  if (a == algorithm::double_binary_tree) return (q.bytes + 1) / 2;
  return q.bytes;
}

/// Whether the family cuts its transfers into pipeline pieces (`params::chunk_count`) for
/// this collective.
inline bool has_pieces(algorithm a, collective c) noexcept {
  switch (a) {
    case algorithm::ring:
    case algorithm::hierarchical:
      return c != collective::barrier;
    case algorithm::tree:
      return c == collective::all_reduce || c == collective::broadcast || c == collective::reduce;
    case algorithm::double_binary_tree:
      return true;
    default:
      return false;
  }
}

}  // namespace detail

/// The simulator's cost model for a profile.
inline cost_model to_cost_model(const cost_profile& p) noexcept {
  cost_model m;
  m.alpha = p.alpha;
  m.beta = p.beta;
  m.gamma = p.reduce;
  m.copy = p.copy;
  m.overhead = p.overhead;
  m.inter_alpha = p.inter_alpha;
  m.inter_beta = p.inter_beta;
  return m;
}

/// one_sided's predicted time: per chunk of P pieces, copy in, a zero-byte `ready` with
/// every peer, the reduction of this rank's piece over every window, `reduced` (all-reduce),
/// the gather of every peer's piece; where windows are reached by get, one more `done`
/// exchange per call. A chunk's phases run one after another on each rank.
/// Its chunks stay in cache whatever the size, so the phases run at the cache's rates; a
/// vector larger than `cache_bytes` adds the traffic of reading the input from main memory
/// and writing the output back once, at half a memory copy's time per byte (a copy both
/// reads and writes).
inline prediction predict_one_sided(const tuning_query& q, const cost_profile& p) {
  prediction r;
  r.algo = algorithm::one_sided;
  r.from_schedule = false;
  const double P = std::max(q.ranks, 1);
  const double n = static_cast<double>(q.bytes);
  const double others = (P - 1) / P * n;  // bytes of the vector that other ranks hold
  const double window = p.window >= 0 ? p.window : p.beta;
  const double window_reduce = p.window_reduce >= 0 ? p.window_reduce : window;
  const double piece = static_cast<double>(one_sided_piece_bytes(q.ranks));
  const collective c = q.kind;
  // A chunk is one piece of every block (P pieces of the vector); all_gather's chunk is a
  // slot of P pieces of every rank's block (P * P pieces of its output).
  const double chunk = c == collective::all_gather ? piece * P * P : piece * P;
  const double chunks = std::max(1.0, std::ceil(n / chunk));
  const double sync = p.alpha + (P - 1) * p.overhead;
  double t = 0;
  switch (c) {
    case collective::all_reduce:
      t = n * p.copy + chunks * 2 * sync + others * (window_reduce + p.reduce) +
          others * (window + p.copy);
      break;
    case collective::reduce_scatter:
      t = n * p.copy + chunks * sync + others * (window_reduce + p.reduce);
      break;
    default:  // all_gather
      t = n / P * p.copy + chunks * sync + others * (window + p.copy);
      break;
  }
  if (!q.mapped_windows) t += sync;  // `done`
  if (p.cache_bytes != 0 && q.bytes > p.cache_bytes) {
    const double input = c == collective::all_gather ? n / P : n;
    const double output = c == collective::reduce_scatter ? n / P : n;
    t += (input + output) * (p.memory_copy >= 0 ? p.memory_copy : p.copy) / 2;
  }
  r.seconds = t;
  r.hops = static_cast<std::size_t>(chunks) * (c == collective::all_reduce ? 2 : 1) +
           (q.mapped_windows ? 0 : 1);
  r.messages = static_cast<std::size_t>(r.hops * P * (P - 1));
  return r;
}

/// The predicted time of algorithm `a` for query `q` under profile `p`, with pipeline
/// pieces of `chunk_bytes` (0: none). `a` must support `q.kind`; nullopt when its schedules
/// do not simulate (a layout the family cannot run).
inline std::optional<prediction> predict(algorithm a, const tuning_query& q, const cost_profile& p,
                                         std::size_t chunk_bytes = 0) {
  if (a == algorithm::one_sided) return predict_one_sided(q, p);
  const std::size_t ranks = static_cast<std::size_t>(std::max(q.ranks, 1));
  const std::vector<int> hosts = detail::host_layout(q);
  std::vector<std::size_t> blocks(ranks, q.bytes / ranks);
  for (std::size_t r = 0; r < q.bytes % ranks; ++r) ++blocks[r];
  std::vector<std::size_t> offsets(ranks, 0);
  for (std::size_t r = 1; r < ranks; ++r) offsets[r] = offsets[r - 1] + blocks[r - 1];
  params common;
  common.kind = q.kind;
  common.size = q.ranks;
  common.chunk_count = chunk_bytes;
  common.hosts = hosts;
  switch (q.kind) {
    case collective::reduce_scatter:
    case collective::all_gather:
    case collective::gather:
    case collective::scatter:
      common.counts = blocks;
      break;
    case collective::all_to_all:  // the same block to and from every rank
      std::fill(blocks.begin(), blocks.end(), q.bytes / ranks);
      for (std::size_t r = 1; r < ranks; ++r) offsets[r] = offsets[r - 1] + blocks[r - 1];
      common.send_counts = blocks;
      common.recv_counts = blocks;
      common.send_offsets = offsets;
      common.recv_offsets = offsets;
      break;
    case collective::barrier:
      break;
    default:
      common.count = q.bytes;
  }
  const std::vector<params> ps = params_for_all_ranks(common);
  const auto schedules = build_every_rank(a, ps);
  if (!schedules) return std::nullopt;  // a layout the family cannot run
  const simulation_result s =
      detail::time_schedules(*schedules, ps, to_cost_model(at_size(p, q.bytes)));
  if (!s.ok) return std::nullopt;
  prediction r;
  r.algo = a;
  r.chunk_bytes = chunk_bytes;
  r.pieces = detail::has_pieces(a, q.kind);
  r.seconds = s.time;
  r.hops = s.critical_hops;
  r.messages = s.messages;
  r.max_rank_bytes = s.max_sent_elements;
  r.max_link_bytes = s.max_link_elements;
  r.inter_host_bytes = s.inter_host_elements;
  return r;
}

/// The pipeline pieces worth trying for a family that has them: none (the whole transfer),
/// then 16 KiB, 64 KiB, 256 KiB, 1 MiB, 4 MiB while they cut the largest transfer into 2 to
/// `max_pieces` pieces. (More pieces cost the simulator time and the transport messages.)
inline std::vector<std::size_t> piece_candidates(algorithm a, const tuning_query& q,
                                                 std::size_t max_pieces = 16) {
  std::vector<std::size_t> out{0};
  if (!detail::has_pieces(a, q.kind)) return out;
  const std::size_t transfer = detail::largest_transfer(a, q);
  for (std::size_t piece = std::size_t{16} << 10; piece <= (std::size_t{4} << 20); piece *= 4) {
    const std::size_t n = (transfer + piece - 1) / piece;
    if (n >= 2 && n <= max_pieces) out.push_back(piece);
  }
  return out;
}

/// Whether the model tuner considers `a` for `q`: it runs the collective, one_sided only
/// with mapped windows (over get it trails the two-sided schedules everywhere measured),
/// hierarchical only on several hosts with several ranks each (elsewhere it is a flat ring).
inline bool is_candidate(algorithm a, const tuning_query& q) noexcept {
  if (!supports(a, q.kind)) return false;
  if (a == algorithm::one_sided) return q.mapped_windows && q.ranks > 1;
  if (a == algorithm::hierarchical) return q.hosts > 1 && q.min_ranks_per_host > 1;
  return true;
}

/// Every candidate's prediction for `q` under `p`, fastest first (ties: the order of
/// `all_algorithms`, then fewer pieces), and the choice. Pipelined families are tried with
/// up to `max_pieces` pieces (`piece_candidates`).
inline tuning_explanation explain(const tuning_query& q, const cost_profile& p,
                                  std::size_t max_pieces = 16) {
  tuning_explanation e;
  e.query = q;
  e.profile = p;
  for (algorithm a : all_algorithms) {
    if (!is_candidate(a, q)) continue;
    // Of one family, the best piece only.
    std::optional<prediction> best;
    for (std::size_t piece : piece_candidates(a, q, max_pieces)) {
      std::optional<prediction> got = predict(a, q, p, piece);
      if (got && (!best || got->seconds < best->seconds)) best = got;
    }
    if (best) e.candidates.push_back(*best);
  }
  std::stable_sort(e.candidates.begin(), e.candidates.end(),
                   [](const prediction& x, const prediction& y) { return x.seconds < y.seconds; });
  if (!e.candidates.empty()) {
    const prediction& top = e.candidates.front();
    e.choice.algo = top.algo;
    // The tuner's chunk_bytes 0 means "the family's default piece", so "no pieces" is
    // answered as a piece as large as the whole vector.
    e.choice.chunk_bytes = !top.pieces            ? 0
                           : top.chunk_bytes != 0 ? top.chunk_bytes
                                                  : std::max<std::size_t>(q.bytes, 1);
  }
  return e;
}

/// The profile in one line: where it comes from and its parameters.
inline std::string describe(const cost_profile& p) {
  char line[320];
  std::snprintf(line, sizeof line,
                "profile: %s: alpha %s, %.3g GB/s, overhead %s, reduce %.3g GB/s, copy %.3g GB/s",
                p.source.c_str(), detail::time_text(p.alpha).c_str(),
                p.beta > 0 ? 1e-9 / p.beta : 0.0, detail::time_text(p.overhead).c_str(),
                p.reduce > 0 ? 1e-9 / p.reduce : 0.0, p.copy > 0 ? 1e-9 / p.copy : 0.0);
  std::string out = line;
  if (p.cache_bytes != 0) {
    const auto rate = [](double own, double fallback) {
      const double v = own >= 0 ? own : fallback;
      return v > 0 ? 1e-9 / v : 0.0;
    };
    std::snprintf(line, sizeof line, "; above %s: %.3g GB/s, reduce %.3g GB/s, copy %.3g GB/s",
                  detail::size_text(p.cache_bytes).c_str(), rate(p.memory_beta, p.beta),
                  rate(p.memory_reduce, p.reduce), rate(p.memory_copy, p.copy));
    out += line;
  }
  if (p.inter_alpha >= 0 || p.inter_beta >= 0) {
    const double ib = p.inter_beta >= 0 ? p.inter_beta : p.beta;
    std::snprintf(line, sizeof line, "; between hosts alpha %s, %.3g GB/s",
                  detail::time_text(p.inter_alpha >= 0 ? p.inter_alpha : p.alpha).c_str(),
                  ib > 0 ? 1e-9 / ib : 0.0);
    out += line;
  }
  return out;
}

/// The explanation as text: the query, the profile, one line per candidate.
inline std::string to_string(const tuning_explanation& e) {
  const tuning_query& q = e.query;
  const cost_profile& p = e.profile;
  std::string out = std::string(name(q.kind)) + " of " + detail::size_text(q.bytes) + " on " +
                    std::to_string(q.ranks) + (q.ranks == 1 ? " rank" : " ranks");
  if (q.hosts > 1) out += " (" + std::to_string(q.hosts) + " hosts)";
  out += q.mapped_windows ? ", mapped windows\n" : "\n";
  out += "  " + describe(p) + "\n";
  char line[256];
  std::snprintf(line, sizeof line, "  %-20s %-9s %11s %6s %10s %12s %12s\n", "algorithm", "piece",
                "predicted", "hops", "messages", "bytes/rank", "bytes/link");
  out += line;
  const prediction* second = e.runner_up();
  bool marked = false;
  for (const prediction& c : e.candidates) {
    const bool chosen = !marked && c.algo == e.choice.algo;
    marked = marked || chosen;
    const std::string piece = !c.pieces            ? "-"
                              : c.chunk_bytes == 0 ? "whole"
                                                   : detail::size_text(c.chunk_bytes);
    const std::string bytes = c.from_schedule ? std::to_string(c.max_rank_bytes) : "-";
    const std::string link = c.from_schedule ? std::to_string(c.max_link_bytes) : "-";
    std::snprintf(line, sizeof line, "  %-20s %-9s %11s %6zu %10zu %12s %12s%s\n",
                  std::string(name(c.algo)).c_str(), piece.c_str(),
                  detail::time_text(c.seconds).c_str(), c.hops, c.messages, bytes.c_str(),
                  link.c_str(),
                  chosen         ? "  <- chosen"
                  : &c == second ? "  runner-up"
                                 : "");
    out += line;
  }
  if (e.candidates.empty()) out += "  (no algorithm runs this collective)\n";
  if (e.chooser != "model") {
    out += "  chosen by the " + e.chooser + ": " + std::string(name(e.choice.algo));
    if (!e.candidates.empty() && e.candidates.front().algo != e.choice.algo) {
      out += "; the model's fastest is " + std::string(name(e.candidates.front().algo));
    }
    out += "\n";
  }
  return out;
}

/// The profile chorus assumes for a transport when none was measured (what `chorus::explain`
/// and `CHORUS_DEBUG=tuning` price the candidates with when the communicator's tuner is not
/// a `model_tuner`): rounded from `chorus-perf --calibrate FILE --np 2` (Release builds) on
/// the development machine (2 cores of an AMD EPYC VM, 2026-12-07; docs/tuning.md); inproc
/// and ucx take the shm build's local rates. For any other machine a guess: calibrate there.
inline cost_profile builtin_profile(std::string_view transport) {
  cost_profile p;
  p.overhead = 0.3e-6;
  p.reduce = 1e-9 / 30.0;  // float32 sum, per byte of one operand
  p.copy = 1e-9 / 60.0;
  p.cache_bytes = std::size_t{4} << 20;
  p.memory_reduce = 1e-9 / 15.0;
  p.memory_copy = 1e-9 / 28.0;
  if (transport == "shm") {
    p.source = "built-in shm (the development machine, 2 ranks)";
    p.alpha = 0.6e-6;
    p.beta = 1e-9 / 14.0;
    p.memory_beta = 1e-9 / 9.0;
    p.window = 1e-9 / 16.0;
  } else if (transport == "inproc") {
    p.source = "built-in inproc (the development machine, 2 ranks)";
    p.alpha = 12e-6;  // a waiting thread sleeps on a condition variable
    p.beta = 1e-9 / 31.0;
  } else if (transport == "ucx") {
    p.source = "built-in ucx (the development machine, 2 ranks on one host)";
    p.alpha = 0.68e-6;
    p.beta = 1e-9 / 13.9;
  } else {
    p.source = "built-in guess for " + std::string(transport);
    p.alpha = 1e-6;
    p.beta = 1e-9 / 10.0;
  }
  return p;
}

/// A tuner that picks the model's fastest candidate (`explain(q, profile).choice`), with a
/// cache of its answers (bounded; shared by copies, safe to call from several threads).
class model_tuner {
 public:
  explicit model_tuner(cost_profile profile)
      : state_(std::make_shared<state>(std::move(profile))) {}

  tuning_choice operator()(const tuning_query& q) const {
    const key k{q.kind, q.bytes, q.ranks, q.mapped_windows, q.hosts, q.min_ranks_per_host};
    {
      std::lock_guard<std::mutex> lock(state_->mutex);
      if (auto it = state_->cache.find(k); it != state_->cache.end()) return it->second;
    }
    const tuning_choice c = chorus::schedule::explain(q, state_->profile).choice;
    std::lock_guard<std::mutex> lock(state_->mutex);
    if (state_->cache.size() >= max_cached) state_->cache.clear();
    state_->cache.emplace(k, c);
    return c;
  }

  [[nodiscard]] tuning_explanation explain(const tuning_query& q) const {
    return chorus::schedule::explain(q, state_->profile);
  }

  [[nodiscard]] const cost_profile& profile() const noexcept { return state_->profile; }

 private:
  static constexpr std::size_t max_cached = 4096;
  using key = std::tuple<collective, std::size_t, int, bool, int, int>;
  struct state {
    explicit state(cost_profile p) : profile(std::move(p)) {}
    const cost_profile profile;
    std::mutex mutex;
    std::map<key, tuning_choice> cache;
  };
  std::shared_ptr<state> state_;
};

}  // namespace chorus::inline v0::schedule

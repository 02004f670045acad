/// \file
/// The cost model (schedule/cost.hpp): its predictions against alpha-beta results worked
/// out by hand, the tuner's choice against the model's argmin, and the explanation's text.
#include <chorus/schedule/cost.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <cstddef>
#include <string>

namespace {

using namespace chorus::schedule;

/// alpha 2 us, 1 GB/s, reductions at 2 GB/s; no overhead, free copies.
cost_profile hand_profile() {
  cost_profile p;
  p.source = "hand";
  p.alpha = 2e-6;
  p.beta = 1e-9;
  p.reduce = 0.5e-9;
  p.copy = 0;
  p.overhead = 0;
  return p;
}

tuning_query query(collective c, std::size_t bytes, int ranks) {
  tuning_query q;
  q.kind = c;
  q.bytes = bytes;
  q.ranks = ranks;
  return q;
}

double predicted(algorithm a, const tuning_query& q, const cost_profile& p, std::size_t piece = 0) {
  const auto r = predict(a, q, p, piece);
  REQUIRE(r.has_value());
  return r->seconds;
}

}  // namespace

TEST_CASE("cost: ring all-reduce is 2(P-1) steps of alpha + n/P beta, half of them reducing",
          "[cost]") {
  const cost_profile p = hand_profile();
  for (int ranks : {2, 3, 4, 5, 8, 16}) {
    const std::size_t n = std::size_t{3} << 20;  // divisible by every P above but 5, 16
    const double m = static_cast<double>(n) / ranks;
    const auto q = query(collective::all_reduce, n, ranks);
    // the blocks are whole bytes: the largest one sets the pace
    const double block = std::ceil(m);
    const double want = (ranks - 1) * (2 * p.alpha + 2 * p.beta * block + p.reduce * block);
    CAPTURE(ranks);
    CHECK(predicted(algorithm::ring, q, p) == Approx(want).epsilon(1e-9));
    const auto r = predict(algorithm::ring, q, p);
    CHECK(r->hops == static_cast<std::size_t>(2 * (ranks - 1)));
    CHECK(r->messages == static_cast<std::size_t>(2 * (ranks - 1) * ranks));
  }
}

TEST_CASE("cost: binomial broadcast is ceil(log2 P) rounds of alpha + n beta", "[cost]") {
  const cost_profile p = hand_profile();
  const std::size_t n = std::size_t{1} << 20;
  for (int ranks : {2, 3, 4, 5, 8, 9, 16}) {
    int rounds = 0;
    while ((1 << rounds) < ranks) ++rounds;
    CAPTURE(ranks);
    CHECK(predicted(algorithm::recursive_doubling, query(collective::broadcast, n, ranks), p) ==
          Approx(rounds * (p.alpha + p.beta * static_cast<double>(n))).epsilon(1e-9));
  }
}

TEST_CASE("cost: a binary tree's parent sends to its two children one after the other", "[cost]") {
  // Complete trees of depth d (P = 2^(d+1) - 1): the second child has the whole vector
  // after alpha + 2 n beta, and so on down: d (alpha + 2 n beta).
  const cost_profile p = hand_profile();
  const std::size_t n = std::size_t{1} << 20;
  for (int depth : {1, 2, 3}) {
    const int ranks = (2 << depth) - 1;
    CAPTURE(ranks);
    CHECK(predicted(algorithm::tree, query(collective::broadcast, n, ranks), p) ==
          Approx(depth * (p.alpha + 2 * p.beta * static_cast<double>(n))).epsilon(1e-9));
  }
}

TEST_CASE("cost: recursive doubling all-reduce is log2 P exchanges of the whole vector", "[cost]") {
  const cost_profile p = hand_profile();
  const std::size_t n = std::size_t{1} << 18;
  for (int ranks : {2, 4, 8, 16}) {
    int rounds = 0;
    while ((1 << rounds) < ranks) ++rounds;
    const double step = p.alpha + (p.beta + p.reduce) * static_cast<double>(n);
    CAPTURE(ranks);
    CHECK(predicted(algorithm::recursive_doubling, query(collective::all_reduce, n, ranks), p) ==
          Approx(rounds * step).epsilon(1e-9));
  }
}

TEST_CASE("cost: per-message overhead makes a rank's many messages add up", "[cost]") {
  cost_profile p = hand_profile();
  p.beta = 0;
  p.overhead = 1e-6;
  // direct all-to-all: each rank sends and receives P-1 messages in one step
  for (int ranks : {2, 4, 8}) {
    CAPTURE(ranks);
    CHECK(predicted(algorithm::direct, query(collective::all_to_all, 64 * ranks, ranks), p) ==
          Approx(p.alpha + (ranks - 1) * p.overhead).epsilon(1e-9));
  }
}

TEST_CASE("cost: links between hosts are priced as such; hierarchical sends less over them",
          "[cost]") {
  cost_profile p = hand_profile();
  p.inter_alpha = 10e-6;
  p.inter_beta = 10e-9;  // 10x slower between hosts
  tuning_query q = query(collective::all_reduce, std::size_t{16} << 20, 16);
  q.hosts = 4;
  q.min_ranks_per_host = 4;
  const auto ring = predict(algorithm::ring, q, p);
  const auto hier = predict(algorithm::hierarchical, q, p);
  REQUIRE(ring);
  REQUIRE(hier);
  CHECK(hier->inter_host_bytes < ring->inter_host_bytes);
  CHECK(hier->seconds < ring->seconds);
  // the same ranks on one host: nothing crosses, and ring costs less than across hosts
  tuning_query one = q;
  one.hosts = 1;
  one.min_ranks_per_host = 16;
  const auto flat = predict(algorithm::ring, one, p);
  CHECK(flat->inter_host_bytes == 0);
  CHECK(flat->seconds < ring->seconds);
  CHECK(is_candidate(algorithm::hierarchical, q));
  CHECK_FALSE(is_candidate(algorithm::hierarchical, one));
}

TEST_CASE("cost: one_sided's formula", "[cost]") {
  cost_profile p = hand_profile();
  p.copy = 0.25e-9;
  p.window = 0;
  tuning_query q = query(collective::all_reduce, std::size_t{1} << 20, 4);
  q.mapped_windows = true;
  // one chunk of 4 pieces of 256 KiB: copy in, ready, reduce 3/4 of the vector, reduced,
  // gather 3/4 of the vector
  const double n = std::size_t{1} << 20;
  const double want = n * p.copy + 2 * p.alpha + 0.75 * n * p.reduce + 0.75 * n * p.copy;
  const auto r = predict(algorithm::one_sided, q, p);
  REQUIRE(r);
  CHECK(r->seconds == Approx(want).epsilon(1e-12));
  CHECK_FALSE(r->from_schedule);
  CHECK(r->hops == 2);
  // without mapped windows it is no candidate, and a get-based run adds the `done` exchange
  q.mapped_windows = false;
  CHECK_FALSE(is_candidate(algorithm::one_sided, q));
  CHECK(predict(algorithm::one_sided, q, p)->seconds == Approx(want + p.alpha).epsilon(1e-12));
  q.mapped_windows = true;
  // A peer's byte read into the reduction costs `window_reduce` (negative: `window`); one
  // copied out costs `window`.
  p.window = 0.5e-9;
  const double with_window = want + 0.75 * n * p.window * 2;
  CHECK(predict(algorithm::one_sided, q, p)->seconds == Approx(with_window).epsilon(1e-12));
  p.window_reduce = 0.1e-9;
  CHECK(predict(algorithm::one_sided, q, p)->seconds ==
        Approx(want + 0.75 * n * (p.window + p.window_reduce)).epsilon(1e-12));
  // reduce-scatter: copy in, ready, reduce this rank's block over the windows; no gather
  q.kind = collective::reduce_scatter;
  CHECK(predict(algorithm::one_sided, q, p)->seconds ==
        Approx(n * p.copy + p.alpha + 0.75 * n * (p.reduce + p.window_reduce)).epsilon(1e-12));
  // all-gather copies: `window`, whatever `window_reduce` says
  q.kind = collective::all_gather;
  const double all_gather = predict(algorithm::one_sided, q, p)->seconds;
  p.window_reduce = 7e-9;
  CHECK(predict(algorithm::one_sided, q, p)->seconds == all_gather);
}

TEST_CASE("cost: the tuner picks the model's argmin", "[cost]") {
  const cost_profile p = hand_profile();
  const model_tuner tuner{p};
  for (collective c : {collective::all_reduce, collective::reduce_scatter, collective::all_gather,
                       collective::broadcast, collective::reduce, collective::all_to_all,
                       collective::gather, collective::scatter, collective::barrier}) {
    for (int ranks : {2, 3, 4, 8}) {
      for (std::size_t bytes : {std::size_t{0}, std::size_t{8}, std::size_t{4096},
                                std::size_t{1} << 16, std::size_t{1} << 22}) {
        tuning_query q = query(c, bytes, ranks);
        q.mapped_windows = ranks % 2 == 0;
        const tuning_explanation e = explain(q, p);
        CAPTURE(name(c), ranks, bytes);
        REQUIRE_FALSE(e.candidates.empty());
        CHECK(std::is_sorted(
            e.candidates.begin(), e.candidates.end(),
            [](const prediction& x, const prediction& y) { return x.seconds < y.seconds; }));
        for (const prediction& x : e.candidates) {
          CHECK(supports(x.algo, c));
          // each one the best of its family's pieces
          for (std::size_t piece : piece_candidates(x.algo, q)) {
            CHECK(x.seconds <= predicted(x.algo, q, p, piece));
          }
        }
        const tuning_choice got = tuner(q);
        CHECK(got.algo == e.candidates.front().algo);
        CHECK(tuner(q).algo == got.algo);  // from the cache, the same
        // "no pieces" is answered as one piece of the whole vector, never as 0 (default)
        if (e.candidates.front().pieces) CHECK(got.chunk_bytes != 0);
        if (!e.candidates.front().pieces) CHECK(got.chunk_bytes == 0);
      }
    }
  }
}

TEST_CASE("cost: latency-bound calls take the fewest hops, bandwidth-bound the fewest bytes",
          "[cost]") {
  cost_profile latency = hand_profile();
  latency.alpha = 1e-3;
  latency.beta = 1e-15;
  latency.reduce = 1e-15;
  cost_profile bandwidth = hand_profile();
  bandwidth.alpha = 1e-15;
  for (int ranks : {4, 8, 16}) {
    tuning_query q = query(collective::all_reduce, std::size_t{1} << 20, ranks);
    const tuning_explanation fast = explain(q, latency);
    std::size_t fewest_hops = SIZE_MAX, fewest_bytes = SIZE_MAX;
    for (const prediction& c : fast.candidates) fewest_hops = std::min(fewest_hops, c.hops);
    CAPTURE(ranks);
    CHECK(fast.candidates.front().hops == fewest_hops);
    const tuning_explanation wide = explain(q, bandwidth);
    for (const prediction& c : wide.candidates) {
      fewest_bytes = std::min(fewest_bytes, c.max_rank_bytes);
    }
    CHECK(wide.candidates.front().max_rank_bytes == fewest_bytes);
  }
}

TEST_CASE("cost: the explanation's text", "[cost]") {
  cost_profile p = hand_profile();
  p.copy = 0.25e-9;
  p.window = 0;
  tuning_query q = query(collective::all_reduce, 65536, 4);
  q.mapped_windows = true;
  tuning_explanation e = explain(q, p);
  // checked by hand: ring 3 (2 alpha + 2 beta m + gamma m), m = 16 KiB: 134.9 us; one_sided
  // n copy + 2 alpha + 3/4 n (gamma + copy): 57.25 us; recursive doubling 2 (alpha + n (beta +
  // gamma)): 200.6 us; direct: alpha + 3 m (beta + gamma), then alpha + 3 m beta: 126.9 us
  const std::string want =
      "all_reduce of 64 KiB on 4 ranks, mapped windows\n"
      "  profile: hand: alpha 2 us, 1 GB/s, overhead 0 us, reduce 2 GB/s, copy 4 GB/s\n"
      "  algorithm            piece       predicted   hops   messages   bytes/rank   bytes/link\n"
      "  one_sided            -             57.2 us      2         24            -            -  "
      "<- chosen\n"
      "  direct               -              127 us      2         24        98304        32768  "
      "runner-up\n"
      "  halving_doubling     -              131 us      4         16        98304        65536\n"
      "  ring                 whole          135 us      6         24        98304        98304\n"
      "  double_binary_tree   16 KiB         190 us      5         24       131072        65536\n"
      "  recursive_doubling   -              201 us      2          8       131072        65536\n"
      "  tree                 16 KiB         268 us      7         24       131072        65536\n";
  CHECK(to_string(e) == want);
  // a choice made by another rule is named, with the model's fastest
  e.choice = {algorithm::ring, 0};
  e.chooser = "default rule";
  CHECK(
      to_string(e).ends_with("  chosen by the default rule: ring; the model's fastest is "
                             "one_sided\n"));
}

TEST_CASE("cost: the simulator refuses a host list that does not name one host per rank",
          "[cost]") {
  // It reads the hosts to price links between them; a short or negative list was read out
  // of bounds before it was checked.
  params p;
  p.kind = collective::all_reduce;
  p.size = 4;
  p.count = 64;
  std::vector<params> ps = params_for_all_ranks(p);
  std::vector<schedule> schedules;
  for (const params& r : ps) schedules.push_back(build(algorithm::ring, r));
  simulate_options o;
  o.cost.inter_beta = 1;
  for (const std::vector<int>& hosts : {std::vector<int>{0, 1}, std::vector<int>{0, 0, 1, -1}}) {
    for (params& r : ps) r.hosts = hosts;
    const simulation_result res = simulate(schedules, ps, o);
    CHECK_FALSE(res.ok);
    CHECK(res.error == "hosts must name one host (numbered from 0) per rank, or be empty");
  }
  for (params& r : ps) r.hosts = {};
  CHECK(simulate(schedules, ps, o).ok);
}

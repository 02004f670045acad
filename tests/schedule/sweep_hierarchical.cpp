/// \file
/// The hierarchical family: exhaustive simulation over host layouts (one host, uniform
/// layouts, hosts of different sizes, ranks of a host not adjacent), every collective it
/// runs, every root, counts (0, 1, not divisible by the ranks, v-counts with zeros), chunk
/// sizes and both aliasing modes; the promises of build.hpp on every schedule; the traffic
/// that crosses hosts in the uniform all_reduce; and the default rule's choice of it.
#include "sweep.hpp"

#include <chorus/schedule/tuning.hpp>

#include <cstddef>
#include <set>
#include <string>
#include <vector>

namespace {

using namespace chorus::schedule;

/// The layouts of the sweep: hosts[r] for every rank.
const std::vector<std::vector<int>> layouts = {
    {},   // one host, said by leaving hosts empty
    {0},  // one host of 1..4 ranks, said explicitly
    {0, 0},
    {0, 0, 0},
    {0, 0, 0, 0},
    {0, 0, 1, 1},                                      // 2 x 2
    {0, 0, 0, 1, 1, 1},                                // 2 hosts x 3 ranks
    {0, 0, 1, 1, 2, 2},                                // 3 hosts x 2 ranks
    {0, 0, 1, 1, 2, 2, 3, 3},                          // 4 hosts x 2 ranks
    {0, 0, 0, 1},                                      // 3 + 1
    {0, 1, 1, 1},                                      // 1 + 3
    {0, 0, 1, 2, 2, 2},                                // 2 + 1 + 3
    {0, 1, 0, 1},                                      // round robin: uniform, members not adjacent
    {0, 1, 1, 0, 2, 2},                                // uniform, members not adjacent
    {0, 1, 2},                                         // one rank per host
    {0, 1, 0, 2, 0},                                   // 3 + 1 + 1, interleaved
    {0, 1, 2, 2},                                      // 1 + 1 + 2
    {1, 1, 0, 0},                                      // numbered otherwise: only equality counts
    {0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3},  // 4 x 4
    {0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1},  // 2 x 8, round robin
    {0, 0, 0, 0, 0, 1, 1, 1, 2, 3, 3, 3, 3},           // 5 + 3 + 1 + 4
};

constexpr collective hierarchical_collectives[] = {
    collective::all_reduce, collective::reduce_scatter, collective::all_gather,
    collective::broadcast, collective::reduce};

/// The promises of build.hpp for one rank's schedule of `x`; a failed one is reported.
void check_promises(const sched_test::call& x, int rank) {
  params p;
  p.kind = x.kind;
  p.size = x.size;
  p.rank = rank;
  p.root = x.root;
  p.count = x.count;
  p.chunk_count = x.chunk;
  p.hosts = x.hosts;
  if (sched_test::uses_counts(x.kind)) p.counts = x.counts;
  const schedule s = build(algorithm::hierarchical, p);
  auto expect = [&](bool holds, const char* promise) {
    if (!holds) FAIL_CHECK(x.describe() << " rank " << rank << ": " << promise);
  };
  for (std::size_t k = 0; k < s.steps(); ++k) expect(!s.step(k).empty(), "no empty step");
  const bool root = rank == x.root;
  for (const op& o : s.ops) {
    const region& data = o.code == op_code::send ? o.src : o.dst;
    expect(data.count > 0, "no empty data transfer");
    expect(o.tag == 0, "tags are 0");
    if (o.code == op_code::copy) {
      expect(o.src.count == o.dst.count, "copies between equal counts");
      expect(!(o.src == o.dst), "no copy onto itself");
    }
    const bool names_input = o.src.buf == buffer::input && o.code != op_code::recv;
    const bool names_output = (o.code != op_code::send && o.dst.buf == buffer::output) ||
                              (o.code != op_code::recv && o.src.buf == buffer::output);
    if (!root && x.kind == collective::broadcast) {
      expect(!names_input, "non-root inputs are never touched");
    }
    if (!root && x.kind == collective::reduce) {
      expect(!names_output, "non-root outputs are never touched");
    }
  }
}

}  // namespace

TEST_CASE("hierarchical schedules are correct for every layout, root, count, chunk and aliasing",
          "[schedule][sweep][hierarchical]") {
  for (collective c : hierarchical_collectives) {
    REQUIRE(supports(algorithm::hierarchical, c));
    std::size_t failures = 0, runs = 0;
    std::set<std::pair<std::size_t, bool>> covered;  // (layout, in place)
    for (std::size_t k = 0; k < layouts.size(); ++k) {
      const std::vector<int>& hosts = layouts[k];
      const int size = hosts.empty() ? 3 : static_cast<int>(hosts.size());
      for (sched_test::call x : sched_test::sweep_cases(algorithm::hierarchical, c, size)) {
        x.hosts = hosts;
        const simulation_result res = sched_test::run(x);
        ++runs;
        covered.insert({k, x.in_place});
        INFO("collective " << name(c));
        if (!res.ok && ++failures <= 5) FAIL_CHECK(x.describe() << ": " << res.error);
        if (!x.in_place) {
          for (int r = 0; r < size; ++r) check_promises(x, r);
        }
      }
    }
    CHECK(failures == 0);
    CHECK(covered.size() == 2 * layouts.size());
    CHECK(runs > 0);
  }
}

TEST_CASE("hierarchical all_reduce sends 2(H-1)/H of a rank's block across hosts",
          "[schedule][statistics][hierarchical]") {
  // H hosts of L ranks, n divisible by H * L: rank r reduce-scatters the vector within its
  // host (L blocks of n / L), all-reduces its block with the H - 1 ranks of the same index
  // on the other hosts (a ring: 2(H-1)/H of the block sent), and all-gathers within the
  // host. Only the middle phase crosses hosts: 2(H-1)/H * n/L elements per rank, so
  // 2(H-1)/H * n per host, where a flat ring over all ranks sends nearly 2n per rank
  // through links that partly cross hosts.
  struct shape {
    int hosts, per_host;
    bool round_robin;
  };
  for (const shape sh : {shape{2, 2, false}, shape{2, 3, false}, shape{3, 2, false},
                         shape{4, 2, false}, shape{3, 4, false}, shape{2, 4, true}}) {
    const int H = sh.hosts, L = sh.per_host, P = H * L;
    std::vector<int> hosts;
    for (int r = 0; r < P; ++r) hosts.push_back(sh.round_robin ? r % H : r / L);
    // n / L, and on two hosts its halves, whole: unpipelined (2HL) and pipelined in two
    // halves (8HL and more).
    for (std::size_t n :
         {std::size_t(H * L * 2), std::size_t(H * L * 8), std::size_t(H * L * 8 * 37)}) {
      for (std::size_t chunk : {std::size_t{0}, std::size_t{4}}) {
        INFO("H=" << H << " L=" << L << (sh.round_robin ? " round robin" : "") << " n=" << n
                  << " chunk=" << chunk);
        params p;
        p.kind = collective::all_reduce;
        p.size = P;
        p.count = n;
        p.chunk_count = chunk;
        p.hosts = hosts;
        const std::vector<params> ps = params_for_all_ranks(p);
        REQUIRE(simulate(algorithm::hierarchical, std::span<const params>(ps)).ok);
        const std::size_t across = 2 * std::size_t(H - 1) * n / std::size_t(H * L);
        const std::size_t within = 2 * std::size_t(L - 1) * n / std::size_t(L);
        for (const params& q : ps) {
          const schedule s = build(algorithm::hierarchical, q);
          const int host = hosts[std::size_t(q.rank)];
          std::size_t sent_across = 0, sent_within = 0;
          for (const op& o : s.ops) {
            if (o.code != op_code::send) continue;
            const bool remote = hosts[std::size_t(o.peer)] != host;
            (remote ? sent_across : sent_within) += o.src.count;
          }
          CHECK(sent_across == across);
          // Two hosts: the second host's owners are rotated by one (two_host_exchange), so
          // its ranks pass one more block within the host.
          const bool rotated = H == 2 && host == hosts[std::size_t(P - 1)] && host != hosts[0];
          CHECK(sent_within == within + (rotated ? n / std::size_t(L) : 0));
          if (H == 2) {
            // No step sends to a rank of the other host that it also receives from: a
            // connection carries data one way at a time.
            for (std::size_t k = 0; k < s.steps(); ++k) {
              std::set<int> to, from;
              for (const op& o : s.step(k)) {
                if (o.peer < 0 || hosts[std::size_t(o.peer)] == host) continue;
                (o.code == op_code::send ? to : from).insert(o.peer);
              }
              for (int x : to) CHECK(from.count(x) == 0);
            }
          }
        }
      }
    }
  }
}

TEST_CASE("hierarchical on one host, or one rank per host, is the ring",
          "[schedule][build][hierarchical]") {
  const std::vector<std::size_t> counts{3, 0, 5, 2};
  for (const std::vector<int>& hosts :
       {std::vector<int>{}, std::vector<int>{7, 7, 7, 7}, std::vector<int>{0, 1, 2, 3}}) {
    for (collective c : hierarchical_collectives) {
      params p;
      p.kind = c;
      p.size = 4;
      p.root = 2;
      p.count = 10;
      p.chunk_count = 3;
      if (sched_test::uses_counts(c)) p.counts = counts;
      for (p.rank = 0; p.rank < p.size; ++p.rank) {
        p.hosts = {};
        const schedule ring = build(algorithm::ring, p);
        p.hosts = hosts;
        const schedule h = build(algorithm::hierarchical, p);
        CHECK(h.ops == ring.ops);
        CHECK(h.step_begin == ring.step_begin);
        CHECK(h.scratch_count == ring.scratch_count);
      }
    }
  }
}

TEST_CASE("the simulator requires every rank to pass the same hosts",
          "[schedule][simulate][hierarchical]") {
  params p;
  p.kind = collective::all_reduce;
  p.size = 4;
  p.count = 8;
  const std::vector<int> a{0, 0, 1, 1}, b{0, 1, 0, 1};
  p.hosts = a;
  std::vector<params> ps = params_for_all_ranks(p);
  ps[3].hosts = b;
  const simulation_result res = simulate(algorithm::hierarchical, std::span<const params>(ps));
  CHECK_FALSE(res.ok);
  CHECK_THAT(res.error, Catch::Matchers::Contains("params of rank 3 disagree"));
}

TEST_CASE("the default rule takes hierarchical on several hosts of several ranks",
          "[schedule][tuning][hierarchical]") {
  tuning_query q;
  q.ranks = 8;
  q.hosts = 2;
  q.min_ranks_per_host = 4;
  for (std::size_t bytes : {std::size_t{8}, std::size_t{1} << 30}) {
    q.bytes = bytes;
    for (collective c : sched_test::all_collectives) {
      q.kind = c;
      INFO(name(c) << " " << bytes << " bytes");
      CHECK((default_tuning(q).algo == algorithm::hierarchical) ==
            supports(algorithm::hierarchical, c));
    }
  }
  q.kind = collective::all_reduce;
  q.min_ranks_per_host = 1;  // a host with a single rank: the flat rule
  CHECK(default_tuning(q).algo != algorithm::hierarchical);
  q.hosts = 1;
  q.min_ranks_per_host = 8;  // one host
  CHECK(default_tuning(q).algo != algorithm::hierarchical);
}

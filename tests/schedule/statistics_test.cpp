/// \file
/// Exact costs where the theory is known: elements sent per rank, messages, rounds and
/// pipeline depth of each family, measured by the simulator.
#include "sweep.hpp"

#include <chorus/schedule/layout.hpp>

#include <cstddef>

namespace {

using namespace chorus::schedule;
using sched_test::call;
using sched_test::run;

bool power_of_two(int p) { return (p & (p - 1)) == 0; }

int floor_log2(int p) {
  int l = 0;
  while ((2 << l) <= p) ++l;
  return l;
}

int ceil_log2(int p) {
  int l = 0;
  while ((1 << l) < p) ++l;
  return l;
}

call make(algorithm a, collective c, int size, std::size_t count, std::size_t chunk = 0) {
  call x;
  x.alg = a;
  x.kind = c;
  x.size = size;
  x.count = count;
  x.chunk = chunk;
  return x;
}

std::size_t sz(int v) { return static_cast<std::size_t>(v); }

/// Whether every rank's figure is `want` (one assertion per case, not per rank).
bool every(const std::vector<std::size_t>& per_rank, std::size_t want) {
  for (std::size_t v : per_rank) {
    if (v != want) return false;
  }
  return true;
}

}  // namespace

TEST_CASE("ring all_reduce sends 2(P-1)/P of the vector per rank in 2(P-1) rounds",
          "[schedule][statistics][ring]") {
  for (int p = 1; p <= 64; ++p) {
    for (std::size_t chunk : {std::size_t{0}, std::size_t{2}}) {
      const std::size_t count = 6 * sz(p);
      const simulation_result r =
          run(make(algorithm::ring, collective::all_reduce, p, count, chunk));
      INFO("P=" << p << " chunk=" << chunk << " " << r.error);
      REQUIRE(r.ok);
      CHECK(every(r.sent_elements, 2 * sz(p - 1) * count / sz(p)));
      // Each block is 6 elements: 1 message per step unchunked, 3 pieces with chunk 2.
      const std::size_t per_step = chunk == 0 ? 1 : 3;
      CHECK(every(r.sent_messages, 2 * sz(p - 1) * per_step));
      CHECK(r.message_steps == 2 * sz(p - 1));
      CHECK(r.time == Approx(2.0 * (p - 1)));
    }
  }
}

TEST_CASE("ring reduce_scatter and all_gather send (P-1) blocks per rank",
          "[schedule][statistics][ring]") {
  for (int p = 1; p <= 64; ++p) {
    for (collective c : {collective::reduce_scatter, collective::all_gather}) {
      call x = make(algorithm::ring, c, p, 0);
      x.counts.assign(sz(p), 5);
      const simulation_result r = run(x);
      INFO(name(c) << " P=" << p << " " << r.error);
      REQUIRE(r.ok);
      CHECK(every(r.sent_elements, 5 * sz(p - 1)));
      CHECK(r.message_steps == sz(p - 1));
    }
  }
}

TEST_CASE("ring broadcast and reduce pipelines overlap pieces along the chain",
          "[schedule][statistics][ring]") {
  for (int p = 2; p <= 32; ++p) {
    for (collective c : {collective::broadcast, collective::reduce}) {
      // 10 pieces of 4: the last piece leaves the head after 9 steps and needs P - 1 hops.
      call x = make(algorithm::ring, c, p, 40, 4);
      x.root = p / 2;
      const simulation_result r = run(x);
      INFO(name(c) << " P=" << p << " " << r.error);
      REQUIRE(r.ok);
      CHECK(r.time == Approx(10.0 + (p - 1) - 1));
      CHECK(r.max_sent_elements == 40);
      CHECK(r.messages == sz(p - 1) * 10);
      // Unpipelined: P - 1 hops of the whole vector.
      x.chunk = 0;
      CHECK(run(x).time == Approx(p - 1));
    }
  }
}

TEST_CASE("ring barrier takes 2P-2 hops", "[schedule][statistics][ring]") {
  for (int p = 2; p <= 64; ++p) {
    const simulation_result r = run(make(algorithm::ring, collective::barrier, p, 0));
    INFO("P=" << p << " " << r.error);
    REQUIRE(r.ok);
    CHECK(r.time == Approx(2.0 * p - 2));
    CHECK(r.messages == 2 * sz(p) - 2);
  }
}

TEST_CASE("tree all_reduce pipelines the up and down waves", "[schedule][statistics][tree]") {
  for (int p = 2; p <= 64; ++p) {
    const int height = floor_log2(p);  // the heap's depth
    for (std::size_t pieces : {std::size_t{1}, std::size_t{10}}) {
      const simulation_result r =
          run(make(algorithm::tree, collective::all_reduce, p, 4 * pieces, 4));
      INFO("P=" << p << " pieces=" << pieces << " " << r.error);
      REQUIRE(r.ok);
      // The last piece starts up at step pieces - 1 and needs H hops up and H down.
      CHECK(r.time == Approx(static_cast<double>(pieces) - 1 + 2 * height));
      // Every rank sends each piece once up (but the root) and once per child down.
      CHECK(r.elements == 2 * sz(p - 1) * 4 * pieces);
    }
  }
}

TEST_CASE("tree broadcast and reduce take depth + pieces - 1 hops",
          "[schedule][statistics][tree]") {
  for (int p = 2; p <= 64; ++p) {
    for (collective c : {collective::broadcast, collective::reduce}) {
      call x = make(algorithm::tree, c, p, 12, 3);
      x.root = p - 1;
      const simulation_result r = run(x);
      INFO(name(c) << " P=" << p << " " << r.error);
      REQUIRE(r.ok);
      CHECK(r.time == Approx(4.0 - 1 + floor_log2(p)));
    }
  }
}

TEST_CASE("double binary tree halves the data per tree and balances the ranks",
          "[schedule][statistics][double_binary_tree]") {
  for (int p = 1; p <= 64; ++p) {
    const detail::tree_shape t0 = detail::double_tree_first(p);
    const detail::tree_shape t1 = detail::double_tree_second(p);
    int both_inner = 0;
    for (std::size_t r = 0; r < sz(p); ++r) {
      both_inner += (t0.kids[r][0] >= 0 && t1.kids[r][0] >= 0) ? 1 : 0;
    }
    INFO("P=" << p);
    CHECK(both_inner == 0);  // no rank is an inner node of both trees
    CHECK(t0.height[sz(t0.root)] == floor_log2(p));
    CHECK(t1.height[sz(t1.root)] == floor_log2(p));
    if (p < 2) continue;
    const simulation_result r =
        run(make(algorithm::double_binary_tree, collective::all_reduce, p, 8 * 10, 8));
    INFO(r.error);
    REQUIRE(r.ok);
    // Each tree moves 40 elements: up once per non-root rank, down once per non-root rank.
    CHECK(r.elements == 2 * 2 * sz(p - 1) * 40);
    // 5 pieces per tree, both trees at once.
    CHECK(r.time == Approx(5.0 - 1 + 2 * floor_log2(p)));
  }
}

TEST_CASE("tree shapes are trees", "[schedule][statistics][tree]") {
  for (int p = 1; p <= 64; ++p) {
    for (int which = 0; which < 3; ++which) {
      const detail::tree_shape t = which == 0   ? detail::heap_tree(p, p / 3)
                                   : which == 1 ? detail::double_tree_first(p)
                                                : detail::double_tree_second(p);
      INFO("P=" << p << " tree " << which);
      std::vector<int> children_seen(sz(p), 0);
      for (int r = 0; r < p; ++r) {
        for (int c : t.kids[sz(r)]) {
          if (c < 0) continue;
          REQUIRE(c < p);
          CHECK(t.parent[sz(c)] == r);
          ++children_seen[sz(c)];
        }
      }
      for (int r = 0; r < p; ++r) {
        CHECK(children_seen[sz(r)] == (r == t.root ? 0 : 1));
        CHECK((t.parent[sz(r)] < 0) == (r == t.root));
      }
    }
  }
}

TEST_CASE("recursive doubling all_reduce takes log2(P) rounds, +2 when folding",
          "[schedule][statistics][recursive_doubling]") {
  for (int p = 2; p <= 64; ++p) {
    const simulation_result r =
        run(make(algorithm::recursive_doubling, collective::all_reduce, p, 10));
    INFO("P=" << p << " " << r.error);
    REQUIRE(r.ok);
    if (power_of_two(p)) {
      CHECK(r.message_steps == sz(ceil_log2(p)));
      CHECK(every(r.sent_elements, 10 * sz(ceil_log2(p))));
      // P = 2 adds a local copy step (the exchange must not write what it sends in place).
      CHECK(r.steps == sz(ceil_log2(p)) + (p == 2 ? 1 : 0));
    } else {
      CHECK(r.message_steps == sz(floor_log2(p)) + 2);
      CHECK(r.steps == sz(floor_log2(p)) + 2);
    }
    CHECK(r.time == Approx(r.message_steps));
  }
}

TEST_CASE("recursive doubling all_gather, broadcast, reduce, barrier round counts",
          "[schedule][statistics][recursive_doubling]") {
  for (int p = 2; p <= 64; ++p) {
    INFO("P=" << p);
    call ag = make(algorithm::recursive_doubling, collective::all_gather, p, 0);
    ag.counts.assign(sz(p), 3);
    const simulation_result g = run(ag);
    REQUIRE(g.ok);
    CHECK(g.message_steps == sz(floor_log2(p)) + (power_of_two(p) ? 0 : 2));
    if (power_of_two(p)) {
      CHECK(every(g.sent_elements, 3 * sz(p - 1)));
    }
    for (collective c : {collective::broadcast, collective::reduce}) {
      call x = make(algorithm::recursive_doubling, c, p, 5);
      x.root = p / 2;
      const simulation_result r = run(x);
      REQUIRE(r.ok);
      CHECK(r.time == Approx(ceil_log2(p)));
      CHECK(r.messages == sz(p - 1));
    }
    const simulation_result b = run(make(algorithm::recursive_doubling, collective::barrier, p, 0));
    REQUIRE(b.ok);
    CHECK(b.message_steps == sz(ceil_log2(p)));
    CHECK(every(b.sent_messages, sz(ceil_log2(p))));
  }
}

TEST_CASE("halving-doubling all_reduce is bandwidth optimal in 2 log2(P) rounds",
          "[schedule][statistics][halving_doubling]") {
  for (int p = 2; p <= 64; ++p) {
    const std::size_t count = 4 * sz(p);
    const simulation_result r =
        run(make(algorithm::halving_doubling, collective::all_reduce, p, count));
    INFO("P=" << p << " " << r.error);
    REQUIRE(r.ok);
    if (power_of_two(p)) {
      CHECK(every(r.sent_elements, 2 * sz(p - 1) * count / sz(p)));
      CHECK(r.message_steps == 2 * sz(ceil_log2(p)));
    } else {
      CHECK(r.message_steps == 2 * sz(floor_log2(p)) + 2);
    }
  }
}

TEST_CASE("halving-doubling reduce_scatter sends (P-1)/P of the input per rank",
          "[schedule][statistics][halving_doubling]") {
  for (int p : {2, 4, 8, 16, 32, 64}) {
    call x = make(algorithm::halving_doubling, collective::reduce_scatter, p, 0);
    x.counts.assign(sz(p), 3);
    const simulation_result r = run(x);
    INFO("P=" << p << " " << r.error);
    REQUIRE(r.ok);
    CHECK(every(r.sent_elements, 3 * sz(p - 1)));
    CHECK(r.message_steps == sz(ceil_log2(p)));
  }
}

TEST_CASE("direct schedules take one hop per phase", "[schedule][statistics][direct]") {
  for (int p = 2; p <= 64; ++p) {
    INFO("P=" << p);
    call a2a = make(algorithm::direct, collective::all_to_all, p, 0);
    a2a.a2a_pattern = 1;  // 2 elements for every pair
    const simulation_result t = run(a2a);
    REQUIRE(t.ok);
    CHECK(every(t.sent_messages, sz(p - 1)));
    CHECK(every(t.sent_elements, 2 * sz(p - 1)));
    CHECK(t.steps == 1);
    const simulation_result ar = run(make(algorithm::direct, collective::all_reduce, p, sz(p)));
    REQUIRE(ar.ok);
    CHECK(ar.steps == 2);
    CHECK(every(ar.sent_elements, 2 * sz(p - 1)));
    const simulation_result b = run(make(algorithm::direct, collective::barrier, p, 0));
    REQUIRE(b.ok);
    CHECK(b.time == Approx(2.0));
  }
}

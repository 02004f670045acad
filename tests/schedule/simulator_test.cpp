/// \file
/// The simulator must catch broken schedules: hand-made schedules with one bug each (a
/// missing send, a deadlock, a double reduction, hazards, out-of-bounds regions, size
/// mismatches, uninitialised reads, in-place aliasing bugs, a broken barrier, wrong
/// results) must fail with the right message, and their correct twins must pass.
#include <chorus/schedule/simulate.hpp>

#include <catch2/catch.hpp>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace {

using namespace chorus::schedule;
using Catch::Matchers::Contains;

region in(std::size_t o, std::size_t n) { return {buffer::input, o, n}; }
region out(std::size_t o, std::size_t n) { return {buffer::output, o, n}; }
region scr(std::size_t o, std::size_t n) { return {buffer::scratch, o, n}; }

/// Builds one rank's schedule op by op.
struct maker {
  schedule s;
  maker& send(int peer, region src, std::uint32_t tag = 0) {
    s.add({op_code::send, peer, tag, src, {}});
    return *this;
  }
  maker& recv(int peer, region dst, std::uint32_t tag = 0) {
    s.add({op_code::recv, peer, tag, {}, dst});
    return *this;
  }
  maker& reduce(int peer, region src, region dst, std::uint32_t tag = 0) {
    s.add({op_code::recv_reduce, peer, tag, src, dst});
    return *this;
  }
  maker& copy(region src, region dst) {
    s.add({op_code::copy, -1, 0, src, dst});
    return *this;
  }
  maker& step() {
    s.end_step();
    return *this;
  }
  maker& scratch(std::size_t n) {
    s.scratch_count = n;
    return *this;
  }
};

std::vector<params> ranks(collective kind, int size, std::size_t count, int root = 0) {
  params p;
  p.kind = kind;
  p.size = size;
  p.count = count;
  p.root = root;
  return params_for_all_ranks(p);
}

simulation_result sim(const std::vector<maker>& ms, const std::vector<params>& ps,
                      bool in_place = false) {
  std::vector<schedule> s;
  for (const maker& m : ms) s.push_back(m.s);
  simulate_options opt;
  opt.in_place = in_place;
  return simulate(s, ps, opt);
}

/// A correct 2-rank all_reduce of n elements: both exchange inputs and add them.
std::vector<maker> good_pair_all_reduce(std::size_t n) {
  std::vector<maker> m(2);
  for (int r = 0; r < 2; ++r) {
    m[static_cast<std::size_t>(r)]
        .send(1 - r, in(0, n))
        .reduce(1 - r, in(0, n), scr(0, n))
        .step()
        .copy(scr(0, n), out(0, n))
        .step()
        .scratch(n);
  }
  return m;
}

}  // namespace

TEST_CASE("a correct hand-made schedule passes in both aliasing modes", "[schedule][simulate]") {
  const auto ps = ranks(collective::all_reduce, 2, 3);
  const simulation_result a = sim(good_pair_all_reduce(3), ps);
  INFO(a.error);
  CHECK(a.ok);
  CHECK(a.messages == 2);
  CHECK(a.max_sent_elements == 3);
  CHECK(a.steps == 2);
  CHECK(a.message_steps == 1);
  const simulation_result b = sim(good_pair_all_reduce(3), ps, true);
  INFO(b.error);
  CHECK(b.ok);
}

TEST_CASE("a missing send is an unmatched message", "[schedule][simulate]") {
  auto m = good_pair_all_reduce(3);
  m[1] = maker{};  // rank 1 forgets to send, but receives
  m[1].reduce(0, in(0, 3), scr(0, 3)).step().copy(scr(0, 3), out(0, 3)).step().scratch(3);
  const simulation_result r = sim(m, ranks(collective::all_reduce, 2, 3));
  CHECK_FALSE(r.ok);
  CHECK_THAT(r.error, Contains("unmatched message") &&
                          Contains("rank 1 sends 0 message(s) to rank 0") &&
                          Contains("receives 1"));
}

TEST_CASE("a receive nobody sends is an unmatched message", "[schedule][simulate]") {
  std::vector<maker> m(2);
  m[0].recv(1, out(0, 1)).step();
  m[1].copy(in(0, 1), out(0, 1)).step();
  const simulation_result r = sim(m, ranks(collective::broadcast, 2, 1, 1));
  CHECK_FALSE(r.ok);
  CHECK_THAT(r.error, Contains("unmatched message") && Contains("rank 1 sends 0 message(s)"));
}

TEST_CASE("messages of different tags do not match", "[schedule][simulate]") {
  std::vector<maker> m(2);
  m[0].copy(in(0, 1), out(0, 1)).send(1, in(0, 1), 1).step();
  m[1].recv(0, out(0, 1), 0).step();
  const simulation_result r = sim(m, ranks(collective::broadcast, 2, 1));
  CHECK_FALSE(r.ok);
  CHECK_THAT(r.error, Contains("unmatched message"));
}

TEST_CASE("a pair's messages in different orders on the two sides fail, tags or not",
          "[schedule][simulate]") {
  // Tag matching would pair these (tag 1 with tag 1); a transport without tags (NCCL) pairs
  // them by position, so the simulator refuses the schedule.
  std::vector<maker> m(2);
  m[0].copy(in(0, 2), out(0, 2)).send(1, in(0, 1), 1).send(1, in(1, 1), 2).step();
  m[1].recv(0, out(1, 1), 2).recv(0, out(0, 1), 1).step();
  const simulation_result r = sim(m, ranks(collective::broadcast, 2, 2));
  CHECK_FALSE(r.ok);
  CHECK_THAT(r.error, Contains("order: rank 0 sends to rank 1 in another order"));
  // Listed in the same order on both sides, the same messages pass.
  std::vector<maker> same(2);
  same[0].copy(in(0, 2), out(0, 2)).send(1, in(0, 1), 1).send(1, in(1, 1), 2).step();
  same[1].recv(0, out(0, 1), 1).recv(0, out(1, 1), 2).step();
  const simulation_result ok = sim(same, ranks(collective::broadcast, 2, 2));
  CHECK(ok.ok);
  INFO(ok.error);
}

TEST_CASE("cyclic waiting is a deadlock", "[schedule][simulate]") {
  // Both ranks first wait for the other, then send: nobody can move.
  std::vector<maker> m(2);
  for (int r = 0; r < 2; ++r) {
    m[static_cast<std::size_t>(r)]
        .reduce(1 - r, in(0, 1), out(0, 1))
        .step()
        .send(1 - r, in(0, 1))
        .step();
  }
  const simulation_result r = sim(m, ranks(collective::all_reduce, 2, 1));
  CHECK_FALSE(r.ok);
  CHECK_THAT(r.error, Contains("deadlock") && Contains("rank 0 waits in step 0") &&
                          Contains("rank 1 waits in step 0"));
}

TEST_CASE("sends do not complete without a posted receive (rendezvous)", "[schedule][simulate]") {
  // Would work with buffered sends; a transport that blocks in send hangs, and so does the
  // simulator.
  std::vector<maker> m(2);
  for (int r = 0; r < 2; ++r) {
    m[static_cast<std::size_t>(r)]
        .send(1 - r, in(0, 1))
        .step()
        .reduce(1 - r, in(0, 1), out(0, 1))
        .step();
  }
  const simulation_result r = sim(m, ranks(collective::all_reduce, 2, 1));
  CHECK_FALSE(r.ok);
  CHECK_THAT(r.error, Contains("deadlock") && Contains("on its send to rank"));
}

TEST_CASE("adding a contribution twice is caught", "[schedule][simulate]") {
  // Rank 0 sends its input twice and rank 1 adds both copies.
  std::vector<maker> m(2);
  m[0].send(1, in(0, 1)).step().send(1, in(0, 1)).step().recv(1, out(0, 1)).step();
  m[1].reduce(0, in(0, 1), out(0, 1))
      .step()
      .reduce(0, out(0, 1), out(0, 1))
      .step()
      .send(0, out(0, 1))
      .step();
  const simulation_result r = sim(m, ranks(collective::all_reduce, 2, 1));
  CHECK_FALSE(r.ok);
  CHECK_THAT(r.error, Contains("reduced twice") && Contains("ranks {0} would count twice"));
}

TEST_CASE("a missing contribution is a wrong result", "[schedule][simulate]") {
  // reduce to rank 0 of 3 ranks, but rank 2's input never arrives.
  std::vector<maker> m(3);
  m[0].reduce(1, in(0, 2), out(0, 2)).step();
  m[1].send(0, in(0, 2)).step();
  const simulation_result r = sim(m, ranks(collective::reduce, 3, 2));
  CHECK_FALSE(r.ok);
  CHECK_THAT(r.error, Contains("wrong result") && Contains("rank 0 output element 0") &&
                          Contains("ranks {0,1}") && Contains("ranks {0,1,2}"));
}

TEST_CASE("reducing different element indices is caught", "[schedule][simulate]") {
  std::vector<maker> m(2);
  m[0].send(1, in(1, 1)).step();
  m[1].reduce(0, in(0, 1), out(0, 1)).step();
  const simulation_result r = sim(m, ranks(collective::reduce, 2, 2, 1));
  CHECK_FALSE(r.ok);
  CHECK_THAT(r.error, Contains("combines element 0 with element 1"));
}

TEST_CASE("data in the wrong place is a wrong result", "[schedule][simulate]") {
  // Broadcast of 2 elements where the receiver swaps the two pieces.
  std::vector<maker> m(2);
  m[0].copy(in(0, 2), out(0, 2)).send(1, in(0, 1)).send(1, in(1, 1)).step();
  m[1].recv(0, out(1, 1)).recv(0, out(0, 1)).step();
  const simulation_result r = sim(m, ranks(collective::broadcast, 2, 2));
  CHECK_FALSE(r.ok);
  CHECK_THAT(r.error, Contains("wrong result") && Contains("rank 1 output element 0") &&
                          Contains("holds element 1 of ranks {0}") &&
                          Contains("should hold element 0 of ranks {0}"));
}

TEST_CASE("reading what another op of the step writes is a hazard", "[schedule][simulate]") {
  std::vector<maker> m(2);
  for (int r = 0; r < 2; ++r) {
    // Forwards out[0, 2) while receiving into out[1, 3).
    m[static_cast<std::size_t>(r)]
        .copy(in(0, 3), out(0, 3))
        .step()
        .send(1 - r, out(0, 2))
        .recv(1 - r, out(1, 2))
        .step();
  }
  const simulation_result r = sim(m, ranks(collective::all_reduce, 2, 3));
  CHECK_FALSE(r.ok);
  CHECK_THAT(r.error,
             Contains("hazard") && Contains("step 1") && Contains("reads elements that op"));
}

TEST_CASE("two ops of a step writing the same element is a hazard", "[schedule][simulate]") {
  std::vector<maker> m(3);
  m[0].recv(1, out(0, 2)).recv(2, out(1, 2)).step();
  m[1].send(0, in(0, 2)).step();
  m[2].send(0, in(0, 2)).step();
  const simulation_result r = sim(m, ranks(collective::reduce, 3, 3));
  CHECK_FALSE(r.ok);
  CHECK_THAT(r.error, Contains("hazard") && Contains("write the same elements"));
}

TEST_CASE("recv_reduce ops onto one destination accumulate in op order", "[schedule][simulate]") {
  // The hazard rule's exception: rank 0 adds both peers into out in one step.
  std::vector<maker> m(3);
  m[0].reduce(1, in(0, 2), out(0, 2)).reduce(2, out(0, 2), out(0, 2)).step();
  m[1].send(0, in(0, 2)).step();
  m[2].send(0, in(0, 2)).step();
  const simulation_result r = sim(m, ranks(collective::reduce, 3, 2));
  INFO(r.error);
  CHECK(r.ok);
  // ... but a recv_reduce onto an overlapping, different range is a hazard.
  m[0] = maker{};
  m[0].reduce(1, in(0, 2), out(0, 2)).reduce(2, out(1, 1), out(1, 1)).step();
  const simulation_result bad = sim(m, ranks(collective::reduce, 3, 2));
  CHECK_FALSE(bad.ok);
  CHECK_THAT(bad.error, Contains("hazard"));
}

TEST_CASE("a copy whose source partly overlaps its destination is a hazard",
          "[schedule][simulate]") {
  std::vector<maker> m(1);
  m[0].copy(in(0, 3), out(0, 3)).step().copy(out(0, 2), out(1, 2)).step();
  const simulation_result r = sim(m, ranks(collective::all_reduce, 1, 3));
  CHECK_FALSE(r.ok);
  CHECK_THAT(r.error, Contains("hazard") && Contains("partly overlaps"));
}

TEST_CASE("regions outside their buffer are out of bounds", "[schedule][simulate]") {
  SECTION("output") {
    std::vector<maker> m(1);
    m[0].copy(in(0, 2), out(1, 2)).step();
    const simulation_result r = sim(m, ranks(collective::all_reduce, 1, 2));
    CHECK_FALSE(r.ok);
    CHECK_THAT(r.error, Contains("out of bounds") && Contains("output[1, 3)") &&
                            Contains("output buffer of 2 elements"));
  }
  SECTION("scratch beyond scratch_count") {
    std::vector<maker> m(1);
    m[0].copy(in(0, 2), scr(0, 2)).step().copy(scr(0, 2), out(0, 2)).step().scratch(1);
    const simulation_result r = sim(m, ranks(collective::all_reduce, 1, 2));
    CHECK_FALSE(r.ok);
    CHECK_THAT(r.error, Contains("out of bounds") && Contains("scratch buffer of 1 elements"));
  }
  SECTION("a non-root input of broadcast is empty") {
    std::vector<maker> m(2);
    m[0].copy(in(0, 1), out(0, 1)).step();
    m[1].copy(in(0, 1), out(0, 1)).step();
    const simulation_result r = sim(m, ranks(collective::broadcast, 2, 1));
    CHECK_FALSE(r.ok);
    CHECK_THAT(r.error, Contains("out of bounds") && Contains("rank 1") &&
                            Contains("input buffer of 0 elements"));
  }
  SECTION("a non-root output of reduce is empty") {
    std::vector<maker> m(2);
    m[0].reduce(1, in(0, 1), out(0, 1)).step();
    m[1].copy(in(0, 1), out(0, 1)).send(0, in(0, 1)).step();
    const simulation_result r = sim(m, ranks(collective::reduce, 2, 1));
    CHECK_FALSE(r.ok);
    CHECK_THAT(r.error, Contains("out of bounds") && Contains("output buffer of 0 elements"));
  }
}

TEST_CASE("a receive of another size than the send is a size mismatch", "[schedule][simulate]") {
  std::vector<maker> m(2);
  m[0].copy(in(0, 2), out(0, 2)).send(1, in(0, 2)).step();
  m[1].recv(0, out(0, 1)).step();
  const simulation_result r = sim(m, ranks(collective::broadcast, 2, 2));
  CHECK_FALSE(r.ok);
  CHECK_THAT(r.error,
             Contains("size mismatch") && Contains("sends 2 elements") && Contains("expects 1"));
}

TEST_CASE("equal keys match in FIFO order", "[schedule][simulate]") {
  // Two messages on one channel, listed in opposite orders on the two sides.
  std::vector<maker> m(2);
  m[0].copy(in(0, 3), out(0, 3)).send(1, in(0, 1)).send(1, in(1, 2)).step();
  m[1].recv(0, out(1, 2)).recv(0, out(0, 1)).step();
  const simulation_result r = sim(m, ranks(collective::broadcast, 2, 3));
  CHECK_FALSE(r.ok);
  CHECK_THAT(r.error, Contains("size mismatch") && Contains("message #0"));
}

TEST_CASE("reading memory nobody wrote is caught", "[schedule][simulate]") {
  std::vector<maker> m(1);
  m[0].copy(scr(0, 2), out(0, 2)).step().scratch(2);
  const simulation_result r = sim(m, ranks(collective::all_reduce, 1, 2));
  CHECK_FALSE(r.ok);
  CHECK_THAT(r.error, Contains("reads uninitialised scratch element 0"));
}

TEST_CASE("writing the input buffer is rejected", "[schedule][simulate]") {
  std::vector<maker> m(1);
  m[0].copy(out(0, 1), in(0, 1)).step();
  const simulation_result r = sim(m, ranks(collective::all_reduce, 1, 1));
  CHECK_FALSE(r.ok);
  CHECK_THAT(r.error, Contains("writes to the input buffer"));
}

TEST_CASE("peers must be other ranks", "[schedule][simulate]") {
  std::vector<maker> m(2);
  m[0].send(0, in(0, 1)).step();
  CHECK_THAT(sim(m, ranks(collective::all_reduce, 2, 1)).error,
             Contains("names its own rank as peer"));
  m[0] = maker{};
  m[0].send(7, in(0, 1)).step();
  CHECK_THAT(sim(m, ranks(collective::all_reduce, 2, 1)).error,
             Contains("names peer 7, out of range"));
}

TEST_CASE("a schedule correct out of place can be a hazard in place", "[schedule][simulate]") {
  // Sends the input while adding into the output in the same step: fine when they are
  // different memory, a race when the call is in place.
  std::vector<maker> m(2);
  for (int r = 0; r < 2; ++r) {
    m[static_cast<std::size_t>(r)].send(1 - r, in(0, 3)).reduce(1 - r, in(0, 3), out(0, 3)).step();
  }
  const auto ps = ranks(collective::all_reduce, 2, 3);
  const simulation_result a = sim(m, ps, false);
  INFO(a.error);
  CHECK(a.ok);
  const simulation_result b = sim(m, ps, true);
  CHECK_FALSE(b.ok);
  CHECK_THAT(b.error, Contains("hazard"));
}

TEST_CASE("reading the input after the aliased output changed is caught", "[schedule][simulate]") {
  // One rank, two elements: parks element 0 in out[1] before reading input element 1.
  // Out of place this ends right; in place input[1] is gone by then.
  std::vector<maker> m(1);
  m[0].copy(in(0, 1), out(1, 1))
      .step()
      .copy(in(1, 1), out(0, 1))
      .step()
      .copy(out(1, 1), scr(0, 1))
      .copy(out(0, 1), scr(1, 1))
      .step()
      .copy(scr(0, 2), out(0, 2))
      .step()
      .scratch(2);
  const auto ps = ranks(collective::all_reduce, 1, 2);
  const simulation_result a = sim(m, ps, false);
  INFO(a.error);
  CHECK(a.ok);
  const simulation_result b = sim(m, ps, true);
  CHECK_FALSE(b.ok);
  CHECK_THAT(b.error, Contains("reads input element 1 after the aliased output element was "
                               "overwritten"));
}

TEST_CASE("an in-place copy onto itself is a no-op", "[schedule][simulate]") {
  // all_gather in place: the input is the output's block r, so the copy does nothing and
  // must not count as a hazard with the send of the same memory.
  params p;
  p.kind = collective::all_gather;
  p.size = 2;
  const std::vector<std::size_t> counts{2, 2};
  p.counts = counts;
  const auto ps = params_for_all_ranks(p);
  std::vector<maker> m(2);
  for (int r = 0; r < 2; ++r) {
    const std::size_t own = static_cast<std::size_t>(r) * 2, other = 2 - own;
    m[static_cast<std::size_t>(r)]
        .send(1 - r, in(0, 2))
        .recv(1 - r, out(other, 2))
        .copy(in(0, 2), out(own, 2))
        .step();
  }
  for (bool in_place : {false, true}) {
    const simulation_result r = sim(m, ps, in_place);
    INFO(r.error);
    CHECK(r.ok);
  }
}

TEST_CASE("a barrier must not let a rank leave before all entered", "[schedule][simulate]") {
  std::vector<maker> m(2);
  m[0].send(1, out(0, 0)).step();
  m[1].recv(0, out(0, 0)).step();
  const simulation_result r = sim(m, ranks(collective::barrier, 2, 0));
  CHECK_FALSE(r.ok);
  CHECK_THAT(r.error, Contains("barrier broken") && Contains("rank 0") && Contains("{1}"));
  // With the reply, both know.
  m[0].recv(1, out(0, 0)).step();
  m[1].send(0, out(0, 0)).step();
  const simulation_result ok = sim(m, ranks(collective::barrier, 2, 0));
  INFO(ok.error);
  CHECK(ok.ok);
}

TEST_CASE("inconsistent parameters are reported, not simulated", "[schedule][simulate]") {
  std::vector<maker> m(2);
  auto ps = ranks(collective::all_reduce, 2, 1);
  ps[1].count = 2;
  CHECK_THAT(sim(m, ps).error, Contains("disagree with rank 0"));
  ps = ranks(collective::all_reduce, 2, 1);
  CHECK_THAT(sim(std::vector<maker>(1), ps).error, Contains("schedules for 2 ranks"));
  params p;
  p.kind = collective::all_to_all;
  p.size = 2;
  const std::vector<std::size_t> one{1, 1}, two{2, 2}, offs{0, 2};
  p.send_counts = one;
  p.recv_counts = two;
  p.send_offsets = offs;
  p.recv_offsets = offs;
  CHECK_THAT(sim(m, params_for_all_ranks(p)).error, Contains("all_to_all params inconsistent"));
}

TEST_CASE("symbolic values need at most 64 ranks; structure checks do not",
          "[schedule][simulate]") {
  params p;
  p.kind = collective::all_reduce;
  p.size = 65;
  p.count = 130;
  const simulation_result r = simulate(algorithm::ring, p);
  CHECK_FALSE(r.ok);
  CHECK_THAT(r.error, Contains("at most 64 ranks"));
  simulate_options structure;
  structure.check_values = false;
  p.size = 100;
  p.count = 1000;
  const simulation_result s = simulate(algorithm::ring, p, structure);
  INFO(s.error);
  CHECK(s.ok);
  CHECK(s.max_sent_elements == 2 * 99 * 10);
}

TEST_CASE("build errors surface as simulation errors", "[schedule][simulate]") {
  params p;
  p.kind = collective::all_to_all;
  p.size = 4;
  const simulation_result r = simulate(algorithm::ring, p);
  CHECK_FALSE(r.ok);
  CHECK_THAT(r.error, Contains("build failed for rank 0") && Contains("does not support"));
}

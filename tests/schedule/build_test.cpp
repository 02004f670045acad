/// \file
/// `build()`: argument checking, determinism, and the facts about generated schedules
/// that the executor relies on (no empty data transfers, tags, untouched non-root buffers,
/// scratch sizes).
#include "sweep.hpp"

#include <cstddef>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

using namespace chorus::schedule;
using Catch::Matchers::Contains;

std::string build_error(algorithm a, const params& p) {
  try {
    (void)build(a, p);
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "no exception";
}

}  // namespace

TEST_CASE("build rejects unsupported pairs and inconsistent params", "[schedule][build]") {
  params p;
  p.kind = collective::all_to_all;
  p.size = 4;
  CHECK_THAT(build_error(algorithm::tree, p),
             Contains("algorithm 'tree' does not support collective 'all_to_all'"));
  for (algorithm a : {algorithm::ring, algorithm::tree, algorithm::double_binary_tree,
                      algorithm::recursive_doubling, algorithm::halving_doubling, algorithm::direct,
                      algorithm::hierarchical}) {
    for (collective c : sched_test::all_collectives) {
      p.kind = c;
      if (!supports(a, c)) {
        CHECK_THROWS_AS(build(a, p), std::invalid_argument);
      }
    }
  }
  p.kind = collective::all_reduce;
  p.rank = 4;
  CHECK_THAT(build_error(algorithm::ring, p), Contains("rank 4 is out of range for 4 ranks"));
  p.rank = -1;
  CHECK_THAT(build_error(algorithm::ring, p), Contains("rank -1 is out of range"));
  p.rank = 0;
  p.root = 9;
  p.kind = collective::broadcast;
  CHECK_THAT(build_error(algorithm::tree, p), Contains("root 9 is out of range"));
  p.root = 0;
  p.size = 0;
  CHECK_THAT(build_error(algorithm::ring, p), Contains("at least 1"));
  p.size = 4;
  p.kind = collective::gather;
  const std::vector<std::size_t> three{1, 2, 3};
  p.counts = three;
  CHECK_THAT(build_error(algorithm::tree, p),
             Contains("gather needs one count per rank (4), got 3"));
  p.kind = collective::all_to_all;
  CHECK_THAT(build_error(algorithm::direct, p), Contains("one entry per rank"));
  const std::vector<std::size_t> c4{1, 1, 1, 1}, c4b{2, 1, 1, 1}, o4{0, 1, 2, 3};
  p.send_counts = c4;
  p.recv_counts = c4b;
  p.send_offsets = o4;
  p.recv_offsets = o4;
  CHECK_THAT(build_error(algorithm::direct, p),
             Contains("sends 1 elements to itself but receives 2"));
}

TEST_CASE("build rejects a hosts list that does not fit the ranks", "[schedule][build]") {
  params p;
  p.kind = collective::all_reduce;
  p.size = 4;
  p.count = 8;
  const std::vector<int> three{0, 0, 1}, negative{0, 0, -1, 1}, fine{0, 0, 1, 1};
  p.hosts = three;
  CHECK_THAT(build_error(algorithm::hierarchical, p),
             Contains("hosts needs one host per rank (4), got 3"));
  CHECK_THAT(build_error(algorithm::ring, p), Contains("hosts needs one host per rank (4), got 3"));
  p.hosts = negative;
  CHECK_THAT(build_error(algorithm::hierarchical, p),
             Contains("the host of rank 2 is -1; hosts are numbered from 0"));
  p.hosts = fine;
  CHECK(build_error(algorithm::hierarchical, p) == "no exception");
  p.hosts = {};
  CHECK(build_error(algorithm::hierarchical, p) == "no exception");
}

TEST_CASE("build is deterministic", "[schedule][build]") {
  for (algorithm a :
       {algorithm::ring, algorithm::tree, algorithm::double_binary_tree,
        algorithm::recursive_doubling, algorithm::halving_doubling, algorithm::direct}) {
    for (collective c : sched_test::all_collectives) {
      if (!supports(a, c) || c == collective::all_to_all) continue;
      params p;
      p.kind = c;
      p.size = 11;
      p.root = 3;
      p.count = 50;
      p.chunk_count = 4;
      const std::vector<std::size_t> counts(11, 4);
      if (sched_test::uses_counts(c)) p.counts = counts;
      for (p.rank = 0; p.rank < p.size; ++p.rank) {
        const schedule x = build(a, p), y = build(a, p);
        CHECK(x.ops == y.ops);
        CHECK(x.step_begin == y.step_begin);
        CHECK(x.scratch_count == y.scratch_count);
      }
    }
  }
}

TEST_CASE("generated schedules keep the promises the executor relies on", "[schedule][build]") {
  // Over a sample of the sweep: no empty data transfer (only barrier tokens are empty), no
  // empty step, tags 0 (the double binary tree's second tree: 1), copies only between equal
  // counts, and non-root inputs / outputs never named where the layout says they may be
  // empty.
  for (algorithm a :
       {algorithm::ring, algorithm::tree, algorithm::double_binary_tree,
        algorithm::recursive_doubling, algorithm::halving_doubling, algorithm::direct}) {
    for (collective c : sched_test::all_collectives) {
      if (!supports(a, c)) continue;
      for (int size : {1, 2, 3, 5, 8, 13}) {
        for (const sched_test::call& x : sched_test::sweep_cases(a, c, size)) {
          if (x.in_place || c == collective::all_to_all) continue;
          params p;
          p.kind = c;
          p.size = size;
          p.root = x.root;
          p.count = x.count;
          p.chunk_count = x.chunk;
          if (sched_test::uses_counts(c)) p.counts = x.counts;
          for (p.rank = 0; p.rank < size; ++p.rank) {
            const schedule s = build(a, p);
            // One assertion per broken promise (not per op), naming the case.
            auto expect = [&](bool holds, const char* promise) {
              if (!holds) FAIL_CHECK(x.describe() << " rank " << p.rank << ": " << promise);
            };
            expect(s.step_begin.size() == s.steps() + 1, "step_begin has steps() + 1 entries");
            for (std::size_t k = 0; k < s.steps(); ++k) expect(!s.step(k).empty(), "no empty step");
            const bool root = p.rank == p.root;
            for (const op& o : s.ops) {
              const bool message = o.code != op_code::copy;
              const region& data = o.code == op_code::send ? o.src : o.dst;
              if (c != collective::barrier || !message) {
                expect(data.count > 0, "no empty data transfer");
              } else {
                expect(data.count == 0, "barrier tokens are empty");
              }
              expect(o.tag == 0 || (a == algorithm::double_binary_tree && o.tag == 1),
                     "tags are 0 (1 for the second double tree)");
              if (o.code == op_code::copy || o.code == op_code::recv_reduce) {
                expect(o.src.count == o.dst.count, "source and destination of equal size");
              }
              const bool names_input = o.src.buf == buffer::input && o.code != op_code::recv;
              const bool names_output = (o.code != op_code::send && o.dst.buf == buffer::output) ||
                                        (o.code != op_code::recv && o.src.buf == buffer::output);
              if (!root && (c == collective::broadcast || c == collective::scatter)) {
                expect(!names_input, "non-root inputs are never touched");
              }
              if (!root && (c == collective::reduce || c == collective::gather)) {
                expect(!names_output, "non-root outputs are never touched");
              }
            }
          }
        }
      }
    }
  }
  SUCCEED("all promises checked");
}

TEST_CASE("scratch stays small where the algorithm allows", "[schedule][build]") {
  params p;
  p.size = 8;
  p.count = 1000;
  p.chunk_count = 10;
  // Chain reduce: two pieces in flight per rank.
  p.kind = collective::reduce;
  for (p.rank = 0; p.rank < p.size; ++p.rank) {
    CHECK(build(algorithm::ring, p).scratch_count <= 20);
  }
  // Ring and halving-doubling all_reduce accumulate in the output.
  p.kind = collective::all_reduce;
  for (p.rank = 0; p.rank < p.size; ++p.rank) {
    CHECK(build(algorithm::ring, p).scratch_count == 0);
    CHECK(build(algorithm::halving_doubling, p).scratch_count == 0);
    CHECK(build(algorithm::tree, p).scratch_count == 0);
    CHECK(build(algorithm::double_binary_tree, p).scratch_count == 0);
  }
  // Ring reduce_scatter: two slots of the largest block.
  p.kind = collective::reduce_scatter;
  const std::vector<std::size_t> counts{5, 9, 2, 0, 7, 7, 1, 3};
  p.counts = counts;
  for (p.rank = 0; p.rank < p.size; ++p.rank) {
    CHECK(build(algorithm::ring, p).scratch_count == 18);
  }
  // Tree reduce: a window of pieces, not the vector.
  p.kind = collective::reduce;
  p.size = 64;
  p.counts = {};
  for (p.rank = 0; p.rank < p.size; ++p.rank) {
    CHECK(build(algorithm::tree, p).scratch_count <= 3 * 10);
  }
}

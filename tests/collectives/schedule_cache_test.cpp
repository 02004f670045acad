// The schedules kept between calls (dispatch/schedule_cache.hpp): a call of a shape seen
// lately gets the schedule built for it, a call of any other shape gets its own -- every
// field of the shape counts -- and large schedules are not kept. Then calls whose shapes
// alternate on one communicator, each checked against the serial reference.
#include "../support/checks.hpp"

#include <chorus/dispatch/schedule_cache.hpp>

#include <functional>
#include <memory>
#include <string>
#include <vector>

using namespace harness;
namespace sc = chorus::schedule;

namespace {

sc::params all_reduce_shape(int rank, int size, std::size_t count) {
  sc::params p;
  p.kind = sc::collective::all_reduce;
  p.rank = rank;
  p.size = size;
  p.count = count;
  return p;
}

bool same_schedule(const sc::schedule& a, const sc::schedule& b) {
  return a.ops == b.ops && a.step_begin == b.step_begin && a.scratch_count == b.scratch_count;
}

}  // namespace

TEST_CASE("schedule cache: the same shape gets the kept schedule, any other shape its own") {
  chorus::detail::schedule_cache cache;
  const sc::params base = all_reduce_shape(1, 4, 1000);
  const auto first = cache.get(sc::algorithm::ring, base);
  CHECK(same_schedule(*first, sc::build(sc::algorithm::ring, base)));
  CHECK(cache.get(sc::algorithm::ring, base) == first);

  const std::vector<std::size_t> counts{3, 5, 7, 9};
  const std::vector<std::size_t> other_counts{3, 5, 8, 9};
  const std::vector<int> hosts{0, 0, 1, 1};
  const std::vector<int> other_hosts{0, 1, 0, 1};
  struct variant {
    std::string what;
    sc::algorithm algo;
    std::function<void(sc::params&)> change;
  };
  const std::vector<variant> variants{
      {"algorithm", sc::algorithm::tree, [](sc::params&) {}},
      {"count", sc::algorithm::ring, [](sc::params& p) { p.count = 1001; }},
      {"rank", sc::algorithm::ring, [](sc::params& p) { p.rank = 2; }},
      {"size", sc::algorithm::ring, [](sc::params& p) { p.size = 5; }},
      {"piece", sc::algorithm::ring, [](sc::params& p) { p.chunk_count = 16; }},
      {"hosts", sc::algorithm::hierarchical, [&](sc::params& p) { p.hosts = hosts; }},
      {"other hosts", sc::algorithm::hierarchical, [&](sc::params& p) { p.hosts = other_hosts; }},
  };
  std::vector<std::shared_ptr<const sc::schedule>> got{first};
  for (const variant& v : variants) {
    INFO("changed: " << v.what);
    sc::params p = base;
    v.change(p);
    const auto s = cache.get(v.algo, p);
    CHECK(same_schedule(*s, sc::build(v.algo, p)));
    CHECK(cache.get(v.algo, p) == s);
    for (const auto& earlier : got) CHECK(s != earlier);
    got.push_back(s);
  }

  SECTION("counts of the same length but other values") {
    sc::params p = base;
    p.kind = sc::collective::all_gather;
    p.counts = counts;
    const auto s = cache.get(sc::algorithm::ring, p);
    sc::params q = p;
    q.counts = other_counts;
    const auto t = cache.get(sc::algorithm::ring, q);
    CHECK(s != t);
    CHECK(same_schedule(*t, sc::build(sc::algorithm::ring, q)));
    CHECK(!same_schedule(*s, *t));
  }
  SECTION("the root") {
    sc::params p = base;
    p.kind = sc::collective::broadcast;
    const auto s = cache.get(sc::algorithm::tree, p);
    p.root = 3;
    const auto t = cache.get(sc::algorithm::tree, p);
    CHECK(s != t);
    CHECK(same_schedule(*t, sc::build(sc::algorithm::tree, p)));
  }
}

TEST_CASE("schedule cache: a few shapes are kept, oldest out first; large schedules never") {
  chorus::detail::schedule_cache cache;
  std::vector<std::shared_ptr<const sc::schedule>> kept;
  for (std::size_t i = 0; i < chorus::detail::schedule_cache::entries; ++i) {
    kept.push_back(cache.get(sc::algorithm::ring, all_reduce_shape(0, 4, 100 + i)));
  }
  for (std::size_t i = 0; i < kept.size(); ++i) {
    CHECK(cache.get(sc::algorithm::ring, all_reduce_shape(0, 4, 100 + i)) == kept[i]);
  }
  // One more shape replaces the oldest; the rest stay.
  cache.get(sc::algorithm::ring, all_reduce_shape(0, 4, 99));
  CHECK(cache.get(sc::algorithm::ring, all_reduce_shape(0, 4, 100)) != kept[0]);
  CHECK(cache.get(sc::algorithm::ring, all_reduce_shape(0, 4, 102)) == kept[2]);

  // A ring all-reduce of 8 ranks cut into one-element pieces: thousands of ops.
  sc::params large = all_reduce_shape(0, 8, 4096);
  large.chunk_count = 1;
  const auto a = cache.get(sc::algorithm::ring, large);
  REQUIRE(a->ops.size() > chorus::detail::schedule_cache::max_ops);
  CHECK(cache.get(sc::algorithm::ring, large) != a);
}

TEST_CASE("schedule cache: calls of alternating shapes on one communicator stay exact") {
  failures f;
  run_ranks(4, [&](chorus::inproc_communicator& comm) {
    const std::size_t shapes[] = {1, 5, 1000, 5, 1, 1000, 33};
    for (int round = 0; round < 3; ++round) {
      for (const auto& a : dynamic_algos(sc::collective::all_reduce)) {
        for (std::size_t n : shapes) {
          check_all_reduce<std::int32_t, chorus::plus>(comm, f, a, n, round % 2 == 1);
        }
      }
    }
  });
  INFO(f.report());
  CHECK(f.count() == 0);
}

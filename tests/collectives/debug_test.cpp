// CHORUS_DEBUG's reports (dispatch/debug.hpp): one per collective and rank, naming what ran,
// through a sink a program replaces; none when off.
#include "../support/harness.hpp"

#include <chorus/dispatch/debug.hpp>

#include <algorithm>
#include <mutex>
#include <span>
#include <vector>

TEST_CASE("debug reports: one per collective and rank, naming what ran; none when off") {
  std::vector<chorus::call_report> got;
  std::mutex m;  // chorus serialises the sink; the lock only guards the test's own reads
  chorus::set_debug_sink([&](const chorus::call_report& r) {
    std::lock_guard lock(m);
    got.push_back(r);
  });
  chorus::set_debug_level(chorus::debug_level::info);
  constexpr int ranks = 3;
  chorus::inproc::run(ranks, [&](chorus::inproc_communicator& comm) {
    std::vector<float> v(1000, 1.0f);
    chorus::all_reduce(comm, std::span<float>(v), chorus::plus{}, chorus::algo::ring{});
    chorus::all_reduce(comm, std::span<float>(v), chorus::plus{});  // the tuner picks
    std::vector<float> gathered(ranks * 10);
    chorus::all_gather(comm, std::span<const float>(v.data(), 10), std::span<float>(gathered));
    chorus::iall_reduce(comm, std::span<float>(v), chorus::plus{}).wait();  // reported posted
  });
  chorus::set_debug_level(chorus::debug_level::off);
  chorus::inproc::run(2, [&](chorus::inproc_communicator& comm) {
    std::vector<float> v(10, 1.0f);
    chorus::all_reduce(comm, std::span<float>(v), chorus::plus{});
  });
  chorus::set_debug_sink({});
  CHECK(chorus::get_debug_level() == chorus::debug_level::off);

  REQUIRE(got.size() == 4 * ranks);  // nothing from the run while off
  for (int r = 0; r < ranks; ++r) {
    std::vector<chorus::call_report> mine;
    std::copy_if(got.begin(), got.end(), std::back_inserter(mine),
                 [&](const chorus::call_report& x) { return x.rank == r; });
    REQUIRE(mine.size() == 4);
    for (std::uint32_t k = 0; k < 3; ++k) {
      INFO("rank " << r << " call " << k + 1 << ": " << chorus::to_string(mine[k]));
      CHECK(mine[k].sequence == k + 1);
      CHECK(mine[k].size == ranks);
      CHECK(mine[k].transport == "inproc");
      CHECK(mine[k].type == chorus::dtype::float32);
      CHECK(mine[k].seconds > 0);
      CHECK(mine[k].sent_bytes > 0);
      CHECK(mine[k].received_bytes > 0);
      CHECK(!mine[k].posted);
    }
    CHECK(mine[0].api == "all_reduce");
    CHECK(mine[0].algorithm == chorus::schedule::algorithm::ring);
    CHECK(!mine[0].tuned);
    CHECK(mine[0].count == 1000);
    CHECK(mine[0].bytes == 4000);
    // a ring all-reduce sends 2(P-1) blocks of about count/P elements
    CHECK(mine[0].sent_bytes >= 2 * (ranks - 1) * (4000 / ranks) - 16);
    CHECK(mine[1].tuned);
    CHECK(mine[2].api == "all_gather");
    CHECK(mine[2].count == ranks * 10);
    CHECK(mine[3].posted);
    CHECK(mine[3].sequence == 4);
    CHECK(mine[3].api == "all_reduce");
    CHECK(chorus::to_string(mine[3]).find(", posted") != std::string::npos);
  }
  const std::string line = chorus::to_string(got.front());
  CHECK(line.find("all_reduce #1 on inproc: ring, float32 x 1000 (3.9 KiB)") != std::string::npos);
}

// all_gather and all_gather_v: every supported algorithm x type x rank count, equal blocks
// and v-counts with empty blocks, in and out of place.
#include "../support/checks.hpp"

#include <algorithm>
#include <numeric>

using namespace harness;
using chorus::schedule::collective;

TEST_CASE("all_gather: every algorithm and type; equal and v-counts") {
  for (int ranks : rank_counts) {
    failures f;
    run_ranks(ranks, [&](chorus::inproc_communicator& comm) {
      for (const auto& a : dynamic_algos(collective::all_gather)) {
        for_each_type<all_types>([&](auto t) {
          using T = decltype(t);
          int c = 0;
          for (std::size_t block :
               {std::size_t{0}, std::size_t{1}, std::size_t{7}, std::size_t{33}}) {
            for (bool uneven : {false, true}) {
              check_all_gather<T>(comm, f, a, block, uneven, c++ % 3 == 1);
            }
          }
        });
      }
    });
    INFO("ranks = " << ranks << "\n" << f.report());
    REQUIRE(f.count() == 0);
  }
}

TEST_CASE("all_gather: (2^20+3)-element output, every algorithm") {
  for (int ranks : {1, 2, 3, 5, 8, 16}) {
    failures f;
    run_ranks(ranks, [&](chorus::inproc_communicator& comm) {
      for_each_algo<collective::all_gather>([&](auto a) {
        const std::size_t block = large_count / static_cast<std::size_t>(ranks) + 1;
        check_all_gather<float>(comm, f, a, block, false, false);
        check_all_gather<std::uint16_t>(comm, f, a, block, true, true);
      });
    });
    INFO("ranks = " << ranks << "\n" << f.report());
    REQUIRE(f.count() == 0);
  }
}

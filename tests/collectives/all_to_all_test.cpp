// all_to_all and all_to_all_v: every type x rank count, equal and uneven blocks.
#include "../support/checks.hpp"

#include <numeric>

using namespace harness;
using chorus::schedule::collective;

TEST_CASE("all_to_all: every type, equal and uneven blocks") {
  for (int ranks : rank_counts) {
    failures f;
    run_ranks(ranks, [&](chorus::inproc_communicator& comm) {
      for_each_algo<collective::all_to_all>([&](auto a) {
        for_each_type<all_types>([&](auto t) {
          using T = decltype(t);
          for (std::size_t base : {std::size_t{0}, std::size_t{1}, std::size_t{7}}) {
            check_all_to_all<T>(comm, f, a, base, false);
            check_all_to_all<T>(comm, f, a, base, true);
          }
        });
      });
    });
    INFO("ranks = " << ranks << "\n" << f.report());
    REQUIRE(f.count() == 0);
  }
}

TEST_CASE("all_to_all: (2^20+3)-element buffers") {
  for (int ranks : {1, 3, 8}) {
    failures f;
    run_ranks(ranks, [&](chorus::inproc_communicator& comm) {
      for_each_algo<collective::all_to_all>([&](auto a) {
        check_all_to_all<float>(comm, f, a,
                                large_count / static_cast<std::size_t>(ranks * ranks) + 1, false);
        check_all_to_all<double>(comm, f, a,
                                 large_count / static_cast<std::size_t>(ranks * ranks) + 1, true);
      });
    });
    INFO("ranks = " << ranks << "\n" << f.report());
    REQUIRE(f.count() == 0);
  }
}

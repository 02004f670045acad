// gather and scatter: every supported algorithm x type x rank count x root, in and out of
// place; off-root buffers are empty.
#include "../support/checks.hpp"

using namespace harness;
using chorus::schedule::collective;

TEST_CASE("gather and scatter: every algorithm, type and root") {
  for (int ranks : rank_counts) {
    failures f;
    run_ranks(ranks, [&](chorus::inproc_communicator& comm) {
      for (const auto& a : dynamic_algos(collective::gather)) {
        int t_index = 0;
        for_each_type<all_types>([&](auto t) {
          using T = decltype(t);
          int c = 0;
          for (std::size_t block : {std::size_t{0}, std::size_t{1}, std::size_t{7}}) {
            const int root = (t_index + c) % ranks;
            check_gather<T>(comm, f, a, block, root, c % 2 == 0);
            check_scatter<T>(comm, f, a, block, root, c % 2 == 1);
            ++c;
          }
          ++t_index;
        });
        for (int root = 0; root < ranks; ++root) {
          check_gather<std::int32_t>(comm, f, a, 5, root, root % 2 == 1);
          check_scatter<std::int32_t>(comm, f, a, 5, root, root % 2 == 0);
        }
      }
    });
    INFO("ranks = " << ranks << "\n" << f.report());
    REQUIRE(f.count() == 0);
  }
}

TEST_CASE("gather and scatter: (2^20+3)-element buffers, every algorithm") {
  for (int ranks : {1, 2, 3, 5, 8}) {
    failures f;
    run_ranks(ranks, [&](chorus::inproc_communicator& comm) {
      for_each_algo<collective::gather>([&](auto a) {
        const std::size_t block = large_count / static_cast<std::size_t>(ranks) + 1;
        check_gather<float>(comm, f, a, block, ranks - 1, false);
        check_scatter<float>(comm, f, a, block, 0, true);
      });
    });
    INFO("ranks = " << ranks << "\n" << f.report());
    REQUIRE(f.count() == 0);
  }
}

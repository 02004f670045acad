// broadcast: every supported algorithm x type x rank count x root, in and out of place;
// non-root inputs are empty.
#include "../support/checks.hpp"

using namespace harness;
using chorus::schedule::collective;

TEST_CASE("broadcast: every algorithm, type and root") {
  for (int ranks : rank_counts) {
    failures f;
    run_ranks(ranks, [&](chorus::inproc_communicator& comm) {
      const auto counts = small_counts(ranks);
      for (const auto& a : dynamic_algos(collective::broadcast)) {
        int t_index = 0;
        for_each_type<all_types>([&](auto t) {
          using T = decltype(t);
          for (std::size_t c = 0; c < counts.size(); ++c) {
            const int root = static_cast<int>((t_index * 3 + c) % static_cast<std::size_t>(ranks));
            check_broadcast<T>(comm, f, a, counts[c], root, (t_index + c) % 2 == 0);
          }
          ++t_index;
        });
        for (int root = 0; root < ranks; ++root)
          check_broadcast<double>(comm, f, a, 19, root, false);
      }
    });
    INFO("ranks = " << ranks << "\n" << f.report());
    REQUIRE(f.count() == 0);
  }
}

TEST_CASE("broadcast: 2^20+3 elements, every algorithm") {
  for (int ranks : {1, 2, 3, 5, 8, 16}) {
    failures f;
    run_ranks(ranks, [&](chorus::inproc_communicator& comm) {
      for_each_algo<collective::broadcast>([&](auto a) {
        check_broadcast<float>(comm, f, a, large_count, ranks / 2, false);
        check_broadcast<std::int8_t>(comm, f, a, large_count, ranks - 1, true);
      });
    });
    INFO("ranks = " << ranks << "\n" << f.report());
    REQUIRE(f.count() == 0);
  }
}

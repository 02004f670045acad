// reduce: every supported algorithm x type x op x rank count x root, in and out of place;
// non-root outputs may be empty and must not be touched.
#include "../support/checks.hpp"

#include <utility>

using namespace harness;
using chorus::schedule::collective;

TEST_CASE("reduce: every algorithm, type, op and root") {
  for (int ranks : rank_counts) {
    failures f;
    run_ranks(ranks, [&](chorus::inproc_communicator& comm) {
      const auto counts = small_counts(ranks);
      for (const auto& a : dynamic_algos(collective::reduce)) {
        for_each_type<all_types>([&](auto t) {
          using T = decltype(t);
          for_each_op<T>([&](auto op, int op_index) {
            for (std::size_t c = 0; c < counts.size(); ++c) {
              const int root =
                  static_cast<int>((op_index * 5 + c * 3) % static_cast<std::size_t>(ranks));
              check_reduce<T, decltype(op)>(comm, f, a, counts[c], root, (op_index + c) % 2 == 1);
            }
          });
        });
      }
    });
    INFO("ranks = " << ranks << "\n" << f.report());
    REQUIRE(f.count() == 0);
  }
}

TEST_CASE("reduce: every root, every algorithm") {
  for (int ranks : {3, 7, 8}) {
    failures f;
    run_ranks(ranks, [&](chorus::inproc_communicator& comm) {
      for (const auto& a : dynamic_algos(collective::reduce)) {
        for (int root = 0; root < ranks; ++root) {
          check_reduce<std::int32_t, chorus::plus>(comm, f, a, 29, root, root % 2 == 0);
        }
      }
    });
    INFO("ranks = " << ranks << "\n" << f.report());
    REQUIRE(f.count() == 0);
  }
}

TEST_CASE("reduce: 2^20+3 elements, every algorithm") {
  for (int ranks : {1, 2, 3, 5, 8, 16}) {
    failures f;
    run_ranks(ranks, [&](chorus::inproc_communicator& comm) {
      for_each_algo<collective::reduce>([&](auto a) {
        check_reduce<float, chorus::plus>(comm, f, a, large_count, ranks - 1, false);
        check_reduce<chorus::half, chorus::maximum>(comm, f, a, large_count, 0, true);
      });
    });
    INFO("ranks = " << ranks << "\n" << f.report());
    REQUIRE(f.count() == 0);
  }
}

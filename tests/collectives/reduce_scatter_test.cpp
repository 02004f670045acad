// reduce_scatter and reduce_scatter_v: every supported algorithm x type x op x rank count,
// equal blocks and v-counts with empty blocks, in and out of place.
#include "../support/checks.hpp"

#include <numeric>
#include <utility>

using namespace harness;
using chorus::schedule::collective;

TEST_CASE("reduce_scatter: every algorithm, type and op; equal and v-counts") {
  for (int ranks : rank_counts) {
    failures f;
    run_ranks(ranks, [&](chorus::inproc_communicator& comm) {
      for (const auto& a : dynamic_algos(collective::reduce_scatter)) {
        for_each_type<all_types>([&](auto t) {
          using T = decltype(t);
          for_each_op<T>([&](auto op, int op_index) {
            int c = 0;
            for (std::size_t block : {std::size_t{0}, std::size_t{1}, std::size_t{7}}) {
              for (bool uneven : {false, true}) {
                check_reduce_scatter<T, decltype(op)>(comm, f, a, block, uneven,
                                                      (op_index + c++) % 2 == 1);
              }
            }
          });
        });
      }
    });
    INFO("ranks = " << ranks << "\n" << f.report());
    REQUIRE(f.count() == 0);
  }
}

TEST_CASE("reduce_scatter: (2^20+3)-element blocks, every algorithm") {
  for (int ranks : {1, 2, 3, 4, 5, 7, 8}) {
    failures f;
    run_ranks(ranks, [&](chorus::inproc_communicator& comm) {
      for_each_algo<collective::reduce_scatter>([&](auto a) {
        const std::size_t block = large_count / static_cast<std::size_t>(ranks) + 1;
        check_reduce_scatter<float, chorus::plus>(comm, f, a, block, false, false);
        check_reduce_scatter<std::int32_t, chorus::average>(comm, f, a, block, true, true);
      });
    });
    INFO("ranks = " << ranks << "\n" << f.report());
    REQUIRE(f.count() == 0);
  }
}

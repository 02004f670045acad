// reduce_scatter and reduce_scatter_v: every supported algorithm x type x op x rank count,
// equal blocks and v-counts with empty blocks, in and out of place.
#include "../support/harness.hpp"

#include <numeric>
#include <utility>

using namespace harness;
using chorus::schedule::collective;

namespace {

/// Per-rank block counts: equal (`block` each) or uneven with zeros (v).
std::vector<std::size_t> block_counts(int ranks, std::size_t block, bool uneven) {
  std::vector<std::size_t> c(static_cast<std::size_t>(ranks), block);
  if (uneven) {
    for (int j = 0; j < ranks; ++j)
      c[static_cast<std::size_t>(j)] = (j % 3 == 1) ? 0 : block + static_cast<std::size_t>(j);
  }
  return c;
}

template <class T, class Op, class Algo>
void check(chorus::inproc_communicator& comm, failures& f, const Algo& a, std::size_t block,
           bool uneven, bool in_place) {
  const Op op{};
  const input_kind k = input_for<Op>();
  const int r = comm.rank();
  const auto counts = block_counts(comm.size(), block, uneven);
  const std::size_t total = std::accumulate(counts.begin(), counts.end(), std::size_t{0});
  const std::size_t mine = counts[static_cast<std::size_t>(r)];
  const std::size_t offset = std::accumulate(counts.begin(), counts.begin() + r, std::size_t{0});
  std::vector<T> in(total), out(mine, poison<T>());
  for (std::size_t i = 0; i < total; ++i) in[i] = input_value<T>(k, r, i);
  const std::string what =
      label<T, Op>(uneven ? "reduce_scatter_v" : "reduce_scatter", a, block, in_place, r);
  const reference<T, Op> full(op, k, comm.size(), total);
  auto want = [&](std::size_t i) { return full(offset + i); };
  std::span<T> result = in_place ? std::span<T>(in).subspan(offset, mine) : std::span<T>(out);
  if (uneven) {
    chorus::reduce_scatter_v(comm, std::span<const T>(in), result, counts, op, a);
  } else {
    chorus::reduce_scatter(comm, std::span<const T>(in), result, op, a);
  }
  expect_all<T>(f, what, result, want);
  if (!in_place) {
    expect_all<T>(f, what + " (input changed)", std::span<const T>(in),
                  [&](std::size_t i) { return input_value<T>(k, r, i); });
  }
}

}  // namespace

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
                check<T, decltype(op)>(comm, f, a, block, uneven, (op_index + c++) % 2 == 1);
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
        check<float, chorus::plus>(comm, f, a, block, false, false);
        check<std::int32_t, chorus::average>(comm, f, a, block, true, true);
      });
    });
    INFO("ranks = " << ranks << "\n" << f.report());
    REQUIRE(f.count() == 0);
  }
}

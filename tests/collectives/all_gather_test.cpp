// all_gather and all_gather_v: every supported algorithm x type x rank count, equal blocks
// and v-counts with empty blocks, in and out of place.
#include "../support/harness.hpp"

#include <algorithm>
#include <numeric>

using namespace harness;
using chorus::schedule::collective;

namespace {

template <class T, class Algo>
void check(chorus::inproc_communicator& comm, failures& f, const Algo& a, std::size_t block,
           bool uneven, bool in_place) {
  const int p = comm.size();
  const int r = comm.rank();
  std::vector<std::size_t> counts(static_cast<std::size_t>(p), block);
  if (uneven) {
    for (int j = 0; j < p; ++j)
      counts[static_cast<std::size_t>(j)] =
          (j % 3 == 2) ? 0 : block + static_cast<std::size_t>(2 * j);
  }
  std::vector<std::size_t> offsets(counts.size());
  std::exclusive_scan(counts.begin(), counts.end(), offsets.begin(), std::size_t{0});
  const std::size_t total = offsets.back() + counts.back();
  const std::size_t mine = counts[static_cast<std::size_t>(r)];
  const std::size_t offset = offsets[static_cast<std::size_t>(r)];
  std::vector<T> out(total, poison<T>());
  std::vector<T> in(mine);
  for (std::size_t i = 0; i < mine; ++i) in[i] = input_value<T>(input_kind::bits, r, i);
  std::span<const T> source = in;
  if (in_place) {
    for (std::size_t i = 0; i < mine; ++i) out[offset + i] = in[i];
    source = std::span<const T>(out).subspan(offset, mine);
  }
  if (uneven) {
    chorus::all_gather_v(comm, source, out, counts, a);
  } else {
    chorus::all_gather(comm, source, out, a);
  }
  const std::string what =
      label<T, chorus::plus>(uneven ? "all_gather_v" : "all_gather", a, block, in_place, r);
  expect_all<T>(f, what, std::span<const T>(out), [&](std::size_t i) {
    // the last block starting at or before i is the non-empty block that holds i
    const auto owner = static_cast<std::size_t>(
        std::upper_bound(offsets.begin(), offsets.end(), i) - offsets.begin() - 1);
    return input_value<T>(input_kind::bits, static_cast<int>(owner), i - offsets[owner]);
  });
}

}  // namespace

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
              check<T>(comm, f, a, block, uneven, c++ % 3 == 1);
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
        check<float>(comm, f, a, block, false, false);
        check<std::uint16_t>(comm, f, a, block, true, true);
      });
    });
    INFO("ranks = " << ranks << "\n" << f.report());
    REQUIRE(f.count() == 0);
  }
}

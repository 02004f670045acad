// Partition geometries: exact cover, where padding may be, bounds on straddling tensors and
// on the whole-tensor load, compile-time evaluation, bucket layouts, and the paper's memory
// numbers.
#include <chorus/zero/zero.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <array>
#include <cmath>
#include <numeric>
#include <random>
#include <string>
#include <vector>

namespace {

namespace zero = chorus::zero;

constexpr int worlds[] = {1, 2, 3, 4, 5, 7, 8, 16, 64, 1024};

/// Random size lists that always include 0, 1, N-1, N, N+1 (N = world), shuffled.
std::vector<std::vector<std::size_t>> size_lists(int world, std::mt19937_64& rng) {
  const auto n = static_cast<std::size_t>(world);
  std::vector<std::vector<std::size_t>> lists = {{}, {0}, {1}, {n}, {0, 0, 0}};
  for (int k = 0; k < 6; ++k) {
    std::vector<std::size_t> s = {0, 1, n - 1, n, n + 1};
    const std::size_t extra = rng() % 8;
    for (std::size_t j = 0; j < extra; ++j) s.push_back(rng() % (3 * n + 7));
    std::shuffle(s.begin(), s.end(), rng);
    lists.push_back(s);
  }
  return lists;
}

/// Every element of every tensor in exactly one non-padding segment; segments in tensor
/// order per rank; padding only past the end of its tensor. Returns "" or what is wrong.
std::string cover_problem(const zero::partition& p) {
  std::vector<std::vector<int>> seen(p.sizes.size());
  for (std::size_t t = 0; t < p.sizes.size(); ++t) seen[t].assign(p.sizes[t], 0);
  for (int r = 0; r < p.world(); ++r) {
    std::size_t last = 0;
    for (const auto& s : p.shards[static_cast<std::size_t>(r)]) {
      if (s.tensor >= p.sizes.size()) return "segment of a tensor that does not exist";
      if (s.tensor < last) return "segments out of tensor order on rank " + std::to_string(r);
      last = s.tensor;
      if (s.length == 0) return "empty segment";
      if (s.padding) {
        if (s.offset < p.sizes[s.tensor]) return "padding inside a tensor";
        continue;
      }
      if (s.offset + s.length > p.sizes[s.tensor]) return "segment past the end of its tensor";
      for (std::size_t i = s.offset; i < s.offset + s.length; ++i) ++seen[s.tensor][i];
    }
  }
  for (std::size_t t = 0; t < seen.size(); ++t)
    for (std::size_t i = 0; i < seen[t].size(); ++i)
      if (seen[t][i] != 1)
        return "tensor " + std::to_string(t) + " element " + std::to_string(i) + " covered " +
               std::to_string(seen[t][i]) + " times";
  return "";
}

std::size_t total(const std::vector<std::size_t>& s) {
  return std::accumulate(s.begin(), s.end(), std::size_t{0});
}

}  // namespace

TEST_CASE("flat: exact cover, equal aligned shards, tail padding only, few straddlers") {
  std::mt19937_64 rng(1);
  for (int w : worlds) {
    for (std::size_t align : {std::size_t{1}, std::size_t{4}}) {
      for (const auto& sizes : size_lists(w, rng)) {
        INFO("world " << w << " alignment " << align << " tensors " << sizes.size() << " total "
                      << total(sizes));
        const zero::partition p = zero::flat{.alignment = align}(sizes, w);
        REQUIRE(p.world() == w);
        CHECK(cover_problem(p).empty());
        const std::size_t shard = p.shard_size(0);
        std::size_t pad = 0;
        for (int r = 0; r < w; ++r) {
          CHECK(p.shard_size(r) == shard);
          pad += p.padding(r);
        }
        CHECK(shard % align == 0);
        // Padding: exactly what rounds the total up to a multiple of world x alignment.
        const std::size_t unit = static_cast<std::size_t>(w) * align;
        CHECK(pad == (unit - total(sizes) % unit) % unit);
        // Shards are contiguous ranges of the concatenation: padding only after the last
        // real element, and a tensor straddles at most world - 1 boundaries in all.
        std::size_t straddlers = 0;
        for (std::size_t t = 0; t < sizes.size(); ++t) {
          int holders = 0;
          for (const auto& sh : p.shards)
            holders += std::any_of(sh.begin(), sh.end(), [&](const zero::segment& s) {
              return s.tensor == t && !s.padding;
            });
          if (holders > 1) straddlers += static_cast<std::size_t>(holders - 1);
        }
        CHECK(straddlers <= static_cast<std::size_t>(w - 1));
        bool padding_seen = false;
        for (const auto& sh : p.shards) {
          for (const auto& s : sh) {
            if (s.padding)
              padding_seen = true;
            else
              CHECK_FALSE(padding_seen);
          }
        }
      }
    }
  }
}

TEST_CASE(
    "per_tensor: exact cover, equal pieces per tensor, padding per tensor below world x "
    "alignment") {
  std::mt19937_64 rng(2);
  for (int w : worlds) {
    for (std::size_t align : {std::size_t{1}, std::size_t{2}}) {
      for (const auto& sizes : size_lists(w, rng)) {
        INFO("world " << w << " alignment " << align << " tensors " << sizes.size());
        const zero::partition p = zero::per_tensor{.alignment = align}(sizes, w);
        CHECK(cover_problem(p).empty());
        const std::size_t unit = static_cast<std::size_t>(w) * align;
        for (std::size_t t = 0; t < sizes.size(); ++t) {
          std::vector<std::size_t> piece(static_cast<std::size_t>(w), 0),
              pad(static_cast<std::size_t>(w), 0);
          for (std::size_t r = 0; r < piece.size(); ++r) {
            for (const auto& s : p.shards[r]) {
              if (s.tensor != t) continue;
              piece[r] += s.length;
              if (s.padding) pad[r] += s.length;
            }
          }
          CHECK(std::all_of(piece.begin(), piece.end(),
                            [&](std::size_t x) { return x == piece[0]; }));
          CHECK(piece[0] % align == 0);
          CHECK(total(pad) == (unit - sizes[t] % unit) % unit);
        }
        for (int r = 0; r < w; ++r) CHECK(p.shard_size(r) == p.shard_size(0));
      }
    }
  }
}

TEST_CASE("whole_tensor: exact cover, no padding, greedy load bound, deterministic ties") {
  std::mt19937_64 rng(3);
  for (int w : worlds) {
    for (const auto& sizes : size_lists(w, rng)) {
      INFO("world " << w << " tensors " << sizes.size());
      const zero::partition p = zero::whole_tensor{}(sizes, w);
      CHECK(cover_problem(p).empty());
      std::size_t largest = 0, max_load = 0;
      for (std::size_t s : sizes) largest = std::max(largest, s);
      for (int r = 0; r < w; ++r) {
        CHECK(p.padding(r) == 0);
        max_load = std::max(max_load, p.shard_size(r));
        for (const auto& s : p.shards[static_cast<std::size_t>(r)])
          CHECK(s.length == sizes[s.tensor]);
      }
      // Largest-first greedy: no rank exceeds the mean by more than the largest tensor.
      CHECK(static_cast<double>(max_load) <=
            static_cast<double>(total(sizes)) / w + static_cast<double>(largest));
    }
  }
  // Ties: equal sizes go in tensor order to the least loaded, lowest rank.
  const std::vector<std::size_t> sizes = {5, 9, 5, 9, 1};
  const zero::partition p = zero::whole_tensor{}(sizes, 2);
  // 9 (t1) -> r0, 9 (t3) -> r1, 5 (t0) -> r0, 5 (t2) -> r1, 1 (t4) -> r0
  CHECK(p.shards[0] ==
        std::vector<zero::segment>{{0, 0, 5, false}, {1, 0, 9, false}, {4, 0, 1, false}});
  CHECK(p.shards[1] == std::vector<zero::segment>{{2, 0, 5, false}, {3, 0, 9, false}});
}

namespace {
constexpr std::array<std::size_t, 4> compile_time_sizes = {10, 3, 0, 7};
constexpr std::size_t flat_shard = zero::flat{.alignment = 2}(compile_time_sizes, 4).shard_size(3);
constexpr std::size_t per_tensor_padding = [] {
  const zero::partition p = zero::per_tensor{}(compile_time_sizes, 4);
  std::size_t pad = 0;
  for (int r = 0; r < 4; ++r) pad += p.padding(r);
  return pad;
}();
constexpr std::size_t whole_max = zero::whole_tensor{}(compile_time_sizes, 2).max_shard_size();
constexpr std::size_t packed_first_bucket =
    zero::make_buckets(zero::per_tensor{}(compile_time_sizes, 4), 12).buckets[0].packed_size;
}  // namespace

TEST_CASE("geometries and bucket layouts are usable at compile time") {
  STATIC_REQUIRE(flat_shard == 6);            // 20 -> 24 = 4 x 6
  STATIC_REQUIRE(per_tensor_padding == 4);    // 10 -> 12, 3 -> 4, 7 -> 8
  STATIC_REQUIRE(whole_max == 10);            // {10} and {7, 3}
  STATIC_REQUIRE(packed_first_bucket == 16);  // tensors 0, 1: 12 + 4
}

TEST_CASE("bucket layouts: rank parts tile each shard in order, runs tile each packed bucket") {
  std::mt19937_64 rng(4);
  for (int w : {1, 2, 3, 5, 8, 16}) {
    for (const auto& sizes : size_lists(w, rng)) {
      for (std::size_t cap : {std::size_t{0}, std::size_t{1}, std::size_t{7}, std::size_t{40}}) {
        for (int g = 0; g < 3; ++g) {
          const zero::partition p = g == 0   ? zero::flat{.alignment = 2}(sizes, w)
                                    : g == 1 ? zero::per_tensor{}(sizes, w)
                                             : zero::whole_tensor{}(sizes, w);
          INFO("world " << w << " geometry " << g << " cap " << cap << " tensors " << sizes.size());
          const zero::bucket_layout l = zero::make_buckets(p, cap);
          std::vector<std::size_t> shard_at(static_cast<std::size_t>(w), 0);
          std::size_t tensors = 0;
          for (const auto& b : l.buckets) {
            CHECK(b.first_tensor == tensors);
            tensors = b.end_tensor;
            std::size_t packed = 0, natural = 0;
            for (std::size_t r = 0; r < static_cast<std::size_t>(w); ++r) {
              CHECK(b.rank_offset[r] == packed);
              CHECK(b.shard_offset[r] == shard_at[r]);
              std::size_t part = 0;
              for (std::size_t k = b.run_begin[r]; k < b.run_begin[r + 1]; ++k) {
                CHECK(b.runs[k].packed == packed + part);
                part += b.runs[k].length;
                if (!b.runs[k].padding) natural += b.runs[k].length;
              }
              CHECK(part == b.counts[r]);
              packed += part;
              shard_at[r] += part;
            }
            CHECK(packed == b.packed_size);
            CHECK(natural == b.natural_size);
            if (cap != 0 && b.end_tensor != sizes.size()) CHECK(b.natural_size >= cap);
          }
          CHECK(tensors == sizes.size());
          for (int r = 0; r < w; ++r)
            CHECK(shard_at[static_cast<std::size_t>(r)] == p.shard_size(r));
        }
      }
    }
  }
}

TEST_CASE("memory_estimate reproduces the ZeRO paper's figure 1") {
  // Psi = 7.5e9 parameters, N = 64 ranks, K = 12 (mixed-precision Adam), GB = 1e9 bytes.
  const double want[] = {120.0, 31.4, 16.6, 1.9};
  for (int s = 0; s <= 3; ++s) {
    const double gb = zero::memory_estimate(s, 7.5e9, 64, 12).total() / 1e9;
    INFO("stage " << s << ": " << gb << " GB");
    CHECK(std::round(gb * 10) / 10 == Approx(want[s]));
  }
  CHECK(zero::memory_estimate(0, 7.5e9, 64, 12).total() == 120e9);
  CHECK(zero::memory_estimate(3, 7.5e9, 64, 12).total() == 16 * 7.5e9 / 64);
  CHECK_THROWS_AS(zero::memory_estimate(4, 1, 1, 1), std::invalid_argument);
}

TEST_CASE("bad world sizes and alignments are rejected") {
  const std::vector<std::size_t> sizes = {3};
  CHECK_THROWS_AS(zero::flat{}(sizes, 0), std::invalid_argument);
  CHECK_THROWS_AS(zero::per_tensor{.alignment = 0}(sizes, 2), std::invalid_argument);
  CHECK_THROWS_AS(zero::whole_tensor{}(sizes, -1), std::invalid_argument);
}

// chorus::reproducible over inproc_transport: bit equality with the one-rank result over
// 2000 random cases (every form, rank counts 1-8, all four float types, plus and average,
// counts up to 10^6, terms spread unevenly, every algorithm and chunk size), the rounding
// rules on hand-made inputs, non-finite terms, accuracy against the plain sum, and the
// errors.
#include "../support/reproducible_cases.hpp"

#include <catch2/catch.hpp>

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

namespace repro = harness::repro;

namespace {

template <class T, class Op = chorus::plus>
std::vector<T> sum_on(int ranks, const std::vector<std::vector<T>>& per_rank, Op op = {}) {
  std::vector<std::vector<T>> out(static_cast<std::size_t>(ranks));
  harness::run_ranks(ranks, [&](chorus::inproc_communicator& comm) {
    const auto& mine = per_rank[static_cast<std::size_t>(comm.rank())];
    auto& o = out[static_cast<std::size_t>(comm.rank())];
    o.assign(mine.size(), T{});
    chorus::all_reduce(comm, mine, o, op, chorus::reproducible{});
  });
  for (const auto& o : out) {
    REQUIRE(std::memcmp(o.data(), out[0].data(), o.size() * sizeof(T)) == 0);
  }
  return out[0];
}

}  // namespace

TEST_CASE("reproducible: 2000 random cases (500 under ASan) give the one-rank bits on inproc") {
  auto cases = repro::make_cases(repro::test_seed(), repro::case_count, 8, false);
  harness::failures f;
  for (auto& c : cases) repro::compute_expected(c, f);
  REQUIRE(f.count() == 0);
  for (int ranks = 1; ranks <= 8; ++ranks) {
    harness::run_ranks(ranks, [&](chorus::inproc_communicator& comm) {
      for (const auto& c : cases) {
        if (c.ranks == ranks) repro::run_case(comm, c, f);
      }
    });
  }
  INFO("seed " << repro::test_seed() << " (CHORUS_TEST_SEED replays it)");
  CHECK(f.report() == "0 failure(s)");
}

TEST_CASE("reproducible: one rounding of the exact sum") {
  // 1 + 2^-24 + 2^-24: float's sum in rank order rounds twice and gives 1; the exact sum
  // 1 + 2^-23 is a float.
  const float tiny = std::ldexp(1.0f, -24);
  CHECK(sum_on<float>(3, {{1.0f}, {tiny}, {tiny}})[0] == 1.0f + std::ldexp(1.0f, -23));
  CHECK(sum_on<float>(3, {{tiny}, {tiny}, {1.0f}})[0] == 1.0f + std::ldexp(1.0f, -23));
  // A tie rounds to even: 1 + 2^-24 is halfway between 1 and 1 + 2^-23.
  CHECK(sum_on<float>(2, {{1.0f}, {tiny}})[0] == 1.0f);
  CHECK(sum_on<float>(2, {{1.0f + std::ldexp(1.0f, -23)}, {tiny}})[0] ==
        1.0f + std::ldexp(1.0f, -22));
  // Cancellation is exact: (1e8 + 1) - 1e8 in any order.
  CHECK(sum_on<double>(3, {{1e17}, {1.0}, {-1e17}})[0] == 1.0);
  CHECK(sum_on<float>(3, {{-3e7f}, {3e7f}, {0.25f}})[0] == 0.25f);
  // Zeros: +0; half sums exactly.
  const auto z = sum_on<float>(2, {{-0.0f}, {-0.0f}});
  CHECK((z[0] == 0.0f && !std::signbit(z[0])));
  const chorus::half h = sum_on<chorus::half>(4, {{chorus::half(1000.0f)},
                                                  {chorus::half(0.5f)},
                                                  {chorus::half(0.25f)},
                                                  {chorus::half(-1000.0f)}})[0];
  CHECK(static_cast<float>(h) == 0.75f);
  const chorus::bfloat16 b = sum_on<chorus::bfloat16>(
      3, {{chorus::bfloat16(256.0f)}, {chorus::bfloat16(1.0f)}, {chorus::bfloat16(1.0f)}})[0];
  CHECK(static_cast<float>(b) == 258.0f);
  // average divides the exact sum once, as chorus::average does.
  CHECK(sum_on<double>(3, {{1.0}, {2.0}, {4.0}}, chorus::average{})[0] == 7.0 / 3.0);
}

TEST_CASE("reproducible: non-finite terms give what IEEE addition gives in any order") {
  const float inf = std::numeric_limits<float>::infinity();
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const auto r = sum_on<float>(3, {{inf, inf, 1.0f, nan, -inf},
                                   {1.0f, -inf, 2.0f, 1.0f, -inf},
                                   {2.0f, 3.0f, 3.0f, 0.0f, 5.0f}});
  CHECK(r[0] == inf);
  CHECK(std::isnan(r[1]));
  CHECK(r[2] == 6.0f);
  CHECK(std::isnan(r[3]));
  CHECK(r[4] == -inf);
  // Overflow of the exact sum: infinity, as the plain sum.
  const float big = std::numeric_limits<float>::max();
  CHECK(sum_on<float>(2, {{big}, {big}})[0] == inf);
  CHECK(sum_on<float>(2, {{-big}, {-big}})[0] == -inf);
  CHECK(sum_on<float>(2, {{big}, {-big}})[0] == 0.0f);
}

TEST_CASE("reproducible: at least as accurate as the plain sum, and the same on every algorithm") {
  constexpr int ranks = 7;
  constexpr std::size_t n = 20000;
  std::vector<std::vector<float>> in(ranks, std::vector<float>(n));
  std::uint64_t h = 12345;
  for (auto& v : in) {
    for (auto& x : v) {
      h = h * 6364136223846793005ull + 1442695040888963407ull;
      const int e = static_cast<int>((h >> 33) % 30) - 15;
      x = std::ldexp(static_cast<float>((h >> 40) % 1000000) / 1e6f + 0.5f, e) *
          (((h >> 20) & 1) != 0 ? -1.0f : 1.0f);
    }
  }
  std::vector<long double> exact(n, 0);
  for (const auto& v : in) {
    for (std::size_t i = 0; i < n; ++i) exact[i] += v[i];
  }
  const auto repro = sum_on<float>(ranks, in);
  long double repro_error = 0, plain_error = 0;
  for (auto a : chorus::schedule::all_algorithms) {
    if (!chorus::schedule::supports(a, chorus::schedule::collective::all_reduce) ||
        a == chorus::schedule::algorithm::one_sided) {
      continue;
    }
    std::vector<std::vector<float>> plain(ranks), again(ranks);
    harness::run_ranks(ranks, [&](chorus::inproc_communicator& comm) {
      const auto& mine = in[static_cast<std::size_t>(comm.rank())];
      auto& p = plain[static_cast<std::size_t>(comm.rank())];
      auto& g = again[static_cast<std::size_t>(comm.rank())];
      p.assign(n, 0.0f);
      g.assign(n, 0.0f);
      chorus::all_reduce(comm, mine, p, chorus::plus{}, chorus::algo::dynamic{a, 0});
      chorus::all_reduce(comm, mine, g, chorus::plus{}, chorus::reproducible{},
                         chorus::algo::dynamic{a, 256});
    });
    INFO(chorus::schedule::name(a));
    CHECK(again[3] == repro);
    for (std::size_t i = 0; i < n; ++i) {
      plain_error = std::max(
          plain_error, std::fabs(plain[0][i] - exact[i]) / std::max(std::fabs(exact[i]), 1e-30L));
      repro_error = std::max(
          repro_error, std::fabs(repro[i] - exact[i]) / std::max(std::fabs(exact[i]), 1e-30L));
    }
  }
  INFO("largest relative error: reproducible " << static_cast<double>(repro_error) << ", plain "
                                               << static_cast<double>(plain_error));
  CHECK(repro_error <= plain_error);
}

TEST_CASE("reproducible: reduce_scatter_v, reduce, uneven terms and the errors") {
  std::vector<std::vector<double>> blocks(3);
  std::vector<std::vector<float>> means(3);
  std::vector<std::string> errors(3);
  std::vector<std::vector<float>> rooted(3);
  harness::run_ranks(3, [&](chorus::inproc_communicator& comm) {
    const int r = comm.rank();
    const auto at = static_cast<std::size_t>(r);
    // reduce_scatter_v with blocks 1, 0, 2.
    const std::vector<double> in{1.0 + r, 1e-20, 1e20};
    blocks[at].resize(r == 0 ? 1 : r == 1 ? 0 : 2);
    chorus::reduce_scatter_v(comm, in, blocks[at], std::vector<std::size_t>{1, 0, 2},
                             chorus::plus{}, chorus::reproducible{});
    // reduce to rank 1, in place: 1 + 2^-24 + 2^-24 is 1 + 2^-23 exactly.
    rooted[at] = {r == 0 ? 1.0f : std::ldexp(1.0f, -24)};
    chorus::reduce(comm, rooted[at], chorus::plus{}, 1, chorus::reproducible{});
    if (r != 1) rooted[at].clear();
    // reproducible_sum: rank 1 holds no term; the average is over the 3 terms.
    const std::vector<float> terms = r == 0   ? std::vector<float>{1.0f, 2.0f}
                                     : r == 1 ? std::vector<float>{}
                                              : std::vector<float>{3.0f, 4.0f, 5.0f, 6.0f};
    means[at].resize(2);
    chorus::reproducible_sum(comm, std::span<const float>(terms), std::span<float>(means[at]),
                             chorus::average{});
    // Not a whole number of terms (every rank passes one, so none waits for the others).
    std::vector<float> odd(3);
    try {
      chorus::reproducible_sum(comm, std::span<const float>(odd), std::span<float>(means[at]),
                               chorus::plus{});
    } catch (const chorus::error& e) {
      errors[at] = e.what();
    }
  });
  CHECK(blocks[0] == std::vector<double>{6.0});
  CHECK(rooted[1] == std::vector<float>{1.0f + std::ldexp(1.0f, -23)});
  CHECK(rooted[0].empty());
  CHECK(rooted[2].empty());
  CHECK(blocks[1].empty());
  CHECK(blocks[2] == std::vector<double>{3.0 * 1e-20, 3e20});  // 3 x 1e-20 rounded once
  for (const auto& m : means) CHECK(m == std::vector<float>{3.0f, 4.0f});
  for (const auto& e : errors) CHECK_THAT(e, Catch::Contains("not a whole number of terms"));
}

TEST_CASE("reproducible: the fast conversions agree with the general rounding") {
  namespace r = chorus::detail::repro;
  std::uint64_t h = 99;
  const auto next = [&h] {
    h = h * 6364136223846793005ull + 1442695040888963407ull;
    return h;
  };
  const auto check = [&]<class T>(int code) {
    using F = r::format<T>;
    const int bits = static_cast<int>(next() % 63);
    auto s = static_cast<std::int64_t>(next() >> (63 - bits));
    if ((next() & 1) != 0) s = -s;
    const T fast = r::from_fixed<T>(s, static_cast<typename F::code>(code));
    const auto wide = static_cast<r::u128>(static_cast<std::uint64_t>(s)) |
                      (s < 0 ? ~r::u128{0} << 64 : r::u128{0});
    const T slow = r::narrowed<T>(r::round_once(wide, code - F::bias - F::frac, F::p, F::min_exp));
    if (std::memcmp(&fast, &slow, sizeof(T)) != 0) {
      FAIL("sum " << s << " code " << code << ": " << static_cast<double>(static_cast<float>(fast))
                  << " != " << static_cast<double>(static_cast<float>(slow)));
    }
  };
  for (int k = 0; k < 200000; ++k) {
    check.operator()<float>(static_cast<int>(next() % 254));
    check.operator()<chorus::bfloat16>(static_cast<int>(next() % 254));
    check.operator()<chorus::half>(r::format<chorus::half>::fixed);
  }
  // And a term's integer is the term itself on its own grid: x = to_fixed(x) * 2^(E - 42).
  for (int k = 0; k < 200000; ++k) {
    const float x = std::bit_cast<float>(static_cast<std::uint32_t>(next()));
    if (!std::isfinite(x)) continue;
    const auto c = r::code_of(x);
    CHECK(r::from_fixed<float>(r::to_fixed(x, c), c) == x);
  }
}

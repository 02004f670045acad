#pragma once
// The property test of chorus::reproducible, shared by every transport: random cases of
// (collective, rank count, element type, op, count, terms and how they are spread over the
// ranks, algorithm, chunk size), each checked for bit equality with the same terms summed
// on one rank. Cases are made from a seed, so the parent of a multi-process run and every
// rank see the same list; the one-rank results are computed once, in the parent, and kept
// as hashes.
#include <chorus/chorus.hpp>
#include <chorus/collectives/reproducible.hpp>
#include <chorus/core/hash.hpp>

#include "harness.hpp"
#include "sanitizers.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <random>
#include <span>
#include <string>
#include <vector>

namespace harness::repro {

enum class form { sum_terms, all_reduce, all_reduce_out_of_place, reduce_scatter, reduce };
enum class dtype { f32, f64, f16, bf16 };

struct repro_case {
  int index = 0;
  std::uint64_t seed = 0;
  form how = form::sum_terms;
  dtype type = dtype::f32;
  bool average = false;
  int ranks = 1;
  std::size_t count = 0;   ///< elements per term (all_reduce), per block (reduce_scatter)
  std::vector<int> terms;  ///< terms held by each rank
  chorus::algo::dynamic algorithm;
  int exponent_span = 8;                ///< how far term magnitudes spread (binades)
  bool specials = false;                ///< a few inf / NaN terms
  int root = 0;                         ///< reduce's root
  std::vector<std::uint64_t> expected;  ///< hash of the one-rank result (per rank's block)

  [[nodiscard]] int total_terms() const {
    int t = 0;
    for (int k : terms) t += k;
    return t;
  }
  [[nodiscard]] std::size_t elements() const {  // of one term
    return how == form::reduce_scatter ? count * static_cast<std::size_t>(ranks) : count;
  }
  [[nodiscard]] std::string describe() const {
    static const char* forms[] = {"reproducible_sum", "all_reduce", "all_reduce(out of place)",
                                  "reduce_scatter", "reduce"};
    static const char* types[] = {"float", "double", "half", "bfloat16"};
    std::string terms_text;
    for (int k : terms) terms_text += (terms_text.empty() ? "" : ",") + std::to_string(k);
    return "case " + std::to_string(index) + ": " + forms[static_cast<int>(how)] + " " +
           types[static_cast<int>(type)] + (average ? " average" : " plus") +
           (how == form::reduce ? " to root " + std::to_string(root) : "") + " on " +
           std::to_string(ranks) + " ranks, count " + std::to_string(count) + ", terms " +
           terms_text + ", algorithm " +
           (algorithm.id ? std::string(chorus::schedule::name(*algorithm.id)) : "automatic") +
           " chunk " + std::to_string(algorithm.chunk_bytes) + (specials ? ", specials" : "");
  }
};

/// Term t's element i of case `c`: magnitudes over `exponent_span` binades, both signs,
/// some elements cancelling exactly between terms, and with `specials` a few non-finite.
template <class T>
T term_value(const repro_case& c, int t, std::size_t i) {
  // splitmix64 over (seed, term, element): the same value on every rank and in the parent.
  std::uint64_t h = c.seed ^ (static_cast<std::uint64_t>(t) << 40) ^ (i * 0x2545f4914f6cdd1dull);
  const auto draw = [&h] {
    std::uint64_t z = (h += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  };
  if (c.specials && draw() % 97 == 0) {
    const int k = static_cast<int>(draw() % 3);
    const double s = k == 0   ? std::numeric_limits<double>::infinity()
                     : k == 1 ? -std::numeric_limits<double>::infinity()
                              : std::numeric_limits<double>::quiet_NaN();
    return T(static_cast<float>(s));
  }
  // Element i of odd terms often cancels element i of the term before.
  if (t % 2 == 1 && (i % 5) == 0) {
    const T before = term_value<T>(c, t - 1, i);
    if constexpr (std::is_same_v<T, double>) {
      return -before;
    } else {
      return T(-static_cast<float>(before));  // exact: float holds every T
    }
  }
  const double mantissa = 1.0 + static_cast<double>(draw() % (1u << 20)) / double(1u << 20);
  const int span = c.exponent_span;
  const int e = static_cast<int>(draw() % static_cast<std::uint64_t>(2 * span + 1)) - span;
  const double v = std::ldexp(mantissa, e) * ((draw() & 1) != 0 ? -1.0 : 1.0);
  if constexpr (std::is_same_v<T, double>) {
    return v + std::ldexp(static_cast<double>(draw() % 1000), e - 40);  // below float's bits
  } else {
    return T(static_cast<float>(v));
  }
}

/// Rank `rank`'s terms of case `c`, back to back (the first terms of the list go to rank 0,
/// and so on).
template <class T>
std::vector<T> terms_of(const repro_case& c, int rank) {
  int first = 0;
  for (int r = 0; r < rank; ++r) first += c.terms[static_cast<std::size_t>(r)];
  const int k = c.terms[static_cast<std::size_t>(rank)];
  const std::size_t n = c.elements();
  std::vector<T> out(static_cast<std::size_t>(k) * n);
  for (int t = 0; t < k; ++t) {
    for (std::size_t i = 0; i < n; ++i)
      out[static_cast<std::size_t>(t) * n + i] = term_value<T>(c, first + t, i);
  }
  return out;
}

template <class T>
std::uint64_t hash_of(std::span<const T> v) {
  return chorus::fnv1a_of(std::as_bytes(v));
}

/// A value of any of the four types in long double (exactly).
template <class T>
long double wide_value(T v) {
  if constexpr (std::is_same_v<T, double>) {
    return v;
  } else {
    return static_cast<float>(v);
  }
}

template <class T>
inline constexpr int precision = std::is_same_v<T, double>         ? 53
                                 : std::is_same_v<T, float>        ? 24
                                 : std::is_same_v<T, chorus::half> ? 11
                                                                   : 8;
template <class T>
inline constexpr int smallest = std::is_same_v<T, double>         ? -1074
                                : std::is_same_v<T, float>        ? -149
                                : std::is_same_v<T, chorus::half> ? -24
                                                                  : -133;

/// The random cases: rank counts cycle through 1..max_ranks; one-sided only with windows.
inline std::vector<repro_case> make_cases(std::uint64_t seed, int count, int max_ranks,
                                          bool windows) {
  std::mt19937_64 rng(seed);
  std::vector<chorus::schedule::algorithm> all_reduce_algos, reduce_scatter_algos, reduce_algos;
  for (auto a : chorus::schedule::all_algorithms) {
    if (a == chorus::schedule::algorithm::one_sided && !windows) continue;
    if (chorus::schedule::supports(a, chorus::schedule::collective::all_reduce)) {
      all_reduce_algos.push_back(a);
    }
    if (chorus::schedule::supports(a, chorus::schedule::collective::reduce_scatter)) {
      reduce_scatter_algos.push_back(a);
    }
    if (chorus::schedule::supports(a, chorus::schedule::collective::reduce)) {
      reduce_algos.push_back(a);
    }
  }
  std::vector<repro_case> cases;
  for (int k = 0; k < count; ++k) {
    repro_case c;
    c.index = k;
    c.seed = rng();
    c.ranks = 1 + k % max_ranks;
    c.how = static_cast<form>(rng() % 5);
    c.root = static_cast<int>(rng() % static_cast<std::uint64_t>(c.ranks));
    c.type = static_cast<dtype>(rng() % 4);
    c.average = rng() % 3 == 0;
    // Mostly small counts; one case in ten up to a million elements.
    const double top = rng() % 10 == 0 ? 1e6 : 4096.0;
    const double u = std::uniform_real_distribution<double>(0.0, 1.0)(rng);
    c.count = static_cast<std::size_t>(std::exp(u * std::log(top + 1.0))) - 1;
    if (c.how == form::reduce_scatter) c.count /= static_cast<std::size_t>(c.ranks);
    c.terms.assign(static_cast<std::size_t>(c.ranks), 1);
    if (c.how == form::sum_terms) {
      const int total = 1 + static_cast<int>(rng() % 12);
      std::fill(c.terms.begin(), c.terms.end(), 0);
      for (int t = 0; t < total; ++t) ++c.terms[rng() % c.terms.size()];
    }
    const auto& algos = c.how == form::reduce_scatter ? reduce_scatter_algos
                        : c.how == form::reduce       ? reduce_algos
                                                      : all_reduce_algos;
    if (rng() % 5 != 0) c.algorithm.id = algos[rng() % algos.size()];
    static constexpr std::size_t chunks[] = {0, 64, 1000, 4096, 65536, 1 << 20};
    c.algorithm.chunk_bytes = chunks[rng() % std::size(chunks)];
    c.exponent_span =
        c.type == dtype::f16 ? 1 + static_cast<int>(rng() % 6) : 1 + static_cast<int>(rng() % 40);
    c.specials = rng() % 25 == 0;
    cases.push_back(std::move(c));
  }
  return cases;
}

/// Calls `fn.template operator()<T>()` with the case's element type.
template <class Fn>
void with_type(dtype t, Fn&& fn) {
  switch (t) {
    case dtype::f32:
      return fn.template operator()<float>();
    case dtype::f64:
      return fn.template operator()<double>();
    case dtype::f16:
      return fn.template operator()<chorus::half>();
    case dtype::bf16:
      return fn.template operator()<chorus::bfloat16>();
  }
}

/// The one-rank result of `c` -- every term summed on a single rank -- as hashes: the whole
/// result, or each rank's block for reduce_scatter. Also checks its accuracy against a sum in
/// long double: within one ulp of the result plus the pre-rounding bound.
inline void compute_expected(repro_case& c, failures& f) {
  with_type(c.type, [&]<class T>() {
    const std::size_t n = c.elements();
    repro_case one = c;
    one.terms = {c.total_terms()};  // every term on "rank 0" (ranks stays: it sizes a term)
    const std::vector<T> all = terms_of<T>(one, 0);
    std::vector<T> out(n);
    chorus::inproc::run(1, [&](chorus::inproc_communicator& comm) {
      if (c.average) {
        chorus::reproducible_sum(comm, std::span<const T>(all), std::span<T>(out),
                                 chorus::average{});
      } else {
        chorus::reproducible_sum(comm, std::span<const T>(all), std::span<T>(out), chorus::plus{});
      }
    });
    c.expected.clear();
    if (c.how == form::reduce_scatter) {
      for (int r = 0; r < c.ranks; ++r) {
        c.expected.push_back(hash_of(
            std::span<const T>(out).subspan(static_cast<std::size_t>(r) * c.count, c.count)));
      }
    } else {
      c.expected.push_back(hash_of(std::span<const T>(out)));
    }
    // Accuracy against the exact sum (long double holds these sums exactly but for
    // double's lowest bits, far below the bound).
    const int total = c.total_terms();
    for (std::size_t i = 0; i < n && !c.specials; ++i) {
      long double exact = 0, largest = 0;
      for (int t = 0; t < total; ++t) {
        const long double x = wide_value(all[static_cast<std::size_t>(t) * n + i]);
        exact += x;
        largest = std::max(largest, std::fabs(x));
      }
      if (c.average) exact /= total;
      const long double got = wide_value(out[i]);
      if (std::isinf(got)) continue;  // the exact sum overflowed the type
      int e = 0;
      std::frexp(static_cast<double>(std::fabs(exact)), &e);
      const long double ulp = std::ldexp(1.0L, e - precision<T>);
      std::frexp(static_cast<double>(largest), &e);
      const int frac = std::is_same_v<T, double> ? 106 : 42;
      const long double grid =
          std::is_same_v<T, chorus::half> ? 0.0L : total * std::ldexp(1.0L, e - frac);
      // For double, long double itself rounds sums that spread over more than 64 bits.
      const long double reference_error =
          std::is_same_v<T, double> ? total * std::ldexp(1.0L, e - 62) : 0.0L;
      const long double bound =
          (c.average ? 2 : 1) * ulp + grid + reference_error + std::ldexp(1.0L, smallest<T>);
      if (std::fabs(got - exact) > bound) {
        f.add(c.describe() + ": element " + std::to_string(i) + " is " +
              std::to_string(static_cast<double>(got)) + ", the exact sum " +
              std::to_string(static_cast<double>(exact)) + " (bound " +
              std::to_string(static_cast<double>(bound)) + ")");
        return;
      }
    }
  });
}

/// Runs case `c` on `comm` (of `c.ranks` ranks) and checks the bits against `c.expected`.
template <class Comm>
void run_case(Comm& comm, const repro_case& c, failures& f) {
  with_type(c.type, [&]<class T>() {
    const int r = comm.rank();
    const std::vector<T> mine = terms_of<T>(c, r);
    std::vector<T> out(c.how == form::reduce_scatter          ? c.count
                       : c.how == form::reduce && r != c.root ? 0
                                                              : c.elements());
    const auto call = [&](auto op) {
      switch (c.how) {
        case form::sum_terms:
          chorus::reproducible_sum(comm, std::span<const T>(mine), std::span<T>(out), op,
                                   c.algorithm);
          break;
        case form::all_reduce:
          out = mine;
          chorus::all_reduce(comm, out, op, chorus::reproducible{}, c.algorithm);
          break;
        case form::all_reduce_out_of_place:
          chorus::all_reduce(comm, mine, out, op, chorus::reproducible{}, c.algorithm);
          break;
        case form::reduce_scatter:
          chorus::reduce_scatter(comm, mine, out, op, chorus::reproducible{}, c.algorithm);
          break;
        case form::reduce:
          chorus::reduce(comm, mine, out, op, c.root, chorus::reproducible{}, c.algorithm);
          break;
      }
    };
    if (c.average) {
      call(chorus::average{});
    } else {
      call(chorus::plus{});
    }
    if (c.how == form::reduce && r != c.root) return;  // only the root has a result
    const std::uint64_t want =
        c.how == form::reduce_scatter ? c.expected[static_cast<std::size_t>(r)] : c.expected[0];
    if (hash_of(std::span<const T>(out)) != want) {
      f.add(c.describe() + ": rank " + std::to_string(r) + "'s bits differ from one rank's");
    }
  });
}

}  // namespace harness::repro

namespace harness::repro {

/// Cases per run: 2000, a quarter of them under AddressSanitizer (the full set runs in the
/// plain build).
inline constexpr int case_count = harness::address_sanitizer ? 500 : 2000;

/// The seed of the property test: CHORUS_TEST_SEED when set (to replay a failure).
inline std::uint64_t test_seed() {
  if (const char* s = std::getenv("CHORUS_TEST_SEED")) return std::strtoull(s, nullptr, 10);
  return 20261206;
}

/// The property test over real processes: `run(ranks, fn)` forks `ranks` processes running
/// `fn(comm, failures)` (e.g. `run_processes` over shm) and returns their results. The
/// cases and their expected hashes are made here, before the fork.
template <class Run>
void property_over_processes(Run run, int count, bool windows) {
  auto cases = make_cases(test_seed(), count, 8, windows);
  failures f;
  for (auto& c : cases) compute_expected(c, f);
  REQUIRE(f.count() == 0);
  INFO("seed " << test_seed() << " (CHORUS_TEST_SEED replays it)");
  for (int ranks = 1; ranks <= 8; ++ranks) {
    // Every rank count gets its share of the cases (count / 8, rounded down).
    REQUIRE(std::count_if(cases.begin(), cases.end(),
                          [&](const repro_case& c) { return c.ranks == ranks; }) >= count / 8);
    const auto results = run(ranks, [&](auto& comm, failures& mine) {
      for (const auto& c : cases) {
        if (c.ranks == ranks) run_case(comm, c, mine);
      }
    });
    INFO("ranks " << ranks);
    require_all_ok(results);
  }
}

}  // namespace harness::repro

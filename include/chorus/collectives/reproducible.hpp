#pragma once
/// \file
/// `chorus::reproducible`: sums whose bits depend on the terms alone -- not on the
/// algorithm, the chunk size, the transport, the number of ranks or which rank holds which
/// term.
///
///     chorus::all_reduce(comm, grad, chorus::plus{}, chorus::reproducible{});
///     chorus::all_reduce(comm, in, out, chorus::average{}, chorus::reproducible{},
///                        chorus::algo::ring{});                     // out of place, a tag
///     chorus::reduce_scatter(comm, in, out, chorus::plus{}, chorus::reproducible{});
///     chorus::reduce(comm, in, out, chorus::plus{}, root, chorus::reproducible{});
///     chorus::reproducible_sum(comm, terms, out, chorus::plus{});   // k terms on this rank
///
/// For `plus` and `average` over `float`, `double`, `half` and `bfloat16`. A floating-point
/// sum depends on its order; these do not, because nothing is added in floating point:
///
/// 1. **Exponents.** For each element, the largest magnitude over every term of every rank
///    is agreed on (an all-reduce with `maximum` of one byte per element -- two for
///    double): 2^E bounds every term of that element.
/// 2. **Pre-rounding.** Each term becomes an integer on the grid 2^(E - F): F = 42 fraction
///    bits for float and bfloat16 (an int64), 106 for double (128 bits); half is exact on
///    the grid 2^-24 (an int64, no exponent needed). A term is rounded to its grid once,
///    to nearest even, by a rule that depends on the term and E alone.
/// 3. **Exact sum.** The integers are summed -- over a rank's own terms, then by the
///    collective with the algorithm asked for. Integer addition is associative, so every
///    order gives the same integer; wrap-around in between cancels out, since the exact
///    total fits (at most 2^20 terms in all).
/// 4. **One rounding.** The integer is turned back into the element type with one
///    rounding to nearest even (`average` then divides it by the number of terms as
///    `chorus::average` does).
///
/// **Accuracy.** The error is at most the final rounding (half an ulp of the result) plus
/// T x 2^(E - F - 1) for T terms: with F = 42, T x 2^-19 ulps of the largest float term,
/// where the plain float sum's bound is (T - 1) ulps of the partial sums.
/// Non-finite terms give what IEEE addition gives regardless of order: NaN if any term is
/// NaN or both infinities appear, else the infinity that appears. A sum of zeros is +0.
///
/// **Cost.** Per element, the exponent pass moves 1 byte (2 for double) and the sum 8
/// bytes (16 for double) instead of 4 (8); docs/performance.md has the measurement.
///
/// Trailing arguments: an algorithm tag for the summing collective (the exponent pass uses
/// `automatic`; every algorithm agrees on a maximum).
#include <chorus/collectives/all_reduce.hpp>
#include <chorus/collectives/policy.hpp>
#include <chorus/collectives/reduce.hpp>
#include <chorus/collectives/reduce_scatter.hpp>
#include <chorus/communicator.hpp>
#include <chorus/core/buffer.hpp>
#include <chorus/core/error.hpp>
#include <chorus/core/ops.hpp>
#include <chorus/core/types.hpp>
#include <chorus/dispatch/algo.hpp>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

namespace chorus::inline v0 {

/// The policy: `plus` and `average` sums that are bit-identical for every algorithm, chunk
/// size, transport and rank count (see the file comment).
struct reproducible {};

namespace detail::repro {

/// At most this many terms in all (over every rank): the exact total then fits its integer.
inline constexpr std::uint64_t max_terms = std::uint64_t{1} << 20;

__extension__ typedef unsigned __int128 u128;

/// A 128-bit two's-complement integer that sums with wrap-around (the double accumulator).
struct wide {
  std::uint64_t lo = 0;
  std::uint64_t hi = 0;
  friend wide operator+(wide a, wide b) noexcept { return from(a.value() + b.value()); }
  friend bool operator==(const wide&, const wide&) = default;
  [[nodiscard]] u128 value() const noexcept { return (u128{hi} << 64) | lo; }
  static wide from(u128 v) noexcept {
    return {static_cast<std::uint64_t>(v), static_cast<std::uint64_t>(v >> 64)};
  }
};

/// Non-finite terms, counted in three 21-bit fields of the accumulator's low word.
inline constexpr std::uint64_t plus_infinity = 1;
inline constexpr std::uint64_t minus_infinity = std::uint64_t{1} << 21;
inline constexpr std::uint64_t not_a_number = std::uint64_t{1} << 42;
inline constexpr std::uint64_t field_mask = (std::uint64_t{1} << 21) - 1;

/// What each element type sums as. `code`: the per-element exponent -- code c means every
/// term is below 2^(c - bias) -- whose largest value marks a non-finite term; `acc`: the
/// integer; `frac`: its fraction bits below 2^E; `p`, `min_exp`, `max_exp`: the type's
/// precision, the exponent of its smallest subnormal and of its largest binade.
template <class T>
struct format;

/// float, bfloat16 and half, read through float's bits (exact for all three).
struct narrow_format {
  using code = std::uint8_t;
  using acc = std::int64_t;
  static constexpr int frac = 42, bias = 125;
  static constexpr code nonfinite = 255;
};
template <>
struct format<float> : narrow_format {
  static constexpr int p = 24, min_exp = -149, max_exp = 127;
};
template <>
struct format<bfloat16> : narrow_format {
  static constexpr int p = 8, min_exp = -133, max_exp = 127;
};
template <>
struct format<half> : narrow_format {
  // Every half is below 2^16 and a multiple of 2^-24: one fixed code (E = 16), exact.
  static constexpr int p = 11, min_exp = -24, max_exp = 15;
  static constexpr code fixed = 16 + bias;
};
template <>
struct format<double> {
  using code = std::uint16_t;
  using acc = wide;
  static constexpr int frac = 106, bias = 1021, p = 53, min_exp = -1074, max_exp = 1023;
  static constexpr code nonfinite = 0xffff;
};

template <class T>
concept summable = requires {
  typename format<T>::acc;
};

template <class T>
std::uint32_t float_bits(T x) noexcept {
  return std::bit_cast<std::uint32_t>(static_cast<float>(x));
}

/// The code of one term: the smallest e with |x| < 2^e (at least -bias), biased; or
/// `nonfinite`. From the exponent field: e = max(field, 1) - 126 (float), - 1022 (double).
template <class T>
typename format<T>::code code_of(T x) noexcept {
  if constexpr (std::is_same_v<T, double>) {
    const auto field = static_cast<std::uint32_t>(std::bit_cast<std::uint64_t>(x) >> 52) & 0x7ff;
    if (field == 0x7ff) return format<T>::nonfinite;
    return static_cast<std::uint16_t>(field == 0 ? 0 : field - 1);
  } else {
    const std::uint32_t field = (float_bits(x) >> 23) & 0xff;
    if (field == 0xff) return format<T>::nonfinite;
    if constexpr (std::is_same_v<T, half>) return format<T>::fixed;
    return static_cast<std::uint8_t>(field == 0 ? 0 : field - 1);
  }
}

/// v / 2^down rounded to nearest even, for 0 < down < the bits of U.
template <class U>
U shift_right_even(U v, int down) noexcept {
  const U kept = v >> down;
  const U rest = v - (kept << down);
  const U half_unit = U{1} << (down - 1);
  return kept + ((rest > half_unit || (rest == half_unit && (kept & 1) != 0)) ? 1 : 0);
}

/// sig * 2^shift rounded to an integer, to nearest even (sig below 2^53).
inline u128 shifted(std::uint64_t sig, int shift) noexcept {
  if (shift >= 0) return u128{sig} << shift;  // below 2^107 for every valid code
  if (-shift > 54) return 0;                  // below half of one unit
  return shift_right_even(sig, -shift);
}

/// 2^k as a double (k a normal exponent).
inline double power_of_two(int k) noexcept {
  return std::bit_cast<double>(static_cast<std::uint64_t>(k + 1023) << 52);
}

/// One term as its integer for the element's agreed code `c`: |x| * 2^(frac - E) rounded
/// to nearest even, with x's sign; the non-finite counters when `c` is `nonfinite`.
template <class T>
typename format<T>::acc to_fixed(T x, typename format<T>::code c) noexcept {
  using F = format<T>;
  bool negative = false;
  u128 q = 0;
  if constexpr (std::is_same_v<T, double>) {
    const auto u = std::bit_cast<std::uint64_t>(x);
    const auto field = static_cast<int>((u >> 52) & 0x7ff);
    negative = (u >> 63) != 0;
    if (c == F::nonfinite) {
      q = field != 0x7ff                              ? 0
          : (u & ((std::uint64_t{1} << 52) - 1)) != 0 ? not_a_number
          : negative                                  ? minus_infinity
                                                      : plus_infinity;
      negative = false;
    } else {
      const std::uint64_t sig =
          (u & ((std::uint64_t{1} << 52) - 1)) | (field != 0 ? std::uint64_t{1} << 52 : 0);
      // |x| = sig * 2^(max(field, 1) - 1075); E = c - bias.
      q = shifted(sig, (field != 0 ? field : 1) - 1075 + F::frac - (static_cast<int>(c) - F::bias));
    }
    const u128 v = negative ? u128{0} - q : q;
    return wide::from(v);
  } else {
    const std::uint32_t u = float_bits(x);
    const auto field = static_cast<int>((u >> 23) & 0xff);
    negative = (u >> 31) != 0;
    if (c == F::nonfinite) {
      const std::uint64_t flag = field != 0xff         ? 0
                                 : (u & 0x7fffff) != 0 ? not_a_number
                                 : negative            ? minus_infinity
                                                       : plus_infinity;
      return static_cast<std::int64_t>(flag);
    }
    // x * 2^(frac - E) is exact in double (24 bits, |.| <= 2^42); adding and taking away
    // 1.5 * 2^52 rounds it to an integer, to nearest even.
    const double y = static_cast<double>(std::bit_cast<float>(u)) *
                     power_of_two(F::frac - (static_cast<int>(c) - F::bias));
    constexpr double round_to_integer = 6755399441055744.0;  // 1.5 * 2^52
    return static_cast<std::int64_t>((y + round_to_integer) - round_to_integer);
  }
}

/// The value of `sum * 2^scale` (`sum` two's complement) rounded once, to nearest even, to
/// `p` bits with subnormals from 2^min_exp, as a double (exact for every type's result).
inline double round_once(u128 sum, int scale, int p, int min_exp) noexcept {
  const bool negative = (sum >> 127) != 0;
  const u128 mag = negative ? u128{0} - sum : sum;
  if (mag == 0) return 0.0;
  const auto hi = static_cast<std::uint64_t>(mag >> 64);
  const int lead =
      hi != 0 ? 127 - std::countl_zero(hi) : 63 - std::countl_zero(static_cast<std::uint64_t>(mag));
  int grid = lead + scale - p + 1;
  if (grid < min_exp) grid = min_exp;
  const int down = grid - scale;  // mag * 2^scale / 2^grid = mag / 2^down
  u128 m = 0;
  if (down <= 0) {
    m = mag << -down;
  } else if (down < 128) {
    m = shift_right_even(mag, down);
  }
  const double v = std::ldexp(static_cast<double>(static_cast<std::uint64_t>(m)), grid);
  return negative ? -v : v;
}

/// A non-finite result from the counters: NaN, or the one infinity that appeared.
inline double nonfinite_value(std::uint64_t flags) noexcept {
  const bool nan = ((flags >> 42) & field_mask) != 0;
  const bool pinf = (flags & field_mask) != 0;
  const bool ninf = ((flags >> 21) & field_mask) != 0;
  return nan || (pinf && ninf) ? std::numeric_limits<double>::quiet_NaN()
         : pinf                ? std::numeric_limits<double>::infinity()
                               : -std::numeric_limits<double>::infinity();
}

/// `v` as the type: rounded to float to nearest even (exact for a value of the type's
/// precision), infinite past float's range, then converted (exact).
template <class T>
T narrowed(double v) noexcept {
  if constexpr (std::is_same_v<T, double>) {
    return v;
  } else {
    // From 2^128 - 2^103 (half an ulp past the largest float) on, rounding gives infinity.
    const double overflow = 0x1.ffffff8p+127;
    const float f = v >= overflow    ? std::numeric_limits<float>::infinity()
                    : v <= -overflow ? -std::numeric_limits<float>::infinity()
                                     : static_cast<float>(v);
    return T(f);
  }
}

/// The element type's value of an accumulated integer for code `c`, rounded once.
template <class T>
T from_fixed(typename format<T>::acc a, typename format<T>::code c) noexcept {
  using F = format<T>;
  const int scale = static_cast<int>(c) - F::bias - F::frac;  // sum * 2^scale
  if constexpr (std::is_same_v<T, double>) {
    if (c == F::nonfinite) return nonfinite_value(a.lo);
    return round_once(a.value(), scale, F::p, F::min_exp);
  } else {
    if (c == F::nonfinite) return narrowed<T>(nonfinite_value(static_cast<std::uint64_t>(a)));
    if constexpr (std::is_same_v<T, float>) {
      // The sum (|a| < 2^62) to double rounded to odd -- toward zero, then the last bit set
      // when inexact -- keeps enough to round to float once: 53 >= 24 + 2 bits.
      double d = static_cast<double>(a);
      const auto back = static_cast<std::int64_t>(d);
      if (back != a) {
        auto bits = std::bit_cast<std::uint64_t>(d);
        if (a > 0 ? back > a : back < a) --bits;  // it rounded away from zero
        d = std::bit_cast<double>(bits | 1);
      }
      return narrowed<float>(d * power_of_two(scale));  // the scaling is exact
    }
    if (a == 0) return T(0.0f);
    const bool negative = a < 0;
    const std::uint64_t mag =
        negative ? std::uint64_t{0} - static_cast<std::uint64_t>(a) : static_cast<std::uint64_t>(a);
    const int lead = 63 - std::countl_zero(mag);
    int top = lead + scale;  // the exponent of the leading bit
    // Normal results straight into float's bits; subnormal, overflowing: the general path.
    if (top >= F::min_exp + F::p - 1 && top < F::max_exp) {
      std::uint64_t m = 0;
      if (lead < F::p) {
        m = mag << (F::p - 1 - lead);
      } else {
        m = shift_right_even(mag, lead - (F::p - 1));
        if ((m >> F::p) != 0) {
          m >>= 1;
          ++top;
        }
      }
      const std::uint32_t bits = (negative ? 0x80000000u : 0u) |
                                 (static_cast<std::uint32_t>(top + 127) << 23) |
                                 (static_cast<std::uint32_t>(m << (24 - F::p)) & 0x7fffffu);
      return T(std::bit_cast<float>(bits));
    }
    const u128 s = negative ? u128{0} - u128{mag} : u128{mag};
    return narrowed<T>(round_once(s, scale, F::p, F::min_exp));
  }
}

template <class Op>
inline constexpr bool supported_op = std::is_same_v<Op, plus> || std::is_same_v<Op, average>;

template <class T, class Op>
constexpr void check_call() {
  static_assert(summable<T>,
                "chorus::reproducible sums float, double, half and bfloat16 (integer sums are "
                "reproducible already)");
  static_assert(supported_op<Op>, "chorus::reproducible supports chorus::plus and chorus::average");
}

/// The algorithm tag among the trailing arguments (automatic when none).
template <class... Extra>
auto algorithm_of(const Extra&... extra) {
  static_assert(sizeof...(Extra) <= 1,
                "chorus::reproducible takes at most one trailing argument: an algorithm tag");
  if constexpr (sizeof...(Extra) == 0) {
    return algo::automatic{};
  } else {
    static_assert((algo::tag<Extra> && ...),
                  "chorus::reproducible's trailing argument must be an algorithm tag");
    return (extra, ...);
  }
}

template <class T, class Op>
T finish(typename format<T>::acc a, typename format<T>::code c, std::uint64_t terms) {
  const T sum = from_fixed<T>(a, c);
  if constexpr (std::is_same_v<Op, average>) {
    return average{}.finalize(sum, static_cast<int>(terms));
  } else {
    return sum;
  }
}

template <class Transport>
void check_terms(communicator<Transport>& comm, const char* api, std::uint64_t terms) {
  if (terms > max_terms) {
    throw error(errc::invalid_argument,
                std::string("chorus::") + api + " with chorus::reproducible: " +
                    std::to_string(terms) + " terms in all (over " + std::to_string(comm.size()) +
                    " ranks) is more than the " + std::to_string(max_terms) +
                    " its exact integer sum holds; sum in groups of fewer terms");
  }
}

/// Buffers kept with the communicator between calls (`communicator::extension`): a large
/// sum would otherwise map, fault in and zero fresh pages on every call.
struct scratch {
  struct buffer {
    std::unique_ptr<std::byte[]> bytes;
    std::size_t capacity = 0;
    template <class U>
    std::span<U> as(std::size_t n) {
      if (n * sizeof(U) > capacity) {
        bytes.reset(new std::byte[n * sizeof(U)]);  // implicitly creates the U objects
        capacity = n * sizeof(U);
      }
      return {reinterpret_cast<U*>(bytes.get()), n};
    }
  };
  buffer codes, sums, results;
};

/// The agreed codes of `n` elements: this rank's over its terms (`terms`: whole terms of
/// `n` elements back to back, none included), then the maximum over every rank.
template <class Transport, class T>
std::span<typename format<T>::code> agreed_codes(communicator<Transport>& comm,
                                                 std::span<const T> terms, std::size_t n) {
  using C = typename format<T>::code;
  auto codes = comm.template extension<scratch>().codes.template as<C>(n);
  if (terms.empty()) std::fill(codes.begin(), codes.end(), C{0});
  for (std::size_t at = 0; at < terms.size(); at += n) {
    for (std::size_t i = 0; i < n; ++i) {
      const C c = code_of(terms[at + i]);
      codes[i] = at == 0 || c > codes[i] ? c : codes[i];
    }
  }
  chorus::all_reduce(comm, codes, maximum{});
  return codes;
}

/// This rank's terms as integers on the agreed grids, summed (exactly) over its terms.
template <class Transport, class T>
std::span<typename format<T>::acc> local_sum(communicator<Transport>& comm,
                                             std::span<const T> terms, std::size_t n,
                                             std::span<const typename format<T>::code> codes) {
  using A = typename format<T>::acc;
  auto acc = comm.template extension<scratch>().sums.template as<A>(n);
  if (terms.empty()) std::fill(acc.begin(), acc.end(), A{});
  for (std::size_t at = 0; at < terms.size(); at += n) {
    for (std::size_t i = 0; i < n; ++i) {
      const A q = to_fixed(terms[at + i], codes[i]);
      acc[i] = at == 0 ? q : plus{}(acc[i], q);
    }
  }
  return acc;
}

}  // namespace detail::repro

template <>
struct collective_policy_traits<reproducible> {
  static constexpr bool enabled = true;
  static constexpr bool rooted = true;  // reduce too
  template <class T>
  using C = typename detail::repro::format<T>::code;
  template <class T>
  using A = typename detail::repro::format<T>::acc;

  template <class Tr, class T, class Op, class... Extra>
  static void all_reduce(communicator<Tr>& comm, std::span<T> data, const Op&, const reproducible&,
                         Extra&... extra) {
    namespace r = detail::repro;
    r::check_call<T, Op>();
    const auto a = r::algorithm_of(extra...);
    const auto terms = static_cast<std::uint64_t>(comm.size());
    r::check_terms(comm, "all_reduce", terms);
    const std::span<const T> in(data);
    const auto codes = r::agreed_codes(comm, in, data.size());
    const auto acc = r::local_sum(comm, in, data.size(), std::span<const C<T>>(codes));
    chorus::all_reduce(comm, acc, plus{}, a);
    for (std::size_t i = 0; i < data.size(); ++i)
      data[i] = r::finish<T, Op>(acc[i], codes[i], terms);
  }

  template <class Tr, class T, class Op, class... Extra>
  static void reduce_scatter(const char* api, communicator<Tr>& comm, std::span<const T> in,
                             std::span<T> out, const std::vector<std::size_t>& counts, const Op&,
                             const reproducible&, Extra&... extra) {
    namespace r = detail::repro;
    r::check_call<T, Op>();
    const auto a = r::algorithm_of(extra...);
    const auto terms = static_cast<std::uint64_t>(comm.size());
    r::check_terms(comm, api, terms);
    std::size_t total = 0, offset = 0;
    for (std::size_t j = 0; j < counts.size(); ++j) {
      if (static_cast<int>(j) == comm.rank()) offset = total;
      total += counts[j];
    }
    if (in.size() != total || out.size() != counts[static_cast<std::size_t>(comm.rank())]) {
      throw error(errc::invalid_argument,
                  std::string("chorus::") + api + " with chorus::reproducible: the input has " +
                      std::to_string(in.size()) + " elements and the output " +
                      std::to_string(out.size()) + "; they must be the sum of the counts (" +
                      std::to_string(total) + ") and this rank's count (" +
                      std::to_string(counts[static_cast<std::size_t>(comm.rank())]) + ")");
    }
    const auto codes = r::agreed_codes(comm, in, in.size());
    const auto acc = r::local_sum(comm, in, in.size(), std::span<const C<T>>(codes));
    const auto mine = comm.template extension<r::scratch>().results.template as<A<T>>(out.size());
    chorus::reduce_scatter_v(comm, std::span<const A<T>>(acc), mine, counts, plus{}, a);
    for (std::size_t i = 0; i < out.size(); ++i) {
      out[i] = r::finish<T, Op>(mine[i], codes[offset + i], terms);
    }
  }

  template <class Tr, class T, class Op, class... Extra>
  static void reduce(communicator<Tr>& comm, std::span<const T> in, std::span<T> out, const Op&,
                     int root, const reproducible&, Extra&... extra) {
    namespace r = detail::repro;
    r::check_call<T, Op>();
    const auto a = r::algorithm_of(extra...);
    const auto terms = static_cast<std::uint64_t>(comm.size());
    r::check_terms(comm, "reduce", terms);
    // Every rank needs the exponents to round its terms; only the root gets the sum.
    const auto codes = r::agreed_codes(comm, in, in.size());
    const auto acc = r::local_sum(comm, in, in.size(), std::span<const C<T>>(codes));
    const auto sum = comm.template extension<r::scratch>().results.template as<A<T>>(
        comm.rank() == root ? in.size() : 0);
    chorus::reduce(comm, std::span<const A<T>>(acc), sum, plus{}, root, a);
    for (std::size_t i = 0; i < out.size(); ++i) out[i] = r::finish<T, Op>(sum[i], codes[i], terms);
  }
};

/// The reproducible sum (or mean) over every term of every rank: this rank holds
/// `terms.size() / out.size()` terms of `out.size()` elements back to back (any number,
/// zero included, and not the same on every rank); every rank gets the result in `out`.
/// The bits depend only on the multiset of terms: the same terms spread over 1 or 8 ranks,
/// in any order, with any algorithm, give the same bits. `average` divides by the number
/// of terms in all. At most 2^20 terms in all.
template <transport Transport, class T, class Op, class... Extra>
void reproducible_sum(communicator<Transport>& comm, std::span<const T> terms, std::span<T> out, Op,
                      const Extra&... extra) {
  namespace r = detail::repro;
  r::check_call<T, Op>();
  const auto a = r::algorithm_of(extra...);
  const std::size_t n = out.size();
  if ((n == 0 && !terms.empty()) || (n != 0 && terms.size() % n != 0)) {
    throw error(errc::invalid_argument,
                "chorus::reproducible_sum: " + std::to_string(terms.size()) +
                    " input elements are not a whole number of terms of " + std::to_string(n) +
                    " elements (the output's size)");
  }
  std::uint64_t count[1] = {n == 0 ? 0 : terms.size() / n};
  chorus::all_reduce(comm, std::span<std::uint64_t>(count), plus{});
  r::check_terms(comm, "reproducible_sum", count[0]);
  const auto codes = r::agreed_codes(comm, terms, n);
  using C = typename r::format<T>::code;
  const auto acc = r::local_sum(comm, terms, n, std::span<const C>(codes));
  chorus::all_reduce(comm, acc, plus{}, a);
  for (std::size_t i = 0; i < n; ++i) out[i] = r::finish<T, Op>(acc[i], codes[i], count[0]);
}

}  // namespace chorus::inline v0

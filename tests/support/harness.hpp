#pragma once
// Shared machinery of the collective tests: rank threads, failure collection, inputs whose
// exact result is known, and a serial reference.
//
// Inputs follow the nccl-tests idea: values are small integers (or +-1 and 2 for products)
// chosen per (op, rank, index) so that every reduction order gives the same exact result in
// every element type, including half and bfloat16. A wrong block, a block reduced twice or
// not at all, or a misplaced element therefore changes the result.
#include <chorus/chorus.hpp>

#include <catch2/catch.hpp>

#include <cstdint>
#include <cstring>
#include <mutex>
#include <sstream>
#include <string>
#include <tuple>
#include <type_traits>
#include <vector>

namespace harness {

using all_types =
    std::tuple<std::int8_t, std::uint8_t, std::int16_t, std::uint16_t, std::int32_t, std::uint32_t,
               std::int64_t, std::uint64_t, chorus::half, chorus::bfloat16, float, double>;

inline constexpr int rank_counts[] = {1, 2, 3, 4, 5, 7, 8, 16};

/// Thread-safe list of failure messages (Catch2 assertions are not thread-safe).
class failures {
 public:
  void add(std::string message) {
    std::lock_guard lock(mutex_);
    ++count_;
    if (messages_.size() < 20) messages_.push_back(std::move(message));
  }
  [[nodiscard]] std::size_t count() const {
    std::lock_guard lock(mutex_);
    return count_;
  }
  [[nodiscard]] std::string report() const {
    std::lock_guard lock(mutex_);
    std::string s = std::to_string(count_) + " failure(s)";
    for (const auto& m : messages_) s += "\n  " + m;
    return s;
  }

 private:
  mutable std::mutex mutex_;
  std::vector<std::string> messages_;
  std::size_t count_ = 0;
};

/// Runs `fn(comm)` on `ranks` inproc ranks; an exception on any rank fails the test.
template <class Fn>
void run_ranks(int ranks, Fn&& fn) {
  chorus::communicator_options options;
  options.timeout = std::chrono::seconds(120);
  chorus::inproc::run(ranks, std::forward<Fn>(fn), options);
}

/// A user op, to prove lambdas/functors work in every algorithm: max written by hand.
struct custom_max {
  template <class T>
  T operator()(T a, T b) const {
    return a < b ? b : a;
  }
};

/// Which family of inputs an op needs.
enum class input_kind { sum, product, ordered, bits };

template <class Op>
constexpr input_kind input_for() {
  using chorus::op_kind;
  constexpr op_kind k = chorus::op_kind_v<Op>;
  if constexpr (k == op_kind::sum || k == op_kind::average) return input_kind::sum;
  if constexpr (k == op_kind::product) return input_kind::product;
  if constexpr (k == op_kind::bit_and || k == op_kind::bit_or || k == op_kind::bit_xor) {
    return input_kind::bits;
  }
  return input_kind::ordered;
}

template <class T>
T from_int(long long v) {
  if constexpr (chorus::is_float16_v<T>) {
    return T(static_cast<float>(v));
  } else {
    return static_cast<T>(v);
  }
}

/// The input element of `rank` at `index` for inputs of kind `k`.
template <class T>
T input_value(input_kind k, int rank, std::size_t index) {
  const long long r = rank;
  const auto i = static_cast<long long>(index);
  constexpr bool is_signed = !std::is_unsigned_v<T>;
  switch (k) {
    case input_kind::sum: {  // |sum| <= 16 * 5: exact in int8 and half
      const long long v = (r * 7 + i * 3) % 11;
      return from_int<T>(is_signed ? v - 5 : v);
    }
    case input_kind::product: {  // +-1, and 2 on at most every fifth rank: |product| <= 16
      if ((r + i) % 5 == 0) return from_int<T>(2);
      return from_int<T>(is_signed && ((r * 3 + i) % 2) ? -1 : 1);
    }
    case input_kind::ordered: {
      const long long v = (r * 13 + i * 7) % 23;
      return from_int<T>(is_signed ? v - 11 : v);
    }
    case input_kind::bits: {
      const auto v = static_cast<unsigned long long>((r + 1) * 0x9E3779B9ll + i * 0x7F4A7C15ll);
      if constexpr (chorus::is_float16_v<T>) {
        return T::from_bits(static_cast<std::uint16_t>((v ^ (v >> 17)) & 0x3bff));  // finite
      } else if constexpr (std::is_floating_point_v<T>) {
        return static_cast<T>(static_cast<std::int32_t>(v ^ (v >> 17)));
      } else {
        return static_cast<T>(v ^ (v >> 17));
      }
    }
  }
  return T{};
}

/// A value no correct collective writes, so untouched outputs are caught.
template <class T>
T poison() {
  return from_int<T>(std::is_unsigned_v<T> ? 99 : -99);
}

template <class T>
bool same(T a, T b) {
  if constexpr (chorus::is_float16_v<T>) {
    return a.bits == b.bits;
  } else {
    return a == b;
  }
}

template <class T>
std::string show(T v) {
  std::ostringstream os;
  if constexpr (chorus::is_float16_v<T>) {
    os << float(v);
  } else if constexpr (sizeof(T) == 1) {
    os << static_cast<int>(v);
  } else {
    os << v;
  }
  return os.str();
}

/// The reduction over ranks 0..P-1 of element `index` (serial reference).
template <class T, class Op>
T reference_reduce(const Op& op, input_kind k, int ranks, std::size_t index) {
  T acc = input_value<T>(k, 0, index);
  for (int r = 1; r < ranks; ++r) acc = static_cast<T>(op(acc, input_value<T>(k, r, index)));
  if constexpr (chorus::finalizing_op<Op, T>) acc = op.finalize(acc, ranks);
  return acc;
}

/// Inputs of the sum, product and ordered kinds repeat with this period in the index
/// (11, 10 and 23 divide it), so their reference needs computing for one period only.
inline constexpr std::size_t input_period = 11 * 10 * 23;

/// The serial reference for indices below `end`; for long vectors it is computed once per
/// period (bit patterns, which do not repeat, are computed per element).
template <class T, class Op>
class reference {
 public:
  reference(const Op& op, input_kind k, int ranks, std::size_t end)
      : op_(op), kind_(k), ranks_(ranks) {
    if (k != input_kind::bits && end > input_period) {
      table_.reserve(input_period);
      for (std::size_t i = 0; i < input_period; ++i)
        table_.push_back(reference_reduce<T>(op, k, ranks, i));
    }
  }
  T operator()(std::size_t i) const {
    return table_.empty() ? reference_reduce<T>(op_, kind_, ranks_, i) : table_[i % input_period];
  }

 private:
  Op op_;
  input_kind kind_;
  int ranks_;
  std::vector<T> table_;
};

/// The op objects every reduction test runs, filtered per type by `valid_op`.
using all_ops =
    std::tuple<chorus::plus, chorus::multiplies, chorus::minimum, chorus::maximum, chorus::average,
               chorus::bit_and, chorus::bit_or, chorus::bit_xor, custom_max>;

template <class Op, class T>
inline constexpr bool valid_op = !chorus::is_bitwise_op_v<Op> || std::is_integral_v<T>;

template <class Tuple, class Fn>
void for_each_type(Fn&& fn) {
  std::apply([&](auto... t) { (fn(t), ...); }, Tuple{});
}

/// "ring int8 plus count=7 in_place=1"
template <class T, class Op, class Algo>
std::string label(const char* what, [[maybe_unused]] const Algo& a, std::size_t count,
                  bool in_place, int rank) {
  std::string algo_name = "automatic";
  if constexpr (std::is_same_v<Algo, chorus::algo::dynamic>) {
    if (a.id) algo_name = std::string(chorus::schedule::name(*a.id));
    algo_name += "(dynamic, chunk " + std::to_string(a.chunk_bytes) + ")";
  } else if constexpr (!std::is_same_v<Algo, chorus::algo::automatic>) {
    algo_name = std::string(chorus::schedule::name(Algo::id));
  }
  return std::string(what) + " " + algo_name + " " +
         std::string(chorus::name(chorus::dtype_of<T>)) + " " +
         std::string(chorus::name(chorus::op_kind_v<Op>)) + " count=" + std::to_string(count) +
         " in_place=" + std::to_string(in_place) + " rank=" + std::to_string(rank);
}

/// Compares `got` with `want(i)` and records the first mismatch.
template <class T, class Want>
void expect_all(failures& f, const std::string& what, std::span<const T> got, Want&& want) {
  for (std::size_t i = 0; i < got.size(); ++i) {
    const T w = want(i);
    if (!same(got[i], w)) {
      f.add(what + ": element " + std::to_string(i) + " is " + show(got[i]) + ", expected " +
            show(w));
      return;
    }
  }
}

/// The tags of every algorithm, with small pipeline pieces so that pipelining is exercised
/// even by small counts.
using all_algos =
    std::tuple<chorus::algo::ring, chorus::algo::tree, chorus::algo::double_binary_tree,
               chorus::algo::recursive_doubling, chorus::algo::halving_doubling,
               chorus::algo::direct, chorus::algo::hierarchical, chorus::algo::automatic>;

template <class Algo>
Algo small_pieces() {
  Algo a{};
  if constexpr (requires { a.chunk_bytes; }) a.chunk_bytes = 24;
  return a;
}

/// Calls `fn(tag)` for every algorithm tag that can run collective `C`.
template <chorus::schedule::collective C, class Fn>
void for_each_algo(Fn&& fn) {
  for_each_type<all_algos>([&](auto a) {
    if constexpr (chorus::algo::can_run<decltype(a), C>) fn(a);
  });
}

/// Every algorithm that can run `c` (`one_sided` only where the transport has windows,
/// `windows`), and automatic, as run-time choices with small pipeline pieces (24 bytes) so
/// that pipelining is exercised by small counts too. The small-count matrices use these:
/// one instantiation per (type, op) instead of per (type, op, tag) keeps the build fast;
/// the tags themselves go through the same path (large-count tests).
inline std::vector<chorus::algo::dynamic> dynamic_algos(chorus::schedule::collective c,
                                                        bool windows = false) {
  std::vector<chorus::algo::dynamic> out;
  for (auto a : chorus::schedule::all_algorithms) {
    if (chorus::schedule::supports(a, c) && (windows || chorus::schedule::has_schedule(a))) {
      out.push_back({a, 24});
    }
  }
  out.push_back({std::nullopt, 0});
  return out;
}

/// Calls `fn(op, index)` for every op that can reduce `T`.
template <class T, class Fn>
void for_each_op(Fn&& fn) {
  int index = 0;
  for_each_type<all_ops>([&](auto op) {
    if constexpr (valid_op<decltype(op), T>) fn(op, index++);
  });
}

/// Counts every collective test runs for `ranks` ranks: empty, one, odd, not divisible by
/// the rank count, and a few elements per rank.
inline std::vector<std::size_t> small_counts(int ranks) {
  const auto p = static_cast<std::size_t>(ranks);
  return {0, 1, 7, 13 * p + 5};
}

/// The large count of the issue: 2^20 + 3 elements.
inline constexpr std::size_t large_count = (std::size_t{1} << 20) + 3;

}  // namespace harness

#pragma once
/// \file
/// Reduction operators: the built-ins and the `reduction_op` concept that any user functor or
/// lambda satisfies.
///
/// A reduction op combines two elements into one. chorus requires it to be associative and
/// commutative (as MPI's predefined ops and NCCL's are); the algorithms reorder and regroup
/// the operands. Floating-point addition is only approximately associative: results are
/// deterministic for a given (algorithm, rank count, count) -- every run gives the same bits
/// -- but two algorithms may differ in the last bits.
///
/// User functors and lambdas are called directly inside the reduction loop, so the compiler
/// inlines them (NCCL can only offer its fixed set of ops).
///
/// The built-ins are `CHORUS_HOST_DEVICE`, so `device::reduce` (device/reduce.cuh) applies
/// them in kernels with the same semantics; user functors for the device are marked
/// `__host__ __device__` by their authors.
#include <chorus/core/types.hpp>

#include <cmath>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <type_traits>

namespace chorus::inline v0 {

/// Which built-in operation an op is, so a transport can map it to a native one (NCCL's
/// ncclSum, MPI's MPI_SUM). User ops are `custom`.
enum class op_kind : std::uint8_t {
  sum,
  product,
  min,
  max,
  average,
  bit_and,
  bit_or,
  bit_xor,
  custom,
};

inline constexpr std::string_view name(op_kind k) noexcept {
  constexpr std::string_view names[] = {"sum",     "prod",   "min",     "max",   "avg",
                                        "bit_and", "bit_or", "bit_xor", "custom"};
  return names[static_cast<std::size_t>(k)];
}

namespace detail {
/// Integer arithmetic that wraps modulo 2^bits instead of overflowing into undefined
/// behaviour (NCCL and MPI wrap too). Small types are widened to unsigned int first so the
/// integer promotions cannot produce a signed overflow either.
template <class T>
using wrap_t =
    std::conditional_t<(sizeof(T) < sizeof(unsigned)), unsigned, std::make_unsigned_t<T>>;

template <class T>
CHORUS_HOST_DEVICE constexpr T wrapping_add(T a, T b) noexcept {
  return static_cast<T>(static_cast<wrap_t<T>>(a) + static_cast<wrap_t<T>>(b));
}
template <class T>
CHORUS_HOST_DEVICE constexpr T wrapping_mul(T a, T b) noexcept {
  return static_cast<T>(static_cast<wrap_t<T>>(a) * static_cast<wrap_t<T>>(b));
}

template <class T>
CHORUS_HOST_DEVICE constexpr bool is_nan(T v) noexcept {
  if constexpr (is_float16_v<T>) {
    return std::isnan(float(v));
  } else if constexpr (std::is_floating_point_v<T>) {
    return std::isnan(v);
  } else {
    return false;
  }
}
}  // namespace detail

namespace detail {
/// A user element type with the operator a built-in op needs.
template <class T>
concept user_addable = !element_type<T> && requires(T a, T b) {
  { a + b } -> std::convertible_to<T>;
};
template <class T>
concept user_multipliable = !element_type<T> && requires(T a, T b) {
  { a* b } -> std::convertible_to<T>;
};
template <class T>
concept user_ordered = !element_type<T> && requires(T a, T b) {
  { a < b } -> std::convertible_to<bool>;
};
}  // namespace detail

/// Sum. Integers wrap on overflow; 16-bit floats add in float and round. A user type with
/// `operator+` sums with it.
struct plus {
  static constexpr op_kind kind = op_kind::sum;
  template <class T>
  requires(element_type<T> || detail::user_addable<T>) CHORUS_HOST_DEVICE constexpr T operator()(
      T a, T b) const noexcept(element_type<T>) {
    if constexpr (std::is_integral_v<T>) {
      return detail::wrapping_add(a, b);
    } else {
      return static_cast<T>(a + b);
    }
  }
};

/// Product. Integers wrap on overflow. A user type with `operator*` multiplies with it.
struct multiplies {
  static constexpr op_kind kind = op_kind::product;
  template <class T>
  requires(element_type<T> || detail::user_multipliable<T>) CHORUS_HOST_DEVICE constexpr T
  operator()(T a, T b) const noexcept(element_type<T>) {
    if constexpr (std::is_integral_v<T>) {
      return detail::wrapping_mul(a, b);
    } else {
      return static_cast<T>(a * b);
    }
  }
};

/// Minimum. A NaN operand gives NaN (the result does not depend on operand order). A user
/// type with `operator<` compares with it.
struct minimum {
  static constexpr op_kind kind = op_kind::min;
  template <class T>
  requires(element_type<T> || detail::user_ordered<T>) CHORUS_HOST_DEVICE constexpr T operator()(
      T a, T b) const noexcept(element_type<T>) {
    if (detail::is_nan(a)) return a;
    if (detail::is_nan(b)) return b;
    return b < a ? b : a;
  }
};

/// Maximum. A NaN operand gives NaN. A user type with `operator<` compares with it.
struct maximum {
  static constexpr op_kind kind = op_kind::max;
  template <class T>
  requires(element_type<T> || detail::user_ordered<T>) CHORUS_HOST_DEVICE constexpr T operator()(
      T a, T b) const noexcept(element_type<T>) {
    if (detail::is_nan(a)) return a;
    if (detail::is_nan(b)) return b;
    return a < b ? b : a;
  }
};

/// Mean over ranks: summed like `plus`, then divided by the number of ranks once, at the
/// end (integers divide with truncation toward zero, as C++ does; the rank count is never
/// narrowed to the element type, so 256 ranks of uint8 divide by 256, not by 0).
struct average {
  static constexpr op_kind kind = op_kind::average;
  template <element_type T>
  CHORUS_HOST_DEVICE constexpr T operator()(T a, T b) const noexcept {
    return plus{}(a, b);
  }
  /// Turns the sum over `ranks` ranks into the mean.
  template <element_type T>
  CHORUS_HOST_DEVICE constexpr T finalize(T sum, int ranks) const noexcept {
    if constexpr (std::is_integral_v<T> && std::is_signed_v<T>) {
      return static_cast<T>(static_cast<long long>(sum) / static_cast<long long>(ranks));
    } else if constexpr (std::is_integral_v<T>) {
      return static_cast<T>(static_cast<unsigned long long>(sum) /
                            static_cast<unsigned long long>(ranks));
    } else if constexpr (is_float16_v<T>) {
      return T(float(sum) / static_cast<float>(ranks));
    } else {
      return static_cast<T>(sum / static_cast<T>(ranks));
    }
  }
};

/// Bitwise and; integer element types only.
struct bit_and {
  static constexpr op_kind kind = op_kind::bit_and;
  template <std::integral T>
  CHORUS_HOST_DEVICE constexpr T operator()(T a, T b) const noexcept {
    return static_cast<T>(a & b);
  }
};

/// Bitwise or; integer element types only.
struct bit_or {
  static constexpr op_kind kind = op_kind::bit_or;
  template <std::integral T>
  CHORUS_HOST_DEVICE constexpr T operator()(T a, T b) const noexcept {
    return static_cast<T>(a | b);
  }
};

/// Bitwise exclusive or; integer element types only.
struct bit_xor {
  static constexpr op_kind kind = op_kind::bit_xor;
  template <std::integral T>
  CHORUS_HOST_DEVICE constexpr T operator()(T a, T b) const noexcept {
    return static_cast<T>(a ^ b);
  }
};

/// The built-in kind of `Op`, or `op_kind::custom` for user functors and lambdas.
template <class Op>
inline constexpr op_kind op_kind_v = [] {
  if constexpr (requires { Op::kind; }) {
    return Op::kind;
  } else {
    return op_kind::custom;
  }
}();

/// True for the bitwise built-ins.
template <class Op>
inline constexpr bool is_bitwise_op_v =
    op_kind_v<Op> == op_kind::bit_and || op_kind_v<Op> == op_kind::bit_or ||
    op_kind_v<Op> == op_kind::bit_xor;

/// `Op` reduces elements of type `T`: copyable, and `op(T, T)` yields something convertible
/// to `T`.
template <class Op, class T>
concept reduction_op =
    transferable<T> && std::copy_constructible<Op> && std::is_invocable_v<const Op&, T, T> &&
    std::convertible_to<std::invoke_result_t<const Op&, T, T>, T>;

/// `Op` needs a final step after the reduction (only `average` among the built-ins).
template <class Op, class T>
concept finalizing_op = requires(const Op& op, T v, int ranks) {
  { op.finalize(v, ranks) } -> std::convertible_to<T>;
};

namespace detail {
/// Fails compilation with one readable sentence when `Op` cannot reduce `T`.
template <class Op, class T>
consteval void check_reduction_op() {
  static_assert(transferable<T>,
                "chorus: the element type must be trivially copyable (chorus moves elements "
                "as bytes); use a struct of plain values.");
  if constexpr (is_bitwise_op_v<Op>) {
    static_assert(std::is_integral_v<T>,
                  "chorus: bit_and, bit_or and bit_xor reduce integer element types only; "
                  "use plus, minimum, maximum or a custom op for floating-point data.");
  } else if constexpr (!element_type<T> && op_kind_v<Op> != op_kind::custom) {
    static_assert(reduction_op<Op, T>,
                  "chorus: a built-in op reduces a user element type only through the "
                  "operator it needs (plus: +, multiplies: *, minimum and maximum: <; average "
                  "none), and this type lacks it; define the operator or pass your own op, "
                  "e.g. [](T a, T b) { ... }.");
  } else {
    static_assert(reduction_op<Op, T>,
                  "chorus: the reduction op must be callable as op(T, T) with the element "
                  "type T and return a value convertible to T.");
  }
}
}  // namespace detail

}  // namespace chorus::inline v0

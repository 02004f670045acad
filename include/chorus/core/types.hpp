#pragma once
/// \file
/// Element types chorus reduces and moves: fixed-width integers, float, double, and the
/// host-side 16-bit floats `chorus::half` (IEEE binary16) and `chorus::bfloat16`.
///
/// The 16-bit types are storage types: arithmetic converts to float, computes, and rounds
/// back to nearest-even, so a reduction of 16-bit values accumulates each binary step in
/// float precision (the same contract as NCCL's and PyTorch's half reductions on the host).
///
/// The conversions and the 16-bit arithmetic are `CHORUS_HOST_DEVICE`: device code compiled
/// by nvcc (user functors in `device::reduce`) runs the very same rounding.
#include <chorus/config.hpp>

#include <bit>
#include <cmath>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>
#include <type_traits>

namespace chorus::inline v0 {

namespace detail {
/// `std::bit_cast` that device code can call too (nvcc compiles `std::bit_cast` for the host
/// only); host compilers use `std::bit_cast` itself.
template <class To, class From>
CHORUS_HOST_DEVICE constexpr To bits_as(const From& from) noexcept {
#if defined(__CUDACC__)
  return __builtin_bit_cast(To, from);
#else
  return std::bit_cast<To>(from);
#endif
}

CHORUS_HOST_DEVICE inline constexpr std::uint16_t float_to_half_bits(float f) noexcept {
  const std::uint32_t x = detail::bits_as<std::uint32_t>(f);
  const std::uint32_t sign = (x >> 16) & 0x8000u;
  const std::uint32_t abs = x & 0x7fffffffu;
  if (abs >= 0x7f800000u) {  // inf or NaN: keep NaN quiet and non-zero
    return static_cast<std::uint16_t>(sign | 0x7c00u | (abs > 0x7f800000u ? 0x200u : 0u));
  }
  if (abs >= 0x477ff000u) return static_cast<std::uint16_t>(sign | 0x7c00u);  // rounds to inf
  if (abs < 0x38800000u) {  // result is subnormal in half (or zero)
    if (abs < 0x33000000u) return static_cast<std::uint16_t>(sign);  // below half of 2^-24
    // value in units of 2^-24 (the half subnormal step) is mant * 2^(exp - 126)
    const std::uint32_t exp = abs >> 23;
    const std::uint32_t mant = (abs & 0x7fffffu) | 0x800000u;
    const std::uint32_t shift = 126u - exp;  // 14..24 here
    const std::uint32_t rem = mant & ((1u << shift) - 1u);
    const std::uint32_t half_point = 1u << (shift - 1u);
    std::uint32_t r = mant >> shift;
    if (rem > half_point || (rem == half_point && (r & 1u))) ++r;  // nearest even
    return static_cast<std::uint16_t>(sign | r);
  }
  // normal: rebias exponent 127 -> 15 and round the 13 dropped mantissa bits to nearest even
  std::uint32_t r = abs - 0x38000000u;
  r += 0xfffu + ((r >> 13) & 1u);
  return static_cast<std::uint16_t>(sign | (r >> 13));
}

CHORUS_HOST_DEVICE inline constexpr float half_bits_to_float(std::uint16_t h) noexcept {
  const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
  const std::uint32_t exp = (h >> 10) & 0x1fu;
  std::uint32_t mant = h & 0x3ffu;
  if (exp == 0x1fu) return detail::bits_as<float>(sign | 0x7f800000u | (mant << 13));
  if (exp == 0) {
    if (mant == 0) return detail::bits_as<float>(sign);
    // subnormal: value = mant * 2^-24
    const float v = static_cast<float>(mant) * 5.9604644775390625e-8f;
    return sign ? -v : v;
  }
  return detail::bits_as<float>(sign | ((exp + 112u) << 23) | (mant << 13));
}

CHORUS_HOST_DEVICE inline constexpr std::uint16_t float_to_bfloat16_bits(float f) noexcept {
  const std::uint32_t x = detail::bits_as<std::uint32_t>(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) return static_cast<std::uint16_t>((x >> 16) | 0x40u);
  const std::uint32_t rounding = 0x7fffu + ((x >> 16) & 1u);  // nearest even
  return static_cast<std::uint16_t>((x + rounding) >> 16);
}

CHORUS_HOST_DEVICE inline constexpr float bfloat16_bits_to_float(std::uint16_t b) noexcept {
  return detail::bits_as<float>(static_cast<std::uint32_t>(b) << 16);
}

/// Shared arithmetic of the 16-bit float storage types: convert, compute in float, round.
template <class Derived>
struct float16_arithmetic {
  friend CHORUS_HOST_DEVICE constexpr Derived operator+(Derived a, Derived b) noexcept {
    return Derived(float(a) + float(b));
  }
  friend CHORUS_HOST_DEVICE constexpr Derived operator-(Derived a, Derived b) noexcept {
    return Derived(float(a) - float(b));
  }
  friend CHORUS_HOST_DEVICE constexpr Derived operator*(Derived a, Derived b) noexcept {
    return Derived(float(a) * float(b));
  }
  friend CHORUS_HOST_DEVICE constexpr Derived operator/(Derived a, Derived b) noexcept {
    return Derived(float(a) / float(b));
  }
  friend CHORUS_HOST_DEVICE constexpr Derived operator-(Derived a) noexcept {
    return Derived(-float(a));
  }
  friend CHORUS_HOST_DEVICE constexpr bool operator==(Derived a, Derived b) noexcept {
    return float(a) == float(b);
  }
  friend CHORUS_HOST_DEVICE constexpr bool operator<(Derived a, Derived b) noexcept {
    return float(a) < float(b);
  }
  friend CHORUS_HOST_DEVICE constexpr bool operator>(Derived a, Derived b) noexcept {
    return float(a) > float(b);
  }
  friend CHORUS_HOST_DEVICE constexpr bool operator<=(Derived a, Derived b) noexcept {
    return float(a) <= float(b);
  }
  friend CHORUS_HOST_DEVICE constexpr bool operator>=(Derived a, Derived b) noexcept {
    return float(a) >= float(b);
  }
};
}  // namespace detail

/// IEEE 754 binary16, host side. Trivially copyable, 2 bytes, layout-compatible with CUDA's
/// `__half`.
struct half : detail::float16_arithmetic<half> {
  std::uint16_t bits = 0;
  half() = default;
  CHORUS_HOST_DEVICE constexpr explicit half(float f) noexcept
      : bits(detail::float_to_half_bits(f)) {}
  CHORUS_HOST_DEVICE constexpr explicit half(double d) noexcept : half(static_cast<float>(d)) {}
  CHORUS_HOST_DEVICE constexpr explicit half(int i) noexcept : half(static_cast<float>(i)) {}
  CHORUS_HOST_DEVICE constexpr explicit operator float() const noexcept {
    return detail::half_bits_to_float(bits);
  }
  CHORUS_HOST_DEVICE static constexpr half from_bits(std::uint16_t b) noexcept {
    half h;
    h.bits = b;
    return h;
  }
};

/// bfloat16 (8-bit exponent, 7-bit mantissa), host side; layout-compatible with
/// `__nv_bfloat16`.
struct bfloat16 : detail::float16_arithmetic<bfloat16> {
  std::uint16_t bits = 0;
  bfloat16() = default;
  CHORUS_HOST_DEVICE constexpr explicit bfloat16(float f) noexcept
      : bits(detail::float_to_bfloat16_bits(f)) {}
  CHORUS_HOST_DEVICE constexpr explicit bfloat16(double d) noexcept
      : bfloat16(static_cast<float>(d)) {}
  CHORUS_HOST_DEVICE constexpr explicit bfloat16(int i) noexcept
      : bfloat16(static_cast<float>(i)) {}
  CHORUS_HOST_DEVICE constexpr explicit operator float() const noexcept {
    return detail::bfloat16_bits_to_float(bits);
  }
  CHORUS_HOST_DEVICE static constexpr bfloat16 from_bits(std::uint16_t b) noexcept {
    bfloat16 h;
    h.bits = b;
    return h;
  }
};

static_assert(sizeof(half) == 2 && std::is_trivially_copyable_v<half>);
static_assert(sizeof(bfloat16) == 2 && std::is_trivially_copyable_v<bfloat16>);

/// Run-time tag of an element type (used in fingerprints, error messages, tools).
enum class dtype : std::uint8_t {
  int8,
  uint8,
  int16,
  uint16,
  int32,
  uint32,
  int64,
  uint64,
  float16,
  bfloat16,
  float32,
  float64,
  byte,  ///< `std::byte` and `char`: moved, not reduced by the built-in ops
  user,  ///< any other trivially copyable type (a fingerprint adds its size)
};

inline constexpr std::string_view name(dtype t) noexcept {
  constexpr std::string_view names[] = {"int8",    "uint8",   "int16",  "uint16",   "int32",
                                        "uint32",  "int64",   "uint64", "float16",  "bfloat16",
                                        "float32", "float64", "byte",   "user type"};
  return names[static_cast<std::size_t>(t)];
}

inline constexpr std::size_t size_of(dtype t) noexcept {
  constexpr std::size_t sizes[] = {1, 1, 2, 2, 4, 4, 8, 8, 2, 2, 4, 8, 1, 0};  // user: varies
  return sizes[static_cast<std::size_t>(t)];
}

namespace detail {
template <class T>
struct dtype_of_impl;
template <>
struct dtype_of_impl<std::int8_t> : std::integral_constant<dtype, dtype::int8> {};
template <>
struct dtype_of_impl<std::uint8_t> : std::integral_constant<dtype, dtype::uint8> {};
template <>
struct dtype_of_impl<std::int16_t> : std::integral_constant<dtype, dtype::int16> {};
template <>
struct dtype_of_impl<std::uint16_t> : std::integral_constant<dtype, dtype::uint16> {};
template <>
struct dtype_of_impl<std::int32_t> : std::integral_constant<dtype, dtype::int32> {};
template <>
struct dtype_of_impl<std::uint32_t> : std::integral_constant<dtype, dtype::uint32> {};
template <>
struct dtype_of_impl<std::int64_t> : std::integral_constant<dtype, dtype::int64> {};
template <>
struct dtype_of_impl<std::uint64_t> : std::integral_constant<dtype, dtype::uint64> {};
template <>
struct dtype_of_impl<half> : std::integral_constant<dtype, dtype::float16> {};
template <>
struct dtype_of_impl<bfloat16> : std::integral_constant<dtype, dtype::bfloat16> {};
template <>
struct dtype_of_impl<float> : std::integral_constant<dtype, dtype::float32> {};
template <>
struct dtype_of_impl<double> : std::integral_constant<dtype, dtype::float64> {};

// `long long` is a distinct type from std::int64_t where int64_t is `long` (LP64 Linux);
// it is the same width, so it reduces as int64 (likewise for unsigned).
template <class T>
requires(std::is_same_v<T, long long> &&
         !std::is_same_v<long long, std::int64_t>) struct dtype_of_impl<T>
    : std::integral_constant<dtype, dtype::int64> {
};
template <class T>
requires(std::is_same_v<T, unsigned long long> &&
         !std::is_same_v<unsigned long long, std::uint64_t>) struct dtype_of_impl<T>
    : std::integral_constant<dtype, dtype::uint64> {
};

template <class T>
concept has_dtype = requires {
  dtype_of_impl<T>::value;
};
}  // namespace detail

/// The built-in element types: what the built-in ops reduce with their own kernels, and
/// what NCCL and the device kernels know.
template <class T>
concept element_type = detail::has_dtype<std::remove_cv_t<T>>;

/// What chorus can move: any trivially copyable object type (its bytes are its value) --
/// the built-in element types, `std::byte`, `char`, and user structs such as a
/// (value, index) pair for MAXLOC. Reducing a user type needs an op for it.
template <class T>
concept transferable =
    std::is_object_v<T> && !std::is_array_v<T> && std::is_trivially_copyable_v<std::remove_cv_t<T>>;

/// The run-time tag of element type `T`.
template <element_type T>
inline constexpr dtype dtype_of = detail::dtype_of_impl<std::remove_cv_t<T>>::value;

namespace detail {
/// The run-time tag of any transferable `T`: its own, `byte`, or `user`.
template <transferable T>
constexpr dtype dtype_for() noexcept {
  using U = std::remove_cv_t<T>;
  if constexpr (element_type<U>) {
    return dtype_of<U>;
  } else if constexpr (std::is_same_v<U, std::byte> || std::is_same_v<U, char>) {
    return dtype::byte;
  } else {
    return dtype::user;
  }
}
}  // namespace detail

/// True for `half` and `bfloat16`.
template <class T>
inline constexpr bool is_float16_v =
    std::is_same_v<std::remove_cv_t<T>, half> || std::is_same_v<std::remove_cv_t<T>, bfloat16>;

/// True for every floating element type (float, double, half, bfloat16).
template <class T>
inline constexpr bool is_floating_element_v = std::is_floating_point_v<T> || is_float16_v<T>;

}  // namespace chorus::inline v0

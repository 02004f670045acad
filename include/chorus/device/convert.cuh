#pragma once
/// \file
/// Device conversions between float and the narrow floating types: `chorus::half`,
/// `chorus::bfloat16` and, in the device layer only, CUDA's fp8 types `__nv_fp8_e4m3` and
/// `__nv_fp8_e5m2` (`<cuda_fp8.h>`).
///
/// The 16-bit conversions give the same bits as the host's (`chorus::detail::
/// float_to_half_bits` and friends in core/types.hpp) for every input, NaN included: the
/// hardware rounds (to nearest even, subnormals and overflow exact) and NaN, which the
/// hardware would make canonical, is rebuilt as the host does (sign | quiet bit for half,
/// the top bits | quiet bit for bfloat16; widening keeps the payload).
///
/// fp8 is rounded to nearest even without saturation, as IEEE types overflow: a value past
/// the largest finite fp8 becomes infinity in e5m2 and NaN in e4m3 (which has no infinity),
/// so an overflowing sum shows instead of being clamped silently.
#include <chorus/core/types.hpp>

#include <cuda_fp16.h>
#include <cuda_fp8.h>

#include <cstdint>
#include <type_traits>

namespace chorus::inline v0::device {

/// The narrow floating types that kernels widen to float, combine and round back:
/// `half`, `bfloat16`, `__nv_fp8_e4m3`, `__nv_fp8_e5m2`.
template <class T>
inline constexpr bool is_narrow_float_v =
    is_float16_v<T> || std::is_same_v<std::remove_cv_t<T>, __nv_fp8_e4m3> ||
    std::is_same_v<std::remove_cv_t<T>, __nv_fp8_e5m2>;

/// Element types of the device layer: chorus's element types and the two fp8 types.
template <class T>
concept device_element = element_type<T> || is_narrow_float_v<T>;

namespace detail {

__device__ inline float half_bits_to_float(std::uint16_t h) noexcept {
  if ((h & 0x7c00u) == 0x7c00u) {  // inf or NaN: keep the payload as the host does
    const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
    return __uint_as_float(sign | 0x7f800000u | (static_cast<std::uint32_t>(h & 0x3ffu) << 13));
  }
  return __half2float(__ushort_as_half(h));
}

__device__ inline std::uint16_t float_to_half_bits(float f) noexcept {
  if (isnan(f)) return static_cast<std::uint16_t>(((__float_as_uint(f) >> 16) & 0x8000u) | 0x7e00u);
  return __half_as_ushort(__float2half_rn(f));
}

__device__ inline float bfloat16_bits_to_float(std::uint16_t b) noexcept {
  return __uint_as_float(static_cast<std::uint32_t>(b) << 16);
}

/// The host's integer rounding (nearest even; NaN keeps its top bits and gets the quiet bit).
__device__ inline std::uint16_t float_to_bfloat16_bits(float f) noexcept {
  const std::uint32_t x = __float_as_uint(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) return static_cast<std::uint16_t>((x >> 16) | 0x40u);
  return static_cast<std::uint16_t>((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}

template <class T>
__device__ inline float fp8_to_float(T v) noexcept {
  constexpr __nv_fp8_interpretation_t kind =
      std::is_same_v<T, __nv_fp8_e4m3> ? __NV_E4M3 : __NV_E5M2;
  return __half2float(__half(__nv_cvt_fp8_to_halfraw(v.__x, kind)));
}

/// The rounding of `__nv_cvt_float_to_fp8(f, __NV_NOSAT, kind)`, which cuda_fp8.h computes
/// in software (through double). From sm_89 on, the hardware converts instead (it only
/// saturates: `cvt.rn.satfinite`), and what lies past the format's overflow threshold
/// (max + half an ulp: 464 for e4m3, 61440 for e5m2, where the tie rounds up) is turned
/// into NaN (e4m3) or infinity (e5m2) as the software does. Checked against the software
/// for every float by the tests (tests/cuda).
template <class T>
__device__ inline __nv_fp8_storage_t float_to_fp8_bits(float f) noexcept {
  constexpr bool e4m3 = std::is_same_v<T, __nv_fp8_e4m3>;
  constexpr __nv_fp8_interpretation_t kind = e4m3 ? __NV_E4M3 : __NV_E5M2;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 890
  const float magnitude = fabsf(f);
  if (e4m3 ? magnitude > 464.0f : magnitude >= 61440.0f) {
    const auto sign = static_cast<__nv_fp8_storage_t>((__float_as_uint(f) >> 24) & 0x80u);
    return static_cast<__nv_fp8_storage_t>(sign | (e4m3 ? 0x7fu : 0x7cu));
  }
  return __nv_cvt_float_to_fp8(f, __NV_SATFINITE, kind);
#else
  return __nv_cvt_float_to_fp8(f, __NV_NOSAT, kind);
#endif
}

template <class T>
__device__ inline T float_to_fp8(float f) noexcept {
  T out;
  out.__x = float_to_fp8_bits<T>(f);
  return out;
}

/// `static_cast<float>(d)` as an x86-64 host computes it: round to nearest even, and a NaN
/// keeps its sign and the top 23 bits of its payload with the quiet bit set (the GPU would
/// return the canonical NaN).
__device__ inline float host_double_to_float(double d) noexcept {
  if (!isnan(d)) return __double2float_rn(d);
  const auto bits = static_cast<std::uint64_t>(__double_as_longlong(d));
  const auto sign = static_cast<std::uint32_t>(bits >> 32) & 0x80000000u;
  const auto payload = static_cast<std::uint32_t>(bits >> 29) & 0x7fffffu;
  return __uint_as_float(sign | 0x7fc00000u | payload);
}

/// `static_cast<double>(f)` as the host computes it: exact, and a NaN keeps its payload
/// with the quiet bit set.
__device__ inline double host_float_to_double(float f) noexcept {
  if (!isnan(f)) return static_cast<double>(f);
  const std::uint32_t x = __float_as_uint(f) | 0x400000u;
  const std::uint64_t bits = (static_cast<std::uint64_t>(x & 0x80000000u) << 32) |
                             (std::uint64_t{0x7ff} << 52) |
                             (static_cast<std::uint64_t>(x & 0x7fffffu) << 29);
  return __longlong_as_double(static_cast<long long>(bits));
}

}  // namespace detail

/// `v` as float, exactly.
template <class T>
requires is_narrow_float_v<T> __device__ inline float widen(T v) noexcept {
  if constexpr (std::is_same_v<T, half>) {
    return detail::half_bits_to_float(v.bits);
  } else if constexpr (std::is_same_v<T, bfloat16>) {
    return detail::bfloat16_bits_to_float(v.bits);
  } else {
    return detail::fp8_to_float(v);
  }
}

/// `f` rounded to the narrow type `T` (nearest even).
template <class T>
requires is_narrow_float_v<T> __device__ inline T narrow(float f) noexcept {
  if constexpr (std::is_same_v<T, half>) {
    return half::from_bits(detail::float_to_half_bits(f));
  } else if constexpr (std::is_same_v<T, bfloat16>) {
    return bfloat16::from_bits(detail::float_to_bfloat16_bits(f));
  } else {
    return detail::float_to_fp8<T>(f);
  }
}

}  // namespace chorus::inline v0::device

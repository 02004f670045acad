#pragma once
/// \file
/// `detail::with_dtype`: from a run-time `dtype` back to the C++ element type, for the code
/// that carries element types as values (compiled mode's library, chorus-perf).
#include <chorus/core/error.hpp>
#include <chorus/core/types.hpp>

#include <cstddef>
#include <cstdint>
#include <string>

namespace chorus::inline v0::detail {

/// Calls `f.template operator()<T>()` with the C++ type of `t`; `dtype::byte` is `Byte`
/// (`std::byte` by default; chorus-perf moves bytes as `std::uint8_t`). `dtype::user` names
/// no C++ type: `errc::invalid_argument`.
template <class Byte = std::byte, class F>
decltype(auto) with_dtype(dtype t, F&& f) {
  switch (t) {
    case dtype::int8:
      return f.template operator()<std::int8_t>();
    case dtype::uint8:
      return f.template operator()<std::uint8_t>();
    case dtype::int16:
      return f.template operator()<std::int16_t>();
    case dtype::uint16:
      return f.template operator()<std::uint16_t>();
    case dtype::int32:
      return f.template operator()<std::int32_t>();
    case dtype::uint32:
      return f.template operator()<std::uint32_t>();
    case dtype::int64:
      return f.template operator()<std::int64_t>();
    case dtype::uint64:
      return f.template operator()<std::uint64_t>();
    case dtype::float16:
      return f.template operator()<half>();
    case dtype::bfloat16:
      return f.template operator()<bfloat16>();
    case dtype::float32:
      return f.template operator()<float>();
    case dtype::float64:
      return f.template operator()<double>();
    case dtype::byte:
      return f.template operator()<Byte>();
    case dtype::user:
      break;
  }
  throw error(errc::invalid_argument,
              "element type code " + std::to_string(static_cast<int>(t)) +
                  " names no built-in C++ element type (a user type is known only at its "
                  "call site)");
}

}  // namespace chorus::inline v0::detail

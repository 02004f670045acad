#pragma once
/// \file
/// What entry points accept as buffers, and the argument checks they share.
///
/// A buffer is any contiguous, sized range of a trivially copyable type (`transferable`):
/// `std::span`, `std::vector`, `std::array`, a C array, `std::string`. Output buffers must be
/// writable. Reducing collectives need an op for the element type; the others move bytes. All
/// checks here run before any byte moves and throw `errc::invalid_argument` naming the collective
/// and the argument.
#include <chorus/core/error.hpp>
#include <chorus/core/types.hpp>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <numeric>
#include <optional>
#include <ranges>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

namespace chorus::inline v0 {

/// A contiguous, sized range. Its elements must be `transferable` (trivially copyable): the
/// entry points check that with a sentence of their own rather than by overload failure.
template <class R>
concept buffer = std::ranges::contiguous_range<R> && std::ranges::sized_range<R>;

/// A contiguous, sized range of counts (`std::size_t` or any integer).
template <class R>
concept count_list = std::ranges::contiguous_range<R> && std::ranges::sized_range<R> &&
    std::integral<std::ranges::range_value_t<R>>;

namespace detail {

template <class R>
using element_t = std::remove_cv_t<std::ranges::range_value_t<R>>;

/// One readable sentence when a buffer's elements cannot be moved as bytes.
template <class T>
consteval void check_transferable() {
  static_assert(transferable<T>,
                "chorus: the buffer's element type must be trivially copyable (chorus moves "
                "elements as bytes); use a struct of plain values, not one that owns memory "
                "(std::string, std::vector, pointers to the heap)");
}

template <class R>
inline constexpr bool writable_v =
    !std::is_const_v<std::remove_reference_t<std::ranges::range_reference_t<R>>>;

/// Compile-time checks shared by every entry point taking an output buffer.
template <class In, class Out>
consteval void check_buffers() {
  check_transferable<element_t<In>>();
  static_assert(std::is_same_v<element_t<In>, element_t<Out>>,
                "chorus: the input and output buffers must have the same element type.");
  static_assert(writable_v<Out>,
                "chorus: the output buffer is read-only (const); pass a writable range.");
}

template <class R>
std::span<const element_t<R>> as_const_span(R&& r) {
  check_transferable<element_t<R>>();
  return {std::ranges::data(r), std::ranges::size(r)};
}

template <class R>
std::span<element_t<R>> as_span(R&& r) {
  check_transferable<element_t<R>>();
  static_assert(writable_v<R>,
                "chorus: the output buffer is read-only (const); pass a writable range.");
  return {std::ranges::data(r), std::ranges::size(r)};
}

template <class T>
const std::byte* bytes_of(std::span<const T> s) noexcept {
  return reinterpret_cast<const std::byte*>(s.data());
}
template <class T>
std::byte* bytes_of(std::span<T> s) noexcept {
  return reinterpret_cast<std::byte*>(s.data());
}

[[noreturn]] inline void invalid(const char* api, const std::string& what) {
  throw error(errc::invalid_argument, std::string("chorus::") + api + ": " + what);
}

/// True when the element ranges [a, a+an) and [b, b+bn) share memory.
template <class T>
bool overlaps(const T* a, std::size_t an, const T* b, std::size_t bn) noexcept {
  if (an == 0 || bn == 0) return false;
  const auto pa = reinterpret_cast<std::uintptr_t>(a);
  const auto pb = reinterpret_cast<std::uintptr_t>(b);
  return pa < pb + bn * sizeof(T) && pb < pa + an * sizeof(T);
}

/// Rejects overlap between input and output unless it is exactly the in-place layout
/// `in == out + in_place_offset` (element offset) that the collective allows.
template <class T>
void check_alias(const char* api, std::span<const T> in, std::span<T> out,
                 std::optional<std::ptrdiff_t> in_place_offset, const char* in_place_rule) {
  if (!overlaps(in.data(), in.size(), static_cast<const T*>(out.data()), out.size())) return;
  if (in_place_offset && in.data() == out.data() + *in_place_offset) return;
  invalid(api, std::string("the input and output buffers overlap") +
                   (in_place_rule
                        ? std::string(" but not in the in-place layout (") + in_place_rule + ")"
                        : std::string(", which this collective does not allow")) +
                   "; pass disjoint buffers" + (in_place_rule ? " or the in-place layout" : ""));
}

inline void check_root(const char* api, int root, int size) {
  if (root < 0 || root >= size) {
    invalid(api, "root " + std::to_string(root) + " is not a rank of this communicator (0.." +
                     std::to_string(size - 1) + ")");
  }
}

inline void check_peer(const char* api, int peer, int rank, int size) {
  if (peer < 0 || peer >= size || peer == rank) {
    invalid(api, "peer " + std::to_string(peer) +
                     " is not another rank of this communicator "
                     "(0.." +
                     std::to_string(size - 1) + ", excluding this rank " + std::to_string(rank) +
                     ")");
  }
}

inline void check_count(const char* api, const char* what, std::size_t got, std::size_t want,
                        const std::string& why) {
  if (got != want) {
    invalid(api, std::string(what) + " has " + std::to_string(got) + " elements but must have " +
                     std::to_string(want) + " (" + why + ")");
  }
}

/// Converts a user count list to `std::size_t`, checking its length and signs.
template <class R>
std::vector<std::size_t> to_counts(const char* api, const char* what, const R& r, int size) {
  if (std::ranges::size(r) != static_cast<std::size_t>(size)) {
    invalid(api, std::string(what) + " has " + std::to_string(std::ranges::size(r)) +
                     " entries but the communicator has " + std::to_string(size) +
                     " ranks; give one count per rank");
  }
  std::vector<std::size_t> out;
  out.reserve(std::ranges::size(r));
  for (auto c : r) {
    if constexpr (std::is_signed_v<decltype(c)>) {
      if (c < 0)
        invalid(api, std::string(what) + " contains the negative count " + std::to_string(c));
    }
    out.push_back(static_cast<std::size_t>(c));
  }
  return out;
}

inline std::size_t sum(const std::vector<std::size_t>& v) noexcept {
  return std::accumulate(v.begin(), v.end(), std::size_t{0});
}

inline std::size_t offset_of(const std::vector<std::size_t>& counts, int rank) noexcept {
  return std::accumulate(counts.begin(), counts.begin() + rank, std::size_t{0});
}

}  // namespace detail
}  // namespace chorus::inline v0

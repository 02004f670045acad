#pragma once
/// \file
/// `chorus::error`: the one exception type of the public API, and its codes.
///
/// Every failure a user can cause or meet is a `chorus::error` (a `std::system_error` in the
/// `chorus` category) whose message names the rank, the collective and its sequence number,
/// what went wrong, and what to do about it.
#include <chorus/config.hpp>

#include <string>
#include <string_view>
#include <system_error>
#include <utility>

namespace chorus::inline v0 {

/// Error codes of the `chorus` category.
enum class errc : int {
  timeout = 1,       ///< a deadline expired while waiting for a peer
  peer_lost,         ///< a peer died, exited, or its connection failed
  mismatch,          ///< ranks called different collectives or with different arguments
  invalid_argument,  ///< bad input detected before any byte moved
  aborted,           ///< the group was aborted (by `abort()` or by a failing rank)
  transport,         ///< the transport itself failed (resource, system call, library error)
};

inline constexpr std::string_view name(errc e) noexcept {
  switch (e) {
    case errc::timeout:
      return "timeout";
    case errc::peer_lost:
      return "peer_lost";
    case errc::mismatch:
      return "mismatch";
    case errc::invalid_argument:
      return "invalid_argument";
    case errc::aborted:
      return "aborted";
    case errc::transport:
      return "transport";
  }
  return "unknown";
}

namespace detail {
class error_category_impl final : public std::error_category {
 public:
  const char* name() const noexcept override { return "chorus"; }
  std::string message(int ev) const override {
    return std::string(chorus::name(static_cast<errc>(ev)));
  }
};
}  // namespace detail

/// The `chorus` error category.
inline const std::error_category& error_category() noexcept {
  static const detail::error_category_impl category;
  return category;
}

inline std::error_code make_error_code(errc e) noexcept {
  return {static_cast<int>(e), error_category()};
}

/// The exception thrown by chorus. `code()` compares equal to an `errc`;
/// `what()` is the full sentence.
class error : public std::system_error {
 public:
  error(errc code, std::string message)
      : std::system_error(make_error_code(code)), message_(std::move(message)) {}

  /// The code as the enum (same as `code()`, without the category).
  [[nodiscard]] errc value() const noexcept { return static_cast<errc>(code().value()); }
  const char* what() const noexcept override { return message_.c_str(); }

 private:
  std::string message_;
};

namespace detail {
/// Whether `e` is a timeout that has not been explained yet: this rank's own, not one that
/// reached it through a peer's abort record, whose text already says how long the peer
/// waited and what to do (saying it twice made messages read as two timeouts).
inline bool is_own_timeout(const error& e) noexcept {
  return e.value() == errc::timeout &&
         std::string_view(e.what()).find(" (waited ") == std::string_view::npos;
}
}  // namespace detail

}  // namespace chorus::inline v0

template <>
struct std::is_error_code_enum<chorus::errc> : std::true_type {};

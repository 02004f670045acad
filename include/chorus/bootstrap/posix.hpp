#pragma once
/// \file
/// Small POSIX helpers shared by the bootstrap stores and `chorusrun`: an owning file
/// descriptor, errno text, deadline arithmetic for `poll()`, and random tokens.
///
/// Linux only (like the rest of the bootstrap layer). Every descriptor chorus opens is
/// close-on-exec, so that nothing leaks into a program a rank starts.
#include <chorus/core/deadline.hpp>
#include <chorus/core/error.hpp>

#include <sys/random.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <system_error>
#include <utility>

namespace chorus::inline v0::bootstrap::detail {

/// Owns one file descriptor; closes it on destruction. Move-only.
class unique_fd {
 public:
  unique_fd() = default;
  explicit unique_fd(int fd) noexcept : fd_(fd) {}
  unique_fd(unique_fd&& other) noexcept : fd_(other.release()) {}
  unique_fd& operator=(unique_fd&& other) noexcept {
    if (this != &other) reset(other.release());
    return *this;
  }
  unique_fd(const unique_fd&) = delete;
  unique_fd& operator=(const unique_fd&) = delete;
  ~unique_fd() { reset(); }

  [[nodiscard]] int get() const noexcept { return fd_; }
  explicit operator bool() const noexcept { return fd_ >= 0; }
  int release() noexcept { return std::exchange(fd_, -1); }
  /// Closes the descriptor held (if any) and takes `fd`. close() is not retried on EINTR:
  /// on Linux the descriptor is released even then, and a retry could close a descriptor
  /// another thread just opened.
  void reset(int fd = -1) noexcept {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }

 private:
  int fd_ = -1;
};

/// The text of an errno value ("Connection refused").
inline std::string errno_text(int err) { return std::generic_category().message(err); }

/// Milliseconds left until `d` for poll(), rounded up (so that a wait never ends early and
/// spins), at least 0 and at most `cap_ms`.
inline int poll_timeout_ms(deadline d, int cap_ms = 1 << 30) noexcept {
  const auto left = d.at - clock::now();
  if (left <= duration::zero()) return 0;
  const auto ms = std::chrono::ceil<std::chrono::milliseconds>(left).count();
  return ms > cap_ms ? cap_ms : static_cast<int>(ms);
}

/// `bytes` random bytes from the kernel (getrandom), as lowercase hex: unguessable names
/// for jobs, temporary files and shared-memory segments.
inline std::string random_hex(std::size_t bytes) {
  std::string out;
  out.reserve(bytes * 2);
  unsigned char buf[64];
  while (bytes > 0) {
    const std::size_t n = bytes < sizeof buf ? bytes : sizeof buf;
    std::size_t got = 0;
    while (got < n) {
      const ssize_t r = ::getrandom(buf + got, n - got, 0);
      if (r < 0) {
        if (errno == EINTR) continue;
        throw error(errc::transport,
                    "chorus: getrandom() failed: " + errno_text(errno) + " (needs Linux 3.17+)");
      }
      got += static_cast<std::size_t>(r);
    }
    static constexpr char digits[] = "0123456789abcdef";
    for (std::size_t i = 0; i < n; ++i) {
      out.push_back(digits[buf[i] >> 4]);
      out.push_back(digits[buf[i] & 0xF]);
    }
    bytes -= n;
  }
  return out;
}

}  // namespace chorus::inline v0::bootstrap::detail

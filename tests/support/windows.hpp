#pragma once
// Checks shared by the tests of every `rma_transport` (shared memory, UCX): accesses a
// window must refuse with `invalid_argument`, without moving a byte.
#include "harness.hpp"

#include <cstddef>
#include <string>
#include <vector>

namespace harness {

/// Records a failure unless `fn()` throws `chorus::error` with `code` and `words` in its
/// message.
template <class Fn>
void expect_error(failures& f, chorus::errc code, Fn&& fn, const std::string& what,
                  const std::string& words) {
  try {
    fn();
    f.add(what + " was accepted");
  } catch (const chorus::error& e) {
    if (e.value() != code || std::string(e.what()).find(words) == std::string::npos) {
      f.add(what + ": " + e.what());
    }
  }
}

/// Out of bounds, an empty window (rank `empty_rank`'s part of `w` has 0 bytes), an unknown
/// window, a rank outside the group: each one `invalid_argument` naming the problem.
template <class Transport>
void check_bad_window_accesses(Transport& t, typename Transport::window w, int empty_rank,
                               failures& f) {
  using chorus::errc;
  std::vector<std::byte> buf(16);
  expect_error(
      f, errc::invalid_argument, [&] { t.get(w, 0, t.window_bytes(w, 0) - 8, buf); },
      "get past the end", "do not fit rank 0's window");
  expect_error(
      f, errc::invalid_argument, [&] { t.get(w, empty_rank, 0, buf); }, "get from an empty window",
      "window of 0 bytes");
  expect_error(
      f, errc::invalid_argument, [&] { t.get(typename Transport::window{}, 0, 0, buf); },
      "unknown window", "not a window of this transport");
  expect_error(
      f, errc::invalid_argument, [&] { (void)t.window_bytes(w, t.size()); }, "rank outside",
      "outside the group");
}

}  // namespace harness

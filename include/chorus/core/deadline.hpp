#pragma once
/// \file
/// Deadlines and the `CHORUS_TIMEOUT` / `CHORUS_CHECK` environment settings.
///
/// Every blocking wait in chorus takes a deadline; none waits forever. The default timeout
/// of a communicator comes from `CHORUS_TIMEOUT` (seconds, e.g. `60`, `2.5`, or with a
/// unit: `500ms`, `30s`, `5m`) and is 60 s when unset.
#include <chorus/core/error.hpp>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>
#include <thread>

namespace chorus::inline v0 {

using clock = std::chrono::steady_clock;
using duration = std::chrono::nanoseconds;

/// A point in time after which a wait gives up with `errc::timeout`.
struct deadline {
  clock::time_point at;

  static deadline after(duration d) noexcept { return {clock::now() + d}; }
  [[nodiscard]] bool expired() const noexcept { return clock::now() >= at; }
};

/// The timeout used when none is configured: one minute, long enough for a slow peer to
/// finish a large collective on a loaded machine, short enough that a stuck job reports.
inline constexpr duration default_timeout = std::chrono::seconds(60);

/// Polling with growing sleeps: each `pause` sleeps `next` (never past `until`), then doubles
/// `next` up to `ceiling` (at least 1 ms).
struct backoff {
  std::chrono::milliseconds next{1};
  std::chrono::milliseconds ceiling{20};
  void pause(deadline until) {
    const auto left = until.at - clock::now();
    std::this_thread::sleep_for(std::max(duration::zero(), std::min<duration>(next, left)));
    next = std::max(std::min(next * 2, ceiling), std::chrono::milliseconds(1));
  }
};

/// Parses a duration such as "60", "2.5", "500ms", "30s", "5m" into nanoseconds.
/// Returns nullopt for anything else, and for zero or negative values (a wait must end,
/// and must be able to succeed).
inline std::optional<duration> parse_duration(std::string_view text) noexcept {
  while (!text.empty() && text.front() == ' ') text.remove_prefix(1);
  while (!text.empty() && text.back() == ' ') text.remove_suffix(1);
  double scale = 1e9;  // seconds by default
  if (text.ends_with("ms")) {
    scale = 1e6;
    text.remove_suffix(2);
  } else if (text.ends_with("us")) {
    scale = 1e3;
    text.remove_suffix(2);
  } else if (text.ends_with("s")) {
    text.remove_suffix(1);
  } else if (text.ends_with("m")) {
    scale = 60e9;
    text.remove_suffix(1);
  }
  if (text.empty()) return std::nullopt;
  double value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc{} || end != text.data() + text.size()) return std::nullopt;
  const double ns = value * scale;
  if (!(ns >= 1.0) || ns > 1e18) return std::nullopt;  // rejects NaN, <= 0, absurdly large
  return duration(static_cast<duration::rep>(ns));
}

/// The timeout from `CHORUS_TIMEOUT`, or `default_timeout` when unset.
/// Throws `errc::invalid_argument` when the variable is set to something that is not a
/// positive duration.
inline duration timeout_from_env() {
  const char* value = std::getenv("CHORUS_TIMEOUT");
  if (value == nullptr || *value == '\0') return default_timeout;
  if (auto d = parse_duration(value)) return *d;
  throw error(errc::invalid_argument,
              std::string("chorus: CHORUS_TIMEOUT='") + value +
                  "' is not a positive duration; use seconds such as 60 or 2.5, or a unit "
                  "such as 500ms, 30s or 5m");
}

/// A switch's value: "1", "true", "on", "yes" or "0", "false", "off", "no"; else nothing.
inline std::optional<bool> parse_switch(std::string_view v) {
  if (v == "1" || v == "true" || v == "on" || v == "yes") return true;
  if (v == "0" || v == "false" || v == "off" || v == "no") return false;
  return std::nullopt;
}

/// Whether `CHORUS_CHECK` asks for collective fingerprint checking ("1", "true", "on",
/// "yes"; "0", "false", "off", "no" or unset disable it). Anything else is an error.
inline bool check_from_env() {
  const char* value = std::getenv("CHORUS_CHECK");
  if (value == nullptr || *value == '\0') return false;
  if (auto on = parse_switch(value)) return *on;
  throw error(errc::invalid_argument, std::string("chorus: CHORUS_CHECK='") + value +
                                          "' is not a switch; use 1 to enable checking or 0 "
                                          "to disable it");
}

/// Renders a duration for messages ("60 s", "250 ms").
inline std::string to_string(duration d) {
  const double s = std::chrono::duration<double>(d).count();
  char buf[32];
  if (s >= 1.0) {
    std::snprintf(buf, sizeof buf, "%g s", s);
  } else {
    std::snprintf(buf, sizeof buf, "%g ms", s * 1e3);
  }
  return buf;
}

}  // namespace chorus::inline v0

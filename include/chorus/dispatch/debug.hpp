#pragma once
/// \file
/// What chorus decided, call by call: `CHORUS_DEBUG=info` reports every collective of every
/// rank -- transport, collective, algorithm (and whether the tuner chose it), element type
/// and count, pipeline piece, bytes moved and time -- to a sink, by default one line on
/// stderr, as `NCCL_DEBUG=INFO` does for NCCL. Off by default; when off, a call pays a
/// load and a branch.
///
///     CHORUS_DEBUG=info chorusrun -n 2 ./app
///     chorus: rank 0/2 pid 4242: all_reduce #1 on shm: ring (tuner), float32 x 262144
///       (1 MiB), piece 16384 elements, sent 1 MiB in 2 messages, received 1 MiB in 2
///       messages, 412.7 us
///
/// A program can send the reports elsewhere (a log, a metrics system, a test) with
/// `chorus::set_debug_sink`, and turn them on or off with `chorus::set_debug_level`.
///
/// `CHORUS_DEBUG=tuning` shows why: the first time a process's tuner settles a call of a
/// given shape (collective, bytes, ranks, hosts), it prints every candidate algorithm's
/// predicted time, the choice and the runner-up (`chorus::explain`, docs/tuning.md), to
/// stderr or to `chorus::set_tuning_sink`'s function. `CHORUS_DEBUG=info,tuning` does both.
#include <chorus/config.hpp>
#include <chorus/core/error.hpp>
#include <chorus/core/types.hpp>
#include <chorus/schedule/cost.hpp>
#include <chorus/schedule/schedule.hpp>

#include <unistd.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>

namespace chorus::inline v0 {

/// How much chorus reports (`CHORUS_DEBUG`).
enum class debug_level {
  off,     ///< nothing (default; `CHORUS_DEBUG` unset, empty, `off` or `warn`)
  info,    ///< one report per collective (`CHORUS_DEBUG=info` or `trace`)
  tuning,  ///< the tuner's explanation, once per call shape (`CHORUS_DEBUG=tuning`)
  all,     ///< both (`CHORUS_DEBUG=info,tuning`)
};

/// Where `CHORUS_DEBUG=tuning` explanations go: the rank (in its communicator), the
/// transport's name and the explanation. Serialised like `debug_sink`.
using tuning_sink =
    std::function<void(int rank, std::string_view transport, const schedule::tuning_explanation&)>;

/// One collective as one rank ran it.
struct call_report {
  int rank = 0;                ///< in the communicator
  int size = 1;                ///< ranks in the communicator
  std::string_view transport;  ///< "shm", "ucx", "inproc", "nccl", or "custom"
  std::string_view api;        ///< the entry point, e.g. "all_gather_v"
  std::uint32_t sequence = 0;  ///< the communicator's call number (1, 2, ...)
  schedule::algorithm algorithm{};
  bool tuned = false;   ///< the tuner chose the algorithm (`algo::automatic`)
  bool native = false;  ///< the transport's own collective (`algo::native`)
  dtype type = dtype::byte;
  /// Elements of the whole vector (every block of a gather or scatter): what the tuner
  /// sizes the call by.
  std::size_t count = 0;
  std::size_t bytes = 0;  ///< count times the element size
  std::size_t piece = 0;  ///< pipeline piece in elements; 0: not pipelined
  std::uint64_t sent_bytes = 0, received_bytes = 0;  ///< what this rank moved
  std::uint64_t messages_sent = 0, messages_received = 0;
  double seconds = 0;     ///< from the call to its return (enqueue time on a stream)
  bool enqueued = false;  ///< a stream-ordered call: `seconds` is the enqueue time
  bool posted = false;    ///< a nonblocking call, reported when posted (no time yet)
};

/// Where reports go. Called on the calling thread of each rank, one call at a time per
/// process (chorus serialises the sink); it must not call a collective itself.
using debug_sink = std::function<void(const call_report&)>;

/// The default report: one line, as the file comment shows.
inline std::string to_string(const call_report& r) {
  const auto human = [](std::uint64_t b) {
    return schedule::detail::size_text(static_cast<std::size_t>(b));
  };
  std::string line = "chorus: rank " + std::to_string(r.rank) + "/" + std::to_string(r.size) +
                     " pid " + std::to_string(::getpid()) + ": " + std::string(r.api) + " #" +
                     std::to_string(r.sequence) + " on " + std::string(r.transport) + ": ";
  line += r.native ? std::string("native") : std::string(schedule::name(r.algorithm));
  if (r.tuned) line += " (tuner)";
  line += ", " + std::string(name(r.type)) + " x " + std::to_string(r.count) + " (" +
          human(r.bytes) + ")";
  if (r.piece != 0) line += ", piece " + std::to_string(r.piece) + " elements";
  if (r.posted) return line + ", posted";
  line += ", sent " + human(r.sent_bytes) + " in " + std::to_string(r.messages_sent) +
          " messages, received " + human(r.received_bytes) + " in " +
          std::to_string(r.messages_received) + " messages";
  char time[48];
  std::snprintf(time, sizeof time, ", %.1f us%s", r.seconds * 1e6, r.enqueued ? " to enqueue" : "");
  return line + time;
}

namespace detail {

/// The process-wide reporting state: the level (read from `CHORUS_DEBUG` once), the sinks,
/// and the call shapes already explained.
struct debug_state {
  static constexpr unsigned info_bit = 1, tuning_bit = 2;
  std::atomic<unsigned> topics{from_env()};
  std::mutex mutex;
  debug_sink sink;     ///< empty: the default line on stderr
  tuning_sink tuning;  ///< empty: the explanation on stderr
  using shape =
      std::tuple<std::string_view, schedule::collective, std::size_t, int, bool, int, int>;
  std::set<shape> explained;

  static debug_state& get() {
    static debug_state s;
    return s;
  }

  static unsigned bits(debug_level level) noexcept {
    switch (level) {
      case debug_level::info:
        return info_bit;
      case debug_level::tuning:
        return tuning_bit;
      case debug_level::all:
        return info_bit | tuning_bit;
      default:
        return 0;
    }
  }

 private:
  /// What CHORUS_DEBUG asks for (a comma-separated list); throws for a value it does not
  /// know.
  static unsigned from_env() {
    const char* v = std::getenv("CHORUS_DEBUG");
    std::string_view rest = v == nullptr ? "" : v;
    unsigned out = 0;
    while (!rest.empty()) {
      const std::size_t comma = rest.find(',');
      const std::string_view word = rest.substr(0, comma);
      rest = comma == std::string_view::npos ? std::string_view{} : rest.substr(comma + 1);
      if (word == "info" || word == "INFO" || word == "trace" || word == "TRACE") {
        out |= info_bit;
      } else if (word == "tuning" || word == "TUNING") {
        out |= tuning_bit;
      } else if (!word.empty() && word != "off" && word != "OFF" && word != "warn" &&
                 word != "WARN") {
        throw error(errc::invalid_argument,
                    "CHORUS_DEBUG='" + std::string(v) +
                        "': use info (a line per collective), tuning (the tuner's reasons), "
                        "info,tuning, or off; unset means off");
      }
    }
    return out;
  }
};

/// Whether collectives report: one relaxed load after the first call.
inline bool debug_on() {
  return (debug_state::get().topics.load(std::memory_order_relaxed) & debug_state::info_bit) != 0;
}

/// Whether tuned calls explain themselves.
inline bool tuning_debug_on() {
  return (debug_state::get().topics.load(std::memory_order_relaxed) & debug_state::tuning_bit) != 0;
}

inline void emit(const call_report& r) {
  debug_state& s = debug_state::get();
  std::lock_guard lock(s.mutex);
  if (s.sink) {
    s.sink(r);
  } else {
    const std::string line = to_string(r) + "\n";
    std::fwrite(line.data(), 1, line.size(), stderr);
  }
}

/// Whether this is the first call of this shape on this transport that the process's
/// tuner settles since explanations were turned on (or the tuning sink last set); it then
/// counts as explained.
inline bool first_of_shape(std::string_view transport, const schedule::tuning_query& q) {
  debug_state& s = debug_state::get();
  std::lock_guard lock(s.mutex);
  return s.explained
      .emplace(transport, q.kind, q.bytes, q.ranks, q.mapped_windows, q.hosts, q.min_ranks_per_host)
      .second;
}

/// Sends `e` to the tuning sink, or to stderr.
inline void emit_tuning(int rank, int size, std::string_view transport,
                        const schedule::tuning_explanation& e) {
  debug_state& s = debug_state::get();
  std::lock_guard lock(s.mutex);
  if (s.tuning) {
    s.tuning(rank, transport, e);
  } else {
    const std::string text = "chorus: rank " + std::to_string(rank) + "/" + std::to_string(size) +
                             " pid " + std::to_string(::getpid()) + ": tuning on " +
                             std::string(transport) + ": " + schedule::to_string(e);
    std::fwrite(text.data(), 1, text.size(), stderr);
  }
}

}  // namespace detail

/// Sends the reports to `sink` from now on (an empty function: back to the line on stderr).
inline void set_debug_sink(debug_sink sink) {
  detail::debug_state& s = detail::debug_state::get();
  std::lock_guard lock(s.mutex);
  s.sink = std::move(sink);
}

/// Sends the tuning explanations to `sink` from now on (empty: back to stderr).
inline void set_tuning_sink(tuning_sink sink) {
  detail::debug_state& s = detail::debug_state::get();
  std::lock_guard lock(s.mutex);
  s.tuning = std::move(sink);
  s.explained.clear();  // a new sink sees every shape once
}

/// Turns the reports on or off, whatever `CHORUS_DEBUG` said.
inline void set_debug_level(debug_level level) {
  detail::debug_state::get().topics.store(detail::debug_state::bits(level),
                                          std::memory_order_relaxed);
}

/// The current level.
inline debug_level get_debug_level() {
  const bool info = detail::debug_on(), tuning = detail::tuning_debug_on();
  return info && tuning ? debug_level::all
         : info         ? debug_level::info
         : tuning       ? debug_level::tuning
                        : debug_level::off;
}

}  // namespace chorus::inline v0

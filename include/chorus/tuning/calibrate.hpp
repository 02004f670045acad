#pragma once
/// \file
/// Measuring the cost model's parameters on the machine a job runs on, and tuning by them.
///
///     chorus::tune_by_model(comm);   // collective: every rank of comm calls it
///
/// sets `comm`'s tuner to `schedule::model_tuner` with the cost profile of `comm`'s
/// transport on this host: read from the per-host cache, or, on first use, measured by
/// `chorus::calibrate` (one to a few seconds) and saved there for the next job. The pieces
/// are public too: `calibrate(comm)` measures, `cached_profile(comm)` reads or measures and
/// saves. docs/tuning.md says what is measured and how.
///
/// The cache is a directory of JSON profiles (the format of `chorus-perf --calibrate FILE`):
/// `$CHORUS_PROFILE_CACHE` if set, else `$XDG_CACHE_HOME/chorus`, else `~/.cache/chorus`.
/// A profile's file names what it is valid for:
/// `<host>.<transport>.<ranks>ranks[.<hosts>hosts][.unoptimized].json` -- rank 0's host, the
/// transport, the rank count and the number of hosts the ranks span, and whether the
/// calling code was compiled without optimisation (its reduction kernels run several times
/// slower; the compiler tells no more than that, so -Og, -O1 and -O3 builds share a file:
/// give each its own `CHORUS_PROFILE_CACHE` where that matters). A file that cannot be read, or
/// that was written by another chorus version, is measured again and replaced; a cache that cannot
/// be written costs a calibration per job, never an error.
///
/// Needs nlohmann-json, like `<chorus/dispatch/profile_json.hpp>`.
#include <chorus/collectives/all_gather.hpp>
#include <chorus/collectives/all_reduce.hpp>
#include <chorus/collectives/barrier.hpp>
#include <chorus/collectives/broadcast.hpp>
#include <chorus/collectives/nonblocking.hpp>
#include <chorus/collectives/reduce_scatter.hpp>
#include <chorus/collectives/send_recv.hpp>
#include <chorus/communicator.hpp>
#include <chorus/core/error.hpp>
#include <chorus/core/median.hpp>
#include <chorus/core/reduce_elements.hpp>
#include <chorus/dispatch/profile_json.hpp>
#include <chorus/dispatch/tuner.hpp>
#include <chorus/schedule/cost.hpp>
#include <chorus/transport/contract.hpp>
#include <chorus/transport/kit/copy.hpp>
#include <chorus/version.hpp>

#include <unistd.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <optional>
#include <span>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

namespace chorus::inline v0 {

/// What `calibrate` measured: the profile, and the raw measurements it came from.
struct calibration {
  schedule::cost_profile profile;
  /// The measurements: "ping_pong_half_round_trip_s" (8 B), "exchange_s" (by size in
  /// bytes), "burst_of_16_and_answer_s", "transport", "ranks".
  nlohmann::json measured = nlohmann::json::object();
};

namespace detail {

inline std::string host_name() {
  char host[256] = "";
  if (::gethostname(host, sizeof host - 1) != 0 || host[0] == '\0') return "unknown-host";
  return host;
}

}  // namespace detail

/// Measures the cost model's parameters (`schedule::cost_profile`) of `comm`'s transport:
/// a ping-pong of 8 B between ranks 0 and 1 (alpha), every pair of ranks exchanging
/// 256 KiB to 64 MiB both ways at once (beta, the cache size and the main-memory beta), a
/// burst of 16 small messages (the per-message overhead), every rank summing and copying
/// float32 vectors at once (the local rates, in cache and in main memory), and on a
/// transport with windows a one-sided all-gather and reduce-scatter (the window rates, for
/// a copy and for a reduction). Each time is the median of 7 timed loops; every rank
/// returns rank 0's numbers. Collective; needs 2 or more ranks (`errc::invalid_argument`
/// otherwise). About a second on shared memory.
template <class Transport>
calibration calibrate(communicator<Transport>& comm) {
  using clock = std::chrono::steady_clock;
  const int rank = comm.rank(), p = comm.size();
  if (p < 2) {
    throw error(errc::invalid_argument,
                "chorus::calibrate measures messages between ranks: it needs 2 or more ranks, "
                "this communicator has " +
                    std::to_string(p));
  }
  constexpr int reps = 7;
  // Median over `reps` of the time per call of `body`, repeated `iters` times per rep, as
  // rank 0 measured it (every rank gets rank 0's number).
  const auto timed = [&](int iters, auto&& body) {
    std::vector<double> each;
    for (int w = 0; w < 3; ++w) body();  // warm-up
    for (int rep = 0; rep < reps; ++rep) {
      chorus::barrier(comm);
      const auto t0 = clock::now();
      for (int i = 0; i < iters; ++i) body();
      each.push_back(std::chrono::duration<double>(clock::now() - t0).count() / iters);
    }
    std::vector<double> t{detail::median(each)};
    chorus::broadcast(comm, std::span<double>(t), 0);
    return t[0];
  };

  // alpha: ping-pong between ranks 0 and 1 (the others wait)
  const auto half_round_trip = [&](std::size_t bytes, int iters) {
    std::vector<std::byte> out(bytes), in(bytes);
    return timed(iters,
                 [&] {
                   if (rank == 0) {
                     chorus::send(comm, std::span<const std::byte>(out), 1, 1);
                     chorus::recv(comm, std::span<std::byte>(in), 1, 2);
                   } else if (rank == 1) {
                     chorus::recv(comm, std::span<std::byte>(in), 0, 1);
                     chorus::send(comm, std::span<const std::byte>(out), 0, 2);
                   }
                 }) /
           2;
  };
  const double t8 = half_round_trip(8, 2000);
  // beta: ranks 0-1, 2-3, ... each send their partner `bytes` and receive as many at once,
  // as a collective's steps move them. A ping-pong moves one message at a time, which has
  // the memory to itself: on shared memory it ran at twice the rate the exchanges of the
  // two-sided schedules get, and made the model price them at 0.4-0.7x of their time
  // (docs/tuning.md).
  const auto exchange = [&](std::size_t bytes, int iters) {
    std::vector<std::byte> out(bytes), in(bytes);
    const int partner = rank ^ 1;
    return timed(iters, [&] {
      if (partner < p) {
        chorus::sendrecv(comm, std::span<const std::byte>(out), partner, std::span<std::byte>(in),
                         partner, 5);
      }
    });
  };
  // (bytes, exchange) from 256 KiB to 64 MiB
  std::vector<std::pair<std::size_t, double>> pp;
  for (std::size_t bytes = std::size_t{256} << 10; bytes <= (std::size_t{64} << 20); bytes *= 4) {
    const int iters = static_cast<int>(std::max<std::size_t>(2, (std::size_t{64} << 20) / bytes));
    pp.emplace_back(bytes, exchange(bytes, iters));
  }
  const auto slope = [&](std::size_t i, std::size_t j) {
    return std::max(0.0,
                    (pp[j].second - pp[i].second) / static_cast<double>(pp[j].first - pp[i].first));
  };
  calibration c;
  schedule::cost_profile& prof = c.profile;
  prof.alpha = t8;
  prof.beta = slope(0, 2);         // 256 KiB to 4 MiB
  prof.memory_beta = slope(3, 4);  // 16 MiB to 64 MiB
  // The cache regime ends after the largest size that still moves at 85 % of its rate.
  prof.cache_bytes = pp[0].first;
  for (const auto& [bytes, t] : pp) {
    if ((t - t8) / static_cast<double>(bytes) <= prof.beta / 0.85) prof.cache_bytes = bytes;
  }

  // overhead: rank 0 sends a burst of 16 messages of 8 B, rank 1 answers once; against
  // the ping-pong's round trip, 15 more messages
  constexpr int burst = 16;
  std::vector<std::byte> small_out(8), small_in(8 * burst);
  const double tburst = timed(500, [&] {
    if (rank == 0) {
      for (int k = 0; k < burst; ++k)
        chorus::send(comm, std::span<const std::byte>(small_out), 1, 3);
      chorus::recv(comm, std::span<std::byte>(small_in.data(), 8), 1, 4);
    } else if (rank == 1) {
      for (int k = 0; k < burst; ++k) {
        chorus::recv(comm, std::span<std::byte>(small_in.data() + 8 * k, 8), 0, 3);
      }
      chorus::send(comm, std::span<const std::byte>(small_out), 0, 4);
    }
  });
  prof.overhead = std::max(0.0, (tburst - 2 * t8) / (burst - 1));

  // reduce, copy: every rank at once (the median rank), on vectors of 512 KiB (in cache)
  // and 16 MiB (main memory)
  const auto local = [&](std::size_t bytes, bool reduce) {
    const std::size_t n = bytes / sizeof(float);
    std::vector<float> x(n, 1.0f), y(n, 2.0f), z(n, 0.0f);
    const int inner = static_cast<int>(std::max<std::size_t>(1, (std::size_t{32} << 20) / bytes));
    const auto body = [&] {
      for (int k = 0; k < inner; ++k) {
        if (reduce) {
          detail::reduce_elements(z.data(), x.data(), y.data(), n, plus{});
        } else {
          detail::copy_bytes(z.data(), x.data(), bytes);
        }
        asm volatile("" : : "r"(z.data()) : "memory");
      }
    };
    std::vector<double> each;
    body();  // fault the pages in, warm the caches
    for (int rep = 0; rep < reps; ++rep) {
      chorus::barrier(comm);
      const auto t0 = clock::now();
      body();
      each.push_back(std::chrono::duration<double>(clock::now() - t0).count() / inner);
    }
    std::vector<double> all(static_cast<std::size_t>(p), 0.0);
    all[static_cast<std::size_t>(rank)] = detail::median(each);
    chorus::all_reduce(comm, std::span<double>(all), plus{});
    return detail::median(all) / static_cast<double>(bytes);
  };
  prof.reduce = local(std::size_t{512} << 10, true);
  prof.copy = local(std::size_t{512} << 10, false);
  prof.memory_reduce = local(std::size_t{16} << 20, true);
  prof.memory_copy = local(std::size_t{16} << 20, false);
  // window: a one-sided all-gather of 2 MiB costs its copy in, one `ready`, and reading the
  // other ranks' blocks out of their windows: what that reading costs over a local copy
  prof.window = -1.0;
  if constexpr (one_sided_transport<Transport>) {
    const std::size_t total = std::size_t{2} << 20, block = total / static_cast<std::size_t>(p);
    std::vector<std::byte> in(block), out(block * static_cast<std::size_t>(p));
    const double tag = timed(20, [&] {
      chorus::all_gather(comm, std::span<const std::byte>(in), std::span<std::byte>(out),
                         algo::one_sided{});
    });
    const double others = static_cast<double>(total - block);
    prof.window = std::max(
        0.0, (tag - static_cast<double>(block) * prof.copy - prof.alpha - (p - 1) * prof.overhead) /
                     others -
                 prof.copy);
    // window_reduce: a one-sided reduce-scatter of 2 MiB of floats costs its copy in, one
    // `ready` per chunk, and reducing this rank's block over the peers' windows: what
    // reading a peer's byte into the reduction costs over the reduction itself
    // (P blocks of whole floats: 2 MiB is no multiple of 4 P bytes for every P)
    std::vector<float> rs_out(block / sizeof(float));
    std::vector<float> rs_in(rs_out.size() * static_cast<std::size_t>(p), 1.0f);
    const double trs = timed(20, [&] {
      chorus::reduce_scatter(comm, std::span<const float>(rs_in), std::span<float>(rs_out), plus{},
                             algo::one_sided{});
    });
    const double rs_total = static_cast<double>(rs_in.size() * sizeof(float));
    const double rs_others = rs_total - static_cast<double>(rs_out.size() * sizeof(float));
    const double piece = static_cast<double>(schedule::one_sided_piece_bytes(p));
    const double chunks = std::max(1.0, std::ceil(rs_total / (piece * p)));
    prof.window_reduce = std::max(
        0.0,
        (trs - rs_total * prof.copy - chunks * (prof.alpha + (p - 1) * prof.overhead)) / rs_others -
            prof.reduce);
  }

  // The source names rank 0's host: the one every rank's numbers came from.
  const std::string transport(detail::transport_name<Transport>());
  std::vector<char> host(256, '\0');
  if (rank == 0) {
    const std::string h = detail::host_name();
    std::copy_n(h.begin(), std::min(h.size(), host.size() - 1), host.begin());
  }
  chorus::broadcast(comm, std::span<char>(host), 0);
  char date[32] = "";
  const std::time_t now = std::time(nullptr);
  std::strftime(date, sizeof date, "%Y-%m-%d", std::gmtime(&now));
  prof.source = transport + ", " + std::to_string(p) + " ranks, " + host.data() + ", " + date;

  nlohmann::json ping_pong = nlohmann::json::object();
  ping_pong["8"] = t8;
  nlohmann::json exchanges = nlohmann::json::object();
  for (const auto& [bytes, t] : pp) exchanges[std::to_string(bytes)] = t;
  c.measured = {{"transport", transport},
                {"ranks", p},
                {"ping_pong_half_round_trip_s", ping_pong},
                {"exchange_s", exchanges},
                {"burst_of_16_and_answer_s", tburst}};
  return c;
}

/// Where `cached_profile` keeps its profiles, and whether it may use what is there.
struct profile_cache_options {
  /// The cache directory; empty: `$CHORUS_PROFILE_CACHE`, else `$XDG_CACHE_HOME/chorus`,
  /// else `$HOME/.cache/chorus` (none of them set: no cache, a calibration every time).
  std::filesystem::path directory;
  /// Measure again and replace the cached profile, if any.
  bool recalibrate = false;
};

/// What `cached_profile` did.
struct profile_cache_result {
  schedule::cost_profile profile;  ///< the same on every rank
  bool calibrated = false;         ///< measured in this call (else read from the cache)
  /// On rank 0 (empty on the others): the cache file it read or wrote (empty: no cache),
  /// and why it measured ("no cached profile", "recalibrate was asked for", "<file> is not
  /// a cached profile: ...", ...) and, if so, why the profile could not be saved; `note` is
  /// empty when the profile came from the file.
  std::filesystem::path file;
  std::string note;
};

namespace detail {

inline std::filesystem::path profile_cache_directory(const profile_cache_options& o) {
  if (!o.directory.empty()) return o.directory;
  const auto env = [](const char* name) -> std::string {
    const char* v = std::getenv(name);
    return v ? std::string(v) : std::string();
  };
  if (const std::string d = env("CHORUS_PROFILE_CACHE"); !d.empty()) return d;
  if (const std::string d = env("XDG_CACHE_HOME"); !d.empty()) {
    return std::filesystem::path(d) / "chorus";
  }
  if (const std::string d = env("HOME"); !d.empty()) {
    return std::filesystem::path(d) / ".cache" / "chorus";
  }
  return {};
}

/// The cache file's name for this job's shape (see the file comment); characters other
/// than letters, digits, '-' and '_' in the host name become '_'.
inline std::string profile_cache_name(std::string host, std::string_view transport, int ranks,
                                      int hosts, bool optimized) {
  for (char& ch : host) {
    const bool keep = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                      (ch >= '0' && ch <= '9') || ch == '-' || ch == '_';
    if (!keep) ch = '_';
  }
  std::string name = host + "." + std::string(transport) + "." + std::to_string(ranks) + "ranks";
  if (hosts > 1) name += "." + std::to_string(hosts) + "hosts";
  if (!optimized) name += ".unoptimized";
  return name + ".json";
}

/// The profile in `file` if it is one this chorus wrote for `transport` and `ranks`;
/// otherwise nullopt and the reason in `why`.
inline std::optional<schedule::cost_profile> read_cached_profile(const std::filesystem::path& file,
                                                                 std::string_view transport,
                                                                 int ranks, std::string& why) {
  std::error_code ec;
  if (!std::filesystem::exists(file, ec)) {
    why = "no cached profile";
    return std::nullopt;
  }
  try {
    const nlohmann::json j = read_profile_file(file.string());
    const nlohmann::json& m = j.at("calibration");
    if (m.at("chorus") != CHORUS_VERSION_STRING || m.at("transport") != transport ||
        m.at("ranks") != ranks) {
      why = file.string() + " was measured by chorus " + m.at("chorus").dump() + " for " +
            m.at("transport").dump() + " at " + m.at("ranks").dump() + " ranks";
      return std::nullopt;
    }
    return cost_profile_from_json(j, "'" + file.string() + "'");
  } catch (const std::exception& e) {
    why = file.string() + " is not a cached profile: " + e.what();
    return std::nullopt;
  }
}

/// Writes `text` to `file` through a temporary file in the same directory and a rename, so
/// that a reader sees the old file or the new one, never a part. Returns the reason it
/// could not, or empty.
inline std::string write_atomically(const std::filesystem::path& file, const std::string& text) {
  std::error_code ec;
  std::filesystem::create_directories(file.parent_path(), ec);
  if (ec) return "cannot create " + file.parent_path().string() + ": " + ec.message();
  const std::filesystem::path tmp =
      file.string() + ".tmp." + std::to_string(static_cast<long long>(::getpid()));
  {
    std::ofstream out(tmp);
    out << text;
    out.flush();
    if (!out) {
      std::filesystem::remove(tmp, ec);
      return "cannot write " + tmp.string();
    }
  }
  std::filesystem::rename(tmp, file, ec);
  if (ec) {
    const std::string why =
        "cannot rename " + tmp.string() + " to " + file.string() + ": " + ec.message();
    std::filesystem::remove(tmp, ec);
    return why;
  }
  return {};
}

}  // namespace detail

/// The cost profile of `comm`'s transport on this host: rank 0 reads it from the cache
/// (`profile_cache_options`), or every rank takes part in `calibrate` and rank 0 saves the
/// result there. Collective; every rank returns rank 0's profile. On one rank, where there
/// is nothing to measure, `schedule::builtin_profile`.
template <class Transport>
profile_cache_result cached_profile(communicator<Transport>& comm,
                                    const profile_cache_options& options = {}) {
  const std::string transport(detail::transport_name<Transport>());
#ifdef __OPTIMIZE__
  constexpr bool optimized = true;
#else
  constexpr bool optimized = false;
#endif
  profile_cache_result r;
  if (comm.size() < 2) {  // nothing to measure, and nothing for a tuner to choose between
    r.profile = schedule::builtin_profile(transport);
    if (comm.rank() == 0) r.note = "one rank: the built-in profile";
    return r;
  }
  // Rank 0 decides; its answer (the profile as JSON, or nothing) goes to every rank.
  std::string text;
  if (comm.rank() == 0) {
    const std::filesystem::path dir = detail::profile_cache_directory(options);
    if (!dir.empty()) {
      r.file = dir / detail::profile_cache_name(detail::host_name(), transport, comm.size(),
                                                comm.host_count(), optimized);
    }
    if (r.file.empty()) {
      r.note = "no cache directory (set CHORUS_PROFILE_CACHE, XDG_CACHE_HOME or HOME)";
    } else if (options.recalibrate) {
      r.note = "recalibrate was asked for";
    } else if (auto cached = detail::read_cached_profile(r.file, transport, comm.size(), r.note)) {
      text = to_json(*cached).dump();
    }
  }
  std::vector<std::uint64_t> length{text.size()};
  chorus::broadcast(comm, std::span<std::uint64_t>(length), 0);
  if (length[0] == 0) {
    const calibration c = calibrate(comm);
    r.calibrated = true;
    if (comm.rank() == 0) {
      text = to_json(c.profile).dump();
      if (!r.file.empty()) {
        nlohmann::json j = to_json(c.profile);
        nlohmann::json meta = c.measured;
        meta["chorus"] = CHORUS_VERSION_STRING;
        j["calibration"] = std::move(meta);
        if (std::string why = detail::write_atomically(r.file, j.dump(2) + "\n"); !why.empty()) {
          r.note += "; not saved: " + why;
        }
      }
    }
    length[0] = text.size();
    chorus::broadcast(comm, std::span<std::uint64_t>(length), 0);
  }
  text.resize(static_cast<std::size_t>(length[0]));
  chorus::broadcast(comm, std::span<char>(text.data(), text.size()), 0);
  r.profile = cost_profile_from_json(nlohmann::json::parse(text), "rank 0's profile");
  return r;
}

/// Sets `comm`'s tuner to the cost model with `cached_profile(comm, options)`'s profile,
/// and returns what `cached_profile` did. Collective, like `cached_profile`; call it before
/// the collectives it should tune, not while one is in flight.
template <class Transport>
profile_cache_result tune_by_model(communicator<Transport>& comm,
                                   const profile_cache_options& options = {}) {
  profile_cache_result r = cached_profile(comm, options);
  comm.set_tuner(schedule::model_tuner{r.profile});
  return r;
}

}  // namespace chorus::inline v0

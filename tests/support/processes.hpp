#pragma once
// Runs N ranks as real processes over a process transport (shm_transport by default; any
// transport built from (rank, size, blob_exchange), e.g. ucx_transport), and collects each
// rank's failures.
//
// The test process forks the ranks and serves their rendezvous itself: each rank sends its
// blob down a pipe, and once every rank has sent one the parent answers every rank with all
// of them (the all-gather a `blob_exchange` needs; blobs must not contain newlines). At the end
// each rank writes its report -- failures found, or the exception that stopped it -- and exits; the
// parent waits with a deadline, kills whatever is left, and hands back one result per rank.
#include <chorus/chorus.hpp>
#include <chorus/transport/shm.hpp>

#include "harness.hpp"
#include "sanitizers.hpp"

#include <dirent.h>
#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstring>
#include <functional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#if CHORUS_TEST_ASAN
#include <sanitizer/lsan_interface.h>
#endif

namespace harness {

using shm_communicator = chorus::communicator<chorus::shm_transport>;

struct process_result {
  int rank = 0;
  int exit_code = -1;  ///< -1 when killed by a signal
  int signal = 0;
  std::string report;  ///< what the rank wrote: failures, or its exception
  double seconds = 0;  ///< from the start of the run to the rank's exit
};

namespace detail {
/// Moves all `n` bytes with `step(p, left)` (one read or write), retrying on EINTR.
template <class Step>
bool move_all(std::size_t n, Step step) {
  std::size_t done = 0;
  while (done < n) {
    const ssize_t k = step(done, n - done);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) return false;
    done += static_cast<std::size_t>(k);
  }
  return true;
}
inline bool write_all(int fd, const void* data, std::size_t n) {
  const auto* p = static_cast<const char*>(data);
  return move_all(n, [&](std::size_t at, std::size_t left) { return ::write(fd, p + at, left); });
}
inline bool read_all(int fd, void* data, std::size_t n) {
  auto* p = static_cast<char*>(data);
  return move_all(n, [&](std::size_t at, std::size_t left) { return ::read(fd, p + at, left); });
}
// Frames: 1 byte kind ('x' exchange, 'r' report), 4 bytes length, payload.
inline bool write_frame(int fd, char kind, const std::string& s) {
  const auto n = static_cast<std::uint32_t>(s.size());
  return write_all(fd, &kind, 1) && write_all(fd, &n, 4) && write_all(fd, s.data(), s.size());
}
inline bool read_frame(int fd, char& kind, std::string& s) {
  std::uint32_t n = 0;
  if (!read_all(fd, &kind, 1) || !read_all(fd, &n, 4)) return false;
  s.resize(n);
  return read_all(fd, s.data(), n);
}
}  // namespace detail

/// Names in /dev/shm that start with "chorus-<job>".
inline std::vector<std::string> shm_leftovers(const std::string& job) {
  std::vector<std::string> names;
  if (DIR* d = ::opendir("/dev/shm")) {
    while (dirent* e = ::readdir(d)) {
      const std::string n = e->d_name;
      if (n.rfind("chorus-" + job + "-", 0) == 0) names.push_back(n);
    }
    ::closedir(d);
  }
  return names;
}

struct process_options {
  std::chrono::seconds deadline{120};   ///< the whole run
  chorus::communicator_options comm{};  ///< each rank's communicator settings
  /// Called in the parent while the ranks run (e.g. to kill one); gets their pids.
  std::function<void(const std::vector<pid_t>&)> while_running;
};

/// Forks `ranks` processes running `fn(comm, failures)` and returns their results in rank
/// order. Each rank's transport is `make(rank, ranks, exchange)`; `comm` is a communicator
/// of that transport.
template <class Make, class Fn>
std::vector<process_result> run_processes_with(int ranks, Make make, Fn fn,
                                               process_options options = {}) {
  using transport_type = decltype(make(0, ranks, std::declval<const chorus::blob_exchange&>()));
  const auto start = std::chrono::steady_clock::now();
  std::vector<int> up(static_cast<std::size_t>(ranks)), down(static_cast<std::size_t>(ranks));
  std::vector<pid_t> pids(static_cast<std::size_t>(ranks));
  for (int r = 0; r < ranks; ++r) {
    int to_parent[2], to_child[2];
    REQUIRE(::pipe2(to_parent, O_CLOEXEC) == 0);
    REQUIRE(::pipe2(to_child, O_CLOEXEC) == 0);
    const pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      ::close(to_parent[0]);
      ::close(to_child[1]);
      const int out = to_parent[1];
      const int in = to_child[0];
      std::string report;
      int code = 0;
      try {
        chorus::blob_exchange exchange = [&](const std::string& mine) {
          std::vector<std::string> all;
          char kind = 0;
          std::string s;
          if (!detail::write_frame(out, 'x', mine) || !detail::read_frame(in, kind, s)) {
            throw chorus::error(chorus::errc::peer_lost, "test parent went away");
          }
          for (std::size_t pos = 0; pos < s.size();) {  // blobs joined by '\n'
            const auto nl = s.find('\n', pos);
            all.push_back(s.substr(pos, nl - pos));
            pos = nl + 1;
          }
          return all;
        };
        chorus::communicator<transport_type> comm(make(r, ranks, exchange), options.comm);
        failures f;
        fn(comm, f);
        if (f.count() != 0) {
          report = f.report();
          code = 1;
        }
      } catch (const chorus::error& e) {
        report = std::string("chorus::error[") + e.code().message() + "]: " + e.what();
        code = 2;
      } catch (const std::exception& e) {
        report = std::string("exception: ") + e.what();
        code = 3;
      }
#if CHORUS_TEST_ASAN
      // _exit skips LeakSanitizer's exit-time check: run it here, after the rank's objects
      // are gone, so that a leak in a rank fails the test.
      if (__lsan_do_recoverable_leak_check() != 0) {
        report += " [LeakSanitizer found leaks in rank " + std::to_string(r) + "]";
        code = code != 0 ? code : 4;
      }
#endif
      detail::write_frame(out, 'r', report);
      ::_exit(code);
    }
    ::close(to_parent[1]);
    ::close(to_child[0]);
    up[static_cast<std::size_t>(r)] = to_parent[0];
    down[static_cast<std::size_t>(r)] = to_child[1];
    pids[static_cast<std::size_t>(r)] = pid;
  }

  std::vector<process_result> results(static_cast<std::size_t>(ranks));
  std::vector<std::string> pending(static_cast<std::size_t>(ranks));
  std::vector<bool> has_blob(static_cast<std::size_t>(ranks)),
      open(static_cast<std::size_t>(ranks), true);
  int blobs = 0;
  int open_count = ranks;
  std::thread hook;
  if (options.while_running) hook = std::thread([&] { options.while_running(pids); });
  while (open_count > 0) {
    const auto elapsed = std::chrono::steady_clock::now() - start;
    if (elapsed > options.deadline) break;
    std::vector<pollfd> fds;
    std::vector<int> which;
    for (int r = 0; r < ranks; ++r) {
      if (open[static_cast<std::size_t>(r)]) {
        fds.push_back({up[static_cast<std::size_t>(r)], POLLIN, 0});
        which.push_back(r);
      }
    }
    if (::poll(fds.data(), fds.size(), 100) <= 0) continue;
    for (std::size_t i = 0; i < fds.size(); ++i) {
      if (fds[i].revents == 0) continue;
      const auto r = static_cast<std::size_t>(which[i]);
      char kind = 0;
      std::string s;
      if (!detail::read_frame(up[r], kind, s)) {
        open[r] = false;
        --open_count;
        continue;
      }
      if (kind == 'r') {
        results[r].report = s;
      } else if (kind == 'x') {
        pending[r] = s;
        has_blob[r] = true;
        if (++blobs == ranks) {  // everybody is in: answer everybody
          std::string all;
          for (int q = 0; q < ranks; ++q) all += pending[static_cast<std::size_t>(q)] + "\n";
          for (int q = 0; q < ranks; ++q)
            detail::write_frame(down[static_cast<std::size_t>(q)], 'x', all);
          blobs = 0;
        }
      }
    }
  }
  if (hook.joinable()) hook.join();
  for (int r = 0; r < ranks; ++r) {
    const auto i = static_cast<std::size_t>(r);
    int status = 0;
    // anything still running past the deadline is killed: a hang is a failure, not a wait
    if (::waitpid(pids[i], &status, WNOHANG) == 0) {
      const auto left = options.deadline - (std::chrono::steady_clock::now() - start);
      const auto until =
          std::chrono::steady_clock::now() +
          std::max<std::chrono::steady_clock::duration>(left, std::chrono::seconds(0));
      while (::waitpid(pids[i], &status, WNOHANG) == 0) {
        if (std::chrono::steady_clock::now() > until) {
          ::kill(pids[i], SIGKILL);
          ::waitpid(pids[i], &status, 0);
          results[i].report += " [killed: still running at the test's deadline]";
          break;
        }
        ::usleep(10000);
      }
    }
    results[i].rank = r;
    results[i].seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (WIFEXITED(status)) results[i].exit_code = WEXITSTATUS(status);
    if (WIFSIGNALED(status)) results[i].signal = WTERMSIG(status);
    ::close(up[i]);
    ::close(down[i]);
  }
  return results;
}

/// `run_processes_with` over shm_transport; `job` names the shared-memory segments (make it
/// unique per run).
template <class Fn>
std::vector<process_result> run_processes(int ranks, const std::string& job, Fn fn,
                                          process_options options = {}) {
  return run_processes_with(
      ranks,
      [&job](int rank, int size, const chorus::blob_exchange& exchange) {
        return chorus::shm_transport(rank, size, job, exchange);
      },
      std::move(fn), std::move(options));
}

/// REQUIREs that every rank exited 0, printing every report otherwise.
inline void require_all_ok(const std::vector<process_result>& results) {
  std::string all;
  bool ok = true;
  for (const auto& r : results) {
    if (r.exit_code != 0) {
      ok = false;
      all += "\nrank " + std::to_string(r.rank) + ": exit " + std::to_string(r.exit_code) +
             " signal " + std::to_string(r.signal) + ": " + r.report;
    }
  }
  INFO(all);
  REQUIRE(ok);
}

/// CHECKs the outcome of a fault test: rank `victim` died of SIGKILL, and every other rank
/// exited with chorus::error[peer_lost] naming it, less than `limit` seconds after it was
/// killed (`killed_at`, seconds from the start of the run, like `process_result::seconds`).
inline void check_peer_lost_reports(const std::vector<process_result>& results, int victim,
                                    double killed_at, double limit, const std::string& context) {
  for (const auto& r : results) {
    if (r.rank == victim) {
      CHECK(r.signal == SIGKILL);
      continue;
    }
    INFO(context << " victim " << victim << ", rank " << r.rank << ": " << r.report);
    CHECK(r.exit_code == 2);
    CHECK_THAT(r.report, Catch::Contains("chorus::error[peer_lost]") &&
                             Catch::Contains("rank " + std::to_string(victim)));
    CHECK(r.seconds - killed_at < limit);
  }
}

/// A job name unique to this test process and call.
inline std::string unique_job(const std::string& what) {
  static int counter = 0;
  return "test" + std::to_string(::getpid()) + "-" + what + "-" + std::to_string(++counter);
}

}  // namespace harness

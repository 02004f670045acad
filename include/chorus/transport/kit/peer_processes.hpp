#pragma once
/// \file
/// Liveness of peer processes on this host: a rank that dies mid-collective must become
/// `errc::peer_lost` for the ranks waiting on it, within a bounded time, whatever the
/// transport. Each watched peer gets a pidfd (readable once the process has exited: no
/// signal, no race with pid reuse); where pidfd_open is missing (Linux < 5.3), `kill(pid,
/// 0)` stands in. Used by `shm_transport` (every peer) and `ucx_transport` (peers on the
/// same host and pid namespace).
#include <chorus/bootstrap/posix.hpp>

#include <cerrno>
#include <csignal>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include <fcntl.h>
#include <poll.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

namespace chorus::inline v0::kit {

class peer_processes {
 public:
  peer_processes() = default;
  explicit peer_processes(int ranks)
      : pids_(static_cast<std::size_t>(ranks), 0), pidfds_(static_cast<std::size_t>(ranks)) {}

  /// Watches rank `peer`, whose process is `pid`.
  void watch(int peer, int pid) {
    const auto i = static_cast<std::size_t>(peer);
    pids_[i] = pid;
    pidfds_[i] = bootstrap::detail::unique_fd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
  }

  /// Whether the process of watched rank `peer` has exited. Never blocks.
  [[nodiscard]] bool gone(int peer) const noexcept {
    const auto i = static_cast<std::size_t>(peer);
    if (pids_[i] <= 0) return false;
    if (const int f = pidfds_[i].get(); f >= 0) {
      pollfd pfd{f, POLLIN, 0};
      return ::poll(&pfd, 1, 0) > 0;
    }
    return ::kill(pids_[i], 0) != 0 && errno == ESRCH;
  }

  /// Whether the process of watched rank `peer` is stopped (SIGSTOP, SIGTSTP, or held by a
  /// debugger): its state in /proc is `T` or `t`. False when that cannot be read (another
  /// pid namespace, or the process is gone).
  [[nodiscard]] bool stopped(int peer) const noexcept {
    const int pid = pids_[static_cast<std::size_t>(peer)];
    if (pid <= 0) return false;
    char path[40];
    std::snprintf(path, sizeof path, "/proc/%d/stat", pid);
    const bootstrap::detail::unique_fd f(::open(path, O_RDONLY | O_CLOEXEC));
    if (f.get() < 0) return false;
    char buf[512];
    const ssize_t n = ::read(f.get(), buf, sizeof buf - 1);
    if (n <= 0) return false;
    buf[n] = '\0';
    // "pid (comm) S ...": comm may hold spaces and parentheses, so the state follows the
    // last ')'.
    const char* close = std::strrchr(buf, ')');
    if (close == nullptr || close[1] != ' ') return false;
    return close[2] == 'T' || close[2] == 't';
  }

  /// A clause for a timeout's message when rank `peer`'s process is stopped (it holds up
  /// the whole group: the rank a wait timed out on may only be waiting for it too); empty
  /// otherwise.
  [[nodiscard]] std::string stopped_clause(int peer) const {
    if (!stopped(peer)) return {};
    const std::string pid = std::to_string(pids_[static_cast<std::size_t>(peer)]);
    return "; rank " + std::to_string(peer) + " (pid " + pid +
           ") is stopped (SIGSTOP, or held by a debugger) and holds up the group: resume it "
           "(kill -CONT " +
           pid + ") or end the job";
  }

  [[nodiscard]] int pid(int peer) const noexcept { return pids_[static_cast<std::size_t>(peer)]; }
  [[nodiscard]] int size() const noexcept { return static_cast<int>(pids_.size()); }

 private:
  std::vector<int> pids_;
  std::vector<bootstrap::detail::unique_fd> pidfds_;
};

}  // namespace chorus::inline v0::kit

#pragma once
// Process helpers for the bootstrap tests: forked children that are always reaped (and
// killed first if they are still running when the test ends), commands run with their
// output captured and a time limit, and the count of this process's open descriptors.
//
// Every wait here has a limit: a test may fail, it may never hang.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace proc {

using namespace std::chrono_literals;

/// Open descriptors of this process (entries of /proc/self/fd, less the one listing it).
inline int open_fds() {
  int n = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator("/proc/self/fd")) ++n;
  return n - 1;
}

/// The open descriptors of this process (without the one that lists them).
inline std::vector<int> fd_list() {
  std::vector<int> fds;
  for (const auto& e : std::filesystem::directory_iterator("/proc/self/fd")) {
    fds.push_back(std::stoi(e.path().filename().string()));
  }
  // The directory iterator's own descriptor is listed too but is closed by now.
  std::erase_if(fds, [](int fd) { return ::fcntl(fd, F_GETFD) < 0; });
  return fds;
}

/// Waits for `pid` until `limit`; the wait status, or nullopt if it is still running.
inline std::optional<int> wait_for(pid_t pid, std::chrono::milliseconds limit) {
  const auto until = std::chrono::steady_clock::now() + limit;
  for (;;) {
    int status = 0;
    const pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid) return status;
    if (r < 0) return std::nullopt;
    if (std::chrono::steady_clock::now() >= until) return std::nullopt;
    std::this_thread::sleep_for(2ms);
  }
}

/// A forked child running a function; its return value is the exit status (an exception
/// prints its message and exits 99). The destructor kills and reaps it if still there.
class child {
 public:
  child() = default;
  explicit child(const std::function<int()>& fn) {
    std::fflush(nullptr);  // nothing buffered is written twice
    pid_ = ::fork();
    if (pid_ < 0) throw std::runtime_error("fork failed");
    if (pid_ == 0) {
      int code = 98;
      try {
        code = fn();
      } catch (const std::exception& e) {
        std::fprintf(stderr, "child %d: %s\n", static_cast<int>(::getpid()), e.what());
        code = 99;
      } catch (...) {
        code = 99;
      }
      std::fflush(nullptr);
      ::_exit(code);  // no atexit handlers, no Catch2 reporting in the child
    }
  }
  child(child&& o) noexcept : pid_(std::exchange(o.pid_, -1)), status_(o.status_) {}
  child& operator=(child&& o) noexcept {
    if (this != &o) {
      reap_now();
      pid_ = std::exchange(o.pid_, -1);
      status_ = o.status_;
    }
    return *this;
  }
  ~child() { reap_now(); }

  [[nodiscard]] pid_t pid() const { return pid_; }
  void kill(int sig) const {
    if (pid_ > 0) ::kill(pid_, sig);
  }
  /// The wait status, waiting up to `limit`; nullopt if still running then.
  std::optional<int> wait(std::chrono::milliseconds limit = 30s) {
    if (status_) return status_;
    if (pid_ <= 0) return std::nullopt;
    status_ = wait_for(pid_, limit);
    if (status_) pid_ = -1;
    return status_;
  }
  /// The exit code, -signal if killed, or -1000 if it did not end within `limit`.
  int exit_code(std::chrono::milliseconds limit = 30s) {
    const auto s = wait(limit);
    if (!s) return -1000;
    return WIFEXITED(*s) ? WEXITSTATUS(*s) : -WTERMSIG(*s);
  }

 private:
  void reap_now() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      wait_for(pid_, 10s);
      pid_ = -1;
    }
  }
  pid_t pid_ = -1;
  std::optional<int> status_;
};

/// What a finished command did.
struct result {
  int status = -1;  ///< wait status; -1 when it was killed for running too long
  bool timed_out = false;
  std::string out, err;
  [[nodiscard]] int exit_code() const {
    if (timed_out || status < 0) return -1000;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }
};

/// A command started with pipes on stdout and stderr (stdin is /dev/null).
class command {
 public:
  explicit command(std::vector<std::string> argv, std::vector<std::string> extra_env = {}) {
    int out[2], err[2];
    if (::pipe2(out, O_CLOEXEC) != 0 || ::pipe2(err, O_CLOEXEC) != 0) {
      throw std::runtime_error("pipe failed");
    }
    std::vector<std::string> env;
    for (char** e = environ; *e != nullptr; ++e) env.emplace_back(*e);
    for (auto& e : extra_env) env.push_back(std::move(e));
    std::vector<char*> envp, args;
    for (auto& e : env) envp.push_back(e.data());
    envp.push_back(nullptr);
    for (auto& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    std::fflush(nullptr);
    pid_ = ::fork();
    if (pid_ < 0) throw std::runtime_error("fork failed");
    if (pid_ == 0) {
      const int devnull = ::open("/dev/null", O_RDONLY);
      ::dup2(devnull, 0);
      ::dup2(out[1], 1);
      ::dup2(err[1], 2);
      ::execve(args[0], args.data(), envp.data());
      ::_exit(125);
    }
    ::close(out[1]);
    ::close(err[1]);
    out_ = out[0];
    err_ = err[0];
  }
  command(const command&) = delete;
  command& operator=(const command&) = delete;
  ~command() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      wait_for(pid_, 10s);
    }
    if (out_ >= 0) ::close(out_);
    if (err_ >= 0) ::close(err_);
  }

  [[nodiscard]] pid_t pid() const { return pid_; }
  void signal(int sig) const { ::kill(pid_, sig); }

  /// Reads its output until `text` appears on stdout (or the limit passes); true if seen.
  bool read_until(const std::string& text, std::chrono::milliseconds limit = 30s) {
    const auto until = std::chrono::steady_clock::now() + limit;
    while (res_.out.find(text) == std::string::npos) {
      if (std::chrono::steady_clock::now() >= until || !pump(50)) {
        return res_.out.find(text) != std::string::npos;
      }
    }
    return true;
  }

  /// Reads its output until `text` occurs `count` times on stdout; true if it did in time.
  bool read_until_count(const std::string& text, int count, std::chrono::milliseconds limit = 30s) {
    const auto until = std::chrono::steady_clock::now() + limit;
    const auto occurrences = [&] {
      int n = 0;
      for (auto at = res_.out.find(text); at != std::string::npos;
           at = res_.out.find(text, at + text.size())) {
        ++n;
      }
      return n;
    };
    while (occurrences() < count) {
      if (std::chrono::steady_clock::now() >= until || !pump(50)) return occurrences() >= count;
    }
    return true;
  }

  /// Collects the output until the command exits (killing it after `limit`).
  result finish(std::chrono::milliseconds limit = 60s) {
    const auto until = std::chrono::steady_clock::now() + limit;
    while (out_ >= 0 || err_ >= 0) {
      if (std::chrono::steady_clock::now() >= until) break;
      pump(50);
    }
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        until - std::chrono::steady_clock::now());
    auto st = wait_for(pid_, std::max(left, std::chrono::milliseconds(0)));
    if (!st) {
      ::kill(pid_, SIGKILL);
      wait_for(pid_, 10s);
      res_.timed_out = true;
    } else {
      res_.status = *st;
    }
    pid_ = -1;
    return res_;
  }

 private:
  /// One poll over both pipes; false once both are closed.
  bool pump(int timeout_ms) {
    pollfd fds[2] = {{out_, POLLIN, 0}, {err_, POLLIN, 0}};
    if (out_ < 0 && err_ < 0) return false;
    ::poll(fds, 2, timeout_ms);
    for (int i = 0; i < 2; ++i) {
      if (fds[i].revents == 0) continue;
      char buf[65536];
      const ssize_t n = ::read(fds[i].fd, buf, sizeof buf);
      int& fd = i == 0 ? out_ : err_;
      if (n > 0) {
        (i == 0 ? res_.out : res_.err).append(buf, static_cast<std::size_t>(n));
      } else if (n == 0 || (errno != EINTR && errno != EAGAIN)) {
        ::close(fd);
        fd = -1;
      }
    }
    return true;
  }

  pid_t pid_ = -1;
  int out_ = -1, err_ = -1;
  result res_;
};

/// Lines of `text`.
inline std::vector<std::string> lines(const std::string& text) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (start < text.size()) {
    const auto nl = text.find('\n', start);
    if (nl == std::string::npos) {
      out.push_back(text.substr(start));
      break;
    }
    out.push_back(text.substr(start, nl - start));
    start = nl + 1;
  }
  return out;
}

/// Whether a process with this pid exists (a zombie counts).
inline bool alive(pid_t pid) { return ::kill(pid, 0) == 0; }

}  // namespace proc

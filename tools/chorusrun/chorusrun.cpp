// chorusrun: starts N ranks of a program on this machine, the way `torchrun --standalone`
// or `mpirun` on one node do, for programs that call chorus::bootstrap::from_env().
//
//   chorusrun -n N [--grace S] [--tolerate K [--replace]] [--no-prefix] [--timeout T] [--check]
//             [--map-by core|socket|numa] [--bind-to none|hwthread|core|socket|numa]
//             [--report-bindings] [--] program args...
//
// What it does, in order:
//  1. draws a job secret (256 random bits, hex) and serves a tcp_store on 127.0.0.1 (a port
//     the kernel picks) for the job's rendezvous, which only clients proving the secret may
//     use (limits from the CHORUS_STORE_* variables chorusrun was given; docs/security.md);
//  2. draws a job id (128 random bits, hex) that names the job's shared-memory segments;
//  3. starts N processes of `program args...`, each in a process group of its own, with the
//     environment it was given plus CHORUS_RANK, CHORUS_SIZE, CHORUS_LOCAL_RANK,
//     CHORUS_LOCAL_SIZE, CHORUS_STORE (host:port), CHORUS_JOB_ID, CHORUS_JOB_SECRET (in
//     place of any CHORUS_JOB_SECRET or CHORUS_JOB_SECRET_FILE it was given), and CHORUS_TIMEOUT /
//     CHORUS_CHECK when asked; stdin is /dev/null; bound to the CPUs --bind-to gives
//     them (binding.hpp; none by default);
//  4. copies every complete output line of rank r to its own stdout or stderr as
//     "[r] line" (unless --no-prefix, where the ranks write to chorusrun's stdout and
//     stderr directly); with the prefix, a rank also gets CHORUS_OUTPUT_FD, a descriptor
//     of chorusrun's own stdout, for output that must appear as written (chorus-perf
//     prints its table there);
//  5. when a rank fails (non-zero exit, or killed by a signal), sends SIGTERM to the other
//     ranks' process groups, SIGKILL after --grace seconds, and reports the first failure
//     in one line; SIGINT/SIGTERM/SIGHUP to chorusrun are forwarded the same way (a second
//     one kills at once). With --tolerate K, the first K failures only get their line and
//     the other ranks go on (for programs that shrink their communicator around a dead
//     rank, docs/fault-tolerance.md); the K+1-th stops them. With --replace as well, each
//     of those K failures also starts a new process of the program in the failed rank's
//     place (the next process number, same CPUs) with CHORUS_JOIN=1: a process that joins
//     the running job (chorus::join) when its members grow their group back;
//  6. once every rank has exited, removes the job's shared-memory segments that ranks
//     stopped by a signal during start-up left in /dev/shm (saying how many).
//
// Exit status: 0 when every rank exits 0 (or fails within --tolerate); the first failing
// rank's exit status past that, or 128 + its signal number; 128 + the signal when chorusrun itself
// was interrupted (130 for Ctrl-C, 143 for SIGTERM); 127 when the program is not found, 126 when it
// cannot be executed; 2 for a usage error; 1 when chorusrun itself fails.
//
// Every descriptor chorusrun opens is close-on-exec; the ranks get stdin, stdout and stderr
// only, and CHORUS_OUTPUT_FD when their output is prefixed. They also get PR_SET_PDEATHSIG=SIGKILL,
// so that no rank outlives a chorusrun killed with SIGKILL.
#include <chorus/bootstrap/from_env.hpp>
#include <chorus/bootstrap/posix.hpp>
#include <chorus/bootstrap/tcp_store.hpp>
#include <chorus/core/deadline.hpp>
#include <chorus/version.hpp>

#include "binding.hpp"

#include <CLI/CLI.hpp>

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <deque>
#include <exception>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

extern char** environ;

namespace {

using chorus::bootstrap::detail::errno_text;
using chorus::bootstrap::detail::unique_fd;
using steady = std::chrono::steady_clock;

/// A rank line longer than this is passed on in pieces of this size (each prefixed), so a
/// program that never writes a newline cannot make chorusrun buffer without bound.
constexpr std::size_t max_line_bytes = 64 * 1024;

struct settings {
  int np = 0;
  double grace_s = 3.0;
  int tolerate = 0;      ///< rank failures that do not stop the others
  bool replace = false;  ///< start a joining process in place of each tolerated failure
  bool prefix = true;
  std::string timeout;
  bool check = false;
  std::vector<chorusrun::binding> bindings;  ///< rank r's CPUs; empty: not bound
  bool report_bindings = false;
  std::vector<std::string> command;
};

void say(const std::string& line) {
  const std::string text = "chorusrun: " + line + "\n";
  [[maybe_unused]] const auto n = ::write(STDERR_FILENO, text.data(), text.size());
}

/// Writes all of `text` to `fd`. Returns false when the reader is gone (EPIPE) or the
/// descriptor fails; output to it then stops, the ranks keep running.
bool write_all(int fd, std::string_view text) {
  while (!text.empty()) {
    const ssize_t n = ::write(fd, text.data(), text.size());
    if (n >= 0) {
      text.remove_prefix(static_cast<std::size_t>(n));
      continue;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN) {  // someone made our stdout non-blocking
      pollfd p{fd, POLLOUT, 0};
      ::poll(&p, 1, 100);
      continue;
    }
    return false;
  }
  return true;
}

std::string signal_name(int sig) {
  const char* abbrev = ::sigabbrev_np(sig);
  return abbrev != nullptr ? std::string("SIG") + abbrev : "signal " + std::to_string(sig);
}

/// The path `execve` should run for `program`, searched in PATH like a shell does. On
/// failure, the message and the exit status (127 not found, 126 not executable).
struct resolved {
  std::string path;
  std::string problem;
  int status = 0;
};

resolved resolve_program(const std::string& program) {
  const auto executable = [](const std::string& p) {
    struct stat st {};
    return ::stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode) && ::access(p.c_str(), X_OK) == 0;
  };
  if (program.find('/') != std::string::npos) {
    if (executable(program)) return {program, "", 0};
    struct stat st {};
    if (::stat(program.c_str(), &st) != 0) {
      return {"", "cannot run '" + program + "': " + errno_text(errno), 127};
    }
    return {"",
            "cannot run '" + program +
                "': " + (S_ISDIR(st.st_mode) ? "it is a directory" : "permission denied"),
            126};
  }
  const char* env_path = std::getenv("PATH");
  const std::string path = env_path != nullptr ? env_path : "/usr/local/bin:/usr/bin:/bin";
  bool seen_not_executable = false;
  std::size_t start = 0;
  for (;;) {
    const auto colon = path.find(':', start);
    std::string dir = path.substr(start, colon == std::string::npos ? colon : colon - start);
    if (dir.empty()) dir = ".";
    const std::string candidate = dir + "/" + program;
    if (executable(candidate)) return {candidate, "", 0};
    if (::access(candidate.c_str(), F_OK) == 0) seen_not_executable = true;
    if (colon == std::string::npos) break;
    start = colon + 1;
  }
  if (seen_not_executable) {
    return {"", "cannot run '" + program + "': found in PATH but not executable", 126};
  }
  return {"", "cannot run '" + program + "': not found in PATH", 127};
}

/// One rank's output stream (stdout or stderr) on its way to ours.
struct stream {
  unique_fd fd;     ///< read end of the rank's pipe; closed at end of file
  int target = 1;   ///< our descriptor it goes to
  std::string buf;  ///< bytes after the last complete line
};

struct rank_process {
  pid_t pid = -1;
  bool running = false;
  int status = 0;  ///< wait status, valid once !running
  int as = 0;      ///< the rank it was started as (a replacement: the failed one's)
  stream out, err;
};

class launcher {
 public:
  explicit launcher(settings s) : s_(std::move(s)) {}

  int run() {
    const resolved prog = resolve_program(s_.command.front());
    if (prog.status != 0) {
      say(prog.problem);
      return prog.status;
    }

    // Signals arrive through a signalfd; they must be blocked in every thread, so before
    // the store's server thread exists. SIGPIPE is ignored: a closed stdout must not kill
    // chorusrun while ranks run (the ranks get the default back).
    sigset_t mask;
    sigemptyset(&mask);
    for (int sig : {SIGCHLD, SIGINT, SIGTERM, SIGHUP}) sigaddset(&mask, sig);
    if (::sigprocmask(SIG_BLOCK, &mask, nullptr) != 0) return fail("sigprocmask", errno);
    ::signal(SIGPIPE, SIG_IGN);
    sigfd_ = unique_fd(::signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK));
    if (!sigfd_) return fail("signalfd", errno);

    // The job secret: 32 random bytes, which every rank proves to the store (and the store
    // to every rank). It reaches the ranks in their environment only, which other users
    // cannot read (/proc/<pid>/environ is the owner's); never through the store.
    const std::string secret = chorus::bootstrap::detail::random_hex(32);
    chorus::bootstrap::tcp_store_limits limits;
    try {
      limits = chorus::bootstrap::detail::env::store_limits_from(
          chorus::bootstrap::process_environment());
    } catch (const chorus::error& e) {
      say(e.what());
      return 2;
    }
    // 127.0.0.1, a free port.
    chorus::bootstrap::tcp_store_server server({.secret = secret, .limits = limits});
    job_id_ = chorus::bootstrap::detail::random_hex(16);

    unique_fd devnull(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    if (!devnull) return fail("open /dev/null", errno);

    // Everything the children need is built before the first fork: between fork and exec
    // a child of this multi-threaded process may only make async-signal-safe calls.
    std::vector<std::string> base_env;
    for (char** e = environ; *e != nullptr; ++e) {
      const std::string_view var(*e);
      if (!overridden(var)) base_env.emplace_back(var);
    }
    base_env.push_back("CHORUS_SIZE=" + std::to_string(s_.np));
    base_env.push_back("CHORUS_LOCAL_SIZE=" + std::to_string(s_.np));
    base_env.push_back("CHORUS_STORE=" + server.address());
    base_env.push_back("CHORUS_JOB_ID=" + job_id_);
    base_env.push_back("CHORUS_JOB_SECRET=" + secret);
    // With prefixed output, a copy of chorusrun's own stdout as well, for output that must
    // reach it as written (chorus-perf's table: nccl-tests parsers read it).
    unique_fd raw_out;
    if (s_.prefix) {
      raw_out = unique_fd(::fcntl(STDOUT_FILENO, F_DUPFD_CLOEXEC, 3));
      if (!raw_out) return fail("duplicating stdout", errno);
      base_env.push_back("CHORUS_OUTPUT_FD=" + std::to_string(raw_out.get()));
    }
    if (!s_.timeout.empty()) base_env.push_back("CHORUS_TIMEOUT=" + s_.timeout);
    if (s_.check) base_env.push_back("CHORUS_CHECK=1");

    std::vector<char*> argv;
    for (auto& a : s_.command) argv.push_back(a.data());
    argv.push_back(nullptr);

    if (s_.report_bindings) {
      if (s_.bindings.empty()) say("ranks are not bound (--bind-to none)");
      for (std::size_t r = 0; r < s_.bindings.size(); ++r) {
        say("rank " + std::to_string(r) + " bound to " + s_.bindings[r].text);
      }
    }

    launch_ = {prog.path, &argv, &base_env, devnull.get(), raw_out.get()};
    ranks_.resize(static_cast<std::size_t>(s_.np));
    for (int r = 0; r < s_.np; ++r) {
      ranks_[static_cast<std::size_t>(r)].as = r;
      if (const int code = start(r, r, {}); code != 0) {
        stop_all(SIGTERM);
        loop();
        reap_all();
        sweep_segments();
        return code;
      }
      // A signal or a rank that already failed stops the start-up: the ranks started so
      // far are being stopped, and starting more would only delay that.
      on_signals();
      if (interrupted_ != 0 || first_failure_) break;
    }
    loop();
    return finish();
  }

 private:
  static bool overridden(std::string_view var) {
    for (std::string_view name :
         {"CHORUS_RANK=", "CHORUS_SIZE=", "CHORUS_LOCAL_RANK=", "CHORUS_LOCAL_SIZE=",
          "CHORUS_STORE=", "CHORUS_JOB_ID=", "CHORUS_JOB_SECRET=", "CHORUS_JOB_SECRET_FILE=",
          "CHORUS_OUTPUT_FD="}) {
      if (var.starts_with(name)) return true;
    }
    return false;
  }

  int fail(const std::string& what, int err) {
    say(what + " failed: " + errno_text(err));
    return 1;
  }

  /// What `start` needs of `run`'s state, set before the first start.
  struct launch {
    std::string path;
    std::vector<char*>* argv = nullptr;
    const std::vector<std::string>* base_env = nullptr;
    int devnull = -1;
    int raw_out = -1;
  };

  /// Starts process r (ranks_[r]) as rank `as` (its CHORUS_RANK, and its CPUs), with `extra`
  /// variables. Returns 0, or the exit status chorusrun should end with.
  int start(int r, int as, const std::vector<std::string>& extra) {
    const std::string& path = launch_.path;
    std::vector<char*>& argv = *launch_.argv;
    const int devnull = launch_.devnull, raw_out = launch_.raw_out;
    std::vector<std::string> env_strings = *launch_.base_env;
    env_strings.push_back("CHORUS_RANK=" + std::to_string(as));
    env_strings.push_back("CHORUS_LOCAL_RANK=" + std::to_string(as));
    env_strings.insert(env_strings.end(), extra.begin(), extra.end());
    std::vector<char*> envp;
    for (auto& e : env_strings) envp.push_back(e.data());
    envp.push_back(nullptr);

    int out[2] = {-1, -1}, err[2] = {-1, -1}, status[2] = {-1, -1};
    if (s_.prefix && (::pipe2(out, O_CLOEXEC) != 0 || ::pipe2(err, O_CLOEXEC) != 0)) {
      const int e = errno;
      for (int fd : {out[0], out[1]}) {
        if (fd >= 0) ::close(fd);
      }
      return fail("pipe for rank " + std::to_string(r), e);
    }
    unique_fd out_r(out[0]), out_w(out[1]), err_r(err[0]), err_w(err[1]);
    if (::pipe2(status, O_CLOEXEC) != 0) return fail("pipe", errno);
    unique_fd status_r(status[0]), status_w(status[1]);

    const pid_t parent = ::getpid();
    const cpu_set_t* bound =
        s_.bindings.empty() ? nullptr : &s_.bindings[static_cast<std::size_t>(as)].mask;
    const int max_fd = static_cast<int>(std::min<long>(::sysconf(_SC_OPEN_MAX), 1 << 20));
    const pid_t pid = ::fork();
    if (pid < 0) return fail("fork for rank " + std::to_string(r), errno);
    if (pid == 0) {
      // The child: async-signal-safe calls only, then exec.
      ::setpgid(0, 0);
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != parent) ::_exit(127);  // chorusrun died before prctl
      if (bound != nullptr && ::sched_setaffinity(0, sizeof *bound, bound) != 0) {
        constexpr std::string_view text = "chorusrun: sched_setaffinity (--bind-to) failed\n";
        [[maybe_unused]] const auto n = ::write(STDERR_FILENO, text.data(), text.size());
        ::_exit(1);
      }
      ::dup2(devnull, STDIN_FILENO);
      if (out_w) {
        ::dup2(out_w.get(), STDOUT_FILENO);  // dup2 clears close-on-exec on the copy
        ::dup2(err_w.get(), STDERR_FILENO);
      }
      // Only stdio goes to the program: also not the descriptors chorusrun inherited
      // without close-on-exec (as with mpirun). All but the exec-status pipe, which is
      // close-on-exec and reports a failed exec. close_range needs Linux 5.9; before
      // that, close them one by one.
      const auto close_between = [max_fd](int lo, int hi) {  // [lo, hi]
        if (lo > hi) return;
        if (::close_range(static_cast<unsigned>(lo), static_cast<unsigned>(hi), 0) != 0) {
          for (int fd = lo; fd <= hi && fd < max_fd; ++fd) ::close(fd);
        }
      };
      // Kept: the exec-status pipe and, with prefixed output, CHORUS_OUTPUT_FD (which the
      // rank gets, so it loses close-on-exec).
      int keep[2] = {status_w.get(), raw_out >= 0 ? raw_out : status_w.get()};
      if (keep[0] > keep[1]) std::swap(keep[0], keep[1]);
      close_between(3, keep[0] - 1);
      close_between(keep[0] + 1, keep[1] - 1);
      close_between(keep[1] + 1, std::numeric_limits<int>::max());
      if (raw_out >= 0) ::fcntl(raw_out, F_SETFD, 0);
      struct sigaction dfl {};
      dfl.sa_handler = SIG_DFL;
      ::sigaction(SIGPIPE, &dfl, nullptr);
      sigset_t none;
      sigemptyset(&none);
      ::sigprocmask(SIG_SETMASK, &none, nullptr);
      ::execve(path.c_str(), argv.data(), envp.data());
      const int e = errno;
      [[maybe_unused]] const auto n = ::write(status_w.get(), &e, sizeof e);
      ::_exit(127);
    }
    ++started_;
    ::setpgid(pid, pid);  // also here, so that it holds before we might signal the group
    auto& rank = ranks_[static_cast<std::size_t>(r)];
    rank.pid = pid;
    rank.running = true;
    rank.out = {std::move(out_r), STDOUT_FILENO, {}};
    rank.err = {std::move(err_r), STDERR_FILENO, {}};
    for (auto* st : {&rank.out, &rank.err}) {
      if (st->fd) ::fcntl(st->fd.get(), F_SETFL, O_NONBLOCK);
    }
    out_w.reset();
    err_w.reset();
    status_w.reset();

    // Wait for exec: end of file means it succeeded, an int is its errno.
    int exec_errno = 0;
    ssize_t n = 0;
    do {
      n = ::read(status_r.get(), &exec_errno, sizeof exec_errno);
    } while (n < 0 && errno == EINTR);
    if (n == sizeof exec_errno) {
      say("cannot execute '" + path + "': " + errno_text(exec_errno));
      exec_failed_ = true;
      return exec_errno == ENOENT ? 127 : 126;
    }
    return 0;
  }

  [[nodiscard]] int running_count() const {
    return static_cast<int>(
        std::count_if(ranks_.begin(), ranks_.end(), [](const auto& r) { return r.running; }));
  }

  /// Signals the process group of every running rank.
  void stop_all(int sig) {
    for (auto& r : ranks_) {
      if (r.running) ::kill(-r.pid, sig);
    }
    if (sig != SIGKILL && !kill_at_) {
      kill_at_ = steady::now() + std::chrono::duration_cast<steady::duration>(
                                     std::chrono::duration<double>(s_.grace_s));
    }
  }

  /// Collects every rank that has exited. When several failed since the last call, the one
  /// to name is the cause: a rank killed by a signal is the one that took the others down
  /// (they exit with an error naming it, often before this process wakes up, and waitpid
  /// returns them in no particular order); between equals, the lowest rank.
  void reap() {
    std::vector<int> failed_now;
    for (;;) {
      int st = 0;
      const pid_t pid = ::waitpid(-1, &st, WNOHANG);
      if (pid <= 0) break;
      auto it = std::find_if(ranks_.begin(), ranks_.end(), [&](auto& r) { return r.pid == pid; });
      if (it == ranks_.end()) continue;
      it->running = false;
      it->status = st;
      const bool failed = WIFSIGNALED(st) || (WIFEXITED(st) && WEXITSTATUS(st) != 0);
      if (!failed) continue;
      failed_now.push_back(static_cast<int>(it - ranks_.begin()));
    }
    const auto signaled = [&](int q) {
      return WIFSIGNALED(ranks_[static_cast<std::size_t>(q)].status);
    };
    std::sort(failed_now.begin(), failed_now.end(),
              [&](int a, int b) { return signaled(a) != signaled(b) ? signaled(a) : a < b; });
    for (const int r : failed_now) {
      if (first_failure_ || interrupted_ != 0 || exec_failed_) break;
      if (static_cast<int>(tolerated_.size()) < s_.tolerate) {
        tolerated_.push_back(r);
        say(failure_text(r) + "; the other ranks go on (--tolerate " + std::to_string(s_.tolerate) +
            ": failure " + std::to_string(tolerated_.size()) + " of " +
            std::to_string(s_.tolerate) + ")");
        if (s_.replace) replace(r);
        continue;
      }
      first_failure_ = r;
      others_stopped_ = running_count();
      stop_all(SIGTERM);
    }
  }

  /// --replace: starts a process that joins the job in place of failed process r.
  void replace(int r) {
    const int next = static_cast<int>(ranks_.size());
    const int as = ranks_[static_cast<std::size_t>(r)].as;
    ranks_.emplace_back();
    ranks_.back().as = as;
    if (start(next, as, {"CHORUS_JOIN=1"}) != 0) {
      ranks_.pop_back();
      return;  // said why; the others go on without a replacement
    }
    say("started process " + std::to_string(next) + " in place of rank " + std::to_string(r) +
        " (CHORUS_JOIN=1: it joins when the others grow their group)");
  }

  /// "rank R was killed by signal N (NAME)[, core dumped]" or "rank R exited with status N".
  [[nodiscard]] std::string failure_text(int r) const {
    const int st = ranks_[static_cast<std::size_t>(r)].status;
    if (WIFSIGNALED(st)) {
      const int sig = WTERMSIG(st);
      return "rank " + std::to_string(r) + " was killed by signal " + std::to_string(sig) + " (" +
             signal_name(sig) + ")" + (WCOREDUMP(st) ? ", core dumped" : "");
    }
    return "rank " + std::to_string(r) + " exited with status " + std::to_string(WEXITSTATUS(st));
  }

  void on_signals() {
    signalfd_siginfo info{};
    while (::read(sigfd_.get(), &info, sizeof info) == sizeof info) {
      const int sig = static_cast<int>(info.ssi_signo);
      if (sig == SIGCHLD) continue;  // reaped below in every case
      if (interrupted_ == 0) {
        interrupted_ = sig;
        interrupted_running_ = running_count();
        stop_all(sig);  // forward it: the ranks may want to clean up
      } else {
        stop_all(SIGKILL);  // asked twice: no more grace
      }
    }
    reap();
  }

  /// Passes the complete lines in `st.buf` on, prefixed; at end of file, the rest too.
  void emit(int r, stream& st, bool eof) {
    const std::string prefix = "[" + std::to_string(r) + "] ";
    std::string out;
    std::size_t begin = 0;
    for (;;) {
      const auto nl = st.buf.find('\n', begin);
      if (nl == std::string::npos) break;
      out += prefix;
      out.append(st.buf, begin, nl + 1 - begin);
      begin = nl + 1;
    }
    st.buf.erase(0, begin);
    while (st.buf.size() >= max_line_bytes || (eof && !st.buf.empty())) {
      const std::size_t n = std::min(st.buf.size(), max_line_bytes);
      out += prefix;
      out.append(st.buf, 0, n);
      out += '\n';
      st.buf.erase(0, n);
    }
    if (out.empty()) return;
    bool& open = st.target == STDOUT_FILENO ? stdout_open_ : stderr_open_;
    if (open) open = write_all(st.target, out);
  }

  void on_readable(int r, stream& st) {
    char buf[65536];
    for (int round = 0; round < 4; ++round) {
      const ssize_t n = ::read(st.fd.get(), buf, sizeof buf);
      if (n > 0) {
        st.buf.append(buf, static_cast<std::size_t>(n));
        emit(r, st, false);
        continue;
      }
      if (n < 0 && (errno == EINTR)) continue;
      if (n < 0 && errno == EAGAIN) return;
      emit(r, st, true);  // end of file (or an error): flush the last partial line
      st.fd.reset();
      return;
    }
  }

  /// Runs until every rank has exited and its output is passed on.
  void loop() {
    std::vector<pollfd> fds;
    std::vector<std::pair<int, stream*>> owners;
    std::optional<steady::time_point> drain_until;
    for (;;) {
      reap();
      const auto now = steady::now();
      if (kill_at_ && now >= *kill_at_) {
        stop_all(SIGKILL);
        kill_at_.reset();
      }
      fds.clear();
      owners.clear();
      fds.push_back({sigfd_.get(), POLLIN, 0});
      for (std::size_t r = 0; r < ranks_.size(); ++r) {
        for (auto* st : {&ranks_[r].out, &ranks_[r].err}) {
          if (!st->fd) continue;
          fds.push_back({st->fd.get(), POLLIN, 0});
          owners.emplace_back(static_cast<int>(r), st);
        }
      }
      if (running_count() == 0) {
        if (owners.empty()) return;
        // Every rank has exited but something (a process it left behind) still holds an
        // output pipe: wait at most the grace period for it, then stop listening.
        if (!drain_until) {
          drain_until = now + std::chrono::duration_cast<steady::duration>(
                                  std::chrono::duration<double>(s_.grace_s));
        }
        if (now >= *drain_until) {
          for (auto& [r, st] : owners) emit(r, *st, true);
          return;
        }
      }
      // Wake at the next deadline; at most every 250 ms regardless, so that a lost SIGCHLD
      // could only delay, never stall, the reaping.
      int timeout_ms = 250;
      for (const auto& t : {kill_at_, drain_until}) {
        if (!t) continue;
        const auto ms = std::chrono::ceil<std::chrono::milliseconds>(*t - now).count();
        timeout_ms = std::clamp(static_cast<int>(ms), 0, timeout_ms);
      }
      if (::poll(fds.data(), fds.size(), timeout_ms) < 0 && errno != EINTR) {
        say("poll failed: " + errno_text(errno) + "; killing the ranks");
        stop_all(SIGKILL);
        return;
      }
      if (fds[0].revents != 0) on_signals();
      for (std::size_t i = 1; i < fds.size(); ++i) {
        if (fds[i].revents != 0) on_readable(owners[i - 1].first, *owners[i - 1].second);
      }
    }
  }

  /// Reaps anything left (a rank that ignored SIGTERM was SIGKILLed in loop()).
  void reap_all() {
    while (running_count() > 0) {
      stop_all(SIGKILL);
      ::usleep(1000);
      reap();
    }
  }

  /// Removes the job's shared-memory segments that its ranks left behind. A rank unlinks
  /// its segments once every peer has mapped them, or when it fails; one stopped by a signal
  /// while the ranks still exchanged their names (a peer failed at start-up, or chorusrun
  /// was interrupted) could not. The names start with "chorus-<job id>-" (shm.hpp).
  void sweep_segments() {
    const int removed = remove_segments();
    if (removed != 0) {
      say("removed " + std::to_string(removed) + " shared-memory segment" +
          (removed == 1 ? "" : "s") + " of this job left in /dev/shm by stopped ranks");
    }
  }

  int remove_segments() const {
    const std::string prefix = "chorus-" + job_id_ + "-";
    int removed = 0;
    if (DIR* d = ::opendir("/dev/shm")) {
      while (const dirent* e = ::readdir(d)) {
        const std::string_view name(e->d_name);
        if (name.starts_with(prefix) && ::shm_unlink(("/" + std::string(name)).c_str()) == 0) {
          ++removed;
        }
      }
      ::closedir(d);
    }
    return removed;
  }

  int finish() {
    reap_all();
    const int code = report();
    sweep_segments();  // after the report: the first line says what failed
    return code;
  }

  /// The one-line report of how the job ended; its exit status.
  int report() {
    const auto others = [](int n, bool all) {
      if (n == 0) return std::string();
      const std::string noun = n == 1 ? "rank" : "ranks";
      if (all) return "; stopped the other " + (n == 1 ? noun : std::to_string(n) + " " + noun);
      return "; stopped " + std::to_string(n) + " other " + noun + " still running";
    };
    if (interrupted_ != 0) {
      say("interrupted by " + signal_name(interrupted_) +
          (interrupted_running_ > 0 ? "; stopped " + std::to_string(interrupted_running_) +
                                          (interrupted_running_ == 1 ? " rank" : " ranks")
                                    : std::string()));
      return 128 + interrupted_;
    }
    if (first_failure_) {
      const int r = *first_failure_;
      const int never = static_cast<int>(ranks_.size()) - started_;
      const std::string not_started = never == 0 ? std::string()
                                                 : "; " + std::to_string(never) +
                                                       (never == 1 ? " rank was" : " ranks were") +
                                                       " not started";
      const int st = ranks_[static_cast<std::size_t>(r)].status;
      const bool all = others_stopped_ ==
                       static_cast<int>(ranks_.size()) - 1 - static_cast<int>(tolerated_.size());
      say(failure_text(r) + others(others_stopped_, all) + not_started);
      return WIFSIGNALED(st) ? 128 + WTERMSIG(st) : WEXITSTATUS(st);
    }
    if (!tolerated_.empty()) {
      std::string which;
      for (const int r : tolerated_) which += (which.empty() ? "" : ", ") + std::to_string(r);
      say("every other rank exited 0; " + std::to_string(tolerated_.size()) + " failed (rank" +
          (tolerated_.size() == 1 ? " " : "s ") + which + ") within --tolerate " +
          std::to_string(s_.tolerate));
    }
    return 0;
  }

  settings s_;
  std::string job_id_;  ///< CHORUS_JOB_ID: names the job's shared-memory segments
  unique_fd sigfd_;
  /// A deque: --replace appends a process while the loop holds pointers to the others'
  /// output streams.
  std::deque<rank_process> ranks_;
  std::optional<steady::time_point> kill_at_;  ///< when the stopped ranks get SIGKILL
  std::optional<int> first_failure_;
  std::vector<int> tolerated_;  ///< ranks whose failure the others outlived (--tolerate)
  launch launch_;
  int others_stopped_ = 0;
  int interrupted_ = 0;  ///< the signal that interrupted chorusrun, or 0
  int interrupted_running_ = 0;
  int started_ = 0;  ///< ranks forked so far
  bool exec_failed_ = false;
  bool stdout_open_ = true;
  bool stderr_open_ = true;
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "Starts N ranks of a program on this machine for chorus::bootstrap::from_env(): a "
      "tcp_store on 127.0.0.1, CHORUS_* variables, rank-prefixed output, and one failing "
      "rank stops them all (unless --tolerate lets the others go on).",
      "chorusrun"};
  app.footer(
      "Usage: chorusrun -n N [options] [--] program [args...]\n"
      "Exit status: 0 when every rank succeeds (or fails within --tolerate); else the first "
      "failing rank's status (128 + "
      "signal if killed); 130/143 when interrupted; 127 program not found; 126 not "
      "executable; 2 usage error.");
  settings s;
  app.set_version_flag("--version", std::string("chorusrun (chorus) ") + CHORUS_VERSION_STRING);
  app.add_option("-n,--np", s.np, "number of ranks to start (1 or more)")
      ->required()
      ->check([](const std::string& v) {
        return v.find_first_not_of("0123456789") == std::string::npos && v.size() <= 6 &&
                       std::stoi(v) >= 1
                   ? std::string()
                   : "must be a whole number from 1 to 999999, not '" + v + "'";
      });
  app.add_option("--grace", s.grace_s,
                 "seconds between SIGTERM and SIGKILL when stopping ranks (default 3)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--tolerate", s.tolerate,
                 "rank failures that do not stop the other ranks (default 0), for programs "
                 "that shrink their communicator around a dead rank")
      ->check(CLI::NonNegativeNumber);
  app.add_flag("--replace", s.replace,
               "with --tolerate: start a new process in place of each tolerated failure, with "
               "CHORUS_JOIN=1 (it joins the job when the others grow their group back)");
  bool no_prefix = false;
  app.add_flag("--no-prefix", no_prefix,
               "let the ranks write to chorusrun's stdout and stderr directly, without the "
               "[rank] prefix");
  app.add_option("--timeout", s.timeout,
                 "sets CHORUS_TIMEOUT for the ranks (e.g. 60, 2.5, 500ms, 5m)")
      ->check(
          [](const std::string& t) {
            return chorus::parse_duration(t) ? std::string()
                                             : "'" + t + "' is not a positive duration";
          },
          "DURATION");
  app.add_flag("--check", s.check, "sets CHORUS_CHECK=1 (collective argument checking)");
  std::string map_name = "core";
  std::string bind_name = "none";
  app.add_option("--map-by", map_name,
                 "the order ranks take the cores in: core (fill each socket first, the "
                 "default), socket or numa (round-robin over them)")
      ->check(CLI::IsMember({"core", "socket", "numa"}));
  app.add_option("--bind-to", bind_name,
                 "the CPUs each rank may run on: none (the default), hwthread, core, socket "
                 "or numa (of the core --map-by gave it)")
      ->check(CLI::IsMember({"none", "hwthread", "core", "socket", "numa"}));
  app.add_flag("--report-bindings", s.report_bindings,
               "print each rank's CPUs on stderr before starting it");
  // Everything from the first argument that is not one of chorusrun's options (or after
  // `--`) is the program and its arguments.
  app.prefix_command();
  try {
    app.parse(argc, argv);
  } catch (const CLI::Success& e) {
    return app.exit(e);  // --help, --version
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "chorusrun: %s\nRun 'chorusrun --help' for usage.\n", e.what());
    return 2;
  }
  if (s.tolerate >= s.np) {
    std::fprintf(stderr,
                 "chorusrun: --tolerate %d with %d ranks: at most %d failures can leave a rank "
                 "running\nRun 'chorusrun --help' for usage.\n",
                 s.tolerate, s.np, s.np - 1);
    return 2;
  }
  if (s.replace && s.tolerate == 0) {
    std::fprintf(stderr,
                 "chorusrun: --replace starts a process in place of a tolerated failure: give "
                 "--tolerate K too\nRun 'chorusrun --help' for usage.\n");
    return 2;
  }
  s.prefix = !no_prefix;
  s.command = app.remaining();
  if (!s.command.empty() && s.command.front() == "--") {
    s.command.erase(s.command.begin());
  } else if (!s.command.empty() && s.command.front().starts_with("-")) {
    std::fprintf(stderr,
                 "chorusrun: unknown option '%s' (put `--` before a program whose name starts "
                 "with '-')\nRun 'chorusrun --help' for usage.\n",
                 s.command.front().c_str());
    return 2;
  }
  if (s.command.empty()) {
    std::fprintf(stderr, "chorusrun: no program to run\nRun 'chorusrun --help' for usage.\n");
    return 2;
  }
  try {
    const std::map<std::string, chorusrun::map_by> maps{{"core", chorusrun::map_by::core},
                                                        {"socket", chorusrun::map_by::socket},
                                                        {"numa", chorusrun::map_by::numa}};
    const std::map<std::string, chorusrun::bind_to> binds{
        {"none", chorusrun::bind_to::none},
        {"hwthread", chorusrun::bind_to::hwthread},
        {"core", chorusrun::bind_to::core},
        {"socket", chorusrun::bind_to::socket},
        {"numa", chorusrun::bind_to::numa}};
    s.bindings = chorusrun::plan_bindings(s.np, maps.at(map_name), binds.at(bind_name));
  } catch (const std::exception& e) {
    say(e.what());
    return 2;
  }
  try {
    return launcher(std::move(s)).run();
  } catch (const std::exception& e) {
    say(e.what());
    return 1;
  }
}

// chorusrun_probe: the program chorusrun_test starts under chorusrun. It runs its arguments
// as actions, in order; "R:action" runs only on rank R (CHORUS_RANK).
//
//   env           prints "env rank=.. size=.. local_rank=.. local_size=.. store=.. job=..
//                 timeout=.. check=.." on one line
//   out=TEXT      prints TEXT and a newline to stdout      err=TEXT   the same to stderr
//   partial       writes one line to stdout in three write() calls 20 ms apart
//   lines=N       prints N numbered lines to stdout as fast as it can
//   sleep=S       sleeps S seconds (decimal)
//   exit=N        exits with status N                      signal=N   raises signal N
//   ignore-term   ignores SIGTERM from now on (chorusrun must use SIGKILL)
//   fds           prints "fds ..." with the descriptors open in this process ("out" for
//                 CHORUS_OUTPUT_FD)
//   raw=TEXT      writes TEXT and a newline to CHORUS_OUTPUT_FD (exit 5 without it)
//   outfd         prints "outfd <CHORUS_OUTPUT_FD>" ("(unset)" without it)
//   pid           prints "pid <pid>"
//   pause-parent=S  stops its parent (chorusrun) with SIGSTOP and leaves a child that
//                 continues it S seconds later: whatever the ranks do meanwhile, chorusrun
//                 sees all at once when it wakes up
//   store         from_env(), all_gather_blob of its rank, a barrier; prints "gathered ..."
//   tail          prints a line without a newline, then exits
//   shm           from_env(), then a shared-memory transport (its start-up exchange);
//                 prints "shm up"
//   shrink=V      from_env(), a shared-memory communicator, barriers until one fails because
//                 rank V killed itself (SIGKILL) before its third; then communicator::shrink
//                 and a barrier in the new group; prints "shrunk to N: members M0,M1,...
//                 (T ms, A attempts)"
//   secret        prints "secret <CHORUS_JOB_SECRET>"
//   stranger      connects to CHORUS_STORE without the secret; prints "stranger: <error>"
#include <chorus/bootstrap/from_env.hpp>
#include <chorus/collectives/barrier.hpp>
#include <chorus/group/shrink.hpp>
#include <chorus/transport/shm.hpp>

#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>

namespace {

std::string var(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr ? v : "(unset)";
}

void put(int fd, const std::string& text) {
  [[maybe_unused]] const auto n = ::write(fd, text.data(), text.size());
}

}  // namespace

int main(int argc, char** argv) {
  const std::string rank = var("CHORUS_RANK");
  // "R:action" is for rank R; "join:action" for a process started by --replace.
  const std::string who = var("CHORUS_JOIN") == "1" ? "join" : rank;
  for (int i = 1; i < argc; ++i) {
    std::string action = argv[i];
    if (const auto colon = action.find(':'); colon != std::string::npos) {
      if (action.substr(0, colon) != who) continue;
      action = action.substr(colon + 1);
    }
    const auto eq = action.find('=');
    const std::string verb = action.substr(0, eq);
    const std::string arg = eq == std::string::npos ? "" : action.substr(eq + 1);
    if (verb == "env") {
      put(1, "env rank=" + rank + " size=" + var("CHORUS_SIZE") + " local_rank=" +
                 var("CHORUS_LOCAL_RANK") + " local_size=" + var("CHORUS_LOCAL_SIZE") +
                 " store=" + var("CHORUS_STORE") + " job=" + var("CHORUS_JOB_ID") +
                 " timeout=" + var("CHORUS_TIMEOUT") + " check=" + var("CHORUS_CHECK") + "\n");
    } else if (verb == "out") {
      put(1, arg + "\n");
    } else if (verb == "err") {
      put(2, arg + "\n");
    } else if (verb == "partial") {
      for (const char* piece : {"first-", "second-", "third\n"}) {
        put(1, piece);
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
    } else if (verb == "lines") {
      const int n = std::stoi(arg);
      for (int k = 0; k < n; ++k) {
        std::printf("line %d of rank %s\n", k, rank.c_str());
      }
      std::fflush(stdout);
    } else if (verb == "sleep") {
      std::this_thread::sleep_for(std::chrono::duration<double>(std::stod(arg)));
    } else if (verb == "exit") {
      std::fflush(nullptr);
      return std::stoi(arg);
    } else if (verb == "signal") {
      std::fflush(nullptr);
      ::raise(std::stoi(arg));
    } else if (verb == "ignore-term") {
      ::signal(SIGTERM, SIG_IGN);
    } else if (verb == "outfd") {
      put(1, "outfd " + var("CHORUS_OUTPUT_FD") + "\n");
    } else if (verb == "raw") {  // a line on CHORUS_OUTPUT_FD, which chorusrun does not prefix
      const char* out = std::getenv("CHORUS_OUTPUT_FD");
      const std::string line = arg + "\n";
      if (out == nullptr || ::write(std::atoi(out), line.data(), line.size()) < 0) return 5;
    } else if (verb == "fds") {
      std::string list = "fds";
      for (const auto& e : std::filesystem::directory_iterator("/proc/self/fd")) {
        const int fd = std::stoi(e.path().filename().string());
        std::error_code ec;
        const auto target = std::filesystem::read_symlink(e.path(), ec).string();
        if (target.find("/proc/") != std::string::npos && target.find("/fd") != std::string::npos) {
          continue;  // the listing's own descriptor
        }
        const char* out = std::getenv("CHORUS_OUTPUT_FD");
        list +=
            out != nullptr && std::atoi(out) == fd ? std::string(" out") : " " + std::to_string(fd);
      }
      put(1, list + "\n");
    } else if (verb == "pause-parent") {
      const pid_t parent = ::getppid();
      const double seconds = std::stod(arg);
      if (::fork() == 0) {
        std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
        ::kill(parent, SIGCONT);
        ::_exit(0);
      }
      ::kill(parent, SIGSTOP);
    } else if (verb == "pid") {
      put(1, "pid " + std::to_string(::getpid()) + "\n");
    } else if (verb == "store") {
      auto world = chorus::bootstrap::from_env();
      const auto d = chorus::deadline::after(world.timeout);
      const auto blobs = chorus::bootstrap::all_gather_blob(
          world.store, "chorus/" + world.job_id + "/probe/ag", world.rank, world.size,
          chorus::bootstrap::to_bytes(std::to_string(world.rank * 10)), d);
      std::string text = "gathered";
      for (const auto& b : blobs) text += " " + chorus::bootstrap::as_string(b);
      chorus::bootstrap::barrier(world.store, "chorus/" + world.job_id + "/probe/done", world.rank,
                                 world.size, d);
      put(1, text + "\n");
    } else if (verb == "shm") {
      chorus::shm_transport t{chorus::bootstrap::from_env()};
      put(1, "shm up\n");
    } else if (verb == "shrink") {
      chorus::communicator<chorus::shm_transport> comm(
          chorus::shm_transport{chorus::bootstrap::from_env()});
      try {
        for (int k = 0;; ++k) {
          if (k == 2 && comm.rank() == std::stoi(arg)) ::raise(SIGKILL);
          chorus::barrier(comm);
        }
      } catch (const chorus::error&) {
      }
      auto s = comm.shrink();
      chorus::barrier(s.comm);
      std::string members;
      for (const int m : s.members) members += (members.empty() ? "" : ",") + std::to_string(m);
      char took[64];
      std::snprintf(took, sizeof took, " (%.1f ms, %d attempt%s)",
                    std::chrono::duration<double, std::milli>(s.took).count(), s.attempts,
                    s.attempts == 1 ? "" : "s");
      put(1, "shrunk to " + std::to_string(s.comm.size()) + ": members " + members + took + "\n");
    } else if (verb == "secret") {
      put(1, "secret " + var("CHORUS_JOB_SECRET") + "\n");
    } else if (verb == "stranger") {
      const auto [host, port] =
          chorus::bootstrap::detail::env::parse_address("CHORUS_STORE", var("CHORUS_STORE"));
      try {
        chorus::bootstrap::tcp_store s({.host = host, .port = port});
        put(1, "stranger: served\n");
      } catch (const chorus::error& e) {
        put(1, std::string("stranger: ") + e.what() + "\n");
      }
    } else if (verb == "tail") {
      put(1, "no newline at the end");
    } else {
      put(2, "chorusrun_probe: unknown action '" + action + "'\n");
      return 64;
    }
  }
  return 0;
}

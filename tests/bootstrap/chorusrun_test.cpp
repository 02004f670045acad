// chorusrun, driven as a user drives it, with chorusrun_probe as the program: exit codes
// and the one-line report of the first failing rank, stopping the other ranks (SIGTERM,
// then SIGKILL after --grace), rank-prefixed output that never mixes lines, the CHORUS_*
// environment, a working store, descriptor hygiene, a missing program, usage errors, and
// SIGINT/SIGTERM to chorusrun. Every run has a time limit far below the probes' sleeps, so
// a run that ends in time proves the sleeping ranks were stopped.
#include <catch2/catch.hpp>

#include "bootstrap/process.hpp"

#include <sched.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <regex>
#include <set>
#include <string>
#include <vector>

#ifndef CHORUSRUN_EXE
#error "CHORUSRUN_EXE must be the path of the chorusrun executable"
#endif
#ifndef CHORUSRUN_PROBE
#error "CHORUSRUN_PROBE must be the path of the chorusrun_probe executable"
#endif

using namespace std::chrono_literals;

namespace {

std::vector<std::string> args(std::vector<std::string> chorusrun_args,
                              std::vector<std::string> probe_args = {}) {
  std::vector<std::string> all{CHORUSRUN_EXE};
  all.insert(all.end(), chorusrun_args.begin(), chorusrun_args.end());
  if (!probe_args.empty() || chorusrun_args.empty() || chorusrun_args.back() != "--") {
    all.push_back(CHORUSRUN_PROBE);
  }
  all.insert(all.end(), probe_args.begin(), probe_args.end());
  return all;
}

proc::result run(std::vector<std::string> chorusrun_args, std::vector<std::string> probe_args) {
  proc::command c(args(std::move(chorusrun_args), std::move(probe_args)));
  return c.finish(40s);
}

/// The pids that "[r] pid N" lines report.
std::vector<pid_t> pids_in(const std::string& out) {
  std::vector<pid_t> pids;
  const std::regex re(R"(^\[\d+\] pid (\d+)$)");
  for (const auto& line : proc::lines(out)) {
    std::smatch m;
    if (std::regex_match(line, m, re)) pids.push_back(std::stoi(m[1]));
  }
  return pids;
}

/// The lines chorusrun itself wrote (not prefixed by a rank).
std::vector<std::string> own_lines(const std::string& err) {
  std::vector<std::string> out;
  for (const auto& l : proc::lines(err)) {
    if (l.starts_with("chorusrun: ")) out.push_back(l);
  }
  return out;
}

}  // namespace

TEST_CASE("chorusrun: every rank succeeds; each gets its own rank and the same job and store") {
  const auto r = run({"-n", "4"}, {"env"});
  REQUIRE_FALSE(r.timed_out);
  CHECK(r.exit_code() == 0);
  CHECK(r.err.empty());
  const std::regex re(
      R"(^\[(\d+)\] env rank=(\d+) size=4 local_rank=(\d+) local_size=4 store=(127\.0\.0\.1:\d+) job=([0-9a-f]{32}) .*$)");
  std::set<int> ranks;
  std::set<std::string> stores, jobs;
  for (const auto& line : proc::lines(r.out)) {
    std::smatch m;
    INFO(line);
    REQUIRE(std::regex_match(line, m, re));
    CHECK(m[1] == m[2]);  // the prefix is the rank's own
    CHECK(m[2] == m[3]);
    ranks.insert(std::stoi(m[2]));
    stores.insert(m[4]);
    jobs.insert(m[5]);
  }
  CHECK(ranks == std::set<int>{0, 1, 2, 3});
  CHECK(stores.size() == 1);
  CHECK(jobs.size() == 1);
  // Another job gets another id.
  const auto again = run({"-n", "1"}, {"env"});
  CHECK(again.out.find(*jobs.begin()) == std::string::npos);
}

TEST_CASE("chorusrun: --timeout and --check reach the ranks; `--` ends chorusrun's options") {
  const auto r = run({"-n", "2", "--timeout", "7s", "--check", "--"}, {"env"});
  CHECK(r.exit_code() == 0);
  for (const auto& line : proc::lines(r.out)) {
    CHECK_THAT(line, Catch::Contains("timeout=7s check=1"));
  }
  CHECK(proc::lines(r.out).size() == 2);
}

TEST_CASE("chorusrun: the ranks meet through its store") {
  const auto r = run({"-n", "4"}, {"store"});
  CHECK(r.exit_code() == 0);
  INFO(r.err);
  for (int rank = 0; rank < 4; ++rank) {
    CHECK_THAT(r.out, Catch::Contains("[" + std::to_string(rank) + "] gathered 0 10 20 30\n"));
  }
}

TEST_CASE("chorusrun: the ranks share a job secret; its store serves no one without it") {
  const auto r = run({"-n", "3"}, {"secret", "stranger", "store"});
  CHECK(r.exit_code() == 0);
  INFO(r.out << r.err);
  const std::regex re(R"(^\[\d+\] secret ([0-9a-f]{64})$)");
  std::set<std::string> secrets;
  for (const auto& line : proc::lines(r.out)) {
    std::smatch m;
    if (std::regex_match(line, m, re)) secrets.insert(m[1]);
  }
  CHECK(secrets.size() == 1);
  for (int rank = 0; rank < 3; ++rank) {
    const std::string tag = "[" + std::to_string(rank) + "] ";
    CHECK_THAT(r.out, Catch::Contains(tag + "stranger: chorus: tcp_store: the store at") &&
                          Catch::Contains("requires the job secret"));
    CHECK_THAT(r.out, Catch::Contains(tag + "gathered 0 10 20\n"));
  }
  // Another job draws another secret.
  const auto again = run({"-n", "1"}, {"secret"});
  REQUIRE_FALSE(secrets.empty());
  CHECK(again.out.find(*secrets.begin()) == std::string::npos);
}

TEST_CASE("chorusrun: the ranks get stdin, stdout, stderr and CHORUS_OUTPUT_FD, nothing else") {
  const auto r = run({"-n", "2"}, {"fds"});
  CHECK(r.exit_code() == 0);
  CHECK_THAT(r.out,
             Catch::Contains("[0] fds 0 1 2 out\n") && Catch::Contains("[1] fds 0 1 2 out\n"));
  // without the prefix the ranks write to chorusrun's stdout: no second descriptor of it
  const auto plain = run({"-n", "2", "--no-prefix"}, {"fds"});
  CHECK(plain.exit_code() == 0);
  CHECK_THAT(plain.out, Catch::Contains("fds 0 1 2\n"));
  CHECK(plain.out.find("out") == std::string::npos);
}

TEST_CASE("chorusrun: a CHORUS_OUTPUT_FD chorusrun was given is not passed on") {
  // e.g. chorusrun started by a rank of another chorusrun: that descriptor is not the ranks'
  ::setenv("CHORUS_OUTPUT_FD", "97", 1);
  const auto plain = run({"-n", "1", "--no-prefix"}, {"outfd"});
  const auto prefixed = run({"-n", "1"}, {"outfd"});
  ::unsetenv("CHORUS_OUTPUT_FD");
  CHECK_THAT(plain.out, Catch::Contains("outfd (unset)\n"));
  CHECK(prefixed.out.find("[0] outfd 97\n") == std::string::npos);
  CHECK_THAT(prefixed.out, Catch::Contains("[0] outfd "));
}

TEST_CASE("chorusrun: what a rank writes to CHORUS_OUTPUT_FD appears without the prefix") {
  const auto r = run({"-n", "2"}, {"0:raw=table-row", "pid"});
  CHECK(r.exit_code() == 0);
  CHECK_THAT(r.out, Catch::StartsWith("table-row\n") || Catch::Contains("\ntable-row\n"));
  CHECK(r.out.find("] table-row") == std::string::npos);
  CHECK_THAT(r.out, Catch::Contains("[1] pid "));  // the rest is still prefixed
}

TEST_CASE("chorusrun: a rank that exits non-zero stops the others; its status is chorusrun's") {
  const auto r = run({"-n", "4", "--grace", "2"}, {"pid", "2:sleep=1", "2:exit=3", "sleep=60"});
  REQUIRE_FALSE(r.timed_out);  // the others sleep 60 s: they were stopped
  CHECK(r.exit_code() == 3);
  const auto mine = own_lines(r.err);
  REQUIRE(mine.size() == 1);
  CHECK(mine[0] == "chorusrun: rank 2 exited with status 3; stopped the other 3 ranks");
  const auto pids = pids_in(r.out);
  CHECK(pids.size() == 4);
  for (const pid_t p : pids) CHECK_FALSE(proc::alive(p));  // reaped: no zombie, no orphan
}

TEST_CASE("chorusrun: a rank killed by a signal is named with the signal") {
  const auto r = run({"-n", "3"}, {"pid", "1:sleep=1", "1:signal=9", "sleep=60"});
  REQUIRE_FALSE(r.timed_out);
  CHECK(r.exit_code() == 128 + 9);
  const auto mine = own_lines(r.err);
  REQUIRE(mine.size() == 1);
  CHECK(mine[0] == "chorusrun: rank 1 was killed by signal 9 (SIGKILL); stopped the other 2 ranks");
  for (const pid_t p : pids_in(r.out)) CHECK_FALSE(proc::alive(p));
}

TEST_CASE("chorusrun: the rank killed is named, not a rank that failed because of it") {
  // Rank 1 pauses chorusrun and is killed; rank 0 then fails (as a survivor that sees its
  // peer gone does) before chorusrun wakes up and reaps both at once. waitpid returns them
  // in no particular order (oldest first, here): the report must name the killed rank.
  const auto r =
      run({"-n", "3"}, {"1:pause-parent=1.5", "1:signal=9", "0:sleep=0.5", "0:exit=2", "sleep=60"});
  REQUIRE_FALSE(r.timed_out);
  CHECK(r.exit_code() == 128 + 9);
  const auto mine = own_lines(r.err);
  REQUIRE(mine.size() == 1);
  CHECK(mine[0] ==
        "chorusrun: rank 1 was killed by signal 9 (SIGKILL); stopped 1 other rank still running");
}

TEST_CASE("chorusrun: --tolerate K lets the other ranks go on after K failures; not after K+1") {
  {
    const auto r = run({"-n", "3", "--tolerate", "1"},
                       {"pid", "1:sleep=0.3", "1:signal=9", "sleep=1", "out=still here"});
    REQUIRE_FALSE(r.timed_out);
    CHECK(r.exit_code() == 0);
    const auto mine = own_lines(r.err);
    REQUIRE(mine.size() == 2);
    CHECK(mine[0] ==
          "chorusrun: rank 1 was killed by signal 9 (SIGKILL); the other ranks go on "
          "(--tolerate 1: failure 1 of 1)");
    CHECK(mine[1] == "chorusrun: every other rank exited 0; 1 failed (rank 1) within --tolerate 1");
    CHECK_THAT(r.out, Catch::Contains("[0] still here") && Catch::Contains("[2] still here"));
  }
  {
    // The second failure is one too many: it stops the rank still running.
    const auto r = run({"-n", "4", "--tolerate", "1"},
                       {"pid", "1:signal=9", "2:sleep=0.5", "2:exit=4", "sleep=60"});
    REQUIRE_FALSE(r.timed_out);
    CHECK(r.exit_code() == 4);
    const auto mine = own_lines(r.err);
    REQUIRE(mine.size() == 2);
    CHECK_THAT(mine[0], Catch::StartsWith("chorusrun: rank 1 was killed by signal 9"));
    CHECK(mine[1] == "chorusrun: rank 2 exited with status 4; stopped the other 2 ranks");
    for (const pid_t p : pids_in(r.out)) CHECK_FALSE(proc::alive(p));
  }
  {
    // What --tolerate is for: rank 2 is killed, the others shrink their communicator through
    // chorusrun's store and go on without it.
    const auto r = run({"-n", "4", "--tolerate", "1"}, {"shrink=2"});
    REQUIRE_FALSE(r.timed_out);
    INFO(r.err);
    CHECK(r.exit_code() == 0);
    for (const int rank : {0, 1, 3}) {
      CHECK_THAT(r.out,
                 Catch::Contains("[" + std::to_string(rank) + "] shrunk to 3: members 0,1,3"));
    }
  }
  {
    const auto r = run({"-n", "2", "--tolerate", "2"}, {"out=never"});
    CHECK(r.exit_code() == 2);
    CHECK_THAT(r.err, Catch::Contains("--tolerate 2 with 2 ranks"));
  }
}

TEST_CASE("chorusrun: --replace starts a joining process in a tolerated failure's place") {
  {
    const auto r = run({"-n", "3", "--tolerate", "1", "--replace"},
                       {"1:sleep=0.2", "1:signal=9", "join:env", "join:out=joined", "sleep=1"});
    REQUIRE_FALSE(r.timed_out);
    INFO(r.err);
    CHECK(r.exit_code() == 0);
    const auto mine = own_lines(r.err);
    REQUIRE(mine.size() == 3);
    CHECK_THAT(mine[0], Catch::StartsWith("chorusrun: rank 1 was killed by signal 9"));
    CHECK(mine[1] ==
          "chorusrun: started process 3 in place of rank 1 (CHORUS_JOIN=1: it joins when the "
          "others grow their group)");
    CHECK(mine[2] == "chorusrun: every other rank exited 0; 1 failed (rank 1) within --tolerate 1");
    // The replacement: the next process number, the failed rank's CHORUS_RANK, the job's store.
    CHECK_THAT(r.out, Catch::Contains("[3] env rank=1 size=3") && Catch::Contains("[3] joined"));
    CHECK_THAT(r.out, !Catch::Contains("[0] joined") && !Catch::Contains("[2] joined"));
  }
  {
    const auto r = run({"-n", "2", "--replace"}, {"out=never"});
    CHECK(r.exit_code() == 2);
    CHECK_THAT(r.err,
               Catch::Contains("--replace starts a process in place of a tolerated failure"));
  }
}

TEST_CASE("chorusrun: ranks that ignore SIGTERM are killed after the grace period") {
  const auto r = run({"-n", "3", "--grace", "0.5"},
                     {"ignore-term", "pid", "0:sleep=1", "0:exit=1", "sleep=60"});
  REQUIRE_FALSE(r.timed_out);
  CHECK(r.exit_code() == 1);
  const auto mine = own_lines(r.err);
  REQUIRE(mine.size() == 1);
  CHECK(mine[0] == "chorusrun: rank 0 exited with status 1; stopped the other 2 ranks");
  const auto pids = pids_in(r.out);
  CHECK(pids.size() == 3);
  for (const pid_t p : pids) CHECK_FALSE(proc::alive(p));
}

TEST_CASE("chorusrun: output lines carry their rank and are never cut or mixed") {
  constexpr int n = 4;
  constexpr int count = 3000;
  const auto r = run({"-n", std::to_string(n)},
                     {"partial", "lines=" + std::to_string(count), "err=to stderr", "tail"});
  CHECK(r.exit_code() == 0);
  const std::regex numbered(R"(^\[(\d+)\] line (\d+) of rank (\d+)$)");
  std::map<int, int> next;  // per rank, the number its next line must have
  std::map<int, int> partial, tail;
  for (const auto& line : proc::lines(r.out)) {
    std::smatch m;
    if (std::regex_match(line, m, numbered)) {
      const int rank = std::stoi(m[1]);
      CHECK(m[1] == m[3]);
      CHECK(std::stoi(m[2]) == next[rank]);  // in order, none lost
      ++next[rank];
    } else if (std::regex_match(line, m, std::regex(R"(^\[(\d+)\] first-second-third$)"))) {
      ++partial[std::stoi(m[1])];
    } else if (std::regex_match(line, m, std::regex(R"(^\[(\d+)\] no newline at the end$)"))) {
      ++tail[std::stoi(m[1])];
    } else {
      FAIL_CHECK("unexpected line: " << line);
    }
  }
  for (int rank = 0; rank < n; ++rank) {
    CHECK(next[rank] == count);
    CHECK(partial[rank] == 1);  // written in three pieces, passed on as one line
    CHECK(tail[rank] == 1);     // a last line without newline still arrives, completed
    CHECK_THAT(r.err, Catch::Contains("[" + std::to_string(rank) + "] to stderr\n"));
  }
}

TEST_CASE("chorusrun: --no-prefix passes the output through untouched") {
  const auto r = run({"-n", "2", "--no-prefix"}, {"out=plain", "err=also plain"});
  CHECK(r.exit_code() == 0);
  CHECK(r.out == "plain\nplain\n");
  CHECK(r.err == "also plain\nalso plain\n");
}

TEST_CASE("chorusrun: a program that cannot run gives one line and 127 or 126") {
  proc::command missing({CHORUSRUN_EXE, "-n", "2", "chorus-no-such-program"});
  const auto r = missing.finish(40s);
  CHECK(r.exit_code() == 127);
  CHECK(r.out.empty());
  CHECK(r.err == "chorusrun: cannot run 'chorus-no-such-program': not found in PATH\n");
  proc::command missing_path({CHORUSRUN_EXE, "-n", "2", "/nonexistent/program"});
  CHECK(missing_path.finish(40s).exit_code() == 127);
  proc::command directory({CHORUSRUN_EXE, "-n", "1", "/"});
  CHECK(directory.finish(40s).exit_code() == 126);
}

TEST_CASE("chorusrun: usage errors exit 2 with a message; --version and --help exit 0") {
  for (const std::vector<std::string>& bad :
       {std::vector<std::string>{CHORUSRUN_EXE, CHORUSRUN_PROBE},
        {CHORUSRUN_EXE, "-n", "0", CHORUSRUN_PROBE},
        {CHORUSRUN_EXE, "-n", "two", CHORUSRUN_PROBE},
        {CHORUSRUN_EXE, "-n", "2"},
        {CHORUSRUN_EXE, "-n", "2", "--bogus", CHORUSRUN_PROBE},
        {CHORUSRUN_EXE, "-n", "2", "--timeout", "never", CHORUSRUN_PROBE},
        {CHORUSRUN_EXE, "-n", "2", "--grace", "-1", CHORUSRUN_PROBE}}) {
    proc::command c(bad);
    const auto r = c.finish(40s);
    INFO(bad.back() << ": " << r.err);
    CHECK(r.exit_code() == 2);
    CHECK_THAT(r.err, Catch::StartsWith("chorusrun: "));
  }
  proc::command version({CHORUSRUN_EXE, "--version"});
  const auto v = version.finish(40s);
  CHECK(v.exit_code() == 0);
  CHECK_THAT(v.out, Catch::StartsWith("chorusrun (chorus) "));
  proc::command help({CHORUSRUN_EXE, "--help"});
  const auto h = help.finish(40s);
  CHECK(h.exit_code() == 0);
  CHECK_THAT(h.out, Catch::Contains("--np"));
}

TEST_CASE("chorusrun: SIGINT or SIGTERM to chorusrun stops every rank") {
  const auto [sig, expected, flags] = GENERATE(table<int, int, std::vector<std::string>>({
      {SIGINT, 130, {}},
      {SIGTERM, 143, {}},
      {SIGTERM, 143, {"ignore-term"}},  // the ranks ignore it: SIGKILL after the grace
  }));
  std::vector<std::string> probe = flags;
  for (const char* a : {"pid", "out=ready", "sleep=60"}) probe.emplace_back(a);
  proc::command c(args({"-n", "3", "--grace", "0.5"}, probe));
  REQUIRE(c.read_until_count("] ready\n", 3));
  c.signal(sig);
  const auto r = c.finish(40s);
  REQUIRE_FALSE(r.timed_out);
  CHECK(r.exit_code() == expected);
  const auto mine = own_lines(r.err);
  REQUIRE(mine.size() == 1);
  CHECK_THAT(mine[0], Catch::StartsWith("chorusrun: interrupted by SIG") &&
                          Catch::EndsWith("; stopped 3 ranks"));
  const auto pids = pids_in(r.out);
  CHECK(pids.size() == 3);
  for (const pid_t p : pids) CHECK_FALSE(proc::alive(p));
}

TEST_CASE("chorusrun: ranks stopped during the shared-memory start-up leave nothing in /dev/shm") {
  // Ranks 0-2 create their segments and wait in the name exchange for rank 3, which fails
  // first: chorusrun stops them there (SIGTERM), where they cannot unlink their segments.
  const auto r = run({"-n", "4", "--grace", "2"}, {"env", "3:sleep=2", "3:exit=3", "shm"});
  REQUIRE_FALSE(r.timed_out);
  CHECK(r.exit_code() == 3);
  const std::regex job_re(R"(job=([0-9a-f]+))");
  std::smatch m;
  REQUIRE(std::regex_search(r.out, m, job_re));
  const std::string prefix = "chorus-" + m[1].str() + "-";
  std::vector<std::string> left;
  for (const auto& e : std::filesystem::directory_iterator("/dev/shm")) {
    if (e.path().filename().string().starts_with(prefix)) left.push_back(e.path());
  }
  CHECK(left.empty());
  const auto mine = own_lines(r.err);
  REQUIRE(mine.size() == 2);
  CHECK(mine[0] == "chorusrun: rank 3 exited with status 3; stopped the other 3 ranks");
  // normally 3; fewer only if a rank had not created its segment within the 2 s
  CHECK(std::regex_match(mine[1], std::regex("chorusrun: removed [1-3] shared-memory segments? "
                                             "of this job left in /dev/shm by stopped ranks")));
}

namespace {

/// The CPUs of a "Cpus_allowed_list:\t0-2,5" line.
std::set<int> cpu_list(const std::string& text) {
  std::set<int> cpus;
  std::size_t at = 0;
  while (at < text.size()) {
    const std::size_t end = std::min(text.find(',', at), text.size());
    const std::string part = text.substr(at, end - at);
    const std::size_t dash = part.find('-');
    const int lo = std::stoi(part.substr(0, dash));
    const int hi = dash == std::string::npos ? lo : std::stoi(part.substr(dash + 1));
    for (int c = lo; c <= hi; ++c) cpus.insert(c);
    at = end + 1;
  }
  return cpus;
}

/// Runs `chorusrun -n np <options> -- sh -c 'grep Cpus_allowed_list ...'`: each rank's CPUs
/// (empty when the run failed).
std::map<int, std::set<int>> rank_cpus(int np, std::vector<std::string> options,
                                       proc::result* out = nullptr) {
  std::vector<std::string> all{CHORUSRUN_EXE, "-n", std::to_string(np)};
  all.insert(all.end(), options.begin(), options.end());
  for (const char* a : {"--", "/bin/sh", "-c", "grep Cpus_allowed_list /proc/self/status"}) {
    all.emplace_back(a);
  }
  proc::command c(all);
  const auto r = c.finish(40s);
  if (out != nullptr) *out = r;
  std::map<int, std::set<int>> cpus;
  const std::regex re(R"(^\[(\d+)\] Cpus_allowed_list:\s*(\S+)$)");
  for (const auto& line : proc::lines(r.out)) {
    std::smatch m;
    if (std::regex_match(line, m, re)) cpus[std::stoi(m[1])] = cpu_list(m[2]);
  }
  return cpus;
}

}  // namespace

TEST_CASE("chorusrun: --bind-to binds each rank inside chorusrun's own CPUs; none leaves them") {
  cpu_set_t set;
  CPU_ZERO(&set);
  REQUIRE(::sched_getaffinity(0, sizeof set, &set) == 0);
  std::set<int> mine;
  for (int c = 0; c < CPU_SETSIZE; ++c) {
    if (CPU_ISSET(c, &set)) mine.insert(c);
  }
  const int threads = static_cast<int>(mine.size());
  const int np = std::min(threads, 4);

  proc::result r;
  const auto none = rank_cpus(np, {"--bind-to", "none"}, &r);
  REQUIRE(none.size() == static_cast<std::size_t>(np));
  for (const auto& [rank, cpus] : none) CHECK(cpus == mine);

  auto hw = rank_cpus(np, {"--bind-to", "hwthread", "--report-bindings"}, &r);
  if (r.err.find("built without hwloc") != std::string::npos) {
    WARN("chorusrun was built without hwloc: --bind-to is not tested");
    return;
  }
  INFO(r.err);
  REQUIRE(hw.size() == static_cast<std::size_t>(np));
  std::set<int> seen;
  for (const auto& [rank, cpus] : hw) {
    CHECK(cpus.size() == 1);  // one hardware thread each ...
    CHECK(mine.contains(*cpus.begin()));
    seen.insert(*cpus.begin());
    CHECK_THAT(r.err, Catch::Contains("rank " + std::to_string(rank) + " bound to CPUs " +
                                      std::to_string(*cpus.begin())));
  }
  CHECK(seen.size() == static_cast<std::size_t>(np));  // ... and a different one each

  for (const char* level : {"core", "socket", "numa"}) {
    const auto bound = rank_cpus(1, {"--bind-to", level, "--map-by", "socket"}, &r);
    INFO(level << ": " << r.err);
    REQUIRE(bound.size() == 1);
    CHECK_FALSE(bound.at(0).empty());
    CHECK(std::includes(mine.begin(), mine.end(), bound.at(0).begin(), bound.at(0).end()));
  }

  // More ranks than hardware threads, each wanting one of its own: a usage error that says
  // how many there are, and nothing started.
  const auto too_many = rank_cpus(threads + 1, {"--bind-to", "hwthread"}, &r);
  CHECK(too_many.empty());
  CHECK(r.exit_code() == 2);
  CHECK_THAT(r.err, Catch::Contains(std::to_string(threads + 1) + " ranks but " +
                                    std::to_string(threads) + " hardware threads available"));
  // An unknown level or order is a usage error too.
  for (const std::vector<std::string>& bad :
       {std::vector<std::string>{"--bind-to", "board"}, {"--map-by", "row"}}) {
    rank_cpus(1, bad, &r);
    CHECK(r.exit_code() == 2);
    CHECK_THAT(r.err, Catch::StartsWith("chorusrun: " + bad[0]));
  }
}

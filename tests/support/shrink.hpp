#pragma once
// Helpers for communicator::shrink trials (tests/group/shrink_test.cpp, tests/ucx): ranks
// made from a bootstrap::world over a file_store, a loop of all-reduces until a rank dies,
// and the checks of a shrunk group.
#include "processes.hpp"

#include <chorus/bootstrap/file_store.hpp>
#include <chorus/bootstrap/from_env.hpp>
#include <chorus/group/shrink.hpp>

#include <dirent.h>
#include <stdlib.h>
#include <algorithm>
#include <chrono>
#include <csignal>
#include <filesystem>
#include <initializer_list>
#include <numeric>
#include <string>
#include <type_traits>
#include <vector>

namespace harness {

/// Open descriptors of this process.
inline int open_fds() {
  int n = 0;
  if (DIR* d = ::opendir("/proc/self/fd")) {
    while (::readdir(d) != nullptr) ++n;
    ::closedir(d);
  }
  return n;
}

/// A world of `size` ranks of job `job` meeting in a file_store in directory `dir`.
inline chorus::bootstrap::world file_store_world(const std::string& dir, int rank, int size,
                                                 const std::string& job) {
  namespace bs = chorus::bootstrap;
  using namespace std::chrono_literals;
  bs::world w;
  w.rank = rank;
  w.size = size;
  w.job_id = job;
  w.timeout = 30s;
  w.store = bs::file_store(dir, {.timeout = 30s, .poll_interval = 2ms});
  return w;
}

/// Runs `fn(comm, failures)` on `ranks` processes whose communicators (of `Transport`, shm
/// by default) are made from a `bootstrap::world` over a file_store in a directory of their
/// own, so that they can shrink. Not a tcp_store served here: this process forks the ranks,
/// and the memory of a server thread copied into a child without the thread shows there as
/// leaks to LeakSanitizer. (bootstrap.chorusrun shrinks through chorusrun's tcp_store.)
template <class Transport = chorus::shm_transport, class Fn>
std::vector<process_result> run_job(int ranks, const std::string& job, Fn fn) {
  using namespace std::chrono_literals;
  std::string dir = (std::filesystem::temp_directory_path() / "chorus-shrink-XXXXXX").string();
  REQUIRE(::mkdtemp(dir.data()) != nullptr);
  process_options o;
  o.deadline = std::chrono::seconds{240};
  o.comm.timeout = 30s;
  auto results = run_processes_with(
      ranks,
      [&](int rank, int size, const chorus::blob_exchange&) {
        return Transport(file_store_world(dir, rank, size, job));
      },
      std::move(fn), o);
  std::filesystem::remove_all(dir);
  return results;
}

/// Runs all-reduces until one fails because a rank died (`victim` kills itself with
/// SIGKILL, as kill -9 would, before its `step`-th call).
/// Over inproc, the victim's thread leaves instead (its rank function returns): false there.
template <class Transport>
bool run_until_failure(chorus::communicator<Transport>& comm, int victim, int step, failures& f) {
  std::vector<float> v(4096);
  try {
    for (int i = 0; i < 100000; ++i) {
      if (comm.rank() == victim && i == step) {
        if constexpr (std::is_same_v<Transport, chorus::inproc_transport>) return false;
        ::raise(SIGKILL);
      }
      std::fill(v.begin(), v.end(), 1.0f);
      chorus::all_reduce(comm, v, chorus::plus{});
      if (v.front() != static_cast<float>(comm.size())) f.add("a sum before the failure");
    }
    f.add("rank " + std::to_string(comm.rank()) + " saw no failure");
  } catch (const chorus::error& e) {
    if (e.value() != chorus::errc::peer_lost && e.value() != chorus::errc::aborted) {
      f.add(std::string("the failure was not peer_lost: ") + e.what());
    }
  }
  return true;
}

/// Runs `fn(comm)` on `ranks` inproc threads; failures are collected in `f`.
template <class Fn>
void run_threads(int ranks, failures& f, Fn fn) {
  using namespace std::chrono_literals;
  chorus::communicator_options o;
  o.timeout = 30s;
  try {
    chorus::inproc::run(ranks, fn, o);
  } catch (const std::exception& e) {
    f.add(std::string("a rank threw: ") + e.what());
  }
}

/// Checks that `s` holds exactly the old ranks `expected` and that its collectives work:
/// an all-reduce of the old ranks, then a broadcast from the last new rank.
template <class Transport>
void check_shrunk(chorus::shrink_result<Transport>& s, int old_rank, int old_size,
                  const std::vector<int>& expected, failures& f) {
  auto& comm = s.comm;
  const std::string at = "old rank " + std::to_string(old_rank) + ": ";
  if (s.members != expected) f.add(at + "members are not the survivors");
  if (comm.size() != static_cast<int>(expected.size())) f.add(at + "wrong size");
  if (comm.rank() != s.new_rank(old_rank)) f.add(at + "rank is not new_rank(old rank)");
  if (s.members.at(static_cast<std::size_t>(comm.rank())) != old_rank) {
    f.add(at + "members[rank] is not the old rank");
  }
  std::vector<int> lost;
  for (int r = 0; r < old_size; ++r) {
    if (std::find(expected.begin(), expected.end(), r) == expected.end()) lost.push_back(r);
  }
  if (s.lost != lost) f.add(at + "lost is not the ranks left out");
  std::vector<float> v(100003, static_cast<float>(old_rank));
  chorus::all_reduce(comm, v, chorus::plus{});
  const float sum = static_cast<float>(std::accumulate(expected.begin(), expected.end(), 0));
  if (v.front() != sum || v.back() != sum) f.add(at + "all-reduce in the new group");
  std::vector<int> b(1000, comm.rank());
  chorus::broadcast(comm, b, comm.size() - 1);
  if (b.front() != comm.size() - 1) f.add(at + "broadcast in the new group");
}

inline std::vector<int> all_but(int size, std::initializer_list<int> out) {
  std::vector<int> r;
  for (int i = 0; i < size; ++i) {
    if (std::find(out.begin(), out.end(), i) == out.end()) r.push_back(i);
  }
  return r;
}

/// CHECKs that the ranks in `dead` died of SIGKILL and every other exited 0.
inline void check_outcome(const std::vector<process_result>& results,
                          std::initializer_list<int> dead) {
  for (const auto& r : results) {
    INFO("rank " << r.rank << ": exit " << r.exit_code << " signal " << r.signal << ": "
                 << r.report);
    if (std::find(dead.begin(), dead.end(), r.rank) != dead.end()) {
      CHECK(r.signal == SIGKILL);
    } else {
      CHECK(r.exit_code == 0);
    }
  }
}

}  // namespace harness

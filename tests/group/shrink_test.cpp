// communicator::shrink over shared memory between processes: after a rank is killed (kill
// -9), the survivors agree on who is left and carry on in a new communicator; a second
// failure during the shrink, a slow rank, a rank too late, a healthy communicator, a shrink
// of a shrunk communicator; nothing left in /dev/shm, no descriptor kept.
#include "../support/shrink.hpp"
#include "../support/processes.hpp"

#include <chorus/bootstrap/from_env.hpp>
#include <chorus/bootstrap/memory_store.hpp>
#include <chorus/group/shrink.hpp>
#include <chorus/group/split.hpp>

#include <chrono>
#include <csignal>
#include <string>
#include <thread>
#include <vector>

using namespace harness;
using namespace std::chrono_literals;
namespace bs = chorus::bootstrap;

TEST_CASE("shrink over shm: after kill -9 the survivors go on in a group without the dead rank") {
  struct trial {
    int ranks, victim, step;
  };
  for (const trial t : {trial{2, 0, 2}, trial{3, 1, 5}, trial{4, 3, 1}, trial{8, 5, 3}}) {
    const std::string job = unique_job("shrink");
    const auto results = run_job(t.ranks, job, [&](shm_communicator& comm, failures& f) {
      run_until_failure(comm, t.victim, t.step, f);
      if (!comm.poisoned()) f.add("the communicator is not poisoned after the failure");
      auto s = comm.shrink({.timeout = 20s});
      check_shrunk(s, comm.rank(), t.ranks, all_but(t.ranks, {t.victim}), f);
      if (s.attempts != 1) f.add("more than one attempt without a second failure");
    });
    INFO(t.ranks << " ranks, rank " << t.victim << " killed");
    check_outcome(results, {t.victim});
    CHECK(shm_leftovers(job).empty());
  }
}

TEST_CASE("shrink over shm: a rank that dies during the shrink is left out too") {
  for (const auto stage : {chorus::shrink_stage::joined, chorus::shrink_stage::decided}) {
    const std::string job = unique_job("shrink2");
    const auto results = run_job(4, job, [&](shm_communicator& comm, failures& f) {
      run_until_failure(comm, 1, 2, f);
      chorus::shrink_options o{.timeout = 20s};
      o.observer = [&](chorus::shrink_stage s, int attempt) {
        if (comm.rank() == 2 && s == stage && attempt == 1) ::raise(SIGKILL);
      };
      auto s = comm.shrink(o);
      check_shrunk(s, comm.rank(), 4, {0, 3}, f);
      // Killed after the decision, rank 2 was a member of the first attempt's group, so the
      // survivors must have tried again; killed after joining, it may be seen dead first.
      if (stage == chorus::shrink_stage::decided && s.attempts != 2) {
        f.add("attempts = " + std::to_string(s.attempts) + ", expected 2");
      }
    });
    INFO("rank 2 killed at stage " << static_cast<int>(stage));
    check_outcome(results, {1, 2});
    CHECK(shm_leftovers(job).empty());
  }
}

TEST_CASE("shrink over shm: a slow rank is waited for; one past the deadline is left out") {
  {
    // Rank 1 is slow (1.5 s), well inside the 20 s deadline: it is kept.
    const std::string job = unique_job("shrinkslow");
    const auto results = run_job(4, job, [&](shm_communicator& comm, failures& f) {
      run_until_failure(comm, 2, 1, f);
      if (comm.rank() == 1) std::this_thread::sleep_for(1500ms);
      auto s = comm.shrink({.timeout = 20s});
      check_shrunk(s, comm.rank(), 4, {0, 1, 3}, f);
    });
    check_outcome(results, {2});
    CHECK(shm_leftovers(job).empty());
  }
  {
    // Rank 2 comes 4 s late to a shrink with a 1 s deadline: the others go on without it,
    // and it is told it was left out.
    const std::string job = unique_job("shrinklate");
    const auto results = run_job(3, job, [&](shm_communicator& comm, failures& f) {
      if (comm.rank() == 2) {
        std::this_thread::sleep_for(4s);
        try {
          (void)comm.shrink({.timeout = 1s});
          f.add("the late rank got a group");
        } catch (const chorus::error& e) {
          if (e.value() != chorus::errc::timeout ||
              std::string(e.what()).find("left out") == std::string::npos) {
            f.add(std::string("the late rank's error: ") + e.what());
          }
        }
        return;
      }
      auto s = comm.shrink({.timeout = 1s});
      check_shrunk(s, comm.rank(), 3, {0, 1}, f);
    });
    check_outcome(results, {});
    CHECK(shm_leftovers(job).empty());
  }
}

TEST_CASE("shrink over shm: a healthy group shrinks to itself; a shrunk group shrinks again") {
  const std::string job = unique_job("shrinkagain");
  const auto results = run_job(4, job, [&](shm_communicator& comm, failures& f) {
    // No failure: every rank calls it, and the group is the same ranks on new channels.
    int fds = 0;
    for (int round = 0; round < 3; ++round) {
      {
        auto same = comm.shrink({.timeout = 20s});
        check_shrunk(same, comm.rank(), 4, {0, 1, 2, 3}, f);
      }
      // The first round may open what stays open (the store's connection); later rounds
      // must give back every descriptor they took.
      if (round == 1) fds = open_fds();
      if (round == 2 && open_fds() != fds) f.add("a shrink kept file descriptors open");
    }
    // Kill old rank 3, shrink; then kill what was old rank 0 and shrink the shrunk group.
    run_until_failure(comm, 3, 2, f);
    auto first = comm.shrink({.timeout = 20s});
    check_shrunk(first, comm.rank(), 4, {0, 1, 2}, f);
    run_until_failure(first.comm, 0, 1, f);
    auto second = first.comm.shrink({.timeout = 20s});
    check_shrunk(second, first.comm.rank(), 3, {1, 2}, f);
  });
  check_outcome(results, {0, 3});
  CHECK(shm_leftovers(job).empty());
}

TEST_CASE("shrink over inproc: ranks whose threads leave are left out, during the shrink too") {
  for (const int ranks : {2, 3, 4, 8}) {
    const int victim = ranks / 2;
    failures f;
    run_threads(ranks, f, [&](chorus::inproc_communicator& comm) {
      if (!run_until_failure(comm, victim, 2, f)) return;
      auto s = comm.shrink({.timeout = 20s});
      check_shrunk(s, comm.rank(), ranks, all_but(ranks, {victim}), f);
      if (s.attempts != 1) f.add("more than one attempt without a second failure");
    });
    INFO(ranks << " ranks, rank " << victim << " left: " << f.report());
    CHECK(f.count() == 0);
  }
  // Rank 2 leaves right after the first attempt's decision: the survivors try again.
  failures f;
  struct leave {};
  run_threads(4, f, [&](chorus::inproc_communicator& comm) {
    if (!run_until_failure(comm, 1, 2, f)) return;
    chorus::shrink_options o{.timeout = 20s};
    o.observer = [&](chorus::shrink_stage s, int attempt) {
      if (comm.rank() == 2 && s == chorus::shrink_stage::decided && attempt == 1) throw leave{};
    };
    try {
      auto s = comm.shrink(o);
      check_shrunk(s, comm.rank(), 4, {0, 3}, f);
      if (s.attempts != 2) f.add("attempts = " + std::to_string(s.attempts) + ", expected 2");
      // A shrunk group shrinks again: new rank 1 (old 3) leaves it.
      if (!run_until_failure(s.comm, 1, 1, f)) return;
      auto again = s.comm.shrink({.timeout = 20s});
      check_shrunk(again, s.comm.rank(), 2, {0}, f);
    } catch (const leave&) {
    }
  });
  INFO(f.report());
  CHECK(f.count() == 0);
}

TEST_CASE("shrink over inproc: two jobs of one process shrink at the same time, each on its own") {
  // Their rebuilt groups are handed over through one process-wide registry: each job's keys
  // must be its own, or one job's ranks would take the other's group.
  failures f;
  std::vector<std::thread> jobs;
  for (int job = 0; job < 2; ++job) {
    jobs.emplace_back([&f] {
      for (int round = 0; round < 5; ++round) {
        run_threads(4, f, [&](chorus::inproc_communicator& comm) {
          if (!run_until_failure(comm, 3, 1, f)) return;
          auto s = comm.shrink({.timeout = 20s});
          check_shrunk(s, comm.rank(), 4, {0, 1, 2}, f);
        });
      }
    });
  }
  for (auto& j : jobs) j.join();
  INFO(f.report());
  CHECK(f.count() == 0);
}

TEST_CASE("shrink: what cannot shrink says why") {
  // Made from a bare blob_exchange: no store to meet in.
  const std::string job = unique_job("shrinkbare");
  chorus::communicator<chorus::shm_transport> bare(chorus::shm_transport(
      0, 1, job, [](const std::string& mine) { return std::vector<std::string>{mine}; }));
  try {
    (void)bare.shrink();
    FAIL("shrink returned");
  } catch (const chorus::error& e) {
    CHECK(e.value() == chorus::errc::invalid_argument);
    CHECK_THAT(e.what(), Catch::Contains("bootstrap::world"));
  }
  // A group made by split: shrink the world's communicator and split again.
  bs::world w;
  w.job_id = unique_job("shrinkone");
  w.store = bs::memory_store();
  chorus::communicator<chorus::shm_transport> world(chorus::shm_transport{w});
  auto group = world.split(0);
  REQUIRE(group);
  try {
    (void)group->shrink();
    FAIL("shrink returned");
  } catch (const chorus::error& e) {
    CHECK(e.value() == chorus::errc::invalid_argument);
    CHECK_THAT(e.what(), Catch::Contains("split"));
  }
  // One rank alone shrinks to itself.
  auto alone = world.shrink();
  CHECK(alone.comm.size() == 1);
  CHECK(alone.members == std::vector<int>{0});
  CHECK(alone.lost.empty());
  CHECK(shm_leftovers(w.job_id).empty());
}

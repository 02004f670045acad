// chorus::grow and chorus::join between processes over shared memory: replacement processes
// knock at the job's door, the members admit them at a step boundary, and the grown group
// (members first, joiners after) runs collectives and receives ZeRO state; also after a
// shrink around a rank killed with SIGKILL. Nothing admitted: the same answer everywhere.
#include "support/shrink.hpp"

#include <chorus/chorus.hpp>
#include <chorus/group/grow.hpp>
#include <chorus/zero/zero.hpp>

#include <catch2/catch.hpp>

#include <stdlib.h>
#include <chrono>
#include <filesystem>
#include <numeric>
#include <string>
#include <vector>

namespace {

using namespace std::chrono_literals;
using harness::failures;
using harness::process_result;
namespace bs = chorus::bootstrap;
namespace zero = chorus::zero;

/// Set in a joining process: the result of its `join` (the harness makes its communicator
/// from the transport in it).
std::vector<int> joined_members;

/// Runs `members` processes that start as a group of that size, and `joiners` more that
/// `join` the job (with `join_timeout`), all meeting in a file_store of their own;
/// `fn(comm, failures)` runs on each, a joiner's comm being the grown group.
template <class Fn>
std::vector<process_result> run_grow_job(int members, int joiners, const std::string& job, Fn fn,
                                         chorus::duration join_timeout = 30s) {
  std::string dir = (std::filesystem::temp_directory_path() / "chorus-grow-XXXXXX").string();
  REQUIRE(::mkdtemp(dir.data()) != nullptr);
  harness::process_options o;
  o.deadline = 240s;
  o.comm.timeout = 30s;
  auto results = harness::run_processes_with(
      members + joiners,
      [&](int rank, int, const chorus::blob_exchange&) {
        const bs::world w = harness::file_store_world(dir, rank, members, job);
        if (rank < members) return chorus::shm_transport(w);
        auto g = chorus::join<chorus::shm_transport>(w, {.timeout = join_timeout});
        joined_members = g.members;
        return std::move(g.comm.transport());
      },
      std::move(fn), o);
  std::filesystem::remove_all(dir);
  return results;
}

/// The grown group works: an all-reduce of (rank + 1) and a broadcast from the last rank.
void check_group(chorus::communicator<chorus::shm_transport>& comm, int size, failures& f) {
  const std::string at = "rank " + std::to_string(comm.rank()) + ": ";
  if (comm.size() != size) f.add(at + "size " + std::to_string(comm.size()));
  std::vector<float> v(50001, static_cast<float>(comm.rank() + 1));
  chorus::all_reduce(comm, v, chorus::plus{});
  const float want = static_cast<float>(size * (size + 1) / 2);
  if (v.front() != want || v.back() != want) f.add(at + "all-reduce in the grown group");
  std::vector<int> b(1000, comm.rank());
  chorus::broadcast(comm, b, size - 1);
  if (b.front() != size - 1 || b.back() != size - 1) f.add(at + "broadcast in the grown group");
}

/// ZeRO state, made on the members and restored on the grown group: each master weight is
/// its own index, each state its negative; checked on every rank, joiners too.
template <class Stage>
struct zero_check {
  using driver = zero::sharded_optimizer<chorus::shm_transport, Stage>;
  const std::vector<std::size_t> sizes{97, 13, 1024, 5};
  zero::replicas reps;

  static float value(std::size_t t, std::size_t i) { return static_cast<float>(t * 10000 + i); }
  void before(chorus::communicator<chorus::shm_transport>& comm) {
    driver opt(comm, sizes);
    opt.initialize(value);
    opt.replicate(reps);
  }
  void after(chorus::communicator<chorus::shm_transport>& comm, const std::vector<int>& members,
             failures& f) {
    driver opt(comm, sizes);
    const auto kept = std::count_if(members.begin(), members.end(), [](int m) { return m >= 0; });
    opt.restore(reps, members, static_cast<int>(kept));
    const std::vector<float> master = opt.full_state(0);
    std::size_t e = 0, wrong = 0;
    for (std::size_t t = 0; t < sizes.size(); ++t)
      for (std::size_t i = 0; i < sizes[t]; ++i) wrong += master[e++] != value(t, i) ? 1 : 0;
    if (wrong != 0 || master.size() != e) {
      f.add("rank " + std::to_string(comm.rank()) + ", stage " + std::to_string(Stage::value) +
            ": " + std::to_string(wrong) + " master weights wrong after restore");
    }
    if (!reps.committed.valid || reps.committed.world != comm.size())
      f.add("restore did not replicate on the grown group");
  }
};

}  // namespace

TEST_CASE("grow: joiners are admitted after the members; the group and ZeRO state carry over") {
  for (const int joiners : {1, 2}) {
    const int members = 3, size = members + joiners;
    const auto results =
        run_grow_job(members, joiners, harness::unique_job("grow"),
                     [&](chorus::communicator<chorus::shm_transport>& comm, failures& f) {
                       zero_check<zero::stage<0>> whole;
                       zero_check<zero::stage<2>> sharded;
                       if (comm.size() == members) {  // a member
                         whole.before(comm);
                         sharded.before(comm);
                         const int me = comm.rank();
                         auto g = chorus::grow(comm, {.wait_for = joiners, .timeout = 30s});
                         if (!g) {
                           f.add("nobody admitted");
                           return;
                         }
                         if (g->comm.rank() != me) f.add("a member's rank changed");
                         std::vector<int> want(static_cast<std::size_t>(size), -1);
                         std::iota(want.begin(), want.begin() + members, 0);
                         if (g->members != want || g->joined != joiners || !g->lost.empty())
                           f.add("members, joined or lost are wrong");
                         check_group(g->comm, size, f);
                         whole.after(g->comm, g->members, f);
                         sharded.after(g->comm, g->members, f);
                         check_group(comm, members, f);  // the old group is still usable
                       } else {                          // a joiner
                         if (comm.rank() < members) f.add("a joiner got a member's rank");
                         if (static_cast<int>(joined_members.size()) != size)
                           f.add("a joiner's members");
                         check_group(comm, size, f);
                         whole.after(comm, joined_members, f);
                         sharded.after(comm, joined_members, f);
                       }
                     });
    INFO(joiners << " joiner(s)");
    harness::require_all_ok(results);
  }
}

TEST_CASE("grow: with nobody knocking every member gets nullopt, and the group goes on") {
  const auto results =
      run_grow_job(3, 0, harness::unique_job("grownone"),
                   [&](chorus::communicator<chorus::shm_transport>& comm, failures& f) {
                     if (chorus::grow(comm)) f.add("admitted someone at once");
                     if (chorus::grow(comm, {.wait_for = 1, .timeout = 500ms}))
                       f.add("admitted someone");
                     check_group(comm, 3, f);
                     try {
                       (void)chorus::grow(comm, {.wait_for = 2, .max_joiners = 1, .timeout = 1s});
                       f.add("wait_for > max_joiners accepted");
                     } catch (const chorus::error& e) {
                       if (e.value() != chorus::errc::invalid_argument)
                         f.add("not invalid_argument");
                     }
                   });
  harness::require_all_ok(results);
}

TEST_CASE("grow back after kill -9: shrink around the dead rank, then admit its replacement") {
  const auto results =
      run_grow_job(4, 1, harness::unique_job("growback"),
                   [&](chorus::communicator<chorus::shm_transport>& comm, failures& f) {
                     if (!joined_members.empty()) {  // the replacement
                       if (comm.rank() != 3) f.add("the replacement is not rank 3");
                       check_group(comm, 4, f);
                       return;
                     }
                     harness::run_until_failure(comm, 2, 2, f);
                     auto s = comm.shrink({.timeout = 20s});
                     harness::check_shrunk(s, comm.rank(), 4, {0, 1, 3}, f);
                     auto g = chorus::grow(s.comm, {.wait_for = 1, .timeout = 30s});
                     if (!g || g->members != std::vector<int>{0, 1, 2, -1}) {
                       f.add("the replacement was not admitted as new rank 3");
                       return;
                     }
                     check_group(g->comm, 4, f);
                   });
  harness::check_outcome(results, {2});
}

TEST_CASE("join: a process nobody admits fails at its deadline, saying why") {
  const auto results = run_grow_job(
      2, 1, harness::unique_job("growlate"),
      [&](chorus::communicator<chorus::shm_transport>& comm, failures& f) {
        check_group(comm, 2, f);
      },
      1s);
  REQUIRE(results.size() == 3);
  CHECK(results[0].exit_code == 0);
  CHECK(results[1].exit_code == 0);
  INFO(results[2].report);
  CHECK(results[2].exit_code == 2);
  CHECK_THAT(results[2].report, Catch::Contains("chorus::error[timeout]") &&
                                    Catch::Contains("was not admitted within 1000 ms"));
}

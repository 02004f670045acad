// Groups over shared memory between processes: split and mesh groups reuse the parent's
// segments, run every collective and algorithm (the one-sided ones through the group's own
// windows), leave nothing in /dev/shm, and a rank killed in a subgroup fails the whole job.
#include "../support/checks.hpp"
#include "../support/collective_matrix.hpp"
#include "../support/processes.hpp"

#include <chorus/group/mesh.hpp>
#include <chorus/group/split.hpp>

#include <atomic>
#include <chrono>
#include <fstream>
#include <string>
#include <thread>

using namespace harness;

namespace {

/// Mappings of /dev/shm segments in this process.
std::size_t shm_mappings() {
  std::ifstream maps("/proc/self/maps");
  std::string line;
  std::size_t n = 0;
  while (std::getline(maps, line)) n += line.find("/dev/shm/") != std::string::npos ? 1 : 0;
  return n;
}

}  // namespace

TEST_CASE("shm groups: every collective in split groups and mesh axes; no new segments") {
  for (int ranks : {4, 5}) {
    const std::string job = unique_job("groups");
    process_options o;
    o.deadline = std::chrono::seconds{600};
    auto results = run_processes(
        ranks, job,
        [](shm_communicator& comm, failures& f) {
          const std::size_t before = shm_mappings();
          auto g = comm.split(comm.rank() % 2, -comm.rank());
          if (shm_mappings() != before) f.add("split mapped new segments");
          check_every_collective(*g, f, 4);
          if (comm.size() == 4) {
            chorus::mesh m(comm, {{"dp", 2}, {"tp", 2}});
            std::vector<float> v(100003, static_cast<float>(comm.rank()));
            chorus::all_reduce(m["tp"], v, chorus::plus{}, chorus::algo::one_sided{});
            const float tp = static_cast<float>(comm.rank() / 2 * 4 + 1);
            if (v.front() != tp || v.back() != tp) f.add("mesh tp one-sided sum");
            chorus::all_reduce(m["dp"], v, chorus::plus{}, chorus::algo::ring{});
            if (v.front() != 6.0f) f.add("mesh dp ring sum");
          }
        },
        o);
    INFO("ranks = " << ranks);
    require_all_ok(results);
    REQUIRE(shm_leftovers(job).empty());
  }
}

TEST_CASE("shm groups: a rank killed in a subgroup fails every rank of the job with peer_lost") {
  for (int round = 0; round < 4; ++round) {
    const std::string job = unique_job("groupkill");
    const int ranks = 4;
    const int victim = round % ranks;
    std::atomic<double> killed_at{0};
    const auto start = std::chrono::steady_clock::now();
    process_options options;
    options.deadline = std::chrono::seconds(60);
    options.while_running = [&](const std::vector<pid_t>& pids) {
      std::this_thread::sleep_for(std::chrono::milliseconds(300 + 20 * round));
      ::kill(pids[static_cast<std::size_t>(victim)], SIGKILL);
      killed_at = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    };
    auto results = run_processes(
        ranks, job,
        [victim](shm_communicator& comm, failures&) {
          // the victim's group works; the other group only waits in the parent's barrier
          auto g = comm.split(comm.rank() == victim || comm.rank() == (victim + 1) % 4 ? 0 : 1);
          std::vector<float> v(1 << 16, 1.0f);
          if (g->size() == 2 && (comm.rank() == victim || comm.rank() == (victim + 1) % 4)) {
            for (;;) chorus::all_reduce(*g, v, chorus::plus{});
          }
          chorus::barrier(comm);
        },
        options);
    check_peer_lost_reports(results, victim, killed_at.load(), 5.0,
                            "round " + std::to_string(round));
    REQUIRE(shm_leftovers(job).empty());
  }
}

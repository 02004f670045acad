// Groups over shared memory between processes: split and mesh groups reuse the parent's
// segments, run every collective and algorithm (the one-sided ones through the group's own
// windows), leave nothing in /dev/shm, and a rank killed in a subgroup fails the whole job.
#include "../support/checks.hpp"
#include "../support/collective_matrix.hpp"
#include "../support/processes.hpp"
#include "../support/sanitizers.hpp"

#include <chorus/collectives/nonblocking.hpp>
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

TEST_CASE(
    "shm groups: several groups' requests in flight at once, each group's progress thread "
    "and the caller inside the shared endpoint") {
  // A mesh's axes share one endpoint per process. Here dp's progress thread runs an
  // all-reduce, tp's a reduce-scatter, the world's the ring of isends and irecvs, and the
  // caller a blocking all-reduce on a split group, all at the same time: before the endpoint
  // had its lock, this failed within a few rounds (a corrupt slot, an empty queue popped).
  const int ranks = 4;
  const std::string job = unique_job("groupthreads");
  process_options o;
  o.deadline = std::chrono::seconds{300};
  o.comm.progress = chorus::progress_mode::thread;
  auto results = run_processes(
      ranks, job,
      [](shm_communicator& comm, failures& f) {
        chorus::mesh m(comm, {{"dp", 2}, {"tp", 2}});
        auto& dp = m["dp"];
        auto& tp = m["tp"];
        auto odd = comm.split(comm.rank() % 2);
        const int r = comm.rank();
        const int n = comm.size();
        const bool sanitized = address_sanitizer;
        const std::size_t big = sanitized ? 1 << 14 : 1 << 17;  // past the eager size
        for (int round = 0; round < (sanitized ? 8 : 40); ++round) {
          const auto base = static_cast<float>(round);
          std::vector<float> a(big + static_cast<std::size_t>(round), base + static_cast<float>(r));
          std::vector<float> rs_in(2 * 1000, static_cast<float>(r + 1));
          std::vector<float> rs_out(1000);
          std::vector<int> out(4096 + round, r * 1000 + round);
          std::vector<int> in(out.size(), -1);
          std::vector<double> c(300 + static_cast<std::size_t>(round), static_cast<double>(r));
          std::vector<chorus::request> reqs;
          reqs.push_back(chorus::iall_reduce(dp, a, chorus::plus{}));
          reqs.push_back(chorus::ireduce_scatter(tp, rs_in, rs_out, chorus::plus{}));
          reqs.push_back(chorus::irecv(comm, in, (r + n - 1) % n, 7));
          reqs.push_back(chorus::isend(comm, out, (r + 1) % n, 7));
          chorus::all_reduce(*odd, c, chorus::plus{});
          chorus::wait_all(reqs);
          // dp pairs ranks {r, r ^ 2}; tp pairs {r, r ^ 1}; odd groups {0, 2} and {1, 3}.
          const float dp_sum = 2 * base + static_cast<float>(r + (r ^ 2));
          if (a.front() != dp_sum || a.back() != dp_sum)
            f.add("dp all_reduce, round " + std::to_string(round));
          const auto tp_sum = static_cast<float>(r + 1 + (r ^ 1) + 1);
          if (rs_out.front() != tp_sum || rs_out.back() != tp_sum)
            f.add("tp reduce_scatter, round " + std::to_string(round));
          const int from = (r + n - 1) % n;
          if (in.front() != from * 1000 + round || in.back() != from * 1000 + round)
            f.add("ring isend/irecv, round " + std::to_string(round));
          const double odd_sum = r % 2 == 0 ? 0 + 2 : 1 + 3;
          if (c.front() != odd_sum || c.back() != odd_sum)
            f.add("caller's all_reduce, round " + std::to_string(round));
        }
      },
      o);
  require_all_ok(results);
  REQUIRE(shm_leftovers(job).empty());
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

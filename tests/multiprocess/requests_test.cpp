// Nonblocking collectives and point-to-point between real processes over shared memory:
// many requests in flight with exact results, priorities served first, 64 MiB ring
// exchanges in both directions, a killed peer seen through a request; nothing left in
// /dev/shm.
#include "../support/requests.hpp"
#include "../support/checks.hpp"
#include "../support/processes.hpp"

#include <atomic>
#include <chrono>
#include <csignal>
#include <string>
#include <thread>
#include <vector>

using namespace harness;

namespace {

process_options with_progress(chorus::progress_mode mode) {
  process_options o;
  o.deadline = std::chrono::seconds{300};
  o.comm.timeout = std::chrono::seconds{60};
  o.comm.progress = mode;
  return o;
}

}  // namespace

TEST_CASE("shm requests: many in flight, every collective, mixed sizes and priorities") {
  for (auto mode : {chorus::progress_mode::thread, chorus::progress_mode::caller}) {
    for (int ranks : {2, 3, 4}) {
      const std::string job = unique_job("req");
      auto results = run_processes(
          ranks, job, [](shm_communicator& comm, failures& f) { check_many_requests(comm, f); },
          with_progress(mode));
      INFO("ranks = " << ranks << ", caller-driven = " << (mode == chorus::progress_mode::caller));
      require_all_ok(results);
      REQUIRE(shm_leftovers(job).empty());
    }
  }
}

TEST_CASE("shm requests: a high-priority request overtakes a large low-priority one") {
  for (int ranks : {2, 4}) {
    const std::string job = unique_job("prio");
    auto results = run_processes(
        ranks, job, [](shm_communicator& comm, failures& f) { check_priority_order(comm, f); },
        with_progress(chorus::progress_mode::caller));
    INFO("ranks = " << ranks);
    require_all_ok(results);
    REQUIRE(shm_leftovers(job).empty());
  }
}

TEST_CASE("shm requests: 64 MiB ring exchanges in both directions complete") {
  for (auto mode : {chorus::progress_mode::thread, chorus::progress_mode::caller}) {
    const std::string job = unique_job("xchg");
    auto results = run_processes(
        3, job, [](shm_communicator& comm, failures& f) { check_exchanges(comm, 64u << 20, f); },
        with_progress(mode));
    require_all_ok(results);
    REQUIRE(shm_leftovers(job).empty());
  }
}

TEST_CASE("shm requests: a rank killed while requests are in flight is peer_lost in wait") {
  const std::string job = unique_job("reqkill");
  process_options o = with_progress(chorus::progress_mode::thread);
  o.comm.timeout = std::chrono::seconds{30};
  std::atomic<double> killed_at{0};
  const auto start = std::chrono::steady_clock::now();
  o.while_running = [&](const std::vector<pid_t>& pids) {
    std::this_thread::sleep_for(std::chrono::milliseconds{500});
    ::kill(pids[2], SIGKILL);
    killed_at = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  };
  auto results = run_processes(
      3, job,
      [](shm_communicator& comm, failures&) {
        std::vector<float> v(1 << 16, 1.0f);
        for (;;) {  // until the victim dies under us
          std::vector<chorus::request> reqs;
          for (int k = 0; k < 4; ++k) reqs.push_back(chorus::iall_reduce(comm, v, chorus::plus{}));
          chorus::wait_all(reqs);
          std::fill(v.begin(), v.end(), 1.0f);
        }
      },
      o);
  check_peer_lost_reports(results, 2, killed_at.load(), 5.0, "requests");
  REQUIRE(shm_leftovers(job).empty());
}

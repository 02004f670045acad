// Nonblocking collectives and point-to-point over inproc: many requests in flight with
// exact results (progress thread and caller-driven), priorities served first, large
// exchanges in both directions, and every error path through a request.
#include "../support/checks.hpp"
#include "../support/requests.hpp"

#include <chorus/chorus.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <thread>
#include <vector>

using namespace harness;
using namespace std::chrono_literals;

namespace {

template <class Fn>
void run_with(int ranks, chorus::progress_mode mode, Fn&& fn) {
  chorus::communicator_options options;
  options.timeout = std::chrono::seconds(120);
  options.progress = mode;
  chorus::inproc::run(ranks, std::forward<Fn>(fn), options);
}

bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

/// The code of the chorus::error `f()` throws; nullopt when it throws none.
template <class F>
std::optional<chorus::errc> code_of(F&& f) {
  try {
    f();
  } catch (const chorus::error& e) {
    return static_cast<chorus::errc>(e.code().value());
  }
  return std::nullopt;
}

}  // namespace

TEST_CASE("requests: many in flight, every collective, mixed sizes and priorities") {
  for (auto mode : {chorus::progress_mode::thread, chorus::progress_mode::caller}) {
    for (int ranks : {1, 2, 3, 4, 7}) {
      failures f;
      run_with(ranks, mode,
               [&](chorus::inproc_communicator& comm) { check_many_requests(comm, f); });
      INFO("ranks = " << ranks << ", caller-driven = " << (mode == chorus::progress_mode::caller));
      INFO(f.report());
      REQUIRE(f.count() == 0);
    }
  }
}

TEST_CASE("requests: a high-priority request overtakes a large low-priority one") {
  for (int ranks : {2, 3, 4}) {
    failures f;
    run_with(ranks, chorus::progress_mode::caller,
             [&](chorus::inproc_communicator& comm) { check_priority_order(comm, f); });
    INFO("ranks = " << ranks);
    INFO(f.report());
    REQUIRE(f.count() == 0);
  }
}

TEST_CASE("requests: 64 MiB ring exchanges in both directions complete") {
  for (int ranks : {2, 3}) {
    for (auto mode : {chorus::progress_mode::thread, chorus::progress_mode::caller}) {
      failures f;
      run_with(ranks, mode,
               [&](chorus::inproc_communicator& comm) { check_exchanges(comm, 64u << 20, f); });
      INFO("ranks = " << ranks);
      INFO(f.report());
      REQUIRE(f.count() == 0);
    }
  }
}

TEST_CASE("requests: bad arguments throw when posted and leave the communicator usable") {
  run_ranks(2, [](chorus::inproc_communicator& comm) {
    std::vector<float> in(8, 1.0f), out(7);
    REQUIRE(code_of([&] { (void)chorus::iall_reduce(comm, in, out, chorus::plus{}); }) ==
            chorus::errc::invalid_argument);
    REQUIRE(code_of([&] { (void)chorus::isend(comm, in, 5); }) == chorus::errc::invalid_argument);
    REQUIRE(code_of([&] { (void)chorus::ibroadcast(comm, in, 3); }) ==
            chorus::errc::invalid_argument);
    REQUIRE_FALSE(comm.poisoned());
    chorus::iall_reduce(comm, in, chorus::plus{}).wait();
    REQUIRE(in[0] == 2.0f);
  });
}

TEST_CASE("requests: a deadline reached in flight fails the request with the blocking message") {
  for (auto mode : {chorus::progress_mode::thread, chorus::progress_mode::caller}) {
    std::atomic<bool> checked{false};
    chorus::communicator_options options;
    options.timeout = 300ms;
    options.progress = mode;
    chorus::inproc::run(
        2,
        [&](chorus::inproc_communicator& comm) {
          if (comm.rank() == 1) {
            std::this_thread::sleep_for(1500ms);  // never posts: rank 0 must time out
            return;
          }
          std::vector<float> v(1000, 1.0f), w(10, 1.0f);
          chorus::request a = chorus::iall_reduce(comm, v, chorus::plus{});
          chorus::request b = chorus::iall_reduce(comm, w, chorus::plus{});
          // not complete yet, and waiting a little does not fail it
          REQUIRE_FALSE(a.wait_for(20ms));
          try {
            a.wait();
            FAIL("the request completed without its peer");
          } catch (const chorus::error& e) {
            CHECK(e.value() == chorus::errc::timeout);
            CHECK(contains(e.what(), "chorus: rank 0: all_reduce #1 ("));
            CHECK(contains(e.what(), "waited"));
          }
          // the other request fails with the poisoning error; later calls at once
          REQUIRE(code_of([&] { (void)b.wait(); }) == chorus::errc::timeout);
          REQUIRE(comm.poisoned());
          REQUIRE(code_of([&] { (void)chorus::iall_reduce(comm, w, chorus::plus{}); }) ==
                  chorus::errc::timeout);
          checked = true;
        },
        options);
    REQUIRE(checked);
  }
}

TEST_CASE("requests: a mismatch found by CHORUS_CHECK arrives through the request") {
  chorus::communicator_options options;
  options.timeout = 20s;
  options.check = true;
  std::atomic<int> mismatches{0};
  chorus::inproc::run(
      2,
      [&](chorus::inproc_communicator& comm) {
        std::vector<float> v(comm.rank() == 0 ? 10 : 11, 1.0f);
        try {
          chorus::iall_reduce(comm, v, chorus::plus{}).wait();
        } catch (const chorus::error& e) {
          if (e.value() == chorus::errc::mismatch && contains(e.what(), "count 10") &&
              contains(e.what(), "count 11")) {
            ++mismatches;
          }
        }
      },
      options);
  REQUIRE(mismatches >= 1);
}

TEST_CASE("requests: abort from another thread ends a request's wait") {
  for (auto mode : {chorus::progress_mode::thread, chorus::progress_mode::caller}) {
    chorus::communicator_options options;
    options.timeout = 30s;
    options.progress = mode;
    std::atomic<int> aborted{0};
    const auto start = std::chrono::steady_clock::now();
    chorus::inproc::run(
        2,
        [&](chorus::inproc_communicator& comm) {
          if (comm.rank() == 1) {
            std::this_thread::sleep_for(1000ms);
            return;
          }
          std::vector<float> v(100, 1.0f);
          chorus::request q = chorus::iall_reduce(comm, v, chorus::plus{});
          std::thread killer([&] {
            std::this_thread::sleep_for(100ms);
            comm.abort("stopped by the test");
          });
          try {
            q.wait();
          } catch (const chorus::error& e) {
            if (e.value() == chorus::errc::aborted && contains(e.what(), "stopped by the test")) {
              ++aborted;
            }
          }
          killer.join();
        },
        options);
    REQUIRE(aborted == 1);
    REQUIRE(std::chrono::steady_clock::now() - start < 10s);
  }
}

TEST_CASE("requests: a communicator destroyed with requests in flight aborts them") {
  chorus::communicator_options options;
  options.timeout = 30s;
  std::atomic<bool> failed_fast{false};
  chorus::inproc::run(
      2,
      [&](chorus::inproc_communicator& comm) {
        if (comm.rank() == 0) {
          std::vector<float> v(100, 1.0f);
          chorus::request q;
          {
            // a group whose requests outlive it
            auto group = comm.split(0, 0);
            REQUIRE(group);
            if (group->rank() == 0) {
              q = chorus::iall_reduce(*group, v, chorus::plus{});
            }
          }
          try {
            q.wait();
          } catch (const chorus::error& e) {
            failed_fast = e.value() == chorus::errc::aborted &&
                          contains(e.what(), "destroyed with 1 nonblocking operation");
          }
        } else {
          auto group = comm.split(0, 0);
          // rank 1 posts nothing in the group; the abort from rank 0 reaches it
          std::this_thread::sleep_for(300ms);
        }
      },
      options);
  REQUIRE(failed_fast);
}

TEST_CASE("requests: wait_any returns a completed request; empty requests are complete") {
  run_ranks(3, [](chorus::inproc_communicator& comm) {
    std::vector<int> a(10, 1), b(1 << 16, 1);
    std::vector<chorus::request> reqs;
    reqs.push_back(chorus::iall_reduce(comm, b, chorus::plus{}));
    reqs.push_back(chorus::iall_reduce(comm, a, chorus::plus{}));
    const std::size_t first = chorus::wait_any(reqs);
    REQUIRE(first < reqs.size());
    REQUIRE(reqs[first].test());
    chorus::wait_all(reqs);
    REQUIRE(a[0] == 3);
    REQUIRE(b.back() == 3);
    chorus::request none;
    REQUIRE(none.test());
    none.wait();
    REQUIRE(chorus::wait_any(std::vector<chorus::request>{}) == 0);
  });
}

TEST_CASE("requests: the engine reuses finished collectives' scratch, keeping the 4 largest") {
  chorus::detail::scratch_pool pool;
  auto a = pool.take(1000);
  std::byte* const first = a.memory.get();
  REQUIRE(a.bytes == 1000);
  pool.give(std::move(a));
  auto b = pool.take(800);  // fits in the kept area: the same memory, no new allocation
  REQUIRE(b.memory.get() == first);
  REQUIRE(b.bytes == 1000);
  auto c = pool.take(2000);  // nothing kept fits: new
  REQUIRE(c.memory.get() != first);
  REQUIRE(reinterpret_cast<std::uintptr_t>(c.memory.get()) % 64 == 0);
  pool.give(std::move(b));
  pool.give(std::move(c));
  // smallest fitting first
  auto d = pool.take(900);
  REQUIRE(d.bytes == 1000);
  pool.give(std::move(d));
  // five areas given: the smallest (1000) is dropped, the four largest stay
  for (std::size_t bytes : {3000u, 4000u, 5000u}) pool.give(pool.take(bytes));
  std::vector<std::size_t> kept;
  for (int i = 0; i < 4; ++i) kept.push_back(pool.take(1).bytes);
  REQUIRE(kept == std::vector<std::size_t>{2000, 3000, 4000, 5000});
  REQUIRE(pool.take(1).bytes == 1);  // the pool is empty now
}

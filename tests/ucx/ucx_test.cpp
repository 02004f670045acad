// ucx_transport with real processes on one host, under whatever UCX_TLS the ctest entry sets
// (sm,self and tcp over loopback): point-to-point semantics, every collective x algorithm
// against the reference, windows, and the faults: a rank killed mid-collective, abort from
// another thread, a deadline, a size mismatch, a UCX configuration that cannot work; and
// communicator::shrink after a rank is killed.
#include "../support/point_to_point.hpp"
#include "../support/processes.hpp"
#include "../support/requests.hpp"
#include "../support/shrink.hpp"
#include "../support/windows.hpp"

#include <chorus/transport/ucx.hpp>

#include "matrix.hpp"

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <optional>
#include <thread>

using namespace harness;

namespace {

using ucx_communicator = chorus::communicator<chorus::ucx_transport>;

chorus::ucx_transport make_ucx(int rank, int size, const chorus::blob_exchange& exchange) {
  return chorus::ucx_transport(rank, size, exchange);
}

template <class Fn>
std::vector<process_result> run_ucx(int ranks, Fn fn, process_options options = {}) {
  return run_processes_with(ranks, &make_ucx, std::move(fn), std::move(options));
}

/// Sets an environment variable for the ranks forked while it lives, then restores it.
class scoped_env {
 public:
  scoped_env(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    ::setenv(name, value, 1);
  }
  scoped_env(const scoped_env&) = delete;
  scoped_env& operator=(const scoped_env&) = delete;
  ~scoped_env() {
    if (old_) {
      ::setenv(name_, old_->c_str(), 1);
    } else {
      ::unsetenv(name_);
    }
  }

 private:
  const char* name_;
  std::optional<std::string> old_;
};

std::string tls() {
  const char* v = std::getenv("UCX_TLS");
  return v == nullptr ? "(UCX default)" : v;
}

}  // namespace

TEST_CASE("ucx: point-to-point FIFO per tag, early sends, zero bytes, large messages") {
  INFO("UCX_TLS=" << tls());
  auto results =
      run_ucx(3, [](ucx_communicator& comm, failures& f) { check_point_to_point(comm, f); });
  require_all_ok(results);
}

TEST_CASE("ucx: requests: many in flight, priorities, 64 MiB exchanges in both directions") {
  INFO("UCX_TLS=" << tls());
  for (auto mode : {chorus::progress_mode::thread, chorus::progress_mode::caller}) {
    process_options o;
    o.deadline = std::chrono::seconds{300};
    o.comm.timeout = std::chrono::seconds{60};
    o.comm.progress = mode;
    auto results = run_ucx(
        3,
        [mode](ucx_communicator& comm, failures& f) {
          check_many_requests(comm, f);
          if (mode == chorus::progress_mode::caller) check_priority_order(comm, f);
          check_exchanges(comm, 64u << 20, f);
        },
        o);
    INFO("caller-driven = " << (mode == chorus::progress_mode::caller));
    require_all_ok(results);
  }
}

TEST_CASE("ucx: every collective and algorithm, against the reference") {
  for (int ranks : {2, 3, 4}) {
    INFO("UCX_TLS=" << tls() << ", ranks = " << ranks);
    auto results = run_ucx(
        ranks, [](ucx_communicator& comm, failures& f) { ucx_tests::check_collectives(comm, f); });
    require_all_ok(results);
  }
}

TEST_CASE("ucx: windows: register, get, put; bad accesses are invalid_argument") {
  INFO("UCX_TLS=" << tls());
  auto results = run_ucx(3, [](ucx_communicator& comm, failures& f) {
    chorus::ucx_transport& t = comm.transport();
    const int r = comm.rank();
    const int p = comm.size();
    const auto size_of = [](int q) {
      return q == 1 ? std::size_t{0} : 300000 * static_cast<std::size_t>(q + 1) + 24;
    };
    std::vector<std::byte> memory(size_of(r));
    for (std::size_t i = 0; i < memory.size(); ++i) {
      memory[i] = static_cast<std::byte>((i * 7 + static_cast<std::size_t>(r)) & 0xff);
    }
    const auto w = t.register_window(memory);
    if (t.window_bytes(w, r) != memory.size() || t.local_window(w).size() != memory.size()) {
      f.add("own size");
    }
    chorus::barrier(comm);
    for (int q = 0; q < p; ++q) {
      if (t.window_bytes(w, q) != size_of(q)) f.add("window_bytes of rank " + std::to_string(q));
      if (size_of(q) == 0) continue;
      std::vector<std::byte> got(size_of(q) - 5);
      auto req = t.get(w, q, 5, got);
      t.wait(req, chorus::deadline::after(std::chrono::seconds(30)));
      for (std::size_t i = 0; i < got.size(); ++i) {
        const auto want =
            static_cast<std::byte>(((i + 5) * 7 + static_cast<std::size_t>(q)) & 0xff);
        if (got[i] != want) {
          f.add("get from rank " + std::to_string(q) + " wrong at " + std::to_string(i));
          break;
        }
      }
    }
    chorus::barrier(comm);
    // Every rank puts a marker into byte r of rank 0's window; a large put into rank 2's.
    const std::byte marker{static_cast<unsigned char>(0xa0 + r)};
    auto req = t.put(w, 0, static_cast<std::size_t>(r), std::span<const std::byte>(&marker, 1));
    t.wait(req, chorus::deadline::after(std::chrono::seconds(30)));
    std::vector<std::byte> block(200000, std::byte{static_cast<unsigned char>(r + 1)});
    if (r == 0) {
      auto big = t.put(w, 2, 1000, block);
      t.wait(big, chorus::deadline::after(std::chrono::seconds(30)));
    }
    chorus::barrier(comm);
    if (r == 0) {
      for (int q = 0; q < p; ++q) {
        if (memory[static_cast<std::size_t>(q)] !=
            std::byte{static_cast<unsigned char>(0xa0 + q)}) {
          f.add("put from rank " + std::to_string(q) + " missing");
        }
      }
    }
    if (r == 2 && (memory[1000] != std::byte{1} || memory[200999] != std::byte{1})) {
      f.add("large put missing");
    }
    check_bad_window_accesses(t, w, 1, f);
    chorus::barrier(comm);
  });
  require_all_ok(results);
}

TEST_CASE("ucx: a receive of the wrong size fails with mismatch on the receiver") {
  INFO("UCX_TLS=" << tls());
  for (const std::size_t sent : {std::size_t{10}, std::size_t{3}}) {  // larger, smaller
    INFO("sent " << sent << " ints, received 5");
    auto results = run_ucx(2, [sent](ucx_communicator& comm, failures& f) {
      if (comm.rank() == 0) {
        chorus::send(comm, std::vector<int>(sent), 1, 4);
        // Stay until rank 1 has failed (its abort record ends this wait): a rank that
        // leaves at once can take its shared memory with it before rank 1 attached it.
        std::vector<int> none;
        try {
          chorus::recv(comm, none, 1, 5);
          f.add("rank 1 sent a message it never sends");
        } catch (const chorus::error& e) {
          if (e.value() != chorus::errc::mismatch) f.add(std::string("rank 0: ") + e.what());
        }
        return;
      }
      std::vector<int> got(5);
      try {
        chorus::recv(comm, got, 0, 4);
        f.add("a receive of the wrong size succeeded");
      } catch (const chorus::error& e) {
        if (e.value() != chorus::errc::mismatch ||
            std::string(e.what()).find("from rank 0 but that rank sent") == std::string::npos) {
          f.add(e.what());
        }
      }
    });
    require_all_ok(results);
  }
}

TEST_CASE("ucx: a rank killed mid-all-reduce makes every survivor fail with peer_lost") {
  INFO("UCX_TLS=" << tls());
  for (int ranks : {2, 4}) {
    for (int round = 0; round < 3; ++round) {
      const int victim = (round * 3 + 1) % ranks;
      std::atomic<double> killed_at{0};
      const auto start = std::chrono::steady_clock::now();
      process_options options;
      options.deadline = std::chrono::seconds(60);
      options.while_running = [&](const std::vector<pid_t>& pids) {
        std::this_thread::sleep_for(std::chrono::milliseconds(400 + 37 * round));
        ::kill(pids[static_cast<std::size_t>(victim)], SIGKILL);
        killed_at = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      };
      auto results = run_ucx(
          ranks,
          [round](ucx_communicator& comm, failures&) {
            std::vector<float> v(round == 1 ? (1 << 20) : (1 << 14), 1.0f);  // rendezvous, eager
            for (;;) chorus::all_reduce(comm, v, chorus::plus{}, chorus::algo::ring{});
          },
          options);
      check_peer_lost_reports(results, victim, killed_at.load(), 10.0,
                              "ranks " + std::to_string(ranks) + " round " + std::to_string(round));
    }
  }
}

TEST_CASE("ucx: abort from another thread unblocks the waiting rank and reaches the others") {
  INFO("UCX_TLS=" << tls());
  auto results = run_ucx(3, [](ucx_communicator& comm, failures& f) {
    std::vector<float> v(1000, 1.0f);
    std::thread aborter;
    if (comm.rank() == 1) {
      aborter = std::thread([&comm] {
        std::this_thread::sleep_for(std::chrono::milliseconds(200));
        comm.abort("the test aborts from a helper thread");
      });
    }
    try {
      // Everybody blocks: ranks 0 and 2 in an all-reduce that rank 1 never joins, rank 1 on
      // a message nobody sends. Only the abort ends the waits.
      if (comm.rank() == 1) {
        chorus::recv(comm, v, 0, 77);
      } else {
        chorus::all_reduce(comm, v, chorus::plus{});
      }
      f.add("the wait completed despite the abort");
    } catch (const chorus::error& e) {
      if (e.value() != chorus::errc::aborted ||
          std::string(e.what()).find("the test aborts from a helper thread") == std::string::npos) {
        f.add(std::string("unexpected error: ") + e.what());
      }
    }
    if (aborter.joinable()) aborter.join();
  });
  require_all_ok(results);
}

TEST_CASE("ucx: a wait past its deadline fails with timeout, and the group learns it") {
  INFO("UCX_TLS=" << tls());
  process_options options;
  options.comm.timeout = std::chrono::milliseconds(300);
  auto results = run_ucx(
      2,
      [](ucx_communicator& comm, failures& f) {
        std::vector<float> v(100, 1.0f);
        if (comm.rank() == 0) {
          // rank 1 does not join: the wait for its message times out
          try {
            chorus::all_reduce(comm, v, chorus::plus{});
            f.add("the all-reduce completed");
          } catch (const chorus::error& e) {
            if (e.value() != chorus::errc::timeout ||
                std::string(e.what()).find("before the deadline") == std::string::npos) {
              f.add(std::string("rank 0: ") + e.what());
            }
          }
          return;
        }
        // Rank 1 waits (with a long deadline) for a message that will never come: rank 0's
        // abort record ends the wait, with rank 0's cause.
        comm.set_timeout(std::chrono::seconds(30));
        try {
          chorus::recv(comm, v, 0, 77);
          f.add("the receive completed");
        } catch (const chorus::error& e) {
          if (e.value() != chorus::errc::timeout ||
              std::string(e.what()).find("rank 0 aborted the group") == std::string::npos) {
            f.add(std::string("rank 1: ") + e.what());
          }
        }
      },
      options);
  require_all_ok(results);
}

TEST_CASE("ucx: a UCX configuration that cannot work is one readable error") {
  for (const auto& [name, value] : {std::pair{"UCX_TLS", "no_such_transport"},
                                    std::pair{"UCX_NET_DEVICES", "no_such_device0"}}) {
    INFO(name << "=" << value);
    scoped_env tls_env("UCX_TLS", std::string(name) == "UCX_TLS" ? value : "tcp");
    scoped_env env(name, value);
    auto results = run_ucx(2, [](ucx_communicator&, failures& f) { f.add("UCX started"); });
    for (const auto& r : results) {
      INFO("rank " << r.rank << ": " << r.report);
      CHECK(r.exit_code == 2);
      CHECK_THAT(r.report, Catch::Contains("chorus::error[transport]") &&
                               Catch::Contains(std::string(name) + "='" + value + "'"));
      CHECK(r.report.find('\n') == std::string::npos);
    }
  }
}

TEST_CASE("ucx: after kill -9 the survivors shrink to a group without the dead rank") {
  INFO("UCX_TLS=" << tls());
  for (const int ranks : {2, 3, 4, 8}) {
    const int victim = ranks - 1 - ranks % 2;
    const auto results = run_job<chorus::ucx_transport>(
        ranks, unique_job("ucxshrink"), [&](ucx_communicator& comm, failures& f) {
          run_until_failure(comm, victim, 2, f);
          auto s = comm.shrink({.timeout = std::chrono::seconds(20)});
          check_shrunk(s, comm.rank(), ranks, all_but(ranks, {victim}), f);
        });
    INFO(ranks << " ranks, rank " << victim << " killed");
    check_outcome(results, {victim});
  }
}

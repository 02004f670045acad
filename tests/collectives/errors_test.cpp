// Failures a user can cause: bad arguments (rejected before any byte moves), mismatched
// collectives, expired deadlines, a rank that throws or leaves, abort from another thread,
// and the poisoned communicator afterwards.
#include "../support/harness.hpp"

#include <atomic>
#include <chrono>
#include <functional>
#include <thread>

using namespace harness;
using Catch::Matchers::Contains;

namespace {

/// Runs `fn` and returns the chorus::error it throws (fails the test if it throws nothing).
template <class Fn>
chorus::error error_of(Fn&& fn) {
  try {
    fn();
  } catch (const chorus::error& e) {
    return e;
  }
  return chorus::error(chorus::errc::transport, "no error was thrown");
}

/// Every rank makes the same bad call; each must get invalid_argument naming `api` and
/// `needle`, and the communicator must still work afterwards (nothing moved).
template <class Call>
void expect_invalid(int ranks, const std::string& api, const std::string& needle, Call call) {
  failures f;
  run_ranks(ranks, [&](chorus::inproc_communicator& comm) {
    const chorus::error e = error_of([&] { call(comm); });
    if (e.code() != chorus::errc::invalid_argument) {
      f.add("rank " + std::to_string(comm.rank()) + ": expected invalid_argument, got " +
            e.code().message() + ": " + e.what());
    } else if (std::string(e.what()).find("chorus::" + api) == std::string::npos ||
               std::string(e.what()).find(needle) == std::string::npos) {
      f.add("message lacks '" + api + "' or '" + needle + "': " + e.what());
    }
    std::vector<int> v{1};
    chorus::all_reduce(comm, v, chorus::plus{});
    if (v[0] != comm.size()) f.add("communicator unusable after invalid_argument");
  });
  INFO(f.report());
  REQUIRE(f.count() == 0);
}

}  // namespace

TEST_CASE("invalid arguments are rejected before any byte moves, naming the argument") {
  using V = std::vector<float>;
  SECTION("all_reduce: output size") {
    expect_invalid(3, "all_reduce", "output has 4 elements but must have 5", [](auto& comm) {
      V in(5), out(4);
      chorus::all_reduce(comm, in, out, chorus::plus{});
    });
  }
  SECTION("all_reduce: partial overlap") {
    expect_invalid(2, "all_reduce", "overlap", [](auto& comm) {
      V buf(10);
      chorus::all_reduce(comm, std::span<const float>(buf).first(6),
                         std::span<float>(buf).subspan(2, 6), chorus::plus{});
    });
  }
  SECTION("reduce_scatter: input not ranks x output") {
    expect_invalid(3, "reduce_scatter", "use reduce_scatter_v", [](auto& comm) {
      V in(10), out(3);
      chorus::reduce_scatter(comm, in, out, chorus::plus{});
    });
  }
  SECTION("reduce_scatter: in place at the wrong offset") {
    expect_invalid(3, "reduce_scatter", "in-place layout", [](auto& comm) {
      V in(9);
      chorus::reduce_scatter(comm, std::span<const float>(in), std::span<float>(in).subspan(1, 3),
                             chorus::plus{});
    });
  }
  SECTION("reduce_scatter_v: counts of the wrong length") {
    expect_invalid(3, "reduce_scatter_v", "counts has 2 entries", [](auto& comm) {
      V in(4), out(2);
      chorus::reduce_scatter_v(comm, in, out, std::vector<std::size_t>{2, 2}, chorus::plus{});
    });
  }
  SECTION("reduce_scatter_v: counts that do not sum to the input") {
    expect_invalid(2, "reduce_scatter_v", "the sum of the block counts", [](auto& comm) {
      V in(5), out(2);
      chorus::reduce_scatter_v(comm, in, out, std::vector<std::size_t>{2, 2}, chorus::plus{});
    });
  }
  SECTION("all_gather_v: a negative count") {
    expect_invalid(2, "all_gather_v", "negative count -1", [](auto& comm) {
      V in(1), out(1);
      chorus::all_gather_v(comm, in, out, std::vector<int>{2, -1});
    });
  }
  SECTION("all_gather: output not ranks x input") {
    expect_invalid(4, "all_gather", "output has 7 elements but must have 8", [](auto& comm) {
      V in(2), out(7);
      chorus::all_gather(comm, in, out);
    });
  }
  SECTION("broadcast: root out of range") {
    expect_invalid(3, "broadcast", "root 3 is not a rank", [](auto& comm) {
      V v(4);
      chorus::broadcast(comm, v, 3);
    });
  }
  SECTION("reduce: negative root") {
    expect_invalid(2, "reduce", "root -1 is not a rank", [](auto& comm) {
      V v(4);
      chorus::reduce(comm, v, chorus::plus{}, -1);
    });
  }
  SECTION("all_to_all: input not divisible by the rank count") {
    expect_invalid(3, "all_to_all", "not a multiple of the 3 ranks", [](auto& comm) {
      V in(4), out(4);
      chorus::all_to_all(comm, in, out);
    });
  }
  SECTION("all_to_all: overlapping buffers (never in place)") {
    expect_invalid(2, "all_to_all", "does not allow", [](auto& comm) {
      V buf(4);
      chorus::all_to_all(comm, std::span<const float>(buf), std::span<float>(buf));
    });
  }
  SECTION("send: to itself") {
    expect_invalid(2, "send", "not another rank", [](auto& comm) {
      V v(1);
      chorus::send(comm, v, comm.rank());
    });
  }
  SECTION("recv: peer out of range") {
    expect_invalid(2, "recv", "peer 5 is not another rank", [](auto& comm) {
      V v(1);
      chorus::recv(comm, v, 5);
    });
  }
}

TEST_CASE("a bad buffer only the root has fails every rank with the root's invalid_argument") {
  // The other ranks cannot see the root's buffers and go ahead. Before the root failed the
  // group with its error, ranks that only send to the root (gather, reduce) returned and
  // then failed their next call with a count mismatch, and ranks that wait for the root
  // (scatter, broadcast) waited for the deadline and failed with a timeout.
  using V = std::vector<int>;
  struct bad_call {
    const char* api;
    const char* needle;
    std::function<void(chorus::inproc_communicator&, int)> call;
  };
  const std::vector<bad_call> calls{
      {"gather", "root's output has 5 elements but must have 6",
       [](chorus::inproc_communicator& comm, int root) {
         V in(2, 1), out(comm.rank() == root ? 5 : 0);
         chorus::gather(comm, in, out, root);
       }},
      {"scatter", "root's input has 3 elements but must have 6",
       [](chorus::inproc_communicator& comm, int root) {
         V in(comm.rank() == root ? 3 : 0), out(2);
         chorus::scatter(comm, in, out, root);
       }},
      {"broadcast", "root's input has 4 elements but must have 5",
       [](chorus::inproc_communicator& comm, int root) {
         V in(4, 1), out(5);
         if (comm.rank() == root) {
           chorus::broadcast(comm, in, out, root);
         } else {
           chorus::broadcast(comm, out, root);
         }
       }},
      {"reduce", "root's output has 7 elements but must have 8",
       [](chorus::inproc_communicator& comm, int root) {
         V in(8, 1), out(7);
         chorus::reduce(comm, in, out, chorus::plus{}, root);
       }},
  };
  chorus::communicator_options options;
  options.timeout = std::chrono::seconds(20);  // a hang guard: the failure must not wait
  for (const bad_call& c : calls) {
    for (int root : {0, 2}) {
      failures f;
      chorus::inproc::run(
          3,
          [&](chorus::inproc_communicator& comm) {
            const std::string who = std::string(c.api) + ", root " + std::to_string(root) +
                                    ", rank " + std::to_string(comm.rank());
            chorus::error e = error_of([&] { c.call(comm, root); });
            if (comm.rank() != root && e.code() == chorus::errc::transport &&
                std::string(e.what()) == "no error was thrown") {
              // It only sent to the root: its next call must fail instead.
              e = error_of([&] { chorus::barrier(comm); });
            }
            if (e.code() != chorus::errc::invalid_argument) {
              f.add(who + ": expected invalid_argument, got " + e.code().message() + ": " +
                    e.what());
            } else if (std::string(e.what()).find(c.needle) == std::string::npos) {
              f.add(who + ": the message does not carry the root's: " + e.what());
            }
            if (!comm.poisoned()) f.add(who + ": the communicator is still usable");
          },
          options);
      INFO(f.report());
      REQUIRE(f.count() == 0);
    }
  }
}

TEST_CASE("CHORUS_CHECK: ranks calling different collectives get mismatch naming both") {
  chorus::communicator_options options;
  options.check = true;
  options.timeout = std::chrono::seconds(30);
  std::vector<std::string> messages(3);
  std::vector<chorus::errc> codes(3);
  REQUIRE_THROWS_AS(chorus::inproc::run(
                        3,
                        [&](chorus::inproc_communicator& comm) {
                          std::vector<float> v(8);
                          const auto r = static_cast<std::size_t>(comm.rank());
                          try {
                            chorus::all_reduce(comm, v, chorus::plus{});  // #1 agrees
                            if (comm.rank() == 1) {
                              chorus::broadcast(comm, v, 0);  // #2 disagrees on rank 1
                            } else {
                              chorus::all_reduce(comm, v, chorus::plus{});
                            }
                          } catch (const chorus::error& e) {
                            messages[r] = e.what();
                            codes[r] = e.value();
                            throw;
                          }
                        },
                        options),
                    chorus::error);
  // Rank 1 sees rank 0's all_reduce and rank 2 sees rank 1's broadcast; each reports both
  // calls and aborts the group with that cause, so rank 0 (whose neighbour agreed) fails
  // with the same code and text instead of waiting.
  for (std::size_t r = 0; r < 3; ++r) {
    INFO("rank " << r << ": " << messages[r]);
    CHECK(codes[r] == chorus::errc::mismatch);
    CHECK_THAT(messages[r],
               Contains("broadcast #2") && Contains("all_reduce #2") && Contains("called"));
  }
}

TEST_CASE("without checking, a count mismatch is still reported, not a hang") {
  chorus::communicator_options options;
  options.timeout = std::chrono::seconds(30);
  std::atomic<int> mismatches{0};
  REQUIRE_THROWS_AS(chorus::inproc::run(
                        2,
                        [&](chorus::inproc_communicator& comm) {
                          std::vector<int> v(comm.rank() == 0 ? 10 : 11);
                          try {
                            chorus::all_reduce(comm, v, chorus::plus{}, chorus::algo::direct{});
                          } catch (const chorus::error& e) {
                            if (e.code() == chorus::errc::mismatch) ++mismatches;
                            throw;
                          }
                        },
                        options),
                    chorus::error);
  REQUIRE(mismatches >= 1);
}

TEST_CASE("an expired deadline gives timeout naming the collective and the peer") {
  chorus::communicator_options options;
  options.timeout = std::chrono::milliseconds(200);
  std::string message;
  REQUIRE_THROWS_AS(chorus::inproc::run(
                        2,
                        [&](chorus::inproc_communicator& comm) {
                          if (comm.rank() == 1) {
                            // late, but present: the failure must be rank 0's timeout
                            std::this_thread::sleep_for(std::chrono::milliseconds(600));
                            return;
                          }
                          std::vector<float> v(4);
                          try {
                            chorus::all_reduce(comm, v, chorus::plus{}, chorus::algo::ring{});
                          } catch (const chorus::error& e) {
                            message = e.what();
                            REQUIRE(e.code() == chorus::errc::timeout);
                            throw;
                          }
                        },
                        options),
                    chorus::error);
  CHECK_THAT(message, Contains("rank 0") && Contains("all_reduce #1") && Contains("rank 1") &&
                          Contains("CHORUS_TIMEOUT"));
}

TEST_CASE("a rank that throws aborts the group: peers get aborted, not a timeout") {
  chorus::communicator_options options;
  options.timeout = std::chrono::seconds(60);
  std::vector<std::string> messages(4);
  std::vector<chorus::errc> codes(4, chorus::errc::transport);
  try {
    chorus::inproc::run(
        4,
        [&](chorus::inproc_communicator& comm) {
          const auto r = static_cast<std::size_t>(comm.rank());
          if (r == 2) throw std::runtime_error("model diverged");
          std::vector<float> v(100);
          try {
            chorus::all_reduce(comm, v, chorus::plus{});
          } catch (const chorus::error& e) {
            messages[r] = e.what();
            codes[r] = e.value();
            throw;
          }
        },
        options);
    FAIL("run did not throw");
  } catch (const std::runtime_error& e) {
    // the cause is rethrown, not a consequence
    REQUIRE(std::string(e.what()) == "model diverged");
  }
  for (std::size_t r : {0u, 1u, 3u}) {
    INFO("rank " << r << ": " << messages[r]);
    CHECK(codes[r] == chorus::errc::aborted);
    CHECK_THAT(messages[r], Contains("rank 2") && Contains("model diverged"));
  }
}

TEST_CASE("a rank that returns early makes its peers fail with peer_lost") {
  std::string message;
  chorus::errc code = chorus::errc::transport;
  REQUIRE_THROWS_AS(chorus::inproc::run(2,
                                        [&](chorus::inproc_communicator& comm) {
                                          if (comm.rank() == 1) return;
                                          std::vector<float> v(4);
                                          try {
                                            chorus::all_reduce(comm, v, chorus::plus{});
                                          } catch (const chorus::error& e) {
                                            message = e.what();
                                            code = e.value();
                                            throw;
                                          }
                                        }),
                    chorus::error);
  CHECK(code == chorus::errc::peer_lost);
  CHECK_THAT(message, Contains("rank 1 returned"));
}

TEST_CASE("abort() from another thread unblocks a waiting rank; the communicator is poisoned") {
  std::string first, second;
  chorus::errc first_code = chorus::errc::transport, second_code = chorus::errc::transport;
  REQUIRE_THROWS_AS(
      chorus::inproc::run(2,
                          [&](chorus::inproc_communicator& comm) {
                            if (comm.rank() == 1) {
                              // stay alive, call nothing, until rank 0 has failed
                              std::this_thread::sleep_for(std::chrono::milliseconds(400));
                              return;
                            }
                            std::thread killer([&] {
                              std::this_thread::sleep_for(std::chrono::milliseconds(100));
                              comm.abort("operator pressed ctrl-c");
                            });
                            std::vector<float> v(4);
                            try {
                              chorus::recv(comm, v, 1);
                            } catch (const chorus::error& e) {
                              first = e.what();
                              first_code = e.value();
                            }
                            killer.join();
                            try {
                              chorus::all_reduce(comm, v, chorus::plus{});
                            } catch (const chorus::error& e) {
                              second = e.what();
                              second_code = e.value();
                              throw;
                            }
                          }),
      chorus::error);
  CHECK(first_code == chorus::errc::aborted);
  CHECK_THAT(first, Contains("operator pressed ctrl-c"));
  CHECK(second_code == chorus::errc::aborted);
  CHECK_THAT(second, Contains("unusable after an earlier failure"));
}

TEST_CASE("CHORUS_TIMEOUT and CHORUS_CHECK parsing") {
  using namespace std::chrono_literals;
  CHECK(chorus::parse_duration("60") == std::chrono::nanoseconds(60s));
  CHECK(chorus::parse_duration("2.5") == std::chrono::nanoseconds(2500ms));
  CHECK(chorus::parse_duration("500ms") == std::chrono::nanoseconds(500ms));
  CHECK(chorus::parse_duration("30s") == std::chrono::nanoseconds(30s));
  CHECK(chorus::parse_duration("5m") == std::chrono::nanoseconds(300s));
  CHECK_FALSE(chorus::parse_duration("0"));
  CHECK_FALSE(chorus::parse_duration("-1"));
  CHECK_FALSE(chorus::parse_duration("abc"));
  CHECK_FALSE(chorus::parse_duration("10 parsecs"));
  CHECK_FALSE(chorus::parse_duration(""));
  ::setenv("CHORUS_TIMEOUT", "soon", 1);
  const chorus::error e = error_of([] { (void)chorus::communicator_options::from_env(); });
  CHECK(e.code() == chorus::errc::invalid_argument);
  CHECK_THAT(std::string(e.what()), Contains("CHORUS_TIMEOUT='soon'"));
  ::setenv("CHORUS_TIMEOUT", "250ms", 1);
  ::setenv("CHORUS_CHECK", "1", 1);
  const auto o = chorus::communicator_options::from_env();
  CHECK(o.timeout == std::chrono::nanoseconds(250ms));
  CHECK(o.check);
  ::setenv("CHORUS_CHECK", "maybe", 1);
  CHECK_THROWS_AS(chorus::communicator_options::from_env(), chorus::error);
  ::unsetenv("CHORUS_TIMEOUT");
  ::unsetenv("CHORUS_CHECK");
}

#pragma once
// The store contract, checked the same way for every store: `make()` returns a new client
// of ONE shared store (a copy, a new connection, a new object on the same directory), so
// that threads can act as ranks with a store each.
#include <chorus/bootstrap/posix.hpp>
#include <chorus/bootstrap/store.hpp>

#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

namespace contract {

using namespace std::chrono_literals;
namespace bs = chorus::bootstrap;

inline chorus::deadline soon() { return chorus::deadline::after(20s); }
inline chorus::deadline brief() { return chorus::deadline::after(150ms); }

/// Runs `fn(rank)` on `n` threads and joins them; returns the messages of any exceptions.
template <class Fn>
std::vector<std::string> on_threads(int n, Fn fn) {
  std::vector<std::string> failures(static_cast<std::size_t>(n));
  std::vector<std::thread> threads;
  for (int r = 0; r < n; ++r) {
    threads.emplace_back([&, r] {
      try {
        fn(r);
      } catch (const std::exception& e) {
        failures[static_cast<std::size_t>(r)] = e.what();
      }
    });
  }
  for (auto& t : threads) t.join();
  std::vector<std::string> out;
  for (auto& f : failures) {
    if (!f.empty()) out.push_back(f);
  }
  return out;
}

template <class Make>
void check_store_contract(Make make) {
  auto s = make();
  using S = decltype(s);
  STATIC_REQUIRE(bs::store<S>);

  SECTION("set then get returns the bytes, binary and empty values included; set overwrites") {
    const bs::bytes binary{std::byte{0}, std::byte{255}, std::byte{10}, std::byte{0}};
    s.set("contract/binary", binary);
    s.set("contract/empty", bs::bytes{});
    s.set("contract/text", bs::to_bytes("first"));
    s.set("contract/text", bs::to_bytes("second"));
    auto other = make();
    CHECK(other.get("contract/binary", soon()) == binary);
    CHECK(other.get("contract/empty", soon()).empty());
    CHECK(bs::as_string(other.get("contract/text", soon())) == "second");
  }

  SECTION("get waits for a key another client sets later") {
    std::thread setter([&] {
      auto mine = make();
      std::this_thread::sleep_for(50ms);
      mine.set("contract/late", bs::to_bytes("here"));
    });
    const auto value = s.get("contract/late", soon());
    setter.join();
    CHECK(bs::as_string(value) == "here");
  }

  SECTION("get past its deadline throws timeout naming the key") {
    try {
      (void)s.get("contract/never-set", brief());
      FAIL("get returned");
    } catch (const chorus::error& e) {
      CHECK(e.value() == chorus::errc::timeout);
      CHECK_THAT(e.what(), Catch::Contains("contract/never-set"));
    }
    // The store is still usable after a timeout.
    s.set("contract/after-timeout", bs::to_bytes("ok"));
    CHECK(bs::as_string(s.get("contract/after-timeout", soon())) == "ok");
  }

  SECTION("wait returns when every key exists, or times out naming a missing one") {
    const std::vector<std::string> keys{"contract/w1", "contract/w2", "contract/w3"};
    std::thread setter([&] {
      auto mine = make();
      for (const auto& k : keys) {
        std::this_thread::sleep_for(20ms);
        mine.set(k, bs::to_bytes(k));
      }
    });
    s.wait(keys, soon());
    setter.join();
    CHECK(s.check(keys));
    const std::vector<std::string> with_missing{"contract/w1", "contract/missing"};
    CHECK_FALSE(s.check(with_missing));
    try {
      s.wait(with_missing, brief());
      FAIL("wait returned");
    } catch (const chorus::error& e) {
      CHECK(e.value() == chorus::errc::timeout);
      CHECK_THAT(e.what(), Catch::Contains("contract/missing"));
    }
  }

  SECTION("add counts from 0, returns the new value, and is readable as text") {
    CHECK(s.add("contract/counter", 5) == 5);
    CHECK(s.add("contract/counter", -7) == -2);
    CHECK(s.add("contract/counter", 0) == -2);
    CHECK(bs::as_string(s.get("contract/counter", soon())) == "-2");
    CHECK(s.check(std::vector<std::string>{"contract/counter"}));
  }

  SECTION("add is atomic between concurrent clients") {
    const auto failures = on_threads(4, [&](int) {
      auto mine = make();
      for (int i = 0; i < 250; ++i) mine.add("contract/shared", 1);
    });
    CHECK(failures.empty());
    CHECK(s.add("contract/shared", 0) == 1000);
  }

  SECTION("compare_set sets only over the expected value and returns the value afterwards") {
    const std::string key = "contract/cas";
    const std::vector<std::string> keys{key};
    // A missing key with a non-empty expected value stays missing.
    CHECK(s.compare_set(key, bs::to_bytes("x"), bs::to_bytes("y")).empty());
    CHECK_FALSE(s.check(keys));
    // The first proposal over a missing key wins; the second learns the first.
    CHECK(bs::as_string(s.compare_set(key, {}, bs::to_bytes("first"))) == "first");
    CHECK(bs::as_string(s.compare_set(key, {}, bs::to_bytes("second"))) == "first");
    CHECK(bs::as_string(s.get(key, soon())) == "first");
    // Over the value it holds, it swaps; over another, it leaves the value.
    CHECK(bs::as_string(s.compare_set(key, bs::to_bytes("first"), bs::to_bytes("third"))) ==
          "third");
    CHECK(bs::as_string(s.compare_set(key, bs::to_bytes("first"), bs::to_bytes("fourth"))) ==
          "third");
    CHECK(bs::as_string(s.get(key, soon())) == "third");
    // Binary values, an empty desired value included.
    const bs::bytes binary{std::byte{0}, std::byte{0xff}, std::byte{10}};
    CHECK(s.compare_set(key, bs::to_bytes("third"), binary) == binary);
    CHECK(s.compare_set(key, binary, {}).empty());
    CHECK(s.check(keys));
    try {
      s.compare_set("", {}, bs::to_bytes("x"));
      FAIL("compare_set returned");
    } catch (const chorus::error& e) {
      CHECK(e.value() == chorus::errc::invalid_argument);
    }
  }

  SECTION("compare_set wakes a get waiting for its key") {
    std::thread setter([&] {
      auto mine = make();
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      mine.compare_set("contract/cas-late", {}, bs::to_bytes("late"));
    });
    CHECK(bs::as_string(s.get("contract/cas-late", soon())) == "late");
    setter.join();
  }

  SECTION("compare_set is atomic between concurrent clients: one winner, no lost update") {
    std::vector<std::string> seen(4 * 20);
    const auto failures = on_threads(4, [&](int t) {
      auto mine = make();
      for (int i = 0; i < 20; ++i) {
        // Every thread proposes itself for round i; all must learn the same winner.
        seen[static_cast<std::size_t>(t * 20 + i)] =
            bs::as_string(mine.compare_set("contract/winner/" + std::to_string(i), {},
                                           bs::to_bytes("thread " + std::to_string(t))));
        // A counter by compare-and-swap: a lost update would leave it short. Each value
        // names its writer ("count writer"), so that getting one's own value back means the
        // swap was one's own.
        std::string now =
            bs::as_string(mine.compare_set("contract/cas-counter", {}, bs::to_bytes("0 -")));
        for (;;) {
          const std::string next = std::to_string(std::stoi(now) + 1) + " " + std::to_string(t) +
                                   "." + std::to_string(i);
          const std::string after = bs::as_string(
              mine.compare_set("contract/cas-counter", bs::to_bytes(now), bs::to_bytes(next)));
          if (after == next) break;
          now = after;
        }
      }
    });
    CHECK(failures.empty());
    for (int i = 0; i < 20; ++i) {
      for (int t = 1; t < 4; ++t) {
        CHECK(seen[static_cast<std::size_t>(t * 20 + i)] == seen[static_cast<std::size_t>(i)]);
      }
      CHECK_THAT(seen[static_cast<std::size_t>(i)], Catch::StartsWith("thread "));
    }
    CHECK_THAT(bs::as_string(s.get("contract/cas-counter", soon())), Catch::StartsWith("80 "));
  }

  SECTION("bad input is invalid_argument: empty key, add on a non-integer value") {
    s.set("contract/not-a-number", bs::to_bytes("abc"));
    try {
      s.add("contract/not-a-number", 1);
      FAIL("add returned");
    } catch (const chorus::error& e) {
      CHECK(e.value() == chorus::errc::invalid_argument);
      CHECK_THAT(e.what(), Catch::Contains("contract/not-a-number"));
    }
    try {
      s.set("", bs::to_bytes("x"));
      FAIL("set returned");
    } catch (const chorus::error& e) {
      CHECK(e.value() == chorus::errc::invalid_argument);
    }
  }

  SECTION("all_gather_blob and barrier among thread ranks") {
    constexpr int n = 5;
    std::vector<std::vector<bs::bytes>> got(n);
    const auto failures = on_threads(n, [&](int rank) {
      auto mine = make();
      got[static_cast<std::size_t>(rank)] = bs::all_gather_blob(
          mine, "contract/ag", rank, n, bs::to_bytes("blob" + std::to_string(rank)), soon());
      bs::barrier(mine, "contract/b0", rank, n, soon());
      bs::barrier(mine, "contract/b1", rank, n, soon());
    });
    REQUIRE(failures.empty());
    for (int r = 0; r < n; ++r) {
      REQUIRE(got[static_cast<std::size_t>(r)].size() == n);
      for (int p = 0; p < n; ++p) {
        CHECK(bs::as_string(got[static_cast<std::size_t>(r)][static_cast<std::size_t>(p)]) ==
              "blob" + std::to_string(p));
      }
    }
  }

  SECTION("a barrier whose ranks never all arrive times out saying how many did") {
    try {
      bs::barrier(s, "contract/lonely", 0, 3, brief());
      FAIL("barrier returned");
    } catch (const chorus::error& e) {
      CHECK(e.value() == chorus::errc::timeout);
      CHECK_THAT(e.what(), Catch::Contains("1 of 3 ranks arrived"));
    }
  }
}

/// A loopback port with no listener: bound at the kernel's choice, then released.
inline std::uint16_t unused_port() {
  bs::detail::unique_fd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  ::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&a), &len);
  return ntohs(a.sin_port);
}

}  // namespace contract

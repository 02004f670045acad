// The store concept, memory_store, any_store, and the helpers built on the concept
// (all_gather_blob, barrier): the shared contract (store_contract.hpp) plus what is
// specific to each.
#include <chorus/bootstrap/memory_store.hpp>
#include <chorus/bootstrap/store.hpp>

#include <catch2/catch.hpp>

#include "bootstrap/store_contract.hpp"

#include <memory>
#include <string>
#include <vector>

namespace bs = chorus::bootstrap;
using contract::soon;

TEST_CASE("memory_store keeps the store contract (copies share the keys)") {
  bs::memory_store shared;
  contract::check_store_contract([&] { return shared; });
}

TEST_CASE("any_store keeps the store contract around any store") {
  bs::any_store shared{bs::memory_store{}};
  contract::check_store_contract([&] { return shared; });
}

TEST_CASE("any_store shares a store given by shared_ptr, and an empty one says so") {
  auto inner = std::make_shared<bs::memory_store>();
  bs::any_store a(inner);
  a.set("k", bs::to_bytes("v"));
  CHECK(bs::as_string(inner->get("k", soon())) == "v");
  bs::any_store copy = a;  // copies share
  CHECK(copy.add("n", 2) == 2);
  CHECK(a.add("n", 0) == 2);

  bs::any_store empty;
  CHECK_FALSE(static_cast<bool>(empty));
  try {
    empty.set("k", bs::to_bytes("v"));
    FAIL("set on an empty any_store returned");
  } catch (const chorus::error& e) {
    CHECK(e.value() == chorus::errc::invalid_argument);
    CHECK_THAT(e.what(), Catch::Contains("empty"));
  }
}

TEST_CASE("the helpers reject ranks outside the group") {
  bs::memory_store s;
  for (auto [rank, size] : {std::pair{-1, 2}, std::pair{2, 2}, std::pair{0, 0}}) {
    CHECK_THROWS_MATCHES(bs::all_gather_blob(s, "p", rank, size, bs::bytes{}, soon()),
                         chorus::error, Catch::Matchers::Predicate<chorus::error>([](auto& e) {
                           return e.value() == chorus::errc::invalid_argument;
                         }));
    CHECK_THROWS_AS(bs::barrier(s, "b", rank, size, soon()), chorus::error);
  }
}

TEST_CASE("all_gather_blob of one rank returns its own blob; its timeout names the missing rank") {
  bs::memory_store s;
  const auto one = bs::all_gather_blob(s, "solo", 0, 1, bs::to_bytes("me"), soon());
  REQUIRE(one.size() == 1);
  CHECK(bs::as_string(one[0]) == "me");
  try {
    (void)bs::all_gather_blob(s, "pair", 0, 2, bs::to_bytes("me"), contract::brief());
    FAIL("all_gather_blob returned");
  } catch (const chorus::error& e) {
    CHECK(e.value() == chorus::errc::timeout);
    CHECK_THAT(e.what(), Catch::Contains("rank 1's blob") && Catch::Contains("pair/1"));
  }
}

TEST_CASE("a barrier prefix serves one barrier; reusing it is reported") {
  bs::memory_store s;
  bs::barrier(s, "once", 0, 1, soon());
  try {
    bs::barrier(s, "once", 0, 1, soon());
    FAIL("second barrier returned");
  } catch (const chorus::error& e) {
    CHECK(e.value() == chorus::errc::invalid_argument);
    CHECK_THAT(e.what(), Catch::Contains("prefix of its own"));
  }
}

TEST_CASE("add reports overflow instead of wrapping") {
  bs::memory_store s;
  s.add("big", INT64_MAX);
  CHECK_THROWS_AS(s.add("big", 1), chorus::error);
  CHECK(s.add("big", 0) == INT64_MAX);
}

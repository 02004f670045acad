// chorus::reproducible between real processes over shared memory: 2000 random cases, each
// checked for bit equality with the same terms summed on one rank (the cases and the
// checks: tests/support/reproducible_cases.hpp; the in-process run and the hand-made cases:
// tests/collectives/reproducible_test.cpp).
#include "../support/processes.hpp"
#include "../support/reproducible_cases.hpp"

#include <catch2/catch.hpp>

TEST_CASE("reproducible: 2000 random cases (500 under ASan) give the one-rank bits over shm") {
  const std::string job = harness::unique_job("repro");
  harness::repro::property_over_processes(
      [&](int ranks, auto fn) {
        harness::process_options options;
        options.deadline = std::chrono::seconds(600);
        return harness::run_processes(ranks, job + "-" + std::to_string(ranks), fn, options);
      },
      harness::repro::case_count, true);
  CHECK(harness::shm_leftovers(job).empty());
}

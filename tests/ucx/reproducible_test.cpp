// chorus::reproducible between real processes over UCX: the same 2000 random cases as over
// shm and inproc (tests/support/reproducible_cases.hpp), each checked for bit equality with
// the same terms summed on one rank. Run under UCX_TLS=sm,self and tcp by CMake; the tcp run
// makes 500 (CHORUS_TEST_REPRO_CASES): what is under test is chorus's summation,
// which does not depend on the wire, and over tcp the 2000 took 43 s against 26 s over sm.
#include <chorus/transport/ucx.hpp>

#include "../support/processes.hpp"
#include "../support/reproducible_cases.hpp"

#include <catch2/catch.hpp>

#include <cstdlib>
#include <string>

TEST_CASE("reproducible: the random cases give the one-rank bits over UCX") {
  const char* limit = std::getenv("CHORUS_TEST_REPRO_CASES");
  const int cases = limit != nullptr ? std::stoi(limit) : harness::repro::case_count;
  INFO(cases << " cases");
  harness::repro::property_over_processes(
      [&](int ranks, auto fn) {
        harness::process_options options;
        options.deadline = std::chrono::seconds(600);
        return harness::run_processes_with(
            ranks,
            [](int rank, int size, const chorus::blob_exchange& exchange) {
              return chorus::ucx_transport(rank, size, exchange);
            },
            fn, options);
      },
      cases, true);
}

// chorus::reproducible between real processes over UCX: the same 2000 random cases as over
// shm and inproc (tests/support/reproducible_cases.hpp), each checked for bit equality with
// the same terms summed on one rank. Run under UCX_TLS=sm,self and tcp by CMake.
#include <chorus/transport/ucx.hpp>

#include "../support/processes.hpp"
#include "../support/reproducible_cases.hpp"

#include <catch2/catch.hpp>

TEST_CASE("reproducible: 2000 random cases (500 under ASan) give the one-rank bits over UCX") {
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
      harness::repro::case_count, true);
}

// all_reduce: every algorithm x element type x op x rank count x count, in and out of
// place, against the serial reference with exactly representable inputs.
#include "../support/checks.hpp"
#include "../support/sanitizers.hpp"

#include <cmath>
#include <cstring>
#include <utility>

using namespace harness;
using chorus::schedule::collective;

TEST_CASE("all_reduce: every algorithm, type and op on small counts") {
  for (int ranks : rank_counts) {
    failures f;
    run_ranks(ranks, [&](chorus::inproc_communicator& comm) {
      const auto counts = small_counts(ranks);
      for (const auto& a : dynamic_algos(collective::all_reduce)) {
        for_each_type<all_types>([&](auto t) {
          using T = decltype(t);
          for_each_op<T>([&](auto op, int op_index) {
            for (std::size_t c = 0; c < counts.size(); ++c) {
              check_all_reduce<T, decltype(op)>(comm, f, a, counts[c], (op_index + c) % 2 == 1);
            }
          });
        });
      }
    });
    INFO("ranks = " << ranks);
    REQUIRE(f.count() == 0);
    CHECK(f.report() == "0 failure(s)");
  }
}

TEST_CASE("all_reduce: 2^20+3 elements with default pipelining, every algorithm") {
  for (int ranks : rank_counts) {
    failures f;
    run_ranks(ranks, [&](chorus::inproc_communicator& comm) {
      for_each_algo<collective::all_reduce>([&](auto a) {
        check_all_reduce<float, chorus::plus>(comm, f, a, large_count, false);
        // Under AddressSanitizer float alone (the other types' kernels run on small counts
        // above; these two are most of its time there).
        if constexpr (!address_sanitizer) {
          check_all_reduce<std::int32_t, chorus::maximum>(comm, f, a, large_count, true);
          check_all_reduce<chorus::bfloat16, chorus::average>(comm, f, a, large_count, false);
        }
      });
    });
    INFO("ranks = " << ranks << "\n" << f.report());
    REQUIRE(f.count() == 0);
  }
}

TEST_CASE("all_reduce: a stateful user functor and a capturing lambda are honoured") {
  struct mod_sum {
    std::int64_t modulus;
    std::int64_t operator()(std::int64_t a, std::int64_t b) const { return (a + b) % modulus; }
  };
  failures f;
  run_ranks(5, [&](chorus::inproc_communicator& comm) {
    std::int64_t m = 7;  // not const: the lambda below must capture it (a functor state)
    std::vector<std::int64_t> v(100);
    for (std::size_t i = 0; i < v.size(); ++i) v[i] = static_cast<std::int64_t>(i) + comm.rank();
    auto w = v;
    chorus::all_reduce(comm, v, mod_sum{m}, chorus::algo::ring{.chunk_bytes = 64});
    chorus::all_reduce(
        comm, w, [m](std::int64_t a, std::int64_t b) { return (a + b) % m; },
        chorus::algo::tree{.chunk_bytes = 64});
    for (std::size_t i = 0; i < v.size(); ++i) {
      // sum over ranks of (i + r) = 5i + 10, reduced mod 7
      const std::int64_t want = (5 * static_cast<std::int64_t>(i) + 10) % m;
      if (v[i] != want || w[i] != want) {
        f.add("element " + std::to_string(i) + ": functor " + std::to_string(v[i]) + ", lambda " +
              std::to_string(w[i]) + ", expected " + std::to_string(want));
        break;
      }
    }
  });
  INFO(f.report());
  REQUIRE(f.count() == 0);
}

TEST_CASE("all_reduce: results are bitwise identical across runs and ranks") {
  // Random floats: the sum depends on the order of additions, so this checks that each
  // algorithm fixes the order (determinism) and that all ranks end with the same bits.
  for_each_type<all_algos>([&](auto a) {
    std::vector<std::vector<float>> results;
    for (int run = 0; run < 2; ++run) {
      std::vector<std::vector<float>> per_rank(6);
      run_ranks(6, [&](chorus::inproc_communicator& comm) {
        std::vector<float> v(1000);
        std::uint32_t x = 12345u + static_cast<std::uint32_t>(comm.rank()) * 7919u;
        for (auto& e : v) {
          x = x * 1664525u + 1013904223u;
          e = static_cast<float>(x >> 8) / 16777216.0f - 0.5f;
        }
        chorus::all_reduce(comm, v, chorus::plus{}, a);
        per_rank[static_cast<std::size_t>(comm.rank())] = v;
      });
      for (const auto& v : per_rank) {
        REQUIRE(std::memcmp(v.data(), per_rank[0].data(), v.size() * sizeof(float)) == 0);
      }
      results.push_back(per_rank[0]);
    }
    REQUIRE(std::memcmp(results[0].data(), results[1].data(), results[0].size() * 4) == 0);
  });
}

TEST_CASE("all_reduce: random half and bfloat16 inputs stay within the stated tolerance") {
  // Each binary step computes in float and rounds to the 16-bit type once (unit roundoff u:
  // 2^-11 for half, 2^-8 for bfloat16). Whatever the order, a sum over P ranks is then
  // within (P-1) * u * sum|x| + u * |exact| of the exact sum: the tolerance chorus states
  // for 16-bit reductions (docs/collectives.md).
  auto run = [](auto tag, double u) {
    using T = decltype(tag);
    for (int ranks : {2, 3, 5, 8, 16}) {
      for (const auto& a : dynamic_algos(collective::all_reduce)) {
        std::vector<std::vector<T>> inputs(static_cast<std::size_t>(ranks));
        std::vector<std::vector<T>> outputs(static_cast<std::size_t>(ranks));
        run_ranks(ranks, [&](chorus::inproc_communicator& comm) {
          const auto r = static_cast<std::size_t>(comm.rank());
          std::vector<T> v(257);
          std::uint32_t x = 99u + static_cast<std::uint32_t>(r) * 2654435761u;
          for (auto& e : v) {
            x = x * 1664525u + 1013904223u;
            e = T(static_cast<float>(static_cast<std::int32_t>(x) >> 8) / 65536.0f);
          }
          inputs[r] = v;
          chorus::all_reduce(comm, v, chorus::plus{}, a);
          outputs[r] = v;
        });
        for (std::size_t i = 0; i < 257; ++i) {
          double exact = 0, magnitude = 0;
          for (const auto& in : inputs) {
            exact += static_cast<double>(float(in[i]));
            magnitude += std::abs(static_cast<double>(float(in[i])));
          }
          const double bound = (ranks - 1) * u * magnitude + u * std::abs(exact);
          for (const auto& out : outputs) {
            const double got = static_cast<double>(float(out[i]));
            const std::string what = label<T, chorus::plus>("all_reduce", a, 257, true, ranks);
            INFO(what << " element " << i);
            REQUIRE(std::abs(got - exact) <= bound);
          }
        }
      }
    }
  };
  run(chorus::half{}, 1.0 / 2048);
  run(chorus::bfloat16{}, 1.0 / 256);
}

// communicator<nccl_transport>::split and subgroup (ncclCommSplit) on GPUs. Two ctest
// entries run this binary: nccl.groups ("[one]": one rank on one GPU -- a group of one,
// undefined colors, bad arguments, a group outliving its parent, aborts crossing between a
// group and its parent) and nccl.groups.multi ("[multi]": one rank per GPU as threads,
// since NCCL takes one rank per GPU -- even/odd groups and subgroups all-reducing exactly
// with NCCL's own and chorus's ring, aborts, a rank that never splits). Without a usable
// GPU, or with fewer than two for "[multi]", the binary says so and exits with 77, which
// ctest reports as skipped (never as passed).
#define CATCH_CONFIG_RUNNER
#include "nccl_collectives.hpp"
#include "support/device_vector.hpp"
#include "support/locked.hpp"

#include <chorus/device/runtime.hpp>
#include <chorus/group/split.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <exception>
#include <latch>
#include <limits>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace {

using chorus::schedule::collective;
using chorus_test::nccl_comm;
using device_floats = harness::device_vector<float>;

int device_count() {
  int n = 0;
  return cudaGetDeviceCount(&n) == cudaSuccess ? n : 0;
}

/// A sum all-reduce of `count` copies of `mine` on `comm` (native: NCCL's, else chorus's
/// ring), waited for; returns the result if every element has the same value, else NaN.
float sum_all_reduce(nccl_comm& comm, float mine, std::size_t count, bool native,
                     cudaStream_t stream) {
  device_floats in(count), out(count);
  in.upload(std::vector<float>(count, mine));
  out.poison();
  chorus_test::enqueue_collective(
      comm, collective::all_reduce, in.data(), out.data(), count, chorus::op_kind::sum,
      native ? std::nullopt : std::optional(chorus::schedule::algorithm::ring), native, 0, stream);
  comm.transport().synchronize(stream, comm.make_deadline());
  const std::vector<float> v = out.download();
  for (float x : v) {
    if (x != v[0]) return std::numeric_limits<float>::quiet_NaN();
  }
  return v.empty() ? 0.0f : v[0];
}

nccl_comm one_rank() {
  auto exchange = [](const std::string& mine) { return std::vector<std::string>{mine}; };
  return nccl_comm(chorus::nccl_transport(0, 1, exchange, std::chrono::seconds(60)));
}

/// Runs `fn(comm, stream)` on `p` threads, thread r on GPU r with its own stream, over one
/// NCCL communicator; rethrows the first exception after all have finished.
template <class Fn>
void run(int p, Fn fn) {
  std::vector<std::string> blobs(static_cast<std::size_t>(p));
  std::latch published(p);
  std::mutex first_mutex;
  std::exception_ptr first;
  std::vector<std::thread> threads;
  for (int r = 0; r < p; ++r) {
    threads.emplace_back([&, r] {
      try {
        chorus::device::check(cudaSetDevice(r), "cudaSetDevice");
        auto exchange = [&](const std::string& mine) {
          blobs[static_cast<std::size_t>(r)] = mine;
          published.arrive_and_wait();
          return blobs;
        };
        chorus::communicator_options options;
        options.timeout = std::chrono::seconds(60);
        nccl_comm comm(chorus::nccl_transport(r, p, exchange, std::chrono::seconds(60)), options);
        cudaStream_t stream = nullptr;
        chorus::device::check(cudaStreamCreate(&stream), "cudaStreamCreate");
        try {
          fn(comm, stream);
        } catch (...) {
          cudaStreamDestroy(stream);
          throw;
        }
        cudaStreamDestroy(stream);
      } catch (...) {
        std::lock_guard lock(first_mutex);
        if (!first) first = std::current_exception();
      }
    });
  }
  for (auto& t : threads) t.join();
  if (first) std::rethrow_exception(first);
}

int multi_ranks() { return std::min(device_count(), 8); }

// ---- one rank on one GPU

TEST_CASE("nccl groups: a group of one, undefined colors and subgroups on one rank", "[one]") {
  nccl_comm comm = one_rank();
  cudaStream_t stream = nullptr;
  chorus::device::check(cudaStreamCreate(&stream), "cudaStreamCreate");
  auto g = comm.split(0, 0);
  REQUIRE(g.has_value());
  CHECK(g->size() == 1);
  CHECK(g->rank() == 0);
  CHECK(g->world_rank() == 0);
  CHECK(g->transport().native_handle() != comm.transport().native_handle());
  for (bool native : {true, false}) {
    CHECK(sum_all_reduce(*g, 3.0f, 1000, native, stream) == 3.0f);
  }
  CHECK_FALSE(comm.split(chorus::undefined).has_value());
  const int list[] = {0};
  auto s = comm.subgroup(list);
  REQUIRE(s.has_value());
  CHECK(s->size() == 1);
  auto gg = g->split(5, 7);  // a group of a group
  REQUIRE(gg.has_value());
  CHECK(sum_all_reduce(*gg, 2.0f, 1 << 20, true, stream) == 2.0f);
  CHECK(sum_all_reduce(comm, 1.0f, 1000, true, stream) == 1.0f);
  cudaStreamDestroy(stream);
}

TEST_CASE("nccl groups: bad arguments are invalid_argument before NCCL is called", "[one]") {
  nccl_comm comm = one_rank();
  cudaStream_t stream = nullptr;
  chorus::device::check(cudaStreamCreate(&stream), "cudaStreamCreate");
  const std::vector<std::vector<int>> bad{{}, {1}, {-1}, {0, 0}};
  for (const auto& list : bad) {
    CHECK_THROWS_MATCHES(comm.subgroup(list), chorus::error,
                         Catch::Predicate<chorus::error>([](const chorus::error& e) {
                           return e.value() == chorus::errc::invalid_argument &&
                                  std::string(e.what()).find("subgroup") != std::string::npos;
                         }));
  }
  CHECK_THROWS_MATCHES(comm.split(-3), chorus::error,
                       Catch::Predicate<chorus::error>([](const chorus::error& e) {
                         return e.value() == chorus::errc::invalid_argument;
                       }));
  CHECK_FALSE(comm.poisoned());
  CHECK(sum_all_reduce(comm, 1.0f, 1000, false, stream) == 1.0f);
  cudaStreamDestroy(stream);
}

TEST_CASE("nccl groups: a group outlives its parent", "[one]") {
  cudaStream_t stream = nullptr;
  chorus::device::check(cudaStreamCreate(&stream), "cudaStreamCreate");
  std::optional<nccl_comm> g;
  {
    nccl_comm comm = one_rank();
    auto made = comm.split(0);
    REQUIRE(made.has_value());
    g.emplace(std::move(*made));  // communicators move, never assign
  }
  REQUIRE(g.has_value());
  CHECK(sum_all_reduce(*g, 4.0f, 1000, true, stream) == 4.0f);
  cudaStreamDestroy(stream);
}

TEST_CASE("nccl groups: an abort of the parent fails its groups, and a group's its parent",
          "[one]") {
  cudaStream_t stream = nullptr;
  chorus::device::check(cudaStreamCreate(&stream), "cudaStreamCreate");
  for (bool parent_aborts : {true, false}) {
    nccl_comm comm = one_rank();
    auto g = comm.split(0);
    REQUIRE(g.has_value());
    auto sibling = comm.split(1);
    REQUIRE(sibling.has_value());
    if (parent_aborts) {
      comm.abort("the test aborted the parent");
    } else {
      g->abort("the test aborted a group");
    }
    for (nccl_comm* other : {&comm, &*g, &*sibling}) {
      try {
        (void)sum_all_reduce(*other, 1.0f, 1000, true, stream);
        FAIL("a collective ran after an abort in its family");
      } catch (const chorus::error& e) {
        CHECK(e.value() == chorus::errc::aborted);
        CHECK_THAT(e.what(), Catch::Contains("the test aborted"));
      }
      CHECK(other->poisoned());
    }
    CHECK_THROWS_AS(comm.split(0), chorus::error);  // an aborted family splits no more
  }
  cudaStreamDestroy(stream);
}

// ---- one rank per GPU, several GPUs

TEST_CASE("nccl groups: even and odd ranks all-reduce exactly in their groups", "[multi]") {
  const int p = multi_ranks();
  run(p, [&](nccl_comm& comm, cudaStream_t stream) {
    const int me = comm.rank();
    for (bool reversed : {false, true}) {
      auto half = comm.split(me % 2, reversed ? -me : me);
      LOCKED(REQUIRE(half.has_value()));
      const int members = (p + 1 - me % 2) / 2;
      const int last = me % 2 + 2 * (members - 1);
      LOCKED(CHECK(half->size() == members));
      LOCKED(CHECK(half->rank() == (reversed ? (last - me) / 2 : me / 2)));
      LOCKED(CHECK(half->world_rank() == me));
      float expected = 0;
      for (int r = me % 2; r < p; r += 2) expected += static_cast<float>(r + 1);
      for (bool native : {true, false}) {
        for (std::size_t count : {std::size_t{1000}, (std::size_t{1} << 20) + 3}) {
          const float got =
              sum_all_reduce(*half, static_cast<float>(me + 1), count, native, stream);
          LOCKED(CHECK(got == expected));
        }
      }
    }
    const float world = sum_all_reduce(comm, 1.0f, 1000, true, stream);
    LOCKED(CHECK(world == static_cast<float>(p)));
  });
}

TEST_CASE("nccl groups: subgroups, undefined colors and bad lists on several GPUs", "[multi]") {
  const int p = multi_ranks();
  run(p, [&](nccl_comm& comm, cudaStream_t stream) {
    const int me = comm.rank();
    const std::vector<int> list{p - 1, 0};  // list order, not rank order
    auto g = comm.subgroup(list);
    if (me == 0 || me == p - 1) {
      LOCKED(REQUIRE(g.has_value()));
      LOCKED(CHECK(g->size() == 2));
      LOCKED(CHECK(g->rank() == (me == p - 1 ? 0 : 1)));
      const float got = sum_all_reduce(*g, static_cast<float>(me + 1), 1000, false, stream);
      LOCKED(CHECK(got == static_cast<float>(p + 1)));
    } else {
      LOCKED(CHECK_FALSE(g.has_value()));
    }
    auto rest = comm.split(me == 0 ? chorus::undefined : 0, 0);
    LOCKED(CHECK(rest.has_value() == (me != 0)));
    if (rest) {
      LOCKED(CHECK(rest->size() == p - 1));
      LOCKED(CHECK(rest->rank() == me - 1));
      const float got = sum_all_reduce(*rest, 1.0f, 1000, true, stream);
      LOCKED(CHECK(got == static_cast<float>(p - 1)));
    }
    const std::vector<int> twice{0, 0};
    try {
      (void)comm.subgroup(twice);
      LOCKED(FAIL("a list naming rank 0 twice was accepted"));
    } catch (const chorus::error& e) {
      LOCKED(CHECK(e.value() == chorus::errc::invalid_argument));
      LOCKED(CHECK_THAT(e.what(), Catch::Contains("listed twice")));
    }
    const float world = sum_all_reduce(comm, 1.0f, 1000, false, stream);
    LOCKED(CHECK(world == static_cast<float>(p)));
  });
}

TEST_CASE("nccl groups: aborts cross between the parent and its groups on every rank", "[multi]") {
  const int p = multi_ranks();
  for (bool parent_aborts : {true, false}) {
    run(p, [&](nccl_comm& comm, cudaStream_t stream) {
      auto half = comm.split(comm.rank() % 2);
      LOCKED(REQUIRE(half.has_value()));
      // Every rank aborts, so that no rank waits on an aborted peer.
      if (parent_aborts) {
        comm.abort("the test aborted the parent");
      } else {
        half->abort("the test aborted a group");
      }
      nccl_comm& other = parent_aborts ? *half : comm;
      try {
        (void)sum_all_reduce(other, 1.0f, 1000, true, stream);
        LOCKED(FAIL("a collective ran after an abort in its family"));
      } catch (const chorus::error& e) {
        LOCKED(CHECK(e.value() == chorus::errc::aborted));
        LOCKED(CHECK_THAT(e.what(), Catch::Contains("the test aborted")));
      }
      LOCKED(CHECK(other.poisoned()));
    });
  }
}

TEST_CASE("nccl groups: a rank that never splits fails the others with a timeout", "[multi]") {
  const int p = multi_ranks();
  std::latch others_done(p - 1);
  const auto start = std::chrono::steady_clock::now();
  run(p, [&](nccl_comm& comm, cudaStream_t) {
    if (comm.rank() == 0) {
      others_done.wait();  // never splits; then leaves as the others did
      comm.abort("rank 0 leaves after the others timed out");
      return;
    }
    comm.set_timeout(std::chrono::seconds(5));
    try {
      (void)comm.split(0);
      LOCKED(FAIL("a split completed without rank 0"));
    } catch (const chorus::error& e) {
      LOCKED(CHECK(e.value() == chorus::errc::timeout));
      LOCKED(CHECK_THAT(e.what(), Catch::Contains("ncclCommSplit") &&
                                      Catch::Contains("every rank of the communicator must call "
                                                      "split or subgroup")));
    }
    LOCKED(CHECK(comm.poisoned()));
    others_done.count_down();
  });
  CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(60));
}

}  // namespace

int main(int argc, char** argv) {
  const std::string why = chorus::device::unavailable_reason();
  if (!why.empty()) {
    std::printf("no CUDA device: %s; the NCCL group tests were not run\n", why.c_str());
    return 77;  // ctest: SKIP_RETURN_CODE
  }
  for (int i = 1; i < argc; ++i) {
    if (std::string(argv[i]) == "[multi]" && device_count() < 2) {
      std::printf(
          "%d CUDA device(s): the NCCL group tests across GPUs need two or more (NCCL "
          "takes one rank per GPU); not run\n",
          device_count());
      return 77;
    }
  }
  return Catch::Session().run(argc, argv);
}

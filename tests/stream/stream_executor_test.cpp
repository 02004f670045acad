// The stream-ordered path (exec/stream_executor.hpp) on a fake stream-ordered transport:
// every collective NCCL has, through every algorithm, on host memory; what the executor
// enqueues (groups only, scratch returned, nothing after an error); algo::native routing.
// The property the executor relies on -- every schedule lists each pair's messages in the
// same order on both sides, so NCCL's tag-less positional matching pairs them as tags
// would -- is checked by the schedule simulator for every sweep case (tests/schedule); the
// fake transport here matches by position too, so a violation would also show as wrong
// results or sizes.
#include "fake_stream.hpp"
#include "support/harness.hpp"
#include "support/locked.hpp"

#include <chorus/chorus.hpp>

#include <catch2/catch.hpp>

#include <latch>
#include <mutex>
#include <tuple>
#include <vector>

namespace {

using chorus::schedule::collective;
using harness::failures;

// ---- results through every algorithm

using harness::input_kind;
using harness::input_value;

template <class T, class Op>
void check_reducing(int p, std::size_t count, failures& f) {
  harness::for_each_algo<collective::all_reduce>([&](auto algo) {
    const auto a = harness::small_pieces<decltype(algo)>();
    fake::run(p, [&](auto& comm, fake::stream& s) {
      const Op op{};
      const input_kind k = harness::input_for<Op>();
      const int r = comm.rank();
      std::vector<T> in(count), out(count, harness::poison<T>());
      for (std::size_t i = 0; i < count; ++i) in[i] = input_value<T>(k, r, i);
      const harness::reference<T, Op> want(op, k, p, count);
      const std::string what = harness::label<T, Op>("stream all_reduce", a, count, false, r);
      chorus::all_reduce(comm, std::as_const(in), out, op, &s, a);
      harness::expect_all<T>(f, what, out, want);
      chorus::all_reduce(comm, in, op, &s, a);  // in place
      harness::expect_all<T>(f, what + " in place", in, want);
      if (comm.transport().outside_group != 0) f.add(what + ": enqueued outside a group");
      if (comm.transport().live_allocations != 0) f.add(what + ": scratch not returned");
    });
  });
  harness::for_each_algo<collective::reduce>([&](auto algo) {
    const auto a = harness::small_pieces<decltype(algo)>();
    fake::run(p, [&](auto& comm, fake::stream& s) {
      const Op op{};
      const input_kind k = harness::input_for<Op>();
      const int r = comm.rank();
      const int root = p - 1;
      std::vector<T> in(count), out(count, harness::poison<T>());
      for (std::size_t i = 0; i < count; ++i) in[i] = input_value<T>(k, r, i);
      chorus::reduce(comm, std::as_const(in), out, op, root, &s, a);
      if (r == root) {
        harness::expect_all<T>(f, harness::label<T, Op>("stream reduce", a, count, false, r), out,
                               harness::reference<T, Op>(op, k, p, count));
      }
    });
  });
  harness::for_each_algo<collective::reduce_scatter>([&](auto algo) {
    const auto a = harness::small_pieces<decltype(algo)>();
    fake::run(p, [&](auto& comm, fake::stream& s) {
      const Op op{};
      const input_kind k = harness::input_for<Op>();
      const int r = comm.rank();
      const std::size_t total = count * static_cast<std::size_t>(p);
      std::vector<T> in(total), out(count, harness::poison<T>());
      for (std::size_t i = 0; i < total; ++i) in[i] = input_value<T>(k, r, i);
      chorus::reduce_scatter(comm, std::as_const(in), out, op, &s, a);
      const harness::reference<T, Op> want(op, k, p, total);
      harness::expect_all<T>(
          f, harness::label<T, Op>("stream reduce_scatter", a, count, false, r), out,
          [&](std::size_t i) { return want(count * static_cast<std::size_t>(r) + i); });
    });
  });
}

template <class T>
void check_moving(int p, std::size_t count, failures& f) {
  harness::for_each_algo<collective::all_gather>([&](auto algo) {
    const auto a = harness::small_pieces<decltype(algo)>();
    fake::run(p, [&](auto& comm, fake::stream& s) {
      const int r = comm.rank();
      std::vector<T> in(count), out(count * static_cast<std::size_t>(p), harness::poison<T>());
      for (std::size_t i = 0; i < count; ++i) in[i] = input_value<T>(input_kind::sum, r, i);
      chorus::all_gather(comm, std::as_const(in), out, &s, a);
      harness::expect_all<T>(
          f, harness::label<T, chorus::plus>("stream all_gather", a, count, false, r), out,
          [&](std::size_t i) {
            return input_value<T>(input_kind::sum, static_cast<int>(i / count), i % count);
          });
    });
  });
  harness::for_each_algo<collective::broadcast>([&](auto algo) {
    const auto a = harness::small_pieces<decltype(algo)>();
    fake::run(p, [&](auto& comm, fake::stream& s) {
      const int r = comm.rank();
      const int root = p / 2;
      std::vector<T> buf(count, harness::poison<T>());
      if (r == root) {
        for (std::size_t i = 0; i < count; ++i) buf[i] = input_value<T>(input_kind::sum, root, i);
      }
      chorus::broadcast(comm, buf, root, &s, a);  // in place
      harness::expect_all<T>(
          f, harness::label<T, chorus::plus>("stream broadcast", a, count, true, r), buf,
          [&](std::size_t i) { return input_value<T>(input_kind::sum, root, i); });
    });
  });
}

TEST_CASE("stream: every NCCL collective through every algorithm on the fake stream transport",
          "[stream]") {
  failures f;
  for (int p : {1, 2, 3, 4, 5, 8}) {
    for (std::size_t count : {std::size_t{0}, std::size_t{1}, std::size_t{13}, std::size_t{1000}}) {
      check_reducing<float, chorus::plus>(p, count, f);
      check_reducing<std::int32_t, chorus::maximum>(p, count, f);
      check_reducing<double, chorus::average>(p, count, f);
      check_reducing<chorus::bfloat16, chorus::plus>(p, count, f);
      check_reducing<std::int64_t, harness::custom_max>(p, count, f);
      check_moving<std::uint8_t>(p, count, f);
      check_moving<double>(p, count, f);
    }
  }
  INFO(f.report());
  CHECK(f.count() == 0);
}

// ---- what is enqueued

TEST_CASE("stream: a ring all-reduce enqueues groups, reductions and the average's finalize",
          "[stream]") {
  constexpr int p = 4;
  constexpr std::size_t count = 4096;
  fake::run(p, [&](auto& comm, fake::stream& s) {
    std::vector<double> v(count, 1.0 + comm.rank());
    chorus::all_reduce(comm, v, chorus::average{}, &s, chorus::algo::ring{});
    LOCKED(CHECK(v[0] == 2.5));
    LOCKED(CHECK(v[count - 1] == 2.5));
    // Ring at P = 4, no pipelining (32 KiB < 1 MiB pieces): 3 reduce-scatter steps, each
    // with one reduction, then 3 all-gather steps; one finalize at the end.
    LOCKED(CHECK(s.count("reduce") == 3));
    LOCKED(CHECK(s.count("finalize") == 1));
    LOCKED(CHECK(s.count("send") == 6));
    LOCKED(CHECK(s.count("recv") == 6));
    LOCKED(CHECK(comm.transport().groups == 6));
    LOCKED(CHECK(s.log.front() == "allocate"));
    LOCKED(CHECK(s.log.back() == "finalize"));
    LOCKED(CHECK(comm.transport().live_allocations == 0));
    LOCKED(CHECK(comm.transport().outside_group == 0));
  });
}

TEST_CASE("stream: algo::native reaches the transport's own collective", "[stream]") {
  fake::run<fake::native_transport>(2, [&](auto& comm, fake::stream& s) {
    std::vector<float> v(8, 1.0f);
    std::vector<float> all(16);
    chorus::all_reduce(comm, v, chorus::plus{}, &s, chorus::algo::native{});
    LOCKED(CHECK(comm.transport().last_native == collective::all_reduce));
    chorus::all_gather(comm, std::as_const(v), all, &s, chorus::algo::native{});
    LOCKED(CHECK(comm.transport().last_native == collective::all_gather));
    LOCKED(CHECK(comm.transport().natives == 2));
    LOCKED(CHECK(s.count("send") == 0));  // no schedule ran
    LOCKED(CHECK(s.count("native") == 2));
    // Without the tag, the same transport runs chorus's schedules.
    chorus::all_reduce(comm, v, chorus::plus{}, &s);
    LOCKED(CHECK(comm.transport().natives == 2));
    LOCKED(CHECK(v[0] == 2.0f));  // the fake's native leaves data alone; the schedule sums
  });
}

// ---- errors

TEST_CASE("stream: an abort fails the peers' next collective and poisons the communicator",
          "[stream]") {
  std::latch first_done(3);
  fake::run(3, [&](auto& comm, fake::stream& s) {
    std::vector<float> v(100, 1.0f);
    chorus::all_reduce(comm, v, chorus::plus{}, &s);
    LOCKED(CHECK(v[0] == 3.0f));
    first_done.arrive_and_wait();  // no rank may see the abort inside the first call
    if (comm.rank() == 1) comm.abort("rank 1 gave up");
    // Every rank sees the abort: rank 1 at once, the others no later than their receive.
    try {
      chorus::all_reduce(comm, v, chorus::plus{}, &s, chorus::algo::ring{});
      throw std::logic_error("the all-reduce after an abort returned");
    } catch (const chorus::error& e) {
      LOCKED(CHECK(e.value() == chorus::errc::aborted));
      LOCKED(CHECK_THAT(e.what(),
                        Catch::Contains("all_reduce #2") && Catch::Contains("rank 1 gave up")));
    }
    LOCKED(CHECK(comm.poisoned()));
    LOCKED(CHECK_THROWS_AS(chorus::all_reduce(comm, v, chorus::plus{}, &s), chorus::error));
    LOCKED(CHECK(comm.transport().live_allocations == 0));
  });
}

TEST_CASE("stream: ranks that disagree on the count fail with mismatch, not a hang", "[stream]") {
  CHECK_THROWS_WITH(fake::run(2,
                              [&](auto& comm, fake::stream& s) {
                                std::vector<float> v(comm.rank() == 0 ? 100 : 60, 1.0f);
                                chorus::all_reduce(comm, v, chorus::plus{}, &s,
                                                   chorus::algo::direct{});
                              }),
                    Catch::Contains("chorus: rank") && Catch::Contains("all_reduce #1"));
}

}  // namespace

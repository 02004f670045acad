// The stream-ordered path (exec/stream_executor.hpp) on a fake stream-ordered transport:
// every collective NCCL has, through every algorithm, on host memory; what the executor
// enqueues (groups only, scratch returned, nothing after an error, one reduction launch per
// run of contiguous pieces, each staged at its destination's alignment, on the transport's
// device, no pieces by default); the deadlines it hands the transport; a group closed when
// enqueuing fails inside it; algo::native routing; the fake's own rendezvous rule.
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

#include <chrono>
#include <cstdint>
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

/// The address of `p` modulo 16: where the reduction kernels' 16-byte vectors start.
std::uintptr_t mod16(const void* p) { return reinterpret_cast<std::uintptr_t>(p) % 16; }

/// Checks the reductions enqueued on `s`: each ran on the transport's device, and its
/// staged operand agrees with its destination modulo 16 wherever the local operand does
/// (where it does not, no placement of the staged piece gives the kernels' vector path).
template <class Comm>
void check_reductions(failures& f, const std::string& what, const fake::stream& s, Comm& comm) {
  for (const fake::reduction& r : s.reductions) {
    if (r.device != comm.transport().device) {
      f.add(what + ": a reduction ran on device " + std::to_string(r.device) + ", not on " +
            std::to_string(comm.transport().device));
      return;
    }
    if (mod16(r.dst) == mod16(r.a) && mod16(r.b) != mod16(r.dst)) {
      f.add(what + ": a staged piece is at " + std::to_string(mod16(r.b)) +
            " modulo 16, its destination at " + std::to_string(mod16(r.dst)));
      return;
    }
  }
}

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
      check_reductions(f, what, s, comm);
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
      check_reductions(f, harness::label<T, Op>("stream reduce", a, count, false, r), s, comm);
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
      check_reductions(f, harness::label<T, Op>("stream reduce_scatter", a, count, false, r), s,
                       comm);
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
    comm.set_timeout(std::chrono::seconds(7));
    const auto before = std::chrono::steady_clock::now();
    chorus::all_reduce(comm, v, chorus::plus{}, &s, chorus::algo::native{});
    // The transport may wait for NCCL to take the call: as long as the communicator's
    // timeout, no more, no less.
    const auto until = comm.transport().last_deadline.at;
    LOCKED(CHECK(until >= before + std::chrono::seconds(7)));
    LOCKED(CHECK(until <= std::chrono::steady_clock::now() + std::chrono::seconds(7)));
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

// ---- the shape of what is enqueued on a stream

TEST_CASE("stream: contiguous pieces of a step reduce in one launch", "[stream]") {
  // Ring all-reduce at P = 8 in 64-byte pieces: every reduce-scatter step receives its
  // block in many pieces, contiguous in the output, the input and (staged one after
  // another) in staging, so each step is one launch: 7 in all, however many pieces.
  constexpr int p = 8;
  constexpr std::size_t count = 8 * 1000;
  fake::run(p, [&](auto& comm, fake::stream& s) {
    std::vector<float> in(count, 1.0f), out(count);
    chorus::all_reduce(comm, std::as_const(in), out, chorus::plus{}, &s,
                       chorus::algo::ring{.chunk_bytes = 64});
    LOCKED(CHECK(out.front() == 8.0f));
    LOCKED(CHECK(out.back() == 8.0f));
    LOCKED(CHECK(s.count("recv") > 7 * 10));  // the pieces are there...
    LOCKED(CHECK(s.count("reduce") == 7));    // ...and reduce in one launch per step
  });
}

TEST_CASE("stream: staged pieces keep their destination's alignment", "[stream]") {
  // Ring all-reduce at P = 3 of 1000 floats: blocks start at elements 0, 334 and 667,
  // i.e. at 0, 8 and 12 bytes modulo 16; every piece's staged copy must agree.
  fake::run(3, [&](auto& comm, fake::stream& s) {
    std::vector<float> in(1000, 2.0f), out(1000);
    chorus::all_reduce(comm, std::as_const(in), out, chorus::plus{}, &s, chorus::algo::ring{});
    LOCKED(CHECK(out[500] == 6.0f));
    LOCKED(REQUIRE(s.reductions.size() == 2));
    for (const fake::reduction& r : s.reductions) {
      LOCKED(CHECK(mod16(r.dst) == mod16(r.a)));
      LOCKED(CHECK(mod16(r.b) == mod16(r.dst)));
    }
  });
}

TEST_CASE("stream: no pieces by default on a stream; a tree at most 16", "[stream]") {
  using chorus::detail::default_chunk_bytes;
  using chorus::schedule::algorithm;
  constexpr std::size_t gib = std::size_t{1} << 30;
  CHECK(default_chunk_bytes(algorithm::ring, false, gib) == chorus::algo::ring::host_chunk_bytes);
  CHECK(default_chunk_bytes(algorithm::ring, true, gib) == 0);
  CHECK(default_chunk_bytes(algorithm::hierarchical, true, gib) == 0);
  CHECK(default_chunk_bytes(algorithm::tree, false, gib) == chorus::algo::tree::host_chunk_bytes);
  CHECK(default_chunk_bytes(algorithm::tree, true, gib) == gib / 16);
  CHECK(default_chunk_bytes(algorithm::double_binary_tree, true, gib) == gib / 16);
  CHECK(default_chunk_bytes(algorithm::tree, true, 1000) == chorus::algo::tree::host_chunk_bytes);

  // A ring all-reduce at P = 3 whose 2 MiB blocks a host transport would cut in two: one
  // message per step on the stream, with the tag's default and with automatic.
  constexpr std::size_t count = 3 * (std::size_t{512} << 10);
  fake::run(3, [&](auto& comm, fake::stream& s) {
    std::vector<float> v(count, 1.0f);
    chorus::all_reduce(comm, v, chorus::plus{}, &s, chorus::algo::ring{});
    LOCKED(CHECK(v[count - 1] == 3.0f));
    LOCKED(CHECK(s.count("send") == 4));
    LOCKED(CHECK(s.count("reduce") == 2));
    LOCKED(CHECK(comm.transport().groups == 4));
    // An explicit piece is still honoured.
    chorus::all_reduce(comm, v, chorus::plus{}, &s, chorus::algo::ring{.chunk_bytes = 1 << 20});
    LOCKED(CHECK(s.count("send") == 4 + 8));
  });
}

TEST_CASE("stream: collectives run on the transport's device", "[stream]") {
  fake::run(2, [&](auto& comm, fake::stream& s) {
    fake::current_device = 99;  // the thread has another device selected
    std::vector<double> v(100, 1.0);
    chorus::all_reduce(comm, v, chorus::plus{}, &s, chorus::algo::ring{});
    LOCKED(REQUIRE_FALSE(s.reductions.empty()));
    for (const fake::reduction& r : s.reductions) {
      LOCKED(CHECK(r.device == comm.rank() + 1));
    }
    LOCKED(CHECK(fake::current_device == 99));  // and gets it back
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

TEST_CASE("stream: a group waits for a late peer as long as the communicator's timeout",
          "[stream]") {
  const auto start = std::chrono::steady_clock::now();
  std::string error;
  fake::run(2, [&](auto& comm, fake::stream& s) {
    if (comm.rank() == 1) return;  // never calls the collective
    comm.set_timeout(std::chrono::milliseconds(300));
    std::vector<float> v(100, 1.0f);
    try {
      chorus::all_reduce(comm, v, chorus::plus{}, &s, chorus::algo::ring{});
    } catch (const chorus::error& e) {
      LOCKED(CHECK(e.value() == chorus::errc::timeout));
      error = e.what();
    }
  });
  CHECK_THAT(error, Catch::Contains("no message arrived"));
  // The fake's group_end waits as long as the deadline it is given: the communicator's.
  CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(5));
}

TEST_CASE("stream: a failure while enqueuing a group closes the group", "[stream]") {
  fake::run(2, [&](auto& comm, fake::stream& s) {
    if (comm.rank() == 0) comm.transport().fail_at_enqueue = 2;  // inside the first group
    std::vector<float> v(1000, 1.0f);
    try {
      chorus::all_reduce(comm, v, chorus::plus{}, &s, chorus::algo::ring{});
      LOCKED(FAIL("the all-reduce returned"));
    } catch (const chorus::error& e) {
      LOCKED(CHECK_THAT(e.what(), Catch::Contains(comm.rank() == 0 ? "fake: enqueue #2 failed"
                                                                   : "fake: enqueue #2")));
    }
    LOCKED(CHECK_FALSE(comm.transport().in_group()));
    LOCKED(CHECK(comm.transport().cancelled == (comm.rank() == 0 ? 1 : 0)));
    LOCKED(CHECK(comm.transport().live_allocations == 0));
  });
}

TEST_CASE("stream: the fake's sends complete only once received (rendezvous)", "[stream]") {
  auto g = std::make_shared<fake::group<fake::host_memory>>(2);
  fake::transport sender(g, 0);  // rank 1 never receives
  fake::stream s;
  std::vector<std::byte> bytes(8);
  sender.group_start();
  sender.enqueue_send(1, bytes, &s);
  CHECK_THROWS_MATCHES(sender.group_end(chorus::deadline::after(std::chrono::milliseconds(100))),
                       chorus::error, Catch::Predicate<chorus::error>([](const chorus::error& e) {
                         return e.value() == chorus::errc::timeout &&
                                std::string(e.what()).find("never received") != std::string::npos;
                       }));
}

TEST_CASE("stream: the fake never reads a send whose sender left the aborted group", "[stream]") {
  // Found by ASan in the abort test above: a rank took a message its peer had posted before
  // the abort, after that peer had left the group and freed the buffer.
  auto g = std::make_shared<fake::group<fake::host_memory>>(2);
  fake::transport sender(g, 0);
  fake::transport receiver(g, 1);
  fake::stream s;
  {
    std::vector<std::byte> bytes(8, std::byte{7});
    sender.group_start();
    sender.enqueue_send(1, bytes, &s);
    CHECK_THROWS_AS(sender.group_end(chorus::deadline::after(std::chrono::milliseconds(50))),
                    chorus::error);
  }  // the sender's buffer is gone; its message was posted before the group aborted
  std::vector<std::byte> got(8);
  receiver.group_start();
  receiver.enqueue_recv(0, got, &s);
  CHECK_THROWS_MATCHES(receiver.group_end(chorus::deadline::after(std::chrono::milliseconds(50))),
                       chorus::error, Catch::Predicate<chorus::error>([](const chorus::error& e) {
                         return e.value() == chorus::errc::aborted;
                       }));
  CHECK(got == std::vector<std::byte>(8));
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

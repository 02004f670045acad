// communicator::split and subgroup on a stream-ordered transport that splits natively
// (native_split_transport: NCCL's ncclCommSplit), on the fake stream transport: the path of
// group/split.hpp that nccl_transport takes, run on host memory without a GPU. Groups
// ordered by key then rank, collectives on them exact, undefined colors, arguments checked
// before the transport is called, different subgroup lists caught, aborts crossing between
// a group and its parent, and a rank that never splits failing the others with a timeout.
#include "fake_stream.hpp"
#include "support/locked.hpp"

#include <chorus/chorus.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <latch>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace {

using fake_comm = chorus::communicator<fake::transport>;

static_assert(chorus::native_split_transport<fake::transport>);
static_assert(!chorus::splittable_transport<fake::transport>);

float sum_all_reduce(fake_comm& comm, fake::stream& s, float mine) {
  std::vector<float> v(1000, mine);
  chorus::all_reduce(comm, v, chorus::plus{}, &s, chorus::algo::ring{});
  for (float x : v) {
    if (x != v[0]) throw std::logic_error("all-reduce results differ along the vector");
  }
  return v[0];
}

TEST_CASE("stream groups: even and odd ranks split, ordered by key, all-reduce exactly",
          "[stream][group]") {
  for (int p : {2, 4, 5}) {
    fake::run(p, [&](fake_comm& comm, fake::stream& s) {
      // Keys reverse the order: group rank 0 is the highest world rank of the color.
      auto half = comm.split(comm.rank() % 2, -comm.rank());
      LOCKED(REQUIRE(half.has_value()));
      const int members = (p + 1 - comm.rank() % 2) / 2;
      LOCKED(CHECK(half->size() == members));
      const int last = comm.rank() % 2 + 2 * (members - 1);  // highest world rank of the color
      LOCKED(CHECK(half->rank() == (last - comm.rank()) / 2));
      LOCKED(CHECK(half->world_rank() == comm.rank()));
      // Sum of world ranks + 1 of the color.
      float expected = 0;
      for (int r = comm.rank() % 2; r < p; r += 2) expected += static_cast<float>(r + 1);
      const float got = sum_all_reduce(*half, s, static_cast<float>(comm.rank() + 1));
      LOCKED(CHECK(got == expected));
      // The parent still works, and a group splits again.
      {
        const float got_sum = sum_all_reduce(comm, s, 1.0f);
        LOCKED(CHECK(got_sum == static_cast<float>(p)));
      }
      auto again = half->split(0, 0);
      LOCKED(REQUIRE(again.has_value()));
      LOCKED(CHECK(again->size() == half->size()));
      {
        const float got_sum = sum_all_reduce(*again, s, 2.0f);
        LOCKED(CHECK(got_sum == 2.0f * static_cast<float>(members)));
      }
    });
  }
}

TEST_CASE("stream groups: subgroup takes the listed ranks in list order; others get none",
          "[stream][group]") {
  fake::run(4, [&](fake_comm& comm, fake::stream& s) {
    const std::vector<int> list{3, 0, 2};
    auto g = comm.subgroup(list);
    if (comm.rank() == 1) {
      LOCKED(CHECK_FALSE(g.has_value()));
    } else {
      LOCKED(REQUIRE(g.has_value()));
      LOCKED(CHECK(g->size() == 3));
      LOCKED(CHECK(list[static_cast<std::size_t>(g->rank())] == comm.rank()));
      {
        const float got_sum = sum_all_reduce(*g, s, static_cast<float>(comm.rank()));
        LOCKED(CHECK(got_sum == 5.0f));
      }
    }
    auto none = comm.split(chorus::undefined);
    LOCKED(CHECK_FALSE(none.has_value()));
    {
      const float got_sum = sum_all_reduce(comm, s, 1.0f);
      LOCKED(CHECK(got_sum == 4.0f));
    }
  });
}

TEST_CASE("stream groups: bad arguments are invalid_argument before the transport is called",
          "[stream][group]") {
  fake::run(3, [&](fake_comm& comm, fake::stream& s) {
    const std::vector<std::vector<int>> bad{{}, {0, 3}, {0, -1}, {1, 2, 1}};
    for (const auto& list : bad) {
      try {
        (void)comm.subgroup(list);
        LOCKED(FAIL("a bad list was accepted"));
      } catch (const chorus::error& e) {
        LOCKED(CHECK(e.value() == chorus::errc::invalid_argument));
        LOCKED(CHECK_THAT(e.what(), Catch::Contains("chorus::communicator::subgroup")));
      }
    }
    try {
      (void)comm.split(-5);
      LOCKED(FAIL("color -5 was accepted"));
    } catch (const chorus::error& e) {
      LOCKED(CHECK(e.value() == chorus::errc::invalid_argument));
      LOCKED(CHECK_THAT(e.what(), Catch::Contains("color -5") && Catch::Contains("undefined")));
    }
    // Nothing reached the transport: the parent is usable and its splits still line up.
    LOCKED(CHECK_FALSE(comm.poisoned()));
    {
      const float got_sum = sum_all_reduce(comm, s, 1.0f);
      LOCKED(CHECK(got_sum == 3.0f));
    }
    auto all = comm.split(7);
    LOCKED(REQUIRE(all.has_value()));
    LOCKED(CHECK(all->size() == 3));
  });
}

TEST_CASE("stream groups: ranks passing different subgroup lists fail with mismatch",
          "[stream][group]") {
  std::vector<std::string> errors(3);
  fake::run(3, [&](fake_comm& comm, fake::stream& s) {
    const std::vector<int> list =
        comm.rank() == 2 ? std::vector<int>{0, 2} : std::vector<int>{0, 1, 2};
    try {
      (void)comm.subgroup(list);
    } catch (const chorus::error& e) {
      LOCKED(CHECK(e.value() == chorus::errc::mismatch));
      errors[static_cast<std::size_t>(comm.rank())] = e.what();
    }
    // The parent stays usable.
    {
      const float got_sum = sum_all_reduce(comm, s, 1.0f);
      LOCKED(CHECK(got_sum == 3.0f));
    }
  });
  for (const std::string& e : errors) {
    CHECK_THAT(e, Catch::Contains("every rank must pass the same list"));
  }
  CHECK_THAT(errors[0], Catch::Contains("the group of the 3 ranks listed has 2 members"));
  CHECK_THAT(errors[2], Catch::Contains("the group of the 2 ranks listed has 1 members"));
}

TEST_CASE("stream groups: an abort of the parent fails its groups, and a group's its parent",
          "[stream][group]") {
  for (bool parent_aborts : {true, false}) {
    std::latch ready(4);
    std::latch abort_done(4);
    fake::run(4, [&](fake_comm& comm, fake::stream& s) {
      auto half = comm.split(comm.rank() % 2, 0);
      ready.arrive_and_wait();
      if (comm.rank() == 1) {
        if (parent_aborts) {
          comm.abort("rank 1 gave up on the world");
        } else {
          half->abort("rank 1 gave up on its group");
        }
      }
      // No rank starts its collective before the abort is in: ranks 0 and 2 share neither
      // the aborting rank nor its communicator, and a collective they finished first would
      // rightly have succeeded.
      abort_done.arrive_and_wait();
      fake_comm& other = parent_aborts ? *half : comm;
      try {
        (void)sum_all_reduce(other, s, 1.0f);
        LOCKED(FAIL("a collective ran after an abort in its family"));
      } catch (const chorus::error& e) {
        LOCKED(CHECK(e.value() == chorus::errc::aborted));
        LOCKED(CHECK_THAT(e.what(), Catch::Contains("rank 1 gave up")));
      }
      LOCKED(CHECK(other.poisoned()));
    });
  }
}

TEST_CASE("stream groups: a rank that never splits fails the others with a timeout",
          "[stream][group]") {
  const auto start = std::chrono::steady_clock::now();
  std::vector<std::string> errors(3);
  fake::run(3, [&](fake_comm& comm, fake::stream&) {
    if (comm.rank() == 0) return;  // never calls split
    comm.set_timeout(std::chrono::milliseconds(300));
    try {
      (void)comm.split(0);
    } catch (const chorus::error& e) {
      errors[static_cast<std::size_t>(comm.rank())] = e.what();
      LOCKED(CHECK((e.value() == chorus::errc::timeout || e.value() == chorus::errc::aborted)));
    }
    LOCKED(CHECK(comm.poisoned()));
  });
  CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(10));
  CHECK_THAT(errors[1] + errors[2], Catch::Contains("never called it"));
}

}  // namespace

// In-memory redundancy: ranks train with `replicate` after every step, some leave part-way
// through a step (or through `replicate` itself), the survivors shrink, `restore` rebuilds
// the optimizer on the shrunk group, and training goes on. The final master weights and
// optimizer state must be bit-identical to the unsharded reference of a group that trained
// on N ranks up to the restored step and on the survivors afterwards.
#include "reference.hpp"
#include "support/shrink.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

namespace {

using namespace zero_test;
using namespace std::chrono_literals;
using harness::failures;

/// Where the leaving ranks leave: before their `nth` collective named `at` of step
/// `step` ("" = any collective).
struct departure {
  std::vector<int> ranks;
  int step = 3;
  std::string_view at;
  int nth = 2;
};

struct outcome {
  result state;                // new rank 0's view of the whole state at the end
  std::uint64_t restored = 0;  // the step restore returned (new rank 0)
  std::vector<int> members;
};

struct leave {};

template <class Stage, class Geometry>
outcome train_through_a_loss(int world, const departure& d, int steps, failures& f) {
  using driver =
      zero::sharded_optimizer<chorus::inproc_transport, Stage, Geometry, zero::adamw, float>;
  const mlp& m = test_model();
  outcome out;
  std::mutex mu;
  harness::run_threads(world, f, [&](chorus::inproc_communicator& comm) {
    const int old_rank = comm.rank();
    const bool leaves = std::count(d.ranks.begin(), d.ranks.end(), old_rank) != 0;
    int step = 0, calls = 0;
    zero::options o;
    o.bucket_bytes = 50 * 4;
    o.max_live_buckets = 4;
    o.algorithm = {algorithm::direct};
    bool restored = false;
    o.before_collective = [&](std::string_view name, std::size_t) {
      if (leaves && !restored && step == d.step && (d.at.empty() || name == d.at) &&
          ++calls == d.nth)
        throw leave{};
    };
    zero::replicas reps;
    // Trains steps `from`.. on `c` with driver `opt`; returns the step that failed, or 0.
    auto train = [&](chorus::inproc_communicator& c, driver& opt, int from) {
      zero_example::driver_access<driver> a{&opt, m.layers(), {}};
      for (step = from; step <= steps; ++step) {
        try {
          a.begin_micro_batch();
          zero_example::loss_and_grad(m, batch_for(c.rank(), step, 0), a);
          opt.step();
          opt.replicate(reps);
        } catch (const chorus::error& e) {
          // A leaving rank that another's departure stopped first leaves now: the set of
          // ranks lost is the test's.
          if (leaves) throw leave{};
          if (from != 1) {
            f.add(std::string("a failure after the restore: ") + e.what());
          } else if (e.value() != chorus::errc::peer_lost && e.value() != chorus::errc::aborted) {
            f.add(std::string("the failure was not peer_lost: ") + e.what());
          }
          return step;
        }
      }
      return 0;
    };
    try {
      driver opt(comm, m.tensor_sizes(), {}, o);
      opt.initialize([&](std::size_t t, std::size_t i) { return m.init(init_seed, t, i); });
      opt.replicate(reps);
      const int failed = train(comm, opt, 1);
      if (failed == 0) {
        f.add("rank " + std::to_string(old_rank) + " saw no failure");
        return;
      }
      auto s = comm.shrink({.timeout = 20s});
      driver again(s.comm, m.tensor_sizes(), {}, o);
      const std::uint64_t at = again.restore(reps, s);
      restored = true;
      if (again.step_count() != at) f.add("step_count() is not the restored step");
      // The committed generation now belongs to the shrunk group.
      if (reps.committed.world != s.comm.size() || reps.committed.step != at)
        f.add("restore did not replicate on the new group");
      if (train(s.comm, again, static_cast<int>(at) + 1) != 0) return;
      outcome mine{{again.full_state(0), {}, {}}, at, s.members};
      for (std::size_t k = 1; k <= zero::adamw::state_count; ++k)
        mine.state.states.push_back(again.full_state(k));
      if (s.comm.rank() == 0) {
        std::lock_guard lock(mu);
        out = std::move(mine);
      }
    } catch (const leave&) {
    } catch (const std::exception& e) {
      f.add("old rank " + std::to_string(old_rank) + " threw: " + e.what());
    }
  });
  return out;
}

/// The reference: `world` ranks up to step `restored`, then `world - lost` ranks.
template <class Geometry>
result reference_after_loss(int stage, int world, int lost, int steps, std::uint64_t restored) {
  config c;
  c.world = world;
  c.steps = steps;
  c.algo = algorithm::direct;
  for (int s = 1; s <= steps; ++s)
    c.worlds.push_back(static_cast<std::uint64_t>(s) <= restored ? world : world - lost);
  return reference<Geometry, zero::adamw, float>(stage, c, zero::adamw{}, false);
}

template <class Stage, class Geometry>
void check_recovery(int world, const departure& d, std::uint64_t want_restored) {
  constexpr int steps = 6;
  failures f;
  const outcome got = train_through_a_loss<Stage, Geometry>(world, d, steps, f);
  INFO(world << " ranks, stage " << Stage::value << ", " << Geometry::name << ", ranks "
             << d.ranks.size() << " leave at step " << d.step << ": " << f.report());
  REQUIRE(f.count() == 0);
  // One rank leaving mid-step: every survivor passed the last commit barrier. Several: one
  // may leave while a survivor is still in that barrier, and if none passed it, the
  // generation before is the newest committed one.
  if (d.ranks.size() == 1) {
    CHECK(got.restored == want_restored);
  } else {
    CHECK((got.restored == want_restored || got.restored + 1 == want_restored));
  }
  std::vector<int> survivors;
  for (int r = 0; r < world; ++r)
    if (std::count(d.ranks.begin(), d.ranks.end(), r) == 0) survivors.push_back(r);
  CHECK(got.members == survivors);
  const result want = reference_after_loss<Geometry>(
      Stage::value, world, static_cast<int>(d.ranks.size()), steps, got.restored);
  CHECK(first_difference(got.state.master, want.master) == -1);
  REQUIRE(got.state.states.size() == want.states.size());
  for (std::size_t k = 0; k < want.states.size(); ++k)
    CHECK(first_difference(got.state.states[k], want.states[k]) == -1);
}

}  // namespace

TEST_CASE("restore after a loss mid-step: every stage and geometry, bit-identical") {
  const departure d{{2}, 3, "", 2};
  check_recovery<zero::stage<0>, zero::flat>(4, d, 2);
  check_recovery<zero::stage<1>, zero::flat>(4, d, 2);
  check_recovery<zero::stage<2>, zero::flat>(4, d, 2);
  check_recovery<zero::stage<3>, zero::flat>(4, d, 2);
  check_recovery<zero::stage<1>, zero::per_tensor>(4, d, 2);
  check_recovery<zero::stage<2>, zero::whole_tensor>(4, d, 2);
  check_recovery<zero::stage<3>, zero::per_tensor>(4, d, 2);
}

TEST_CASE("restore at 2, 3 and 8 ranks, rank 0 and the last rank (whose copy wraps) lost") {
  for (const int world : {2, 3, 8}) {
    check_recovery<zero::stage<2>, zero::flat>(world, {{0}, 2, "", 1}, 1);
    check_recovery<zero::stage<3>, zero::per_tensor>(world, {{world - 1}, 4, "", 3}, 3);
  }
}

TEST_CASE("restore after losing ranks that are not neighbours, at once") {
  check_recovery<zero::stage<2>, zero::flat>(8, {{1, 5}, 3, "", 2}, 2);
  check_recovery<zero::stage<1>, zero::per_tensor>(8, {{0, 2, 4, 6}, 2, "", 1}, 1);
}

TEST_CASE("a loss inside replicate goes back to the last committed generation") {
  // Before its send-receive: nobody holds the new generation whole.
  check_recovery<zero::stage<2>, zero::flat>(4, {{1}, 3, "sendrecv", 1}, 2);
  // At the commit barrier: every survivor holds step 3 whole but none committed it.
  check_recovery<zero::stage<3>, zero::flat>(4, {{3}, 3, "barrier", 1}, 2);
  check_recovery<zero::stage<0>, zero::flat>(4, {{0}, 3, "barrier", 1}, 2);
}

TEST_CASE("two neighbours lost, or no replica: the same clear error on every survivor") {
  using driver =
      zero::sharded_optimizer<chorus::inproc_transport, zero::stage<2>, zero::flat, zero::adamw>;
  const mlp& m = test_model();
  for (const bool replicated : {true, false}) {
    failures f;
    std::atomic<int> errors{0};
    harness::run_threads(4, f, [&](chorus::inproc_communicator& comm) {
      zero::replicas reps;
      driver opt(comm, m.tensor_sizes());
      opt.initialize([&](std::size_t t, std::size_t i) { return m.init(init_seed, t, i); });
      if (replicated) opt.replicate(reps);
      if (comm.rank() == 1 || comm.rank() == 2) return;  // neighbours leave together
      try {
        chorus::barrier(comm);
        f.add("no failure");
      } catch (const chorus::error&) {
      }
      auto s = comm.shrink({.timeout = 20s});
      driver again(s.comm, m.tensor_sizes());
      try {
        again.restore(reps, s);
        f.add("restore succeeded");
      } catch (const chorus::error& e) {
        const std::string want = replicated ? "old ranks 1 and 2 were both lost"
                                            : "no survivor holds a committed replica of the 4-rank";
        if (e.value() != chorus::errc::invalid_argument ||
            std::string(e.what()).find(want) == std::string::npos)
          f.add(std::string("unexpected error: ") + e.what());
        ++errors;
      }
    });
    INFO((replicated ? "replicated: " : "never replicated: ") << f.report());
    CHECK(f.count() == 0);
    CHECK(errors == 2);
  }
}

TEST_CASE("replicate keeps this rank's shard and its left neighbour's, nothing more") {
  using driver =
      zero::sharded_optimizer<chorus::inproc_transport, zero::stage<2>, zero::per_tensor>;
  const mlp& m = test_model();
  failures f;
  harness::run_threads(3, f, [&](chorus::inproc_communicator& comm) {
    zero::replicas reps;
    driver opt(comm, m.tensor_sizes());
    opt.initialize([&](std::size_t t, std::size_t i) { return m.init(init_seed, t, i); });
    opt.replicate(reps);
    const auto& part = opt.layout_partition();
    const int left = (comm.rank() + 2) % 3;
    const std::size_t k = 1 + driver::state_count;
    if (reps.committed.own.size() != k * part.shard_size(comm.rank()) ||
        reps.committed.held.size() != k * part.shard_size(left) || reps.pending.valid)
      f.add("rank " + std::to_string(comm.rank()) + ": wrong sizes");
    // The held copy is the left neighbour's master weights, bit for bit.
    std::vector<float> theirs(part.shard_size(left));
    chorus::sendrecv(comm, opt.shard_master(), (comm.rank() + 1) % 3, theirs, left);
    if (!std::equal(theirs.begin(), theirs.end(), reps.committed.held.begin()))
      f.add("the held copy is not the left neighbour's shard");
  });
  INFO(f.report());
  CHECK(f.count() == 0);
}

// zero::sharded_optimizer trains the example MLP to bit-identical parameters at every stage,
// geometry, optimizer and world size, against an unsharded reference that sums gradients
// in the collectives' order; within rounding of a naive reference; with overlap on and off,
// random delays in the collectives, gradient accumulation, and mixed precision.
#include "reference.hpp"

#include <catch2/catch.hpp>

#include <numeric>
#include <tuple>

namespace {

using namespace zero_test;
using chorus::bfloat16;

constexpr int worlds[] = {1, 2, 3, 4, 5, 8};

template <class Stage, class Geometry, class Opt, class T = float>
void expect_equivalent(const config& c, const Opt& opt) {
  INFO("stage " << Stage::value << ", " << Geometry::name << ", " << Opt::name << ", world "
                << c.world << ", micro-batches " << c.micro_batches << ", algorithm "
                << chorus::schedule::name(c.algo) << ", overlap " << c.overlap << ", delays "
                << c.delays);
  std::vector<std::string> problems;
  const result got = run_driver<Stage, Geometry, Opt, T>(c, opt, problems);
  const result want = reference<Geometry, Opt, T>(Stage::value, c, opt, false);
  CHECK(problems.empty());
  if (!problems.empty()) INFO(problems.front());
  CHECK(first_difference(got.master, want.master) == -1);
  REQUIRE(got.states.size() == want.states.size());
  for (std::size_t k = 0; k < got.states.size(); ++k)
    CHECK(first_difference(got.states[k], want.states[k]) == -1);
  CHECK(first_difference(got.losses, want.losses) == -1);
  const result naive = reference<Geometry, Opt, T>(Stage::value, c, opt, true);
  CHECK(relative_difference(got.master, naive.master) <= 1e-6);
  // The training moved the weights (the comparisons are not of two initial states), and
  // over 20 steps it learns: the last quarter's mean loss is below the first quarter's.
  CHECK(relative_difference(got.master, initial_master()) > 1e-3);
  if (c.steps >= 20) {
    const auto q = got.losses.size() / 4;
    CHECK(std::accumulate(got.losses.end() - q, got.losses.end(), 0.0) <
          std::accumulate(got.losses.begin(), got.losses.begin() + q, 0.0));
  }
}

template <class Stage, class Geometry>
void sweep_worlds() {
  for (int w : worlds) {
    config c;
    c.world = w;
    expect_equivalent<Stage, Geometry>(c, zero::adamw{.lr = 1e-2f});
    expect_equivalent<Stage, Geometry>(c, zero::sgd{.lr = 0.05f, .momentum = 0.9f});
  }
}

template <class Stage>
void sweep_geometries() {
  sweep_worlds<Stage, zero::flat>();
  sweep_worlds<Stage, zero::per_tensor>();
  sweep_worlds<Stage, zero::whole_tensor>();
}

}  // namespace

TEST_CASE(
    "stage 1: bit-identical to the unsharded reference, every geometry, optimizer, world size") {
  sweep_geometries<zero::stage<1>>();
}

TEST_CASE(
    "stage 2: bit-identical to the unsharded reference, every geometry, optimizer, world size") {
  sweep_geometries<zero::stage<2>>();
}

TEST_CASE(
    "stage 3: bit-identical to the unsharded reference, every geometry, optimizer, world size") {
  sweep_geometries<zero::stage<3>>();
}

TEST_CASE("stage 0 (plain data parallelism) matches its all-reduce reference") {
  for (int w : {1, 3, 4}) {
    config c;
    c.world = w;
    expect_equivalent<zero::stage<0>, zero::flat>(c, zero::adamw{.lr = 1e-2f});
    c.algo = algorithm::ring;
    expect_equivalent<zero::stage<0>, zero::flat>(c, zero::sgd{.lr = 0.05f});
  }
}

TEST_CASE("ring algorithm, overlap off, random delays and gradient accumulation change nothing") {
  for (int w : {3, 5}) {
    config c;
    c.world = w;
    c.algo = algorithm::ring;
    expect_equivalent<zero::stage<2>, zero::per_tensor>(c, zero::adamw{.lr = 1e-2f});
    expect_equivalent<zero::stage<1>, zero::flat>(c, zero::sgd{.lr = 0.05f});
    c.overlap = false;
    expect_equivalent<zero::stage<3>, zero::flat>(c, zero::adamw{.lr = 1e-2f});
    c.overlap = true;
    c.delays = true;
    c.steps = 6;
    expect_equivalent<zero::stage<3>, zero::per_tensor>(c, zero::adamw{.lr = 1e-2f});
    expect_equivalent<zero::stage<2>, zero::whole_tensor>(c, zero::sgd{.lr = 0.05f});
    c.delays = false;
    c.steps = 8;
    c.micro_batches = 3;
    for (auto a : {algorithm::ring, algorithm::direct}) {
      c.algo = a;
      expect_equivalent<zero::stage<1>, zero::per_tensor>(c, zero::adamw{.lr = 1e-2f});
      expect_equivalent<zero::stage<2>, zero::flat>(c, zero::adamw{.lr = 1e-2f});
      expect_equivalent<zero::stage<3>, zero::whole_tensor>(c, zero::sgd{.lr = 0.05f});
    }
  }
}

TEST_CASE("overlap on and off give the same bits") {
  config c;
  c.world = 4;
  c.algo = algorithm::ring;
  std::vector<std::string> problems;
  const result on =
      run_driver<zero::stage<3>, zero::per_tensor, zero::adamw, float>(c, {}, problems);
  c.overlap = false;
  const result off =
      run_driver<zero::stage<3>, zero::per_tensor, zero::adamw, float>(c, {}, problems);
  CHECK(problems.empty());
  CHECK(first_difference(on.master, off.master) == -1);
  CHECK(first_difference(on.states[1], off.states[1]) == -1);
}

TEST_CASE("mixed precision: bfloat16 compute, fp32 master weights, bit-identical too") {
  for (int w : {2, 5}) {
    config c;
    c.world = w;
    c.bucket_bytes = 50 * 2;
    INFO("world " << w);
    std::vector<std::string> problems;
    const zero::adamw opt{.lr = 1e-2f};
    const result got =
        run_driver<zero::stage<3>, zero::flat, zero::adamw, bfloat16>(c, opt, problems);
    const result want = reference<zero::flat, zero::adamw, bfloat16>(3, c, opt, false);
    CHECK(problems.empty());
    CHECK(first_difference(got.master, want.master) == -1);
    CHECK(first_difference(got.losses, want.losses) == -1);
    // bf16 gradients: close to the fp32 run, not equal to it.
    const result fp32 = reference<zero::flat, zero::adamw, float>(3, c, opt, false);
    CHECK(first_difference(got.master, fp32.master) != -1);
    CHECK(relative_difference(got.master, fp32.master) < 0.05);
  }
}

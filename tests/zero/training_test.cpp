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

template <class Stage, class Geometry, class Opt, class T = float>
void expect_equivalent(const config& c, const Opt& opt) {
  INFO("stage " << Stage::value << ", " << Geometry::name << ", " << Opt::name << ", world "
                << c.world << ", micro-batches " << c.micro_batches << ", algorithm "
                << chorus::schedule::name(c.algo) << ", overlap " << c.overlap << ", delays "
                << c.delays);
  std::vector<std::string> problems;
  const result got = run_driver<Stage, Geometry, Opt, T>(c, opt, problems);
  const result want = reference<Geometry, Opt, T>(Stage::value, c, opt, false);
  INFO((problems.empty() ? std::string() : problems.front()));
  CHECK(problems.empty());
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
  for (int w : training_worlds) {
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

TEST_CASE(
    "stages 0-3 agree bitwise where the sum orders coincide (direct, owner = all-reduce block)") {
  // 294 elements, one bucket, flat: the even all-reduce blocks are the shards for P | 294.
  for (int w : {2, 3, 7}) {
    config c;
    c.world = w;
    c.bucket_bytes = 0;
    c.steps = 10;
    INFO("world " << w);
    std::vector<std::string> problems;
    const zero::adamw opt{.lr = 1e-2f};
    const result s0 = run_driver<zero::stage<0>, zero::flat, zero::adamw, float>(c, opt, problems);
    const result s1 = run_driver<zero::stage<1>, zero::flat, zero::adamw, float>(c, opt, problems);
    const result s2 = run_driver<zero::stage<2>, zero::flat, zero::adamw, float>(c, opt, problems);
    const result s3 = run_driver<zero::stage<3>, zero::flat, zero::adamw, float>(c, opt, problems);
    CHECK(problems.empty());
    CHECK(first_difference(s0.master, s1.master) == -1);
    CHECK(first_difference(s1.master, s2.master) == -1);
    CHECK(first_difference(s2.master, s3.master) == -1);
    // With ring (P >= 3) the all-reduce adds in another order than the reduce-scatter
    c.algo = algorithm::ring;
    const result r0 = run_driver<zero::stage<0>, zero::flat, zero::adamw, float>(c, opt, problems);
    const result r1 = run_driver<zero::stage<1>, zero::flat, zero::adamw, float>(c, opt, problems);
    // (with two ranks both add x0 + x1: equal).
    CHECK((first_difference(r0.master, r1.master) == -1) == (w == 2));
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

TEST_CASE("mixed precision: bfloat16 and half compute, fp32 master weights, bit-identical too") {
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
  // IEEE half compute, SGD, stage 2: bit-identical to its reference as well.
  config c;
  c.world = 3;
  c.bucket_bytes = 50 * 2;
  std::vector<std::string> problems;
  const zero::sgd opt{.lr = 0.05f};
  const result got =
      run_driver<zero::stage<2>, zero::per_tensor, zero::sgd, chorus::half>(c, opt, problems);
  const result want = reference<zero::per_tensor, zero::sgd, chorus::half>(2, c, opt, false);
  CHECK(problems.empty());
  CHECK(first_difference(got.master, want.master) == -1);
  CHECK(first_difference(got.states[0], want.states[0]) == -1);
}

TEST_CASE(
    "the collectives sum in the order the reference assumes; ring all-reduce does not equal ring "
    "reduce-scatter") {
  // Values of very different magnitudes: any change of summation order changes the bits.
  for (int p = 1; p <= 8; ++p) {
    const std::vector<std::size_t> counts = [&] {
      std::vector<std::size_t> c;
      for (int r = 0; r < p; ++r)
        c.push_back(static_cast<std::size_t>((r * 7) % 5));  // zeros included
      return c;
    }();
    const std::size_t n = std::accumulate(counts.begin(), counts.end(), std::size_t{0});
    auto value = [](int rank, std::size_t i) {
      return std::ldexp(zero_example::uniform((static_cast<std::uint64_t>(rank) << 20) ^ i),
                        (rank * 11) % 23 - 11);
    };
    for (auto a : {algorithm::direct, algorithm::ring}) {
      INFO("ranks " << p << " algorithm " << chorus::schedule::name(a));
      harness::failures f;
      harness::run_ranks(p, [&](chorus::inproc_communicator& comm) {
        const int r = comm.rank();
        std::vector<float> in(n), rs(counts[static_cast<std::size_t>(r)]), ar(n);
        for (std::size_t i = 0; i < n; ++i) in[i] = value(r, i);
        chorus::reduce_scatter_v(comm, in, rs, counts, chorus::plus{}, chorus::algo::dynamic{a});
        chorus::all_reduce(comm, in, ar, chorus::plus{}, chorus::algo::dynamic{a});
        auto serial = [&](int stage, int owner, std::size_t i) {
          const auto seq = sum_order(stage, a, false, p, owner);
          float s = value(seq[0], i);
          for (std::size_t k = 1; k < seq.size(); ++k) s = s + value(seq[k], i);
          return s;
        };
        std::size_t off = 0;
        for (int o = 0; o < r; ++o) off += counts[static_cast<std::size_t>(o)];
        for (std::size_t i = 0; i < rs.size(); ++i)
          if (rs[i] != serial(1, r, off + i))
            f.add("reduce_scatter_v element " + std::to_string(off + i));
        const chorus::schedule::detail::even_split blocks{n, static_cast<std::size_t>(p)};
        for (int b = 0; b < p; ++b) {
          for (std::size_t i = blocks.offset(static_cast<std::size_t>(b));
               i < blocks.offset(static_cast<std::size_t>(b)) +
                       blocks.size(static_cast<std::size_t>(b));
               ++i)
            if (ar[i] != serial(0, b, i)) f.add("all_reduce element " + std::to_string(i));
        }
      });
      INFO(f.report());
      CHECK(f.count() == 0);
    }
  }
  // Hence docs/zero.md: with direct, an element's sum depends only on its owner, so stage 0
  // over the owner-blocked layout equals stages 1-3; the ring all-reduce starts each block's
  // sum one rank earlier than the ring reduce-scatter of the same block does.
  CHECK(sum_order(0, algorithm::ring, false, 4, 2) != sum_order(1, algorithm::ring, false, 4, 2));
  CHECK(sum_order(0, algorithm::direct, false, 4, 2) ==
        sum_order(1, algorithm::direct, false, 4, 2));
}

TEST_CASE("memory accounting matches the paper's estimate for the driver's own buffers") {
  const std::vector<std::size_t> sizes = {64, 32, 24, 8};  // 128 elements: no padding at 4 ranks
  auto check = [&](auto stage, auto compute) {
    using S = decltype(stage);
    using T = decltype(compute);
    harness::failures f;  // Catch2's assertions are for the main thread only
    harness::run_ranks(4, [&](chorus::inproc_communicator& comm) {
      zero::options o;
      o.bucket_bytes = 32 * sizeof(T);
      zero::sharded_optimizer<chorus::inproc_transport, S, zero::per_tensor, zero::adamw, T> d(
          comm, sizes, {}, o);
      d.initialize([](std::size_t, std::size_t i) { return 0.01f * static_cast<float>(i); });
      for (std::size_t b = 0; b < d.buckets(); ++b) {
        d.gather(b);
        for (std::size_t t = d.layout().buckets[b].first_tensor;
             t < d.layout().buckets[b].end_tensor; ++t)
          d.grad(t)[0] = T(1.0f);
        d.reduce(b);
        d.release(b);
      }
      d.step();
      const zero::memory_report m = d.memory();
      const zero::model_memory e = zero::memory_estimate(
          S::value, 128, 4, decltype(d)::optimizer_bytes_per_parameter, sizeof(T), sizeof(T));
      const std::string what = "stage " + std::to_string(S::value) + ", compute bytes " +
                               std::to_string(sizeof(T)) + ", rank " + std::to_string(comm.rank()) +
                               ": ";
      if (static_cast<double>(m.parameters) != e.parameters)
        f.add(what + "parameters differ from the estimate");
      if (static_cast<double>(m.gradients) != e.gradients)
        f.add(what + "gradients differ from the estimate");
      if (static_cast<double>(m.optimizer_states) != e.optimizer_states)
        f.add(what + "optimizer state differs");
      // Buffers: bucket-sized, at most max_live_buckets of each kind (stage 0 all-reduces in
      // place and needs none).
      if ((m.buffers > 0) != (S::value > 0)) f.add(what + "buffers present or missing");
      if (m.buffers >
          3 * o.max_live_buckets * (d.layout().max_packed + d.layout().max_part) * sizeof(T))
        f.add(what + "buffers larger than max_live_buckets bucket buffers of each kind");
    });
    INFO(f.report());
    CHECK(f.count() == 0);
  };
  check(zero::stage<0>{}, float{});
  check(zero::stage<1>{}, float{});
  check(zero::stage<2>{}, float{});
  check(zero::stage<3>{}, float{});
  check(zero::stage<3>{}, bfloat16{});
  check(zero::stage<1>{}, bfloat16{});
  // K: 12 bytes per parameter for Adam (fp32 weights, m, v), as in the paper; 8 for SGD.
  STATIC_REQUIRE(zero::sharded_optimizer<chorus::inproc_transport,
                                         zero::stage<1>>::optimizer_bytes_per_parameter == 12);
  STATIC_REQUIRE(zero::sharded_optimizer<chorus::inproc_transport, zero::stage<1>, zero::flat,
                                         zero::sgd>::optimizer_bytes_per_parameter == 8);
}

TEST_CASE("misuse is a clear invalid_argument") {
  auto error_of = [](auto&& body) {
    std::string message;
    try {
      harness::run_ranks(2, body);
    } catch (const chorus::error& e) {
      CHECK(e.value() == chorus::errc::invalid_argument);
      message = e.what();
    }
    return message;
  };
  const std::vector<std::size_t> sizes = {10, 20, 30};
  using s3 = zero::sharded_optimizer<chorus::inproc_transport, zero::stage<3>>;
  zero::options small;
  small.bucket_bytes = 40;  // three buckets
  small.max_live_buckets = 1;
  CHECK_THAT(error_of([&](chorus::inproc_communicator& comm) {
               s3 d(comm, sizes, {}, small);
               (void)d.param(1);
             }),
             Catch::Contains("not gathered"));
  CHECK_THAT(error_of([&](chorus::inproc_communicator& comm) {
               s3 d(comm, sizes, {}, small);
               d.gather(0);
               d.gather(1);
             }),
             Catch::Contains("release() one of them first"));
  CHECK_THAT(error_of([&](chorus::inproc_communicator& comm) {
               s3 d(comm, sizes, {}, small);
               d.reduce(0);
               d.step();
             }),
             Catch::Contains("bucket 1 was reduced 0 of 1 times"));
  CHECK_THAT(error_of([&](chorus::inproc_communicator& comm) {
               s3 d(comm, sizes, {}, small);
               d.reduce(0);
               d.reduce(0);
             }),
             Catch::Contains("call step() first"));
  CHECK_THAT(error_of([&](chorus::inproc_communicator& comm) {
               s3 d(comm, sizes, {}, small);
               d.gather(3);
             }),
             Catch::Contains("bucket 3 does not exist"));
  CHECK_THAT(error_of([&](chorus::inproc_communicator& comm) {
               zero::options o = small;
               o.bucket_order = {0, 2, 2};
               s3 d(comm, sizes, {}, o);
             }),
             Catch::Contains("permutation"));
  CHECK_THAT(error_of([&](chorus::inproc_communicator& comm) {
               zero::sharded_optimizer<chorus::inproc_transport, zero::stage<2>> d(comm, sizes, {},
                                                                                   small);
               (void)d.grad(0);
               (void)d.grad(2);
             }),
             Catch::Contains("reduce() one of them first"));
  // The control: the same calls in the right order work.
  CHECK(error_of([&](chorus::inproc_communicator& comm) {
          s3 d(comm, sizes, {}, small);
          for (std::size_t b = 0; b < 3; ++b) {
            d.gather(b);
            (void)d.param(d.layout().buckets[b].first_tensor);
            d.reduce(b);
            d.release(b);
          }
          d.step();
        }).empty());
}

namespace {
/// One SGD step (lr 1, no momentum) on tensors of awkward sizes, rank r's gradient r + 1
/// everywhere: every weight must drop by exactly (P + 1) / 2, padding stay zero, nothing hang.
template <class Stage, class Geometry>
void tiny_tensors(int world, harness::failures& f) {
  const std::vector<std::size_t> sizes = {0, 1, 3, 0, 7, 2};
  harness::run_ranks(world, [&](chorus::inproc_communicator& comm) {
    zero::options o;
    o.bucket_bytes = 4;  // a bucket per non-empty tensor; some buckets hold only empty ones
    o.algorithm = {algorithm::ring};
    zero::sharded_optimizer<chorus::inproc_transport, Stage, Geometry, zero::sgd> d(
        comm, sizes, zero::sgd{.lr = 1.0f, .momentum = 0.0f}, o);
    d.initialize([](std::size_t t, std::size_t i) { return static_cast<float>(10 * t + i); });
    for (std::size_t b = d.buckets(); b-- > 0;) {
      d.gather(b);
      for (std::size_t t = d.layout().buckets[b].first_tensor; t < d.layout().buckets[b].end_tensor;
           ++t)
        for (float& g : d.grad(t)) g += static_cast<float>(comm.rank() + 1);
      d.reduce(b);
      d.release(b);
    }
    d.step();
    const std::string what = "stage " + std::to_string(Stage::value) + " " +
                             std::string(Geometry::name) + " world " + std::to_string(world) +
                             " rank " + std::to_string(comm.rank()) + ": ";
    if (auto p = padding_problem(d, comm.rank()); !p.empty()) f.add(what + p);
    const std::vector<float> w = d.full_state(0);
    std::size_t e = 0;
    for (std::size_t t = 0; t < sizes.size(); ++t) {
      for (std::size_t i = 0; i < sizes[t]; ++i, ++e) {
        if (w[e] != static_cast<float>(10 * t + i) - static_cast<float>(world + 1) / 2)
          f.add(what + "weight " + std::to_string(i) + " of tensor " + std::to_string(t));
      }
    }
  });
}
}  // namespace

TEST_CASE("empty and tiny tensors, more ranks than elements: exact results, no hang") {
  harness::failures f;
  for (int w : {1, 3, 8, 16}) {
    tiny_tensors<zero::stage<0>, zero::flat>(w, f);
    tiny_tensors<zero::stage<1>, zero::flat>(w, f);
    tiny_tensors<zero::stage<2>, zero::per_tensor>(w, f);
    tiny_tensors<zero::stage<3>, zero::per_tensor>(w, f);
    tiny_tensors<zero::stage<3>, zero::whole_tensor>(w, f);
    tiny_tensors<zero::stage<2>, zero::flat>(w, f);
  }
  INFO(f.report());
  CHECK(f.count() == 0);
}

TEST_CASE("with overlap on, reduce() returns while its reduce-scatter is still in flight") {
  // Rank 1 posts its reduce-scatter only after rank 0's reduce() has returned: if reduce()
  // waited for its collective, rank 0 could not return and rank 1 gives up after 30 s.
  harness::failures f;
  std::atomic<bool> returned{false};
  harness::run_ranks(3, [&](chorus::inproc_communicator& comm) {
    zero::options o;
    o.bucket_bytes = 0;
    zero::sharded_optimizer<chorus::inproc_transport, zero::stage<2>> d(comm, {5, 6}, {}, o);
    d.initialize([](std::size_t, std::size_t) { return 1.0f; });
    d.grad(0)[0] = 1.0f;
    if (comm.rank() == 1) {
      const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(30);
      while (!returned.load(std::memory_order_acquire)) {
        if (std::chrono::steady_clock::now() > give_up) {
          f.add("rank 0's reduce() did not return before rank 1 posted its collective");
          break;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
      }
    }
    d.reduce(0);
    if (comm.rank() == 0) returned.store(true, std::memory_order_release);
    d.step();
  });
  INFO(f.report());
  CHECK(f.count() == 0);
}

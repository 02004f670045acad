// Codec-level properties of every compression policy: exact wire sizes, round-trip bounds,
// ties, linearity of the summable ones, the error-feedback conservation law, the statistics
// of the stochastic ones (with a biased control that must fail the same criterion), and
// reproducibility of the counter-based draws.
#include <chorus/compress/compress.hpp>

#include <catch2/catch.hpp>

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <random>
#include <sstream>
#include <string_view>
#include <utility>
#include <vector>

namespace cc = chorus::compress;

namespace {

template <class T>
std::vector<T> random_vector(std::size_t n, std::uint64_t seed, double scale = 1.0) {
  std::mt19937_64 gen(seed);
  std::normal_distribution<double> dist(0.0, scale);
  std::vector<T> v(n);
  for (auto& x : v) x = static_cast<T>(dist(gen));
  return v;
}

template <class T, class C>
std::vector<std::byte> encode(const C& c, const std::vector<T>& x, const cc::context& ctx = {}) {
  std::vector<std::byte> w(c.template wire_bytes<T>(x.size()));
  c.encode(std::span<const T>(x), std::span<std::byte>(w), ctx);
  return w;
}

template <class T, class C>
std::vector<T> round_trip(const C& c, const std::vector<T>& x, const cc::context& ctx = {}) {
  const auto w = encode(c, x, ctx);
  std::vector<T> y(x.size(), T(7));  // decode must overwrite, not add to, this
  cc::decode(c, std::span<const std::byte>(w), std::span<T>(y), ctx);
  return y;
}

}  // namespace

TEST_CASE("wire_bytes follows each policy's formula exactly") {
  const std::size_t n = 1000;
  CHECK(cc::none{}.wire_bytes<float>(n) == 4000);
  CHECK(cc::cast<chorus::half>{}.wire_bytes<float>(n) == 2000);
  CHECK(cc::cast<chorus::bfloat16>{}.wire_bytes<double>(n) == 2000);
  CHECK(cc::block_quant<std::int8_t>{.block = 256}.wire_bytes<float>(n) == 4 * 4 + 1000);
  CHECK(cc::top_k{.ratio = 0.01}.wire_bytes<float>(n) == 10 * (4 + 4));
  CHECK(cc::top_k{.ratio = 0.01}.wire_bytes<double>(n) == 10 * (4 + 8));
  CHECK(cc::top_k{.ratio = 0.0001}.wire_bytes<float>(n) == 1 * 8);  // at least one element
  CHECK(cc::threshold_top_k{.ratio = 0.05}.wire_bytes<float>(n) == 50 * 8);
  CHECK(cc::random_k{.ratio = 0.01}.wire_bytes<double>(n) == 10 * 8);
  CHECK(cc::scaled_sign{}.wire_bytes<float>(n) == 4 + 125);
  CHECK(cc::scaled_sign{}.wire_bytes<float>(1001) == 4 + 126);
  CHECK(cc::two_means{}.wire_bytes<double>(n) == 16 + 125);
  CHECK(cc::qsgd{.levels = 16}.wire_bytes<float>(n) == 4 + 6 * 1000 / 8);  // 1 sign + 5 level bits
  CHECK(cc::qsgd{.levels = 1}.wire_bytes<float>(n) == 4 + 250);
  CHECK(cc::terngrad{}.wire_bytes<double>(1001) == 8 + 251);
  cc::power_sgd_state q;
  CHECK((cc::power_sgd{.rank = 2, .rows = 10, .state = &q}.wire_bytes<float>(n)) ==
        (10 + 100) * 2 * 4);

  // encode refuses a wire of any other size, naming the rule
  std::vector<float> x(n, 1.0f);
  std::vector<std::byte> w(79);
  auto encode_short = [&] {
    cc::top_k{.ratio = 0.01}.encode(std::span<const float>(x), std::span(w), cc::context{});
  };
  CHECK_THROWS_WITH(encode_short(), Catch::Contains("wire_bytes"));
  CHECK_THROWS_WITH((cc::top_k{.ratio = 0}.wire_bytes<float>(n)),
                    Catch::Contains("outside (0, 1]"));
  CHECK_THROWS_WITH((cc::qsgd{.levels = 200}.wire_bytes<float>(n)), Catch::Contains("1..127"));
  CHECK_THROWS_WITH((cc::power_sgd{.rank = 2, .rows = 7, .state = &q}.wire_bytes<float>(n)),
                    Catch::Contains("not a matrix"));
}

TEMPLATE_TEST_CASE("round trips stay within each policy's bound", "", float, double) {
  using T = TestType;
  const auto x = random_vector<T>(4099, 1);

  SECTION("none is exact") { CHECK(round_trip(cc::none{}, x) == x); }
  SECTION("cast rounds to nearest 16-bit float") {
    const auto h = round_trip(cc::cast<chorus::half>{}, x);
    const auto b = round_trip(cc::cast<chorus::bfloat16>{}, x);
    for (std::size_t i = 0; i < x.size(); ++i) {
      if (std::abs(x[i]) > 1e-4) CHECK(std::abs(h[i] - x[i]) <= std::abs(x[i]) * 0x1p-11);
      CHECK(std::abs(b[i] - x[i]) <= std::abs(x[i]) * 0x1p-8);
    }
  }
  SECTION("block_quant: within half a step of its block's scale") {
    const cc::block_quant<std::int8_t> c{.block = 100};
    const auto y = round_trip(c, x);
    for (std::size_t b = 0; b * 100 < x.size(); ++b) {
      T amax = 0;
      for (std::size_t i = b * 100; i < std::min(x.size(), b * 100 + 100); ++i)
        amax = std::max(amax, std::abs(x[i]));
      const double step = static_cast<double>(static_cast<float>(amax) / 127.0f);
      for (std::size_t i = b * 100; i < std::min(x.size(), b * 100 + 100); ++i)
        CHECK(std::abs(double(y[i]) - double(x[i])) <= step * (0.5 + 1e-5));
    }
  }
  SECTION("top_k keeps exactly the k largest magnitudes") {
    const auto y = round_trip(cc::top_k{.ratio = 0.01}, x);
    std::size_t kept = 0;
    T smallest_kept = 1e30, largest_dropped = 0;
    for (std::size_t i = 0; i < x.size(); ++i) {
      if (y[i] != 0) {
        CHECK(y[i] == x[i]);
        ++kept;
        smallest_kept = std::min(smallest_kept, std::abs(x[i]));
      } else {
        largest_dropped = std::max(largest_dropped, std::abs(x[i]));
      }
    }
    CHECK(kept == 41);  // ceil(0.01 * 4099)
    CHECK(smallest_kept >= largest_dropped);
    // the sampled-threshold selection finds the very same set
    CHECK(round_trip(cc::threshold_top_k{.ratio = 0.01}, x) == y);
    CHECK(round_trip(cc::threshold_top_k{.ratio = 0.01, .sample_ratio = 0.5}, x) == y);
  }
  SECTION("one-bit codecs: signs kept, magnitudes as promised") {
    const auto s = round_trip(cc::scaled_sign{}, x);
    const auto m = round_trip(cc::two_means{}, x);
    double l1 = 0, sum = 0, msum = 0, sl1 = 0;
    for (std::size_t i = 0; i < x.size(); ++i) {
      CHECK((s[i] < 0) == (x[i] < 0));
      CHECK((m[i] < 0) == (x[i] < 0));
      l1 += std::abs(double(x[i]));
      sl1 += std::abs(double(s[i]));
      sum += double(x[i]);
      msum += double(m[i]);
    }
    CHECK(sl1 == Approx(l1).epsilon(1e-5));                 // mean |x| times n
    CHECK(msum == Approx(sum).epsilon(1e-4).margin(1e-3));  // each sign group keeps its mean
  }
  SECTION("qsgd and terngrad: within one level") {
    double norm = 0, amax = 0;
    for (T v : x) {
      norm += double(v) * double(v);
      amax = std::max(amax, std::abs(double(v)));
    }
    norm = std::sqrt(norm);
    const auto q = round_trip(cc::qsgd{.levels = 16, .seed = 3}, x);
    const auto t = round_trip(cc::terngrad{.seed = 3}, x);
    for (std::size_t i = 0; i < x.size(); ++i) {
      CHECK(std::abs(double(q[i]) - double(x[i])) <= norm / 16 * (1 + 1e-5));
      CHECK(std::abs(double(t[i]) - double(x[i])) <= amax * (1 + 1e-5));
      CHECK((t[i] == 0 || std::abs(double(t[i])) == Approx(amax)));
    }
  }
}

TEST_CASE("sparsifiers keep ceil(ratio * n) elements, as the docs promise") {
  // 10,000,001 * 1e-7 = 1.0000001: the ceiling is 2 (n * ratio + 0.999999 gave 1).
  CHECK(cc::detail::kept("top_k", 1e-7, 10'000'001) == 2);
  CHECK(cc::top_k{.ratio = 1e-7}.wire_bytes<float>(10'000'001) ==
        cc::top_k{.ratio = 1e-7}.wire_bytes<float>(20'000'000));  // both keep 2
  CHECK(cc::detail::kept("top_k", 1e-7, 10'000'000) == 1);
  // A decimal ratio whose double is a hair above it does not round one more element up.
  CHECK(cc::detail::kept("top_k", 0.07, 100) == 7);
  CHECK(cc::detail::kept("top_k", 0.01, 4099) == 41);
  CHECK(cc::detail::kept("top_k", 0.5, 3) == 2);
  CHECK(cc::detail::kept("top_k", 1.0, 5) == 5);
  CHECK(cc::detail::kept("top_k", 1e-9, 5) == 1);  // at least one
  CHECK(cc::detail::kept("random_k", 0.3, 10) == 3);
}

TEST_CASE("top_k breaks ties toward the lowest index") {
  std::vector<float> x(100, 1.0f);
  x[50] = -2.0f;
  const auto y = round_trip(cc::top_k{.ratio = 0.05}, x);  // k = 5: index 50, then 0..3
  for (std::size_t i = 0; i < x.size(); ++i) {
    const bool kept = i == 50 || i < 4;
    CHECK((y[i] != 0) == kept);
  }
  // all-zero input and a single element
  std::vector<double> z(10, 0.0);
  CHECK(round_trip(cc::top_k{.ratio = 0.3}, z) == z);
  std::vector<double> one{-3.0};
  CHECK(round_trip(cc::top_k{.ratio = 0.3}, one) == one);
}

TEST_CASE("summable policies are linear: decode of the summed payloads is the sum of decodes") {
  const int ranks = 4;
  const std::size_t n = 777;
  auto check = [&](const auto& c, auto zero, bool exact_inputs) {
    using T = decltype(zero);
    using W = typename std::remove_cvref_t<decltype(c)>::template wire_t<T>;
    cc::context ctx{.rank = 0, .ranks = ranks, .seed = 0, .step = 5, .tensor = 2};
    std::vector<W> sum(c.template wire_count<T>(n), W(0));
    std::vector<T> sum_of_decodes(n, T(0));
    for (int r = 0; r < ranks; ++r) {
      ctx.rank = r;
      std::vector<T> x(n);
      for (std::size_t i = 0; i < n; ++i) {
        x[i] = exact_inputs
                   ? static_cast<T>(static_cast<int>((i * 7 + std::size_t(r) * 3) % 17) - 8)
                   : static_cast<T>(std::sin(double(i + 100 * std::size_t(r))));
      }
      std::vector<W> w(sum.size());
      c.encode(std::span<const T>(x), std::as_writable_bytes(std::span<W>(w)), ctx);
      for (std::size_t j = 0; j < w.size(); ++j) sum[j] = chorus::plus{}(sum[j], w[j]);
      c.decode_add(std::as_bytes(std::span<const W>(w)), std::span<T>(sum_of_decodes), ctx);
    }
    std::vector<T> decoded(n);
    cc::decode(c, std::as_bytes(std::span<const W>(sum)), std::span<T>(decoded), ctx);
    if (exact_inputs) {
      CHECK(decoded == sum_of_decodes);
    } else {
      for (std::size_t i = 0; i < n; ++i)
        CHECK(decoded[i] == Approx(sum_of_decodes[i]).margin(1e-12));
    }
  };
  check(cc::none{}, double{}, false);
  check(cc::random_k{.ratio = 0.1, .seed = 9}, double{}, false);
  check(cc::random_k{.ratio = 0.5, .seed = 9}, float{}, false);
  // 16-bit sums are exact for small integers (and for quarters with pre-division by 4)
  check(cc::cast<chorus::half>{}, float{}, true);
  check(cc::cast<chorus::bfloat16>{}, float{}, true);
  check(cc::cast<chorus::half>{.pre_divide = true}, double{}, true);
}

TEST_CASE("error feedback conserves the gradient: sum sent + residual == sum of gradients") {
  const std::size_t n = 1000;
  auto run = [&](const auto& c, const char* name) {
    INFO(name);
    std::vector<double> r(n, 0.0), scratch(n), sent_total(n, 0.0), grad_total(n, 0.0);
    for (std::uint64_t step = 0; step < 100; ++step) {
      const auto g = random_vector<double>(n, 100 + step);
      std::vector<std::byte> w(c.template wire_bytes<double>(n));
      const cc::context ctx{.rank = 1, .ranks = 4, .seed = 0, .step = step, .tensor = 0};
      cc::feedback_encode(c, std::span<const double>(g), std::span<double>(r), std::span(w), ctx,
                          std::span<double>(scratch));
      c.decode_add(std::span<const std::byte>(w), std::span<double>(sent_total), ctx);
      for (std::size_t i = 0; i < n; ++i) grad_total[i] += g[i];
    }
    double worst = 0;
    for (std::size_t i = 0; i < n; ++i)
      worst = std::max(worst, std::abs(sent_total[i] + r[i] - grad_total[i]));
    CHECK(worst <= 1e-12);
    // and something was actually held back (the law is not trivially true)
    double held = 0;
    for (double v : r) held += std::abs(v);
    return held;
  };
  CHECK(run(cc::top_k{.ratio = 0.01}, "top_k") > 1.0);
  CHECK(run(cc::threshold_top_k{.ratio = 0.01}, "threshold_top_k") > 1.0);
  CHECK(run(cc::random_k_unscaled{.ratio = 0.1, .seed = 1}, "random_k_unscaled") > 1.0);
  CHECK(run(cc::scaled_sign{}, "scaled_sign") > 1.0);
  CHECK(run(cc::two_means{}, "two_means") > 1.0);
  CHECK(run(cc::qsgd{.levels = 64, .seed = 2}, "qsgd") > 1.0);
  CHECK(run(cc::terngrad{.seed = 2}, "terngrad") > 1.0);
  CHECK(run(cc::block_quant<std::int8_t>{.block = 64}, "block_quant") > 1e-3);
  CHECK(run(cc::cast<chorus::half>{}, "cast<half>") > 1e-6);
  CHECK(run(cc::none{}, "none") == 0.0);
}

namespace {
/// Per-element mean and variance of decode(encode(x)) over `trials` draws, and whether
/// every mean is within 4 sigma / sqrt(trials) of x and the summed variance within 5 % of
/// `expected_variance(i)` summed.
struct moments {
  bool means_ok = true;
  double variance_ratio = 0;
};

template <class C, class Var>
moments measure(const C& c, const std::vector<double>& x, int trials, bool fresh_steps,
                Var expected_variance) {
  const std::size_t n = x.size();
  std::vector<double> mean(n, 0.0), m2(n, 0.0);
  for (int t = 0; t < trials; ++t) {
    const cc::context ctx{
        .rank = 3, .ranks = 8, .seed = 11, .step = fresh_steps ? std::uint64_t(t) : 0, .tensor = 4};
    const auto y = round_trip(c, x, ctx);
    for (std::size_t i = 0; i < n; ++i) {  // Welford
      const double d = y[i] - mean[i];
      mean[i] += d / (t + 1);
      m2[i] += d * (y[i] - mean[i]);
    }
  }
  moments m;
  double var_sum = 0, expected_sum = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const double sigma = std::sqrt(expected_variance(i));
    if (std::abs(mean[i] - x[i]) > 4 * sigma / std::sqrt(double(trials)) + 1e-12)
      m.means_ok = false;
    var_sum += m2[i] / (trials - 1);
    expected_sum += expected_variance(i);
  }
  m.variance_ratio = var_sum / expected_sum;
  return m;
}
}  // namespace

TEST_CASE("stochastic policies are unbiased with the variance theory predicts") {
  const auto x = random_vector<double>(64, 77);
  const int trials = 4000;
  double norm = 0, amax = 0;
  for (double v : x) {
    norm += v * v;
    amax = std::max(amax, std::abs(v));
  }
  norm = std::sqrt(norm);

  SECTION("qsgd") {
    const unsigned s = 4;
    auto var = [&](std::size_t i) {
      const double a = std::abs(x[i]) / norm * s;
      const double p = a - std::floor(a);
      return (norm / s) * (norm / s) * p * (1 - p);
    };
    const moments m = measure(cc::qsgd{.levels = s, .seed = 5}, x, trials, true, var);
    CHECK(m.means_ok);
    CHECK(m.variance_ratio == Approx(1.0).epsilon(0.05));
    // Control: the same draws every step (a forgotten step counter) are a biased estimator
    // over steps, and the same criterion catches it.
    const moments stuck = measure(cc::qsgd{.levels = s, .seed = 5}, x, trials, false, var);
    CHECK_FALSE(stuck.means_ok);
    CHECK(stuck.variance_ratio < 0.01);
  }
  SECTION("terngrad") {
    auto var = [&](std::size_t i) { return std::abs(x[i]) * (amax - std::abs(x[i])); };
    const moments m = measure(cc::terngrad{.seed = 5}, x, trials, true, var);
    CHECK(m.means_ok);
    CHECK(m.variance_ratio == Approx(1.0).epsilon(0.05));
    CHECK_FALSE(measure(cc::terngrad{.seed = 5}, x, trials, false, var).means_ok);
  }
  SECTION("random_k (scaled by n / k)") {
    const double n = 64, k = 16;
    auto var = [&](std::size_t i) { return x[i] * x[i] * (n / k - 1); };
    const moments m = measure(cc::random_k{.ratio = 0.25, .seed = 5}, x, trials, true, var);
    CHECK(m.means_ok);
    CHECK(m.variance_ratio == Approx(1.0).epsilon(0.05));
    CHECK_FALSE(measure(cc::random_k{.ratio = 0.25, .seed = 5}, x, trials, false, var).means_ok);
  }
  SECTION("control: a deterministic biased codec fails the mean criterion") {
    // scaled_sign has no noise; with qsgd's variance as the yardstick its means are far off
    auto var = [&](std::size_t i) {
      const double a = std::abs(x[i]) / norm * 4;
      const double p = a - std::floor(a);
      return (norm / 4) * (norm / 4) * p * (1 - p) + 1e-6;
    };
    CHECK_FALSE(measure(cc::scaled_sign{}, x, 200, true, var).means_ok);
  }
}

TEST_CASE("counter-based draws: reruns bit-identical, random_k shared, noise per rank") {
  const auto x = random_vector<float>(5000, 3);
  const cc::context a{.rank = 0, .ranks = 4, .seed = 0, .step = 9, .tensor = 1};
  cc::context b = a;
  b.rank = 2;
  // rerun: identical bytes
  CHECK(encode(cc::qsgd{.seed = 1}, x, a) == encode(cc::qsgd{.seed = 1}, x, a));
  CHECK(encode(cc::terngrad{.seed = 1}, x, a) == encode(cc::terngrad{.seed = 1}, x, a));
  // another rank: independent noise, so the bytes differ
  CHECK(encode(cc::qsgd{.seed = 1}, x, a) != encode(cc::qsgd{.seed = 1}, x, b));
  CHECK(encode(cc::terngrad{.seed = 1}, x, a) != encode(cc::terngrad{.seed = 1}, x, b));
  // another step or tensor or seed: different draws
  cc::context c = a;
  c.step = 10;
  CHECK(encode(cc::qsgd{.seed = 1}, x, a) != encode(cc::qsgd{.seed = 1}, x, c));
  CHECK(encode(cc::qsgd{.seed = 1}, x, a) != encode(cc::qsgd{.seed = 2}, x, a));
  // random_k: the same indices on every rank, other indices at another step
  auto indices = [&](const cc::context& ctx) {
    std::vector<std::size_t> idx;
    cc::random_k{.ratio = 0.01, .seed = 4}.for_each_index(
        x.size(), ctx, [&](std::size_t, std::size_t i) { idx.push_back(i); });
    return idx;
  };
  CHECK(indices(a) == indices(b));
  CHECK(indices(a).size() == 50);
  CHECK(indices(a) != indices(c));
  // the generator itself: uniform in [0, 1), and streams with nearby keys uncorrelated
  const cc::counter_rng g(cc::rng_key{1, 2, 3, 4}), h(cc::rng_key{1, 2, 3, 5});
  double mean = 0, cross = 0;
  for (std::uint64_t i = 0; i < 100000; ++i) {
    const double u = g.uniform(i), v = h.uniform(i);
    REQUIRE(u >= 0.0);
    REQUIRE(u < 1.0);
    mean += u;
    cross += (u - 0.5) * (v - 0.5);
  }
  CHECK(mean / 100000 == Approx(0.5).margin(4 * 0.2887 / std::sqrt(100000.0)));
  CHECK(cross / 100000 == Approx(0.0).margin(4 * (1.0 / 12) / std::sqrt(100000.0)));
}

TEST_CASE("bit packing round-trips codes of every width") {
  for (unsigned bits = 1; bits <= 8; ++bits) {
    const std::size_t n = 1003;
    std::vector<std::byte> buf((n * bits + 7) / 8);
    cc::detail::bit_packer p(buf.data(), bits);
    for (std::size_t i = 0; i < n; ++i) p.put((i * 2654435761u) & ((1u << bits) - 1));
    p.flush();
    cc::detail::bit_unpacker u(buf.data(), buf.size(), bits);
    bool ok = true;
    for (std::size_t i = 0; i < n; ++i)
      ok = ok && u.get() == ((i * 2654435761u) & ((1u << bits) - 1));
    CHECK(ok);
  }
}

TEST_CASE("residuals: one buffer per tensor, saved and loaded with checkpoints") {
  cc::residual<double> r;
  auto a = r.buffer(1, 10);
  auto b = r.buffer(cc::residual<double>::server_key(1), 3);
  a[4] = 2.5;
  b[2] = -1.0;
  CHECK(r.bytes() == 13 * sizeof(double));
  CHECK_THROWS_WITH(r.buffer(1, 11), Catch::Contains("compress::tensor{id}"));
  std::stringstream ss;
  r.save(ss);
  cc::residual<double> loaded;
  loaded.load(ss);
  CHECK(loaded.view(1)[4] == 2.5);
  CHECK(loaded.view(cc::residual<double>::server_key(1))[2] == -1.0);
  CHECK(loaded.bytes() == r.bytes());
  std::stringstream again;
  r.save(again);
  cc::residual<float> wrong;
  CHECK_THROWS_WITH(wrong.load(again), Catch::Contains("same type"));
  std::stringstream garbage("not a checkpoint at all, really");
  CHECK_THROWS_WITH(loaded.load(garbage), Catch::Contains("does not hold"));

  cc::power_sgd_state q{.q = {1, 2, 3, 4}, .cols = 2, .rank = 2};
  std::stringstream qs;
  q.save(qs);
  cc::power_sgd_state q2;
  q2.load(qs);
  CHECK(q2.q == q.q);
  CHECK(q2.cols == 2);
}

// ---- bulk 16-bit conversions: the vector paths (F16C, AVX2) against the scalar rounding ----

namespace {

/// Sets `chorus::set_vector_conversions` for one scope and restores what was there.
class vector_conversions_scope {
 public:
  explicit vector_conversions_scope(bool on) : before_(chorus::vector_conversions()) {
    chorus::set_vector_conversions(on);
  }
  ~vector_conversions_scope() { chorus::set_vector_conversions(before_); }
  vector_conversions_scope(const vector_conversions_scope&) = delete;
  vector_conversions_scope& operator=(const vector_conversions_scope&) = delete;

 private:
  bool before_;
};

float float_from_bits(std::uint32_t u) { return std::bit_cast<float>(u); }
std::uint32_t bits_of(float f) { return std::bit_cast<std::uint32_t>(f); }

/// Every float the 16-bit roundings can get wrong: signed zeros, infinities, NaNs with
/// payloads (quiet, signalling, payload only in the bits the narrowing drops), float
/// subnormals, and for every finite half and bfloat16 value the value itself, the midpoint
/// to the next one up and the floats one ulp either side of that midpoint (these include
/// the subnormals of both formats, max finite, and the midpoint above it that rounds to
/// inf); then random bit patterns up to `n` elements.
std::vector<float> rounding_edge_cases(std::size_t n) {
  std::vector<std::uint32_t> u = {
      0x00000000u, 0x80000000u, 0x7f800000u, 0xff800000u, 0x7fc00000u, 0xffc00000u, 0x7f800001u,
      0xff800001u, 0x7fa00000u, 0x7fbfffffu, 0x7fffffffu, 0xffffffffu, 0x7f801fffu, 0x7f802000u,
      0x7f80ffffu, 0x7f810000u, 0x00000001u, 0x80000001u, 0x007fffffu, 0x807fffffu, 0x00400000u,
      0x00800000u, 0x7f7fffffu, 0xff7fffffu, 0x477fe000u, 0x477fefffu, 0x477ff000u, 0x477ff001u,
      0x47800000u, 0x33000000u, 0x33000001u, 0x32ffffffu, 0x33800000u, 0x387fc000u, 0x38800000u};
  for (std::uint32_t h = 0; h < 0x10000u; ++h) {
    if ((h & 0x7c00u) == 0x7c00u) continue;  // inf / NaN: no next value
    const float v = chorus::detail::half_bits_to_float(static_cast<std::uint16_t>(h));
    const float next =
        (h & 0x7fffu) == 0x7bffu
            ? std::copysign(65536.0f, v)  // one step past max finite (where inf starts)
            : chorus::detail::half_bits_to_float(static_cast<std::uint16_t>(h + 1u));
    const float mid = v + (next - v) / 2;  // exact: float has 13 more significand bits
    for (float f : {v, mid, std::nextafter(mid, 0.0f), std::nextafter(mid, 2 * mid)})
      u.push_back(bits_of(f));
  }
  for (std::uint32_t b = 0; b < 0x10000u; ++b) {
    const std::uint32_t x = b << 16;
    // for NaN patterns these are NaNs with every kind of payload
    for (std::uint32_t low : {0x0000u, 0x7fffu, 0x8000u, 0x8001u, 0x0001u}) u.push_back(x | low);
  }
  std::mt19937 gen(12345);
  while (u.size() < n) u.push_back(static_cast<std::uint32_t>(gen()));
  u.resize(n);
  std::vector<float> f(n);
  for (std::size_t i = 0; i < n; ++i) f[i] = float_from_bits(u[i]);
  return f;
}

constexpr std::size_t no_difference = static_cast<std::size_t>(-1);

template <class A>
std::size_t first_difference(const std::vector<A>& a, const std::vector<A>& b, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) {
    if (std::memcmp(&a[i], &b[i], sizeof(A)) != 0) return i;
  }
  return no_difference;
}

/// The element lengths both the 16-lane body and every tail size meet, and where in the
/// data each window starts (odd starts make the input and output unaligned).
constexpr std::size_t conversion_lengths[] = {0, 1, 7, 8, 9, 15, 16, 17, 1000003};
constexpr std::size_t window_starts[] = {0, 1, 13, 250001, 600003};

/// Converts windows of `in` with `convert(in, out, n)` under the current setting and
/// compares with `reference`; the bytes around the output must stay untouched.
template <class In, class Out, class Convert>
void check_windows(const std::vector<In>& in, const std::vector<Out>& reference, Convert convert) {
  for (std::size_t len : conversion_lengths) {
    for (std::size_t start : window_starts) {
      if (start + len > in.size()) continue;
      INFO("length " << len << ", start " << start);
      constexpr std::size_t guard = 32;
      // one byte in, so that the output is unaligned too
      std::vector<unsigned char> buffer(1 + (len + guard) * sizeof(Out), 0xab);
      const std::span<unsigned char> out(buffer.data() + 1, buffer.size() - 1);
      convert(in.data() + start, out.data(), len);
      std::vector<Out> got(len), want(reference.begin() + static_cast<std::ptrdiff_t>(start),
                                      reference.begin() + static_cast<std::ptrdiff_t>(start + len));
      if (len != 0) std::memcpy(got.data(), out.data(), len * sizeof(Out));
      const std::size_t d = first_difference(got, want, len);
      if (d != no_difference) {
        std::uint64_t in_bits = 0, got_bits = 0, want_bits = 0;
        std::memcpy(&in_bits, &in[start + d], sizeof(In));
        std::memcpy(&got_bits, &got[d], sizeof(Out));
        std::memcpy(&want_bits, &want[d], sizeof(Out));
        INFO("element " << d << ": input bits 0x" << std::hex << in_bits << ", got 0x" << got_bits
                        << ", scalar 0x" << want_bits);
        CHECK(d == no_difference);
      }
      std::size_t overrun = buffer[0] != 0xab;
      for (std::size_t i = len * sizeof(Out); i < out.size(); ++i) overrun += out[i] != 0xab;
      CHECK(overrun == 0);
    }
  }
}

template <class W>
void check_float16_conversions(const std::vector<float>& edges) {
  // decode: every 16-bit pattern, repeated in a scrambled order to fill 1000003 elements
  std::vector<std::uint16_t> patterns(1000003);
  for (std::size_t i = 0; i < patterns.size(); ++i) {
    patterns[i] = static_cast<std::uint16_t>(i < 0x10000 ? i : (i * 40503u) & 0xffffu);
  }
  std::vector<float> widened(patterns.size());
  for (std::size_t i = 0; i < patterns.size(); ++i) {
    widened[i] = static_cast<float>(W::from_bits(patterns[i]));
  }
  std::vector<std::uint16_t> rounded(edges.size());
  for (std::size_t i = 0; i < edges.size(); ++i) rounded[i] = W(edges[i]).bits;

  for (bool vector : {true, false}) {
    const vector_conversions_scope scope(vector);
    INFO((vector ? "vector path allowed" : "scalar path forced"));
    if (!vector) CHECK(chorus::float16_kernel_for<W>() == chorus::float16_kernel::scalar);
    check_windows(patterns, widened,
                  [](const std::uint16_t* in, unsigned char* out, std::size_t n) {
                    std::vector<float> f(n);
                    chorus::from_float16<W>(reinterpret_cast<const std::byte*>(in), f.data(), n);
                    if (n != 0) std::memcpy(out, f.data(), n * sizeof(float));
                  });
    check_windows(edges, rounded, [](const float* in, unsigned char* out, std::size_t n) {
      chorus::to_float16<W>(in, reinterpret_cast<std::byte*>(out), n);
    });
  }
}

}  // namespace

TEST_CASE("bulk half/bfloat16 conversions equal the scalar rounding bit for bit, both paths") {
  const auto edges = rounding_edge_cases(1000003);
  SECTION("half (F16C where the CPU has it)") { check_float16_conversions<chorus::half>(edges); }
  SECTION("bfloat16 (AVX2 where the CPU has it)") {
    check_float16_conversions<chorus::bfloat16>(edges);
  }
}

TEST_CASE("the vector conversion kernels are the ones the CPU offers") {
  const vector_conversions_scope scope(true);
#if CHORUS_FLOAT16_X86_DISPATCH && defined(__GNUC__) && !defined(__clang__)
  // GCC's runtime detection, independent of the cpuid code in float16_convert.hpp
  const bool f16c = __builtin_cpu_supports("f16c") && __builtin_cpu_supports("avx");
  CHECK((chorus::float16_kernel_for<chorus::half>() == chorus::float16_kernel::f16c) == f16c);
  CHECK((chorus::float16_kernel_for<chorus::bfloat16>() == chorus::float16_kernel::avx2) ==
        static_cast<bool>(__builtin_cpu_supports("avx2")));
#elif !CHORUS_FLOAT16_X86_DISPATCH  // no vector paths compiled in
  CHECK(chorus::float16_kernel_for<chorus::half>() == chorus::float16_kernel::scalar);
  CHECK(chorus::float16_kernel_for<chorus::bfloat16>() == chorus::float16_kernel::scalar);
#endif
  // the environment decides the default: CHORUS_FLOAT16_SCALAR=1 forces the scalar loops
  // (the test cases here restore any setting they change)
  const vector_conversions_scope off(false);
  CHECK(chorus::float16_kernel_for<chorus::half>() == chorus::float16_kernel::scalar);
  CHECK(chorus::float16_kernel_for<chorus::bfloat16>() == chorus::float16_kernel::scalar);
}

TEST_CASE("CHORUS_FLOAT16_SCALAR decides whether the vector conversions start allowed") {
  const char* e = std::getenv("CHORUS_FLOAT16_SCALAR");
  const bool expected = e == nullptr || *e == '\0' || std::string_view(e) == "0";
  CHECK(chorus::vector_conversions() == expected);
}

TEMPLATE_TEST_CASE("cast encode and decode_add give the element-wise conversion's bits", "", float,
                   double) {
  using T = TestType;
  const auto edges = rounding_edge_cases(1000003);
  std::vector<T> x(edges.size());
  for (std::size_t i = 0; i < x.size(); ++i) x[i] = static_cast<T>(edges[i]);
  const cc::context ctx{.rank = 1, .ranks = 3};
  auto run = [&](auto codec) {
    using W = typename decltype(codec)::template wire_t<T>;
    const T down = codec.pre_divide ? T(1) / T(3) : T(1), up = codec.pre_divide ? T(3) : T(1);
    std::vector<W> want(x.size());
    for (std::size_t i = 0; i < x.size(); ++i) {
      want[i] = W(static_cast<float>(codec.pre_divide ? x[i] * down : x[i]));
    }
    std::vector<T> y0 = random_vector<T>(x.size(), 3), want_y = y0;
    for (std::size_t i = 0; i < x.size(); ++i) want_y[i] += static_cast<T>(float(want[i])) * up;
    for (bool vector : {true, false}) {
      const vector_conversions_scope scope(vector);
      INFO((vector ? "vector path allowed" : "scalar path forced")
           << (codec.pre_divide ? ", pre-dividing" : ""));
      for (std::size_t len : conversion_lengths) {
        INFO("length " << len);
        std::vector<W> wire(len);
        codec.encode(std::span<const T>(x.data(), len), std::as_writable_bytes(std::span<W>(wire)),
                     ctx);
        CHECK(first_difference(wire, want, len) == no_difference);
        std::vector<T> y(y0.begin(), y0.begin() + static_cast<std::ptrdiff_t>(len));
        codec.decode_add(std::as_bytes(std::span<const W>(want.data(), len)), std::span<T>(y), ctx);
        std::size_t wrong = 0;  // NaN + y is NaN either way; its payload is the adder's business
        for (std::size_t i = 0; i < len; ++i) {
          wrong += std::isnan(want_y[i]) ? !std::isnan(y[i])
                                         : std::memcmp(&y[i], &want_y[i], sizeof(T)) != 0;
        }
        CHECK(wrong == 0);
      }
    }
  };
  run(cc::cast<chorus::half>{});
  run(cc::cast<chorus::half>{.pre_divide = true});
  run(cc::cast<chorus::bfloat16>{});
  run(cc::cast<chorus::bfloat16>{.pre_divide = true});
}

// ---- the codecs' vector kernels (AVX, AVX2) against their scalar loops ------------------

namespace {
/// Gradient-like values (most of them in a normal distribution, a run of exact ties) and,
/// at fixed places, the values a kernel can get wrong: NaNs of both signs, infinities,
/// signed zeros, subnormals, and blocks that are all zero.
std::vector<float> codec_edge_cases(std::size_t n) {
  std::mt19937 gen(2024);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> x(n);
  for (auto& v : x) v = gen() % 9 == 0 ? 0.5f : normal(gen);
  const float specials[] = {std::numeric_limits<float>::quiet_NaN(),
                            -std::numeric_limits<float>::quiet_NaN(),
                            std::numeric_limits<float>::infinity(),
                            -std::numeric_limits<float>::infinity(),
                            0.0f,
                            -0.0f,
                            1e-45f,
                            -1e-40f};
  for (std::size_t i = 0; i < std::size(specials) && 100 + 37 * i < n; ++i) {
    x[100 + 37 * i] = specials[i];
  }
  for (std::size_t i = 2048; i < std::min(n, std::size_t{2048 + 300}); ++i) x[i] = 0.0f;
  return x;
}

/// `codec`'s wire for `x` and its decode_add onto `y`, with the vector paths on or off.
template <class C>
std::pair<std::vector<std::byte>, std::vector<float>> encode_decode(const C& codec, bool vector,
                                                                    std::span<const float> x,
                                                                    std::vector<float> y) {
  const vector_conversions_scope scope(vector);
  std::vector<std::byte> wire(codec.template wire_bytes<float>(x.size()));
  codec.encode(x, std::span<std::byte>(wire), cc::context{});
  codec.decode_add(std::span<const std::byte>(wire), std::span<float>(y), cc::context{});
  return {std::move(wire), std::move(y)};
}
}  // namespace

TEST_CASE("block_quant and the one-bit codecs give the same bits on the vector and scalar paths") {
  const auto x = codec_edge_cases(100003);
  const auto y0 = random_vector<float>(x.size(), 5);
  auto compare = [&](const auto& codec, std::size_t start, std::size_t len) {
    const std::span<const float> in(x.data() + start, len);
    const std::vector<float> y(y0.begin(), y0.begin() + static_cast<std::ptrdiff_t>(len));
    const auto [wire_v, y_v] = encode_decode(codec, true, in, y);
    const auto [wire_s, y_s] = encode_decode(codec, false, in, y);
    CHECK(wire_v == wire_s);
    CHECK((len == 0 || std::memcmp(y_v.data(), y_s.data(), len * sizeof(float)) == 0));
  };
  for (std::size_t len : {0u, 1u, 7u, 8u, 9u, 31u, 32u, 33u, 255u, 257u, 4099u, 99000u}) {
    for (std::size_t start : {0u, 1u, 13u}) {
      INFO("length " << len << ", start " << start);
      for (std::size_t block : {1u, 7u, 32u, 256u, 1000u}) {
        INFO("block " << block);
        compare(cc::block_quant<std::int8_t>{.block = block}, start, len);
      }
      compare(cc::scaled_sign{}, start, len);
      compare(cc::two_means{}, start, len);
    }
  }
}

TEMPLATE_TEST_CASE("threshold_top_k selects exactly what top_k selects, NaNs and ties included", "",
                   float, double) {
  using T = TestType;
  const auto edges = codec_edge_cases(300007);
  for (bool vector : {true, false}) {
    const vector_conversions_scope scope(vector);
    for (std::size_t n : {1u, 7u, 100u, 1000u, 20000u, 300007u}) {
      for (double ratio : {0.001, 0.01, 0.1, 0.5, 1.0}) {
        INFO((vector ? "vector" : "scalar") << " path, n " << n << ", ratio " << ratio);
        std::vector<T> x(edges.begin(), edges.begin() + static_cast<std::ptrdiff_t>(n));
        const cc::threshold_top_k sampled{.ratio = ratio};
        const cc::top_k exact{.ratio = ratio};
        std::vector<std::byte> a(sampled.wire_bytes<T>(n)), b(exact.wire_bytes<T>(n));
        sampled.encode(std::span<const T>(x), std::span<std::byte>(a), cc::context{});
        exact.encode(std::span<const T>(x), std::span<std::byte>(b), cc::context{});
        CHECK(a == b);
      }
    }
  }
}

// ---- the stochastic codecs' vector draws (AVX-512, AVX2) against the scalar loops --------

namespace reference {
// The draws and the stochastic codecs exactly as they were before their vector kernels
// (issue 24), copied here so that the comparisons below fail if any path drifts from them.
// The one change: a level whose |x| inv + u is NaN is 0 and one at or above `levels`
// (+inf included) is `levels`, where the old code converted NaN and inf to an integer
// (undefined behaviour). Bits are packed one at a time, independently of `bit_packer`.

constexpr std::uint64_t mix64(std::uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

struct counter_rng {
  explicit counter_rng(const cc::rng_key& k)
      : key(mix64(mix64(mix64(mix64(k.seed ^ 0x243f6a8885a308d3ull) ^ k.step) ^ k.tensor) ^
                  k.rank)) {}
  std::uint64_t bits(std::uint64_t i) const {
    return mix64(mix64(i * 0x9e3779b97f4a7c15ull + key) ^ key);
  }
  double uniform(std::uint64_t i) const { return static_cast<double>(bits(i) >> 11) * 0x1.0p-53; }
  std::uint64_t key;
};

std::vector<std::size_t> random_k_indices(std::size_t n, double ratio, const cc::rng_key& key) {
  const std::size_t k = cc::detail::kept("random_k", ratio, n);
  const counter_rng rng(key);
  std::vector<std::size_t> kept;
  std::size_t chosen = 0;
  for (std::size_t i = 0; i < n && chosen < k; ++i) {
    if (static_cast<double>(n - i) * rng.uniform(i) < static_cast<double>(k - chosen)) {
      kept.push_back(i);
      ++chosen;
    }
  }
  return kept;
}

unsigned bits_for(unsigned levels) { return 1u + static_cast<unsigned>(std::bit_width(levels)); }

template <class T>
std::vector<std::byte> stochastic_encode(std::span<const T> x, unsigned levels, bool max_norm,
                                         const cc::rng_key& key) {
  const unsigned b = bits_for(levels);
  std::vector<std::byte> wire(sizeof(T) + (x.size() * b + 7) / 8, std::byte{0});
  T scale = 0;
  if (max_norm) {
    for (const T v : x) scale = std::max(scale, v < 0 ? -v : v);
  } else {
    T sq = 0;
    for (const T v : x) sq += v * v;
    scale = std::sqrt(sq);
  }
  std::memcpy(wire.data(), &scale, sizeof(T));
  const counter_rng rng(key);
  const T s = static_cast<T>(levels);
  const T inv = scale > 0 ? s / scale : T(0);
  for (std::size_t i = 0; i < x.size(); ++i) {
    const T a = x[i] < 0 ? -x[i] : x[i];
    const T f = std::floor(a * inv + static_cast<T>(rng.uniform(i)));
    const std::uint64_t level = f != f ? 0 : f >= s ? levels : static_cast<std::uint64_t>(f);
    const std::uint64_t code = (level << 1) | (x[i] < 0 ? 1u : 0u);
    for (unsigned bit = 0; bit < b; ++bit) {
      if ((code >> bit) & 1u) {
        const std::size_t at = i * b + bit;
        wire[sizeof(T) + at / 8] |= std::byte{static_cast<unsigned char>(1u << (at % 8))};
      }
    }
  }
  return wire;
}

template <class T>
void stochastic_decode_add(const std::vector<std::byte>& wire, std::vector<T>& y, unsigned levels) {
  const unsigned b = bits_for(levels);
  T scale;
  std::memcpy(&scale, wire.data(), sizeof(T));
  const T step = scale / static_cast<T>(levels);
  for (std::size_t i = 0; i < y.size(); ++i) {
    std::uint64_t c = 0;
    for (unsigned bit = 0; bit < b; ++bit) {
      const std::size_t at = i * b + bit;
      c |= static_cast<std::uint64_t>(
               (std::to_integer<unsigned>(wire[sizeof(T) + at / 8]) >> (at % 8)) & 1u)
           << bit;
    }
    const T mag = static_cast<T>(c >> 1) * step;
    y[i] += (c & 1u) ? -mag : mag;
  }
}
}  // namespace reference

namespace {
using draw_kernel = cc::detail::draw_kernel;

/// The draw kernels this CPU can run, widest first.
std::vector<draw_kernel> draw_kernels() {
  std::vector<draw_kernel> kernels;
#if CHORUS_FLOAT16_X86_DISPATCH
  if (cc::detail::detect_avx512_draws()) kernels.push_back(draw_kernel::avx512);
  if (chorus::detail::cpu_float16().avx2) kernels.push_back(draw_kernel::avx2);
#endif
  kernels.push_back(draw_kernel::scalar);
  return kernels;
}

const char* kernel_name(draw_kernel k) {
  return k == draw_kernel::avx512 ? "AVX-512" : k == draw_kernel::avx2 ? "AVX2" : "scalar";
}

/// Runs the stochastic codecs on `kernel` (scalar: the vector paths off) for one scope.
class draw_kernel_scope {
 public:
  explicit draw_kernel_scope(draw_kernel k)
      : vector_(k != draw_kernel::scalar),
        before_(cc::detail::widest_draw_kernel().load(std::memory_order_relaxed)) {
    cc::detail::widest_draw_kernel().store(k, std::memory_order_relaxed);
  }
  ~draw_kernel_scope() { cc::detail::widest_draw_kernel().store(before_); }
  draw_kernel_scope(const draw_kernel_scope&) = delete;
  draw_kernel_scope& operator=(const draw_kernel_scope&) = delete;

 private:
  vector_conversions_scope vector_;
  draw_kernel before_;
};

/// The same bits, except that two NaNs count as equal: the payload of a NaN that an add
/// propagates depends on the order in which the compiler puts its operands.
template <class T>
std::size_t first_difference_nan_equal(const T* a, const T* b, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) {
    if (std::isnan(a[i]) && std::isnan(b[i])) continue;
    if (std::memcmp(&a[i], &b[i], sizeof(T)) != 0) return i;
  }
  return no_difference;
}

/// Wires of qsgd or terngrad: the scale (NaN equal to NaN), then the codes byte for byte.
template <class T>
bool same_level_wire(const std::vector<std::byte>& a, const std::vector<std::byte>& b) {
  if (a.size() != b.size() || a.size() < sizeof(T)) return false;
  T sa, sb;
  std::memcpy(&sa, a.data(), sizeof(T));
  std::memcpy(&sb, b.data(), sizeof(T));
  if (first_difference_nan_equal(&sa, &sb, 1) != no_difference) return false;
  return std::equal(a.begin() + sizeof(T), a.end(), b.begin() + sizeof(T));
}

/// The inputs of the stochastic comparisons, each of `n` elements: gradient-like values;
/// the edge cases of `codec_edge_cases` (NaNs, infinities, signed zeros, subnormals); the
/// same values with NaNs and no infinity (terngrad's maximum skips the NaNs, so they meet a
/// real scale); subnormals only (for terngrad the scale is so small that levels / scale is
/// +inf: every product is +inf or, for a zero, NaN); and many elements at the maximum
/// magnitude (|x| inv + u can reach levels + 1 there, which the clamp catches).
template <class T>
std::vector<std::vector<T>> stochastic_inputs(std::size_t n) {
  std::vector<std::vector<T>> inputs;
  inputs.push_back(random_vector<T>(n, 17));
  const auto edges = codec_edge_cases(n);
  inputs.emplace_back(edges.begin(), edges.end());
  auto with_nans = random_vector<T>(n, 18);
  for (std::size_t i = 3; i < n; i += 11)
    with_nans[i] = (i % 2 ? 1 : -1) * std::numeric_limits<T>::quiet_NaN();
  inputs.push_back(with_nans);
  std::vector<T> tiny(n);
  for (std::size_t i = 0; i < n; ++i) {
    tiny[i] = i % 5 == 0 ? T(0) : (i % 3 == 0 ? -1 : 1) * std::numeric_limits<T>::denorm_min();
  }
  inputs.push_back(tiny);
  auto at_max = random_vector<T>(n, 19);
  for (std::size_t i = 0; i < n; i += 2) at_max[i] = i % 4 == 0 ? T(4) : T(-4);
  inputs.push_back(at_max);
  return inputs;
}

/// Every length from 0 to 70 (the kernels' bodies, their 32-element stop and every tail),
/// then a few long ones.
std::vector<std::size_t> stochastic_lengths() {
  std::vector<std::size_t> lengths;
  for (std::size_t len = 0; len <= 70; ++len) lengths.push_back(len);
  for (std::size_t len : {127u, 128u, 129u, 1000u, 4099u, 65541u}) lengths.push_back(len);
  return lengths;
}
}  // namespace

TEST_CASE("counter_rng::uniforms draws what uniform draws, on every kernel") {
  const cc::counter_rng rng(cc::rng_key{3, 1, 4, 1});
  const reference::counter_rng ref(cc::rng_key{3, 1, 4, 1});
  for (const draw_kernel kernel : draw_kernels()) {
    const draw_kernel_scope scope(kernel);
    INFO(kernel_name(kernel) << " draws");
    CHECK(cc::detail::draw_kernel_now() == kernel);
    for (std::uint64_t first : {std::uint64_t{0}, std::uint64_t{5}, ~std::uint64_t{0} - 20}) {
      for (std::size_t n : {0u, 1u, 3u, 4u, 5u, 8u, 9u, 31u, 1000u}) {
        std::vector<double> got(n), want(n);
        rng.uniforms(first, got);
        for (std::size_t j = 0; j < n; ++j) want[j] = ref.uniform(first + j);
        INFO("first " << first << ", " << n << " draws");
        CHECK(first_difference(got, want, n) == no_difference);
      }
    }
  }
}

TEMPLATE_TEST_CASE("random_k's vector walks keep the indices and bits of the scalar walk", "",
                   float, double) {
  using T = TestType;
  const auto values = random_vector<T>(300011, 23);
  const auto y0 = random_vector<T>(values.size(), 29);
  std::vector<std::size_t> lengths = stochastic_lengths();
  lengths.push_back(300000);
  const cc::context ctx{.rank = 2, .ranks = 4, .seed = 7, .step = 3, .tensor = 5};
  for (const double ratio : {1e-4, 0.01, 0.1, 0.5, 1.0}) {
    for (const std::size_t len : lengths) {
      for (const std::size_t start : {0u, 1u, 3u}) {
        if (start + len > values.size()) continue;
        const std::span<const T> x(values.data() + start, len);
        const cc::rng_key key = ctx.shared_key(11);
        const auto kept = reference::random_k_indices(len, ratio, key);
        for (const bool scaled : {true, false}) {
          // the old encode and decode_add, on the reference indices
          const T scale =
              (len == 0 || !scaled) ? T(1) : static_cast<T>(len) / static_cast<T>(kept.size());
          std::vector<T> want_wire(kept.size());
          for (std::size_t j = 0; j < kept.size(); ++j) want_wire[j] = x[kept[j]] * scale;
          std::vector<T> want_y(y0.begin(), y0.begin() + static_cast<std::ptrdiff_t>(len));
          for (std::size_t j = 0; j < kept.size(); ++j) want_y[kept[j]] += want_wire[j];
          for (const draw_kernel kernel : draw_kernels()) {
            const draw_kernel_scope scope(kernel);
            INFO(kernel_name(kernel) << ", ratio " << ratio << ", length " << len << ", start "
                                     << start << (scaled ? ", scaled" : ", unscaled"));
            std::vector<T> wire(kept.size());
            // one byte in, so that the wire is unaligned too
            std::vector<std::byte> raw(1 + kept.size() * sizeof(T));
            const std::span<std::byte> w(raw.data() + 1, kept.size() * sizeof(T));
            std::vector<T> y(y0.begin(), y0.begin() + static_cast<std::ptrdiff_t>(len));
            if (scaled) {
              const cc::random_k c{.ratio = ratio, .seed = 11};
              c.encode(x, w, ctx);
              c.decode_add(std::span<const std::byte>(w), std::span<T>(y), ctx);
            } else {
              const cc::random_k_unscaled c{.ratio = ratio, .seed = 11};
              c.encode(x, w, ctx);
              c.decode_add(std::span<const std::byte>(w), std::span<T>(y), ctx);
            }
            if (!wire.empty()) std::memcpy(wire.data(), w.data(), w.size());
            CHECK(first_difference(wire, want_wire, wire.size()) == no_difference);
            CHECK(first_difference(y, want_y, len) == no_difference);
          }
        }
      }
    }
  }
}

TEMPLATE_TEST_CASE("qsgd and terngrad give the reference bits on every draw kernel", "", float,
                   double) {
  using T = TestType;
  const cc::context ctx{.rank = 1, .ranks = 4, .seed = 3, .step = 8, .tensor = 2};
  const auto lengths = stochastic_lengths();
  const auto inputs = stochastic_inputs<T>(lengths.back() + 3);
  const auto y0 = random_vector<T>(inputs[0].size(), 31);
  auto run = [&](const auto& codec, unsigned levels, bool max_norm) {
    for (std::size_t family = 0; family < inputs.size(); ++family) {
      for (const std::size_t len : lengths) {
        for (const std::size_t start : {0u, 1u, 3u}) {
          const std::span<const T> x(inputs[family].data() + start, len);
          const auto want =
              reference::stochastic_encode(x, levels, max_norm, ctx.private_key(codec.seed));
          std::vector<T> want_y(y0.begin(), y0.begin() + static_cast<std::ptrdiff_t>(len));
          reference::stochastic_decode_add(want, want_y, levels);
          for (const draw_kernel kernel : draw_kernels()) {
            const draw_kernel_scope scope(kernel);
            INFO(kernel_name(kernel) << ", levels " << levels << ", input " << family << ", length "
                                     << len << ", start " << start);
            // one byte in, so that the wire is unaligned too
            std::vector<std::byte> raw(1 + want.size() + 16, std::byte{0xab});
            const std::span<std::byte> w(raw.data() + 1, want.size());
            codec.encode(x, w, ctx);
            const std::vector<std::byte> got(w.begin(), w.end());
            CHECK(same_level_wire<T>(got, want));
            std::size_t overrun = raw[0] != std::byte{0xab};
            for (std::size_t i = 1 + want.size(); i < raw.size(); ++i)
              overrun += raw[i] != std::byte{0xab};
            CHECK(overrun == 0);
            // decode the reference wire, so that a wrong encode does not hide a wrong decode
            std::vector<std::byte> in(1 + want.size());
            std::copy(want.begin(), want.end(), in.begin() + 1);
            std::vector<T> y(y0.begin(), y0.begin() + static_cast<std::ptrdiff_t>(len));
            codec.decode_add(std::span<const std::byte>(in.data() + 1, want.size()),
                             std::span<T>(y), ctx);
            CHECK(first_difference_nan_equal(y.data(), want_y.data(), len) == no_difference);
          }
        }
      }
    }
  };
  for (const unsigned levels : {1u, 2u, 3u, 7u, 16u, 31u, 64u, 127u}) {
    run(cc::qsgd{.levels = levels, .seed = 5}, levels, false);
  }
  run(cc::terngrad{.seed = 5}, 1, true);
}

TEMPLATE_TEST_CASE("qsgd and terngrad encode a NaN as level 0, on every draw kernel", "", float,
                   double) {
  using T = TestType;
  const T nan = std::numeric_limits<T>::quiet_NaN(), tiny = std::numeric_limits<T>::denorm_min();
  // 40 elements, so that the vector kernels (which stop 32 short of the end) see the first 8
  std::vector<T> x(40, T(0.25));
  x[0] = nan;
  x[1] = -nan;
  x[2] = T(1);
  x[39] = nan;
  // terngrad under a subnormal scale: levels / scale is +inf, so a nonzero element's
  // product is +inf (the top level) and a zero's is inf * 0 = NaN (level 0)
  std::vector<T> small(40, tiny);
  small[1] = T(0);
  small[2] = -tiny;
  small[38] = T(0);
  small[39] = -T(0);
  auto codes = [](const std::vector<std::byte>& wire, unsigned bits) {
    std::vector<unsigned> c;
    cc::detail::bit_unpacker u(wire.data() + sizeof(T), wire.size() - sizeof(T), bits);
    for (std::size_t i = 0; i < 40; ++i) c.push_back(static_cast<unsigned>(u.get()));
    return c;
  };
  for (const draw_kernel kernel : draw_kernels()) {
    const draw_kernel_scope scope(kernel);
    INFO(kernel_name(kernel) << " draws");
    const auto t = codes(encode(cc::terngrad{.seed = 1}, x), 2);
    CHECK(t[0] == 0);  // NaN: level 0, sign 0
    CHECK(t[1] == 0);  // -NaN too: its sign bit is not `x < 0`
    CHECK(t[2] == 2);  // the maximum: level 1 whatever the draw
    CHECK(t[39] == 0);
    const auto q = codes(encode(cc::qsgd{.levels = 16, .seed = 1}, x), 6);
    for (const unsigned c : q) CHECK(c == 0);  // the norm is NaN, so every product is NaN
    const auto s = codes(encode(cc::terngrad{.seed = 1}, small), 2);
    CHECK(s[0] == 2);
    CHECK(s[1] == 0);
    CHECK(s[2] == 3);
    CHECK(s[38] == 0);
    CHECK(s[39] == 0);
    // decode: a NaN element adds +0 times the scale
    std::vector<T> y(40, T(1));
    const auto w = encode(cc::terngrad{.seed = 1}, x);
    cc::terngrad{}.decode_add(std::span<const std::byte>(w), std::span<T>(y), cc::context{});
    CHECK(y[0] == T(1));
    CHECK(y[1] == T(1));
    CHECK(y[2] == T(2));
  }
}

TEMPLATE_TEST_CASE("two_means's scales are the sums of the element-by-element branching loop", "",
                   float, double) {
  // The encode adds every element to both sums (the other sign's as +0); these are the
  // sums of the loop that branched on each sign, bit for bit, specials included.
  using T = TestType;
  const auto edges = codec_edge_cases(20011);
  const std::vector<T> x(edges.begin(), edges.end());
  for (std::size_t start : {0u, 100u, 137u, 211u, 285u, 2000u}) {
    for (std::size_t len : {0u, 1u, 2u, 5u, 40u, 300u, 5000u}) {
      const std::span<const T> in(x.data() + start, len);
      T pos = 0, neg = 0;
      std::size_t npos = 0;
      for (const T v : in) {
        if (v < T(0)) {
          neg += v;
        } else {
          pos += v;
          ++npos;
        }
      }
      const T want[2] = {npos ? pos / static_cast<T>(npos) : T(0),
                         len - npos ? neg / static_cast<T>(len - npos) : T(0)};
      std::vector<std::byte> wire(cc::two_means{}.wire_bytes<T>(len));
      cc::two_means{}.encode(in, std::span<std::byte>(wire), cc::context{});
      INFO("start " << start << ", length " << len);
      CHECK(std::memcmp(wire.data(), want, sizeof want) == 0);
    }
  }
}

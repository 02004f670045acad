// chorus::half and chorus::bfloat16: conversions round to nearest even, specials survive,
// and arithmetic goes through float.
#include <chorus/core/ops.hpp>
#include <chorus/core/reduce_elements.hpp>
#include <chorus/core/types.hpp>

#include <catch2/catch.hpp>

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

namespace {

// Independent reference: the nearest representable value by exhaustive candidate search
// over the 16-bit patterns of the same sign (ties to the even pattern).
template <class F16>
std::uint16_t nearest_bits(float f) {
  const std::uint16_t sign = std::signbit(f) ? 0x8000 : 0;
  const double target = std::fabs(static_cast<double>(f));
  std::uint16_t best = sign;
  double best_err = std::numeric_limits<double>::infinity();
  for (std::uint32_t m = 0; m < 0x8000; ++m) {
    const F16 c = F16::from_bits(static_cast<std::uint16_t>(m));
    const double v = static_cast<double>(float(c));
    if (std::isnan(v)) continue;
    const double err = std::fabs(v - target);
    if (err < best_err || (err == best_err && (m & 1u) == 0)) {
      best_err = err;
      best = static_cast<std::uint16_t>(sign | m);
    }
  }
  return best;
}

float random_float(std::uint32_t& x, int min_exp, int max_exp) {
  x = x * 1664525u + 1013904223u;
  const std::uint32_t mant = x >> 9;
  x = x * 1664525u + 1013904223u;
  const int e = min_exp + static_cast<int>(x % static_cast<std::uint32_t>(max_exp - min_exp + 1));
  const float sign = (x & 0x80000000u) ? -1.0f : 1.0f;
  return sign * std::ldexp(1.0f + static_cast<float>(mant) / 8388608.0f, e);
}

}  // namespace

TEMPLATE_TEST_CASE("16-bit floats: every pattern survives a round trip through float", "",
                   chorus::half, chorus::bfloat16) {
  for (std::uint32_t b = 0; b < 0x10000; ++b) {
    const auto h = TestType::from_bits(static_cast<std::uint16_t>(b));
    const float f = float(h);
    if (std::isnan(f)) {
      REQUIRE(std::isnan(float(TestType(f))));
    } else {
      REQUIRE(TestType(f).bits == b);
    }
  }
}

TEST_CASE("half: float to half rounds to nearest even, incl. subnormals and overflow") {
  std::uint32_t x = 7;
  for (int i = 0; i < 1000; ++i) {
    const float f = random_float(x, -26, 15);
    INFO("f = " << f);
    REQUIRE(chorus::half(f).bits == nearest_bits<chorus::half>(f));
  }
  CHECK(chorus::half(65504.0f).bits == 0x7bff);
  CHECK(chorus::half(65519.0f).bits == 0x7bff);  // below the halfway point: max finite
  CHECK(chorus::half(65520.0f).bits == 0x7c00);  // halfway rounds to even: infinity
  CHECK(chorus::half(std::numeric_limits<float>::infinity()).bits == 0x7c00);
  CHECK(chorus::half(-0.0f).bits == 0x8000);
  CHECK(chorus::half(5.9604644775390625e-8f).bits == 0x0001);   // smallest subnormal
  CHECK(chorus::half(2.98023223876953125e-8f).bits == 0x0000);  // halfway to it: even (0)
  CHECK(std::isnan(float(chorus::half(std::numeric_limits<float>::quiet_NaN()))));
}

TEST_CASE("bfloat16: float to bfloat16 rounds to nearest even") {
  std::uint32_t x = 11;
  for (int i = 0; i < 1000; ++i) {
    const float f = random_float(x, -130, 127);
    INFO("f = " << f);
    REQUIRE(chorus::bfloat16(f).bits == nearest_bits<chorus::bfloat16>(f));
  }
  CHECK(chorus::bfloat16(1.0f).bits == 0x3f80);
  CHECK(std::isnan(float(chorus::bfloat16(std::numeric_limits<float>::quiet_NaN()))));
}

TEST_CASE("16-bit floats compute in float and round once per operation") {
  const chorus::half a(1.0f), b(0.0004f);
  // 1 + 0.0004 is below half an ulp of 1 in half precision: rounds back to 1
  CHECK(float(a + b) == 1.0f);
  CHECK(float(chorus::half(3.0f) * chorus::half(0.5f)) == 1.5f);
  CHECK(float(chorus::bfloat16(2.0f) - chorus::bfloat16(0.5f)) == 1.5f);
  CHECK(chorus::half(2.0f) > chorus::half(1.0f));
}

/// Scope in which the vector float16 conversions are on or off, restoring the setting after.
struct conversions_scope {
  bool before = chorus::vector_conversions();
  explicit conversions_scope(bool on) { chorus::set_vector_conversions(on); }
  ~conversions_scope() { chorus::set_vector_conversions(before); }
  conversions_scope(const conversions_scope&) = delete;
  conversions_scope& operator=(const conversions_scope&) = delete;
};

TEMPLATE_TEST_CASE("16-bit sums and products in bulk equal the element-wise rounding bit for bit",
                   "", chorus::half, chorus::bfloat16) {
  using W = TestType;
  // Every 16-bit pattern (NaNs, infinities, subnormals, zeros of both signs) against 24
  // partners each: a pseudo-random pattern, its own bits, and its negation.
  std::vector<W> a, b;
  std::uint32_t state = 12345;
  for (std::uint32_t x = 0; x < 65536; ++x) {
    for (int k = 0; k < 22; ++k) {
      state = state * 1664525u + 1013904223u;
      a.push_back(W::from_bits(static_cast<std::uint16_t>(x)));
      b.push_back(W::from_bits(static_cast<std::uint16_t>(state >> 16)));
    }
    a.push_back(W::from_bits(static_cast<std::uint16_t>(x)));
    b.push_back(W::from_bits(static_cast<std::uint16_t>(x)));
    a.push_back(W::from_bits(static_cast<std::uint16_t>(x)));
    b.push_back(W::from_bits(static_cast<std::uint16_t>(x ^ 0x8000u)));
  }
  for (bool vector : {true, false}) {
    const conversions_scope scope(vector);
    INFO("vector conversions " << (vector ? "on" : "off"));
    std::vector<W> sum(a.size()), product(a.size()), in_place = a;
    chorus::detail::reduce_elements(sum.data(), a.data(), b.data(), a.size(), chorus::plus{});
    chorus::detail::reduce_elements(product.data(), a.data(), b.data(), a.size(),
                                    chorus::multiplies{});
    chorus::detail::reduce_elements(in_place.data(), in_place.data(), b.data(), a.size(),
                                    chorus::plus{});
    // Bits must match, except that when both inputs are NaN, IEEE 754 leaves open which
    // one's payload (and sign) comes out, and compilers order the operands as they like.
    auto same = [](W got, W want, W x, W y) {
      if (std::isnan(float(x)) && std::isnan(float(y))) return std::isnan(float(got));
      return got.bits == want.bits;
    };
    std::size_t wrong = 0;
    for (std::size_t i = 0; i < a.size(); ++i) {
      const W s(float(a[i]) + float(b[i])), p(float(a[i]) * float(b[i]));
      if (!same(sum[i], s, a[i], b[i]) || !same(product[i], p, a[i], b[i]) ||
          !same(in_place[i], s, a[i], b[i])) {
        if (wrong++ < 5) {
          UNSCOPED_INFO("a " << a[i].bits << " b " << b[i].bits << ": sum " << sum[i].bits
                             << " want " << s.bits << ", product " << product[i].bits << " want "
                             << p.bits);
        }
      }
    }
    CHECK(wrong == 0);
  }
}

TEMPLATE_TEST_CASE("16-bit minimum and maximum in bulk equal the element-wise ops bit for bit", "",
                   chorus::half, chorus::bfloat16) {
  using W = TestType;
  // Every 16-bit pattern against 23 partners (pseudo-random, itself, its negation), both
  // ways round; the ops pick one input's bits, NaNs included, so every bit must match.
  std::vector<W> a, b;
  std::uint32_t state = 777;
  for (std::uint32_t x = 0; x < 65536; ++x) {
    const auto bits = [](std::uint32_t v) { return W::from_bits(static_cast<std::uint16_t>(v)); };
    for (int k = 0; k < 20; ++k) {
      state = state * 1664525u + 1013904223u;
      a.push_back(bits(x));
      b.push_back(bits(state >> 16));
    }
    a.push_back(bits(x));
    b.push_back(bits(x));
    a.push_back(bits(x));
    b.push_back(bits(x ^ 0x8000u));
    a.push_back(bits(state >> 16));
    b.push_back(bits(x));
  }
  for (bool vector : {true, false}) {
    const conversions_scope scope(vector);
    // Offsets 0, 1 and 3 with a length that is no multiple of the vector width: unaligned
    // loads and every tail length of the scalar remainder.
    for (std::size_t offset : {0u, 1u, 3u}) {
      INFO("vector conversions " << (vector ? "on" : "off") << ", offset " << offset);
      const std::size_t n = a.size() - offset - 5;
      std::vector<W> lo(n), hi(n),
          in_place(a.begin() + static_cast<std::ptrdiff_t>(offset),
                   a.begin() + static_cast<std::ptrdiff_t>(offset + n));
      chorus::detail::reduce_elements(lo.data(), a.data() + offset, b.data() + offset, n,
                                      chorus::minimum{});
      chorus::detail::reduce_elements(hi.data(), a.data() + offset, b.data() + offset, n,
                                      chorus::maximum{});
      chorus::detail::reduce_elements(in_place.data(), in_place.data(), b.data() + offset, n,
                                      chorus::maximum{});
      std::size_t wrong = 0;
      for (std::size_t i = 0; i < n; ++i) {
        const W x = a[i + offset], y = b[i + offset];
        const W want_lo = chorus::minimum{}(x, y), want_hi = chorus::maximum{}(x, y);
        if (lo[i].bits != want_lo.bits || hi[i].bits != want_hi.bits ||
            in_place[i].bits != want_hi.bits) {
          if (wrong++ < 5) {
            UNSCOPED_INFO("a " << x.bits << " b " << y.bits << ": min " << lo[i].bits << " want "
                               << want_lo.bits << ", max " << hi[i].bits << " want "
                               << want_hi.bits);
          }
        }
      }
      CHECK(wrong == 0);
    }
  }
}

TEST_CASE("dtype tags and sizes") {
  STATIC_REQUIRE(chorus::dtype_of<std::int8_t> == chorus::dtype::int8);
  STATIC_REQUIRE(chorus::dtype_of<const double> == chorus::dtype::float64);
  STATIC_REQUIRE(chorus::dtype_of<chorus::bfloat16> == chorus::dtype::bfloat16);
  STATIC_REQUIRE(chorus::size_of(chorus::dtype::uint64) == 8);
  STATIC_REQUIRE(chorus::size_of(chorus::dtype::float16) == 2);
  STATIC_REQUIRE(chorus::dtype_of<long long> == chorus::dtype::int64);
  STATIC_REQUIRE(chorus::dtype_of<unsigned long long> == chorus::dtype::uint64);
  STATIC_REQUIRE(!chorus::element_type<bool>);
  STATIC_REQUIRE(!chorus::element_type<long double>);
  CHECK(chorus::name(chorus::dtype::float32) == "float32");
}

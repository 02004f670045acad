// Reduction ops: semantics of the built-ins, wrap-around, NaN, average, op kinds, and the
// reduction_op concept.
#include <chorus/core/ops.hpp>
#include <chorus/core/reduce_elements.hpp>

#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>

TEST_CASE("built-in ops compute what their names say") {
  CHECK(chorus::plus{}(3, 4) == 7);
  CHECK(chorus::multiplies{}(3.0, 4.0) == 12.0);
  CHECK(chorus::minimum{}(-3, 4) == -3);
  CHECK(chorus::maximum{}(std::uint8_t{3}, std::uint8_t{250}) == 250);
  CHECK(chorus::bit_and{}(0b1100, 0b1010) == 0b1000);
  CHECK(chorus::bit_or{}(0b1100, 0b1010) == 0b1110);
  CHECK(chorus::bit_xor{}(0b1100, 0b1010) == 0b0110);
  CHECK(float(chorus::plus{}(chorus::half(1.5f), chorus::half(2.0f))) == 3.5f);
}

TEST_CASE("integer sums and products wrap instead of overflowing") {
  constexpr auto max32 = std::numeric_limits<std::int32_t>::max();
  CHECK(chorus::plus{}(max32, std::int32_t{1}) == std::numeric_limits<std::int32_t>::min());
  CHECK(chorus::plus{}(std::int8_t{127}, std::int8_t{1}) == std::int8_t{-128});
  CHECK(chorus::multiplies{}(std::uint16_t{65535}, std::uint16_t{65535}) == std::uint16_t{1});
  CHECK(chorus::multiplies{}(std::int64_t{1} << 62, std::int64_t{4}) == 0);
}

TEST_CASE("minimum and maximum propagate NaN whatever the operand order") {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  CHECK(std::isnan(chorus::minimum{}(nan, 1.0)));
  CHECK(std::isnan(chorus::minimum{}(1.0, nan)));
  CHECK(std::isnan(chorus::maximum{}(nan, 1.0)));
  CHECK(std::isnan(chorus::maximum{}(1.0, nan)));
  CHECK(std::isnan(float(chorus::maximum{}(chorus::half(1.0f), chorus::half(NAN)))));
}

TEST_CASE("average sums, then divides once by the rank count") {
  const chorus::average avg;
  CHECK(avg.finalize(avg(avg(1.0, 2.0), 4.0), 3) == Approx(7.0 / 3.0));
  CHECK(avg.finalize(7, 2) == 3);  // truncation toward zero, as C++ integer division
  CHECK(avg.finalize(-7, 2) == -3);
  CHECK(float(avg.finalize(chorus::bfloat16(6.0f), 4)) == 1.5f);
  // The rank count is not narrowed to the element type: 256 would be 0 as a uint8 (a
  // division by zero) and -56 as an int8.
  CHECK(avg.finalize(std::uint8_t{255}, 256) == 0);
  CHECK(avg.finalize(std::int8_t{100}, 200) == 0);
  CHECK(avg.finalize(std::int8_t{-100}, 50) == -2);
  CHECK(avg.finalize(std::uint16_t{60000}, 70000) == 0);
  CHECK(avg.finalize(std::uint32_t{4000000000u}, 2) == 2000000000u);
  CHECK(avg.finalize(std::int64_t{-9}, 4) == -2);
}

TEST_CASE("op kinds and the reduction_op concept") {
  STATIC_REQUIRE(chorus::op_kind_v<chorus::plus> == chorus::op_kind::sum);
  STATIC_REQUIRE(chorus::op_kind_v<chorus::average> == chorus::op_kind::average);
  auto lambda = [](int a, int b) { return a * b + 1; };
  STATIC_REQUIRE(chorus::op_kind_v<decltype(lambda)> == chorus::op_kind::custom);
  STATIC_REQUIRE(chorus::reduction_op<decltype(lambda), int>);
  STATIC_REQUIRE(chorus::reduction_op<chorus::bit_xor, std::uint64_t>);
  STATIC_REQUIRE(!chorus::reduction_op<chorus::bit_xor, float>);
  STATIC_REQUIRE(!chorus::reduction_op<chorus::plus, std::string>);
  STATIC_REQUIRE(chorus::finalizing_op<chorus::average, float>);
  STATIC_REQUIRE(!chorus::finalizing_op<chorus::plus, float>);
}

TEST_CASE("reduce_elements applies the op element-wise, also in place") {
  int a[4] = {1, 2, 3, 4};
  const int b[4] = {10, 20, 30, 40};
  chorus::detail::reduce_elements(a, a, b, 4, [](int x, int y) { return x * 100 + y; });
  CHECK(a[0] == 110);
  CHECK(a[3] == 440);
}

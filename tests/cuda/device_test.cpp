// GPU tests of include/chorus/device/*.cuh: every kernel x op x element type against the
// host's code (chorus's host ops, cuda_fp8.h's host conversions, the host codecs), with
// fresh random inputs (the seed is printed; CHORUS_TEST_SEED=<n> repeats a run), outputs
// poisoned before each launch and guard elements around them, sizes 0, 1, odd, unaligned
// and large, in place and out of place. A NaN passes only where the reference is NaN.
//
// Without a usable device the binary prints "no CUDA device: <CUDA's reason>; N GPU tests
// not run" and exits with 77, which CTest reports as skipped (SKIP_RETURN_CODE), never as
// passed.
#define CATCH_CONFIG_EXTERNAL_INTERFACES
#include <catch2/catch.hpp>

#include <chorus/compress/cast.hpp>
#include <chorus/compress/quantize.hpp>
#include <chorus/compress/sparsify.hpp>
#include <chorus/core/ops.hpp>
#include <chorus/device/runtime.hpp>

#include "kernels.hpp"

#include <cuda_fp8.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <limits>
#include <random>
#include <span>
#include <string>
#include <tuple>
#include <type_traits>
#include <vector>

namespace {

using chorus_test::fp8;

/// The exit code CTest is told means "skipped" (tests/cuda/CMakeLists.txt).
constexpr int skip_exit_code = 77;

/// Stops the run before the first test when no device can be used.
struct device_gate : Catch::TestEventListenerBase {
  using TestEventListenerBase::TestEventListenerBase;
  void testRunStarting(Catch::TestRunInfo const& info) override {
    TestEventListenerBase::testRunStarting(info);
    const std::string reason = chorus::device::unavailable_reason();
    if (reason.empty()) return;
    const std::size_t n = Catch::getRegistryHub().getTestCaseRegistry().getAllTests().size();
    std::cout << "no CUDA device: " << reason << "; " << n << " GPU tests not run" << std::endl;
    std::exit(skip_exit_code);
  }
};
CATCH_REGISTER_LISTENER(device_gate)

std::mt19937_64& rng() {
  static std::mt19937_64 engine = [] {
    std::uint64_t seed = std::random_device{}();
    if (const char* s = std::getenv("CHORUS_TEST_SEED")) seed = std::strtoull(s, nullptr, 10);
    std::cout << "CHORUS_TEST_SEED=" << seed << std::endl;
    return std::mt19937_64(seed);
  }();
  return engine;
}

// ---- device memory -------------------------------------------------------------------------

using device_buffer = chorus::device::memory;

/// Waits for the default stream and turns a kernel's failure into a test failure.
void wait_device() { chorus::device::check(cudaDeviceSynchronize(), "cudaDeviceSynchronize"); }

// ---- element types ---------------------------------------------------------------------------

template <class T>
inline constexpr bool is_fp8_v =
    std::is_same_v<T, __nv_fp8_e4m3> || std::is_same_v<T, __nv_fp8_e5m2>;

template <class T>
float fp8_widen(T v) {
  return static_cast<float>(v);  // cuda_fp8.h's host conversion
}
template <class T>
T fp8_narrow(float f) {
  T out;
  out.__x = __nv_cvt_float_to_fp8(f, __NV_NOSAT,
                                  std::is_same_v<T, __nv_fp8_e4m3> ? __NV_E4M3 : __NV_E5M2);
  return out;
}

template <class T>
bool nan_like(T v) {
  if constexpr (is_fp8_v<T>) {
    return std::isnan(fp8_widen(v));
  } else {
    return chorus::detail::is_nan(v);
  }
}

/// Equal bits, or both NaN (the GPU's NaN payloads differ from the host's).
template <class T>
bool same(const T& expected, const T& got) {
  if constexpr (!std::is_integral_v<T>) {
    if (nan_like(expected)) return nan_like(got);
  }
  return std::memcmp(&expected, &got, sizeof(T)) == 0;
}

template <class T>
std::string show(const T& v) {
  std::uint64_t bits = 0;
  std::memcpy(&bits, &v, sizeof(T));
  std::string s = "0x";
  static constexpr char digits[] = "0123456789abcdef";
  for (int i = static_cast<int>(2 * sizeof(T)) - 1; i >= 0; --i)
    s += digits[(bits >> (4 * i)) & 15];
  if constexpr (is_fp8_v<T>) {
    s += " (" + std::to_string(fp8_widen(v)) + ")";
  } else if constexpr (chorus::is_float16_v<T>) {
    s += " (" + std::to_string(float(v)) + ")";
  } else if constexpr (std::is_floating_point_v<T>) {
    s += " (" + std::to_string(v) + ")";
  }
  return s;
}

/// Random values: integers over their whole range; 16-bit and fp8 floats as random bit
/// patterns (every class: NaN, infinity, subnormal, zero); float and double mostly
/// moderate values, with a share of random bit patterns for the special classes.
template <class T>
std::vector<T> random_values(std::size_t n) {
  std::vector<T> v(n);
  auto& g = rng();
  if constexpr (std::is_integral_v<T> || chorus::is_float16_v<T> || is_fp8_v<T>) {
    for (T& x : v) {
      const std::uint64_t bits = g();
      std::memcpy(static_cast<void*>(&x), &bits, sizeof(T));
    }
  } else {
    std::uniform_real_distribution<T> moderate(-1000, 1000);
    for (T& x : v) {
      if (g() % 8 == 0) {
        const std::uint64_t bits = g();
        std::memcpy(static_cast<void*>(&x), &bits, sizeof(T));
      } else {
        x = moderate(g);
      }
    }
  }
  return v;
}

/// Finite random values in [-range, range] (codecs: NaN and infinity give unspecified codes).
template <class T>
std::vector<T> finite_values(std::size_t n, T range) {
  std::uniform_real_distribution<T> d(-range, range);
  std::vector<T> v(n);
  for (T& x : v) x = d(rng());
  return v;
}

// ---- host references -----------------------------------------------------------------------

template <class Op, class T>
T host_reduce(const Op& op, T a, T b) {
  if constexpr (is_fp8_v<T>) {
    const float x = fp8_widen(a), y = fp8_widen(b);
    if constexpr (std::is_same_v<Op, chorus::minimum> || std::is_same_v<Op, chorus::maximum>) {
      // the host op on the widened values picks an operand; return that operand's bits
      const float r = op(x, y);
      return std::memcmp(&r, &x, sizeof r) == 0 ? a : b;
    } else {
      return fp8_narrow<T>(static_cast<float>(op(x, y)));
    }
  } else {
    return static_cast<T>(op(a, b));
  }
}

template <class T>
T host_finalize(T v, int ranks) {
  if constexpr (is_fp8_v<T>) {
    return fp8_narrow<T>(fp8_widen(v) / static_cast<float>(ranks));
  } else {
    return chorus::average{}.finalize(v, ranks);
  }
}

// ---- layouts ---------------------------------------------------------------------------------

/// Where a, b and out start, in elements past a 256-byte aligned allocation, and whether out
/// is a (or b): aligned, equally misaligned (scalar head), mismatched (scalar only), in place.
struct layout {
  std::size_t a = 0, b = 0, out = 0;
  int in_place = 0;  // 0: separate out, 1: out == a, 2: out == b
};
constexpr layout layouts[] = {{0, 0, 0, 0}, {1, 1, 1, 0}, {3, 3, 3, 0}, {0, 1, 2, 0},
                              {5, 0, 0, 0}, {0, 0, 0, 1}, {1, 1, 1, 2}, {2, 1, 0, 1}};
constexpr std::size_t sizes[] = {0, 1, 2, 3, 15, 16, 17, 31, 33, 255, 1021, 4099, 65537};
/// The large size: runs with the aligned and the misaligned-head layouts only.
constexpr std::size_t large = (std::size_t{1} << 22) + 3;
/// Guard elements after each array: must keep their poison.
constexpr std::size_t guard = 64;
constexpr int poison = 0xa5;

/// Runs `launch(a, b, out, n)` on fresh random inputs in layout `l` and checks every output
/// element against `expect(a[i], b[i])` and every guard element against the poison.
template <class T, class Launch, class Expect>
void check_binary(const char* what, std::size_t n, layout l, Launch launch, Expect expect) {
  const std::size_t span = (n + 16 + guard) * sizeof(T);
  device_buffer da(span), db(span), dout(span);
  const std::vector<T> a = random_values<T>(n), b = random_values<T>(n);
  da.fill(poison);
  db.fill(poison);
  dout.fill(poison);
  da.upload(a.data(), n * sizeof(T), l.a * sizeof(T));
  db.upload(b.data(), n * sizeof(T), l.b * sizeof(T));
  auto* pa = reinterpret_cast<T*>(da.get()) + l.a;
  auto* pb = reinterpret_cast<T*>(db.get()) + l.b;
  T* pout = l.in_place == 1 ? pa : l.in_place == 2 ? pb : reinterpret_cast<T*>(dout.get()) + l.out;
  const device_buffer& out_buffer = l.in_place == 1 ? da : l.in_place == 2 ? db : dout;
  const std::size_t out_at = l.in_place == 1 ? l.a : l.in_place == 2 ? l.b : l.out;
  launch(pa, pb, pout, n);
  wait_device();
  std::vector<T> got(n + 16 + guard);
  out_buffer.download(got.data(), span);
  std::size_t wrong = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const T want = expect(a[i], b[i]);
    if (!same(want, got[out_at + i]) && wrong++ < 5) {
      UNSCOPED_INFO(what << " n=" << n << " layout {" << l.a << "," << l.b << "," << l.out << ","
                         << l.in_place << "} element " << i << ": a=" << show(a[i])
                         << " b=" << show(b[i]) << " want " << show(want) << " got "
                         << show(got[out_at + i]));
    }
  }
  // everything around the output still holds the poison: nothing written out of bounds
  std::vector<unsigned char> poison_bytes(sizeof(T), poison);
  for (std::size_t i = 0; i < got.size(); ++i) {
    if (i == out_at) i += n;
    if (i >= got.size()) break;
    if (std::memcmp(&got[i], poison_bytes.data(), sizeof(T)) != 0 && wrong++ < 5) {
      UNSCOPED_INFO(what << " n=" << n << ": wrote outside the output, at element "
                         << static_cast<long long>(i) - static_cast<long long>(out_at));
    }
  }
  CHECK(wrong == 0);
}

template <class T, class Launch, class Expect>
void check_every_size(const char* what, Launch launch, Expect expect) {
  for (const std::size_t n : sizes) {
    for (const layout& l : layouts) check_binary<T>(what, n, l, launch, expect);
  }
  check_binary<T>(what, large, layouts[0], launch, expect);
  check_binary<T>(what, large, layouts[1], launch, expect);
}

template <class T>
constexpr chorus::dtype dtype_tag = chorus::dtype_of<T>;

using element_types =
    std::tuple<std::int8_t, std::uint8_t, std::int16_t, std::uint16_t, std::int32_t, std::uint32_t,
               std::int64_t, std::uint64_t, chorus::half, chorus::bfloat16, float, double>;

template <class F>
void for_each_type(F f) {
  std::apply([&](auto... t) { (f(t), ...); }, element_types{});
}

template <class T, class F>
void for_each_builtin_op(F f) {
  f(chorus::plus{});
  f(chorus::multiplies{});
  f(chorus::minimum{});
  f(chorus::maximum{});
  f(chorus::average{});
  if constexpr (std::is_integral_v<T>) {
    f(chorus::bit_and{});
    f(chorus::bit_or{});
    f(chorus::bit_xor{});
  }
}

}  // namespace

TEST_CASE("device conversions equal their references for every float and 16-bit pattern") {
  const chorus_test::conversion_mismatches m = chorus_test::device_conversion_mismatches();
  CHECK(m.to_half == 0);
  CHECK(m.from_half == 0);
  CHECK(m.to_bfloat16 == 0);
  CHECK(m.from_bfloat16 == 0);
  CHECK(m.to_e4m3 == 0);
  CHECK(m.to_e5m2 == 0);
}

TEST_CASE("reduce: every built-in op x element type equals the host op") {
  for_each_type([]<class T>(T) {
    for_each_builtin_op<T>([]<class Op>(Op op) {
      const std::string what = std::string("reduce ") + std::string(chorus::name(Op::kind)) + " " +
                               std::string(chorus::name(dtype_tag<T>));
      check_every_size<T>(
          what.c_str(),
          [&](const T* a, const T* b, T* out, std::size_t n) {
            chorus_test::device_reduce(Op::kind, dtype_tag<T>, a, b, out, n, nullptr);
          },
          [&](T a, T b) { return host_reduce(op, a, b); });
    });
  });
}

TEST_CASE("reduce: a __host__ __device__ user functor runs in the kernel") {
  for_each_type([]<class T>(T) {
    const std::string what = "reduce spread_op " + std::string(chorus::name(dtype_tag<T>));
    check_every_size<T>(
        what.c_str(),
        [](const T* a, const T* b, T* out, std::size_t n) {
          chorus_test::device_reduce(chorus::op_kind::custom, dtype_tag<T>, a, b, out, n, nullptr);
        },
        [](T a, T b) { return chorus_test::spread_op{}(a, b); });
  });
}

TEST_CASE("reduce: fp8 e4m3 and e5m2 round like cuda_fp8.h's host conversion") {
  const auto run = []<class T>(T, fp8 tag) {
    const auto each = [&]<class Op>(Op op) {
      const std::string what = "reduce fp8 " + std::string(chorus::name(Op::kind));
      check_every_size<T>(
          what.c_str(),
          [&](const T* a, const T* b, T* out, std::size_t n) {
            chorus_test::device_reduce_fp8(Op::kind, tag, a, b, out, n, nullptr);
          },
          [&](T a, T b) { return host_reduce(op, a, b); });
    };
    each(chorus::plus{});
    each(chorus::multiplies{});
    each(chorus::minimum{});
    each(chorus::maximum{});
    each(chorus::average{});
  };
  run(__nv_fp8_e4m3{}, fp8::e4m3);
  run(__nv_fp8_e5m2{}, fp8::e5m2);
}

TEST_CASE("finalize: average divides the sum by the rank count") {
  const auto run = []<class T>(T, auto launch_finalize) {
    for (const int ranks : {1, 3, 8}) {
      check_every_size<T>(
          "finalize average",
          [&](const T* a, const T*, T* out, std::size_t n) {
            chorus::device::check(cudaMemcpy(out, a, n * sizeof(T), cudaMemcpyDeviceToDevice),
                                  "cudaMemcpy");
            launch_finalize(out, n, ranks);
          },
          [&](T a, T) { return host_finalize(a, ranks); });
    }
  };
  for_each_type([&]<class T>(T) {
    run(T{}, [](T* data, std::size_t n, int ranks) {
      chorus_test::device_finalize(dtype_tag<T>, data, n, ranks, nullptr);
    });
  });
  run(__nv_fp8_e4m3{}, [](__nv_fp8_e4m3* data, std::size_t n, int ranks) {
    chorus_test::device_finalize_fp8(fp8::e4m3, data, n, ranks, nullptr);
  });
  run(__nv_fp8_e5m2{}, [](__nv_fp8_e5m2* data, std::size_t n, int ranks) {
    chorus_test::device_finalize_fp8(fp8::e5m2, data, n, ranks, nullptr);
  });
}

TEST_CASE("copy, pack and unpack move every element and nothing else") {
  for (const std::size_t width : {1, 2, 4, 8}) {
    for (const std::size_t n : {std::size_t{0}, std::size_t{1}, std::size_t{1021}, large}) {
      const std::size_t bytes = n * width;
      device_buffer src(bytes + guard), dst(bytes + guard);
      std::vector<unsigned char> in(bytes);
      for (auto& c : in) c = static_cast<unsigned char>(rng()());
      src.upload(in.data(), bytes);
      dst.fill(poison);
      chorus_test::device_copy(width, src.get(), dst.get(), n, nullptr);
      wait_device();
      std::vector<unsigned char> out(bytes + guard);
      dst.download(out.data(), out.size());
      CHECK(std::memcmp(in.data(), out.data(), bytes) == 0);
      CHECK(std::count(out.begin() + static_cast<std::ptrdiff_t>(bytes), out.end(), poison) ==
            static_cast<std::ptrdiff_t>(guard));
    }
  }
  struct shape {
    std::size_t count, length, stride;
  };
  for (const shape s : {shape{0, 4, 4}, shape{3, 0, 2}, shape{1, 1, 1}, shape{7, 5, 9},
                        shape{64, 1000, 1001}, shape{70000, 3, 5}, shape{5, 4096, 4096}}) {
    for (const std::size_t width : {1, 4, 8}) {
      const std::size_t packed = s.count * s.length;
      const std::size_t strided = s.count == 0 ? 0 : (s.count - 1) * s.stride + s.length;
      std::vector<unsigned char> spread(strided * width), dense(packed * width);
      for (auto& c : spread) c = static_cast<unsigned char>(rng()());
      device_buffer dspread(strided * width + guard), ddense(packed * width + guard);
      dspread.upload(spread.data(), spread.size());
      ddense.fill(poison);
      chorus_test::device_pack(width, true, dspread.get(), ddense.get(), s.count, s.length,
                               s.stride, nullptr);
      wait_device();
      std::vector<unsigned char> got(packed * width + guard);
      ddense.download(got.data(), got.size());
      for (std::size_t b = 0; b < s.count; ++b) {
        std::memcpy(dense.data() + b * s.length * width, spread.data() + b * s.stride * width,
                    s.length * width);
      }
      INFO("pack count " << s.count << " length " << s.length << " stride " << s.stride << " width "
                         << width);
      CHECK(std::memcmp(dense.data(), got.data(), dense.size()) == 0);
      CHECK(std::count(got.begin() + static_cast<std::ptrdiff_t>(dense.size()), got.end(),
                       poison) == static_cast<std::ptrdiff_t>(guard));
      // unpack into a poisoned strided buffer: the blocks come back, the gaps keep the poison
      dspread.fill(poison);
      chorus_test::device_pack(width, false, ddense.get(), dspread.get(), s.count, s.length,
                               s.stride, nullptr);
      wait_device();
      std::vector<unsigned char> back(strided * width + guard);
      dspread.download(back.data(), back.size());
      std::vector<unsigned char> want(back.size(), poison);
      for (std::size_t b = 0; b < s.count; ++b) {
        std::memcpy(want.data() + b * s.stride * width, spread.data() + b * s.stride * width,
                    s.length * width);
      }
      CHECK(want == back);
    }
  }
}

namespace {

/// Runs the host codec and the device codec on the same input and compares the wires
/// (bit for bit) and the decoded sums (bits, NaN payloads aside).
template <class G, class Codec, class DeviceEncode, class DeviceDecode>
void check_codec(const Codec& codec, const std::vector<G>& x, int ranks, DeviceEncode device_encode,
                 DeviceDecode device_decode) {
  const std::size_t n = x.size();
  chorus::compress::context ctx;
  ctx.ranks = ranks;
  const std::size_t bytes = codec.template wire_bytes<G>(n);
  std::vector<std::byte> host_wire(bytes);
  codec.template encode<G>(std::span<const G>(x), std::span<std::byte>(host_wire), ctx);

  device_buffer dx(n * sizeof(G)), dwire(bytes + guard), dy(n * sizeof(G));
  dx.upload(x.data(), n * sizeof(G));
  dwire.fill(poison);
  device_encode(dx.get(), n, dwire.get(), bytes);
  wait_device();
  std::vector<std::byte> got_wire(bytes + guard);
  dwire.download(got_wire.data(), got_wire.size());
  std::size_t wrong = 0;
  for (std::size_t i = 0; i < bytes; ++i) wrong += host_wire[i] != got_wire[i];
  CHECK(wrong == 0);
  for (std::size_t i = bytes; i < got_wire.size(); ++i) {
    CHECK(got_wire[i] == std::byte{poison});
  }

  // decode the host's wire on both sides into the same random y
  const std::vector<G> y0 = random_values<G>(n);
  std::vector<G> host_y = y0;
  codec.template decode_add<G>(std::span<const std::byte>(host_wire), std::span<G>(host_y), ctx);
  dwire.upload(host_wire.data(), bytes);
  dy.upload(y0.data(), n * sizeof(G));
  device_decode(dwire.get(), bytes, dy.get(), n);
  wait_device();
  std::vector<G> got_y(n);
  dy.download(got_y.data(), n * sizeof(G));
  std::size_t bad = 0;
  for (std::size_t i = 0; i < n; ++i) {
    if (!same(host_y[i], got_y[i]) && bad++ < 5) {
      UNSCOPED_INFO("decode_add element " << i << ": want " << show(host_y[i]) << " got "
                                          << show(got_y[i]));
    }
  }
  CHECK(bad == 0);
}

}  // namespace

TEST_CASE("cast codec: device encode and decode_add equal the host codec") {
  for (const std::size_t n : {std::size_t{0}, std::size_t{1}, std::size_t{1023}, large}) {
    for (const bool pre_divide : {false, true}) {
      const int ranks = pre_divide ? 6 : 1;
      const auto run = [&]<class G, class W>(G, W, chorus::dtype wire_type) {
        INFO("cast n " << n << " pre_divide " << pre_divide << " wire " << chorus::name(wire_type)
                       << " gradient " << sizeof(G) * 8);
        const chorus::compress::cast<W> codec{.pre_divide = pre_divide};
        // Random bit patterns (NaN, infinity, subnormals) where the bits must match too;
        // with pre_divide the GPU's NaN payloads differ, so finite values there.
        const std::vector<G> x = pre_divide ? finite_values<G>(n, G(1e5)) : random_values<G>(n);
        const bool dbl = std::is_same_v<G, double>;
        check_codec<G>(
            codec, x, ranks,
            [&](void* dx, std::size_t count, void* wire, std::size_t bytes) {
              chorus_test::device_cast_encode(wire_type, dbl, pre_divide, ranks, dx, count, wire,
                                              bytes, nullptr);
            },
            [&](const void* wire, std::size_t bytes, void* dy, std::size_t count) {
              chorus_test::device_cast_decode_add(wire_type, dbl, pre_divide, ranks, wire, bytes,
                                                  dy, count, nullptr);
            });
      };
      run(float{}, chorus::half{}, chorus::dtype::float16);
      run(float{}, chorus::bfloat16{}, chorus::dtype::bfloat16);
      run(double{}, chorus::half{}, chorus::dtype::float16);
      run(double{}, chorus::bfloat16{}, chorus::dtype::bfloat16);
      run(double{}, float{}, chorus::dtype::float32);
    }
  }
}

TEST_CASE("block_quant codec: device encode and decode_add equal the host codec") {
  for (const std::size_t n :
       {std::size_t{0}, std::size_t{1}, std::size_t{255}, std::size_t{257}, large}) {
    for (const std::size_t block :
         {std::size_t{1}, std::size_t{3}, std::size_t{256}, std::size_t{1000}, std::size_t{4096}}) {
      const auto run = [&]<class G>(G) {
        INFO("block_quant n " << n << " block " << block << " gradient " << sizeof(G) * 8);
        const chorus::compress::block_quant<std::int8_t> codec{.block = block};
        const bool dbl = std::is_same_v<G, double>;
        std::vector<G> x = finite_values<G>(n, G(50));
        if (n > 300) {  // an all-zero block (scale 0) and exact ties at .5
          for (std::size_t i = 0; i < std::min(block, n); ++i) x[i] = 0;
        }
        check_codec<G>(
            codec, x, 1,
            [&](void* dx, std::size_t count, void* wire, std::size_t bytes) {
              chorus_test::device_quant_encode(dbl, block, dx, count, wire, bytes, nullptr);
            },
            [&](const void* wire, std::size_t bytes, void* dy, std::size_t count) {
              chorus_test::device_quant_decode_add(dbl, block, wire, bytes, dy, count, nullptr);
            });
      };
      run(float{});
      run(double{});
    }
  }
}

TEST_CASE("top_k codec: device encode and decode_add equal the host codec") {
  for (const std::size_t n : {std::size_t{0}, std::size_t{1}, std::size_t{5}, std::size_t{4095},
                              std::size_t{4096}, std::size_t{4097}, std::size_t{100003}, large}) {
    for (const double ratio : {0.001, 0.01, 0.3, 1.0}) {
      for (const bool ties : {false, true}) {
        const auto run = [&]<class G>(G) {
          INFO("top_k n " << n << " ratio " << ratio << " ties " << ties << " gradient "
                          << sizeof(G) * 8);
          const chorus::compress::top_k codec{.ratio = ratio};
          const bool dbl = std::is_same_v<G, double>;
          // random bit patterns (NaN and infinity included: NaN's key is the largest), or a
          // handful of magnitudes so that the k-th largest is shared by many elements
          std::vector<G> x = random_values<G>(n);
          if (ties) {
            for (G& v : x) v = static_cast<G>(static_cast<int>(rng()() % 7) - 3);
          }
          check_codec<G>(
              codec, x, 1,
              [&](void* dx, std::size_t count, void* wire, std::size_t bytes) {
                chorus_test::device_top_k_encode(dbl, ratio, dx, count, wire, bytes, nullptr);
              },
              [&](const void* wire, std::size_t bytes, void* dy, std::size_t count) {
                chorus_test::device_top_k_decode_add(dbl, ratio, wire, bytes, dy, count, nullptr);
              });
        };
        run(float{});
        run(double{});
      }
    }
  }
}

// User-defined element types: a MAXLOC struct with a user op through every algorithm that
// reduces, on 7 ranks, blocking and nonblocking; built-in ops through a user type's own
// operators; std::byte and char through every non-reducing collective and point-to-point;
// pointer + count forms.
#include "../support/checks.hpp"

#include <chorus/chorus.hpp>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

using namespace harness;

namespace {

/// MPI's MAXLOC: the largest value and the lowest index holding it.
struct loc {
  float value;
  std::int32_t index;
  friend bool operator==(const loc&, const loc&) = default;
};

constexpr auto maxloc = [](loc a, loc b) {
  if (a.value != b.value) return a.value > b.value ? a : b;
  return a.index < b.index ? a : b;
};

/// Rank r's element i: values chosen so that the maximum is held by several ranks for some
/// i (ties resolved by the lowest rank) and by one rank for others.
loc input(int r, std::size_t i) {
  const int v = static_cast<int>((i * 7 + static_cast<std::size_t>(r) * 3) % 5);
  return {static_cast<float>(v), r};
}

loc expected(int p, std::size_t i) {
  loc best = input(0, i);
  for (int r = 1; r < p; ++r) best = maxloc(best, input(r, i));
  return best;
}

/// A 3-vector that sums with its own operator+ (so `chorus::plus` reduces it).
struct vec3 {
  double x, y, z;
  friend vec3 operator+(vec3 a, vec3 b) { return {a.x + b.x, a.y + b.y, a.z + b.z}; }
  friend bool operator==(const vec3&, const vec3&) = default;
};

}  // namespace

TEST_CASE("user types: MAXLOC on 7 ranks with every algorithm, blocking and nonblocking") {
  failures f;
  run_ranks(7, [&](chorus::inproc_communicator& comm) {
    const int p = comm.size();
    const int r = comm.rank();
    for (chorus::schedule::algorithm a : chorus::schedule::all_algorithms) {
      if (a == chorus::schedule::algorithm::one_sided) continue;  // inproc has no windows
      for (std::size_t n : {std::size_t{1}, std::size_t{13}, std::size_t{7 * 1000 + 5}}) {
        const std::string where = "rank " + std::to_string(r) + " " +
                                  std::string(chorus::schedule::name(a)) +
                                  " n=" + std::to_string(n);
        const chorus::algo::dynamic algo{a, 256};
        std::vector<loc> in(n), out(n);
        for (std::size_t i = 0; i < n; ++i) in[i] = input(r, i);
        auto check_all = [&](const std::vector<loc>& v, const char* what) {
          for (std::size_t i = 0; i < v.size(); ++i) {
            if (!(v[i] == expected(p, i))) {
              f.add(where + " " + what + " wrong at " + std::to_string(i));
              return;
            }
          }
        };
        if (chorus::schedule::supports(a, chorus::schedule::collective::all_reduce)) {
          chorus::all_reduce(comm, in, out, maxloc, algo);
          check_all(out, "all_reduce");
          std::vector<loc> inout = in;
          chorus::iall_reduce(comm, inout, maxloc, algo).wait();
          check_all(inout, "iall_reduce");
        }
        if (chorus::schedule::supports(a, chorus::schedule::collective::reduce)) {
          std::vector<loc> root_out(r == 2 ? n : 0);
          chorus::reduce(comm, in, root_out, maxloc, 2, algo);
          if (r == 2) check_all(root_out, "reduce");
        }
        if (chorus::schedule::supports(a, chorus::schedule::collective::reduce_scatter)) {
          std::vector<loc> all(n * static_cast<std::size_t>(p)), mine(n);
          for (std::size_t i = 0; i < all.size(); ++i) all[i] = input(r, i);
          chorus::reduce_scatter(comm, all, mine, maxloc, algo);
          for (std::size_t i = 0; i < n; ++i) {
            if (!(mine[i] == expected(p, static_cast<std::size_t>(r) * n + i))) {
              f.add(where + " reduce_scatter wrong at " + std::to_string(i));
              break;
            }
          }
        }
      }
    }
  });
  INFO(f.report());
  REQUIRE(f.count() == 0);
}

TEST_CASE("user types: built-in ops through the type's own operators; the size in messages") {
  run_ranks(3, [](chorus::inproc_communicator& comm) {
    std::vector<vec3> v(100, vec3{1.0, 2.0, double(comm.rank())});
    chorus::all_reduce(comm, v, chorus::plus{});
    for (const vec3& x : v) REQUIRE(x == vec3{3.0, 6.0, 3.0});
  });
  // A mismatch names the user type and its size.
  chorus::communicator_options options;
  options.check = true;
  options.timeout = std::chrono::seconds{20};
  std::atomic<int> named{0};
  chorus::inproc::run(
      2,
      [&](chorus::inproc_communicator& comm) {
        try {
          if (comm.rank() == 0) {
            std::vector<vec3> v(4);
            chorus::all_reduce(comm, v, chorus::plus{});
          } else {
            std::vector<loc> v(4);
            chorus::all_reduce(comm, v, maxloc);
          }
        } catch (const chorus::error& e) {
          const std::string m = e.what();
          if (m.find("user type of 24 bytes") != std::string::npos &&
              m.find("user type of 8 bytes") != std::string::npos) {
            ++named;
          }
        }
      },
      options);
  REQUIRE(named >= 1);
}

TEST_CASE("user types: std::byte and char through every non-reducing collective and p2p") {
  for (int ranks : {1, 2, 3, 5}) {
    run_ranks(ranks, [](chorus::inproc_communicator& comm) {
      const int p = comm.size();
      const int r = comm.rank();
      const auto P = static_cast<std::size_t>(p);
      std::vector<std::byte> mine(5, std::byte(r + 1)), all(5 * P);
      chorus::all_gather(comm, mine, all);
      for (std::size_t i = 0; i < all.size(); ++i) REQUIRE(all[i] == std::byte(i / 5 + 1));
      std::string text = r == 0 ? std::string("chorus says hi") : std::string(14, '?');
      chorus::broadcast(comm, text, 0);
      REQUIRE(text == "chorus says hi");
      std::vector<char> out(3 * P), in(3 * P);
      for (std::size_t i = 0; i < in.size(); ++i) in[i] = char('a' + r);
      chorus::all_to_all(comm, in, out);
      for (std::size_t i = 0; i < out.size(); ++i) REQUIRE(out[i] == char('a' + i / 3));
      std::vector<char> g(r == 0 ? 2 * P : 0);
      chorus::gather(comm, std::vector<char>(2, char('A' + r)), g, 0);
      for (std::size_t i = 0; i < g.size(); ++i) REQUIRE(g[i] == char('A' + i / 2));
      std::vector<std::byte> s_in(r == p - 1 ? P : 0), s_out(1);
      for (std::size_t i = 0; i < s_in.size(); ++i) s_in[i] = std::byte(100 + i);
      chorus::scatter(comm, s_in, s_out, p - 1);
      REQUIRE(s_out[0] == std::byte(100 + r));
      if (p > 1) {
        const int right = (r + 1) % p, left = (r + p - 1) % p;
        std::string hello = "from " + std::to_string(r), got(hello.size(), ' ');
        // every rank's number has one digit here
        chorus::sendrecv(comm, hello, right, got, left);
        REQUIRE(got == "from " + std::to_string(left));
        std::vector<std::byte> b(1000, std::byte(r)), c(1000);
        auto q = chorus::irecv(comm, c, left, 4);
        chorus::send(comm, b, right, 4);
        q.wait();
        REQUIRE(c[999] == std::byte(left));
      }
    });
  }
}

TEST_CASE("pointer and count forms match the range forms") {
  run_ranks(4, [](chorus::inproc_communicator& comm) {
    const int r = comm.rank();
    const auto P = static_cast<std::size_t>(comm.size());
    std::vector<int> a(10, r), b(10);
    chorus::all_reduce(comm, a.data(), b.data(), a.size(), chorus::plus{});
    REQUIRE(b[9] == 6);
    chorus::all_reduce(comm, a.data(), a.size(), chorus::maximum{}, chorus::algo::ring{});
    REQUIRE(a[0] == 3);
    std::vector<int> big(3 * P, 1), part(3);
    chorus::reduce_scatter(comm, big.data(), part.data(), 3, chorus::plus{});
    REQUIRE(part[2] == 4);
    std::vector<int> gathered(2 * P);
    const int two[2] = {r, r};
    chorus::all_gather(comm, two, gathered.data(), 2);
    REQUIRE(gathered[2 * P - 1] == int(P) - 1);
    double d[3] = {r == 1 ? 1.5 : 0.0, 2.5, 3.5};
    chorus::broadcast(comm, d, 3, 1);
    REQUIRE(d[0] == 1.5);
    std::vector<long long> red(r == 0 ? 4 : 0);
    const long long one[4] = {1, 1, 1, 1};
    chorus::reduce(comm, one, red.data(), 4, chorus::plus{}, 0);
    if (r == 0) REQUIRE(red[3] == 4);
    std::vector<short> s_in(5 * P, short(r)), s_out(5 * P);
    chorus::all_to_all(comm, s_in.data(), s_out.data(), 5);
    REQUIRE(s_out[5 * P - 1] == short(P - 1));
    std::vector<float> v(8, float(r));
    chorus::iall_reduce(comm, v.data(), v.size(), chorus::plus{}).wait();
    REQUIRE(v[7] == 6.0f);
    const int right = (r + 1) % comm.size(), left = (r + comm.size() - 1) % comm.size();
    float x = float(r), y = -1;
    auto q = chorus::irecv(comm, &y, 1, left);
    chorus::send(comm, &x, 1, right);
    q.wait();
    REQUIRE(y == float(left));
  });
}

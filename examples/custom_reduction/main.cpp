/// \file
/// custom_reduction: all-reduce with a reduction chorus has never heard of.
///
/// Seven ranks (threads of this process, joined by the in-process transport) each hold a
/// vector of doubles and all-reduce it with a plain lambda: "keep the value of larger
/// magnitude". Any callable works as the reduction, as long as it is associative and
/// commutative; chorus inlines it into the reduction loop. The program runs the reduction
/// twice, once letting chorus choose the algorithm and once asking for the ring, checks
/// every element on every rank against a serial computation, and exits non-zero on any
/// mismatch.
#include <chorus/chorus.hpp>

#include <atomic>
#include <cmath>
#include <cstddef>
#include <cstdio>
#include <exception>
#include <span>
#include <string_view>
#include <vector>

namespace {

constexpr int ranks = 7;
// A prime count: the vector does not split evenly among the ranks, so the algorithms'
// handling of uneven blocks is exercised too.
constexpr std::size_t elements = 10'007;

// The reduction. Ties in magnitude (x against -x) go to the positive value, so the result
// does not depend on the order in which the ranks' values meet: the operation is
// associative and commutative, which is what all_reduce asks of it.
const auto larger_magnitude = [](double a, double b) {
  const double abs_a = std::abs(a);
  const double abs_b = std::abs(b);
  return abs_a > abs_b || (abs_a == abs_b && a > b) ? a : b;
};

// Rank r's input at index i: values in [-125, 125] in steps of 1/8, both signs, with many
// ties in magnitude across ranks.
double input(int rank, std::size_t i) {
  const std::size_t mixed = i * 2654435761u + static_cast<std::size_t>(rank) * 40503u;
  return (static_cast<double>(mixed % 2001) - 1000.0) / 8.0;
}

std::vector<double> inputs_of(int rank) {
  std::vector<double> v(elements);
  for (std::size_t i = 0; i < elements; ++i) v[i] = input(rank, i);
  return v;
}

// The expected result, folded serially over the ranks.
std::vector<double> expected_result() {
  std::vector<double> r = inputs_of(0);
  for (int rank = 1; rank < ranks; ++rank) {
    for (std::size_t i = 0; i < elements; ++i) r[i] = larger_magnitude(r[i], input(rank, i));
  }
  return r;
}

// Runs one all-reduce on every rank with `reduce(comm, span)` and returns the number of
// wrong elements, summed over ranks.
template <class Reduce>
long check(std::string_view algorithm, const std::vector<double>& expected, Reduce reduce) {
  std::atomic<long> wrong = 0;
  std::atomic<bool> reported = false;
  chorus::inproc::run(ranks, [&](chorus::inproc_communicator& comm) {
    std::vector<double> v = inputs_of(comm.rank());
    reduce(comm, std::span{v});
    long mine = 0;
    for (std::size_t i = 0; i < elements; ++i) {
      if (v[i] == expected[i]) continue;
      if (!reported.exchange(true)) {
        std::printf("  first mismatch: rank %d, element %zu: got %g, expected %g\n", comm.rank(), i,
                    v[i], expected[i]);
      }
      ++mine;
    }
    wrong += mine;
  });
  if (wrong == 0) {
    std::printf("  %-10.*s verified: all %zu elements correct on all %d ranks\n",
                static_cast<int>(algorithm.size()), algorithm.data(), elements, ranks);
  } else {
    std::printf("  %-10.*s FAILED: %ld wrong elements\n", static_cast<int>(algorithm.size()),
                algorithm.data(), wrong.load());
  }
  return wrong;
}

}  // namespace

int main() try {
  std::printf(
      "chorus %s custom_reduction: %d ranks, %zu doubles each, op: larger magnitude "
      "(a user lambda)\n",
      CHORUS_VERSION_STRING, ranks, elements);
  const std::vector<double> expected = expected_result();

  long wrong = 0;
  // chorus picks the algorithm.
  wrong += check("automatic", expected, [](chorus::inproc_communicator& comm, std::span<double> v) {
    chorus::all_reduce(comm, v, larger_magnitude);
  });
  // The caller picks: the ring, with its default tuning.
  wrong += check("ring", expected, [](chorus::inproc_communicator& comm, std::span<double> v) {
    chorus::all_reduce(comm, v, larger_magnitude, chorus::algo::ring{});
  });
  return wrong == 0 ? 0 : 1;
} catch (const chorus::error& e) {
  std::fprintf(stderr, "custom_reduction: chorus error: %s\n", e.what());
  return 2;
} catch (const std::exception& e) {
  std::fprintf(stderr, "custom_reduction: %s\n", e.what());
  return 2;
}

// all_to_all and all_to_all_v: every type x rank count, equal and uneven blocks.
#include "../support/harness.hpp"

#include <numeric>

using namespace harness;
using chorus::schedule::collective;

namespace {

// Elements rank i sends to rank j: an uneven, asymmetric pattern with zeros.
std::size_t pair_count(int i, int j, std::size_t base, bool uneven) {
  if (!uneven) return base;
  return ((i * 3 + j * 5) % 4 == 0) ? 0 : base + static_cast<std::size_t>((i + 2 * j) % 5);
}

// The value of element e of the block that rank i sends to rank j.
template <class T>
T cell(int i, int j, std::size_t e) {
  return input_value<T>(input_kind::bits, i * 64 + j, e);
}

template <class T, class Algo>
void check(chorus::inproc_communicator& comm, failures& f, const Algo& a, std::size_t base,
           bool uneven) {
  const int p = comm.size();
  const int r = comm.rank();
  std::vector<std::size_t> send(static_cast<std::size_t>(p)), recv(static_cast<std::size_t>(p));
  for (int j = 0; j < p; ++j) {
    send[static_cast<std::size_t>(j)] = pair_count(r, j, base, uneven);
    recv[static_cast<std::size_t>(j)] = pair_count(j, r, base, uneven);
  }
  std::vector<T> in;
  for (int j = 0; j < p; ++j) {
    for (std::size_t e = 0; e < send[static_cast<std::size_t>(j)]; ++e)
      in.push_back(cell<T>(r, j, e));
  }
  std::vector<T> out(std::accumulate(recv.begin(), recv.end(), std::size_t{0}), poison<T>());
  if (uneven) {
    chorus::all_to_all_v(comm, in, send, out, recv, a);
  } else {
    chorus::all_to_all(comm, in, out, a);
  }
  std::vector<T> want;
  for (int j = 0; j < p; ++j) {
    for (std::size_t e = 0; e < recv[static_cast<std::size_t>(j)]; ++e)
      want.push_back(cell<T>(j, r, e));
  }
  expect_all<T>(f,
                label<T, chorus::plus>(uneven ? "all_to_all_v" : "all_to_all", a, base, false, r),
                std::span<const T>(out), [&](std::size_t i) { return want[i]; });
}

}  // namespace

TEST_CASE("all_to_all: every type, equal and uneven blocks") {
  for (int ranks : rank_counts) {
    failures f;
    run_ranks(ranks, [&](chorus::inproc_communicator& comm) {
      for_each_algo<collective::all_to_all>([&](auto a) {
        for_each_type<all_types>([&](auto t) {
          using T = decltype(t);
          for (std::size_t base : {std::size_t{0}, std::size_t{1}, std::size_t{7}}) {
            check<T>(comm, f, a, base, false);
            check<T>(comm, f, a, base, true);
          }
        });
      });
    });
    INFO("ranks = " << ranks << "\n" << f.report());
    REQUIRE(f.count() == 0);
  }
}

TEST_CASE("all_to_all: (2^20+3)-element buffers") {
  for (int ranks : {1, 3, 8}) {
    failures f;
    run_ranks(ranks, [&](chorus::inproc_communicator& comm) {
      for_each_algo<collective::all_to_all>([&](auto a) {
        check<float>(comm, f, a, large_count / static_cast<std::size_t>(ranks * ranks) + 1, false);
        check<double>(comm, f, a, large_count / static_cast<std::size_t>(ranks * ranks) + 1, true);
      });
    });
    INFO("ranks = " << ranks << "\n" << f.report());
    REQUIRE(f.count() == 0);
  }
}

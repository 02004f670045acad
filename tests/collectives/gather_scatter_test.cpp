// gather and scatter: every supported algorithm x type x rank count x root, in and out of
// place; off-root buffers are empty.
#include "../support/harness.hpp"

using namespace harness;
using chorus::schedule::collective;

namespace {

template <class T, class Algo>
void check_gather(chorus::inproc_communicator& comm, failures& f, const Algo& a, std::size_t block,
                  int root, bool in_place) {
  const int p = comm.size();
  const int r = comm.rank();
  std::vector<T> in(block);
  for (std::size_t i = 0; i < block; ++i) in[i] = input_value<T>(input_kind::bits, r, i);
  std::vector<T> out(r == root ? block * static_cast<std::size_t>(p) : 0, poison<T>());
  std::span<const T> source = in;
  if (in_place && r == root) {
    std::copy(in.begin(), in.end(), out.begin() + static_cast<std::ptrdiff_t>(block) * root);
    source = std::span<const T>(out).subspan(block * static_cast<std::size_t>(root), block);
  }
  chorus::gather(comm, source, out, root, a);
  if (r == root) {
    expect_all<T>(
        f,
        label<T, chorus::plus>("gather", a, block, in_place, r) + " root=" + std::to_string(root),
        std::span<const T>(out), [&](std::size_t i) {
          return input_value<T>(input_kind::bits, static_cast<int>(i / block), i % block);
        });
  }
}

template <class T, class Algo>
void check_scatter(chorus::inproc_communicator& comm, failures& f, const Algo& a, std::size_t block,
                   int root, bool in_place) {
  const int p = comm.size();
  const int r = comm.rank();
  auto value = [&](std::size_t i) { return input_value<T>(input_kind::bits, root + 50, i); };
  std::vector<T> in(r == root ? block * static_cast<std::size_t>(p) : 0);
  for (std::size_t i = 0; i < in.size(); ++i) in[i] = value(i);
  std::vector<T> own(block, poison<T>());
  std::span<T> out = own;
  if (in_place && r == root)
    out = std::span<T>(in).subspan(block * static_cast<std::size_t>(root), block);
  chorus::scatter(comm, std::span<const T>(in), out, root, a);
  expect_all<T>(
      f, label<T, chorus::plus>("scatter", a, block, in_place, r) + " root=" + std::to_string(root),
      std::span<const T>(out),
      [&](std::size_t i) { return value(block * static_cast<std::size_t>(r) + i); });
}

}  // namespace

TEST_CASE("gather and scatter: every algorithm, type and root") {
  for (int ranks : rank_counts) {
    failures f;
    run_ranks(ranks, [&](chorus::inproc_communicator& comm) {
      for (const auto& a : dynamic_algos(collective::gather)) {
        int t_index = 0;
        for_each_type<all_types>([&](auto t) {
          using T = decltype(t);
          int c = 0;
          for (std::size_t block : {std::size_t{0}, std::size_t{1}, std::size_t{7}}) {
            const int root = (t_index + c) % ranks;
            check_gather<T>(comm, f, a, block, root, c % 2 == 0);
            check_scatter<T>(comm, f, a, block, root, c % 2 == 1);
            ++c;
          }
          ++t_index;
        });
        for (int root = 0; root < ranks; ++root) {
          check_gather<std::int32_t>(comm, f, a, 5, root, root % 2 == 1);
          check_scatter<std::int32_t>(comm, f, a, 5, root, root % 2 == 0);
        }
      }
    });
    INFO("ranks = " << ranks << "\n" << f.report());
    REQUIRE(f.count() == 0);
  }
}

TEST_CASE("gather and scatter: (2^20+3)-element buffers, every algorithm") {
  for (int ranks : {1, 2, 3, 5, 8}) {
    failures f;
    run_ranks(ranks, [&](chorus::inproc_communicator& comm) {
      for_each_algo<collective::gather>([&](auto a) {
        const std::size_t block = large_count / static_cast<std::size_t>(ranks) + 1;
        check_gather<float>(comm, f, a, block, ranks - 1, false);
        check_scatter<float>(comm, f, a, block, 0, true);
      });
    });
    INFO("ranks = " << ranks << "\n" << f.report());
    REQUIRE(f.count() == 0);
  }
}

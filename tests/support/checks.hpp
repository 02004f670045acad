#pragma once
// The per-collective checks, shared by the inproc tests (tests/collectives) and the
// multi-process tests (tests/multiprocess): one call = one collective on one rank, compared
// with the serial reference. Each takes any communicator.
#include "harness.hpp"

#include <algorithm>
#include <numeric>
#include <utility>

namespace harness {

// ---- all_reduce
template <class T, class Op, class Algo, class Comm>
void check_all_reduce(Comm& comm, failures& f, const Algo& a, std::size_t count, bool in_place) {
  const Op op{};
  const input_kind k = input_for<Op>();
  const int r = comm.rank();
  std::vector<T> in(count), out(count, poison<T>());
  for (std::size_t i = 0; i < count; ++i) in[i] = input_value<T>(k, r, i);
  const std::string what = label<T, Op>("all_reduce", a, count, in_place, r);
  const reference<T, Op> want(op, k, comm.size(), count);
  if (in_place) {
    chorus::all_reduce(comm, in, op, a);
    expect_all<T>(f, what, in, want);
  } else {
    chorus::all_reduce(comm, std::as_const(in), out, op, a);
    expect_all<T>(f, what, out, want);
    expect_all<T>(f, what + " (input changed)", in,
                  [&](std::size_t i) { return input_value<T>(k, r, i); });
  }
}

// ---- reduce_scatter
/// Per-rank block counts: equal (`block` each) or uneven with zeros (v).
inline std::vector<std::size_t> rs_block_counts(int ranks, std::size_t block, bool uneven) {
  std::vector<std::size_t> c(static_cast<std::size_t>(ranks), block);
  if (uneven) {
    for (int j = 0; j < ranks; ++j)
      c[static_cast<std::size_t>(j)] = (j % 3 == 1) ? 0 : block + static_cast<std::size_t>(j);
  }
  return c;
}

template <class T, class Op, class Algo, class Comm>
void check_reduce_scatter(Comm& comm, failures& f, const Algo& a, std::size_t block, bool uneven,
                          bool in_place) {
  const Op op{};
  const input_kind k = input_for<Op>();
  const int r = comm.rank();
  const auto counts = rs_block_counts(comm.size(), block, uneven);
  const std::size_t total = std::accumulate(counts.begin(), counts.end(), std::size_t{0});
  const std::size_t mine = counts[static_cast<std::size_t>(r)];
  const std::size_t offset = std::accumulate(counts.begin(), counts.begin() + r, std::size_t{0});
  std::vector<T> in(total), out(mine, poison<T>());
  for (std::size_t i = 0; i < total; ++i) in[i] = input_value<T>(k, r, i);
  const std::string what =
      label<T, Op>(uneven ? "reduce_scatter_v" : "reduce_scatter", a, block, in_place, r);
  const reference<T, Op> full(op, k, comm.size(), total);
  auto want = [&](std::size_t i) { return full(offset + i); };
  std::span<T> result = in_place ? std::span<T>(in).subspan(offset, mine) : std::span<T>(out);
  if (uneven) {
    chorus::reduce_scatter_v(comm, std::span<const T>(in), result, counts, op, a);
  } else {
    chorus::reduce_scatter(comm, std::span<const T>(in), result, op, a);
  }
  expect_all<T>(f, what, result, want);
  if (!in_place) {
    expect_all<T>(f, what + " (input changed)", std::span<const T>(in),
                  [&](std::size_t i) { return input_value<T>(k, r, i); });
  }
}

// ---- reduce
template <class T, class Op, class Algo, class Comm>
void check_reduce(Comm& comm, failures& f, const Algo& a, std::size_t count, int root,
                  bool in_place) {
  const Op op{};
  const input_kind k = input_for<Op>();
  const int r = comm.rank();
  std::vector<T> in(count);
  for (std::size_t i = 0; i < count; ++i) in[i] = input_value<T>(k, r, i);
  // non-root ranks pass an empty output when out of place
  std::vector<T> out(r == root ? count : 0, poison<T>());
  const std::string what =
      label<T, Op>("reduce", a, count, in_place, r) + " root=" + std::to_string(root);
  const reference<T, Op> want(op, k, comm.size(), count);
  auto original = [&](std::size_t i) { return input_value<T>(k, r, i); };
  if (in_place) {
    chorus::reduce(comm, in, op, root, a);
    if (r == root) {
      expect_all<T>(f, what, in, want);
    } else {
      expect_all<T>(f, what + " (non-root buffer changed)", in, original);
    }
  } else {
    chorus::reduce(comm, std::as_const(in), out, op, root, a);
    if (r == root) expect_all<T>(f, what, out, want);
    expect_all<T>(f, what + " (input changed)", in, original);
  }
}

// ---- all_gather
template <class T, class Algo, class Comm>
void check_all_gather(Comm& comm, failures& f, const Algo& a, std::size_t block, bool uneven,
                      bool in_place) {
  const int p = comm.size();
  const int r = comm.rank();
  std::vector<std::size_t> counts(static_cast<std::size_t>(p), block);
  if (uneven) {
    for (int j = 0; j < p; ++j)
      counts[static_cast<std::size_t>(j)] =
          (j % 3 == 2) ? 0 : block + static_cast<std::size_t>(2 * j);
  }
  std::vector<std::size_t> offsets(counts.size());
  std::exclusive_scan(counts.begin(), counts.end(), offsets.begin(), std::size_t{0});
  const std::size_t total = offsets.back() + counts.back();
  const std::size_t mine = counts[static_cast<std::size_t>(r)];
  const std::size_t offset = offsets[static_cast<std::size_t>(r)];
  std::vector<T> out(total, poison<T>());
  std::vector<T> in(mine);
  for (std::size_t i = 0; i < mine; ++i) in[i] = input_value<T>(input_kind::bits, r, i);
  std::span<const T> source = in;
  if (in_place) {
    for (std::size_t i = 0; i < mine; ++i) out[offset + i] = in[i];
    source = std::span<const T>(out).subspan(offset, mine);
  }
  if (uneven) {
    chorus::all_gather_v(comm, source, out, counts, a);
  } else {
    chorus::all_gather(comm, source, out, a);
  }
  const std::string what =
      label<T, chorus::plus>(uneven ? "all_gather_v" : "all_gather", a, block, in_place, r);
  expect_all<T>(f, what, std::span<const T>(out), [&](std::size_t i) {
    // the last block starting at or before i is the non-empty block that holds i
    const auto owner = static_cast<std::size_t>(
        std::upper_bound(offsets.begin(), offsets.end(), i) - offsets.begin() - 1);
    return input_value<T>(input_kind::bits, static_cast<int>(owner), i - offsets[owner]);
  });
}

// ---- broadcast
template <class T, class Algo, class Comm>
void check_broadcast(Comm& comm, failures& f, const Algo& a, std::size_t count, int root,
                     bool in_place) {
  const int r = comm.rank();
  auto value = [&](std::size_t i) { return input_value<T>(input_kind::bits, root + 100, i); };
  std::vector<T> out(count, poison<T>());
  std::vector<T> in;
  if (r == root) {
    in.resize(count);
    for (std::size_t i = 0; i < count; ++i) in[i] = value(i);
  }
  if (in_place) {
    if (r == root) out = in;
    chorus::broadcast(comm, out, root, a);
  } else {
    chorus::broadcast(comm, std::span<const T>(in), out, root, a);  // empty off the root
  }
  expect_all<T>(
      f,
      label<T, chorus::plus>("broadcast", a, count, in_place, r) + " root=" + std::to_string(root),
      std::span<const T>(out), value);
}

// ---- gather_scatter
template <class T, class Algo, class Comm>
void check_gather(Comm& comm, failures& f, const Algo& a, std::size_t block, int root,
                  bool in_place) {
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

template <class T, class Algo, class Comm>
void check_scatter(Comm& comm, failures& f, const Algo& a, std::size_t block, int root,
                   bool in_place) {
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

// ---- all_to_all
// Elements rank i sends to rank j: an uneven, asymmetric pattern with zeros.
inline std::size_t a2a_pair_count(int i, int j, std::size_t base, bool uneven) {
  if (!uneven) return base;
  return ((i * 3 + j * 5) % 4 == 0) ? 0 : base + static_cast<std::size_t>((i + 2 * j) % 5);
}

// The value of element e of the block that rank i sends to rank j.
template <class T>
T a2a_cell(int i, int j, std::size_t e) {
  return input_value<T>(input_kind::bits, i * 64 + j, e);
}

template <class T, class Algo, class Comm>
void check_all_to_all(Comm& comm, failures& f, const Algo& a, std::size_t base, bool uneven) {
  const int p = comm.size();
  const int r = comm.rank();
  std::vector<std::size_t> send(static_cast<std::size_t>(p)), recv(static_cast<std::size_t>(p));
  for (int j = 0; j < p; ++j) {
    send[static_cast<std::size_t>(j)] = a2a_pair_count(r, j, base, uneven);
    recv[static_cast<std::size_t>(j)] = a2a_pair_count(j, r, base, uneven);
  }
  std::vector<T> in;
  for (int j = 0; j < p; ++j) {
    for (std::size_t e = 0; e < send[static_cast<std::size_t>(j)]; ++e)
      in.push_back(a2a_cell<T>(r, j, e));
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
      want.push_back(a2a_cell<T>(j, r, e));
  }
  expect_all<T>(f,
                label<T, chorus::plus>(uneven ? "all_to_all_v" : "all_to_all", a, base, false, r),
                std::span<const T>(out), [&](std::size_t i) { return want[i]; });
}

}  // namespace harness

#pragma once
// The measurement loop of chorus-perf and chorus-mpi-perf, written once for any backend.
//
// A backend is the thing that runs collectives: a chorus communicator, or MPI. It provides
//   int rank(), int size(), void barrier(),
//   void max_all(std::span<double>)   element-wise maximum over ranks, result on every rank,
//   long long sum_all(long long)      sum over ranks, on every rank,
//   template <class T> std::span<T> run(std::size_t algorithm, std::span<const T> in,
//                                       std::span<T> out)
//       runs the options' collective once with algorithm number `algorithm` (an index into
//       the list the reporter prints) on the buffers laid out as chorus lays them out
//       (docs/collectives.md; in place when they alias), and returns where this rank's
//       result is (normally `out`).
// A backend whose collectives run on device memory (-t nccl) adds, and the loop then calls:
//   template <class T> void attach(std::span<T> inbuf, std::span<T> outbuf)
//       the host buffers of the sweep, before any layout in them; it keeps device mirrors
//       and runs on the mirror of whatever host span `run` is given;
//   template <class T> void upload(const layout<T>&)   after every fill: host -> device;
//   template <class T> void download(std::span<T> got) before checking: device -> host;
//   template <class Fn> std::vector<double> device_times(int iters, Fn fn)
//       the mean and, with --percentiles, each call's seconds, from device events around
//       the enqueued calls (as nccl-tests times on the GPU, not with host clocks).
// Both tools therefore time, verify and report in exactly the same way.
#include "options.hpp"
#include "plot.hpp"
#include "report.hpp"

#include <chorus/core/ops.hpp>
#include <chorus/core/types.hpp>
#include <chorus/core/with_dtype.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <optional>
#include <span>
#include <utility>
#include <vector>

namespace chorus_perf {

/// Calls `f.template operator()<T>()` with the element type named by `t` (bytes as
/// std::uint8_t; chorus-perf's -d names the built-in types only).
template <class F>
decltype(auto) with_type(chorus::dtype t, F&& f) {
  return chorus::detail::with_dtype<std::uint8_t>(t, std::forward<F>(f));
}

/// Calls `f(op)` with the chorus op object named by `k` (sum, prod, min, max, avg).
template <class F>
decltype(auto) with_op(chorus::op_kind k, F&& f) {
  switch (k) {
    case chorus::op_kind::product:
      return f(chorus::multiplies{});
    case chorus::op_kind::min:
      return f(chorus::minimum{});
    case chorus::op_kind::max:
      return f(chorus::maximum{});
    case chorus::op_kind::average:
      return f(chorus::average{});
    default:
      return f(chorus::plus{});
  }
}

/// A small integer as element type T.
template <class T>
T from_int(int v) {
  if constexpr (chorus::is_float16_v<T>) {
    return T(v);
  } else {
    return static_cast<T>(v);
  }
}

/// The value rank `r` contributes at global index `i`: small integers, so that every
/// result -- sums of up to 128 ranks in bfloat16 included -- is exact in every element
/// type and independent of the order of reduction (as nccl-tests does, the exact result
/// is known).
inline int pattern(collective c, chorus::op_kind op, int r, std::size_t i) {
  const auto ri = static_cast<std::size_t>(r);
  if (!is_reducing(c)) return static_cast<int>((13 * ri + i) % 97);
  switch (op) {
    case chorus::op_kind::product:
      return (ri + i) % 3 == 0 ? 2 : 1;
    case chorus::op_kind::min:
    case chorus::op_kind::max:
      return static_cast<int>((3 * ri + i) % 11);
    default:
      return static_cast<int>((ri + i) % 3);
  }
}

/// The reduction over ranks 0..P-1 of `pattern` at global index `i`, in T.
template <class T>
T expected_reduction(chorus::op_kind op, int ranks, std::size_t i) {
  return with_op(op, [&](auto o) {
    T acc = from_int<T>(pattern(collective::all_reduce, op, 0, i));
    for (int q = 1; q < ranks; ++q) {
      acc = static_cast<T>(o(acc, from_int<T>(pattern(collective::all_reduce, op, q, i))));
    }
    if constexpr (requires { o.finalize(acc, ranks); })
      acc = static_cast<T>(o.finalize(acc, ranks));
    return acc;
  });
}

/// This rank's input and output buffers for one size and placement, laid out as chorus
/// lays them out.
template <class T>
struct layout {
  std::span<const T> in;
  std::span<T> out;
  std::span<T> in_writable;  ///< the same memory as `in`, for filling it
};

/// The pair partner of `r` in the sendrecv ping-pong, or -1 (last rank of an odd group).
inline int ping_pong_peer(int r, int p) {
  const int peer = r % 2 == 0 ? r + 1 : r - 1;
  return peer < p ? peer : -1;
}

template <class T>
layout<T> make_layout(collective c, int r, int p, int root, std::size_t count, bool in_place,
                      std::vector<T>& inbuf, std::vector<T>& outbuf) {
  const auto P = static_cast<std::size_t>(p);
  const auto R = static_cast<std::size_t>(r);
  std::size_t in_len = count, out_len = count;
  if (c == collective::reduce_scatter) in_len = count * P;
  if (c == collective::all_gather) out_len = count * P;
  if (c == collective::reduce && r != root) out_len = 0;
  layout<T> l;
  if (!in_place) {
    l.in_writable = {inbuf.data(), in_len};
    l.out = {outbuf.data(), out_len};
  } else {
    switch (c) {
      case collective::reduce_scatter:
        l.in_writable = {outbuf.data(), in_len};
        l.out = {outbuf.data() + R * count, count};
        break;
      case collective::all_gather:
        l.out = {outbuf.data(), out_len};
        l.in_writable = {outbuf.data() + R * count, count};
        break;
      case collective::reduce:
        l.in_writable = {outbuf.data(), in_len};
        l.out = r == root ? std::span<T>{outbuf.data(), count} : std::span<T>{};
        break;
      default:  // all_reduce, broadcast: one buffer
        l.in_writable = {outbuf.data(), in_len};
        l.out = {outbuf.data(), out_len};
        break;
    }
  }
  l.in = l.in_writable;
  return l;
}

/// Fills this rank's input with its pattern and the output around it with a sentinel.
template <class T>
void fill(const options& o, int r, const layout<T>& l) {
  std::fill(l.out.begin(), l.out.end(), from_int<T>(-7));
  const bool has_input = o.coll != collective::broadcast || r == o.root;
  if (!has_input) return;
  // Element i of every input is pattern(rank, i); count_wrong derives each output from it.
  for (std::size_t i = 0; i < l.in_writable.size(); ++i) {
    l.in_writable[i] = from_int<T>(pattern(o.coll, o.op, r, i));
  }
}

/// Mismatched elements of this rank's result.
template <class T>
long long count_wrong(const options& o, int r, int p, std::size_t count, std::span<const T> got) {
  const auto P = static_cast<std::size_t>(p);
  const auto R = static_cast<std::size_t>(r);
  long long wrong = 0;
  auto expect = [&](std::size_t k) -> T {
    switch (o.coll) {
      case collective::all_reduce:
      case collective::reduce:
        return expected_reduction<T>(o.op, p, k);
      case collective::reduce_scatter:
        return expected_reduction<T>(o.op, p, R * count + k);
      case collective::all_gather: {
        const std::size_t j = k / count;
        return from_int<T>(pattern(o.coll, o.op, static_cast<int>(j), k % count));
      }
      case collective::broadcast:
        return from_int<T>(pattern(o.coll, o.op, o.root, k));
      case collective::all_to_all: {
        const std::size_t block = count / P;
        const std::size_t j = k / block;
        return from_int<T>(pattern(o.coll, o.op, static_cast<int>(j), R * block + k % block));
      }
      case collective::sendrecv:
        return from_int<T>(pattern(o.coll, o.op, ping_pong_peer(r, p), k));
    }
    return T{};
  };
  if (o.coll == collective::sendrecv && ping_pong_peer(r, p) < 0) return 0;
  for (std::size_t k = 0; k < got.size(); ++k) {
    if (!(got[k] == expect(k))) ++wrong;
  }
  return wrong;
}

/// Times `fn` `o.iters` times after `o.warmup` untimed calls. Returns the slowest rank's
/// mean seconds per call and, with --percentiles, each call's slowest-rank seconds.
template <class Backend, class Fn>
std::pair<double, std::vector<double>> time_calls(Backend& b, const options& o, Fn fn) {
  using clock = std::chrono::steady_clock;
  for (int i = 0; i < o.warmup; ++i) fn();
  if constexpr (requires { b.device_times(o.iters, fn); }) {
    b.barrier();
    std::vector<double> t = b.device_times(o.iters, fn);
    if (!o.percentiles) t.resize(1);
    b.max_all(t);
    return {t[0], std::vector<double>(t.begin() + 1, t.end())};
  }
  const auto n = static_cast<std::size_t>(o.iters);
  std::vector<double> t(o.percentiles ? n + 1 : 1);
  b.barrier();
  const auto start = clock::now();
  auto prev = start;
  for (std::size_t i = 0; i < n; ++i) {
    fn();
    if (o.percentiles) {
      const auto now = clock::now();
      t[i + 1] = std::chrono::duration<double>(now - prev).count();
      prev = now;
    }
  }
  t[0] = std::chrono::duration<double>(clock::now() - start).count() / static_cast<double>(n);
  b.max_all(t);  // the slowest rank: of the means, and of every single call
  return {t[0], std::vector<double>(t.begin() + 1, t.end())};
}

/// STREAM-style copy: every rank copies `o.floor_bytes` at the same time; the best of 5 of
/// the slowest rank's times gives the copy bandwidth of all ranks together, counting read
/// and written bytes as STREAM does.
template <class Backend>
double measure_copy_gbs(Backend& b, const options& o) {
  std::vector<char> src(o.floor_bytes, 1), dst(o.floor_bytes, 0);
  double best = 1e300;
  for (int rep = 0; rep < 6; ++rep) {
    b.barrier();
    const auto start = std::chrono::steady_clock::now();
    std::memcpy(dst.data(), src.data(), src.size());
    asm volatile("" : : "r"(dst.data()) : "memory");  // the copy must happen
    std::vector<double> t{
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count()};
    b.max_all(t);
    if (rep > 0) best = std::min(best, t[0]);  // rep 0 faults the pages in
  }
  return 2.0 * static_cast<double>(o.floor_bytes) * b.size() / best / 1e9;
}

/// Runs the whole sweep. Rank 0 prints; every rank returns the exit status (0, or 1 when
/// any element was wrong on any rank).
template <class Backend>
int run_sweep(Backend& b, const options& o, run_info info) {
  const int r = b.rank();
  const int p = b.size();
  if (is_rooted(o.coll) && o.root >= p) {
    throw usage_error("-r " + std::to_string(o.root) + " is not a rank of this " +
                      std::to_string(p) + "-rank run");
  }
  std::optional<double> copy_gbs;
  if (o.floor) copy_gbs = measure_copy_gbs(b, o);
  info.ranks = p;
  info.copy_gbs = copy_gbs;
  std::optional<reporter> rep;
  if (r == 0) {
    rep.emplace(o, info);
    rep->print_header();
  }
  long long wrong_total = 0;
  with_type(o.type, [&]<class T>() {
    const std::size_t elem = sizeof(T);
    const auto sizes = sweep_sizes(o);
    const std::size_t max_count = count_for(o.coll, o.max_bytes, elem, p);
    const std::size_t max_elems =
        bytes_for(o.coll, max_count, elem, p) / elem + static_cast<std::size_t>(p);
    std::vector<T> inbuf(max_elems), outbuf(max_elems);
    if constexpr (requires { b.template attach<T>(std::span<T>(inbuf), std::span<T>(outbuf)); }) {
      b.template attach<T>(std::span<T>(inbuf), std::span<T>(outbuf));
    }
    auto filled = [&](const layout<T>& l) {
      fill(o, r, l);
      if constexpr (requires { b.template upload<T>(l); }) b.template upload<T>(l);
    };
    for (std::size_t bytes_asked : sizes) {
      const std::size_t count = count_for(o.coll, bytes_asked, elem, p);
      size_row row;
      row.count = count;
      row.bytes = bytes_for(o.coll, count, elem, p);
      for (std::size_t a = 0; a < info.algorithms.size(); ++a) {
        for (bool in_place : {false, true}) {
          auto& cells = in_place ? row.in_place : row.out_of_place;
          if (in_place && !has_in_place(o.coll)) {
            cells.emplace_back();
            continue;
          }
          const auto l = make_layout<T>(o.coll, r, p, o.root, count, in_place, inbuf, outbuf);
          filled(l);
          auto [mean, each] = time_calls(b, o, [&] { b.template run<T>(a, l.in, l.out); });
          if (o.coll == collective::sendrecv) {  // a call is a round trip: report one way
            mean /= 2;
            for (double& x : each) x /= 2;
          }
          long long wrong = -1;
          if (o.check) {
            filled(l);
            const std::span<T> got = b.template run<T>(a, l.in, l.out);
            if constexpr (requires { b.template download<T>(got); }) b.template download<T>(got);
            if (r == o.corrupt_rank && !got.empty()) {
              got[0] = got[0] == from_int<T>(1) ? from_int<T>(2) : from_int<T>(1);
            }
            wrong = b.sum_all(count_wrong<T>(o, r, p, count, got));
            wrong_total += wrong;
          }
          cells.push_back(make_cell(o.coll, p, row.bytes, mean, each, wrong));
        }
      }
      if (rep) rep->add(std::move(row));
    }
  });
  if (rep) {
    rep->print_footer();
    rep->write_files();
    if (!o.plot.empty()) {
      std::optional<double> floor;
      if (copy_gbs) floor = floor_busbw(o.coll, p, *copy_gbs);
      plot_busbw(o.plot,
                 std::string(name(o.coll)) + ", " + std::to_string(p) + " ranks, " +
                     info.transport + ", " + std::string(chorus::name(o.type)),
                 rep->busbw_series(), floor);
    }
  }
  return wrong_total == 0 ? 0 : 1;
}

}  // namespace chorus_perf

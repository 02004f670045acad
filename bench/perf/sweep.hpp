#pragma once
// The measurement loop of chorus-perf and chorus-mpi-perf, written once for any backend.
//
// A backend is the thing that runs collectives: a chorus communicator, or MPI. It provides
//   int rank(), int size(), void barrier(),
//   void max_all(std::span<double>)   element-wise maximum over ranks, result on every rank,
//   void sum_all(std::span<double>)   element-wise sum over ranks, result on every rank,
//   long long sum_all(long long)      sum over ranks, on every rank,
//   template <class T> std::span<T> run(std::size_t algorithm, chorus::op_kind op,
//                                       std::span<const T> in, std::span<T> out)
//       runs the options' collective once with algorithm number `algorithm` (an index into
//       the list the reporter prints) and reduction `op` on the buffers laid out as chorus
//       lays them out (docs/collectives.md; in place when they alias), and returns where
//       this rank's result is (normally `out`).
// A backend whose collectives run on device memory (-t nccl) adds, and the loop then calls:
//   template <class T> void attach(std::span<T> inbuf, std::span<T> outbuf)
//       the host buffers of the sweep, before any layout in them; it keeps device mirrors
//       and runs on the mirror of whatever host span `run` is given;
//   template <class T> void upload(const layout<T>&)   after every fill: host -> device;
//   template <class T> void download(std::span<T> got) before checking: device -> host;
//   template <class Fn> std::vector<double> device_times(int iters, Fn fn)
//       the mean and each iteration's seconds, from device events around the enqueued
//       iterations (`fn` enqueues one; -C 1 times with the host clock instead);
//   void wait()  waits for what was enqueued (-z 1 and 2 wait after every call).
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
                      std::size_t unalign, std::vector<T>& inbuf, std::vector<T>& outbuf) {
  const auto P = static_cast<std::size_t>(p);
  const auto R = static_cast<std::size_t>(r);
  std::size_t in_len = count, out_len = count;
  if (c == collective::reduce_scatter) in_len = count * P;
  if (c == collective::all_gather) out_len = count * P;
  if (c == collective::reduce && r != root) out_len = 0;
  T* const in_base = inbuf.data() + unalign;  // -u: past the allocation's alignment
  T* const out_base = outbuf.data() + unalign;
  layout<T> l;
  if (!in_place) {
    l.in_writable = {in_base, in_len};
    l.out = {out_base, out_len};
  } else {
    switch (c) {
      case collective::reduce_scatter:
        l.in_writable = {out_base, in_len};
        l.out = {out_base + R * count, count};
        break;
      case collective::all_gather:
        l.out = {out_base, out_len};
        l.in_writable = {out_base + R * count, count};
        break;
      case collective::reduce:
        l.in_writable = {out_base, in_len};
        l.out = r == root ? std::span<T>{out_base, count} : std::span<T>{};
        break;
      default:  // all_reduce, broadcast: one buffer
        l.in_writable = {out_base, in_len};
        l.out = {out_base, out_len};
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

/// What one rank measured for one test: its mean seconds per call and the seconds per call
/// of each iteration (the spread that -I, --latency, --plot and the JSON show).
struct rank_times {
  double mean = 0;
  std::vector<double> iterations;
};

/// Times `o.iters` iterations of `o.agg_iters` calls of `call` after `o.warmup` untimed
/// ones, as nccl-tests does: -z 1 puts a barrier after every call (inside the time), -z 3
/// one after every iteration (outside it). Every time is per call.
template <class Backend, class Call>
rank_times time_calls(Backend& b, const options& o, Call call) {
  using clock = std::chrono::steady_clock;
  const auto once = [&] {
    call();
    if constexpr (requires { b.wait(); }) {
      if (o.blocking == 1 || o.blocking == 2) b.wait();
    }
    if (o.blocking == 1) b.barrier();
  };
  const auto iteration = [&] {
    for (int m = 0; m < o.agg_iters; ++m) once();
  };
  for (int i = 0; i < o.warmup; ++i) iteration();
  const auto n = static_cast<std::size_t>(o.iters);
  const double per_call = 1.0 / static_cast<double>(o.agg_iters);
  rank_times out;
  if constexpr (requires { b.device_times(o.iters, iteration); }) {
    if (!o.report_cputime && o.blocking != 3) {  // device events, as nccl-tests times
      b.barrier();
      std::vector<double> t = b.device_times(o.iters, iteration);
      out.mean = t[0] * per_call;
      for (std::size_t i = 1; i < t.size(); ++i) out.iterations.push_back(t[i] * per_call);
      return out;
    }
  }
  b.barrier();
  double total = 0;
  auto prev = clock::now();
  for (std::size_t i = 0; i < n; ++i) {
    iteration();
    if constexpr (requires { b.wait(); }) b.wait();
    const auto now = clock::now();
    const double t = std::chrono::duration<double>(now - prev).count();
    total += t;
    out.iterations.push_back(t * per_call);
    if (o.blocking == 3) b.barrier();
    prev = clock::now();  // a -z 3 barrier stays outside the time
  }
  out.mean = total / static_cast<double>(n) * per_call;
  return out;
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

/// Every rank's mean (element r: rank r's) and each iteration's slowest rank, on every rank.
template <class Backend>
std::pair<std::vector<double>, std::vector<double>> gather_times(Backend& b, rank_times mine) {
  std::vector<double> each(static_cast<std::size_t>(b.size()), 0.0);
  each[static_cast<std::size_t>(b.rank())] = mine.mean;
  b.sum_all(std::span<double>(each));
  if (!mine.iterations.empty()) b.max_all(std::span<double>(mine.iterations));
  return {std::move(each), std::move(mine.iterations)};
}

/// Runs the whole sweep: per algorithm one table, in it -N cycles of every -d type and -o
/// op over every size. Rank 0 prints; every rank returns the exit status (0, or 1 when any
/// element was wrong on any rank, or the NCCL_TESTS_MIN_BW check failed).
template <class Backend>
int run_sweep(Backend& b, const options& given, run_info info) {
  const int r = b.rank();
  const int p = b.size();
  if (is_rooted(given.coll) && given.root >= p) {
    throw usage_error("-r " + std::to_string(given.root) + " is not a rank of this " +
                      std::to_string(p) + "-rank run");
  }
  std::optional<double> copy_gbs;
  if (given.floor) copy_gbs = measure_copy_gbs(b, given);
  info.ranks = p;
  info.copy_gbs = copy_gbs;
  std::optional<reporter> rep;
  if (r == 0) {
    rep.emplace(given, info);
    rep->print_header();
  }
  long long wrong_total = 0;
  std::size_t buffer_bytes = 0;
  options o = given;  // o.type and o.op: the test being run
  for (std::size_t a = 0; a < info.algorithms.size(); ++a) {
    if (rep) rep->begin_table(a);
    for (int cycle = 0; given.run_cycles == 0 || cycle < given.run_cycles; ++cycle) {
      for (const chorus::dtype type : given.types) {
        o.type = type;
        with_type(type, [&]<class T>() {
          const std::size_t elem = sizeof(T);
          const auto sizes = sweep_sizes(o);
          const std::size_t max_count = count_for(o.coll, o.max_bytes, elem, p);
          const std::size_t max_elems = bytes_for(o.coll, max_count, elem, p) / elem +
                                        static_cast<std::size_t>(p) +
                                        static_cast<std::size_t>(o.unalign);
          std::vector<T> inbuf(max_elems), outbuf(max_elems);
          buffer_bytes = std::max(buffer_bytes, 2 * max_elems * elem);
          if constexpr (requires {
                          b.template attach<T>(std::span<T>(inbuf), std::span<T>(outbuf));
                        }) {
            b.template attach<T>(std::span<T>(inbuf), std::span<T>(outbuf));
          }
          auto filled = [&](const layout<T>& l) {
            fill(o, r, l);
            if constexpr (requires { b.template upload<T>(l); }) b.template upload<T>(l);
          };
          for (const chorus::op_kind op : given.ops) {
            o.op = op;
            for (std::size_t bytes_asked : sizes) {
              const std::size_t count = count_for(o.coll, bytes_asked, elem, p);
              size_row row;
              row.algorithm = a;
              row.type = type;
              row.op = op;
              row.cycle = cycle;
              row.count = count;
              row.bytes = bytes_for(o.coll, count, elem, p);
              for (bool in_place : {false, true}) {
                cell& x = in_place ? row.in_place : row.out_of_place;
                if (in_place && !has_in_place(o.coll)) continue;
                const auto l = make_layout<T>(o.coll, r, p, o.root, count, in_place,
                                              static_cast<std::size_t>(o.unalign), inbuf, outbuf);
                filled(l);
                rank_times mine = time_calls(b, o, [&] { b.template run<T>(a, op, l.in, l.out); });
                if (o.coll == collective::sendrecv) {  // a call is a round trip: one way
                  mine.mean /= 2;
                  for (double& t : mine.iterations) t /= 2;
                }
                long long wrong = -1;
                for (int c = 0; c < o.check_iters; ++c) {
                  filled(l);
                  const std::span<T> got = b.template run<T>(a, op, l.in, l.out);
                  if constexpr (requires { b.template download<T>(got); }) {
                    b.template download<T>(got);
                  }
                  if (c == 0 && r == o.corrupt_rank && !got.empty()) {
                    got[0] = got[0] == from_int<T>(1) ? from_int<T>(2) : from_int<T>(1);
                  }
                  wrong = std::max(wrong, 0LL) + b.sum_all(count_wrong<T>(o, r, p, count, got));
                }
                if (wrong > 0) wrong_total += wrong;
                auto [each, iterations] = gather_times(b, std::move(mine));
                x = make_cell(o, p, row.bytes, std::move(each), std::move(iterations), wrong);
              }
              if (rep) rep->add(std::move(row));
            }
          }
        });
      }
    }
  }
  int status = wrong_total == 0 ? 0 : 1;
  if (rep) {
    rep->print_footer(buffer_bytes);
    rep->write_files();
    if (!rep->bandwidth_ok()) status = 1;
    if (!given.plot.empty()) {
      std::optional<double> floor;
      if (copy_gbs) floor = floor_busbw(given.coll, p, *copy_gbs);
      plot_busbw(given.plot,
                 std::string(name(given.coll)) + ", " + std::to_string(p) + " ranks, " +
                     info.transport + ", " + std::string(chorus::name(given.types.front())),
                 rep->busbw_series(), floor, rep->latency_series());
    }
  }
  // Every rank leaves with rank 0's verdict (rank 0 alone knows the bandwidth check).
  return b.sum_all(static_cast<long long>(r == 0 ? status : 0)) == 0 ? 0 : 1;
}

}  // namespace chorus_perf

#pragma once
// Nonblocking collectives and point-to-point, for any host communicator (inproc, shm, UCX):
// many requests in flight with mixed sizes, kinds and priorities with exact results; the
// order in which priorities are served; blocking calls mixed in; ring exchanges of large
// messages in both directions. Failures go into `harness::failures`.
#include "harness.hpp"

#include <chorus/chorus.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <numeric>
#include <string>
#include <vector>

namespace harness {

/// rank r's input for element i: small integers, so every order of summation is exact.
inline float request_input(int r, std::size_t i) { return static_cast<float>(r + int(i % 7)); }

/// What the sum of `request_input` over p ranks is at element i.
inline float request_sum(int p, std::size_t i) {
  return static_cast<float>(p * (p - 1) / 2 + p * int(i % 7));
}

template <class Comm>
void expect_sums(const Comm& comm, const std::vector<float>& v, const std::string& what,
                 failures& f) {
  const int p = comm.size();
  for (std::size_t i = 0; i < v.size(); ++i) {
    if (v[i] != request_sum(p, i)) {
      f.add("rank " + std::to_string(comm.rank()) + ": " + what + "[" + std::to_string(i) +
            "] = " + std::to_string(v[i]) + ", expected " + std::to_string(request_sum(p, i)));
      return;
    }
  }
}

/// Many requests of every collective in flight at once, sizes from 0 to ~1 MiB, mixed
/// priorities, a blocking all-reduce in the middle, then wait_all; every result exact.
template <class Comm>
void check_many_requests(Comm& comm, failures& f) {
  const int p = comm.size();
  const int r = comm.rank();
  const auto P = static_cast<std::size_t>(p);
  std::vector<chorus::request> reqs;
  const std::size_t sizes[] = {0, 1, 7, 1000, (1u << 18) + 3};
  std::vector<std::vector<float>> reduced;
  reduced.reserve(std::size(sizes) * 2);
  int prio = 0;
  for (std::size_t n : sizes) {
    auto& v = reduced.emplace_back(n);
    for (std::size_t i = 0; i < n; ++i) v[i] = request_input(r, i);
    reqs.push_back(chorus::iall_reduce(comm, v, chorus::plus{}, chorus::priority{prio++ % 3}));
    auto& w = reduced.emplace_back(n);
    for (std::size_t i = 0; i < n; ++i) w[i] = request_input(r, i);
    reqs.push_back(
        chorus::iall_reduce(comm, w, chorus::plus{}, chorus::algo::ring{.chunk_bytes = 4096}));
  }
  // reduce-scatter, all-gather, broadcast, reduce, all-to-all, gather, scatter, barrier
  const std::size_t block = 1001;
  std::vector<float> rs_in(block * P), rs_out(block);
  for (std::size_t i = 0; i < rs_in.size(); ++i) rs_in[i] = request_input(r, i);
  reqs.push_back(chorus::ireduce_scatter(comm, rs_in, rs_out, chorus::plus{}, chorus::priority{2}));
  std::vector<int> ag_in(block, r), ag_out(block * P, -1);
  reqs.push_back(chorus::iall_gather(comm, ag_in, ag_out));
  std::vector<double> bc(5000, r == 0 ? 3.5 : 0.0);
  reqs.push_back(chorus::ibroadcast(comm, bc, 0, chorus::priority{1}));
  std::vector<std::int64_t> red_in(333, r + 1), red_out(333, 0);
  reqs.push_back(chorus::ireduce(comm, red_in, red_out, chorus::plus{}, p - 1));
  std::vector<int> a2a_in(3 * P), a2a_out(3 * P, -1);
  for (std::size_t i = 0; i < a2a_in.size(); ++i) a2a_in[i] = r * 1000 + int(i);
  reqs.push_back(chorus::iall_to_all(comm, a2a_in, a2a_out));
  std::vector<int> g_in(4, r), g_out(r == 0 ? 4 * P : 0);
  reqs.push_back(chorus::igather(comm, g_in, g_out, 0));
  std::vector<int> s_in(r == 0 ? 2 * P : 0), s_out(2, -1);
  for (std::size_t i = 0; i < s_in.size(); ++i) s_in[i] = int(i / 2);
  reqs.push_back(chorus::iscatter(comm, s_in, s_out, 0));
  reqs.push_back(chorus::ibarrier(comm, chorus::priority{-1}));
  // a blocking call while all of that is in flight: queued behind it, and exact
  std::vector<float> blocking(777);
  for (std::size_t i = 0; i < blocking.size(); ++i) blocking[i] = request_input(r, i);
  chorus::all_reduce(comm, blocking, chorus::plus{});
  expect_sums(comm, blocking, "blocking all_reduce among requests", f);
  chorus::wait_all(reqs);

  for (std::size_t k = 0; k < reduced.size(); ++k) {
    expect_sums(comm, reduced[k], "iall_reduce #" + std::to_string(k), f);
  }
  for (std::size_t i = 0; i < block; ++i) {
    const std::size_t global = static_cast<std::size_t>(r) * block + i;
    if (rs_out[i] != request_sum(p, global)) {
      f.add("rank " + std::to_string(r) + ": ireduce_scatter wrong at " + std::to_string(i));
      break;
    }
  }
  for (std::size_t i = 0; i < ag_out.size(); ++i) {
    if (ag_out[i] != int(i / block)) {
      f.add("rank " + std::to_string(r) + ": iall_gather wrong at " + std::to_string(i));
      break;
    }
  }
  if (std::any_of(bc.begin(), bc.end(), [](double x) { return x != 3.5; })) {
    f.add("rank " + std::to_string(r) + ": ibroadcast wrong");
  }
  if (r == p - 1) {
    const std::int64_t want = std::int64_t(p) * (p + 1) / 2;
    if (std::any_of(red_out.begin(), red_out.end(), [&](std::int64_t x) { return x != want; })) {
      f.add("rank " + std::to_string(r) + ": ireduce wrong");
    }
  }
  for (std::size_t q = 0; q < P; ++q) {
    for (std::size_t j = 0; j < 3; ++j) {
      const int want = int(q) * 1000 + r * 3 + int(j);
      if (a2a_out[q * 3 + j] != want) {
        f.add("rank " + std::to_string(r) + ": iall_to_all wrong from rank " + std::to_string(q));
        q = P;
        break;
      }
    }
  }
  for (std::size_t i = 0; i < g_out.size(); ++i) {
    if (g_out[i] != int(i / 4)) {
      f.add("igather wrong at " + std::to_string(i));
      break;
    }
  }
  if (s_out[0] != r || s_out[1] != r) f.add("rank " + std::to_string(r) + ": iscatter wrong");
  for (const chorus::request& q : reqs) {
    if (q.completion_order() == 0) f.add("a completed request has no completion order");
  }
}

/// A small high-priority all-reduce posted after a large low-priority one completes first.
/// Run with caller-driven progress: both are posted before anything moves, so the order is
/// decided by the engine's priorities alone, not by timing.
template <class Comm>
void check_priority_order(Comm& comm, failures& f) {
  const int r = comm.rank();
  std::vector<float> large(std::size_t{1} << 21), small(64);  // 8 MiB, 256 B
  for (std::size_t i = 0; i < large.size(); ++i) large[i] = request_input(r, i);
  for (std::size_t i = 0; i < small.size(); ++i) small[i] = request_input(r, i);
  // a ring in 16 KiB pieces: hundreds of steps, each a chance for the small one to go first
  chorus::request low = chorus::iall_reduce(
      comm, large, chorus::plus{}, chorus::algo::ring{.chunk_bytes = 16384}, chorus::priority{0});
  chorus::request high = chorus::iall_reduce(comm, small, chorus::plus{}, chorus::priority{10});
  high.wait();
  low.wait();
  if (!(high.completion_order() < low.completion_order())) {
    f.add("rank " + std::to_string(r) + ": the high-priority request completed as #" +
          std::to_string(high.completion_order()) + ", after the low-priority one (#" +
          std::to_string(low.completion_order()) + ")");
  }
  expect_sums(comm, large, "low-priority all_reduce", f);
  expect_sums(comm, small, "high-priority all_reduce", f);
  // equal priorities complete in the order they were posted
  std::vector<std::vector<float>> bufs(4, std::vector<float>(5000));
  std::vector<chorus::request> reqs;
  for (auto& b : bufs) {
    for (std::size_t i = 0; i < b.size(); ++i) b[i] = request_input(r, i);
    reqs.push_back(chorus::iall_reduce(comm, b, chorus::plus{}));
  }
  chorus::wait_all(reqs);
  for (std::size_t k = 1; k < reqs.size(); ++k) {
    if (!(reqs[k - 1].completion_order() < reqs[k].completion_order())) {
      f.add("rank " + std::to_string(r) + ": equal priorities did not complete in posting order");
    }
  }
  for (auto& b : bufs) expect_sums(comm, b, "posted in order", f);
}

/// Ring exchanges of `bytes` in both directions at once: with isend/irecv, with one batch,
/// and with sendrecv; then a blocking recv while an isend is in flight.
template <class Comm>
void check_exchanges(Comm& comm, std::size_t bytes, failures& f) {
  const int p = comm.size();
  const int r = comm.rank();
  if (p == 1) return;
  const int right = (r + 1) % p, left = (r + p - 1) % p;
  const std::size_t n = bytes / sizeof(std::uint32_t);
  auto fill = [&](std::vector<std::uint32_t>& v, int from, int salt) {
    for (std::size_t i = 0; i < v.size(); ++i)
      v[i] = std::uint32_t(from * 7919 + salt) ^ std::uint32_t(i);
  };
  auto check = [&](const std::vector<std::uint32_t>& v, int from, int salt, const char* what) {
    for (std::size_t i = 0; i < v.size(); i += 4093) {
      if (v[i] != (std::uint32_t(from * 7919 + salt) ^ std::uint32_t(i)) ||
          v.back() != (std::uint32_t(from * 7919 + salt) ^ std::uint32_t(v.size() - 1))) {
        f.add("rank " + std::to_string(r) + ": " + what + " wrong at " + std::to_string(i));
        return;
      }
    }
  };
  std::vector<std::uint32_t> to_right(n), to_left(n), from_left(n), from_right(n);
  fill(to_right, r, 1);
  fill(to_left, r, 2);
  {  // isend / irecv: both directions, sends posted first
    std::vector<chorus::request> q;
    q.push_back(chorus::isend(comm, to_right, right, 1));
    q.push_back(chorus::isend(comm, to_left, left, 2));
    q.push_back(chorus::irecv(comm, from_left, left, 1));
    q.push_back(chorus::irecv(comm, from_right, right, 2));
    chorus::wait_all(q);
    check(from_left, left, 1, "isend/irecv from the left");
    check(from_right, right, 2, "isend/irecv from the right");
  }
  {  // one batch
    std::fill(from_left.begin(), from_left.end(), 0);
    std::fill(from_right.begin(), from_right.end(), 0);
    chorus::batch_isend_irecv(
        comm, {chorus::send_op(to_right, right, 1), chorus::send_op(to_left, left, 2),
               chorus::recv_op(from_left, left, 1), chorus::recv_op(from_right, right, 2)})
        .wait();
    check(from_left, left, 1, "batch from the left");
    check(from_right, right, 2, "batch from the right");
  }
  {  // sendrecv: the classic shift
    std::fill(from_left.begin(), from_left.end(), 0);
    chorus::sendrecv(comm, to_right, right, from_left, left, 3);
    check(from_left, left, 1, "sendrecv from the left");
  }
  {  // a blocking recv and send while an isend is in flight go through the engine in order
    std::vector<std::uint32_t> first(1000), second(1000);
    fill(first, r, 4);
    chorus::request q = chorus::isend(comm, first, right, 9);
    std::vector<std::uint32_t> got1(1000), got2(1000);
    chorus::recv(comm, got1, left, 9);
    q.wait();
    fill(second, r, 5);
    chorus::send(comm, second, right, 9);  // may be buffered; the receive below matches
    chorus::recv(comm, got2, left, 9);
    check(got1, left, 4, "recv after an isend");
    check(got2, left, 5, "second recv");
  }
}

}  // namespace harness

#pragma once
// chorus-perf --calibrate FILE: measures the parameters of the cost model
// (chorus/schedule/cost.hpp) on this machine and transport, and writes them as a cost
// profile (chorus/dispatch/profile_json.hpp). docs/tuning.md says what each one is.
//
//  - alpha, beta: half the round trip of a ping-pong between ranks 0 and 1, at 8 B
//    (alpha) and the slope from 256 KiB to 4 MiB (beta); the slope from 16 to 64 MiB
//    (memory_beta), and the largest size still within 85 % of beta's rate (cache_bytes);
//  - overhead: rank 0 sends 16 messages of 8 B and rank 1 answers once: 15 messages more
//    than a ping-pong's round trip, (t - 2 alpha) / 15;
//  - reduce, copy: every rank at once sums two float32 buffers into a third (chorus's own
//    kernel) and copies one, as they would inside a collective, at 512 KiB (reduce, copy)
//    and 16 MiB (memory_reduce, memory_copy); the median rank's time per byte of one
//    operand;
//  - window (transports with windows): a one-sided all-gather of 2 MiB, less its copy in,
//    one alpha and the overheads, per byte read from peers, less a copy's cost.
// Every time is the median of 7 repetitions of a timed loop; rank 0 writes the file.
#include "median.hpp"
#include "options.hpp"

#include <chorus/chorus.hpp>
#include <chorus/core/reduce_elements.hpp>
#include <chorus/dispatch/profile_json.hpp>
#include <chorus/transport/kit/copy.hpp>

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdio>
#include <ctime>
#include <string>
#include <vector>

namespace chorus_perf {

template <class Transport>
int calibrate_on(chorus::communicator<Transport>& comm, const options& o,
                 const std::string& transport) {
  using clock = std::chrono::steady_clock;
  const int rank = comm.rank(), p = comm.size();
  if (p < 2) {
    throw usage_error("--calibrate measures messages between ranks: give --np 2 or more");
  }
  constexpr int reps = 7;
  // Median over `reps` of the time per call of `body`, repeated `iters` times per rep, as
  // rank 0 measured it (every rank gets rank 0's number).
  const auto timed = [&](int iters, auto&& body) {
    std::vector<double> each;
    for (int w = 0; w < 3; ++w) body();  // warm-up
    for (int rep = 0; rep < reps; ++rep) {
      chorus::barrier(comm);
      const auto t0 = clock::now();
      for (int i = 0; i < iters; ++i) body();
      each.push_back(std::chrono::duration<double>(clock::now() - t0).count() / iters);
    }
    std::vector<double> t{median(each)};
    chorus::broadcast(comm, std::span<double>(t), 0);
    return t[0];
  };

  // alpha, beta: ping-pong between ranks 0 and 1 (the others wait)
  const auto half_round_trip = [&](std::size_t bytes, int iters) {
    std::vector<std::byte> out(bytes), in(bytes);
    return timed(iters,
                 [&] {
                   if (rank == 0) {
                     chorus::send(comm, std::span<const std::byte>(out), 1, 1);
                     chorus::recv(comm, std::span<std::byte>(in), 1, 2);
                   } else if (rank == 1) {
                     chorus::recv(comm, std::span<std::byte>(in), 0, 1);
                     chorus::send(comm, std::span<const std::byte>(out), 0, 2);
                   }
                 }) /
           2;
  };
  const double t8 = half_round_trip(8, 2000);
  // (bytes, half round trip) from 256 KiB to 64 MiB
  std::vector<std::pair<std::size_t, double>> pp;
  for (std::size_t bytes = std::size_t{256} << 10; bytes <= (std::size_t{64} << 20); bytes *= 4) {
    const int iters = static_cast<int>(std::max<std::size_t>(2, (std::size_t{64} << 20) / bytes));
    pp.emplace_back(bytes, half_round_trip(bytes, iters));
  }
  const auto slope = [&](std::size_t i, std::size_t j) {
    return std::max(0.0,
                    (pp[j].second - pp[i].second) / static_cast<double>(pp[j].first - pp[i].first));
  };
  chorus::schedule::cost_profile prof;
  prof.alpha = t8;
  prof.beta = slope(0, 2);         // 256 KiB to 4 MiB
  prof.memory_beta = slope(3, 4);  // 16 MiB to 64 MiB
  // The cache regime ends after the largest size that still moves at 85 % of its rate.
  prof.cache_bytes = pp[0].first;
  for (const auto& [bytes, t] : pp) {
    if ((t - t8) / static_cast<double>(bytes) <= prof.beta / 0.85) prof.cache_bytes = bytes;
  }

  // overhead: rank 0 sends a burst of 16 messages of 8 B, rank 1 answers once; against
  // the ping-pong's round trip, 15 more messages
  constexpr int burst = 16;
  std::vector<std::byte> small_out(8), small_in(8 * burst);
  const double tburst = timed(500, [&] {
    if (rank == 0) {
      for (int k = 0; k < burst; ++k)
        chorus::send(comm, std::span<const std::byte>(small_out), 1, 3);
      chorus::recv(comm, std::span<std::byte>(small_in.data(), 8), 1, 4);
    } else if (rank == 1) {
      for (int k = 0; k < burst; ++k) {
        chorus::recv(comm, std::span<std::byte>(small_in.data() + 8 * k, 8), 0, 3);
      }
      chorus::send(comm, std::span<const std::byte>(small_out), 0, 4);
    }
  });
  prof.overhead = std::max(0.0, (tburst - 2 * t8) / (burst - 1));

  // reduce, copy: every rank at once (the median rank), on vectors of 512 KiB (in cache)
  // and 16 MiB (main memory)
  const auto local = [&](std::size_t bytes, bool reduce) {
    const std::size_t n = bytes / sizeof(float);
    std::vector<float> x(n, 1.0f), y(n, 2.0f), z(n, 0.0f);
    const int inner = static_cast<int>(std::max<std::size_t>(1, (std::size_t{32} << 20) / bytes));
    const auto body = [&] {
      for (int k = 0; k < inner; ++k) {
        if (reduce) {
          chorus::detail::reduce_elements(z.data(), x.data(), y.data(), n, chorus::plus{});
        } else {
          chorus::detail::copy_bytes(z.data(), x.data(), bytes);
        }
        asm volatile("" : : "r"(z.data()) : "memory");
      }
    };
    std::vector<double> each;
    body();  // fault the pages in, warm the caches
    for (int rep = 0; rep < reps; ++rep) {
      chorus::barrier(comm);
      const auto t0 = clock::now();
      body();
      each.push_back(std::chrono::duration<double>(clock::now() - t0).count() / inner);
    }
    std::vector<double> all(static_cast<std::size_t>(p), 0.0);
    all[static_cast<std::size_t>(rank)] = median(each);
    chorus::all_reduce(comm, std::span<double>(all), chorus::plus{});
    return median(all) / static_cast<double>(bytes);
  };
  prof.reduce = local(std::size_t{512} << 10, true);
  prof.copy = local(std::size_t{512} << 10, false);
  prof.memory_reduce = local(std::size_t{16} << 20, true);
  prof.memory_copy = local(std::size_t{16} << 20, false);
  // window: a one-sided all-gather of 2 MiB costs its copy in, one `ready`, and reading the
  // other ranks' blocks out of their windows: what that reading costs over a local copy
  prof.window = -1.0;
  if constexpr (chorus::one_sided_transport<Transport>) {
    const std::size_t total = std::size_t{2} << 20, block = total / static_cast<std::size_t>(p);
    std::vector<std::byte> in(block), out(block * static_cast<std::size_t>(p));
    const double tag = timed(20, [&] {
      chorus::all_gather(comm, std::span<const std::byte>(in), std::span<std::byte>(out),
                         chorus::algo::one_sided{});
    });
    const double others = static_cast<double>(total - block);
    prof.window = std::max(
        0.0, (tag - static_cast<double>(block) * prof.copy - prof.alpha - (p - 1) * prof.overhead) /
                     others -
                 prof.copy);
  }

  char host[256] = "unknown host";
  ::gethostname(host, sizeof host - 1);
  char date[32] = "";
  const std::time_t now = std::time(nullptr);
  std::strftime(date, sizeof date, "%Y-%m-%d", std::gmtime(&now));
  prof.source = transport + ", " + std::to_string(p) + " ranks, " + host + ", " + date;
  if (rank == 0) {
    nlohmann::json ping_pong = nlohmann::json::object();
    ping_pong["8"] = t8;
    for (const auto& [bytes, t] : pp) ping_pong[std::to_string(bytes)] = t;
    std::string command = "chorus-perf";
    for (const auto& a : o.args) command += " " + a;
    const nlohmann::json measured = {{"transport", transport},
                                     {"ranks", p},
                                     {"ping_pong_half_round_trip_s", ping_pong},
                                     {"burst_of_16_and_answer_s", tburst},
                                     {"command", command}};
    chorus::save_cost_profile(o.calibrate, prof, {{"measured", measured}});
    std::printf("# chorus-perf --calibrate: %s\n", prof.source.c_str());
    const auto gbs = [](double per_byte) { return per_byte > 0 ? 1e-9 / per_byte : 0.0; };
    std::printf("#   alpha    %8.3f us   (ping-pong 8 B, half the round trip)\n", prof.alpha * 1e6);
    std::printf(
        "#   beta     %8.3f GB/s (ping-pong slope, 256 KiB to 4 MiB); %.3f GB/s from "
        "16 to 64 MiB\n",
        gbs(prof.beta), gbs(prof.memory_beta));
    std::printf("#   cache    %8zu KiB  (the largest ping-pong within 85 %% of the first rate)\n",
                prof.cache_bytes >> 10);
    std::printf("#   overhead %8.3f us   per message (16 messages and an answer: %.3f us)\n",
                prof.overhead * 1e6, tburst * 1e6);
    std::printf(
        "#   reduce   %8.3f GB/s (float32 sum, 512 KiB, every rank at once); %.3f GB/s "
        "at 16 MiB\n",
        gbs(prof.reduce), gbs(prof.memory_reduce));
    std::printf("#   copy     %8.3f GB/s (512 KiB, every rank at once); %.3f GB/s at 16 MiB\n",
                gbs(prof.copy), gbs(prof.memory_copy));
    if (prof.window >= 0) {
      std::printf(
          "#   window   %8.3f GB/s (reading peers' windows over a copy; one-sided "
          "all-gather)\n",
          gbs(prof.window));
    }
    std::printf("# written to %s\n", o.calibrate.c_str());
  }
  chorus::barrier(comm);
  return 0;
}

}  // namespace chorus_perf

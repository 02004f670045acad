#pragma once
// chorus-perf --calibrate FILE: measures the parameters of the cost model
// (chorus/schedule/cost.hpp) on this machine and transport with chorus::calibrate
// (chorus/tuning/calibrate.hpp, which says how each is measured), prints them and writes
// them as a cost profile (chorus/dispatch/profile_json.hpp). docs/tuning.md.
#include "options.hpp"

#include <chorus/chorus.hpp>
#include <chorus/dispatch/profile_json.hpp>
#include <chorus/tuning/calibrate.hpp>

#include <cstdio>
#include <string>

namespace chorus_perf {

template <class Transport>
int calibrate_on(chorus::communicator<Transport>& comm, const options& o) {
  if (comm.size() < 2) {
    throw usage_error("--calibrate measures messages between ranks: give --np 2 or more");
  }
  chorus::calibration c = chorus::calibrate(comm);
  const chorus::schedule::cost_profile& prof = c.profile;
  if (comm.rank() == 0) {
    std::string command = "chorus-perf";
    for (const auto& a : o.args) command += " " + a;
    c.measured["command"] = command;
    chorus::save_cost_profile(o.calibrate, prof, {{"measured", c.measured}});
    std::printf("# chorus-perf --calibrate: %s\n", prof.source.c_str());
    const auto gbs = [](double per_byte) { return per_byte > 0 ? 1e-9 / per_byte : 0.0; };
    std::printf("#   alpha    %8.3f us   (ping-pong 8 B, half the round trip)\n", prof.alpha * 1e6);
    std::printf(
        "#   beta     %8.3f GB/s (exchange slope, 256 KiB to 4 MiB); %.3f GB/s from "
        "16 to 64 MiB\n",
        gbs(prof.beta), gbs(prof.memory_beta));
    std::printf("#   cache    %8zu KiB  (the largest exchange within 85 %% of the first rate)\n",
                prof.cache_bytes >> 10);
    std::printf("#   overhead %8.3f us   per message (16 messages and an answer: %.3f us)\n",
                prof.overhead * 1e6, c.measured["burst_of_16_and_answer_s"].get<double>() * 1e6);
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
    if (prof.window_reduce >= 0) {
      std::printf(
          "#   window_reduce %.3f GB/s (reading peers' windows over a reduction; one-sided "
          "reduce-scatter)\n",
          gbs(prof.window_reduce));
    }
    std::printf("# written to %s\n", o.calibrate.c_str());
  }
  chorus::barrier(comm);
  return 0;
}

}  // namespace chorus_perf

#pragma once
// The seam between the loopback GPU test (loopback_device_test.cpp: Catch2, host compiler)
// and chorus's stream executor over the loopback transport on one GPU
// (loopback_collectives.cu: nvcc, which instantiates the reduction kernels).
#include <chorus/core/ops.hpp>
#include <chorus/schedule/schedule.hpp>

#include <cstddef>
#include <optional>
#include <string>

namespace loopback {

/// One collective on float device buffers at `ranks` ranks (threads) on device 0.
struct spec {
  int ranks = 2;
  chorus::schedule::collective kind = chorus::schedule::collective::all_reduce;
  std::optional<chorus::schedule::algorithm> algorithm;  ///< nullopt: automatic
  std::size_t chunk_bytes = 0;                           ///< 0: the stream default
  chorus::op_kind op = chorus::op_kind::sum;
  std::size_t count = 0;
  bool in_place = false;  ///< all_reduce only: the input is the output
  /// Elements by which every buffer starts past a 256-byte boundary: 0 keeps blocks as
  /// aligned as cudaMalloc makes them, 1 puts a float's 4 bytes of misalignment on all.
  std::size_t offset = 0;
  int iterations = 1;  ///< more than 1: time that many calls after one of warm-up
};

/// What the ranks saw: elements that differ from the host's reference, groups the ranks
/// opened (summed), and for a timed run the slowest rank's seconds per call.
struct outcome {
  long long wrong = 0;
  long long groups = 0;
  double seconds = 0;
  std::string first_wrong;  ///< "rank 1 element 7: 12 (expected 13)"
};

/// Runs `s`; throws the first rank's `chorus::error` (or CUDA failure).
outcome run(const spec& s);

}  // namespace loopback

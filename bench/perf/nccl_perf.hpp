#pragma once
// chorus-perf --transport nccl: the sweep on device buffers over chorus::nccl_transport
// (nccl_perf.cu, compiled by nvcc for chorus's reduction kernels).
#include "options.hpp"
#include "report.hpp"

#include <chorus/bootstrap/from_env.hpp>

namespace chorus_perf {

/// Throws `chorus::error` saying why --transport nccl cannot run on this machine (no usable GPU).
void require_nccl_device();

/// Runs the sweep as one rank of `world` on the GPU `local_rank` (modulo the devices
/// present), timing with CUDA events; returns the exit status (1 when any result was wrong).
int run_nccl(const options& o, const chorus::bootstrap::world& world, run_info info);

}  // namespace chorus_perf

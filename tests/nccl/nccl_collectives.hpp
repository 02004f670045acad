#pragma once
// The seam between the NCCL device tests (nccl_device_test.cpp: Catch2, host compiler) and
// chorus's collectives on CUDA streams (nccl_collectives.cu: nvcc, which instantiates the
// reduction kernels of device/collectives.cuh). Plain functions over run-time choices.
#include <chorus/communicator.hpp>
#include <chorus/core/ops.hpp>
#include <chorus/schedule/schedule.hpp>
#include <chorus/transport/nccl.hpp>

#include <cuda_runtime_api.h>

#include <cstddef>
#include <optional>

namespace chorus_test {

using nccl_comm = chorus::communicator<chorus::nccl_transport>;

/// One of NCCL's five collectives on float device buffers, enqueued on `stream`: with
/// chorus's algorithm `algorithm` (nullopt: automatic) or, with `native`, NCCL's own.
/// Counts as the host API: all_reduce/broadcast/reduce `count` each; reduce_scatter
/// `count` out of P * count in; all_gather `count` in, P * count out. `op`: sum, max or
/// average.
void enqueue_collective(nccl_comm& comm, chorus::schedule::collective kind, const float* in,
                        float* out, std::size_t count, chorus::op_kind op,
                        std::optional<chorus::schedule::algorithm> algorithm, bool native, int root,
                        cudaStream_t stream);

}  // namespace chorus_test

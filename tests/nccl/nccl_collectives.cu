// chorus's collectives on CUDA streams over NCCL, compiled by nvcc (see nccl_collectives.hpp).
#include "nccl_collectives.hpp"
#include "support/stream_collectives.hpp"

namespace chorus_test {

void enqueue_collective(nccl_comm& comm, chorus::schedule::collective kind, const float* in,
                        float* out, std::size_t count, chorus::op_kind op,
                        std::optional<chorus::schedule::algorithm> algorithm, bool native, int root,
                        cudaStream_t stream) {
  harness::enqueue_float_collective(comm, kind, in, out, count, op, algorithm, 0, native, root,
                                    stream);
}

}  // namespace chorus_test

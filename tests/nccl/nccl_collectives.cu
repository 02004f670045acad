// chorus's collectives on CUDA streams, compiled by nvcc (see nccl_collectives.hpp).
#include "nccl_collectives.hpp"

#include <chorus/collectives/all_gather.hpp>
#include <chorus/collectives/all_reduce.hpp>
#include <chorus/collectives/broadcast.hpp>
#include <chorus/collectives/reduce.hpp>
#include <chorus/collectives/reduce_scatter.hpp>
#include <chorus/device/collectives.cuh>

#include <span>
#include <stdexcept>

namespace chorus_test {

namespace {

template <class Op, class Algo>
void run(nccl_comm& comm, chorus::schedule::collective kind, const float* in, float* out,
         std::size_t count, const Op& op, const Algo& a, int root, cudaStream_t stream) {
  using enum chorus::schedule::collective;
  const auto p = static_cast<std::size_t>(comm.size());
  switch (kind) {
    case all_reduce:
      chorus::all_reduce(comm, std::span(in, count), std::span(out, count), op, stream, a);
      return;
    case reduce_scatter:
      chorus::reduce_scatter(comm, std::span(in, p * count), std::span(out, count), op, stream, a);
      return;
    case all_gather:
      chorus::all_gather(comm, std::span(in, count), std::span(out, p * count), stream, a);
      return;
    case broadcast:
      chorus::broadcast(comm, std::span(in, count), std::span(out, count), root, stream, a);
      return;
    case reduce:
      chorus::reduce(comm, std::span(in, count), std::span(out, count), op, root, stream, a);
      return;
    default:
      throw std::invalid_argument("enqueue_collective: not one of NCCL's five collectives");
  }
}

template <class Op>
void with_algorithm(nccl_comm& comm, chorus::schedule::collective kind, const float* in, float* out,
                    std::size_t count, const Op& op,
                    std::optional<chorus::schedule::algorithm> algorithm, bool native, int root,
                    cudaStream_t stream) {
  if (native) {
    run(comm, kind, in, out, count, op, chorus::algo::native{}, root, stream);
  } else {
    run(comm, kind, in, out, count, op, chorus::algo::dynamic{algorithm, 0}, root, stream);
  }
}

}  // namespace

void enqueue_collective(nccl_comm& comm, chorus::schedule::collective kind, const float* in,
                        float* out, std::size_t count, chorus::op_kind op,
                        std::optional<chorus::schedule::algorithm> algorithm, bool native, int root,
                        cudaStream_t stream) {
  switch (op) {
    case chorus::op_kind::sum:
      return with_algorithm(comm, kind, in, out, count, chorus::plus{}, algorithm, native, root,
                            stream);
    case chorus::op_kind::max:
      return with_algorithm(comm, kind, in, out, count, chorus::maximum{}, algorithm, native, root,
                            stream);
    case chorus::op_kind::average:
      return with_algorithm(comm, kind, in, out, count, chorus::average{}, algorithm, native, root,
                            stream);
    default:
      throw std::invalid_argument("enqueue_collective: op must be sum, max or average");
  }
}

}  // namespace chorus_test

#pragma once
// One of NCCL's five collectives on float device buffers over any communicator whose
// streams are CUDA streams, with an algorithm chosen at run time: the body the GPU tests
// share (tests/nccl over nccl_transport, tests/stream over the loopback transport).
// Instantiates chorus's reduction kernels, so only nvcc translation units include it.
#include <chorus/collectives/all_gather.hpp>
#include <chorus/collectives/all_reduce.hpp>
#include <chorus/collectives/broadcast.hpp>
#include <chorus/collectives/reduce.hpp>
#include <chorus/collectives/reduce_scatter.hpp>
#include <chorus/device/collectives.cuh>

#include <cuda_runtime_api.h>

#include <cstddef>
#include <optional>
#include <span>
#include <stdexcept>

namespace harness {

/// Enqueues `kind` on `stream`: with chorus's `algorithm` (nullopt: automatic) cut into
/// `chunk_bytes` pieces (0: the default for the transport) or, with `native`, the
/// transport's own. Counts as the host API: all_reduce/broadcast/reduce `count` each;
/// reduce_scatter `count` out of P * count in; all_gather `count` in, P * count out. `op`:
/// sum, max or average.
template <class Comm>
void enqueue_float_collective(Comm& comm, chorus::schedule::collective kind, const float* in,
                              float* out, std::size_t count, chorus::op_kind op,
                              std::optional<chorus::schedule::algorithm> algorithm,
                              std::size_t chunk_bytes, bool native, int root, cudaStream_t stream) {
  using enum chorus::schedule::collective;
  const auto p = static_cast<std::size_t>(comm.size());
  auto with_tag = [&](const auto& op_object, const auto& tag) {
    switch (kind) {
      case all_reduce:
        return chorus::all_reduce(comm, std::span(in, count), std::span(out, count), op_object,
                                  stream, tag);
      case reduce_scatter:
        return chorus::reduce_scatter(comm, std::span(in, p * count), std::span(out, count),
                                      op_object, stream, tag);
      case all_gather:
        return chorus::all_gather(comm, std::span(in, count), std::span(out, p * count), stream,
                                  tag);
      case broadcast:
        return chorus::broadcast(comm, std::span(in, count), std::span(out, count), root, stream,
                                 tag);
      case reduce:
        return chorus::reduce(comm, std::span(in, count), std::span(out, count), op_object, root,
                              stream, tag);
      default:
        throw std::invalid_argument("enqueue_float_collective: not one of NCCL's collectives");
    }
  };
  auto with_op = [&](const auto& op_object) {
    if (!native) return with_tag(op_object, chorus::algo::dynamic{algorithm, chunk_bytes});
    if constexpr (chorus::native_collective_transport<typename Comm::transport_type>) {
      return with_tag(op_object, chorus::algo::native{});
    } else {
      throw std::invalid_argument("enqueue_float_collective: the transport has no native ones");
    }
  };
  switch (op) {
    case chorus::op_kind::sum:
      return with_op(chorus::plus{});
    case chorus::op_kind::max:
      return with_op(chorus::maximum{});
    case chorus::op_kind::average:
      return with_op(chorus::average{});
    default:
      throw std::invalid_argument("enqueue_float_collective: op must be sum, max or average");
  }
}

}  // namespace harness

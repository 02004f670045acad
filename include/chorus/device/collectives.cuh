#pragma once
/// \file
/// chorus's own algorithms on CUDA streams: include this (in a file nvcc compiles) to call
/// the reducing collectives -- `chorus::all_reduce`, `reduce_scatter`, `reduce` -- on a
/// communicator over a stream-ordered transport whose streams are `cudaStream_t`
/// (`chorus::nccl_transport`) with any algorithm tag:
///
///     chorus::communicator<chorus::nccl_transport> comm(chorus::nccl_transport(world));
///     chorus::all_reduce(comm, std::span(d_grad, n), chorus::average{}, stream,
///                        chorus::algo::ring{});
///
/// It supplies the reduction kernels (`device/reduce.cuh`) that the stream executor
/// enqueues for every `recv_reduce` of a schedule, for any chorus element type and op --
/// user functors too, when callable on the device (`__host__ __device__`). Collectives that
/// only move data (all-gather, broadcast) and `algo::native` need no kernels, and so
/// neither this header nor nvcc.
#include <chorus/device/reduce.cuh>
#include <chorus/exec/stream_executor.hpp>

#include <cuda_runtime_api.h>

#include <cstddef>

template <class T, class Op>
struct chorus::detail::stream_kernels<cudaStream_t, T, Op> {
  static void reduce(void* dst, const void* a, const void* b, std::size_t n, const void* op,
                     cudaStream_t stream) {
    chorus::device::reduce(*static_cast<const Op*>(op), static_cast<const T*>(a),
                           static_cast<const T*>(b), static_cast<T*>(dst), n, stream);
  }
  static void finalize(void* data, std::size_t n, int ranks, const void* op, cudaStream_t stream) {
    chorus::device::finalize(*static_cast<const Op*>(op), static_cast<T*>(data), n, ranks, stream);
  }
};

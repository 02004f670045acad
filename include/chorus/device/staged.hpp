#pragma once
/// \file
/// `chorus::device::staged`: collectives on device buffers over a host transport (shared
/// memory, UCX, in-process), staged through pinned host memory -- for processes that share
/// one GPU, where NCCL cannot run (it takes one rank per GPU), and for machines without
/// NCCL. Host C++ over the CUDA runtime API: no nvcc, link `chorus::cuda`.
///
///     chorus::communicator<chorus::shm_transport> comm(chorus::shm_transport(world));
///     chorus::device::staged gpu(comm);
///     gpu.all_reduce(std::span(d_grad, n), chorus::average{}, stream);   // device memory
///
/// Each call copies the device input into pinned host memory on `stream`, waits for it,
/// runs the host collective (any algorithm tag, any op) on the pinned copy, copies the
/// result back on `stream` and waits again: when it returns, the result is in device
/// memory and `stream` has no staging work left. Because the host collective must see
/// the data, the call synchronises `stream` (unlike the NCCL transport's calls, which only
/// enqueue). The pinned buffer grows to the largest call and is reused; it is freed with
/// the `staged` object. A CUDA failure throws `chorus::error` (device/runtime.hpp); a
/// failure of the collective poisons the communicator as usual.
#include <chorus/collectives/all_gather.hpp>
#include <chorus/collectives/all_reduce.hpp>
#include <chorus/collectives/broadcast.hpp>
#include <chorus/collectives/reduce.hpp>
#include <chorus/collectives/reduce_scatter.hpp>
#include <chorus/communicator.hpp>
#include <chorus/device/runtime.hpp>
#include <chorus/dispatch/algo.hpp>
#include <chorus/transport/contract.hpp>

#include <cuda_runtime_api.h>

#include <cstddef>
#include <span>
#include <string>
#include <utility>

namespace chorus::inline v0::device {

template <transport Transport>
class staged {
 public:
  explicit staged(communicator<Transport>& comm) : comm_(comm) {}
  staged(const staged&) = delete;
  staged& operator=(const staged&) = delete;
  ~staged() {
    if (pinned_ != nullptr) (void)cudaFreeHost(pinned_);
  }

  [[nodiscard]] communicator<Transport>& comm() noexcept { return comm_; }

  /// `out = op over ranks of in`, element-wise; `in` and `out` may be the same memory.
  template <element_type T, class Op, algo::tag Algo = algo::automatic>
  void all_reduce(std::span<const T> in, std::span<T> out, Op op, cudaStream_t stream,
                  Algo a = {}) {
    std::span<T> h = stage_in(in, in.size(), stream);
    chorus::all_reduce(comm_, h, op, a);
    stage_out(std::span<const T>(h), out, stream);
  }
  template <element_type T, class Op, algo::tag Algo = algo::automatic>
  void all_reduce(std::span<T> inout, Op op, cudaStream_t stream, Algo a = {}) {
    all_reduce(std::span<const T>(inout), inout, op, stream, a);
  }

  /// Equal blocks: `in` holds size() blocks of `out.size()` elements.
  template <element_type T, class Op, algo::tag Algo = algo::automatic>
  void reduce_scatter(std::span<const T> in, std::span<T> out, Op op, cudaStream_t stream,
                      Algo a = {}) {
    std::span<T> h = stage_in(in, in.size() + out.size(), stream);
    const std::span<T> h_out = h.subspan(in.size(), out.size());
    chorus::reduce_scatter(comm_, std::span<const T>(h.first(in.size())), h_out, op, a);
    stage_out(std::span<const T>(h_out), out, stream);
  }

  /// Equal blocks: `out` receives size() blocks of `in.size()` elements, in rank order.
  template <element_type T, algo::tag Algo = algo::automatic>
  void all_gather(std::span<const T> in, std::span<T> out, cudaStream_t stream, Algo a = {}) {
    std::span<T> h = stage_in(in, in.size() + out.size(), stream);
    const std::span<T> h_out = h.subspan(in.size(), out.size());
    chorus::all_gather(comm_, std::span<const T>(h.first(in.size())), h_out, a);
    stage_out(std::span<const T>(h_out), out, stream);
  }

  /// The root's `buf` to every rank's `buf`.
  template <element_type T, algo::tag Algo = algo::automatic>
  void broadcast(std::span<T> buf, int root, cudaStream_t stream, Algo a = {}) {
    const bool is_root = comm_.rank() == root;
    std::span<T> h =
        is_root ? stage_in(std::span<const T>(buf), buf.size(), stream) : host_span<T>(buf.size());
    chorus::broadcast(comm_, h, root, a);
    if (!is_root) stage_out(std::span<const T>(h), buf, stream);
  }

  /// The reduction of every rank's `in` into the root's `out` (other ranks: `out` unused).
  template <element_type T, class Op, algo::tag Algo = algo::automatic>
  void reduce(std::span<const T> in, std::span<T> out, Op op, int root, cudaStream_t stream,
              Algo a = {}) {
    std::span<T> h = stage_in(in, in.size(), stream);
    chorus::reduce(comm_, h, op, root, a);
    if (comm_.rank() == root) stage_out(std::span<const T>(h), out, stream);
  }

  /// Bytes of pinned host memory held now.
  [[nodiscard]] std::size_t pinned_bytes() const noexcept { return pinned_bytes_; }

 private:
  /// Pinned host memory for `count` elements of T (grown, never shrunk).
  template <class T>
  std::span<T> host_span(std::size_t count) {
    const std::size_t bytes = count * sizeof(T);
    if (bytes > pinned_bytes_) {
      if (pinned_ != nullptr) check(cudaFreeHost(pinned_), "cudaFreeHost of the staging buffer");
      pinned_ = nullptr;
      pinned_bytes_ = 0;
      check(cudaMallocHost(&pinned_, bytes),
            ("cudaMallocHost of " + std::to_string(bytes) + " staging bytes").c_str());
      pinned_bytes_ = bytes;
    }
    return {static_cast<T*>(pinned_), count};
  }

  /// Pinned memory for `count` elements whose first in.size() hold a copy of device `in`.
  template <class T>
  std::span<T> stage_in(std::span<const T> in, std::size_t count, cudaStream_t s) {
    std::span<T> h = host_span<T>(count);
    if (!in.empty()) {
      check(cudaMemcpyAsync(h.data(), in.data(), in.size_bytes(), cudaMemcpyDeviceToHost, s),
            "staging the device input to host memory");
    }
    check(cudaStreamSynchronize(s), "waiting for the staged input");
    return h;
  }

  template <class T>
  void stage_out(std::span<const T> h, std::span<T> out, cudaStream_t s) {
    if (h.size() != out.size()) {
      throw error(errc::invalid_argument,
                  "chorus::device::staged: the device output has " + std::to_string(out.size()) +
                      " elements, the collective produced " + std::to_string(h.size()));
    }
    if (!out.empty()) {
      check(cudaMemcpyAsync(out.data(), h.data(), h.size_bytes(), cudaMemcpyHostToDevice, s),
            "copying the result back to device memory");
    }
    check(cudaStreamSynchronize(s), "waiting for the result's copy to the device");
  }

  communicator<Transport>& comm_;
  void* pinned_ = nullptr;
  std::size_t pinned_bytes_ = 0;
};

}  // namespace chorus::inline v0::device

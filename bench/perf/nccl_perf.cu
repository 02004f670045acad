// chorus-perf --transport nccl: the sweep of sweep.hpp on device buffers over
// chorus::nccl_transport. Compiled by nvcc: chorus's own algorithms reduce with the kernels of
// chorus/device/collectives.cuh; -a native runs NCCL's collectives for comparison.
//
// The sweep lays buffers out in host memory and checks results there; this backend keeps a
// device mirror of both host buffers, runs every collective on the mirror of the spans it
// is given, uploads the filled spans after each fill and downloads before each check --
// both copies enqueued on the rank's stream, so that they are ordered with the collectives
// also on a cudaStreamNonBlocking stream (a plain cudaMemcpy goes on the legacy stream,
// which such a stream does not wait for). Timing: CUDA events
// around the enqueued calls on the rank's stream (as nccl-tests), then the slowest rank.
#include "nccl_perf.hpp"
#include "sweep.hpp"

#include <chorus/collectives/all_gather.hpp>
#include <chorus/collectives/all_reduce.hpp>
#include <chorus/collectives/broadcast.hpp>
#include <chorus/collectives/reduce.hpp>
#include <chorus/collectives/reduce_scatter.hpp>
#include <chorus/device/collectives.cuh>
#include <chorus/device/runtime.hpp>
#include <chorus/transport/nccl.hpp>

#include <cuda_runtime_api.h>

#include <array>
#include <chrono>
#include <cstddef>
#include <span>
#include <vector>

namespace chorus_perf {
namespace {

using nccl_comm = chorus::communicator<chorus::nccl_transport>;

/// CUDA events, destroyed on scope exit.
class events {
 public:
  explicit events(std::size_t n) : e_(n) {
    for (auto& e : e_) chorus::device::check(cudaEventCreate(&e), "cudaEventCreate");
  }
  ~events() {
    for (auto e : e_) cudaEventDestroy(e);
  }
  events(const events&) = delete;
  events& operator=(const events&) = delete;
  cudaEvent_t operator[](std::size_t i) const { return e_[i]; }

 private:
  std::vector<cudaEvent_t> e_;
};

struct nccl_backend {
  nccl_comm& comm;
  const options& o;
  cudaStream_t stream;
  std::span<const std::byte> host_in, host_out;
  chorus::device::memory dev_in, dev_out;

  [[nodiscard]] int rank() const { return comm.rank(); }
  [[nodiscard]] int size() const { return comm.size(); }
  void wait() { comm.transport().synchronize(stream, comm.make_deadline()); }

  /// Host values through a native all-reduce (the sweep's own small reductions).
  template <class T, class Op>
  void all_reduce_host(std::span<T> v, Op op) {
    chorus::device::memory d(v.size_bytes());
    auto* p = reinterpret_cast<T*>(d.get());
    chorus::device::check(
        cudaMemcpyAsync(p, v.data(), v.size_bytes(), cudaMemcpyHostToDevice, stream), "upload");
    chorus::all_reduce(comm, std::span<T>(p, v.size()), op, stream, chorus::algo::native{});
    chorus::device::check(
        cudaMemcpyAsync(v.data(), p, v.size_bytes(), cudaMemcpyDeviceToHost, stream), "download");
    wait();
  }
  void barrier() {
    std::array<int, 1> token{1};
    all_reduce_host(std::span<int>(token), chorus::plus{});
  }
  void max_all(std::span<double> v) { all_reduce_host(v, chorus::maximum{}); }
  void sum_all(std::span<double> v) { all_reduce_host(v, chorus::plus{}); }
  long long sum_all(long long x) {
    std::array<long long, 1> v{x};
    all_reduce_host(std::span<long long>(v), chorus::plus{});
    return v[0];
  }

  template <class T>
  void attach(std::span<T> inbuf, std::span<T> outbuf) {
    host_in = std::as_bytes(inbuf);
    host_out = std::as_bytes(outbuf);
    dev_in = chorus::device::memory(host_in.size());
    dev_out = chorus::device::memory(host_out.size());
  }
  /// The device mirror of a span of the host buffers.
  template <class T>
  std::span<T> mirror(std::span<T> host) const {
    const auto* p = reinterpret_cast<const std::byte*>(host.data());
    std::byte* base = dev_out.get() + (p - host_out.data());
    if (p >= host_in.data() && p < host_in.data() + host_in.size()) {
      base = dev_in.get() + (p - host_in.data());
    }
    return {reinterpret_cast<T*>(base), host.size()};
  }
  /// Enqueues the copy of host `span` to or from its mirror on the rank's stream. Pageable
  /// host memory: the upload returns once CUDA has taken the bytes, so the sweep may fill
  /// again at once; the download is complete after `wait`.
  template <class T>
  void copy_mirror(std::span<T> host, cudaMemcpyKind kind, const char* what) {
    if (host.empty()) return;
    const std::span<T> d = mirror(host);
    void* dst = kind == cudaMemcpyHostToDevice ? static_cast<void*>(d.data()) : host.data();
    const void* src =
        kind == cudaMemcpyHostToDevice ? static_cast<const void*>(host.data()) : d.data();
    chorus::device::check(cudaMemcpyAsync(dst, src, host.size_bytes(), kind, stream), what);
  }
  /// The spans the fill wrote (the output with its sentinel value, then the input unless
  /// it lies inside the output, as in place), not the whole 2 x 256 MiB of the buffers.
  template <class T>
  void upload(const layout<T>& l) {
    copy_mirror(l.out, cudaMemcpyHostToDevice, "uploading the output's sentinels");
    const bool inside = l.in_writable.data() >= l.out.data() &&
                        l.in_writable.data() + l.in_writable.size() <= l.out.data() + l.out.size();
    if (!inside) copy_mirror(l.in_writable, cudaMemcpyHostToDevice, "uploading the input");
  }
  template <class T>
  void download(std::span<T> got) {
    copy_mirror(got, cudaMemcpyDeviceToHost, "downloading the result");
    wait();
  }

  template <class Fn>
  std::vector<double> device_times(int iters, Fn fn) {
    const auto n = static_cast<std::size_t>(iters);
    events ev(n + 1);
    chorus::device::check(cudaEventRecord(ev[0], stream), "cudaEventRecord");
    for (std::size_t i = 0; i < n; ++i) {
      fn();
      chorus::device::check(cudaEventRecord(ev[i + 1], stream), "cudaEventRecord");
    }
    wait();
    std::vector<double> t(n + 1);
    float ms = 0;
    chorus::device::check(cudaEventElapsedTime(&ms, ev[0], ev[n]), "cudaEventElapsedTime");
    t[0] = ms / 1e3 / static_cast<double>(n);
    for (std::size_t i = 0; i < n; ++i) {
      chorus::device::check(cudaEventElapsedTime(&ms, ev[i], ev[i + 1]), "cudaEventElapsedTime");
      t[i + 1] = ms / 1e3;
    }
    return t;
  }

  template <class T, class Algo>
  void enqueue(const Algo& tag, chorus::op_kind kind, std::span<const T> in, std::span<T> out) {
    const std::span<const T> din = mirror(in);
    const std::span<T> dout = mirror(out);
    switch (o.coll) {
      case collective::all_reduce:
        with_op(kind, [&](auto op) { chorus::all_reduce(comm, din, dout, op, stream, tag); });
        break;
      case collective::reduce_scatter:
        with_op(kind, [&](auto op) { chorus::reduce_scatter(comm, din, dout, op, stream, tag); });
        break;
      case collective::all_gather:
        chorus::all_gather(comm, din, dout, stream, tag);
        break;
      case collective::broadcast:
        chorus::broadcast(comm, din, dout, o.root, stream, tag);
        break;
      case collective::reduce:
        with_op(kind, [&](auto op) { chorus::reduce(comm, din, dout, op, o.root, stream, tag); });
        break;
      default:
        throw usage_error(
            "--transport nccl runs all_reduce, reduce_scatter, all_gather, broadcast and "
            "reduce (NCCL's collectives), not " +
            std::string(name(o.coll)));
    }
  }

  template <class T>
  std::span<T> run(std::size_t algorithm, chorus::op_kind kind, std::span<const T> in,
                   std::span<T> out) {
    const algorithm_choice& a = o.algorithms[algorithm];
    if (a.native) {
      enqueue<T>(chorus::algo::native{}, kind, in, out);
    } else {
      enqueue<T>(chorus::algo::dynamic{a.id, 0}, kind, in, out);
    }
    return out;
  }
};

}  // namespace

void require_nccl_device() {
  const std::string why = chorus::device::unavailable_reason();
  if (!why.empty()) {
    throw chorus::error(chorus::errc::transport, "--transport nccl needs a CUDA device: " + why);
  }
}

int run_nccl(const options& o, const chorus::bootstrap::world& world, run_info info) {
  require_nccl_device();
  int devices = 0;
  chorus::device::check(cudaGetDeviceCount(&devices), "cudaGetDeviceCount");
  const int local = world.local_rank >= 0 ? world.local_rank : world.rank;
  chorus::device::check(cudaSetDevice(local % devices), "cudaSetDevice");
  nccl_comm comm{chorus::nccl_transport(world)};
  cudaStream_t stream = nullptr;  // -y 1: NCCL's calls on the default (legacy) stream
  if (!o.stream_null) {
    chorus::device::check(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking),
                          "cudaStreamCreate");
  }
  int status = 1;
  {
    nccl_backend backend{comm, o, stream, {}, {}, {}, {}};
    status = run_sweep(backend, o, std::move(info));
    backend.barrier();  // rank 0 serves the store: nobody leaves before everyone is done
  }
  if (stream != nullptr) cudaStreamDestroy(stream);
  return status;
}

}  // namespace chorus_perf

// chorus's stream executor over the loopback transport on one GPU (cuda_loopback.hpp), with
// the real reduction kernels: buffers filled from the host, the collective enqueued on each
// rank's stream, results checked against a host reference built from the same integers
// (every partial sum is a small integer, exact in float in any order).
#include "cuda_loopback.hpp"
#include "loopback_collectives.hpp"
#include "support/stream_collectives.hpp"

#include <chorus/device/runtime.hpp>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <mutex>
#include <string>
#include <vector>

namespace loopback {

namespace {

using chorus::schedule::collective;
using comm_type = chorus::communicator<fake::cuda_loopback>;

/// Rank r's element i of its input: small integers, so every partial sum is exact.
float value(int r, std::size_t i) { return static_cast<float>((r + 1) + static_cast<int>(i % 13)); }

/// The reduction over `p` ranks of element i, as the host computes it.
float reduced(chorus::op_kind op, int p, std::size_t i) {
  float sum = 0, most = value(0, i);
  for (int r = 0; r < p; ++r) {
    sum += value(r, i);
    most = std::max(most, value(r, i));
  }
  if (op == chorus::op_kind::max) return most;
  if (op == chorus::op_kind::average) return chorus::average{}.finalize(sum, p);
  return sum;
}

/// Device memory for `n` floats starting `offset` elements past cudaMalloc's alignment.
class buffer {
 public:
  buffer(std::size_t n, std::size_t offset) : offset_(offset) {
    chorus::device::check(cudaMalloc(&base_, (n + offset + 1) * sizeof(float)), "cudaMalloc");
  }
  buffer(const buffer&) = delete;
  buffer& operator=(const buffer&) = delete;
  ~buffer() { (void)cudaFree(base_); }
  [[nodiscard]] float* data() const noexcept { return static_cast<float*>(base_) + offset_; }

 private:
  void* base_ = nullptr;
  std::size_t offset_;
};

}  // namespace

outcome run(const spec& s) {
  const int p = s.ranks;
  const auto P = static_cast<std::size_t>(p);
  const std::size_t n = s.count;
  const int root = p - 1;
  std::size_t in_len = n, out_len = n;
  if (s.kind == collective::reduce_scatter) in_len = n * P;
  if (s.kind == collective::all_gather) out_len = n * P;
  const bool in_place = s.in_place && s.kind == collective::all_reduce;

  outcome result;
  std::mutex m;
  std::atomic<long long> groups{0};
  std::vector<double> seconds(P, 0.0);
  fake::run<fake::cuda_loopback>(p, [&](comm_type& comm, fake::cuda_memory::stream_holder& sh) {
    const cudaStream_t stream = sh.get();
    const int r = comm.rank();
    buffer in(in_len, s.offset), out(out_len, s.offset);
    float* const din = in_place ? out.data() : in.data();
    std::vector<float> host_in(in_len);
    for (std::size_t i = 0; i < in_len; ++i) host_in[i] = value(r, i);
    std::vector<float> poison(out_len, -1.0f);
    auto fill = [&] {
      if (!in_place) {
        chorus::device::check(cudaMemcpyAsync(out.data(), poison.data(), out_len * sizeof(float),
                                              cudaMemcpyHostToDevice, stream),
                              "cudaMemcpyAsync");
      }
      chorus::device::check(cudaMemcpyAsync(din, host_in.data(), in_len * sizeof(float),
                                            cudaMemcpyHostToDevice, stream),
                            "cudaMemcpyAsync");
    };
    auto call = [&] {
      harness::enqueue_float_collective(comm, s.kind, din, out.data(), n, s.op, s.algorithm,
                                        s.chunk_bytes, false, root, stream);
    };
    fill();
    call();
    std::vector<float> got(out_len);
    chorus::device::check(cudaMemcpyAsync(got.data(), out.data(), out_len * sizeof(float),
                                          cudaMemcpyDeviceToHost, stream),
                          "cudaMemcpyAsync");
    chorus::device::check(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
    auto expected = [&](std::size_t k) {
      switch (s.kind) {
        case collective::all_reduce:
        case collective::reduce:
          return reduced(s.op, p, k);
        case collective::reduce_scatter:
          return reduced(s.op, p, static_cast<std::size_t>(r) * n + k);
        case collective::all_gather:
          return value(static_cast<int>(k / n), k % n);
        default:  // broadcast
          return value(root, k);
      }
    };
    const bool has_output = s.kind != collective::reduce || r == root;
    long long wrong = 0;
    std::string first;
    for (std::size_t k = 0; has_output && k < out_len; ++k) {
      const float want = expected(k);
      if (std::memcmp(&got[k], &want, sizeof(float)) == 0) continue;
      if (wrong++ == 0) {
        first = "rank " + std::to_string(r) + " element " + std::to_string(k) + ": " +
                std::to_string(got[k]) + " (expected " + std::to_string(want) + ")";
      }
    }
    if (s.iterations > 1) {
      cudaEvent_t start = nullptr, stop = nullptr;
      chorus::device::check(cudaEventCreate(&start), "cudaEventCreate");
      chorus::device::check(cudaEventCreate(&stop), "cudaEventCreate");
      chorus::device::check(cudaEventRecord(start, stream), "cudaEventRecord");
      for (int i = 0; i < s.iterations; ++i) call();
      chorus::device::check(cudaEventRecord(stop, stream), "cudaEventRecord");
      chorus::device::check(cudaEventSynchronize(stop), "cudaEventSynchronize");
      float ms = 0;
      chorus::device::check(cudaEventElapsedTime(&ms, start, stop), "cudaEventElapsedTime");
      seconds[static_cast<std::size_t>(r)] = ms / 1e3 / s.iterations;
      (void)cudaEventDestroy(start);
      (void)cudaEventDestroy(stop);
    }
    groups += comm.transport().groups;
    std::lock_guard lock(m);
    result.wrong += wrong;
    if (result.first_wrong.empty()) result.first_wrong = first;
  });
  result.groups = groups.load();
  result.seconds = *std::max_element(seconds.begin(), seconds.end());
  return result;
}

}  // namespace loopback

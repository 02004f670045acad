#pragma once
// The fake stream-ordered transport of fake_stream.hpp on one GPU: several ranks as threads,
// each with its own non-blocking stream, device buffers, cudaMallocAsync scratch and the
// real reduction kernels -- the stream executor as it runs over NCCL, at rank counts NCCL
// cannot put on one GPU. A message is a device-to-device copy enqueued on the receiver's
// stream after an event of the sender's (its bytes are ready) and before one the sender's
// stream then waits for (its buffer may be reused): NCCL's rendezvous, with the host
// matching the messages. Host code over the CUDA runtime; compiled where the kernels are.
#include "fake_stream.hpp"

#include <chorus/device/runtime.hpp>

#include <cuda_runtime_api.h>

namespace fake {

struct cuda_memory {
  using stream_type = cudaStream_t;

  /// A non-blocking stream of the current device, destroyed with its owner.
  class stream_holder {
   public:
    stream_holder() {
      chorus::device::check(cudaStreamCreateWithFlags(&s_, cudaStreamNonBlocking),
                            "cudaStreamCreateWithFlags");
    }
    stream_holder(const stream_holder&) = delete;
    stream_holder& operator=(const stream_holder&) = delete;
    ~stream_holder() { (void)cudaStreamDestroy(s_); }
    [[nodiscard]] cudaStream_t get() const noexcept { return s_; }

   private:
    cudaStream_t s_ = nullptr;
  };
  static void note(cudaStream_t, const char*) noexcept {}

  /// `ready`: recorded on the sender's stream when its group ends; `done`: on the
  /// receiver's after the copy.
  struct message_events {
    cudaEvent_t ready = nullptr;
    cudaEvent_t done = nullptr;
    message_events() = default;
    message_events(const message_events&) = delete;
    message_events& operator=(const message_events&) = delete;
    ~message_events() {
      if (ready != nullptr) (void)cudaEventDestroy(ready);
      if (done != nullptr) (void)cudaEventDestroy(done);
    }
  };
  static void record(cudaEvent_t& e, cudaStream_t s) {
    chorus::device::check(cudaEventCreateWithFlags(&e, cudaEventDisableTiming),
                          "cudaEventCreateWithFlags");
    chorus::device::check(cudaEventRecord(e, s), "cudaEventRecord");
  }
  static void sent(message_events& m, cudaStream_t s) { record(m.ready, s); }
  static void receive(std::span<std::byte> dst, const std::byte* src, message_events& m,
                      cudaStream_t s) {
    chorus::device::check(cudaStreamWaitEvent(s, m.ready, 0), "cudaStreamWaitEvent");
    if (!dst.empty()) {
      chorus::device::check(
          cudaMemcpyAsync(dst.data(), src, dst.size(), cudaMemcpyDeviceToDevice, s),
          "cudaMemcpyAsync of a message");
    }
    record(m.done, s);
  }
  static void taken(message_events& m, cudaStream_t s) {
    chorus::device::check(cudaStreamWaitEvent(s, m.done, 0), "cudaStreamWaitEvent");
  }

  static void copy(std::span<std::byte> dst, std::span<const std::byte> src, cudaStream_t s) {
    chorus::device::check(
        cudaMemcpyAsync(dst.data(), src.data(), src.size(), cudaMemcpyDeviceToDevice, s),
        "cudaMemcpyAsync");
  }
  static std::byte* allocate(std::size_t bytes, cudaStream_t s) {
    void* p = nullptr;
    chorus::device::check(cudaMallocAsync(&p, bytes, s), "cudaMallocAsync");
    return static_cast<std::byte*>(p);
  }
  static void deallocate(std::byte* p, cudaStream_t s) noexcept { (void)cudaFreeAsync(p, s); }

  /// Every rank of the loopback is on device 0 (the transport's `device` is ignored).
  struct device_scope {
    explicit device_scope(int) noexcept {}
  };
};

using cuda_loopback = basic_transport<cuda_memory>;

static_assert(chorus::stream_ordered_transport<cuda_loopback>);

}  // namespace fake

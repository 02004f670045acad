#pragma once
/// \file
/// The stream-ordered executor: runs one rank's pure schedule over a
/// `chorus::stream_ordered_transport` (NCCL) by enqueuing, never by waiting.
///
/// It runs the same schedules as the host executor (`exec/executor.hpp`), so ring, tree,
/// halving-doubling and the rest exist once for every transport. Per schedule step it opens
/// a group, enqueues the step's receives and sends in op order, closes the group, then
/// enqueues the step's copies and, for every `recv_reduce`, the reduction kernel that
/// combines the received piece with the local operand -- all on the caller's stream, so
/// stream order replaces the host executor's waits: the next step's transfers start after
/// this step's reductions, and the staging area is reused safely. Nothing here blocks the
/// host or synchronises with the device, so a CUDA graph can capture a whole collective.
///
/// Matching is positional per pair of ranks (no tags on a stream-ordered transport); the
/// schedules list each pair's messages in the same order on both sides (checked for every
/// algorithm by tests/stream). Zero-byte messages are left out on both sides.
#include <chorus/communicator.hpp>
#include <chorus/core/error.hpp>
#include <chorus/exec/executor.hpp>
#include <chorus/schedule/schedule.hpp>
#include <chorus/transport/contract.hpp>

#include <concepts>
#include <cstddef>
#include <span>
#include <string>

namespace chorus::inline v0::detail {

/// `dst[i] = op(a[i], b[i])` for `n` elements, enqueued on `stream`.
template <class Stream>
using stream_reduce_fn = void (*)(void* dst, const void* a, const void* b, std::size_t n,
                                  const void* op, Stream stream);
/// `data[i] = finalize(data[i], ranks)`, enqueued on `stream` (only `average`).
template <class Stream>
using stream_finalize_fn = void (*)(void* data, std::size_t n, int ranks, const void* op,
                                    Stream stream);

/// Scratch from the transport's stream-ordered allocator, released (stream-ordered) when
/// the collective's enqueuing ends, also on an exception.
template <stream_ordered_transport Transport>
class stream_scratch {
 public:
  using stream_type = typename Transport::stream_type;
  stream_scratch(Transport& t, std::size_t bytes, stream_type stream)
      : transport_(t), stream_(stream), memory_(bytes == 0 ? nullptr : t.allocate(bytes, stream)) {}
  stream_scratch(const stream_scratch&) = delete;
  stream_scratch& operator=(const stream_scratch&) = delete;
  ~stream_scratch() {
    if (memory_ != nullptr) transport_.deallocate(memory_, stream_);
  }
  [[nodiscard]] std::byte* data() const noexcept { return memory_; }

 private:
  Transport& transport_;
  stream_type stream_;
  std::byte* memory_;
};

/// Enqueues `s` on `stream`, counting what it enqueues into `comm.traffic()`. The buffers
/// are memory the transport reaches (device memory for NCCL); `reduce` enqueues the
/// (element type, op) kernel.
template <stream_ordered_transport Transport>
void execute_on_stream(communicator<Transport>& comm, const schedule::schedule& s,
                       const std::byte* input, std::byte* output, std::size_t elem_size,
                       stream_reduce_fn<typename Transport::stream_type> reduce, const void* op,
                       typename Transport::stream_type stream) {
  Transport& t = comm.transport();
  const std::size_t es = elem_size;
  const std::size_t scratch_bytes = (s.scratch_count * es + 255) / 256 * 256;
  const std::size_t staging_bytes = staging_count(s) * es;
  stream_scratch<Transport> memory(t, scratch_bytes + staging_bytes, stream);
  std::byte* const scratch = memory.data();
  std::byte* const staging = scratch == nullptr ? nullptr : scratch + scratch_bytes;

  auto address = [&](const schedule::region& r) -> std::byte* {
    switch (r.buf) {
      case schedule::buffer::input:
        return const_cast<std::byte*>(input) + r.offset * es;  // only read (schedule contract)
      case schedule::buffer::output:
        return output + r.offset * es;
      case schedule::buffer::scratch:
        return scratch + r.offset * es;
    }
    return nullptr;
  };

  for (std::size_t k = 0; k < s.steps(); ++k) {
    const std::span<const schedule::op> step = s.step(k);
    bool transfers = false;
    for (const schedule::op& o : step) {
      transfers =
          transfers || (o.code != schedule::op_code::copy &&
                        (o.code == schedule::op_code::send ? o.src.count : o.dst.count) != 0);
    }
    if (transfers) {
      t.group_start();
      std::size_t staged = 0;
      for (const schedule::op& o : step) {
        switch (o.code) {
          case schedule::op_code::send:
            if (o.src.count != 0) {
              t.enqueue_send(o.peer, {address(o.src), o.src.count * es}, stream);
              comm.count_sent(o.src.count * es);
            }
            break;
          case schedule::op_code::recv:
            if (o.dst.count != 0) {
              t.enqueue_recv(o.peer, {address(o.dst), o.dst.count * es}, stream);
              comm.count_received(o.dst.count * es);
            }
            break;
          case schedule::op_code::recv_reduce:
            if (o.dst.count != 0) {
              t.enqueue_recv(o.peer, {staging + staged, o.dst.count * es}, stream);
              comm.count_received(o.dst.count * es);
            }
            staged += o.dst.count * es;
            break;
          case schedule::op_code::copy:
            break;
        }
      }
      t.group_end();
    }
    std::size_t staged = 0;
    for (const schedule::op& o : step) {
      if (o.code == schedule::op_code::copy) {
        std::byte* dst = address(o.dst);
        const std::byte* src = address(o.src);
        if (dst != src && o.dst.count != 0) {
          t.copy({dst, o.dst.count * es}, {src, o.src.count * es}, stream);
        }
      } else if (o.code == schedule::op_code::recv_reduce) {
        if (o.dst.count != 0) {
          reduce(address(o.dst), address(o.src), staging + staged, o.dst.count, op, stream);
        }
        staged += o.dst.count * es;
      }
    }
  }
}

/// The kernels that run chorus's reductions on streams of type `Stream`, for element type
/// `T` and op `Op`: a specialisation provides
///     static void reduce(void* dst, const void* a, const void* b, std::size_t n,
///                        const void* op, Stream stream);   // see stream_reduce_fn
///     static void finalize(void* data, std::size_t n, int ranks, const void* op,
///                          Stream stream);                 // see stream_finalize_fn
/// For CUDA streams it lives with the kernels, in `chorus/device/collectives.cuh` (compiled
/// by nvcc); host code that only moves data (all-gather, broadcast, `algo::native`) never
/// needs it.
template <class Stream, class T, class Op>
struct stream_kernels;

template <class Stream, class T, class Op>
concept has_stream_kernels = requires {
  &stream_kernels<Stream, T, Op>::reduce;
  &stream_kernels<Stream, T, Op>::finalize;
};

}  // namespace chorus::inline v0::detail

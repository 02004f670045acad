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
#include <chorus/core/deadline.hpp>
#include <chorus/core/error.hpp>
#include <chorus/exec/executor.hpp>
#include <chorus/schedule/schedule.hpp>
#include <chorus/transport/contract.hpp>

#include <concepts>
#include <cstddef>
#include <cstdint>
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

/// The executor's hold on one group of the transport (`group_start` .. `group_end`): when
/// enqueuing throws before `end`, the destructor closes the group with `group_cancel`, so
/// that the transport's group never stays open behind the exception (NCCL's would swallow
/// this thread's next calls on any communicator).
template <stream_ordered_transport Transport>
class group_guard {
 public:
  explicit group_guard(Transport& t) : transport_(t) { transport_.group_start(); }
  group_guard(const group_guard&) = delete;
  group_guard& operator=(const group_guard&) = delete;
  ~group_guard() {
    if (open_) transport_.group_cancel();
  }
  /// Closes the group; the transport waits for it at most until `until`.
  void end(deadline until) {
    open_ = false;  // group_end closes the group even when it throws
    transport_.group_end(until);
  }

 private:
  Transport& transport_;
  bool open_ = true;
};

/// The alignment the reduction kernels want of their three arrays alike: `device::reduce`
/// moves 16-byte vectors when the addresses agree modulo 16, and goes element by element
/// otherwise.
inline constexpr std::size_t stream_staging_alignment = 16;

/// Where the next `recv_reduce` payload goes in staging: at `staged` or just after it, at
/// the address that agrees with `dst` modulo `stream_staging_alignment`, so that its
/// reduction takes the kernels' vector path. A payload that follows one whose destination
/// it continues lands right after it, so the two reduce in one launch.
inline std::size_t stream_stage_at(const std::byte* staging, std::size_t staged,
                                   const std::byte* dst) noexcept {
  constexpr std::uintptr_t a = stream_staging_alignment;
  const std::uintptr_t want = reinterpret_cast<std::uintptr_t>(dst) % a;
  const std::uintptr_t have = reinterpret_cast<std::uintptr_t>(staging + staged) % a;
  return staged + static_cast<std::size_t>((want + a - have) % a);
}

/// One reduction launch being put together from contiguous `recv_reduce` pieces.
struct stream_reduction {
  std::byte* dst = nullptr;
  const std::byte* a = nullptr;
  const std::byte* b = nullptr;
  std::size_t n = 0;  ///< elements

  /// Whether the piece (dst, a, b) of `count` elements continues this launch: its three
  /// arrays follow this launch's three, and the merged operand `a` is either the merged
  /// output itself or apart from it (the kernels take exact aliasing only).
  [[nodiscard]] bool continued_by(const std::byte* d, const std::byte* x, const std::byte* y,
                                  std::size_t count, std::size_t es) const noexcept {
    if (n == 0) return false;
    const std::size_t bytes = n * es;
    if (d != dst + bytes || x != a + bytes || y != b + bytes) return false;
    const auto at = [](const std::byte* p) { return reinterpret_cast<std::uintptr_t>(p); };
    const std::size_t total = bytes + count * es;
    return a == dst || at(a) + total <= at(dst) || at(dst) + total <= at(a);
  }
};

/// Enqueues `s` on `stream`, counting what it enqueues into `comm.traffic()`. The buffers
/// are memory the transport reaches (device memory for NCCL); `reduce` enqueues the
/// (element type, op) kernel.
///
/// Per step: the group of the step's receives and sends (closed under the communicator's
/// deadline), then its copies and reductions in op order. On a stream every reduction of a
/// step starts after the step's group has ended, so pieces of one transfer give no overlap
/// here; the `recv_reduce` pieces of a step that are contiguous in all three arrays run as
/// one launch (their payloads are staged contiguously, each at its destination's alignment).
template <stream_ordered_transport Transport>
void execute_on_stream(communicator<Transport>& comm, const schedule::schedule& s,
                       const std::byte* input, std::byte* output, std::size_t elem_size,
                       stream_reduce_fn<typename Transport::stream_type> reduce, const void* op,
                       typename Transport::stream_type stream) {
  Transport& t = comm.transport();
  const std::size_t es = elem_size;
  const std::size_t scratch_bytes = (s.scratch_count * es + 255) / 256 * 256;
  // Every `recv_reduce` payload may move up by as much as `stream_staging_alignment - 1`
  // bytes to match its destination's alignment.
  stream_scratch<Transport> memory(
      t, scratch_bytes + staging_bytes(s, es, stream_staging_alignment - 1), stream);
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
  // Walks the step's `recv_reduce` payloads through staging as both passes below do.
  auto next_stage = [&](std::size_t& staged, const schedule::op& o) -> std::byte* {
    staged = stream_stage_at(staging, staged, address(o.dst));
    std::byte* at = staging + staged;
    staged += o.dst.count * es;
    return at;
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
      group_guard<Transport> group(t);
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
              t.enqueue_recv(o.peer, {next_stage(staged, o), o.dst.count * es}, stream);
              comm.count_received(o.dst.count * es);
            }
            break;
          case schedule::op_code::copy:
            break;
        }
      }
      group.end(comm.make_deadline());
    }
    std::size_t staged = 0;
    stream_reduction pending;
    auto flush = [&] {
      if (pending.n != 0) reduce(pending.dst, pending.a, pending.b, pending.n, op, stream);
      pending = {};
    };
    for (const schedule::op& o : step) {
      if (o.code == schedule::op_code::copy) {
        flush();  // a copy may read what the reduction writes, or write what it reads
        std::byte* dst = address(o.dst);
        const std::byte* src = address(o.src);
        if (dst != src && o.dst.count != 0) {
          t.copy({dst, o.dst.count * es}, {src, o.src.count * es}, stream);
        }
      } else if (o.code == schedule::op_code::recv_reduce && o.dst.count != 0) {
        std::byte* dst = address(o.dst);
        const std::byte* a = address(o.src);
        const std::byte* b = next_stage(staged, o);
        if (pending.continued_by(dst, a, b, o.dst.count, es)) {
          pending.n += o.dst.count;
        } else {
          flush();
          pending = {dst, a, b, o.dst.count};
        }
      }
    }
    flush();
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

#pragma once
/// \file
/// The host executor: runs one rank's pure schedule over any `chorus::transport`.
///
/// It is the only place where schedules meet bytes, so there is exactly one ring, one tree,
/// one halving-doubling, whatever the transport. It is not a template on the element type:
/// the reduction arrives as a type-erased function pointer to a kernel that the typed entry
/// point instantiated (the op is inlined inside that kernel's loop), so the step loop is
/// compiled once per transport.
///
/// Step semantics are those of `schedule/schedule.hpp`: post receives, post
/// sends, do copies, then complete receives in op order, applying each `recv_reduce` as
/// soon as its data is in, then complete sends.
#include <chorus/communicator.hpp>
#include <chorus/schedule/schedule.hpp>
#include <chorus/transport/contract.hpp>
#include <chorus/transport/kit/copy.hpp>
#include <chorus/transport/kit/tags.hpp>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

namespace chorus::inline v0::detail {

/// `dst[i] = op(a[i], b[i])` for `n` elements; `op` points to the user's op object.
using reduce_kernel_fn = void (*)(void* dst, const void* a, const void* b, std::size_t n,
                                  const void* op);

/// The memory one collective call works on, in bytes, plus the type-erased reduction: the
/// part of the call descriptor (`dispatch/call.hpp`'s `collective_call`, which is one) that
/// the executors read.
struct exec_buffers {
  const std::byte* input = nullptr;
  std::byte* output = nullptr;
  std::size_t elem_size = 1;
  reduce_kernel_fn reduce = nullptr;
  const void* op_object = nullptr;  ///< the user's op, passed to `reduce`
};

/// Bytes of staging a step needs for its `recv_reduce` payloads of `es`-byte elements,
/// maximised over steps, with `pad` bytes more for each non-empty payload (room to move it
/// to an alignment: the stream executor's).
inline std::size_t staging_bytes(const schedule::schedule& s, std::size_t es,
                                 std::size_t pad = 0) noexcept {
  std::size_t most = 0;
  for (std::size_t k = 0; k < s.steps(); ++k) {
    std::size_t sum = 0;
    for (const schedule::op& o : s.step(k)) {
      if (o.code == schedule::op_code::recv_reduce && o.dst.count != 0) {
        sum += o.dst.count * es + pad;
      }
    }
    most = sum > most ? sum : most;
  }
  return most;
}

/// Cancels every request that was posted but not completed when a step unwinds, so that no
/// transport keeps a pointer into buffers that are about to be released.
template <transport Transport>
class request_set {
 public:
  explicit request_set(Transport& t) : transport_(t) {}
  request_set(const request_set&) = delete;
  request_set& operator=(const request_set&) = delete;
  ~request_set() {
    for (std::size_t i = completed_; i < requests_.size(); ++i) transport_.cancel(requests_[i]);
  }
  void push(typename Transport::request r) { requests_.push_back(std::move(r)); }
  typename Transport::request& operator[](std::size_t i) noexcept { return requests_[i]; }
  /// Marks every request below `n` as completed (so it is not cancelled).
  void completed_below(std::size_t n) noexcept { completed_ = n; }
  /// Waits for every request not yet completed, oldest first, each under a fresh
  /// `until()`; if one fails, the rest are left to the destructor to cancel.
  template <class Until>
  void wait_all(Until until) {
    for (std::size_t i = completed_; i < requests_.size(); ++i) {
      transport_.wait(requests_[i], until());
      completed_ = i + 1;
    }
  }
  void clear() noexcept {
    requests_.clear();
    completed_ = 0;
  }

 private:
  Transport& transport_;
  std::vector<typename Transport::request> requests_;
  std::size_t completed_ = 0;
};

/// Where a schedule's regions are in memory for one call: the caller's input and output,
/// and scratch, with the staging area for `recv_reduce` payloads after it.
struct call_memory {
  const exec_buffers* b = nullptr;
  std::byte* scratch = nullptr;
  std::byte* staging = nullptr;

  /// Bytes of scratch (64-byte aligned) plus staging that `s` needs.
  static std::size_t bytes_for(const schedule::schedule& s, std::size_t es) noexcept {
    return scratch_bytes(s, es) + staging_bytes(s, es);
  }
  static std::size_t scratch_bytes(const schedule::schedule& s, std::size_t es) noexcept {
    return (s.scratch_count * es + 63) / 64 * 64;
  }
  /// Lays out scratch and staging in `area` (at least `bytes_for` bytes).
  call_memory(const exec_buffers& buffers, const schedule::schedule& s, std::byte* area) noexcept
      : b(&buffers), scratch(area), staging(area + scratch_bytes(s, buffers.elem_size)) {}

  [[nodiscard]] std::byte* address(const schedule::region& r) const noexcept {
    const std::size_t es = b->elem_size;
    switch (r.buf) {
      case schedule::buffer::input:
        // The schedule contract says input regions are only read.
        return const_cast<std::byte*>(b->input) + r.offset * es;
      case schedule::buffer::output:
        return b->output + r.offset * es;
      case schedule::buffer::scratch:
        return scratch + r.offset * es;
    }
    return nullptr;
  }
};

/// Steps 1-3 of a schedule step: posts its receives in op order (`recv_reduce` payloads
/// land in staging, one after another), then its sends, handing each request to `push`
/// and counting it into `comm`; then does its local copies.
template <transport Transport, class Push>
void post_step(communicator<Transport>& comm, std::span<const schedule::op> step,
               const call_memory& m, std::uint32_t sequence, Push&& push) {
  Transport& t = comm.transport();
  const std::size_t es = m.b->elem_size;
  std::size_t staged = 0;
  for (const schedule::op& o : step) {
    if (o.code == schedule::op_code::recv) {
      push(t.irecv(o.peer, collective_tag(sequence, o.tag), {m.address(o.dst), o.dst.count * es}));
      comm.count_received(o.dst.count * es);
    } else if (o.code == schedule::op_code::recv_reduce) {
      push(
          t.irecv(o.peer, collective_tag(sequence, o.tag), {m.staging + staged, o.dst.count * es}));
      comm.count_received(o.dst.count * es);
      staged += o.dst.count * es;
    }
  }
  for (const schedule::op& o : step) {
    if (o.code == schedule::op_code::send) {
      push(t.isend(o.peer, collective_tag(sequence, o.tag), {m.address(o.src), o.src.count * es}));
      comm.count_sent(o.src.count * es);
    }
  }
  // local copies (a copy onto itself is the in-place case: nothing to do)
  for (const schedule::op& o : step) {
    if (o.code == schedule::op_code::copy) {
      std::byte* dst = m.address(o.dst);
      const std::byte* src = m.address(o.src);
      if (dst != src && o.dst.count != 0) copy_bytes(dst, src, o.dst.count * es);
    }
  }
}

/// Applies the reduction of a `recv_reduce` op whose payload is at `payload`.
inline void reduce_received(const call_memory& m, const schedule::op& o, const std::byte* payload) {
  if (o.dst.count != 0) {
    m.b->reduce(m.address(o.dst), m.address(o.src), payload, o.dst.count, m.b->op_object);
  }
}

/// Runs `s` for one collective with sequence number `sequence`, counting every byte it
/// hands to the transport into `comm.traffic()`. Throws the transport's `chorus::error`
/// unchanged; the caller adds the collective's context and poisons the communicator.
template <transport Transport>
void execute(communicator<Transport>& comm, const schedule::schedule& s, const exec_buffers& b,
             std::uint32_t sequence) {
  const std::size_t es = b.elem_size;
  const call_memory m(b, s, comm.scratch(call_memory::bytes_for(s, es)).data());

  Transport& t = comm.transport();
  request_set<Transport> requests(t);
  for (std::size_t k = 0; k < s.steps(); ++k) {
    const std::span<const schedule::op> step = s.step(k);
    requests.clear();
    post_step(comm, step, m, sequence,
              [&](typename Transport::request r) { requests.push(std::move(r)); });
    // 4. complete receives in op order; reduce each payload as soon as it is in, while the
    //    later transfers of this step are still moving
    std::size_t index = 0;
    std::size_t staged = 0;
    for (const schedule::op& o : step) {
      if (o.code != schedule::op_code::recv && o.code != schedule::op_code::recv_reduce) continue;
      t.wait(requests[index], comm.make_deadline());
      requests.completed_below(++index);
      if (o.code == schedule::op_code::recv_reduce) {
        reduce_received(m, o, m.staging + staged);
        staged += o.dst.count * es;
      }
    }
    // 5. complete sends
    for (const schedule::op& o : step) {
      if (o.code != schedule::op_code::send) continue;
      t.wait(requests[index], comm.make_deadline());
      requests.completed_below(++index);
    }
  }
}

}  // namespace chorus::inline v0::detail

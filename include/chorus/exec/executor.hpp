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

/// Elements of staging a step needs for its `recv_reduce` payloads, maximised over steps.
inline std::size_t staging_count(const schedule::schedule& s) noexcept {
  std::size_t most = 0;
  for (std::size_t k = 0; k < s.steps(); ++k) {
    std::size_t sum = 0;
    for (const schedule::op& o : s.step(k)) {
      if (o.code == schedule::op_code::recv_reduce) sum += o.dst.count;
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

/// Runs `s` for one collective with sequence number `sequence`, counting every byte it
/// hands to the transport into `comm.traffic()`. Throws the transport's `chorus::error`
/// unchanged; the caller adds the collective's context and poisons the communicator.
template <transport Transport>
void execute(communicator<Transport>& comm, const schedule::schedule& s, const exec_buffers& b,
             std::uint32_t sequence) {
  const std::size_t es = b.elem_size;
  // Scratch first, then the staging area for recv_reduce payloads, 64-byte aligned.
  const std::size_t scratch_bytes = (s.scratch_count * es + 63) / 64 * 64;
  const std::size_t staging_bytes = staging_count(s) * es;
  std::byte* const scratch = comm.scratch(scratch_bytes + staging_bytes).data();
  std::byte* const staging = scratch + scratch_bytes;

  auto address = [&](const schedule::region& r) -> std::byte* {
    switch (r.buf) {
      case schedule::buffer::input:
        // The schedule contract says input regions are only read.
        return const_cast<std::byte*>(b.input) + r.offset * es;
      case schedule::buffer::output:
        return b.output + r.offset * es;
      case schedule::buffer::scratch:
        return scratch + r.offset * es;
    }
    return nullptr;
  };

  Transport& t = comm.transport();
  request_set<Transport> requests(t);
  for (std::size_t k = 0; k < s.steps(); ++k) {
    const std::span<const schedule::op> step = s.step(k);
    requests.clear();
    // 1. receives, in op order (recv_reduce payloads land in staging)
    std::size_t staged = 0;
    for (const schedule::op& o : step) {
      if (o.code == schedule::op_code::recv) {
        requests.push(
            t.irecv(o.peer, collective_tag(sequence, o.tag), {address(o.dst), o.dst.count * es}));
        comm.count_received(o.dst.count * es);
      } else if (o.code == schedule::op_code::recv_reduce) {
        requests.push(
            t.irecv(o.peer, collective_tag(sequence, o.tag), {staging + staged, o.dst.count * es}));
        comm.count_received(o.dst.count * es);
        staged += o.dst.count * es;
      }
    }
    // 2. sends
    for (const schedule::op& o : step) {
      if (o.code == schedule::op_code::send) {
        requests.push(
            t.isend(o.peer, collective_tag(sequence, o.tag), {address(o.src), o.src.count * es}));
        comm.count_sent(o.src.count * es);
      }
    }
    // 3. local copies (a copy onto itself is the in-place case: nothing to do)
    for (const schedule::op& o : step) {
      if (o.code == schedule::op_code::copy) {
        std::byte* dst = address(o.dst);
        const std::byte* src = address(o.src);
        if (dst != src && o.dst.count != 0) copy_bytes(dst, src, o.dst.count * es);
      }
    }
    // 4. complete receives in op order; reduce each payload as soon as it is in, while the
    //    later transfers of this step are still moving
    std::size_t index = 0;
    staged = 0;
    for (const schedule::op& o : step) {
      if (o.code != schedule::op_code::recv && o.code != schedule::op_code::recv_reduce) continue;
      t.wait(requests[index], comm.make_deadline());
      requests.completed_below(++index);
      if (o.code == schedule::op_code::recv_reduce) {
        if (o.dst.count != 0) {
          b.reduce(address(o.dst), address(o.src), staging + staged, o.dst.count, b.op_object);
        }
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

#pragma once
/// \file
/// The call descriptor: one collective call, described once, read by every layer.
///
/// An entry point (`collectives/*.hpp`) checks its arguments, instantiates the reduction
/// kernel for (element type, op) and fills one `collective_call`. Nothing below copies it
/// into another shape: the descriptor *is* the schedule generators' `schedule::params`
/// (the collective's shape, plus rank, size and pipeline piece, which dispatch fills) and
/// the executors' `exec_buffers` (buffers and the type-erased reduction), so each layer
/// reads its own part of the same object. Transports with collectives of their own get a
/// `native_call` made from it (`native_call_of`).
#include <chorus/core/ops.hpp>
#include <chorus/core/reduce_elements.hpp>
#include <chorus/core/types.hpp>
#include <chorus/dispatch/algo.hpp>
#include <chorus/exec/executor.hpp>
#include <chorus/schedule/schedule.hpp>
#include <chorus/transport/contract.hpp>

#include <concepts>
#include <cstddef>
#include <numeric>
#include <optional>
#include <span>

namespace chorus::inline v0::detail {

/// `out[i] = finalize(out[i], ranks)` for `n` elements (only `average` needs it).
using finalize_fn = void (*)(void* data, std::size_t n, int ranks, const void* op);

/// One collective call. The `schedule::params` part is the collective's shape (kind, root,
/// count or counts) and, once dispatch has resolved them, this rank, the group size and the
/// pipeline piece in elements; the `exec_buffers` part is the memory and the reduction.
struct collective_call : schedule::params, exec_buffers {
  const char* api = "";  ///< the public name, e.g. "all_gather_v", for messages
  dtype type = dtype::uint8;
  op_kind op = op_kind::custom;
  bool has_op = false;
  finalize_fn finalize = nullptr;
  std::optional<schedule::algorithm> algorithm;  ///< nullopt: automatic (the tuner picks)
  std::size_t chunk_bytes = 0;                   ///< the caller's piece size; 0: default
};

/// Bytes of one rank's full vector in `call` (what the tuner looks at).
inline std::size_t call_bytes(const collective_call& call) {
  if (!call.counts.empty()) {
    return std::accumulate(call.counts.begin(), call.counts.end(), std::size_t{0}) * call.elem_size;
  }
  if (!call.send_counts.empty()) {
    return std::accumulate(call.send_counts.begin(), call.send_counts.end(), std::size_t{0}) *
           call.elem_size;
  }
  return call.count * call.elem_size;
}

/// Elements of this rank's output that an average must finalise after the reduction.
inline std::size_t finalize_count(const collective_call& call, int rank) noexcept {
  using enum schedule::collective;
  if (call.kind == all_reduce) return call.count;
  if (call.kind == reduce && rank == call.root) return call.count;
  if (call.kind == reduce_scatter) return call.counts[static_cast<std::size_t>(rank)];
  return 0;
}

/// The part of `call` a transport's own collective needs (`algo::native`).
inline native_call native_call_of(const collective_call& call, int rank) noexcept {
  native_call n;
  n.kind = call.kind;
  n.type = call.type;
  n.op = call.has_op ? call.op : op_kind::custom;
  n.input = call.input;
  n.output = call.output;
  n.count = call.counts.empty() ? call.count : call.counts[static_cast<std::size_t>(rank)];
  n.root = call.root;
  return n;
}

/// The type-erased kernels for one (element type, op).
template <class T, class Op>
void reduce_kernel(void* dst, const void* a, const void* b, std::size_t n, const void* op) {
  reduce_elements(static_cast<T*>(dst), static_cast<const T*>(a), static_cast<const T*>(b), n,
                  *static_cast<const Op*>(op));
}

template <class T, class Op>
void finalize_kernel(void* data, std::size_t n, int ranks, const void* op) {
  T* d = static_cast<T*>(data);
  const Op& o = *static_cast<const Op*>(op);
  for (std::size_t i = 0; i < n; ++i) d[i] = static_cast<T>(o.finalize(d[i], ranks));
}

/// A call on typed buffers (either may be empty where the collective allows it).
template <class T>
collective_call make_call(schedule::collective kind, const char* api, std::span<const T> in,
                          std::span<T> out) {
  collective_call call;
  call.kind = kind;
  call.api = api;
  call.type = dtype_for<T>();
  call.elem_size = sizeof(T);
  call.input = reinterpret_cast<const std::byte*>(in.data());
  call.output = reinterpret_cast<std::byte*>(out.data());
  return call;
}

/// Fills the op fields of `call` for (T, Op). The op object must outlive the call.
template <class T, class Op>
void set_op(collective_call& call, const Op& op) {
  call.has_op = true;
  call.op = op_kind_v<Op>;
  call.reduce = &reduce_kernel<T, Op>;
  call.op_object = &op;
  if constexpr (finalizing_op<Op, T>) call.finalize = &finalize_kernel<T, Op>;
}

/// Fills the algorithm fields of `call` from a tag.
template <class Algo>
void set_algorithm(collective_call& call, const Algo& a) {
  if constexpr (std::same_as<Algo, algo::dynamic>) {
    call.algorithm = a.id;
    call.chunk_bytes = a.chunk_bytes;
  } else if constexpr (!std::same_as<Algo, algo::automatic>) {
    call.algorithm = Algo::id;
    call.chunk_bytes = algo::chunk_bytes_of(a);
  }
}

/// The reduction argument of a collective that reduces nothing (all-gather, broadcast).
struct no_reduction {};

}  // namespace chorus::inline v0::detail

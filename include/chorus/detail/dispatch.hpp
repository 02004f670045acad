#pragma once
/// \file
/// The dispatch layer: from a typed, validated call to a schedule run by the executor.
///
/// Entry points (`algorithm/*.hpp`) check their arguments, instantiate the reduction kernel
/// for (element type, op), and fill a `collective_call`. Everything below that -- choosing
/// the algorithm, the optional fingerprint check, building the schedule, executing it,
/// finalising an average, turning failures into errors with context and poisoning the
/// communicator -- is type-erased, so it is compiled once per transport rather than once
/// per (type, op, algorithm).
#include <chorus/algorithm/algo.hpp>
#include <chorus/algorithm/schedule/build.hpp>
#include <chorus/algorithm/schedule/schedule.hpp>
#include <chorus/core/communicator.hpp>
#include <chorus/core/error.hpp>
#include <chorus/core/ops.hpp>
#include <chorus/core/types.hpp>
#include <chorus/detail/executor.hpp>
#include <chorus/detail/one_sided.hpp>
#include <chorus/detail/tags.hpp>

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <numeric>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

namespace chorus::inline v0::detail {

/// `out[i] = finalize(out[i], ranks)` for `n` elements (only `average` needs it).
using finalize_fn = void (*)(void* data, std::size_t n, int ranks, const void* op);

/// Everything the type-erased layer needs about one collective call.
struct collective_call {
  schedule::collective kind = schedule::collective::all_reduce;
  const char* api = "";  ///< the public name, e.g. "all_gather_v", for messages
  dtype type = dtype::uint8;
  std::size_t elem_size = 1;
  const std::byte* input = nullptr;
  std::byte* output = nullptr;
  std::size_t count = 0;                  ///< all_reduce / broadcast / reduce
  std::span<const std::size_t> counts{};  ///< per-rank blocks (P entries) where used
  std::span<const std::size_t> send_counts{}, send_offsets{}, recv_counts{}, recv_offsets{};
  int root = 0;
  op_kind op = op_kind::custom;
  bool has_op = false;
  reduce_kernel_fn reduce = nullptr;
  finalize_fn finalize = nullptr;
  const void* op_object = nullptr;
  std::optional<schedule::algorithm> algorithm;  ///< nullopt: automatic
  std::size_t chunk_bytes = 0;
};

/// The default piece sizes of the pipelined tags, used when `automatic` picks them.
inline std::size_t default_chunk_bytes(schedule::algorithm a) noexcept {
  switch (a) {
    case schedule::algorithm::ring:
      return algo::ring{}.chunk_bytes;
    case schedule::algorithm::tree:
      return algo::tree{}.chunk_bytes;
    case schedule::algorithm::double_binary_tree:
      return algo::double_binary_tree{}.chunk_bytes;
    default:
      return 0;
  }
}

/// The `automatic` rule. Latency-bound sizes take the algorithms with log2(P) steps;
/// bandwidth-bound sizes take the ones that move the least data per rank. The thresholds
/// are the classic MPICH/Open MPI ones for a host interconnect; the measured tuner (a later
/// issue) replaces them. `bytes` is the size of one rank's full vector. `one_sided`: the
/// transport maps windows, so `direct` runs all-reduce, reduce-scatter and all-gather
/// one-sidedly (detail/one_sided.hpp), which beats every two-sided schedule from 64 KiB on
/// (docs/performance.md).
inline schedule::algorithm choose_algorithm(schedule::collective c, std::size_t bytes, int ranks,
                                            bool one_sided = false) noexcept {
  using schedule::algorithm;
  using enum schedule::collective;
  constexpr std::size_t small = 16 * 1024;
  constexpr std::size_t medium = 512 * 1024;
  // One-sided direct (mapped windows): at 2 ranks the two-sided exchange is as fast up to
  // 64 KiB; from 3 ranks on, the one-sided path wins from 4 KiB for reduce-scatter and
  // all-gather and above 16 KiB for all-reduce (docs/performance.md, 4 ranks on 2 cores).
  const std::size_t one_sided_from = ranks <= 2        ? 64 * 1024
                                     : c == all_reduce ? small + 1
                                                       : 4 * 1024;
  if (one_sided && bytes >= one_sided_from &&
      (c == all_reduce || c == reduce_scatter || c == all_gather)) {
    return algorithm::direct;
  }
  // Two ranks: one exchange is the whole all-reduce for small vectors; otherwise everything
  // is a direct exchange with the one peer.
  if (ranks <= 2 && c == all_reduce && bytes <= small) return algorithm::recursive_doubling;
  if (ranks <= 2 && c != barrier) return algorithm::direct;
  switch (c) {
    case all_reduce:
      if (bytes <= small) return algorithm::recursive_doubling;
      if (bytes <= medium) return algorithm::halving_doubling;
      return algorithm::ring;
    case reduce_scatter:
      return bytes <= medium ? algorithm::halving_doubling : algorithm::ring;
    case all_gather:
      return bytes <= medium ? algorithm::recursive_doubling : algorithm::ring;
    case broadcast:
    case reduce:
      if (bytes <= small) return algorithm::recursive_doubling;
      return algorithm::ring;
    case barrier:
      return algorithm::recursive_doubling;
    case gather:
    case scatter:
      return bytes <= small ? algorithm::tree : algorithm::direct;
    case all_to_all:
      return algorithm::direct;
  }
  return algorithm::direct;
}

/// The identity of a call that every rank must agree on (`CHORUS_CHECK=1`).
struct fingerprint {
  std::uint32_t sequence = 0;
  std::uint8_t kind = 0;
  std::uint8_t type = 0;
  std::uint8_t op = 0;
  std::uint8_t algorithm = 0;
  std::int32_t root = 0;
  std::uint32_t reserved = 0;
  std::uint64_t count = 0;
  std::uint64_t counts_hash = 0;
  friend bool operator==(const fingerprint&, const fingerprint&) = default;
};

inline std::uint64_t hash_counts(std::span<const std::size_t> counts) noexcept {
  std::uint64_t h = 1469598103934665603ull;  // FNV-1a over the 64-bit values
  for (std::size_t c : counts) {
    for (int i = 0; i < 8; ++i) {
      h ^= (static_cast<std::uint64_t>(c) >> (8 * i)) & 0xffu;
      h *= 1099511628211ull;
    }
  }
  return h;
}

inline bool is_rooted(schedule::collective c) noexcept {
  using enum schedule::collective;
  return c == broadcast || c == reduce || c == gather || c == scatter;
}

inline bool is_reducing(schedule::collective c) noexcept {
  using enum schedule::collective;
  return c == all_reduce || c == reduce_scatter || c == reduce;
}

/// "all_reduce #7 (ring, float32, count 1024, op sum)".
inline std::string describe(const fingerprint& f) {
  const auto kind = static_cast<schedule::collective>(f.kind);
  std::string s(schedule::name(kind));
  s += " #" + std::to_string(f.sequence) + " (";
  s += schedule::name(static_cast<schedule::algorithm>(f.algorithm));
  if (kind != schedule::collective::barrier) {
    s += ", ";
    s += name(static_cast<dtype>(f.type));
    if (kind != schedule::collective::all_to_all) s += ", count " + std::to_string(f.count);
  }
  if (is_reducing(kind)) {
    s += ", op ";
    s += name(static_cast<op_kind>(f.op));
  }
  if (is_rooted(kind)) s += ", root " + std::to_string(f.root);
  s += ")";
  return s;
}

inline fingerprint make_fingerprint(const collective_call& call, schedule::algorithm a,
                                    std::uint32_t sequence) {
  fingerprint f;
  f.sequence = sequence;
  f.kind = static_cast<std::uint8_t>(call.kind);
  f.type = static_cast<std::uint8_t>(call.type);
  f.op = static_cast<std::uint8_t>(call.has_op ? call.op : op_kind::custom);
  f.algorithm = static_cast<std::uint8_t>(a);
  f.root = is_rooted(call.kind) ? call.root : 0;
  if (!call.counts.empty()) {
    f.count = std::accumulate(call.counts.begin(), call.counts.end(), std::uint64_t{0});
    f.counts_hash = hash_counts(call.counts);
  } else if (call.kind != schedule::collective::all_to_all) {
    f.count = call.count;
  }
  return f;
}

/// Exchanges fingerprints around the ring (send to rank+1, receive from rank-1) and throws
/// `errc::mismatch` naming both calls when the left neighbour's differs. If any two ranks
/// disagree then some pair of neighbours does, and that rank reports and aborts the group.
template <transport Transport>
void check_fingerprint(communicator<Transport>& comm, const fingerprint& mine) {
  const int p = comm.size();
  if (p == 1) return;
  const int r = comm.rank();
  fingerprint theirs;
  Transport& t = comm.transport();
  const tag_t tag = collective_tag(0, check_tag);
  auto rq = t.irecv((r + p - 1) % p, tag, {reinterpret_cast<std::byte*>(&theirs), sizeof theirs});
  request_set<Transport> pending(t);
  pending.push(std::move(rq));
  pending.push(t.isend((r + 1) % p, tag, {reinterpret_cast<const std::byte*>(&mine), sizeof mine}));
  t.wait(pending[0], comm.make_deadline());
  pending.completed_below(1);
  t.wait(pending[1], comm.make_deadline());
  pending.completed_below(2);
  if (!(theirs == mine)) {
    throw error(errc::mismatch, "collective mismatch: rank " + std::to_string((r + p - 1) % p) +
                                    " called " + describe(theirs) + " but rank " +
                                    std::to_string(r) + " called " + describe(mine) +
                                    "; every rank must call the same collectives in the same "
                                    "order with matching arguments");
  }
}

/// The schedule of `a` for `call` on rank `rank` of `size`.
inline schedule::schedule build_schedule(const collective_call& call, int rank, int size,
                                         schedule::algorithm a, std::size_t chunk_bytes) {
  schedule::params params;
  params.kind = call.kind;
  params.rank = rank;
  params.size = size;
  params.root = call.root;
  params.count = call.count;
  params.counts = call.counts;
  params.send_counts = call.send_counts;
  params.send_offsets = call.send_offsets;
  params.recv_counts = call.recv_counts;
  params.recv_offsets = call.recv_offsets;
  params.chunk_count =
      chunk_bytes == 0 ? 0 : std::max<std::size_t>(1, chunk_bytes / call.elem_size);
  return schedule::build(a, params);
}

/// Builds the schedule of `a` for `call` and runs it with the host executor.
template <transport Transport>
void run_schedule(communicator<Transport>& comm, const collective_call& call, schedule::algorithm a,
                  std::size_t chunk_bytes, std::uint32_t sequence) {
  const schedule::schedule s = build_schedule(call, comm.rank(), comm.size(), a, chunk_bytes);
  execute(comm, s,
          exec_buffers{call.input, call.output, call.elem_size, call.reduce, call.op_object},
          sequence);
}

/// Runs `call` one-sidedly when the transport has windows and `a` is `direct` for a
/// collective that has a one-sided form (detail/one_sided.hpp). Where peers read windows
/// only with `get` (UCX), that is when the caller named `direct`: the automatic choice of
/// `direct` (every collective at 2 ranks) means the two-sided exchange there. False: not
/// this call.
template <transport Transport>
bool run_one_sided(communicator<Transport>& comm, const collective_call& call,
                   schedule::algorithm a, std::uint32_t sequence) {
  if constexpr (one_sided_transport<Transport>) {
    const int p = comm.size();
    if (a != schedule::algorithm::direct || p == 1 || !runs_one_sided(call.kind)) return false;
    if (!mapped_window_transport<Transport> && !call.algorithm) return false;
    std::vector<std::size_t> even;
    std::span<const std::size_t> counts = call.counts;
    if (call.kind == schedule::collective::all_reduce) {  // P near-equal blocks
      even.resize(static_cast<std::size_t>(p));
      for (std::size_t q = 0; q < even.size(); ++q) {
        even[q] = call.count / even.size() + (q < call.count % even.size() ? 1 : 0);
      }
      counts = even;
    }
    execute_one_sided(comm,
                      one_sided_call{call.kind, call.input, call.output, call.elem_size, counts,
                                     call.reduce, call.op_object},
                      sequence);
    return true;
  } else {
    (void)comm, (void)call, (void)a, (void)sequence;
    return false;
  }
}

/// Bytes of one rank's full vector in `call` (what the automatic choice looks at).
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

/// The algorithm `call` runs with: the caller's, or the automatic choice. Throws
/// `invalid_argument` when a run-time choice (`algo::dynamic`) cannot run the collective.
inline schedule::algorithm resolve_algorithm(const collective_call& call, int ranks,
                                             bool one_sided) {
  const schedule::algorithm a =
      call.algorithm ? *call.algorithm
                     : choose_algorithm(call.kind, call_bytes(call), ranks, one_sided);
  if (!schedule::supports(a, call.kind)) {  // only reachable through algo::dynamic
    std::string can;
    for (schedule::algorithm x : schedule::all_algorithms) {
      if (schedule::supports(x, call.kind))
        can += std::string(can.empty() ? "" : ", ") + std::string(schedule::name(x));
    }
    throw error(errc::invalid_argument, std::string("chorus::") + call.api + ": algorithm " +
                                            std::string(schedule::name(a)) + " cannot run " +
                                            std::string(schedule::name(call.kind)) +
                                            "; use one of: " + can + ", or automatic");
  }
  return a;
}

/// Elements of this rank's output that an average must finalise after the reduction.
inline std::size_t finalize_count(const collective_call& call, int rank) noexcept {
  using enum schedule::collective;
  if (call.kind == all_reduce) return call.count;
  if (call.kind == reduce && rank == call.root) return call.count;
  if (call.kind == reduce_scatter) return call.counts[static_cast<std::size_t>(rank)];
  return 0;
}

/// Runs `body()`, the work of one collective described by `fp`; a failure becomes a
/// `chorus::error` that names the rank, the call and (for a timeout) what to check, and it
/// poisons the communicator (which aborts the group) before it propagates.
template <class Comm, class Body>
void with_call_context(Comm& comm, const collective_call& call, const fingerprint& fp,
                       Body&& body) {
  // "chorus: rank 2: all_gather_v #7 (ring, float32, count 96)": the public name, then the
  // call as its fingerprint describes it. Built only on failure: not on the hot path.
  auto context = [&] {
    const std::string described = describe(fp);
    return "chorus: rank " + std::to_string(comm.rank()) + ": " + call.api + " " +
           described.substr(described.find('#'));
  };
  try {
    body();
  } catch (const error& e) {
    std::string message = context() + ": " + e.what();
    if (e.value() == errc::timeout) {
      message += " (waited " + to_string(comm.options().timeout) +
                 "); the peer may be stuck or may not be calling the same collective "
                 "(CHORUS_CHECK=1 verifies that), or raise CHORUS_TIMEOUT if it is only slow";
    }
    error wrapped(e.value(), std::move(message));
    comm.fail(wrapped);
    throw wrapped;
  } catch (const std::exception& e) {
    error wrapped(errc::transport, context() + ": internal failure: " + e.what());
    comm.fail(wrapped);
    throw wrapped;
  }
}

/// Runs one collective: the single path every typed entry point ends in.
template <transport Transport>
void run_collective(communicator<Transport>& comm, const collective_call& call) {
  comm.throw_if_poisoned();
  const int p = comm.size();
  const schedule::algorithm a = resolve_algorithm(call, p, mapped_window_transport<Transport>);
  const std::size_t chunk_bytes = call.chunk_bytes != 0 ? call.chunk_bytes : default_chunk_bytes(a);
  const std::uint32_t sequence = comm.next_sequence();
  const fingerprint fp = make_fingerprint(call, a, sequence);
  with_call_context(comm, call, fp, [&] {
    if (comm.options().check) check_fingerprint(comm, fp);
    if (!run_one_sided(comm, call, a, sequence)) {
      run_schedule(comm, call, a, chunk_bytes, sequence);
    }
    const std::size_t n = call.finalize != nullptr ? finalize_count(call, comm.rank()) : 0;
    if (n != 0) call.finalize(call.output, n, p, call.op_object);
  });
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
  call.type = dtype_of<T>;
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

/// Finishes `call` (op, algorithm) and runs it: where every host entry point ends.
template <class T, transport Transport, class Op, class Algo>
void launch(communicator<Transport>& comm, collective_call& call, const Op& op, const Algo& a) {
  if constexpr (!std::same_as<Op, no_reduction>) set_op<T>(call, op);
  set_algorithm(call, a);
  run_collective(comm, call);
}

}  // namespace chorus::inline v0::detail

#pragma once
/// \file
/// The data model of a pure schedule: what one rank does, step by step, in one collective.
///
/// A schedule is produced by a pure function of (algorithm, collective, rank, size, counts,
/// root, chunking). It performs no I/O and knows nothing about element types or transports:
/// it names peers, tags and element ranges in three buffers (the caller's input, the caller's
/// output, and a scratch area the executor allocates). The host executor
/// (`exec/executor.hpp`) runs it over any `chorus::transport`; the simulator
/// (`schedule/simulate.hpp`) runs every rank's schedule symbolically to prove it correct.
///
/// ## Step semantics (the contract between generators, executor and simulator)
///
/// A schedule is a sequence of steps; a rank finishes step s before it starts step s+1.
/// Within one step:
///  1. every `recv` and `recv_reduce` is posted, in op order;
///  2. every `send` is posted, in op order;
///  3. every `copy` is performed, in op order;
///  4. receives are completed in op order; a `recv_reduce` applies
///     `dst[i] = op(src[i], received[i])` as soon as its data is in (so transfers of later
///     ops overlap the reduction of earlier ones);
///  5. sends are completed.
/// Hazard rule: no op of a step may read an element that another op of the same step writes,
/// and no two ops of a step may write the same element -- with one exception: several
/// `recv_reduce` ops may target the same `dst`, and they are applied in op order (the later
/// one reading what the earlier one wrote). A `recv_reduce` may have `src` equal to `dst`.
/// Because reductions are applied in a fixed order, results are deterministic run to run.
///
/// Matching: a message from rank a to rank b carries the op's `tag`. Messages with equal
/// (source, destination, tag) are matched in the order they were posted (FIFO), so both
/// sides must list them in the same relative order. Moreover each pair of ranks lists all
/// its messages in the same order on both sides, tags aside, so that a transport without
/// tags (NCCL: the k-th send matches the k-th receive) pairs them alike; the simulator
/// checks it. A receive must have exactly the element count of the matching send.
/// Zero-count messages are allowed (barriers use them).
///
/// Buffers (counts in elements of the collective's element type):
///  - `input`: the caller's send buffer. Only read, never written.
///  - `output`: the caller's receive buffer. Written; may also be read after written.
///  - `scratch`: `scratch_count` elements the executor provides; uninitialised at start.
/// In-place calls alias `input` and `output` as described per collective in `params`;
/// generators must produce schedules that are correct both with and without the alias
/// (in practice: never read an input element after the aliased output element was written).
#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace chorus::inline v0::schedule {

/// The collectives a schedule can describe.
enum class collective : std::uint8_t {
  all_reduce,
  reduce_scatter,
  all_gather,
  broadcast,
  reduce,
  barrier,
  all_to_all,
  gather,
  scatter,
};

/// The algorithm families. One generator per family serves every transport, except
/// `one_sided`, which is no schedule of messages: the one-sided executor
/// (`exec/one_sided.hpp`) runs it over windows. `hierarchical` composes ring schedules
/// (and a direct gather / scatter) over the hosts of `params::hosts`.
enum class algorithm : std::uint8_t {
  ring,                ///< ring: reduce-scatter + all-gather around a ring; chains for rooted ops
  tree,                ///< pipelined binary tree (binomial tree for gather/scatter)
  double_binary_tree,  ///< NCCL-style two complementary binary trees, half the data each
  recursive_doubling,  ///< log2(P) pairwise exchanges of the whole vector; binomial trees
  halving_doubling,    ///< Rabenseifner: recursive halving reduce-scatter + doubling all-gather
  direct,              ///< every rank talks to every rank (or to the root) directly
  one_sided,           ///< ranks read peers' windows (transports with windows only)
  hierarchical,        ///< within each host, then across hosts (`params::hosts`)
};

inline constexpr std::size_t collective_count = 9;
inline constexpr std::size_t algorithm_count = 8;

inline constexpr std::string_view name(collective c) noexcept {
  constexpr std::string_view names[collective_count] = {
      "all_reduce", "reduce_scatter", "all_gather", "broadcast", "reduce",
      "barrier",    "all_to_all",     "gather",     "scatter"};
  return names[static_cast<std::size_t>(c)];
}

inline constexpr std::string_view name(algorithm a) noexcept {
  constexpr std::string_view names[algorithm_count] = {
      "ring",   "tree",      "double_binary_tree", "recursive_doubling", "halving_doubling",
      "direct", "one_sided", "hierarchical"};
  return names[static_cast<std::size_t>(a)];
}

/// Every algorithm, in declaration order.
inline constexpr algorithm all_algorithms[algorithm_count] = {algorithm::ring,
                                                              algorithm::tree,
                                                              algorithm::double_binary_tree,
                                                              algorithm::recursive_doubling,
                                                              algorithm::halving_doubling,
                                                              algorithm::direct,
                                                              algorithm::one_sided,
                                                              algorithm::hierarchical};

/// Whether `a` is a family of message schedules that `build` generates (all but
/// `one_sided`, which the one-sided executor runs over windows).
inline constexpr bool has_schedule(algorithm a) noexcept { return a != algorithm::one_sided; }

/// The algorithm called `text` ("ring", "tree", ...), or nullopt.
inline constexpr std::optional<algorithm> algorithm_from_name(std::string_view text) noexcept {
  for (algorithm a : all_algorithms) {
    if (name(a) == text) return a;
  }
  return std::nullopt;
}

/// Whether `c` has a root rank.
inline constexpr bool is_rooted(collective c) noexcept {
  using enum collective;
  return c == broadcast || c == reduce || c == gather || c == scatter;
}

/// Whether `c` combines ranks' data with a reduction op.
inline constexpr bool is_reducing(collective c) noexcept {
  using enum collective;
  return c == all_reduce || c == reduce_scatter || c == reduce;
}

namespace detail {
/// One row of the support table: a set of collectives as bits.
template <class... C>
constexpr std::uint16_t runs(C... c) noexcept {
  return static_cast<std::uint16_t>((0u | ... | (1u << static_cast<unsigned>(c))));
}
}  // namespace detail

/// Which collectives each algorithm runs, one row per algorithm: THE table, written once.
/// `supports` reads it, and everything else asks `supports`: the tags' compile-time
/// `algo::can_run` (and the sentence it prints), dispatch's run-time check of
/// `algo::dynamic`, `build`, the simulator's sweeps and chorus-perf's `-a` check.
inline constexpr std::array<std::uint16_t, algorithm_count> support_table = [] {
  using enum collective;
  using detail::runs;
  std::array<std::uint16_t, algorithm_count> t{};
  t[std::size_t(algorithm::ring)] =
      runs(all_reduce, reduce_scatter, all_gather, broadcast, reduce, barrier);
  t[std::size_t(algorithm::tree)] = runs(all_reduce, broadcast, reduce, barrier, gather, scatter);
  t[std::size_t(algorithm::double_binary_tree)] = runs(all_reduce);
  t[std::size_t(algorithm::recursive_doubling)] =
      runs(all_reduce, all_gather, broadcast, reduce, barrier);
  t[std::size_t(algorithm::halving_doubling)] =
      runs(all_reduce, reduce_scatter, all_gather, broadcast, reduce);
  t[std::size_t(algorithm::direct)] = runs(all_reduce, reduce_scatter, all_gather, broadcast,
                                           reduce, barrier, all_to_all, gather, scatter);
  t[std::size_t(algorithm::one_sided)] = runs(all_reduce, reduce_scatter, all_gather);
  t[std::size_t(algorithm::hierarchical)] =
      runs(all_reduce, reduce_scatter, all_gather, broadcast, reduce);
  return t;
}();

/// Whether algorithm `a` can run collective `c` (the row of `support_table`).
inline constexpr bool supports(algorithm a, collective c) noexcept {
  return (support_table[static_cast<std::size_t>(a)] >> static_cast<unsigned>(c)) & 1u;
}

/// "ring, halving_doubling, direct": the algorithms that run `c`, for messages.
inline std::string algorithms_running(collective c) {
  std::string list;
  for (algorithm a : all_algorithms) {
    if (!supports(a, c)) continue;
    if (!list.empty()) list += ", ";
    list += name(a);
  }
  return list;
}

/// Which buffer a region refers to.
enum class buffer : std::uint8_t { input, output, scratch };

/// A contiguous range of elements in one buffer.
struct region {
  buffer buf = buffer::output;
  std::size_t offset = 0;
  std::size_t count = 0;
  friend constexpr bool operator==(const region&, const region&) = default;
};

enum class op_code : std::uint8_t {
  send,         ///< send `src` to `peer`
  recv,         ///< receive from `peer` into `dst`
  recv_reduce,  ///< receive `dst.count` elements from `peer`; dst[i] = op(src[i], received[i])
  copy,         ///< local copy `src` -> `dst` (same count, must not overlap)
};

/// One operation of one step.
struct op {
  op_code code = op_code::send;
  int peer = -1;          ///< the other rank (send/recv/recv_reduce); -1 for copy
  std::uint32_t tag = 0;  ///< matching tag within this collective (see FIFO rule above)
  region src{};           ///< send: data; recv_reduce: local operand; copy: source
  region dst{};           ///< recv / recv_reduce / copy: destination
  friend constexpr bool operator==(const op&, const op&) = default;
};

/// One rank's whole schedule: steps stored flat (`step_begin[s]..step_begin[s+1]` index `ops`).
struct schedule {
  std::vector<op> ops;
  std::vector<std::uint32_t> step_begin{0};  ///< size() == steps() + 1
  std::size_t scratch_count = 0;             ///< elements of scratch the executor must provide

  [[nodiscard]] std::size_t steps() const noexcept { return step_begin.size() - 1; }
  [[nodiscard]] std::span<const op> step(std::size_t s) const noexcept {
    return {ops.data() + step_begin[s], ops.data() + step_begin[s + 1]};
  }
  /// Appends an op to the step being built.
  void add(const op& o) { ops.push_back(o); }
  /// Closes the step being built (a step with no op is dropped).
  void end_step() {
    if (ops.size() != step_begin.back())
      step_begin.push_back(static_cast<std::uint32_t>(ops.size()));
  }
};

/// Everything a generator needs to know. Spans refer to caller-owned arrays that outlive
/// the call to `build`.
///
/// Buffer layouts, per collective (P = size, r = rank):
///  - all_reduce:     input[count], output[count]; in place: input == output.
///  - reduce_scatter: input[sum(counts)] holding block j at offset(j) = counts[0]+..+counts[j-1];
///                    output[counts[r]]; in place: output == input + offset(r).
///  - all_gather:     input[counts[r]], output[sum(counts)] with block j at offset(j);
///                    in place: input == output + offset(r).
///  - broadcast:      root's input[count] -> every output[count] (root's too);
///                    in place: input == output. Non-root inputs may be empty: never read.
///  - reduce:         input[count] on every rank -> root's output[count]; in place on root:
///                    input == output. Non-root outputs may be empty: never touch them, use
///                    scratch for partial results.
///  - barrier:        no data; counts are ignored.
///  - all_to_all:     input holds, for each peer j, send_counts[j] elements at send_offsets[j];
///                    output holds, from each peer j, recv_counts[j] at recv_offsets[j].
///                    Never in place.
///  - gather:         input[counts[r]] -> root's output[sum(counts)] at offset(j);
///                    in place on root: input == output + offset(root). Non-root outputs
///                    may be empty: never touch them (intermediate tree ranks use scratch).
///  - scatter:        root's input[sum(counts)] (block j at offset(j)) -> output[counts[r]];
///                    in place on root: output == input + offset(root). Non-root inputs may
///                    be empty: never read.
/// For reduce_scatter / all_gather / gather / scatter `counts` always has P entries (the
/// equal-count calls pass P copies of the block count). For all_reduce / broadcast / reduce
/// `count` is used and `counts` is empty.
struct params {
  collective kind = collective::all_reduce;
  int rank = 0;
  int size = 1;
  int root = 0;
  std::size_t count = 0;
  std::span<const std::size_t> counts{};
  std::span<const std::size_t> send_counts{};   ///< all_to_all only (P entries)
  std::span<const std::size_t> send_offsets{};  ///< all_to_all only
  std::span<const std::size_t> recv_counts{};   ///< all_to_all only
  std::span<const std::size_t> recv_offsets{};  ///< all_to_all only
  /// Pipelining granularity in elements for ring / tree / chain schedules: a transfer longer
  /// than this is split into pieces of at most this many elements so that the transfer of
  /// one piece overlaps the reduction of the previous. 0 means "do not split".
  std::size_t chunk_count = 0;
  /// The host of each rank (`hosts[r]` for r in 0..size-1), numbered 0, 1, 2, ... in order
  /// of first appearance; empty means every rank is on one host. Only `hierarchical` reads
  /// it; every rank must pass the same list.
  std::span<const int> hosts{};
};

}  // namespace chorus::inline v0::schedule

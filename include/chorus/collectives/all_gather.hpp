#pragma once
/// \file
/// `chorus::all_gather` and `chorus::all_gather_v`: every rank ends with every rank's block,
/// concatenated in rank order.
///
/// **Collective.** Every rank calls it with the same element type, algorithm and counts.
/// `all_gather` has equal blocks (`out.size() == P * in.size()`); `all_gather_v` takes the
/// per-rank block counts (the same list on every rank; zeros allowed).
///
/// **Completion.** Blocking. In place (as NCCL): the input is this rank's own block of the
/// output, `in.data() == out.data() + offset(rank)`. Otherwise no overlap is allowed.
///
/// **Determinism.** Pure data movement: the output is exact.
///
/// **Errors.** `invalid_argument` before any byte moves for wrong sizes, a bad counts list
/// or a partial overlap; then as for every collective.
#include <chorus/collectives/policy.hpp>
#include <chorus/communicator.hpp>
#include <chorus/core/buffer.hpp>
#include <chorus/dispatch/algo.hpp>
#include <chorus/dispatch/launch.hpp>

#include <vector>

namespace chorus::inline v0 {

namespace detail {
struct all_gather_base {
 protected:
  template <class Transport, class T, class Algo, class... Stream>
  static void run(const char* api, communicator<Transport>& comm, std::span<const T> in,
                  std::span<T> out, const std::vector<std::size_t>& counts, const Algo& a,
                  Stream... stream) {
    algo::require_can_run<Algo, schedule::collective::all_gather>();
    const int r = comm.rank();
    check_count(api, "the input", in.size(), counts[static_cast<std::size_t>(r)],
                "this rank's block count");
    check_count(api, "the output", out.size(), sum(counts), "the sum of the block counts");
    check_alias(api, in, out, static_cast<std::ptrdiff_t>(offset_of(counts, r)),
                "input == output + this rank's block offset");
    collective_call call = make_call(schedule::collective::all_gather, api, in, out);
    call.counts = counts;
    launch<T>(comm, call, no_reduction{}, a, stream...);
  }
};

struct all_gather_fn : all_gather_base {
  /// Equal blocks: `out.size() == comm.size() * in.size()`.
  template <transport Transport, buffer In, buffer Out, algo::tag Algo = algo::automatic>
  void operator()(communicator<Transport>& comm, In&& in, Out&& out, Algo a = {}) const {
    check_buffers<In, Out>();
    const auto i = as_const_span(in);
    const std::vector<std::size_t> counts(static_cast<std::size_t>(comm.size()), i.size());
    run("all_gather", comm, i, as_span(out), counts, a);
  }

  /// Pointer and count: `count` elements from each rank; `out` holds `comm.size() * count`.
  template <transport Transport, transferable T, algo::tag Algo = algo::automatic>
  void operator()(communicator<Transport>& comm, const T* in, T* out, std::size_t count,
                  Algo a = {}) const {
    (*this)(comm, std::span<const T>(in, count),
            std::span<T>(out, count * static_cast<std::size_t>(comm.size())), a);
  }

  /// Equal blocks with a policy (compression: every rank's block encoded, all decoded);
  /// `extra`: the policy's trailing arguments.
  template <transport Transport, buffer In, buffer Out, collective_policy Policy, class... Extra>
  void operator()(communicator<Transport>& comm, In&& in, Out&& out, const Policy& policy,
                  Extra&&... extra) const {
    check_buffers<In, Out>();
    collective_policy_traits<Policy>::all_gather(comm, as_const_span(in), as_span(out), policy,
                                                 extra...);
  }

  /// On a stream-ordered communicator (NCCL): enqueued on `stream`; device memory.
  template <stream_ordered_transport Transport, buffer In, buffer Out,
            algo::stream_tag Algo = algo::automatic>
  void operator()(communicator<Transport>& comm, In&& in, Out&& out,
                  typename Transport::stream_type stream, Algo a = {}) const {
    check_buffers<In, Out>();
    const auto i = as_const_span(in);
    const std::vector<std::size_t> counts(static_cast<std::size_t>(comm.size()), i.size());
    run("all_gather", comm, i, as_span(out), counts, a, stream);
  }
};

struct all_gather_v_fn : all_gather_base {
  /// Rank j contributes `counts[j]` elements; the same `counts` on every rank.
  template <transport Transport, buffer In, buffer Out, count_list Counts,
            algo::tag Algo = algo::automatic>
  void operator()(communicator<Transport>& comm, In&& in, Out&& out, const Counts& counts,
                  Algo a = {}) const {
    check_buffers<In, Out>();
    const auto c = to_counts("all_gather_v", "counts", counts, comm.size());
    run("all_gather_v", comm, as_const_span(in), as_span(out), c, a);
  }
};
}  // namespace detail

/// Concatenates every rank's block, in rank order, on every rank (equal blocks).
inline constexpr detail::all_gather_fn all_gather{};
/// Like `all_gather` with per-rank block counts.
inline constexpr detail::all_gather_v_fn all_gather_v{};

}  // namespace chorus::inline v0

#pragma once
/// \file
/// `chorus::reduce_scatter` and `chorus::reduce_scatter_v`: the element-wise reduction of
/// every rank's vector, cut into blocks, block j delivered to rank j.
///
/// **Collective.** Every rank calls it with the same element type, op, algorithm and
/// counts. The input holds P consecutive blocks (block j is what rank j receives reduced);
/// `reduce_scatter` has equal blocks (`in.size() == P * out.size()`), `reduce_scatter_v`
/// takes the per-rank block counts (the same list on every rank; zeros allowed).
///
/// **Completion.** Blocking. In place (as NCCL): the output is this rank's own block of the
/// input, `out.data() == in.data() + offset(rank)`; the rest of the input is then left in
/// an unspecified state. Otherwise input and output must not overlap.
///
/// **Determinism.** Bitwise reproducible for a given (algorithm, rank count, counts).
///
/// **Errors.** `invalid_argument` before any byte moves for a wrong output size, a counts
/// list that is not one entry per rank or does not sum to the input size, or a partial
/// overlap; then as for every collective (`timeout`, `peer_lost`, `aborted`, `mismatch`).
#include <chorus/collectives/policy.hpp>
#include <chorus/communicator.hpp>
#include <chorus/core/buffer.hpp>
#include <chorus/core/ops.hpp>
#include <chorus/dispatch/algo.hpp>
#include <chorus/dispatch/launch.hpp>

#include <vector>

namespace chorus::inline v0 {

namespace detail {
struct reduce_scatter_base {
 protected:
  template <class Transport, class T, class Op, class Algo, class... Rest>
  static void run(const char* api, communicator<Transport>& comm, std::span<const T> in,
                  std::span<T> out, const std::vector<std::size_t>& counts, const Op& op,
                  const Algo& a, Rest&... rest) {
    if constexpr (collective_policy<Algo>) {
      collective_policy_traits<Algo>::reduce_scatter(api, comm, in, out, counts, op, a, rest...);
      return;
    } else {
      run_plain(api, comm, in, out, counts, op, a, rest...);
    }
  }

 private:
  template <class Transport, class T, class Op, class Algo, class... Stream>
  static void run_plain(const char* api, communicator<Transport>& comm, std::span<const T> in,
                        std::span<T> out, const std::vector<std::size_t>& counts, const Op& op,
                        const Algo& a, Stream... stream) {
    algo::require_can_run<Algo, schedule::collective::reduce_scatter>();
    const int r = comm.rank();
    check_count(api, "the input", in.size(), sum(counts), "the sum of the block counts");
    check_count(api, "the output", out.size(), counts[static_cast<std::size_t>(r)],
                "this rank's block count");
    check_alias(api, in, out, -static_cast<std::ptrdiff_t>(offset_of(counts, r)),
                "output == input + this rank's block offset");
    collective_call call = make_call(schedule::collective::reduce_scatter, api, in, out);
    call.counts = counts;
    launch<T>(comm, call, op, a, stream...);
  }
};

struct reduce_scatter_fn : reduce_scatter_base {
  /// Equal blocks: `in.size() == comm.size() * out.size()`.
  template <transport Transport, buffer In, buffer Out, class Op, algo::tag Algo = algo::automatic>
  requires(!buffer<Op>) void operator()(communicator<Transport>& comm, In&& in, Out&& out, Op op,
                                        Algo a = {}) const {
    equal(comm, std::forward<In>(in), std::forward<Out>(out), op, a);
  }

  /// Pointer and count: `in` holds `comm.size() * count` elements, `out` receives `count`.
  template <transport Transport, transferable T, class Op, algo::tag Algo = algo::automatic>
  void operator()(communicator<Transport>& comm, const T* in, T* out, std::size_t count, Op op,
                  Algo a = {}) const {
    (*this)(comm, std::span<const T>(in, count * static_cast<std::size_t>(comm.size())),
            std::span<T>(out, count), op, a);
  }

  /// Equal blocks with a policy (compression); `extra`: the policy's trailing arguments.
  template <transport Transport, buffer In, buffer Out, class Op, collective_policy Policy,
            class... Extra>
  requires(!buffer<Op>) void operator()(communicator<Transport>& comm, In&& in, Out&& out, Op op,
                                        const Policy& policy, Extra&&... extra) const {
    equal(comm, std::forward<In>(in), std::forward<Out>(out), op, policy, extra...);
  }

  /// On a stream-ordered communicator (NCCL): enqueued on `stream`; device memory.
  template <stream_ordered_transport Transport, buffer In, buffer Out, class Op,
            algo::stream_tag Algo = algo::automatic>
  requires(!buffer<Op>) void operator()(communicator<Transport>& comm, In&& in, Out&& out, Op op,
                                        typename Transport::stream_type stream, Algo a = {}) const {
    equal(comm, std::forward<In>(in), std::forward<Out>(out), op, a, stream);
  }

 private:
  template <class Transport, class In, class Out, class Op, class Algo, class... Rest>
  static void equal(communicator<Transport>& comm, In&& in, Out&& out, const Op& op, const Algo& a,
                    Rest&... rest) {
    using T = element_t<In>;
    check_buffers<In, Out>();
    check_reduction_op<Op, T>();
    const auto o = as_span(out);
    const auto i = as_const_span(in);
    if (i.size() != o.size() * static_cast<std::size_t>(comm.size())) {
      invalid("reduce_scatter",
              "the input has " + std::to_string(i.size()) + " elements but must have " +
                  std::to_string(comm.size()) + " ranks x " + std::to_string(o.size()) +
                  " output elements = " +
                  std::to_string(o.size() * static_cast<std::size_t>(comm.size())) +
                  "; use reduce_scatter_v for unequal blocks");
    }
    const std::vector<std::size_t> counts(static_cast<std::size_t>(comm.size()), o.size());
    run("reduce_scatter", comm, i, o, counts, op, a, rest...);
  }
};

struct reduce_scatter_v_fn : reduce_scatter_base {
  /// Block j has `counts[j]` elements; the same `counts` on every rank.
  template <transport Transport, buffer In, buffer Out, count_list Counts, class Op,
            algo::tag Algo = algo::automatic>
  void operator()(communicator<Transport>& comm, In&& in, Out&& out, const Counts& counts, Op op,
                  Algo a = {}) const {
    using T = element_t<In>;
    check_buffers<In, Out>();
    check_reduction_op<Op, T>();
    const auto c = to_counts("reduce_scatter_v", "counts", counts, comm.size());
    run("reduce_scatter_v", comm, as_const_span(in), as_span(out), c, op, a);
  }

  /// With a policy (compression); `extra`: the policy's trailing arguments.
  template <transport Transport, buffer In, buffer Out, count_list Counts, class Op,
            collective_policy Policy, class... Extra>
  void operator()(communicator<Transport>& comm, In&& in, Out&& out, const Counts& counts, Op op,
                  const Policy& policy, Extra&&... extra) const {
    using T = element_t<In>;
    check_buffers<In, Out>();
    check_reduction_op<Op, T>();
    const auto c = to_counts("reduce_scatter_v", "counts", counts, comm.size());
    run("reduce_scatter_v", comm, as_const_span(in), as_span(out), c, op, policy, extra...);
  }
};
}  // namespace detail

/// Reduces every rank's vector and leaves block j of the result on rank j (equal blocks).
inline constexpr detail::reduce_scatter_fn reduce_scatter{};
/// Like `reduce_scatter` with per-rank block counts.
inline constexpr detail::reduce_scatter_v_fn reduce_scatter_v{};

}  // namespace chorus::inline v0

#pragma once
/// \file
/// `chorus::all_reduce`: every rank ends with the element-wise reduction of every rank's
/// vector.
///
/// **Collective.** Every rank of the communicator calls it, in the same order relative to
/// other collectives, with the same element type, count, op and algorithm tag.
///
/// **Completion.** Blocking: when it returns, the output holds the result and the input may
/// be reused. In place: pass one buffer (`all_reduce(comm, v, op)`) or the same buffer as
/// input and output.
///
/// **Determinism.** For a given (algorithm, rank count, count) the result is bitwise the
/// same on every run and on every rank. Different algorithms may differ in the last bits
/// of floating-point results (they add in different orders).
///
/// **Errors.** `invalid_argument` before any byte moves if the output's size differs from
/// the input's or the buffers overlap partially; `timeout`, `peer_lost`, `aborted`,
/// `mismatch` (with `CHORUS_CHECK=1`, or on a count mismatch) during the call, after which
/// the communicator is poisoned.
#include <chorus/collectives/policy.hpp>
#include <chorus/communicator.hpp>
#include <chorus/core/buffer.hpp>
#include <chorus/core/ops.hpp>
#include <chorus/dispatch/algo.hpp>
#include <chorus/dispatch/launch.hpp>

#include <algorithm>

namespace chorus::inline v0 {

namespace detail {
struct all_reduce_fn {
  /// Out of place: `out[i] = op over ranks of in[i]`.
  template <transport Transport, buffer In, buffer Out, class Op, algo::tag Algo = algo::automatic>
  requires(!buffer<Op>) void operator()(communicator<Transport>& comm, In&& in, Out&& out, Op op,
                                        Algo a = {}) const {
    using T = element_t<In>;
    check_buffers<In, Out>();
    check_reduction_op<Op, T>();
    run(comm, as_const_span(in), as_span(out), op, a);
  }

  /// In place: `inout[i] = op over ranks of inout[i]`.
  template <transport Transport, buffer InOut, class Op, algo::tag Algo = algo::automatic>
  requires(!buffer<Op>) void operator()(communicator<Transport>& comm, InOut&& inout, Op op,
                                        Algo a = {}) const {
    using T = element_t<InOut>;
    check_reduction_op<Op, T>();
    auto s = as_span(inout);
    run(comm, std::span<const T>(s), s, op, a);
  }

  /// Pointer and count (as MPI and NCCL): `count` elements of `in` reduced into `out`.
  template <transport Transport, transferable T, class Op, algo::tag Algo = algo::automatic>
  void operator()(communicator<Transport>& comm, const T* in, T* out, std::size_t count, Op op,
                  Algo a = {}) const {
    (*this)(comm, std::span<const T>(in, count), std::span<T>(out, count), op, a);
  }

  /// In place with pointer and count.
  template <transport Transport, transferable T, class Op, algo::tag Algo = algo::automatic>
  void operator()(communicator<Transport>& comm, T* inout, std::size_t count, Op op,
                  Algo a = {}) const {
    (*this)(comm, std::span<T>(inout, count), op, a);
  }

  /// Out of place with a policy (compression: `compress/collectives.hpp`): `out` gets a
  /// copy of `in`, then the in-place policy call runs on it. `extra`: the policy's own
  /// trailing arguments (an algorithm tag, a path, a ledger, ...).
  template <transport Transport, buffer In, buffer Out, class Op, collective_policy Policy,
            class... Extra>
  requires(!buffer<Op>) void operator()(communicator<Transport>& comm, In&& in, Out&& out, Op op,
                                        const Policy& policy, Extra&&... extra) const {
    using T = element_t<In>;
    check_buffers<In, Out>();
    check_reduction_op<Op, T>();
    const auto i = as_const_span(in);
    const auto o = as_span(out);
    check_in_out(i, o);
    if (o.data() != i.data()) std::copy(i.begin(), i.end(), o.begin());
    collective_policy_traits<Policy>::all_reduce(comm, o, op, policy, extra...);
  }

  /// In place with a policy.
  template <transport Transport, buffer InOut, class Op, collective_policy Policy, class... Extra>
  requires(!buffer<Op>) void operator()(communicator<Transport>& comm, InOut&& inout, Op op,
                                        const Policy& policy, Extra&&... extra) const {
    using T = element_t<InOut>;
    check_reduction_op<Op, T>();
    collective_policy_traits<Policy>::all_reduce(comm, as_span(inout), op, policy, extra...);
  }

  /// On a stream-ordered communicator (NCCL): enqueued on `stream`; returns before the
  /// result is ready (stream order, as NCCL). `in`/`out` are device memory.
  template <stream_ordered_transport Transport, buffer In, buffer Out, class Op,
            algo::stream_tag Algo = algo::automatic>
  requires(!buffer<Op>) void operator()(communicator<Transport>& comm, In&& in, Out&& out, Op op,
                                        typename Transport::stream_type stream, Algo a = {}) const {
    using T = element_t<In>;
    check_buffers<In, Out>();
    check_reduction_op<Op, T>();
    run(comm, as_const_span(in), as_span(out), op, a, stream);
  }

  /// In place on a stream-ordered communicator.
  template <stream_ordered_transport Transport, buffer InOut, class Op,
            algo::stream_tag Algo = algo::automatic>
  requires(!buffer<Op>) void operator()(communicator<Transport>& comm, InOut&& inout, Op op,
                                        typename Transport::stream_type stream, Algo a = {}) const {
    using T = element_t<InOut>;
    check_reduction_op<Op, T>();
    auto s = as_span(inout);
    run(comm, std::span<const T>(s), s, op, a, stream);
  }

 private:
  /// The same count, and the same memory or none shared.
  template <class T>
  static void check_in_out(std::span<const T> in, std::span<T> out) {
    check_count("all_reduce", "the output", out.size(), in.size(), "the same count as the input");
    check_alias("all_reduce", in, out, std::ptrdiff_t{0}, "input == output");
  }

  template <class Transport, class T, class Op, class Algo, class... Stream>
  static void run(communicator<Transport>& comm, std::span<const T> in, std::span<T> out,
                  const Op& op, const Algo& a, Stream... stream) {
    algo::require_can_run<Algo, schedule::collective::all_reduce>();
    check_in_out(in, out);
    collective_call call = make_call(schedule::collective::all_reduce, "all_reduce", in, out);
    call.count = in.size();
    launch<T>(comm, call, op, a, stream...);
  }
};
}  // namespace detail

/// Reduces every rank's vector element-wise and gives every rank the result.
///
///     chorus::all_reduce(comm, grads, chorus::plus{});                      // in place
///     chorus::all_reduce(comm, in, out, chorus::maximum{}, chorus::algo::ring{});
///     chorus::all_reduce(comm, grads, chorus::average{}, chorus::compress::top_k{.ratio = 0.01});
///                                      // with <chorus/compress/compress.hpp>
inline constexpr detail::all_reduce_fn all_reduce{};

}  // namespace chorus::inline v0

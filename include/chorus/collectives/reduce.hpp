#pragma once
/// \file
/// `chorus::reduce`: the element-wise reduction of every rank's vector, delivered to the
/// root only.
///
/// **Collective.** Every rank calls it with the same element type, count, op, root and
/// algorithm. Only the root's output is written; other ranks may pass an empty output.
///
/// **Completion.** Blocking. In place: pass one buffer (`reduce(comm, v, op, root)`); on
/// the root it receives the result, elsewhere it is only read.
///
/// **Determinism.** Bitwise reproducible for a given (algorithm, rank count, count, root).
///
/// **Errors.** `invalid_argument` before any byte moves for a root out of range, a root
/// output whose size differs from the input's, or a partial overlap; then as for every
/// collective.
/// A root-only error (the root's buffers) also fails the group: every rank then fails
/// with the root's `invalid_argument`, in this call or its next (`check_at_root`).
#include <chorus/collectives/policy.hpp>
#include <chorus/communicator.hpp>
#include <chorus/core/buffer.hpp>
#include <chorus/core/ops.hpp>
#include <chorus/dispatch/algo.hpp>
#include <chorus/dispatch/launch.hpp>

namespace chorus::inline v0 {

namespace detail {
struct reduce_fn {
  /// Out of place: the root's `out` receives the reduction of every rank's `in`.
  template <transport Transport, buffer In, buffer Out, class Op, algo::tag Algo = algo::automatic>
  requires(!buffer<Op>) void operator()(communicator<Transport>& comm, In&& in, Out&& out, Op op,
                                        int root, Algo a = {}) const {
    using T = element_t<In>;
    check_buffers<In, Out>();
    check_reduction_op<Op, T>();
    run(comm, as_const_span(in), as_span(out), op, root, a);
  }

  /// With a policy that rewrites reduce (`chorus::reproducible`); `extra`: its trailing
  /// arguments (an algorithm tag).
  template <transport Transport, buffer In, buffer Out, class Op, rooted_policy Policy,
            class... Extra>
  requires(!buffer<Op>) void operator()(communicator<Transport>& comm, In&& in, Out&& out, Op op,
                                        int root, const Policy& policy, Extra&&... extra) const {
    using T = element_t<In>;
    check_buffers<In, Out>();
    check_reduction_op<Op, T>();
    check_root("reduce", root, comm.size());
    const auto i = as_const_span(in);
    const auto o = as_span(out);
    if (comm.rank() == root) {
      check_at_root(comm, [&] {
        check_count("reduce", "the root's output", o.size(), i.size(),
                    "the same count as the input");
      });
    }
    collective_policy_traits<Policy>::reduce(comm, i, comm.rank() == root ? o : std::span<T>{}, op,
                                             root, policy, extra...);
  }

  /// In place with a policy that rewrites reduce: on the root, `inout` is replaced.
  template <transport Transport, buffer InOut, class Op, rooted_policy Policy, class... Extra>
  requires(!buffer<Op>) void operator()(communicator<Transport>& comm, InOut&& inout, Op op,
                                        int root, const Policy& policy, Extra&&... extra) const {
    using T = element_t<InOut>;
    check_reduction_op<Op, T>();
    check_root("reduce", root, comm.size());
    auto s = as_span(inout);
    collective_policy_traits<Policy>::reduce(comm, std::span<const T>(s),
                                             comm.rank() == root ? s : std::span<T>{}, op, root,
                                             policy, extra...);
  }

  /// Pointer and count: `count` elements of `in` reduced into the root's `out`.
  template <transport Transport, transferable T, class Op, algo::tag Algo = algo::automatic>
  void operator()(communicator<Transport>& comm, const T* in, T* out, std::size_t count, Op op,
                  int root, Algo a = {}) const {
    (*this)(comm, std::span<const T>(in, count), std::span<T>(out, comm.rank() == root ? count : 0),
            op, root, a);
  }

  /// In place: on the root, `inout` is replaced by the reduction.
  template <transport Transport, buffer InOut, class Op, algo::tag Algo = algo::automatic>
  requires(!buffer<Op>) void operator()(communicator<Transport>& comm, InOut&& inout, Op op,
                                        int root, Algo a = {}) const {
    using T = element_t<InOut>;
    check_reduction_op<Op, T>();
    auto s = as_span(inout);
    run(comm, std::span<const T>(s), comm.rank() == root ? s : std::span<T>{}, op, root, a);
  }

  /// On a stream-ordered communicator (NCCL): enqueued on `stream`; device memory.
  template <stream_ordered_transport Transport, buffer In, buffer Out, class Op,
            algo::stream_tag Algo = algo::automatic>
  requires(!buffer<Op>) void operator()(communicator<Transport>& comm, In&& in, Out&& out, Op op,
                                        int root, typename Transport::stream_type stream,
                                        Algo a = {}) const {
    using T = element_t<In>;
    check_buffers<In, Out>();
    check_reduction_op<Op, T>();
    run(comm, as_const_span(in), as_span(out), op, root, a, stream);
  }

  /// In place on a stream-ordered communicator.
  template <stream_ordered_transport Transport, buffer InOut, class Op,
            algo::stream_tag Algo = algo::automatic>
  requires(!buffer<Op>) void operator()(communicator<Transport>& comm, InOut&& inout, Op op,
                                        int root, typename Transport::stream_type stream,
                                        Algo a = {}) const {
    using T = element_t<InOut>;
    check_reduction_op<Op, T>();
    auto s = as_span(inout);
    run(comm, std::span<const T>(s), comm.rank() == root ? s : std::span<T>{}, op, root, a, stream);
  }

 private:
  template <class Transport, class T, class Op, class Algo, class... Stream>
  static void run(communicator<Transport>& comm, std::span<const T> in, std::span<T> out,
                  const Op& op, int root, const Algo& a, Stream... stream) {
    algo::require_can_run<Algo, schedule::collective::reduce>();
    check_root("reduce", root, comm.size());
    if (comm.rank() == root) {
      check_at_root(comm, [&] {
        check_count("reduce", "the root's output", out.size(), in.size(),
                    "the same count as the input");
        check_alias("reduce", in, out, std::ptrdiff_t{0}, "input == output");
      });
    } else {
      out = {};
    }
    collective_call call = make_call(schedule::collective::reduce, "reduce", in, out);
    call.count = in.size();
    call.root = root;
    launch<T>(comm, call, op, a, stream...);
  }
};
}  // namespace detail

/// Reduces every rank's vector element-wise onto the root.
inline constexpr detail::reduce_fn reduce{};

}  // namespace chorus::inline v0

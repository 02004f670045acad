#pragma once
/// \file
/// `chorus::broadcast`: the root's vector, copied to every rank.
///
/// **Collective.** Every rank calls it with the same element type, count, root and
/// algorithm. Only the root's input is read; other ranks may pass an empty input.
///
/// **Completion.** Blocking. In place: pass one buffer (`broadcast(comm, v, root)`), which
/// is the input on the root and the output elsewhere.
///
/// **Determinism.** Pure data movement: the output is exact.
///
/// **Errors.** `invalid_argument` before any byte moves for a root out of range, a root
/// input whose size differs from the output's, or a partial overlap; then as for every
/// collective.
/// A root-only error (the root's buffers) also fails the group: every rank then fails
/// with the root's `invalid_argument`, in this call or its next (`check_at_root`).
#include <chorus/communicator.hpp>
#include <chorus/core/buffer.hpp>
#include <chorus/dispatch/algo.hpp>
#include <chorus/dispatch/launch.hpp>

namespace chorus::inline v0 {

namespace detail {
struct broadcast_fn {
  /// Out of place: the root's `in` is copied into every rank's `out`.
  template <transport Transport, buffer In, buffer Out, algo::tag Algo = algo::automatic>
  void operator()(communicator<Transport>& comm, In&& in, Out&& out, int root, Algo a = {}) const {
    check_buffers<In, Out>();
    run(comm, as_const_span(in), as_span(out), root, a);
  }

  /// Pointer and count, in place: the root's `count` elements at `data` go to every rank.
  template <transport Transport, transferable T, algo::tag Algo = algo::automatic>
  void operator()(communicator<Transport>& comm, T* data, std::size_t count, int root,
                  Algo a = {}) const {
    (*this)(comm, std::span<T>(data, count), root, a);
  }

  /// In place: the root's `inout` is copied into every other rank's `inout`.
  template <transport Transport, buffer InOut, algo::tag Algo = algo::automatic>
  void operator()(communicator<Transport>& comm, InOut&& inout, int root, Algo a = {}) const {
    auto s = as_span(inout);
    using T = typename decltype(s)::element_type;
    run(comm, std::span<const T>(s), s, root, a);
  }

  /// On a stream-ordered communicator (NCCL): enqueued on `stream`; device memory.
  template <stream_ordered_transport Transport, buffer In, buffer Out,
            algo::stream_tag Algo = algo::automatic>
  void operator()(communicator<Transport>& comm, In&& in, Out&& out, int root,
                  typename Transport::stream_type stream, Algo a = {}) const {
    check_buffers<In, Out>();
    run(comm, as_const_span(in), as_span(out), root, a, stream);
  }

  /// In place on a stream-ordered communicator.
  template <stream_ordered_transport Transport, buffer InOut,
            algo::stream_tag Algo = algo::automatic>
  void operator()(communicator<Transport>& comm, InOut&& inout, int root,
                  typename Transport::stream_type stream, Algo a = {}) const {
    auto s = as_span(inout);
    using T = typename decltype(s)::element_type;
    run(comm, std::span<const T>(s), s, root, a, stream);
  }

 private:
  template <class Transport, class T, class Algo, class... Stream>
  static void run(communicator<Transport>& comm, std::span<const T> in, std::span<T> out, int root,
                  const Algo& a, Stream... stream) {
    algo::require_can_run<Algo, schedule::collective::broadcast>();
    check_root("broadcast", root, comm.size());
    if (comm.rank() == root) {
      check_at_root(comm, [&] {
        check_count("broadcast", "the root's input", in.size(), out.size(),
                    "the same count as the output");
        check_alias("broadcast", in, out, std::ptrdiff_t{0}, "input == output");
      });
    } else {
      in = {};
    }
    collective_call call = make_call(schedule::collective::broadcast, "broadcast", in, out);
    call.count = out.size();
    call.root = root;
    launch<T>(comm, call, no_reduction{}, a, stream...);
  }
};
}  // namespace detail

/// Copies the root's vector to every rank.
inline constexpr detail::broadcast_fn broadcast{};

}  // namespace chorus::inline v0

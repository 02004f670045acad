#pragma once
/// \file
/// `chorus::gather`: every rank's block, concatenated in rank order on the root.
///
/// **Collective.** Every rank calls it with the same element type, block count, root and
/// algorithm. Only the root's output is written (`out.size() == P * in.size()`); other
/// ranks may pass an empty output.
///
/// **Completion.** Blocking. In place on the root: its input is its own block of the
/// output, `in.data() == out.data() + root * in.size()`.
///
/// **Determinism.** Pure data movement: the output is exact.
///
/// **Errors.** `invalid_argument` before any byte moves for a root out of range, a root
/// output of the wrong size or a partial overlap; then as for every collective.
/// A root-only error (the root's buffers) also fails the group: every rank then fails
/// with the root's `invalid_argument`, in this call or its next (`check_at_root`).
#include <chorus/communicator.hpp>
#include <chorus/core/buffer.hpp>
#include <chorus/dispatch/algo.hpp>
#include <chorus/dispatch/launch.hpp>

#include <vector>

namespace chorus::inline v0 {

namespace detail {
struct gather_fn {
  /// Pointer and count: `count` elements per rank; the root's `out` holds `comm.size() * count`.
  template <transport Transport, transferable T, algo::tag Algo = algo::automatic>
  void operator()(communicator<Transport>& comm, const T* in, T* out, std::size_t count, int root,
                  Algo a = {}) const {
    const auto p = static_cast<std::size_t>(comm.size());
    (*this)(comm, std::span<const T>(in, count),
            std::span<T>(out, comm.rank() == root ? count * p : 0), root, a);
  }

  template <transport Transport, buffer In, buffer Out, algo::tag Algo = algo::automatic>
  void operator()(communicator<Transport>& comm, In&& in, Out&& out, int root, Algo a = {}) const {
    check_buffers<In, Out>();
    algo::require_can_run<Algo, schedule::collective::gather>();
    check_root("gather", root, comm.size());
    auto i = as_const_span(in);
    auto o = as_span(out);
    const std::vector<std::size_t> counts(static_cast<std::size_t>(comm.size()), i.size());
    if (comm.rank() == root) {
      check_at_root(comm, [&] {
        check_count("gather", "the root's output", o.size(), sum(counts), "ranks x input elements");
        check_alias("gather", i, o, static_cast<std::ptrdiff_t>(offset_of(counts, root)),
                    "input == output + root x input size");
      });
    } else {
      o = {};
    }
    collective_call call = make_call(schedule::collective::gather, "gather", i, o);
    call.counts = counts;
    call.root = root;
    set_algorithm(call, a);
    run_collective(comm, call);
  }
};
}  // namespace detail

/// Concatenates every rank's block, in rank order, on the root.
inline constexpr detail::gather_fn gather{};

}  // namespace chorus::inline v0

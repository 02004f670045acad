#pragma once
/// \file
/// `chorus::scatter`: block j of the root's vector delivered to rank j.
///
/// **Collective.** Every rank calls it with the same element type, block count, root and
/// algorithm. Only the root's input is read (`in.size() == P * out.size()`); other ranks
/// may pass an empty input.
///
/// **Completion.** Blocking. In place on the root: its output is its own block of the
/// input, `out.data() == in.data() + root * out.size()`.
///
/// **Determinism.** Pure data movement: the output is exact.
///
/// **Errors.** `invalid_argument` before any byte moves for a root out of range, a root
/// input of the wrong size or a partial overlap; then as for every collective.
/// A root-only error (the root's buffers) also fails the group: every rank then fails
/// with the root's `invalid_argument`, in this call or its next (`check_at_root`).
#include <chorus/communicator.hpp>
#include <chorus/core/buffer.hpp>
#include <chorus/dispatch/algo.hpp>
#include <chorus/dispatch/launch.hpp>

#include <vector>

namespace chorus::inline v0 {

namespace detail {
struct scatter_fn {
  /// Pointer and count: `count` elements per rank; the root's `in` holds `comm.size() * count`.
  template <transport Transport, transferable T, algo::tag Algo = algo::automatic>
  void operator()(communicator<Transport>& comm, const T* in, T* out, std::size_t count, int root,
                  Algo a = {}) const {
    const auto p = static_cast<std::size_t>(comm.size());
    (*this)(comm, std::span<const T>(in, comm.rank() == root ? count * p : 0),
            std::span<T>(out, count), root, a);
  }

  template <transport Transport, buffer In, buffer Out, algo::tag Algo = algo::automatic>
  void operator()(communicator<Transport>& comm, In&& in, Out&& out, int root, Algo a = {}) const {
    check_buffers<In, Out>();
    algo::require_can_run<Algo, schedule::collective::scatter>();
    check_root("scatter", root, comm.size());
    auto i = as_const_span(in);
    auto o = as_span(out);
    const std::vector<std::size_t> counts(static_cast<std::size_t>(comm.size()), o.size());
    if (comm.rank() == root) {
      check_at_root(comm, [&] {
        check_count("scatter", "the root's input", i.size(), sum(counts),
                    "ranks x output elements");
        check_alias("scatter", i, o, -static_cast<std::ptrdiff_t>(offset_of(counts, root)),
                    "output == input + root x output size");
      });
    } else {
      i = {};
    }
    collective_call call = make_call(schedule::collective::scatter, "scatter", i, o);
    call.counts = counts;
    call.root = root;
    set_algorithm(call, a);
    run_collective(comm, call);
  }
};
}  // namespace detail

/// Sends block j of the root's vector to rank j.
inline constexpr detail::scatter_fn scatter{};

}  // namespace chorus::inline v0

#pragma once
/// \file
/// The seam through which a policy changes what a collective moves: compression today
/// (`compress/collectives.hpp`), anything that rewrites a call into other collectives
/// tomorrow.
///
/// `chorus::all_reduce(comm, data, op, policy, extra...)` (and `reduce_scatter`,
/// `reduce_scatter_v`, `all_gather`; `reduce` for a `rooted_policy`) accept any `policy`
/// whose type has a specialisation
/// of `collective_policy_traits` with `enabled = true`; the entry point checks the buffers
/// as for the plain call and hands the call to the specialisation's function of the same
/// name. Without the header that specialises it, a policy argument is simply no overload.
#include <type_traits>

namespace chorus::inline v0 {

/// Specialise with `static constexpr bool enabled = true;` and the static functions
///     all_reduce(comm, std::span<T> data, op, policy, extra&...)          // in place
///     reduce_scatter(api, comm, std::span<const T> in, std::span<T> out,
///                    const std::vector<std::size_t>& counts, op, policy, extra&...)
///     all_gather(comm, std::span<const T> in, std::span<T> out, policy, extra&...)
template <class Policy>
struct collective_policy_traits {
  static constexpr bool enabled = false;
};

/// A type that rewrites the main collectives (see `collective_policy_traits`).
template <class P>
concept collective_policy = collective_policy_traits<std::remove_cvref_t<P>>::enabled;

/// A policy that also rewrites `reduce` (its traits have `rooted = true` and
///     reduce(comm, std::span<const T> in, std::span<T> out, op, root, policy, extra&...)
/// where `out` is empty on every rank but the root).
template <class P>
concept rooted_policy =
    collective_policy<P> && collective_policy_traits<std::remove_cvref_t<P>>::rooted;

}  // namespace chorus::inline v0

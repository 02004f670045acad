#pragma once
/// \file
/// The one entry point of the schedule generators: `build(algorithm, params)` returns rank
/// `params.rank`'s schedule of the collective `params.kind` under the algorithm family.
///
/// Pure: no I/O, no global state, the same schedule for the same arguments. The returned
/// schedule follows the step semantics of `schedule.hpp`; `simulate.hpp` checks that all
/// ranks' schedules together compute the collective, for either aliasing (in place or not).
///
/// Facts the executor can rely on, whatever the algorithm:
///  - Empty data transfers are never emitted (both sides of a message skip it); only
///    barriers send zero-count messages.
///  - A `copy` may have the same offset in `input` as in `output` where the collective's
///    in-place form makes them the same memory (e.g. "copy own block into the output");
///    the executor skips a copy whose source and destination addresses are equal.
///  - Tags are 0, except that the double binary tree tags its second tree 1.
///  - Non-root inputs of broadcast / scatter and non-root outputs of reduce / gather are
///    never touched (scratch stands in for them).
///  - Scratch is uninitialised on entry and never read before it is written.
#include <chorus/schedule/direct.hpp>
#include <chorus/schedule/double_binary_tree.hpp>
#include <chorus/schedule/halving_doubling.hpp>
#include <chorus/schedule/hierarchical.hpp>
#include <chorus/schedule/recursive_doubling.hpp>
#include <chorus/schedule/ring.hpp>
#include <chorus/schedule/schedule.hpp>
#include <chorus/schedule/tree.hpp>

#include <stdexcept>
#include <string>

namespace chorus::inline v0::schedule {

namespace detail {

/// Whether `c` takes one block count per rank in `params::counts`.
inline constexpr bool uses_counts(collective c) noexcept {
  return c == collective::reduce_scatter || c == collective::all_gather ||
         c == collective::gather || c == collective::scatter;
}

/// Throws `std::invalid_argument` naming the first problem of (a, p), if any.
inline void validate(algorithm a, const params& p) {
  const std::string what = "chorus schedule: ";
  if (!supports(a, p.kind)) {
    throw std::invalid_argument(what + "algorithm '" + std::string(name(a)) +
                                "' does not support collective '" + std::string(name(p.kind)) +
                                "'.");
  }
  if (p.size < 1) {
    throw std::invalid_argument(what + "the rank count must be at least 1, got " +
                                std::to_string(p.size) + ".");
  }
  if (p.rank < 0 || p.rank >= p.size) {
    throw std::invalid_argument(what + "rank " + std::to_string(p.rank) + " is out of range for " +
                                std::to_string(p.size) + " ranks.");
  }
  if (p.root < 0 || p.root >= p.size) {
    throw std::invalid_argument(what + "root " + std::to_string(p.root) + " is out of range for " +
                                std::to_string(p.size) + " ranks.");
  }
  const std::size_t size = static_cast<std::size_t>(p.size);
  if (uses_counts(p.kind) && p.counts.size() != size) {
    throw std::invalid_argument(what + std::string(name(p.kind)) + " needs one count per rank (" +
                                std::to_string(size) + "), got " + std::to_string(p.counts.size()) +
                                ".");
  }
  if (!p.hosts.empty()) {
    if (p.hosts.size() != size) {
      throw std::invalid_argument(what + "hosts needs one host per rank (" + std::to_string(size) +
                                  "), got " + std::to_string(p.hosts.size()) + ".");
    }
    for (std::size_t r = 0; r < size; ++r) {
      if (p.hosts[r] < 0) {
        throw std::invalid_argument(what + "the host of rank " + std::to_string(r) + " is " +
                                    std::to_string(p.hosts[r]) + "; hosts are numbered from 0.");
      }
    }
  }
  if (p.kind == collective::all_to_all) {
    if (p.send_counts.size() != size || p.send_offsets.size() != size ||
        p.recv_counts.size() != size || p.recv_offsets.size() != size) {
      throw std::invalid_argument(what +
                                  "all_to_all needs send_counts, send_offsets, recv_counts and "
                                  "recv_offsets with one entry per rank (" +
                                  std::to_string(size) + ").");
    }
    const std::size_t r = static_cast<std::size_t>(p.rank);
    if (p.send_counts[r] != p.recv_counts[r]) {
      throw std::invalid_argument(what + "all_to_all rank " + std::to_string(p.rank) + " sends " +
                                  std::to_string(p.send_counts[r]) +
                                  " elements to itself but receives " +
                                  std::to_string(p.recv_counts[r]) + ".");
    }
  }
}

}  // namespace detail

/// Rank `p.rank`'s schedule of collective `p.kind` under algorithm `a`.
/// Throws `std::invalid_argument` when `supports(a, p.kind)` is false or when the
/// parameters are inconsistent (rank or root out of range, counts or hosts of the wrong
/// size, a negative host).
inline schedule build(algorithm a, const params& p) {
  detail::validate(a, p);
  switch (a) {
    case algorithm::ring:
      return detail::build_ring(p);
    case algorithm::tree:
      return detail::build_tree(p);
    case algorithm::double_binary_tree:
      return detail::build_double_binary_tree(p);
    case algorithm::recursive_doubling:
      return detail::build_recursive_doubling(p);
    case algorithm::halving_doubling:
      return detail::build_halving_doubling(p);
    case algorithm::direct:
      return detail::build_direct(p);
    case algorithm::hierarchical:
      return detail::build_hierarchical(p);
    case algorithm::one_sided:
      throw std::invalid_argument(
          "chorus schedule: one_sided is no message schedule; the one-sided executor runs it.");
  }
  throw std::invalid_argument("chorus schedule: unknown algorithm.");
}

}  // namespace chorus::inline v0::schedule

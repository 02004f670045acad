#pragma once
/// \file
/// Algorithm tags: the last argument of every collective.
///
/// Behaviour is chosen by the tag's type (`chorus::algo::ring{}`), tuning by its values
/// (`chorus::algo::ring{.chunk_bytes = 1 << 20}`). A tag that cannot run a collective is a
/// compile error with a sentence, never a silent fallback. `algo::automatic` (the default)
/// picks by message size and rank count; the rule is in `detail/dispatch.hpp` and
/// docs/collectives.md.
#include <chorus/algorithm/schedule/schedule.hpp>

#include <concepts>
#include <cstddef>
#include <optional>

namespace chorus::inline v0::algo {

/// Ring: bandwidth-optimal for large messages (each rank sends 2(P-1)/P of the data for an
/// all-reduce); P-1 latency steps per phase. For rooted collectives, a pipelined chain.
struct ring {
  static constexpr schedule::algorithm id = schedule::algorithm::ring;
  /// Transfers longer than this are cut into pieces so that the reduction of one piece
  /// overlaps the transfer of the next. 1 MiB: below it, per-message overhead starts to
  /// show on the host transports; above it, a piece no longer stays in the last-level
  /// cache between arrival and reduction. Provisional until the tuner issue measures it.
  std::size_t chunk_bytes = std::size_t{1} << 20;
};

/// Pipelined binary tree (binomial tree for gather/scatter): log2(P) latency, so good for
/// medium sizes and many ranks; the interior ranks carry twice the traffic.
struct tree {
  static constexpr schedule::algorithm id = schedule::algorithm::tree;
  /// Pipeline piece size; smaller than the ring's because a tree's pipeline is only
  /// log2(P) deep and fills faster with smaller pieces. Provisional (see `ring`).
  std::size_t chunk_bytes = std::size_t{256} << 10;
};

/// NCCL's double binary tree: two complementary trees each carrying half of the data, so
/// every rank sends and receives about as much as in a ring, with log2(P) latency.
struct double_binary_tree {
  static constexpr schedule::algorithm id = schedule::algorithm::double_binary_tree;
  /// Pipeline piece size (see `tree`).
  std::size_t chunk_bytes = std::size_t{256} << 10;
};

/// Recursive doubling: log2(P) exchanges of the whole vector. Lowest latency for small
/// messages; sends log2(P) times the data. Binomial trees for broadcast and reduce.
struct recursive_doubling {
  static constexpr schedule::algorithm id = schedule::algorithm::recursive_doubling;
};

/// Rabenseifner's halving-doubling: recursive-halving reduce-scatter and recursive-doubling
/// all-gather. Bandwidth-optimal like the ring with log2(P) latency; any rank count.
struct halving_doubling {
  static constexpr schedule::algorithm id = schedule::algorithm::halving_doubling;
};

/// Every rank exchanges directly with every other (or with the root). Fewest steps; best
/// for few ranks and for all-to-all.
struct direct {
  static constexpr schedule::algorithm id = schedule::algorithm::direct;
};

/// Let chorus choose by message size and rank count (the default).
struct automatic {};

/// An algorithm chosen at run time (from a command line, a config file, a tuner): checked
/// when the collective is called, with `errc::invalid_argument` if it cannot run it, where
/// the tags above fail at compile time. Prefer the tags in code.
struct dynamic {
  std::optional<schedule::algorithm> id;  ///< nullopt: automatic
  std::size_t chunk_bytes = 0;            ///< pipeline piece size; 0: the family's default
};

/// The transport's own implementation of the collective (NCCL's `ncclAllReduce`, ...), so
/// that chorus's algorithms and the vendor's compare in one program. Only collectives on a
/// stream-ordered communicator whose transport has collectives of its own accept it (the
/// five NCCL has: all-reduce, equal-block reduce-scatter and all-gather, broadcast,
/// reduce); it is not a `tag` of the host collectives.
struct native {};

/// One of the tags above (`native` aside).
template <class A>
concept tag = std::same_as<A, automatic> || std::same_as<A, dynamic> || requires {
  { A::id } -> std::convertible_to<schedule::algorithm>;
};

/// What a collective on a stream-ordered communicator takes: a tag or `native`.
template <class A>
concept stream_tag = tag<A> || std::same_as<A, native>;

/// Whether tag `A` can run collective `C` (`automatic` always can).
template <class A, schedule::collective C>
inline constexpr bool can_run = [] {
  if constexpr (std::same_as<A, automatic> || std::same_as<A, dynamic>) {
    return true;  // dynamic: checked at run time
  } else if constexpr (std::same_as<A, native>) {
    using enum schedule::collective;
    return C == all_reduce || C == reduce_scatter || C == all_gather || C == broadcast ||
           C == reduce;
  } else {
    return schedule::supports(A::id, C);
  }
}();

/// The pipelining piece size of a tag in bytes (0 for tags that do not pipeline).
template <class A>
constexpr std::size_t chunk_bytes_of(const A& a) noexcept {
  if constexpr (requires { a.chunk_bytes; }) {
    return a.chunk_bytes;
  } else {
    return 0;
  }
}

}  // namespace chorus::inline v0::algo

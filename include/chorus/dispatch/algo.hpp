#pragma once
/// \file
/// Algorithm tags: the last argument of every collective.
///
/// Behaviour is chosen by the tag's type (`chorus::algo::ring{}`), tuning by its values
/// (`chorus::algo::ring{.chunk_bytes = 1 << 20}`; 0, the default, lets dispatch pick for
/// the transport). A tag that cannot run a collective is a compile error with a sentence,
/// never a silent fallback. `algo::automatic` (the default) picks through the tuner
/// (`dispatch/tuner.hpp`; the default rule is in docs/collectives.md).
#include <chorus/schedule/schedule.hpp>

#include <concepts>
#include <cstddef>
#include <optional>
#include <string_view>

namespace chorus::inline v0::algo {

/// Ring: bandwidth-optimal for large messages (each rank sends 2(P-1)/P of the data for an
/// all-reduce); P-1 latency steps per phase. For rooted collectives, a pipelined chain.
struct ring {
  static constexpr schedule::algorithm id = schedule::algorithm::ring;
  /// The default piece on host transports. 1 MiB: below it, per-message overhead starts
  /// to show on the host transports; above it, a piece no longer stays in the last-level
  /// cache between arrival and reduction. Provisional until the tuner issue measures it.
  static constexpr std::size_t host_chunk_bytes = std::size_t{1} << 20;
  /// Transfers longer than this are cut into pieces so that the reduction of one piece
  /// overlaps the transfer of the next. 0 (the default): `host_chunk_bytes` on host
  /// transports, and no pieces on stream-ordered ones (NCCL), where a step's reductions
  /// all start after the step's group ends, so pieces would only add launches.
  std::size_t chunk_bytes = 0;
};

/// Pipelined binary tree (binomial tree for gather/scatter): log2(P) latency, so good for
/// medium sizes and many ranks; the interior ranks carry twice the traffic.
struct tree {
  static constexpr schedule::algorithm id = schedule::algorithm::tree;
  /// The default piece on host transports; smaller than the ring's because a tree's
  /// pipeline is only log2(P) deep and fills faster with smaller pieces. Provisional (see
  /// `ring`).
  static constexpr std::size_t host_chunk_bytes = std::size_t{256} << 10;
  /// Pipeline piece size. 0 (the default): `host_chunk_bytes` on host transports; on
  /// stream-ordered ones, where every piece costs a group and a kernel launch per level,
  /// at least that and at most `stream_pipeline_pieces` pieces per call.
  std::size_t chunk_bytes = 0;
};

/// NCCL's double binary tree: two complementary trees each carrying half of the data, so
/// every rank sends and receives about as much as in a ring, with log2(P) latency.
struct double_binary_tree {
  static constexpr schedule::algorithm id = schedule::algorithm::double_binary_tree;
  /// The default piece on host transports (see `tree`).
  static constexpr std::size_t host_chunk_bytes = std::size_t{256} << 10;
  /// Pipeline piece size; 0 (the default) as for `tree`.
  std::size_t chunk_bytes = 0;
};

/// The most pieces a tree's pipeline is cut into by default on a stream-ordered transport.
/// There the pieces of a tree still overlap across ranks (a piece climbs one level per
/// step while the next one follows), but each step is a group and a kernel launch of some
/// microseconds on every rank, so a 1 GiB call at 256 KiB pieces would be 4,096 groups.
/// 16 pieces keep the pipeline's fill (the tree's height in steps) small next to the
/// pieces at 8-64 ranks. Not measured (no GPU has run it yet, docs/gpu.md).
inline constexpr std::size_t stream_pipeline_pieces = 16;

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

/// Every rank exchanges directly with every other (or with the root), in messages. Fewest
/// steps; best for few ranks and for all-to-all.
struct direct {
  static constexpr schedule::algorithm id = schedule::algorithm::direct;
};

/// One-sided all-reduce, reduce-scatter and all-gather: each rank reduces (or collects) its
/// block straight out of its peers' windows, with zero-byte messages as the only
/// synchronisation (`exec/one_sided.hpp`). Needs a transport with windows
/// (`one_sided_transport`: `shm_transport` loads from mapped windows, `ucx_transport` gets);
/// on shared memory the automatic choice takes it from a few KiB on.
struct one_sided {
  static constexpr schedule::algorithm id = schedule::algorithm::one_sided;
};

/// Hierarchical: two levels, within each host, then across hosts, so that the links
/// between hosts carry as little as the collective allows. Reads the host of every rank
/// from `communicator::hosts()` (UCX finds it; inproc, shm and NCCL put every rank on one
/// host, where this is the ring). With L ranks on each of H hosts: all-reduce runs a ring
/// reduce-scatter within the host, a ring all-reduce of the own block across hosts and a
/// ring all-gather within the host (each rank sends 2(H-1)/(H L) of the vector off its
/// host); reduce-scatter and all-gather run the within-host and across-host rings on a
/// packed copy; broadcast goes across hosts first, reduce last. Hosts of different sizes
/// go through one rank per host (schedule/hierarchical.hpp has every phase).
struct hierarchical {
  static constexpr schedule::algorithm id = schedule::algorithm::hierarchical;
  /// The default piece of every ring phase on host transports (see `ring`).
  static constexpr std::size_t host_chunk_bytes = ring::host_chunk_bytes;
  /// Pipeline piece size of every ring phase; 0 (the default) as for `ring`.
  std::size_t chunk_bytes = 0;
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

/// `a` as a run-time choice (for a field or option of type `algo::dynamic`):
/// `algo::as_dynamic(algo::ring{.chunk_bytes = 1 << 20})`.
template <tag A>
constexpr dynamic as_dynamic(const A& a) noexcept {
  if constexpr (std::same_as<A, dynamic>) {
    return a;
  } else if constexpr (std::same_as<A, automatic>) {
    return {};
  } else if constexpr (requires { a.chunk_bytes; }) {
    return {A::id, a.chunk_bytes};
  } else {
    return {A::id, 0};
  }
}

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

/// The sentence each collective's entry point prints when a tag cannot run it, and the
/// compile-time proof that it names exactly the algorithms of `schedule::support_table`.
namespace detail {
constexpr bool names_exactly(std::string_view sentence, schedule::collective c) {
  for (schedule::algorithm a : schedule::all_algorithms) {
    bool named = false;
    for (std::size_t at = sentence.find(schedule::name(a)); at != std::string_view::npos;
         at = sentence.find(schedule::name(a), at + 1)) {
      const std::size_t after = at + schedule::name(a).size();
      named =
          named || (at >= 6 && sentence.substr(at - 6, 6) == "algo::" &&
                    (after == sentence.size() || sentence[after] == ',' || sentence[after] == ' '));
    }
    if (named != schedule::supports(a, c)) return false;
  }
  return true;
}
}  // namespace detail

#define CHORUS_ALGO_SENTENCE(collective_name, list)                                              \
  static_assert(detail::names_exactly(list, schedule::collective::collective_name),              \
                "the sentence for " #collective_name " disagrees with schedule::support_table"); \
  static_assert(can_run<A, schedule::collective::collective_name>,                               \
                "chorus::" #collective_name " runs with " list " or algo::automatic only.")

/// Fails to compile, with one sentence naming the algorithms that can, when tag `A` cannot
/// run collective `C`. Called by every entry point.
template <class A, schedule::collective C>
constexpr void require_can_run() noexcept {
  using enum schedule::collective;
  if constexpr (C == all_reduce) {
    CHORUS_ALGO_SENTENCE(all_reduce,
                         "algo::ring, algo::tree, algo::double_binary_tree, "
                         "algo::recursive_doubling, algo::halving_doubling, algo::direct, "
                         "algo::one_sided, algo::hierarchical");
  } else if constexpr (C == reduce_scatter) {
    CHORUS_ALGO_SENTENCE(reduce_scatter,
                         "algo::ring, algo::halving_doubling, algo::direct, algo::one_sided, "
                         "algo::hierarchical");
  } else if constexpr (C == all_gather) {
    CHORUS_ALGO_SENTENCE(all_gather,
                         "algo::ring, algo::recursive_doubling, algo::halving_doubling, "
                         "algo::direct, algo::one_sided, algo::hierarchical");
  } else if constexpr (C == broadcast) {
    CHORUS_ALGO_SENTENCE(broadcast,
                         "algo::ring, algo::tree, algo::recursive_doubling, "
                         "algo::halving_doubling, algo::direct, algo::hierarchical");
  } else if constexpr (C == reduce) {
    CHORUS_ALGO_SENTENCE(reduce,
                         "algo::ring, algo::tree, algo::recursive_doubling, "
                         "algo::halving_doubling, algo::direct, algo::hierarchical");
  } else if constexpr (C == barrier) {
    CHORUS_ALGO_SENTENCE(barrier, "algo::ring, algo::tree, algo::recursive_doubling, algo::direct");
  } else if constexpr (C == all_to_all) {
    CHORUS_ALGO_SENTENCE(all_to_all, "algo::direct");
  } else if constexpr (C == gather) {
    CHORUS_ALGO_SENTENCE(gather, "algo::tree, algo::direct");
  } else {
    CHORUS_ALGO_SENTENCE(scatter, "algo::tree, algo::direct");
  }
}
#undef CHORUS_ALGO_SENTENCE

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

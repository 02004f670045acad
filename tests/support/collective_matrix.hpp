#pragma once
// Every collective x every algorithm that runs it, against the serial reference, on one rank
// of any communicator: what the multi-process tests of each process transport (shared
// memory, UCX on one host, UCX across network namespaces) run on every rank.
#include "checks.hpp"
#include "sanitizers.hpp"

#include <algorithm>
#include <cstdint>
#include <vector>

namespace harness {

/// Runs the matrix on this rank of `comm`; every rank of the group must call it. Counts:
/// empty, one, odd, not divisible by the rank count, and ~100k elements (400 KB of floats);
/// every op family and a 16-bit type; in place and out of place; every root. Pipelined
/// algorithms cut every vector into 24-byte pieces, so pipelining shows up at small counts
/// too; `large_pieces` (bytes) replaces that for the ~100k counts where a transport's
/// per-message cost makes 16,000 pieces per step too slow for a test (TCP: ~10 us each).
/// Under AddressSanitizer those pieces are at least 512 bytes (still ~800 per step, which
/// wraps every ring and slot many times): the 24-byte pieces at the small counts stay.
template <class Comm>
void check_every_collective(Comm& comm, failures& f, std::size_t large_pieces = 24) {
  if constexpr (address_sanitizer) large_pieces = std::max<std::size_t>(large_pieces, 512);
  using chorus::schedule::collective;
  constexpr bool windows = chorus::one_sided_transport<typename Comm::transport_type>;
  auto dynamic_algos = [](collective c) { return harness::dynamic_algos(c, windows); };
  const int ranks = comm.size();
  const std::vector<std::size_t> counts{0, 1, 7, 13 * static_cast<std::size_t>(ranks) + 5, 100003};
  for (const auto& a : dynamic_algos(collective::all_reduce)) {
    for (std::size_t c : counts) {
      chorus::algo::dynamic algo = a;
      if (c > 10000 && algo.id) algo.chunk_bytes = large_pieces;
      check_all_reduce<float, chorus::plus>(comm, f, algo, c, c % 2 == 0);
      check_all_reduce<std::int32_t, chorus::maximum>(comm, f, algo, c, c % 2 == 1);
      check_all_reduce<chorus::half, chorus::average>(comm, f, algo, c, false);
    }
  }
  auto large = [large_pieces](chorus::algo::dynamic a) {
    if (a.id) a.chunk_bytes = large_pieces;
    return a;
  };
  for (const auto& a : dynamic_algos(collective::reduce_scatter)) {
    for (std::size_t b : {std::size_t{0}, std::size_t{3}, std::size_t{20000}}) {
      const auto algo = b > 1000 ? large(a) : a;
      check_reduce_scatter<double, chorus::plus>(comm, f, algo, b, false, b == 3);
      check_reduce_scatter<std::int64_t, chorus::minimum>(comm, f, algo, b, true, false);
    }
  }
  for (const auto& a : dynamic_algos(collective::all_gather)) {
    for (std::size_t b : {std::size_t{0}, std::size_t{5}, std::size_t{30001}}) {
      const auto algo = b > 1000 ? large(a) : a;
      check_all_gather<float>(comm, f, algo, b, false, b == 5);
      check_all_gather<std::uint8_t>(comm, f, algo, b, true, false);
    }
  }
  for (const auto& a : dynamic_algos(collective::broadcast)) {
    for (int root = 0; root < ranks; ++root) {
      check_broadcast<float>(comm, f, large(a), 70001, root, root % 2 == 0);
    }
  }
  for (const auto& a : dynamic_algos(collective::reduce)) {
    for (int root = 0; root < ranks; ++root) {
      check_reduce<float, chorus::plus>(comm, f, large(a), 70001, root, root % 2 == 1);
    }
  }
  for (const auto& a : dynamic_algos(collective::gather)) {
    check_gather<std::int16_t>(comm, f, a, 9001, ranks - 1, false);
    check_scatter<std::int16_t>(comm, f, a, 9001, 0, true);
  }
  for (const auto& a : dynamic_algos(collective::all_to_all)) {
    check_all_to_all<float>(comm, f, a, 4001, false);
    check_all_to_all<std::uint32_t>(comm, f, a, 7, true);
  }
  for (const auto& a : dynamic_algos(collective::barrier)) chorus::barrier(comm, a);
}

/// The collectives the hierarchical algorithm runs, named (small pipeline pieces) and
/// chosen by `automatic`, against the serial reference: the counts and roots of
/// `check_every_collective`, for communicators whose ranks span hosts.
template <class Comm>
void check_hierarchical(Comm& comm, failures& f, std::size_t large_pieces = 24) {
  const int ranks = comm.size();
  const std::vector<std::size_t> counts{0, 1, 7, 13 * static_cast<std::size_t>(ranks) + 5, 100003};
  const std::vector<chorus::algo::dynamic> algos{{chorus::schedule::algorithm::hierarchical, 24},
                                                 {std::nullopt, 0}};
  auto large = [large_pieces](chorus::algo::dynamic a) {
    if (a.id) a.chunk_bytes = large_pieces;
    return a;
  };
  for (const auto& a : algos) {
    for (std::size_t c : counts) {
      const auto algo = c > 10000 ? large(a) : a;
      check_all_reduce<float, chorus::plus>(comm, f, algo, c, c % 2 == 0);
      check_all_reduce<std::int32_t, chorus::maximum>(comm, f, algo, c, c % 2 == 1);
    }
    for (std::size_t b : {std::size_t{0}, std::size_t{3}, std::size_t{20000}}) {
      const auto algo = b > 1000 ? large(a) : a;
      check_reduce_scatter<double, chorus::plus>(comm, f, algo, b, false, b == 3);
      check_reduce_scatter<std::int64_t, chorus::minimum>(comm, f, algo, b, true, false);
      check_all_gather<float>(comm, f, algo, b, false, b == 3);
      check_all_gather<std::uint8_t>(comm, f, algo, b, true, false);
    }
    for (int root = 0; root < ranks; ++root) {
      check_broadcast<float>(comm, f, large(a), 70001, root, root % 2 == 0);
      check_reduce<float, chorus::plus>(comm, f, large(a), 70001, root, root % 2 == 1);
    }
  }
}

/// Large vectors (4 MiB of floats per rank) through the bandwidth algorithms: messages far
/// past every eager threshold, so transports take their rendezvous paths.
template <class Comm>
void check_large_collectives(Comm& comm, failures& f) {
  const std::size_t n = (std::size_t{4} << 20) / sizeof(float);
  const auto p = static_cast<std::size_t>(comm.size());
  std::vector<chorus::algo::dynamic> algos{{chorus::schedule::algorithm::ring},
                                           {chorus::schedule::algorithm::direct},
                                           {std::nullopt, 0}};
  if constexpr (chorus::one_sided_transport<typename Comm::transport_type>) {
    algos.push_back({chorus::schedule::algorithm::one_sided});
  }
  for (const chorus::algo::dynamic& a : algos) {
    check_all_reduce<float, chorus::plus>(comm, f, a, n + 3, false);
    check_all_gather<float>(comm, f, a, n / p, false, false);
    check_reduce_scatter<float, chorus::plus>(comm, f, a, n / p, false, false);
  }
}

}  // namespace harness

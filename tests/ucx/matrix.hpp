#pragma once
// The collective sweeps of the UCX tests, compiled once (matrix.cpp) for both the Catch2
// test and the per-namespace rank program: instantiating every collective x type x op
// is the largest part of their build time.
#include "support/harness.hpp"

#include <chorus/transport/ucx.hpp>

#include <span>

namespace ucx_tests {

using ucx_communicator = chorus::communicator<chorus::ucx_transport>;

/// `check_every_collective` (16 KiB pipeline pieces at the 100k counts, see
/// support/collective_matrix.hpp) and `check_large_collectives` on this rank.
void check_collectives(ucx_communicator& comm, harness::failures& f);

/// Groups across hosts, on this rank of `comm`, whose ranks sit on hosts `expected_hosts`
/// (the launcher's layout; empty: not checked): the hosts the transport found; a split by
/// parity running every collective; groups within and across hosts (a mesh when every host
/// has as many ranks); the hierarchical algorithm on the world and on the parity groups;
/// and a split with inconsistent arguments failing with `mismatch` everywhere.
void check_groups(ucx_communicator& comm, std::span<const int> expected_hosts,
                  harness::failures& f);

}  // namespace ucx_tests

#pragma once
// The collective sweep of the UCX tests, compiled once (matrix.cpp) for both the Catch2
// test and the per-namespace rank program: instantiating every collective x type x op
// is the largest part of their build time.
#include "support/harness.hpp"

#include <chorus/transport/ucx.hpp>

namespace ucx_tests {

/// `check_every_collective` (16 KiB pipeline pieces at the 100k counts, see
/// support/collective_matrix.hpp) and `check_large_collectives` on this rank.
void check_collectives(chorus::communicator<chorus::ucx_transport>& comm, harness::failures& f);

}  // namespace ucx_tests

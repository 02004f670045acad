/// \file
/// Exhaustive simulation of the double binary tree, recursive doubling, halving-doubling
/// and direct families: every collective each supports, P = 1..64, both aliasing modes,
/// roots, counts and (where it matters) chunk sizes (the matrix is in sweep.hpp).
#include "sweep.hpp"

TEST_CASE("double binary tree schedules are correct for every P, count, chunk and aliasing",
          "[schedule][sweep][double_binary_tree]") {
  sched_test::sweep_algorithm(chorus::schedule::algorithm::double_binary_tree);
}

TEST_CASE("recursive doubling schedules are correct for every P, root, count and aliasing",
          "[schedule][sweep][recursive_doubling]") {
  sched_test::sweep_algorithm(chorus::schedule::algorithm::recursive_doubling);
}

TEST_CASE("halving-doubling schedules are correct for every P, root, count and aliasing",
          "[schedule][sweep][halving_doubling]") {
  sched_test::sweep_algorithm(chorus::schedule::algorithm::halving_doubling);
}

TEST_CASE("direct schedules are correct for every P, root, count and aliasing",
          "[schedule][sweep][direct]") {
  sched_test::sweep_algorithm(chorus::schedule::algorithm::direct);
}

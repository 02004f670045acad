/// \file
/// Exhaustive simulation of the ring and tree families: every collective each supports,
/// P = 1..64, both aliasing modes, roots, counts and chunk sizes (the matrix is in
/// sweep.hpp).
#include "sweep.hpp"

TEST_CASE("ring schedules are correct for every P, root, count, chunk and aliasing",
          "[schedule][sweep][ring]") {
  sched_test::sweep_algorithm(chorus::schedule::algorithm::ring);
}

TEST_CASE("tree schedules are correct for every P, root, count, chunk and aliasing",
          "[schedule][sweep][tree]") {
  sched_test::sweep_algorithm(chorus::schedule::algorithm::tree);
}

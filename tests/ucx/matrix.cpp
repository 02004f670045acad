#include "matrix.hpp"

#include "support/collective_matrix.hpp"

#include <cstddef>

namespace ucx_tests {

void check_collectives(chorus::communicator<chorus::ucx_transport>& comm, harness::failures& f) {
  harness::check_every_collective(comm, f, std::size_t{16} << 10);
  harness::check_large_collectives(comm, f);
}

}  // namespace ucx_tests

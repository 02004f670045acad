// chorus::compiled without UCX (built when UCX was not found): asking for it is an error
// that says how to get it.
#include "impl.hpp"

namespace chorus::inline v0::compiled::detail {

std::unique_ptr<communicator::impl> make_ucx(bootstrap::world) {
  throw error(errc::invalid_argument,
              "chorus::compiled: this library was built without UCX (libucx-dev was not "
              "found when chorus was configured); use transport_kind::shm, or install UCX "
              "and rebuild chorus::compiled");
}

}  // namespace chorus::inline v0::compiled::detail

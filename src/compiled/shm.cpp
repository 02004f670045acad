// chorus::compiled over shared memory: every collective of compiled mode, instantiated once
// for shm_transport.
#include "impl.hpp"

namespace chorus::inline v0::compiled::detail {

std::unique_ptr<communicator::impl> make_shm(bootstrap::world world) {
  return std::make_unique<impl_of<shm_transport>>(std::move(world));
}

}  // namespace chorus::inline v0::compiled::detail

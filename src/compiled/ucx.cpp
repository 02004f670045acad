// chorus::compiled over UCX (built when the ucx component is): every collective of
// compiled mode, instantiated once for ucx_transport.
#include <chorus/transport/ucx.hpp>

#include "impl.hpp"

namespace chorus::inline v0::compiled::detail {

std::unique_ptr<communicator::impl> make_ucx(bootstrap::world world) {
  return std::make_unique<impl_of<ucx_transport>>(std::move(world));
}

}  // namespace chorus::inline v0::compiled::detail

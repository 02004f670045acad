// chorus::compiled::communicator: from_env, moves, and the calls' one entry point.
#include "impl.hpp"

namespace chorus::inline v0::compiled {

communicator communicator::from_env(transport_kind transport) {
  bootstrap::world world = bootstrap::from_env();
  std::unique_ptr<impl> p = transport == transport_kind::ucx ? detail::make_ucx(std::move(world))
                                                             : detail::make_shm(std::move(world));
  return communicator(p.release());
}

communicator& communicator::operator=(communicator&& other) noexcept {
  if (this != &other) {
    delete impl_;
    impl_ = other.impl_;
    other.impl_ = nullptr;
  }
  return *this;
}

communicator::~communicator() { delete impl_; }

communicator::impl& communicator::get() const {
  if (impl_ == nullptr) {
    throw error(errc::invalid_argument,
                "chorus::compiled: this communicator was moved from; use the one it was "
                "moved to");
  }
  return *impl_;
}

int communicator::rank() const { return get().rank(); }
int communicator::size() const { return get().size(); }
transport_kind communicator::transport() const { return get().transport(); }

void detail::run(communicator& comm, const call& c) { comm.get().run(c); }

}  // namespace chorus::inline v0::compiled

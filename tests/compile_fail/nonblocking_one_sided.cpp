// The one-sided path keeps one staging window per communicator: no nonblocking form.
#include <chorus/chorus.hpp>

#include <vector>

void call(chorus::communicator<chorus::shm_transport>& comm) {
  std::vector<float> v(64);
#ifdef CHORUS_COMPILE_FAIL_CONTROL
  chorus::iall_reduce(comm, v, chorus::plus{}, chorus::algo::ring{}).wait();
#else
  chorus::iall_reduce(comm, v, chorus::plus{}, chorus::algo::one_sided{}).wait();
#endif
}

int main() {}

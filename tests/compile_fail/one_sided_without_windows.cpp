// algo::one_sided reads peers' windows: on a transport without them (inproc) it is a compile
// error naming the transports that have them, not a silent two-sided fallback.
#include <chorus/chorus.hpp>

void call(chorus::inproc_communicator& comm) {
  std::vector<float> v(8);
#ifdef CHORUS_COMPILE_FAIL_CONTROL
  chorus::all_reduce(comm, v, chorus::plus{}, chorus::algo::direct{});
#else
  chorus::all_reduce(comm, v, chorus::plus{}, chorus::algo::one_sided{});
#endif
}

int main() {}

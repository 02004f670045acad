// An algorithm that cannot run a collective is a compile error, never a silent fallback.
#include <chorus/chorus.hpp>

void call(chorus::inproc_communicator& comm) {
  std::vector<float> in(8), out(8);
#ifdef CHORUS_COMPILE_FAIL_CONTROL
  chorus::all_to_all(comm, in, out, chorus::algo::direct{});
#else
  chorus::all_to_all(comm, in, out, chorus::algo::ring{});
#endif
}

int main() {}

// The tree cannot reduce-scatter: the sentence lists the algorithms that can.
#include <chorus/chorus.hpp>

void call(chorus::inproc_communicator& comm) {
  std::vector<double> in(8), out(2);
#ifdef CHORUS_COMPILE_FAIL_CONTROL
  chorus::reduce_scatter(comm, in, out, chorus::plus{}, chorus::algo::halving_doubling{});
#else
  chorus::reduce_scatter(comm, in, out, chorus::plus{}, chorus::algo::tree{});
#endif
}

int main() {}

// algo::native on a stream-ordered transport without collectives of its own is a compile
// error, not a run-time surprise.
#include "../stream/fake_stream.hpp"

#include <chorus/chorus.hpp>

void call(chorus::communicator<fake::transport>& comm, fake::stream* s) {
  std::vector<float> v(8);
#ifdef CHORUS_COMPILE_FAIL_CONTROL
  chorus::all_reduce(comm, v, chorus::plus{}, s, chorus::algo::ring{});
#else
  chorus::all_reduce(comm, v, chorus::plus{}, s, chorus::algo::native{});
#endif
}

int main() {}

// Compressed collectives have no nonblocking form yet: a sentence, not a silent block.
#include <chorus/chorus.hpp>
#include <chorus/compress/compress.hpp>

#include <vector>

void call(chorus::inproc_communicator& comm) {
  std::vector<float> v(64);
#ifdef CHORUS_COMPILE_FAIL_CONTROL
  chorus::iall_reduce(comm, v, chorus::plus{}).wait();
#else
  chorus::iall_reduce(comm, v, chorus::plus{}, chorus::compress::top_k{.ratio = 0.1}).wait();
#endif
}

int main() {}

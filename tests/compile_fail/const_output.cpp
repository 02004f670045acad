// Writing a result into a read-only buffer is rejected with a sentence.
#include <chorus/chorus.hpp>

void call(chorus::inproc_communicator& comm) {
  std::vector<float> in(4);
#ifdef CHORUS_COMPILE_FAIL_CONTROL
  std::vector<float> out(4);
#else
  const std::vector<float> out(4);
#endif
  chorus::all_reduce(comm, in, out, chorus::plus{});
}

int main() {}

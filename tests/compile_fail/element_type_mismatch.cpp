// Input and output of different element types are rejected with a sentence.
#include <chorus/chorus.hpp>

void call(chorus::inproc_communicator& comm) {
  std::vector<float> in(4);
#ifdef CHORUS_COMPILE_FAIL_CONTROL
  std::vector<float> out(8);
#else
  std::vector<double> out(8);
#endif
  chorus::all_gather(comm, in, out);
}

int main() {}

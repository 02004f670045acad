// A user op that cannot combine two elements of the buffer's type is rejected with a sentence.
#include <chorus/chorus.hpp>

#include <string>

void call(chorus::inproc_communicator& comm) {
  std::vector<int> v(4);
#ifdef CHORUS_COMPILE_FAIL_CONTROL
  chorus::all_reduce(comm, v, [](int a, int b) { return a + b; });
#else
  chorus::all_reduce(comm, v, [](const std::string& a, const std::string& b) { return a + b; });
#endif
}

int main() {}

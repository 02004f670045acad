// Elements that own memory cannot be moved as bytes: one sentence says so.
#include <chorus/chorus.hpp>

#include <string>
#include <vector>

void call(chorus::inproc_communicator& comm) {
#ifdef CHORUS_COMPILE_FAIL_CONTROL
  std::vector<char> names(16);
#else
  std::vector<std::string> names(4);
#endif
  chorus::broadcast(comm, names, 0);
}

int main() {}

// Compiled mode moves the built-in element types and bytes: a user struct is a compile
// error with a sentence that points to the header-only API.
#include <chorus/compiled.hpp>

#include <vector>

struct particle {
  float x, y, z;
};

void call(chorus::compiled::communicator& comm) {
#ifdef CHORUS_COMPILE_FAIL_CONTROL
  std::vector<float> in(3), out(3);
#else
  std::vector<particle> in(1), out(1);
#endif
  chorus::compiled::broadcast(comm, in, out, 0);
}

int main() {}

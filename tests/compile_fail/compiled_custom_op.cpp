// Compiled mode reduces with the built-in ops only: a lambda is a compile error with a
// sentence that points to the header-only API.
#include <chorus/compiled.hpp>

#include <vector>

void call(chorus::compiled::communicator& comm) {
  std::vector<float> v(4);
#ifdef CHORUS_COMPILE_FAIL_CONTROL
  chorus::compiled::all_reduce(comm, v, chorus::plus{});
#else
  chorus::compiled::all_reduce(comm, v, [](float a, float b) { return a + b; });
#endif
}

int main() {}

// A built-in op on a user type without the operator it needs: one sentence naming the fix.
#include <chorus/chorus.hpp>

#include <vector>

struct loc {
  float value;
  int index;
};

void call(chorus::inproc_communicator& comm) {
  std::vector<loc> v(8);
#ifdef CHORUS_COMPILE_FAIL_CONTROL
  chorus::all_reduce(comm, v, [](loc a, loc b) { return b.value > a.value ? b : a; });
#else
  chorus::all_reduce(comm, v, chorus::plus{});
#endif
}

int main() {}

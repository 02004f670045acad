// A bitwise op on floating-point data is a compile error with a sentence.
#include <chorus/chorus.hpp>

void call(chorus::inproc_communicator& comm) {
#ifdef CHORUS_COMPILE_FAIL_CONTROL
  std::vector<std::uint32_t> v(4);
#else
  std::vector<float> v(4);
#endif
  chorus::all_reduce(comm, v, chorus::bit_xor{});
}

int main() {}

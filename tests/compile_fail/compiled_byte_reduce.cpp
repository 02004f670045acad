// Compiled mode moves bytes but does not reduce them: summing std::byte is a compile error
// with a sentence that names the integer types to use.
#include <chorus/compiled.hpp>

#include <cstddef>
#include <cstdint>
#include <vector>

void call(chorus::compiled::communicator& comm) {
#ifdef CHORUS_COMPILE_FAIL_CONTROL
  std::vector<std::uint8_t> v(4);
#else
  std::vector<std::byte> v(4);
#endif
  chorus::compiled::all_reduce(comm, v, chorus::plus{});
}

int main() {}

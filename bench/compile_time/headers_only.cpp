// Compile-time benchmark: the cost of `#include <chorus/chorus.hpp>` alone, with no
// collective instantiated. Compiled by measure.sh, never run.
#include <chorus/chorus.hpp>

#include <cstdio>

int main() {
  std::puts("chorus " CHORUS_VERSION_STRING);
  return 0;
}

// Compressed payloads can be summed or averaged, not maximised.
#include <chorus/compress/compress.hpp>

void call(chorus::inproc_communicator& comm, chorus::compress::ledger& book) {
  std::vector<float> g(64);
#ifdef CHORUS_COMPILE_FAIL_CONTROL
  chorus::all_reduce(comm, g, chorus::average{}, chorus::compress::top_k{}, book);
#else
  chorus::all_reduce(comm, g, chorus::maximum{}, chorus::compress::top_k{}, book);
#endif
}

int main() {}

// A stochastic compressor under require(deterministic) is a compile error with a sentence.
#include <chorus/compress/compress.hpp>

void call(chorus::inproc_communicator& comm, chorus::compress::ledger& book) {
  std::vector<double> g(64);
#ifdef CHORUS_COMPILE_FAIL_CONTROL
  chorus::all_reduce(comm, g, chorus::average{}, chorus::compress::scaled_sign{}, book,
                     chorus::compress::require(chorus::compress::deterministic));
#else
  chorus::all_reduce(comm, g, chorus::average{}, chorus::compress::qsgd{}, book,
                     chorus::compress::require(chorus::compress::deterministic));
#endif
}

int main() {}

// A non-summable compressor on the sum path (payloads added without decoding) is a compile
// error with a sentence.
#include <chorus/compress/compress.hpp>

void call(chorus::inproc_communicator& comm, chorus::compress::ledger& book) {
  std::vector<float> g(64);
#ifdef CHORUS_COMPILE_FAIL_CONTROL
  chorus::all_reduce(comm, g, chorus::plus{}, chorus::compress::cast<chorus::half>{}, book,
                     chorus::compress::sum_path{});
#else
  chorus::all_reduce(comm, g, chorus::plus{}, chorus::compress::top_k{}, book,
                     chorus::compress::sum_path{});
#endif
}

int main() {}

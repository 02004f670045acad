// An algorithm tag on a compressed collective must run the collectives its path moves the
// payloads with: two_stage moves them with all_to_all and all_gather, which the ring cannot
// run (direct can).
#include <chorus/compress/compress.hpp>

void call(chorus::inproc_communicator& comm) {
  std::vector<float> g(64);
#ifdef CHORUS_COMPILE_FAIL_CONTROL
  chorus::all_reduce(comm, g, chorus::plus{}, chorus::compress::top_k{},
                     chorus::compress::two_stage{}, chorus::algo::direct{});
#else
  chorus::all_reduce(comm, g, chorus::plus{}, chorus::compress::top_k{},
                     chorus::compress::two_stage{}, chorus::algo::ring{});
#endif
}

int main() {}

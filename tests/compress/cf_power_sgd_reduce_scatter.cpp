// PowerSGD approximates whole matrices: it has no reduce-scatter.
#include <chorus/compress/compress.hpp>

void call(chorus::inproc_communicator& comm, chorus::compress::ledger& book,
          chorus::compress::power_sgd_state& q) {
  std::vector<float> g(64), shard(16);
#ifdef CHORUS_COMPILE_FAIL_CONTROL
  chorus::all_reduce(comm, g, chorus::plus{},
                     chorus::compress::power_sgd{.rank = 1, .rows = 8, .state = &q}, book);
#else
  chorus::reduce_scatter(comm, g, shard, chorus::plus{},
                         chorus::compress::power_sgd{.rank = 1, .rows = 8, .state = &q}, book);
#endif
}

int main() {}

/// \file
/// mesh_groups: a 2 x 2 mesh of 4 ranks (threads, in-process transport) and one all-reduce
/// along each axis -- the example of docs/groups.md. Rank r sits at (dp, tp) = (r / 2, r % 2);
/// summing ranks along "dp" adds r and r +- 2, along "tp" r and r +- 1. Prints each rank's
/// sums, in rank order.
#include <chorus/chorus.hpp>

#include <cstdio>
#include <vector>

int main() {
  std::vector<int> dp_sum(4), tp_sum(4);
  chorus::inproc::run(4, [&](chorus::inproc_communicator& comm) {
    chorus::mesh m(comm, {{"dp", 2}, {"tp", 2}});
    std::vector<int> dp{comm.rank()}, tp{comm.rank()};
    chorus::all_reduce(m["dp"], dp, chorus::plus{});
    chorus::all_reduce(m["tp"], tp, chorus::plus{});
    dp_sum[comm.rank()] = dp[0];
    tp_sum[comm.rank()] = tp[0];
  });
  for (int r = 0; r < 4; ++r)
    std::printf("rank %d: dp sum %d, tp sum %d\n", r, dp_sum[r], tp_sum[r]);
  return dp_sum == std::vector<int>{2, 4, 2, 4} && tp_sum == std::vector<int>{1, 1, 5, 5} ? 0 : 1;
}

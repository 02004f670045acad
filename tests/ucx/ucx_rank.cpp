// One rank of a UCX job started by a launcher (tests/ucx/netns.sh starts one per network
// namespace; chorusrun, mpirun or srun work too): bootstrap::from_env, ucx_transport, then
//
//   chorus-ucx-rank matrix   every collective x algorithm against the reference, and large
//                            vectors; prints "rank R: ok" and exits 0, or the failures (1)
//   chorus-ucx-rank fault    all-reduces forever (prints "rank R: running" once the first
//                            has completed), for a test that kills one rank: survivors
//                            print their chorus::error and exit 2
//   chorus-ucx-rank groups   groups and hierarchical collectives across hosts
//                            (ucx_tests::check_groups), the launcher's layout read from
//                            CHORUS_TEST_HOSTS ("0,0,1,1"); "rank R: ok" and exit 0
//   chorus-ucx-rank group-fault
//                            like fault, in the group of the ranks of this rank's parity
//
// Any chorus::error is printed as "rank R: chorus::error[<code>]: <message>", exit 2.
#include "matrix.hpp"

#include <chorus/chorus.hpp>
#include <chorus/transport/ucx.hpp>

#include <cstdio>
#include <cstdlib>
#include <exception>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

int main(int argc, char** argv) {
  const std::string_view mode = argc > 1 ? argv[1] : "";
  if (mode != "matrix" && mode != "fault" && mode != "groups" && mode != "group-fault") {
    std::fprintf(stderr, "usage: chorus-ucx-rank matrix|fault|groups|group-fault\n");
    return 64;
  }
  int rank = -1;
  try {
    const chorus::bootstrap::world world = chorus::bootstrap::from_env();
    rank = world.rank;
    chorus::communicator<chorus::ucx_transport> comm{chorus::ucx_transport{world}};
    if (mode == "fault") {
      std::vector<float> v(1 << 16, 1.0f);
      chorus::all_reduce(comm, v, chorus::plus{});
      std::printf("rank %d: running\n", rank);
      std::fflush(stdout);
      for (;;) chorus::all_reduce(comm, v, chorus::plus{}, chorus::algo::ring{});
    }
    if (mode == "group-fault") {
      auto g = comm.split(rank % 2);
      std::vector<float> v(1 << 16, 1.0f);
      chorus::all_reduce(*g, v, chorus::plus{});
      std::printf("rank %d: running\n", rank);
      std::fflush(stdout);
      for (;;) chorus::all_reduce(*g, v, chorus::plus{}, chorus::algo::ring{});
    }
    harness::failures f;
    if (mode == "groups") {
      std::vector<int> hosts;
      if (const char* h = std::getenv("CHORUS_TEST_HOSTS")) {
        std::istringstream in(h);
        for (std::string item; std::getline(in, item, ',');) hosts.push_back(std::stoi(item));
      }
      ucx_tests::check_groups(comm, hosts, f);
    } else {
      ucx_tests::check_collectives(comm, f);
    }
    chorus::barrier(comm);  // rank 0 serves the store: nobody leaves before everyone is done
    if (f.count() != 0) {
      std::printf("rank %d: %s\n", rank, f.report().c_str());
      return 1;
    }
    std::printf("rank %d: ok\n", rank);
    return 0;
  } catch (const chorus::error& e) {
    std::printf("rank %d: chorus::error[%s]: %s\n", rank, e.code().message().c_str(), e.what());
    return 2;
  } catch (const std::exception& e) {
    std::printf("rank %d: exception: %s\n", rank, e.what());
    return 3;
  }
}

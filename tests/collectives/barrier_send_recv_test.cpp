// barrier (every algorithm) and point-to-point send/recv.
#include "../support/harness.hpp"

#include <atomic>
#include <chrono>
#include <thread>

using namespace harness;
using chorus::schedule::collective;

TEST_CASE("barrier: no rank leaves before every rank entered, every algorithm") {
  for (int ranks : rank_counts) {
    constexpr int rounds = 12;
    std::vector<std::atomic<int>> arrived(rounds * 8);
    failures f;
    run_ranks(ranks, [&](chorus::inproc_communicator& comm) {
      int round = 0;
      for_each_algo<collective::barrier>([&](auto a) {
        for (int k = 0; k < rounds; ++k, ++round) {
          // stagger arrivals so that a barrier that lets ranks through early is caught
          if ((comm.rank() + k) % ranks == 0)
            std::this_thread::sleep_for(std::chrono::milliseconds(2));
          arrived[static_cast<std::size_t>(round)].fetch_add(1);
          chorus::barrier(comm, a);
          const int seen = arrived[static_cast<std::size_t>(round)].load();
          if (seen != ranks) {
            f.add(label<std::uint8_t, chorus::plus>("barrier", a, 0, false, comm.rank()) +
                  ": left while only " + std::to_string(seen) + " of " + std::to_string(ranks) +
                  " ranks had arrived");
          }
        }
      });
    });
    INFO("ranks = " << ranks << "\n" << f.report());
    REQUIRE(f.count() == 0);
  }
}

TEST_CASE("send/recv: ring exchange, FIFO per tag, tags kept apart, large messages") {
  failures f;
  run_ranks(5, [&](chorus::inproc_communicator& comm) {
    const int p = comm.size();
    const int r = comm.rank();
    const int right = (r + 1) % p;
    const int left = (r + p - 1) % p;
    // Three messages on tag 1 and one on tag 2, received tag 2 first: tags are matched
    // independently and messages of one tag keep their order.
    if (r % 2 == 0) {
      for (int m = 0; m < 3; ++m) chorus::send(comm, std::vector<int>{r, m}, right, 1);
      chorus::send(comm, std::vector<int>{r, 99}, right, 2);
    }
    std::vector<int> got(2);
    if (left % 2 == 0 && left != r) {
      chorus::recv(comm, got, left, 2);
      if (got != std::vector<int>{left, 99}) f.add("tag 2 message wrong");
      for (int m = 0; m < 3; ++m) {
        chorus::recv(comm, got, left, 1);
        if (got != std::vector<int>{left, m}) f.add("tag 1 message out of order");
      }
    }
    // A collective between a send and its receive does not take the user message (small,
    // so the send completes at once, as MPI's eager sends do).
    if (r == 0) chorus::send(comm, std::vector<int>{42, 43}, 1, 7);
    std::vector<int> one{1};
    chorus::all_reduce(comm, one, chorus::plus{});
    if (one[0] != p) f.add("all_reduce between send and recv is wrong");
    if (r == 1) {
      chorus::recv(comm, got, 0, 7);
      if (got != std::vector<int>{42, 43}) f.add("user message taken by the collective");
    }
    // Large messages (above the eager limit) use the rendezvous path.
    std::vector<double> big(300000, r + 0.5);
    if (r == 2) chorus::send(comm, big, 3, 5);
    if (r == 3) {
      chorus::recv(comm, big, 2, 5);
      if (big.front() != 2.5 || big.back() != 2.5) f.add("large message wrong");
    }
  });
  INFO(f.report());
  REQUIRE(f.count() == 0);
}

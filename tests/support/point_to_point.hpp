#pragma once
// The point-to-point semantics every transport must keep, checked on 3 ranks of any
// communicator: FIFO per (source, tag), messages that arrive before their receive is posted,
// a later tag received first, a zero-byte message, and a 3 MiB message (past every eager
// limit and ring size).
#include "harness.hpp"

#include <chrono>
#include <string>
#include <thread>
#include <vector>

namespace harness {

template <class Comm>
void check_point_to_point(Comm& comm, failures& f) {
  const int r = comm.rank();
  const std::size_t big_count = (3u << 20) / 8 + 13;
  if (r == 0) {
    // sent before the receiver posts anything: must be buffered and matched in order
    for (int m = 0; m < 5; ++m) chorus::send(comm, std::vector<int>{m, 1}, 1, 1);
    chorus::send(comm, std::vector<int>{7, 2}, 1, 2);
    chorus::send(comm, std::vector<int>{}, 1, 3);
    std::vector<double> big(big_count);
    for (std::size_t i = 0; i < big.size(); ++i) big[i] = static_cast<double>(i) * 0.5;
    chorus::send(comm, big, 2, 9);
  } else if (r == 1) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    std::vector<int> got(2);
    chorus::recv(comm, got, 0, 2);  // the later tag first
    if (got != std::vector<int>{7, 2}) f.add("tag 2 wrong");
    for (int m = 0; m < 5; ++m) {
      chorus::recv(comm, got, 0, 1);
      if (got != std::vector<int>{m, 1}) f.add("tag 1 out of order at " + std::to_string(m));
    }
    std::vector<int> none;
    chorus::recv(comm, none, 0, 3);
  } else if (r == 2) {
    std::vector<double> big(big_count);
    chorus::recv(comm, big, 0, 9);
    for (std::size_t i = 0; i < big.size(); ++i) {
      if (big[i] != static_cast<double>(i) * 0.5) {
        f.add("large message wrong at " + std::to_string(i));
        break;
      }
    }
  }
  chorus::barrier(comm);
}

}  // namespace harness

#include "matrix.hpp"

#include "support/collective_matrix.hpp"

#include <chorus/group/mesh.hpp>
#include <chorus/group/split.hpp>

#include <algorithm>
#include <cstddef>
#include <string>
#include <vector>

namespace ucx_tests {

void check_collectives(ucx_communicator& comm, harness::failures& f) {
  harness::check_every_collective(comm, f, std::size_t{16} << 10);
  harness::check_large_collectives(comm, f);
}

namespace {

std::string list(std::span<const int> v) {
  std::string s;
  for (int x : v) s += (s.empty() ? "" : ",") + std::to_string(x);
  return s;
}

/// Every rank's value summed over the group `g` of `comm` through an all-reduce on `g`,
/// checked against the world ranks it holds.
void check_group_sum(ucx_communicator& comm, ucx_communicator& g, const std::string& what,
                     harness::failures& f) {
  std::vector<int> world(static_cast<std::size_t>(g.size()));
  const int mine = comm.rank();
  chorus::all_gather(g, std::span<const int>(&mine, 1), world);
  double want = 0;
  for (int w : world) want += w;
  std::vector<double> v(10007, static_cast<double>(comm.rank()));
  chorus::all_reduce(g, v, chorus::plus{}, chorus::algo::ring{});
  if (v.front() != want || v.back() != want) {
    f.add(what + ": sum " + std::to_string(v.front()) + ", want " + std::to_string(want));
  }
}

}  // namespace

void check_groups(ucx_communicator& comm, std::span<const int> expected_hosts,
                  harness::failures& f) {
  const std::vector<int> hosts(comm.hosts().begin(), comm.hosts().end());
  if (!expected_hosts.empty() && !std::ranges::equal(hosts, expected_hosts)) {
    f.add("the transport found hosts " + list(hosts) + ", the launcher placed " +
          list(expected_hosts));
  }
  const int host_count = hosts.empty() ? 1 : *std::ranges::max_element(hosts) + 1;
  const int my_host = hosts.empty() ? 0 : hosts[static_cast<std::size_t>(comm.rank())];

  // The world: every hierarchical collective, named and automatic.
  harness::check_hierarchical(comm, f, std::size_t{16} << 10);

  // Groups by parity: across hosts wherever ranks alternate.
  auto parity = comm.split(comm.rank() % 2, -comm.rank());
  if (!parity || parity->size() != (comm.size() + 1 - comm.rank() % 2) / 2) {
    f.add("split by parity: wrong group");
    return;
  }
  harness::check_every_collective(*parity, f, std::size_t{16} << 10);
  harness::check_hierarchical(*parity, f, std::size_t{16} << 10);
  check_group_sum(comm, *parity, "parity group", f);

  // A group per host and a group per local rank across hosts, by split ...
  auto local = comm.split(my_host, comm.rank());
  check_group_sum(comm, *local, "host group", f);
  if (local->hosts().size() != static_cast<std::size_t>(local->size()) ||
      std::ranges::count(local->hosts(), 0) != local->size()) {
    f.add("a host's group spans hosts " + list(local->hosts()));
  }
  auto across = comm.split(local->rank(), comm.rank());
  check_group_sum(comm, *across, "cross-host group", f);
  harness::check_hierarchical(*across, f, std::size_t{16} << 10);

  // ... and as mesh axes, when every host has as many ranks and they are numbered by host.
  const bool by_host = std::ranges::is_sorted(hosts);
  const bool uniform = comm.size() % host_count == 0 &&
                       std::ranges::count(hosts, my_host) == comm.size() / host_count;
  if (by_host && uniform) {
    chorus::mesh m(comm, {{"host", host_count}, {"local", comm.size() / host_count}});
    check_group_sum(comm, m["local"], "mesh axis local", f);
    check_group_sum(comm, m["host"], "mesh axis host", f);
    if (m.coordinate("host") != my_host) f.add("mesh: host coordinate");
    if (!m.within_host("local") || (host_count > 1 && m.within_host("host"))) {
      f.add("mesh: within_host is wrong for the local or host axis");
    }
  }

  // Inconsistent arguments: rank 0 asks for a subgroup, the others split.
  try {
    const int first = 0;
    if (comm.rank() == 0) {
      (void)comm.subgroup(std::span<const int>(&first, 1));
    } else {
      (void)comm.split(0);
    }
    f.add("split beside subgroup did not fail");
  } catch (const chorus::error& e) {
    if (e.value() != chorus::errc::mismatch)
      f.add(std::string("split beside subgroup: ") + e.what());
  }
  chorus::barrier(comm);
}

}  // namespace ucx_tests

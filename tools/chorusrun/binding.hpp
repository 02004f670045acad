#pragma once
// chorusrun's --map-by and --bind-to: where each rank runs, from the machine's topology as
// hwloc sees it, within the CPUs chorusrun itself may use (its cgroup and its affinity:
// under `taskset -c 2-5 chorusrun ...` the ranks are bound inside CPUs 2-5).
//
//   --map-by core|socket|numa   the order ranks take the cores in: core fills the cores in
//                               hwloc's logical order (consecutive ranks share a socket);
//                               socket and numa deal the cores round-robin over the sockets
//                               or NUMA nodes (consecutive ranks on different ones)
//   --bind-to none|hwthread|core|socket|numa
//                               the CPUs rank r may run on: nothing set (none: the default,
//                               as torchrun), or the hardware thread, the core, the socket or
//                               the NUMA node of the core it was mapped to
//
// With hwthread or core binding every rank needs a thread or core of its own: more ranks
// than that is an error naming both counts. Socket and NUMA binding wrap around (ranks share
// the socket's cores). Without hwloc (built without libhwloc-dev) only --bind-to none works.
#include <sched.h>

#include <cstdlib>
#include <stdexcept>
#include <string>
#include <vector>

#if CHORUSRUN_HWLOC
#include <hwloc.h>
#include <hwloc/glibc-sched.h>
#endif

namespace chorusrun {

enum class map_by { core, socket, numa };
enum class bind_to { none, hwthread, core, socket, numa };

/// One rank's CPUs: `mask` for sched_setaffinity, `text` ("cores 2-3 (socket 0)") for
/// --report-bindings.
struct binding {
  cpu_set_t mask{};
  std::string text;
};

#if CHORUSRUN_HWLOC

namespace detail {

class topology {
 public:
  topology() {
    if (hwloc_topology_init(&t_) != 0 || hwloc_topology_load(t_) != 0) {
      throw std::runtime_error("--bind-to: hwloc could not read this machine's topology");
    }
  }
  topology(const topology&) = delete;
  topology& operator=(const topology&) = delete;
  ~topology() { hwloc_topology_destroy(t_); }
  [[nodiscard]] hwloc_topology_t get() const { return t_; }

 private:
  hwloc_topology_t t_{};
};

/// An hwloc bitmap, freed on destruction.
class bitmap {
 public:
  explicit bitmap(hwloc_bitmap_t b) : b_(b) {
    if (b_ == nullptr) throw std::runtime_error("--bind-to: out of memory");
  }
  bitmap(const bitmap&) = delete;
  bitmap& operator=(const bitmap&) = delete;
  ~bitmap() { hwloc_bitmap_free(b_); }
  [[nodiscard]] hwloc_bitmap_t get() const { return b_; }

 private:
  hwloc_bitmap_t b_;
};

inline std::string cpu_list(hwloc_const_bitmap_t set) {
  char* text = nullptr;
  if (hwloc_bitmap_list_asprintf(&text, set) < 0 || text == nullptr) return "?";
  std::string out(text);
  std::free(text);
  return out;
}

/// The NUMA node whose CPUs hold `obj`'s first CPU, or nullptr.
inline hwloc_obj_t numa_of(hwloc_topology_t t, hwloc_obj_t obj) {
  const int first = hwloc_bitmap_first(obj->cpuset);
  const int n = hwloc_get_nbobjs_by_type(t, HWLOC_OBJ_NUMANODE);
  for (int i = 0; i < n; ++i) {
    hwloc_obj_t node = hwloc_get_obj_by_type(t, HWLOC_OBJ_NUMANODE, static_cast<unsigned>(i));
    if (node->cpuset != nullptr && hwloc_bitmap_isset(node->cpuset, static_cast<unsigned>(first))) {
      return node;
    }
  }
  return nullptr;
}

}  // namespace detail

/// The bindings of ranks 0..np-1, or an empty vector for --bind-to none. Throws
/// std::runtime_error with the message chorusrun prints.
inline std::vector<binding> plan_bindings(int np, map_by map, bind_to bind) {
  if (bind == bind_to::none) return {};
  detail::topology topo;
  hwloc_topology_t t = topo.get();
  // The units ranks are placed on: hardware threads for hwthread binding, else cores.
  // Only those this process may run on: the cgroup's CPUs, and chorusrun's own affinity
  // (taskset, or a binding from an outer launcher), which the ranks' bindings never leave.
  const hwloc_obj_type_t unit = bind == bind_to::hwthread ? HWLOC_OBJ_PU : HWLOC_OBJ_CORE;
  detail::bitmap usable(hwloc_bitmap_dup(hwloc_topology_get_allowed_cpuset(t)));
  detail::bitmap mine(hwloc_bitmap_alloc());
  if (hwloc_get_cpubind(t, mine.get(), HWLOC_CPUBIND_PROCESS) == 0) {
    hwloc_bitmap_and(usable.get(), usable.get(), mine.get());
  }
  std::vector<hwloc_obj_t> candidates;
  for (int i = 0, n = hwloc_get_nbobjs_by_type(t, unit); i < n; ++i) {
    hwloc_obj_t u = hwloc_get_obj_by_type(t, unit, static_cast<unsigned>(i));
    if (hwloc_bitmap_intersects(u->cpuset, usable.get())) candidates.push_back(u);
  }
  const int units = static_cast<int>(candidates.size());
  if (units == 0) throw std::runtime_error("--bind-to: hwloc found no usable cores here");

  // Group the units by socket or NUMA node (one group for --map-by core), then deal them
  // round-robin over the groups.
  std::vector<std::vector<hwloc_obj_t>> groups;
  std::vector<hwloc_obj_t> keys;
  for (hwloc_obj_t u : candidates) {
    hwloc_obj_t key = nullptr;
    if (map == map_by::socket) key = hwloc_get_ancestor_obj_by_type(t, HWLOC_OBJ_PACKAGE, u);
    if (map == map_by::numa) key = detail::numa_of(t, u);
    std::size_t g = 0;
    while (g < keys.size() && keys[g] != key) ++g;
    if (g == keys.size()) {
      keys.push_back(key);
      groups.emplace_back();
    }
    groups[g].push_back(u);
  }
  std::vector<hwloc_obj_t> order;
  for (std::size_t round = 0; order.size() < static_cast<std::size_t>(units); ++round) {
    for (const auto& g : groups) {
      if (round < g.size()) order.push_back(g[round]);
    }
  }

  const bool own_unit = bind == bind_to::hwthread || bind == bind_to::core;
  if (own_unit && np > units) {
    const char* what = bind == bind_to::hwthread ? "hardware threads" : "cores";
    throw std::runtime_error(
        "--bind-to " + std::string(bind == bind_to::hwthread ? "hwthread" : "core") + ": " +
        std::to_string(np) + " ranks but " + std::to_string(units) + " " + what +
        " available here, and each rank needs one of its own: start at most " +
        std::to_string(units) +
        " ranks, bind to socket or numa (ranks share them), or use "
        "--bind-to none");
  }

  std::vector<binding> out(static_cast<std::size_t>(np));
  for (int r = 0; r < np; ++r) {
    hwloc_obj_t u = order[static_cast<std::size_t>(r) % order.size()];
    hwloc_obj_t scope = u;
    std::string what = bind == bind_to::hwthread ? "hardware thread" : "core";
    if (bind == bind_to::socket) {
      if (hwloc_obj_t p = hwloc_get_ancestor_obj_by_type(t, HWLOC_OBJ_PACKAGE, u)) {
        scope = p;
        what = "socket " + std::to_string(p->logical_index);
      }
    } else if (bind == bind_to::numa) {
      if (hwloc_obj_t n = detail::numa_of(t, u)) {
        scope = n;
        what = "NUMA node " + std::to_string(n->logical_index);
      }
    } else {
      what += " " + std::to_string(u->logical_index);
    }
    detail::bitmap set(hwloc_bitmap_dup(scope->cpuset));
    hwloc_bitmap_and(set.get(), set.get(), usable.get());
    auto& b = out[static_cast<std::size_t>(r)];
    CPU_ZERO(&b.mask);
    hwloc_cpuset_to_glibc_sched_affinity(t, set.get(), &b.mask, sizeof b.mask);
    b.text = "CPUs " + detail::cpu_list(set.get()) + " (" + what + ")";
  }
  return out;
}

#else

inline std::vector<binding> plan_bindings(int, map_by, bind_to bind) {
  if (bind == bind_to::none) return {};
  throw std::runtime_error(
      "--bind-to: this chorusrun was built without hwloc (Debian: libhwloc-dev; rebuild "
      "chorus with it installed); only --bind-to none works");
}

#endif

}  // namespace chorusrun

// chorus-perf: measures chorus collectives the way nccl-tests measures NCCL's, with every
// nccl-tests flag and its output format, over any chorus transport. See
// docs/benchmarking.md.
//
//   chorus-perf [collective] [nccl-tests flags: -b 8 -e 256M -f 4 -n 20 -w 5 -c 1 -d float
//               -o sum -a 1 -I 1 -J F ...] [--transport shm|inproc|ucx|nccl]
//               [--algo ring,tree,...] [--np N] [--latency] [--floor] [--csv F]
//               [--plot F.png] [--compare mpi]
//
// How ranks come to be:
//  - under chorusrun, mpirun, srun or torchrun, this process is one rank of the launcher's
//    job (bootstrap::from_env);
//  - otherwise, --np N with a process transport re-runs this very command under chorusrun
//    (found next to this binary, in the build tree, then in PATH); with --transport inproc, the
//    ranks are N threads of this process;
//  - --compare mpi drives child runs of chorus-perf and chorus-mpi-perf (compare.cpp).
#include "calibrate.hpp"
#include "compare.hpp"
#include "options.hpp"
#include "sweep.hpp"

#include <chorus/chorus.hpp>
#include <chorus/collectives/reproducible.hpp>
#include <chorus/dispatch/profile_json.hpp>
#if CHORUS_PERF_UCX
#include <chorus/transport/ucx.hpp>
#endif
#if CHORUS_PERF_NCCL
#include "nccl_perf.hpp"
#endif

#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <span>
#include <string>
#include <vector>

namespace chorus_perf {
namespace {

/// Runs collectives on a chorus communicator (see sweep.hpp for the backend contract).
template <class Transport>
struct chorus_backend {
  chorus::communicator<Transport>& comm;
  const options& o;

  [[nodiscard]] int rank() const { return comm.rank(); }
  [[nodiscard]] int size() const { return comm.size(); }
  void barrier() { chorus::barrier(comm); }
  void max_all(std::span<double> v) { chorus::all_reduce(comm, v, chorus::maximum{}); }
  void sum_all(std::span<double> v) { chorus::all_reduce(comm, v, chorus::plus{}); }
  long long sum_all(long long x) {
    std::array<long long, 1> v{x};
    chorus::all_reduce(comm, v, chorus::plus{});
    return v[0];
  }

  template <class T>
  std::span<T> run(std::size_t algorithm, chorus::op_kind kind, std::span<const T> in,
                   std::span<T> out) {
    const chorus::algo::dynamic tag{o.algorithms[algorithm].id, 0};
    if (o.algorithms[algorithm].reproducible) {
      run_reproducible(kind, in, out, tag);  // options.cpp allows only what it runs
      return out;
    }
    switch (o.coll) {
      case collective::all_reduce:
        with_op(kind, [&](auto op) { chorus::all_reduce(comm, in, out, op, tag); });
        break;
      case collective::reduce_scatter:
        with_op(kind, [&](auto op) { chorus::reduce_scatter(comm, in, out, op, tag); });
        break;
      case collective::all_gather:
        chorus::all_gather(comm, in, out, tag);
        break;
      case collective::broadcast:
        chorus::broadcast(comm, in, out, o.root, tag);
        break;
      case collective::reduce:
        with_op(kind, [&](auto op) { chorus::reduce(comm, in, out, op, o.root, tag); });
        break;
      case collective::all_to_all:
        chorus::all_to_all(comm, in, out, tag);
        break;
      case collective::sendrecv: {
        // One round trip: the even rank of each pair sends first, its partner answers
        // with its own data (so both directions are verified).
        const int peer = ping_pong_peer(rank(), size());
        if (peer < 0) break;
        if (rank() % 2 == 0) {
          chorus::send(comm, in, peer, 1);
          chorus::recv(comm, out, peer, 2);
        } else {
          chorus::recv(comm, out, peer, 1);
          chorus::send(comm, in, peer, 2);
        }
        break;
      }
    }
    return out;
  }

  /// all_reduce or reduce_scatter under chorus::reproducible (sum or average of a float type).
  template <class T>
  void run_reproducible(chorus::op_kind kind, std::span<const T> in, std::span<T> out,
                        chorus::algo::dynamic tag) {
    if constexpr (chorus::detail::repro::summable<T>) {
      const auto call = [&](auto op) {
        if (o.coll == collective::all_reduce) {
          chorus::all_reduce(comm, in, out, op, chorus::reproducible{}, tag);
        } else {
          chorus::reduce_scatter(comm, in, out, op, chorus::reproducible{}, tag);
        }
      };
      if (kind == chorus::op_kind::average) {
        call(chorus::average{});
      } else {
        call(chorus::plus{});
      }
    }
  }
};

/// --explain: rank 0 prints what the tuner would choose, and why, for each size.
template <class Transport>
void explain_sizes(const chorus::communicator<Transport>& comm, const options& o) {
  const auto kind = schedule_kind(o.coll);
  if (comm.rank() != 0 || !kind) return;
  for (const std::size_t bytes : sweep_sizes(o)) {
    // every line a comment, so that parsers of the table skip them
    std::string text = "# " + to_string(chorus::explain(comm, *kind, bytes));
    for (std::size_t at = text.find('\n'); at != std::string::npos && at + 1 < text.size();
         at = text.find('\n', at + 1)) {
      text.insert(at + 1, "# ");
    }
    std::fputs(text.c_str(), stdout);
  }
  std::fflush(stdout);
}

template <class Transport>
int sweep_on(chorus::communicator<Transport>& comm, const options& o, run_info info) {
  if (!o.calibrate.empty()) return calibrate_on(comm, o);
  if (o.profile == "auto") {
    const chorus::profile_cache_result cached = chorus::tune_by_model(comm);
    if (comm.rank() == 0) {
      if (cached.calibrated) {
        std::printf("# profile: %s, measured now (%s); cache file %s\n",
                    cached.profile.source.c_str(), cached.note.c_str(), cached.file.c_str());
      } else {
        std::printf("# profile: %s, from %s\n", cached.profile.source.c_str(), cached.file.c_str());
      }
    }
  }
  if (o.explain) explain_sizes(comm, o);
  chorus_backend<Transport> backend{comm, o};
  return run_sweep(backend, o, std::move(info));
}

/// The communicators' options: the environment's, and --profile's model tuner.
chorus::communicator_options communicator_options_for(const options& o) {
  chorus::communicator_options opt = chorus::communicator_options::from_env();
  if (!o.profile.empty() && o.profile != "auto") {  // auto: sweep_on, once the ranks are up
    opt.tuner = chorus::schedule::model_tuner{chorus::load_cost_profile(o.profile)};
  }
  return opt;
}

run_info base_info(const options& o, std::string transport, std::string launcher) {
  run_info info;
  info.tool = "chorus-perf";
  info.transport = std::move(transport);
  info.library = std::string("chorus ") + CHORUS_VERSION_STRING;
  info.launcher = std::move(launcher);
  for (const auto& a : o.algorithms) info.algorithms.push_back(a.name);
  return info;
}

/// "2 hosts x 2 ranks" or "2 hosts: 3,1 ranks" for ranks on more than one host (`hosts` as
/// the transport found them), else empty. Throws `usage_error` when `ranks_per_host` (> 0)
/// disagrees with it.
std::string host_layout(std::span<const int> hosts, int ranks, int ranks_per_host) {
  std::vector<int> per_host;
  for (int h : hosts) {
    if (static_cast<std::size_t>(h) >= per_host.size())
      per_host.resize(static_cast<std::size_t>(h) + 1);
    ++per_host[static_cast<std::size_t>(h)];
  }
  if (per_host.empty()) per_host.push_back(ranks);  // the transport has one host
  const bool uniform = std::ranges::count(per_host, per_host.front()) ==
                       static_cast<std::ptrdiff_t>(per_host.size());
  std::string counts;
  for (int n : per_host) {
    if (!counts.empty()) counts += ',';  // (not "" or "," + ...: GCC 12 warns of a false overlap)
    counts += std::to_string(n);
  }
  const std::string text =
      std::to_string(per_host.size()) + " hosts" +
      (uniform ? " x " + std::to_string(per_host.front()) + " ranks" : ": " + counts + " ranks");
  if (ranks_per_host > 0 && (!uniform || per_host.front() != ranks_per_host)) {
    throw usage_error("--ranks-per-host " + std::to_string(ranks_per_host) +
                      " but the transport found the ranks on " + text +
                      " (ranks share a host when they share a kernel and network namespace)");
  }
  return per_host.size() > 1 ? text : std::string();
}

/// Ranks as threads of this process.
int run_threads(const options& o, const launch_context&) {
  if (launch_context::under_launcher()) {
    throw usage_error(
        "--transport inproc runs its ranks as threads of one process; start it without a "
        "launcher and give --np N (or -t N)");
  }
  const int np = o.np > 0 ? o.np : 1;
  if (is_rooted(o.coll) && o.root >= np) {
    throw usage_error("-r " + std::to_string(o.root) + " is not a rank of " + std::to_string(np) +
                      " ranks");
  }
  int status = 0;
  (void)host_layout({}, np, o.ranks_per_host);  // one host: only --ranks-per-host N=np passes
  chorus::inproc::run(
      np,
      [&](chorus::inproc_communicator& comm) {
        const int s = sweep_on(comm, o, base_info(o, "inproc", "threads"));
        if (comm.rank() == 0) status = s;
      },
      communicator_options_for(o));
  return status;
}

/// The job this process is a rank of: the launcher's, or a world of one.
chorus::bootstrap::world join_world(const options& o) {
  const chorus::bootstrap::world world =
      launch_context::under_launcher()
          ? chorus::bootstrap::from_env()
          : chorus::bootstrap::from_env(
                chorus::bootstrap::environment_from({{"CHORUS_RANK", "0"}, {"CHORUS_SIZE", "1"}}));
  if (o.np > 0 && o.np != world.size) {
    throw usage_error("--np " + std::to_string(o.np) + " but the launcher (" +
                      std::string(chorus::bootstrap::name(world.detected)) + ") started " +
                      std::to_string(world.size) + " ranks; leave --np out under a launcher");
  }
  if (is_rooted(o.coll) && o.root >= world.size) {
    throw usage_error("-r " + std::to_string(o.root) + " is not a rank of " +
                      std::to_string(world.size) + " ranks");
  }
  return world;
}

std::string launcher_name(const chorus::bootstrap::world& world) {
  return launch_context::under_launcher() ? std::string(chorus::bootstrap::name(world.detected))
                                          : "single process";
}

/// Ranks as processes: this process is one of them, or starts them through chorusrun.
template <class Transport>
int run_processes(const options& o, const launch_context& ctx) {
  if (!launch_context::under_launcher() && o.np > 1) return ctx.relaunch_under_chorusrun(o);
  const chorus::bootstrap::world world = join_world(o);
  chorus::communicator<Transport> comm{Transport{world}, communicator_options_for(o)};
  run_info info = base_info(o, o.transport, launcher_name(world));
  info.hosts = host_layout(comm.hosts(), comm.size(), o.ranks_per_host);
  const int status = sweep_on(comm, o, info);
  chorus::barrier(comm);  // rank 0 serves the store: nobody leaves before everyone is done
  return status;
}

#if CHORUS_PERF_NCCL
/// --transport nccl: ranks as processes, one GPU each (nccl_perf.cu).
int run_nccl_processes(const options& o, const launch_context& ctx) {
  // Before starting ranks: one line, once, where no GPU can be used.
  if (!launch_context::under_launcher()) require_nccl_device();
  if (!launch_context::under_launcher() && o.np > 1) return ctx.relaunch_under_chorusrun(o);
  const chorus::bootstrap::world world = join_world(o);
  return run_nccl(o, world, base_info(o, "nccl", launcher_name(world)));
}
#endif

/// The transports chorus-perf knows. A new transport is one line here: its name and
/// `run_processes<its_transport>` (or a runner of its own), once it exists.
struct transport_entry {
  std::string_view name;
  int (*run)(const options&, const launch_context&);
  std::string_view missing;  ///< why it cannot run, when `run` is null
};

constexpr transport_entry transports[] = {
    {"inproc", &run_threads, ""},
    {"shm", &run_processes<chorus::shm_transport>, ""},
#if CHORUS_PERF_UCX
    {"ucx", &run_processes<chorus::ucx_transport>, ""},
#else
    {"ucx", nullptr,
     "this chorus-perf was built without UCX (install libucx-dev and rebuild: the ucx "
     "component)"},
#endif
#if CHORUS_PERF_NCCL
    {"nccl", &run_nccl_processes, ""},
#else
    {"nccl", nullptr,
     "this chorus-perf was built without NCCL and CUDA (the CUDA toolkit with NCCL and nvcc; "
     "see docs/gpu.md)"},
#endif
};

const transport_entry& find_transport(const std::string& name) {
  for (const auto& t : transports) {
    if (t.name == name) {
      if (t.run == nullptr) {
        throw usage_error("--transport " + name + ": " + std::string(t.missing));
      }
      return t;
    }
  }
  std::string list;
  for (const auto& t : transports) {
    if (t.run != nullptr) list += (list.empty() ? "" : ", ") + std::string(t.name);
  }
  throw usage_error("unknown transport '" + name + "'; choose one of: " + list);
}

}  // namespace
}  // namespace chorus_perf

int main(int argc, char** argv) {
  using namespace chorus_perf;
  const bool leader = !launch_context::under_launcher() || launch_context::launcher_rank() == 0;
  // Under chorusrun with prefixed output, rank 0 prints the table on chorusrun's own stdout,
  // as written (nccl-tests parsers read it); the prefix stays on everything else.
  if (const char* out = std::getenv("CHORUS_OUTPUT_FD"); out != nullptr && *out != '\0') {
    const int fd = std::atoi(out);
    if (fd > 2) {
      if (leader) ::dup2(fd, STDOUT_FILENO);
      ::close(fd);
    }
  }
  try {
    const auto parsed = parse_options(argc, argv, tool::chorus);
    if (!parsed) return 0;
    const options& o = *parsed;
    const transport_entry& t = find_transport(o.transport);
    if (!o.plot.empty() && !gnuplot_available()) {
      throw usage_error(
          "--plot needs gnuplot, which is not in PATH (Debian: apt-get install "
          "gnuplot-nox)");
    }
    if (o.timeout_s > 0) {  // -T: every wait of this run, through the communicators' setting
      ::setenv("CHORUS_TIMEOUT", std::to_string(o.timeout_s).c_str(), 1);
    }
    const launch_context ctx(argc, argv);
    if (!o.compare.empty()) return run_compare(o, ctx);
    return t.run(o, ctx);
  } catch (const usage_error& e) {
    if (leader) std::fprintf(stderr, "chorus-perf: %s\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "chorus-perf: %s\n", e.what());
    return 1;
  }
}

/// \file
/// elastic_training: ZeRO training that survives the loss of a rank. Four ranks train the
/// MLP of examples/zero_training; one of them is killed (SIGKILL, as `kill -9` would) in
/// the middle of a step; the survivors shrink the group, rebuild the sharded optimizer on
/// the three of them -- from in-memory replicas (the default) or from the last checkpoint --
/// and finish the run.
///
///     chorusrun -n 4 --tolerate 1 elastic_training [--kill RANK:STEP|RANK:random]
///         [--recover replicas|checkpoint] [--checkpoint-every N] [--checkpoint-dir DIR]
///         [--steps N] [--stage 1|2|3] [--transport shm|ucx] [--grow-back]
///
/// With `--grow-back` (and `chorusrun --replace`, which starts a process in the dead rank's
/// place with CHORUS_JOIN=1), the survivors admit that process 3 steps after the recovery
/// (`chorus::grow` / `chorus::join`), hand it its shard, and the 4 finish together.
/// Every step ends with `replicate` (each rank also keeps a copy of its left neighbour's
/// shard) or, every N steps, a checkpoint. On a failure, each survivor prints how long the
/// recovery took. At the end every survivor trains the same model on one thread -- on 4
/// ranks' batches up to the restored step and on 3 ranks' afterwards, adding each element's
/// gradients in the order the collective does -- and checks that the final weights are
/// equal bit for bit (4, then 3, then 4 again with --grow-back): the exit status is non-zero
/// if not.
#include "../common/transport.hpp"
#include "../zero_training/mlp.hpp"

#include <chorus/chorus.hpp>
#include <chorus/group/grow.hpp>
#include <chorus/zero/zero.hpp>

#include <array>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace {

namespace zero = chorus::zero;
namespace fs = std::filesystem;
using zero_example::mlp;
using clock_type = std::chrono::steady_clock;

struct settings {
  int steps = 40;
  int stage = 2;
  int kill_rank = -1;  // -1: nobody is killed
  int kill_step = 0;   // 0: random
  bool from_checkpoint = false;
  int checkpoint_every = 5;
  std::string checkpoint_dir;
  std::string transport = "shm";
  bool grow_back = false;
};

[[noreturn]] void usage(const char* why) {
  std::fprintf(stderr,
               "elastic_training: %s\nusage: chorusrun -n N --tolerate 1 elastic_training "
               "[--kill RANK:STEP|RANK:random] [--recover replicas|checkpoint] "
               "[--checkpoint-every N] [--checkpoint-dir DIR] [--steps N] [--stage 1|2|3] "
               "[--transport shm|ucx] [--grow-back]\n",
               why);
  std::exit(2);
}

int number(const char* text, int lo, int hi) {
  char* end = nullptr;
  const long v = std::strtol(text, &end, 10);
  if (end == text || *end != '\0' || v < lo || v > hi) usage("a flag's value is out of range");
  return static_cast<int>(v);
}

settings parse(int argc, char** argv) {
  settings s;
  for (int i = 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    if (a == "--grow-back") {
      s.grow_back = true;
      continue;
    }
    if (i + 1 >= argc) usage("a flag needs a value");
    const char* v = argv[++i];
    if (a == "--steps") {
      s.steps = number(v, 4, 100000);
    } else if (a == "--stage") {
      s.stage = number(v, 1, 3);
    } else if (a == "--kill") {
      const char* colon = std::strchr(v, ':');
      if (colon == nullptr) usage("--kill takes RANK:STEP or RANK:random");
      s.kill_rank = number(std::string(v, colon).c_str(), 0, 1 << 20);
      s.kill_step = std::string_view(colon + 1) == "random" ? 0 : number(colon + 1, 1, 1 << 20);
    } else if (a == "--recover") {
      if (std::string_view(v) != "replicas" && std::string_view(v) != "checkpoint")
        usage("--recover is replicas or checkpoint");
      s.from_checkpoint = std::string_view(v) == "checkpoint";
    } else if (a == "--checkpoint-every") {
      s.checkpoint_every = number(v, 1, 1 << 20);
    } else if (a == "--checkpoint-dir") {
      s.checkpoint_dir = v;
    } else if (a == "--transport") {
      if (std::string_view(v) != "shm" && std::string_view(v) != "ucx")
        usage("--transport is shm or ucx");
      s.transport = v;
    } else {
      usage("unknown argument");
    }
  }
  if (s.kill_step > s.steps) usage("--kill's step is after the last step");
  return s;
}

const mlp model{{32, 96, 96, 96, 96, 8}};  // 31,880 parameters in 10 tensors
constexpr std::uint64_t init_seed = 7;
constexpr std::size_t batch_size = 16;
const zero::adamw optimizer{.lr = 1e-2f, .weight_decay = 1e-4f};

/// Rank r's batch at a step: the data a group of any size draws from (ranks 0..P-1 of
/// whatever group trains that step).
zero_example::batch batch_for(int rank, int step) {
  return zero_example::make_batch(model, (std::uint64_t(rank) << 32) ^ (std::uint64_t(step) << 8),
                                  batch_size);
}

/// The same training on one thread: `worlds[s - 1]` ranks at step s, each element's
/// gradients added in the order `algo::direct`'s reduce-scatter adds them (owner o first,
/// then o-1, o-2, ... mod P; docs/zero.md). Returns the final master weights.
std::vector<float> reference(const std::vector<int>& worlds) {
  const auto sizes = model.tensor_sizes();
  std::vector<std::size_t> offset{0};
  for (std::size_t n : sizes) offset.push_back(offset.back() + n);
  std::vector<float> w(offset.back()), m(w.size(), 0.0f), v(w.size(), 0.0f);
  for (std::size_t t = 0; t < sizes.size(); ++t)
    for (std::size_t i = 0; i < sizes[t]; ++i) w[offset[t] + i] = model.init(init_seed, t, i);
  for (std::size_t step = 1; step <= worlds.size(); ++step) {
    const int p = worlds[step - 1];
    std::vector<int> owner(w.size(), 0);
    const zero::partition part = zero::flat{}(sizes, p);
    for (int r = 0; r < p; ++r)
      for (const zero::segment& s : part.shards[static_cast<std::size_t>(r)])
        if (!s.padding) std::fill_n(owner.begin() + offset[s.tensor] + s.offset, s.length, r);
    // Each rank's gradient, natural layout.
    std::vector<std::vector<float>> grads(static_cast<std::size_t>(p));
    std::vector<std::vector<float>> params(sizes.size()), grad(sizes.size());
    for (std::size_t t = 0; t < sizes.size(); ++t)
      params[t].assign(w.begin() + offset[t], w.begin() + offset[t + 1]);
    for (int r = 0; r < p; ++r) {
      for (std::size_t t = 0; t < sizes.size(); ++t) grad[t].assign(sizes[t], 0.0f);
      zero_example::vector_access<float> a{&params, &grad};
      zero_example::loss_and_grad(model, batch_for(r, static_cast<int>(step)), a);
      for (const auto& g : grad) grads[r].insert(grads[r].end(), g.begin(), g.end());
    }
    std::vector<float> sum(w.size());
    for (std::size_t e = 0; e < w.size(); ++e) {
      const int o = owner[e];
      float s = grads[static_cast<std::size_t>(o)][e];
      for (int k = 1; k < p; ++k) s += grads[static_cast<std::size_t>((o - k + p) % p)][e];
      sum[e] = s;
    }
    const std::array<std::span<float>, 2> state{std::span<float>(m), std::span<float>(v)};
    optimizer.update<float>(step, w, std::span<const float>(sum), 1.0f / static_cast<float>(p),
                            state);
  }
  return w;
}

double ms_since(clock_type::time_point t) {
  return std::chrono::duration<double, std::milli>(clock_type::now() - t).count();
}

/// The newest checkpoint in `dir` that every rank finished (`complete` written after
/// `save` returned, which is after every rank wrote its file), or "" if none.
fs::path newest_checkpoint(const fs::path& dir) {
  fs::path best;
  long best_step = -1;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string n = e.path().filename().string();
    if (!n.starts_with("step-") || !fs::exists(e.path() / "complete")) continue;
    const long step = std::strtol(n.c_str() + 5, nullptr, 10);
    if (step > best_step) {
      best_step = step;
      best = e.path();
    }
  }
  return best;
}

/// Trains steps `from`..`to` (`step_now` follows along); ends each with `replicate`, or
/// every `checkpoint_every` steps with a checkpoint. Returns the step that failed, or 0.
template <class Driver, class Comm>
int train(Comm& comm, Driver& opt, zero::replicas& reps, const settings& s, int from, int to,
          int& step_now, const fs::path& ckpt) {
  zero_example::driver_access<Driver> access{&opt, model.layers(), {}};
  for (step_now = from; step_now <= to; ++step_now) {
    try {
      access.begin_micro_batch();
      zero_example::loss_and_grad(model, batch_for(comm.rank(), step_now), access);
      opt.step();
      if (!s.from_checkpoint) {
        opt.replicate(reps);
      } else if (step_now % s.checkpoint_every == 0) {
        const fs::path dir = ckpt / ("step-" + std::to_string(step_now));
        opt.save(dir);
        // Every rank marks it (the same empty file): save() returned, so all files are there.
        std::FILE* done = std::fopen((dir / "complete").c_str(), "w");
        if (done == nullptr)
          throw std::runtime_error("cannot write " + (dir / "complete").string());
        std::fclose(done);
      }
    } catch (const chorus::error& e) {
      std::printf("rank %d: step %d failed: %s\n", comm.rank(), step_now, e.what());
      std::fflush(stdout);
      return step_now;
    }
  }
  return 0;
}

/// Compares the final weights with the reference of `worlds`.
template <class Driver, class Comm>
bool matches_reference(Comm& comm, Driver& opt, const std::vector<int>& worlds) {
  const std::vector<float> got = opt.full_state(0);
  const std::vector<float> want = reference(worlds);
  std::size_t differ = 0;
  for (std::size_t i = 0; i < got.size(); ++i)
    differ += std::memcmp(&got[i], &want.at(i), sizeof(float)) != 0 ? 1 : 0;
  if (differ != 0)
    std::printf("rank %d: %zu of %zu weights differ from the reference\n", comm.rank(), differ,
                got.size());
  return differ == 0 && got.size() == want.size();
}

/// The group size at each step: `p` ranks up to step `shrunk_at`, one less up to `grown_at`,
/// `p` again after it.
std::vector<int> worlds_of(const settings& s, int p, int shrunk_at, int grown_at) {
  std::vector<int> w(static_cast<std::size_t>(s.steps), p);
  for (int step = shrunk_at + 1; step <= std::min(grown_at, s.steps); ++step)
    w[static_cast<std::size_t>(step - 1)] = p - 1;
  return w;
}

/// "4-then-3-then-4" for the sizes of `worlds`.
std::string sizes_text(const std::vector<int>& worlds) {
  std::string r = std::to_string(worlds.front());
  for (std::size_t i = 1; i < worlds.size(); ++i)
    if (worlds[i] != worlds[i - 1]) r += "-then-" + std::to_string(worlds[i]);
  return r;
}

/// The end of every run: compares with the reference of `worlds`; new rank 0 prints the
/// verdict and removes the checkpoint directory (`remove`, when not empty). Returns the
/// exit status.
template <class Driver, class Comm>
int finish(Comm& comm, Driver& opt, const std::vector<int>& worlds, const std::string& what,
           const fs::path& remove) {
  const bool ok = matches_reference(comm, opt, worlds);
  chorus::barrier(comm);  // every rank is done with the checkpoints
  if (comm.rank() == 0) {
    std::printf("elastic_training: %s; final weights %s the %s reference bit for bit: %s\n",
                what.c_str(), ok ? "equal" : "DIFFER from", sizes_text(worlds).c_str(),
                ok ? "OK" : "FAILED");
    if (!remove.empty()) fs::remove_all(remove);
  }
  return ok ? 0 : 1;
}

/// The checkpoint directory: --checkpoint-dir, or one of the job's own, which the program
/// removes at the end (the second value says so).
std::pair<fs::path, bool> checkpoint_dir(const settings& s, const chorus::bootstrap::world& w) {
  if (s.from_checkpoint && s.checkpoint_dir.empty() && w.job_id.empty())
    usage("--recover checkpoint needs --checkpoint-dir (this launcher gives no job id)");
  if (!s.checkpoint_dir.empty()) return {fs::path(s.checkpoint_dir), false};
  return {fs::temp_directory_path() / ("chorus-elastic-" + w.job_id), true};
}

/// The driver's options. algo::direct: each element's sum is added in the order the
/// reference repeats (docs/zero.md).
zero::options driver_options() {
  zero::options o;
  o.bucket_bytes = 16 * 1024;
  o.algorithm = chorus::algo::as_dynamic(chorus::algo::direct{});
  return o;
}

template <class Stage, class Transport>
using driver_t = zero::sharded_optimizer<Transport, Stage, zero::flat, zero::adamw>;

/// A process started in place of a dead rank (CHORUS_JOIN=1): joins when the survivors
/// grow their group, receives its shard, and trains to the end with them.
template <class Stage, class Transport>
int join_and_train(const settings& s, const chorus::bootstrap::world& world) {
  const auto [ckpt, own_dir] = checkpoint_dir(s, world);
  const auto t0 = clock_type::now();
  auto grown = chorus::join<Transport>(world, {.timeout = world.timeout});
  const double join_ms = ms_since(t0);
  driver_t<Stage, Transport> opt(grown.comm, model.tensor_sizes(), optimizer, driver_options());
  zero::replicas reps;  // nothing to give: it receives
  const auto t1 = clock_type::now();
  const int at = static_cast<int>(opt.restore(reps, grown));
  std::printf(
      "joined as rank %d of %d after step %d: knock to group %.1f ms, shard received in "
      "%.1f ms\n",
      grown.comm.rank(), grown.comm.size(), at, join_ms, ms_since(t1));
  std::fflush(stdout);
  std::vector<int> marks(2);  // the steps after which the group shrank and grew
  chorus::broadcast(grown.comm, marks, 0);
  int step_now = 0;
  if (train(grown.comm, opt, reps, s, at + 1, s.steps, step_now, ckpt) != 0) return 1;
  return finish(grown.comm, opt, worlds_of(s, grown.comm.size(), marks[0], marks[1]), "joined",
                own_dir ? ckpt : fs::path());
}

template <class Stage, class Transport>
int run(chorus::communicator<Transport>& comm, const settings& s,
        const chorus::bootstrap::world& world) {
  using driver = driver_t<Stage, Transport>;
  const int p = comm.size(), me = comm.rank();
  const auto [ckpt, own_dir] = checkpoint_dir(s, world);
  const fs::path remove = own_dir ? ckpt : fs::path();
  if (s.from_checkpoint && !newest_checkpoint(ckpt).empty())
    usage("the checkpoint directory holds a checkpoint already: give an empty or new one");
  chorus::barrier(comm);  // nobody writes a checkpoint before every rank looked

  // The victim draws its step from the clock (the test does not know it in advance) and
  // dies before its second collective of that step, in the middle of the backward pass.
  // The step comes after the first recovery point (the replicas of step 1, or the first
  // checkpoint), so that a random kill always reshards trained state; `--kill R:STEP`
  // reaches the steps before it (a restart from the initial weights).
  int kill_step = s.kill_step;
  if (me == s.kill_rank && kill_step == 0) {
    const auto seed = static_cast<unsigned>(clock_type::now().time_since_epoch().count());
    const int first = std::min(s.steps - 1, s.from_checkpoint ? s.checkpoint_every + 1 : 2);
    kill_step = first + static_cast<int>(seed % static_cast<unsigned>(s.steps - first));
  }
  int step_now = 0, collectives = 0;
  zero::options o = driver_options();
  o.before_collective = [&](std::string_view, std::size_t) {
    if (me == s.kill_rank && step_now == kill_step && ++collectives == 2) {
      std::printf("rank %d: killing myself with SIGKILL in the middle of step %d\n", me, kill_step);
      std::fflush(stdout);
      ::raise(SIGKILL);
    }
  };
  zero::replicas reps;
  driver opt(comm, model.tensor_sizes(), optimizer, o);
  opt.initialize([](std::size_t t, std::size_t i) { return model.init(init_seed, t, i); });
  if (!s.from_checkpoint) opt.replicate(reps);
  if (me == 0) {
    std::printf("elastic_training: %d ranks, ZeRO stage %d, %d steps, recovery from %s\n", p,
                Stage::value, s.steps, s.from_checkpoint ? "checkpoints" : "in-memory replicas");
    std::fflush(stdout);
  }
  const int failed = train(comm, opt, reps, s, 1, s.steps, step_now, ckpt);
  if (failed == 0)
    return finish(comm, opt, worlds_of(s, p, s.steps, s.steps), "no failure", remove);

  // Recovery: agree on who is left, then rebuild the optimizer on the survivors.
  const auto t0 = clock_type::now();
  auto shrunk = comm.shrink({.timeout = world.timeout});
  const double shrink_ms = ms_since(t0);
  driver again(shrunk.comm, model.tensor_sizes(), optimizer, o);
  const auto t1 = clock_type::now();
  int shrunk_at = 0;
  std::string source = "in-memory replicas";
  if (!s.from_checkpoint) {
    shrunk_at = static_cast<int>(again.restore(reps, shrunk));
  } else if (const fs::path dir = newest_checkpoint(ckpt); !dir.empty()) {
    again.load(dir);  // written by 4 ranks, read by 3
    shrunk_at = static_cast<int>(again.step_count());
    source = dir.string();
  } else {
    again.initialize([](std::size_t t, std::size_t i) { return model.init(init_seed, t, i); });
    source = "the initial weights (no checkpoint yet)";
  }
  const double restore_ms = ms_since(t1);
  std::string lost;
  for (int r : shrunk.lost) lost += (lost.empty() ? "" : ",") + std::to_string(r);
  std::printf(
      "rank %d -> %d of %d: lost rank %s at step %d; shrink %.1f ms, restore of step %d from %s "
      "%.1f ms: recovered in %.1f ms\n",
      me, shrunk.comm.rank(), shrunk.comm.size(), lost.c_str(), failed, shrink_ms, shrunk_at,
      source.c_str(), restore_ms, ms_since(t0));
  std::fflush(stdout);

  // With --grow-back, 3 steps later (but before the last step) the survivors admit the
  // process that chorusrun --replace started in the dead rank's place.
  const int grow_at =
      s.grow_back ? std::max(shrunk_at, std::min(s.steps - 1, shrunk_at + 3)) : s.steps;
  const auto second_failure = [&] {
    std::printf("rank %d: a second failure; this example recovers from one\n", me);
    return 1;
  };
  if (train(shrunk.comm, again, reps, s, shrunk_at + 1, grow_at, step_now, ckpt) != 0)
    return second_failure();
  const std::string shrank = std::to_string(p) + " ranks to step " + std::to_string(shrunk_at) +
                             ", " + std::to_string(p - 1) + " from step " +
                             std::to_string(shrunk_at + 1);
  if (!s.grow_back) {
    return finish(shrunk.comm, again, worlds_of(s, p, shrunk_at, s.steps),
                  shrank + " to " + std::to_string(s.steps), remove);
  }
  if (s.from_checkpoint) again.replicate(reps);  // what the joiner's shard comes from
  const auto t2 = clock_type::now();
  auto grown = chorus::grow(shrunk.comm, {.wait_for = 1, .timeout = world.timeout});
  if (!grown) {
    std::printf("rank %d: no process joined (start the job with chorusrun --replace)\n", me);
    return 1;
  }
  const double grow_ms = ms_since(t2);
  driver third(grown->comm, model.tensor_sizes(), optimizer, o);
  const auto t3 = clock_type::now();
  third.restore(reps, *grown);
  std::printf(
      "rank %d -> %d of %d: grew back after step %d (%d joined): grow %.1f ms, "
      "resharding %.1f ms\n",
      me, grown->comm.rank(), grown->comm.size(), grow_at, grown->joined, grow_ms, ms_since(t3));
  std::fflush(stdout);
  std::vector<int> marks{shrunk_at, grow_at};
  chorus::broadcast(grown->comm, marks, 0);
  if (train(grown->comm, third, reps, s, grow_at + 1, s.steps, step_now, ckpt) != 0)
    return second_failure();
  return finish(grown->comm, third, worlds_of(s, p, shrunk_at, grow_at),
                shrank + ", " + std::to_string(grown->comm.size()) + " again from step " +
                    std::to_string(grow_at + 1) + " to " + std::to_string(s.steps),
                remove);
}

template <class Stage>
int start(const settings& s) {
  if (!chorus::joining()) {
    return examples::with_transport(
        s.transport, "elastic_training",
        [&](auto& comm, const char*, const chorus::bootstrap::world& w) {
          return run<Stage>(comm, s, w);
        });
  }
  const chorus::bootstrap::world world = chorus::bootstrap::from_env();
  if (s.transport == "ucx") {
#if CHORUS_EXAMPLE_UCX
    return join_and_train<Stage, chorus::ucx_transport>(s, world);
#else
    usage("built without UCX: use --transport shm");
#endif
  }
  return join_and_train<Stage, chorus::shm_transport>(s, world);
}

}  // namespace

int main(int argc, char** argv) try {
  const settings s = parse(argc, argv);
  switch (s.stage) {
    case 1:
      return start<zero::stage<1>>(s);
    case 2:
      return start<zero::stage<2>>(s);
    default:
      return start<zero::stage<3>>(s);
  }
} catch (const std::exception& e) {
  std::fprintf(stderr, "elastic_training: %s\n", e.what());
  return 1;
}

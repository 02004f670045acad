/// \file
/// elastic_training: ZeRO training that survives the loss of a rank. Four ranks train the
/// MLP of examples/zero_training; one of them is killed (SIGKILL, as `kill -9` would) in
/// the middle of a step; the survivors shrink the group, rebuild the sharded optimizer on
/// the three of them -- from in-memory replicas (the default) or from the last checkpoint --
/// and finish the run.
///
///     chorusrun -n 4 --tolerate 1 elastic_training [--kill RANK:STEP|RANK:random]
///         [--recover replicas|checkpoint] [--checkpoint-every N] [--checkpoint-dir DIR]
///         [--steps N] [--stage 1|2|3] [--transport shm|ucx]
///
/// Every step ends with `replicate` (each rank also keeps a copy of its left neighbour's
/// shard) or, every N steps, a checkpoint. On a failure, each survivor prints how long the
/// recovery took. At the end every survivor trains the same model on one thread -- on 4
/// ranks' batches up to the restored step and on 3 ranks' afterwards, adding each element's
/// gradients in the order the collective does -- and checks that the final weights are
/// equal bit for bit: the exit status is non-zero if not.
#include "../common/transport.hpp"
#include "../zero_training/mlp.hpp"

#include <chorus/chorus.hpp>
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
};

[[noreturn]] void usage(const char* why) {
  std::fprintf(stderr,
               "elastic_training: %s\nusage: chorusrun -n N --tolerate 1 elastic_training "
               "[--kill RANK:STEP|RANK:random] [--recover replicas|checkpoint] "
               "[--checkpoint-every N] [--checkpoint-dir DIR] [--steps N] [--stage 1|2|3] "
               "[--transport shm|ucx]\n",
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
template <class Geometry>
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
    const zero::partition part = Geometry{}(sizes, p);
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

/// Trains steps `from`..s.steps (`step_now` follows along); ends each with `replicate`, or
/// every `checkpoint_every` steps with a checkpoint. Returns the step that failed, or 0.
template <class Driver, class Comm>
int train(Comm& comm, Driver& opt, zero::replicas& reps, const settings& s, int from, int& step_now,
          const fs::path& ckpt) {
  zero_example::driver_access<Driver> access{&opt, model.layers(), {}};
  for (step_now = from; step_now <= s.steps; ++step_now) {
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

/// Compares the final weights with the reference of `worlds`; new rank 0 prints the verdict.
template <class Driver, class Comm>
bool matches_reference(Comm& comm, Driver& opt, const std::vector<int>& worlds) {
  const std::vector<float> got = opt.full_state(0);
  const std::vector<float> want = reference<zero::flat>(worlds);
  std::size_t differ = 0;
  for (std::size_t i = 0; i < got.size(); ++i)
    differ += std::memcmp(&got[i], &want.at(i), sizeof(float)) != 0 ? 1 : 0;
  if (differ != 0)
    std::printf("rank %d: %zu of %zu weights differ from the reference\n", comm.rank(), differ,
                got.size());
  return differ == 0 && got.size() == want.size();
}

template <class Stage, class Transport>
int run(chorus::communicator<Transport>& comm, const settings& s,
        const chorus::bootstrap::world& world) {
  using driver = zero::sharded_optimizer<Transport, Stage, zero::flat, zero::adamw>;
  const int p = comm.size(), me = comm.rank();
  if (s.from_checkpoint && s.checkpoint_dir.empty() && world.job_id.empty())
    usage("--recover checkpoint needs --checkpoint-dir (this launcher gives no job id)");
  const bool own_dir = s.checkpoint_dir.empty();
  const fs::path ckpt = own_dir ? fs::temp_directory_path() / ("chorus-elastic-" + world.job_id)
                                : fs::path(s.checkpoint_dir);
  if (s.from_checkpoint && !newest_checkpoint(ckpt).empty())
    usage("the checkpoint directory holds a checkpoint already: give an empty or new one");
  chorus::barrier(comm);  // nobody writes a checkpoint before every rank looked

  // The victim draws its step from the clock (the test does not know it in advance) and
  // dies before its second collective of that step, in the middle of the backward pass.
  int kill_step = s.kill_step;
  if (me == s.kill_rank && kill_step == 0) {
    const auto seed = static_cast<unsigned>(clock_type::now().time_since_epoch().count());
    kill_step = 2 + static_cast<int>(seed % static_cast<unsigned>(s.steps - 2));
  }
  int step_now = 0, collectives = 0;
  zero::options o;
  o.bucket_bytes = 16 * 1024;
  // direct: each element's sum has the order the reference repeats (docs/zero.md)
  o.algorithm = chorus::algo::as_dynamic(chorus::algo::direct{});
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
  const int failed = train(comm, opt, reps, s, 1, step_now, ckpt);
  if (failed == 0) {
    const bool ok = matches_reference(comm, opt, std::vector<int>(std::size_t(s.steps), p));
    if (me == 0)
      std::printf("elastic_training: no failure; final weights %s the reference: %s\n",
                  ok ? "equal" : "DIFFER from", ok ? "OK" : "FAILED");
    if (own_dir && me == 0) fs::remove_all(ckpt);
    return ok ? 0 : 1;
  }

  // Recovery: agree on who is left, then rebuild the optimizer on the survivors.
  const auto t0 = clock_type::now();
  auto shrunk = comm.shrink({.timeout = world.timeout});
  const double shrink_ms = ms_since(t0);
  driver again(shrunk.comm, model.tensor_sizes(), optimizer, o);
  const auto t1 = clock_type::now();
  std::uint64_t restored = 0;
  std::string source = "in-memory replicas";
  if (!s.from_checkpoint) {
    restored = again.restore(reps, shrunk);
  } else if (const fs::path dir = newest_checkpoint(ckpt); !dir.empty()) {
    again.load(dir);  // written by 4 ranks, read by 3
    restored = again.step_count();
    source = dir.string();
  } else {
    again.initialize([](std::size_t t, std::size_t i) { return model.init(init_seed, t, i); });
    source = "the initial weights (no checkpoint yet)";
  }
  const double restore_ms = ms_since(t1);
  std::string lost;
  for (int r : shrunk.lost) lost += (lost.empty() ? "" : ",") + std::to_string(r);
  std::printf(
      "rank %d -> %d of %d: lost rank %s at step %d; shrink %.1f ms, restore of step %llu "
      "from %s %.1f ms: recovered in %.1f ms\n",
      me, shrunk.comm.rank(), shrunk.comm.size(), lost.c_str(), failed, shrink_ms,
      static_cast<unsigned long long>(restored), source.c_str(), restore_ms, ms_since(t0));
  std::fflush(stdout);

  if (train(shrunk.comm, again, reps, s, static_cast<int>(restored) + 1, step_now, ckpt) != 0) {
    std::printf("rank %d: a second failure; this example recovers from one\n", me);
    return 1;
  }
  std::vector<int> worlds(static_cast<std::size_t>(s.steps), shrunk.comm.size());
  std::fill_n(worlds.begin(), restored, p);
  const bool ok = matches_reference(shrunk.comm, again, worlds);
  chorus::barrier(shrunk.comm);  // every rank is done with the checkpoints
  if (shrunk.comm.rank() == 0) {
    std::printf(
        "elastic_training: %d ranks to step %llu, %d ranks from step %llu to %d; final weights "
        "%s the %d-then-%d reference bit for bit: %s\n",
        p, static_cast<unsigned long long>(restored), shrunk.comm.size(),
        static_cast<unsigned long long>(restored + 1), s.steps, ok ? "equal" : "DIFFER from", p,
        shrunk.comm.size(), ok ? "OK" : "FAILED");
    if (own_dir) fs::remove_all(ckpt);
  }
  return ok ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) try {
  const settings s = parse(argc, argv);
  return examples::with_transport(
      s.transport, "elastic_training",
      [&](auto& comm, const char*, const chorus::bootstrap::world& world) {
        switch (s.stage) {
          case 1:
            return run<zero::stage<1>>(comm, s, world);
          case 2:
            return run<zero::stage<2>>(comm, s, world);
          default:
            return run<zero::stage<3>>(comm, s, world);
        }
      });
} catch (const std::exception& e) {
  std::fprintf(stderr, "elastic_training: %s\n", e.what());
  return 1;
}

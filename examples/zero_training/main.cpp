/// \file
/// zero_training: data-parallel training of a small MLP with ZeRO stage 0, 1, 2 or 3, over
/// shared memory between processes started by chorusrun.
///
///     chorusrun -n 4 zero_training [--stage 0|1|2|3|all] [--geometry flat|per_tensor|whole_tensor]
///                                  [--steps N] [--micro-batches K] [--bucket-bytes B]
///                                  [--no-overlap]
///
/// Every rank draws its own batches from a seed, computes the gradient of its batch with the
/// plain C++ MLP in mlp.hpp, and hands it to `chorus::zero::sharded_optimizer`, which
/// reduce-scatters (or, at stage 0, all-reduces) it bucket by bucket, updates this rank's
/// shard with AdamW, and all-gathers the parameters (stage 3: just before each layer uses
/// them). Rank 0 prints the mean loss over all ranks at every step; every rank prints what
/// it allocated next to the ZeRO paper's estimate. At the end each rank also trains the same
/// model unsharded on one thread (all ranks' batches, summed in rank order) and checks that
/// the final loss agrees to 1e-5 relative: the exit status is non-zero if not.
#include "mlp.hpp"

#include <chorus/chorus.hpp>
#include <chorus/zero/zero.hpp>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

namespace {

namespace zero = chorus::zero;
using zero_example::mlp;

struct settings {
  int stage = -1;  // -1: all
  std::string geometry = "flat";
  int steps = 30;
  int micro_batches = 1;
  std::size_t bucket_bytes = 16 * 1024;
  bool overlap = true;
};

[[noreturn]] void usage(const char* why) {
  std::fprintf(stderr,
               "zero_training: %s\nusage: chorusrun -n N zero_training [--stage 0|1|2|3|all] "
               "[--geometry flat|per_tensor|whole_tensor] [--steps N] [--micro-batches K] "
               "[--bucket-bytes B] [--no-overlap]\n",
               why);
  std::exit(2);
}

settings parse(int argc, char** argv) {
  settings s;
  auto number = [&](int& i, long lo) {
    if (i + 1 >= argc) usage("a flag needs a value");
    char* end = nullptr;
    const long v = std::strtol(argv[++i], &end, 10);
    if (*end != '\0' || v < lo) usage("a flag's value is not a number in range");
    return v;
  };
  for (int i = 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    if (a == "--stage") {
      if (i + 1 < argc && std::string_view(argv[i + 1]) == "all") {
        ++i;
        s.stage = -1;
      } else {
        s.stage = static_cast<int>(number(i, 0));
        if (s.stage > 3) usage("--stage is 0, 1, 2, 3 or all");
      }
    } else if (a == "--geometry" && i + 1 < argc) {
      s.geometry = argv[++i];
      if (s.geometry != "flat" && s.geometry != "per_tensor" && s.geometry != "whole_tensor") {
        usage("--geometry is flat, per_tensor or whole_tensor");
      }
    } else if (a == "--steps") {
      s.steps = static_cast<int>(number(i, 1));
    } else if (a == "--micro-batches") {
      s.micro_batches = static_cast<int>(number(i, 1));
    } else if (a == "--bucket-bytes") {
      s.bucket_bytes = static_cast<std::size_t>(number(i, 0));
    } else if (a == "--no-overlap") {
      s.overlap = false;
    } else {
      usage("unknown argument");
    }
  }
  return s;
}

const mlp model{{32, 96, 96, 96, 96, 8}};  // 31,880 parameters in 10 tensors
constexpr std::uint64_t init_seed = 7;
constexpr std::size_t batch_size = 16;
const zero::adamw optimizer{.lr = 1e-2f, .weight_decay = 1e-4f};

zero_example::batch batch_for(int rank, int step, int micro) {
  return zero_example::make_batch(
      model, (std::uint64_t(rank) << 32) ^ (std::uint64_t(step) << 8) ^ std::uint64_t(micro),
      batch_size);
}

/// The same training on one thread with every parameter in one place: each rank's batch
/// gradient summed in rank order. Returns the mean loss (over ranks) of the last step.
float unsharded_run(int ranks, const settings& s) {
  const auto sizes = model.tensor_sizes();
  std::vector<std::vector<float>> w(sizes.size());
  std::vector<std::vector<float>> m(sizes.size()), v(sizes.size());
  for (std::size_t t = 0; t < sizes.size(); ++t) {
    for (std::size_t i = 0; i < sizes[t]; ++i) w[t].push_back(model.init(init_seed, t, i));
    m[t].assign(sizes[t], 0.0f);
    v[t].assign(sizes[t], 0.0f);
  }
  float last = 0;
  for (int step = 1; step <= s.steps; ++step) {
    std::vector<std::vector<float>> sum(sizes.size());
    for (std::size_t t = 0; t < sizes.size(); ++t) sum[t].assign(sizes[t], 0.0f);
    double loss = 0;
    for (int r = 0; r < ranks; ++r) {
      for (int k = 0; k < s.micro_batches; ++k) {
        zero_example::vector_access<float> a{&w, &sum};
        loss += zero_example::loss_and_grad(model, batch_for(r, step, k), a);
      }
    }
    const float scale = 1.0f / static_cast<float>(ranks * s.micro_batches);
    for (std::size_t t = 0; t < sizes.size(); ++t) {
      optimizer.update<float>(static_cast<std::uint64_t>(step), w[t], sum[t], scale, {m[t], v[t]});
    }
    last = static_cast<float>(loss / (ranks * s.micro_batches));
  }
  return last;
}

double kb(double bytes) { return bytes / 1e3; }

/// Trains with one stage and geometry; returns the final mean loss over ranks.
template <class Stage, class Geometry>
float train(chorus::communicator<chorus::shm_transport>& comm, const settings& s) {
  const int r = comm.rank(), p = comm.size();
  zero::options o;
  o.bucket_bytes = s.bucket_bytes;
  o.overlap = s.overlap;
  o.micro_batches = s.micro_batches;
  o.max_live_buckets = 2;
  zero::sharded_optimizer<chorus::shm_transport, Stage, Geometry, zero::adamw> opt(
      comm, model.tensor_sizes(), optimizer, o);
  opt.initialize([](std::size_t t, std::size_t i) { return model.init(init_seed, t, i); });
  zero_example::driver_access<decltype(opt)> access{&opt, model.layers(), {}};
  if (r == 0) {
    std::printf("\n== ZeRO stage %d, %s geometry, %d ranks, %zu buckets, overlap %s ==\n",
                Stage::value, std::string(Geometry::name).c_str(), p, opt.buckets(),
                s.overlap ? "on" : "off");
  }
  float last = 0;
  for (int step = 1; step <= s.steps; ++step) {
    double loss = 0;
    for (int k = 0; k < s.micro_batches; ++k) {
      access.begin_micro_batch();
      loss += zero_example::loss_and_grad(model, batch_for(r, step, k), access);
    }
    opt.step();
    // Nothing is queued after step(): this thread may use the communicator itself.
    std::vector<double> total{loss / s.micro_batches};
    chorus::all_reduce(comm, total, chorus::plus{});
    last = static_cast<float>(total[0] / p);
    if (r == 0) std::printf("step %3d  loss %.6f\n", step, static_cast<double>(last));
  }
  const zero::memory_report mem = opt.memory();
  const double psi = static_cast<double>(opt.layout().tensor_offset.back());
  const zero::model_memory est = zero::memory_estimate(
      Stage::value, psi, p, decltype(opt)::optimizer_bytes_per_parameter, 4, 4);
  // Every rank's report, printed by rank 0 in rank order.
  std::vector<double> mine{double(mem.parameters), double(mem.gradients),
                           double(mem.optimizer_states), double(mem.buffers)};
  std::vector<double> all(4 * static_cast<std::size_t>(p));
  chorus::all_gather(comm, mine, all);
  if (r == 0) {
    std::printf("memory per rank (kB)   parameters  gradients  optimizer  | buffers\n");
    std::printf("  paper's estimate     %10.1f %10.1f %10.1f  |\n", kb(est.parameters),
                kb(est.gradients), kb(est.optimizer_states));
    for (int q = 0; q < p; ++q) {
      const double* m = all.data() + 4 * q;
      std::printf("  rank %-3d allocated   %10.1f %10.1f %10.1f  | %7.1f\n", q, kb(m[0]), kb(m[1]),
                  kb(m[2]), kb(m[3]));
    }
  }
  return last;
}

template <class Geometry>
float train_stage(chorus::communicator<chorus::shm_transport>& comm, int stage, const settings& s) {
  switch (stage) {
    case 0:
      return train<zero::stage<0>, Geometry>(comm, s);
    case 1:
      return train<zero::stage<1>, Geometry>(comm, s);
    case 2:
      return train<zero::stage<2>, Geometry>(comm, s);
    default:
      return train<zero::stage<3>, Geometry>(comm, s);
  }
}

}  // namespace

int main(int argc, char** argv) try {
  const settings s = parse(argc, argv);
  const chorus::bootstrap::world world = chorus::bootstrap::from_env();
  chorus::communicator<chorus::shm_transport> comm{chorus::shm_transport{world}};
  const float want = unsharded_run(comm.size(), s);
  bool ok = true;
  for (int stage = s.stage < 0 ? 0 : s.stage; stage <= (s.stage < 0 ? 3 : s.stage); ++stage) {
    const float got = s.geometry == "flat" ? train_stage<zero::flat>(comm, stage, s)
                      : s.geometry == "per_tensor"
                          ? train_stage<zero::per_tensor>(comm, stage, s)
                          : train_stage<zero::whole_tensor>(comm, stage, s);
    const double rel = std::abs(double(got) - want) / std::abs(double(want));
    const bool match = rel <= 1e-5;
    ok = ok && match;
    if (comm.rank() == 0) {
      std::printf("stage %d final loss %.6f, unsharded run %.6f, relative difference %.1e: %s\n",
                  stage, double(got), double(want), rel, match ? "match" : "MISMATCH");
    }
  }
  return ok ? 0 : 1;
} catch (const std::exception& e) {
  std::fprintf(stderr, "zero_training: %s\n", e.what());
  return 1;
}

#pragma once
// The unsharded references the ZeRO driver is checked against, and the runner that trains
// the example MLP through the driver on inproc ranks.
//
// The reference keeps every parameter on one thread and computes every rank's gradient with
// the same code the ranks run. It sums the ranks' gradients element by element in the order
// a collective does (see `sum_order`): stages 1-3 reduce-scatter, so an element is summed in
// the order fixed by its owner rank in the partition; stage 0 all-reduces, so by its block
// of an even split of the bucket. `naive` sums in rank order 0..P-1 instead (what a user
// would write), which the driver must match to within rounding.
#include "../../examples/zero_training/mlp.hpp"
#include "support/harness.hpp"

#include <chorus/chorus.hpp>
#include <chorus/zero/zero.hpp>

#include <atomic>
#include <chrono>
#include <cstring>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

namespace zero_test {

using zero_example::mlp;
namespace zero = chorus::zero;
using chorus::schedule::algorithm;

/// An MLP whose sizes make padding and straddling happen for every world size tested.
inline const mlp& test_model() {
  static const mlp m{{7, 13, 11, 3}};  // tensors 91, 13, 143, 11, 33, 3
  return m;
}
inline constexpr std::uint64_t init_seed = 2024;
/// The world sizes the training and checkpoint tests sweep.
inline constexpr int training_worlds[] = {1, 2, 3, 4, 5, 8};
inline zero_example::batch batch_for(int rank, int step, int micro) {
  const std::uint64_t key = (static_cast<std::uint64_t>(rank) << 32) ^
                            (static_cast<std::uint64_t>(step) << 8) ^
                            static_cast<std::uint64_t>(micro);
  return zero_example::make_batch(test_model(), key, 5);
}

/// The initial weights, natural layout.
inline std::vector<float> initial_master() {
  const auto sizes = test_model().tensor_sizes();
  std::vector<float> w;
  for (std::size_t t = 0; t < sizes.size(); ++t)
    for (std::size_t i = 0; i < sizes[t]; ++i) w.push_back(test_model().init(init_seed, t, i));
  return w;
}

struct config {
  int world = 1;
  int steps = 20;
  int micro_batches = 1;
  algorithm algo = algorithm::direct;
  bool overlap = true;
  bool delays = false;
  std::size_t bucket_bytes = 50 * 4;  // four buckets of the test model in float
  /// When not empty: the world size of each step (a group that shrank part-way), in place
  /// of `world`; at each step ranks 0..size-1 of that step's group train.
  std::vector<int> worlds;
  [[nodiscard]] int world_at(int step) const {
    return worlds.empty() ? world : worlds.at(static_cast<std::size_t>(step - 1));
  }
};

/// The ranks whose contributions make element e's sum, in the order they are added.
/// `owner`: the element's owning rank (reduce-scatter) or block (all-reduce).
inline std::vector<int> sum_order(int stage, algorithm a, bool naive, int world, int owner) {
  std::vector<int> seq;
  for (int k = 0; k < world; ++k) {
    int r = k;
    if (!naive && a == algorithm::direct) r = owner - k;  // o, o-1, ..., o+1
    if (!naive && a == algorithm::ring) r = stage == 0 ? owner + k : owner + 1 + k;
    seq.push_back(((r % world) + world) % world);
  }
  return seq;
}

struct result {
  std::vector<float> master;
  std::vector<std::vector<float>> states;
  std::vector<float> losses;  // rank 0's loss per step (mean over micro-batches)
};

/// Trains the test model on one thread, every rank's gradient computed and summed in
/// `sum_order`, for `c.steps` steps.
template <class Geometry, class Opt, class T>
result reference(int stage, const config& c, const Opt& opt, bool naive) {
  const mlp& m = test_model();
  const auto sizes = m.tensor_sizes();
  // Per world size: each element's owner (rank or block) and each owner's summation order.
  struct order_of_world {
    std::vector<int> owner;
    std::vector<std::vector<int>> orders;
  };
  const auto orders_for = [&](int P) {
    const zero::partition part = Geometry{}(sizes, P);
    const zero::bucket_layout lay = zero::make_buckets(part, c.bucket_bytes / sizeof(T));
    const std::size_t total = lay.tensor_offset.back();
    std::vector<int> owner(total, 0);
    if (stage == 0) {
      for (const auto& bk : lay.buckets) {
        for (std::size_t i = 0; i < bk.natural_size; ++i) {
          const std::size_t q = bk.natural_size / static_cast<std::size_t>(P),
                            rem = bk.natural_size % static_cast<std::size_t>(P);
          // even_split: the first `rem` blocks have q + 1 elements
          const std::size_t j = i < rem * (q + 1)
                                    ? i / (q + 1)
                                    : rem + (i - rem * (q + 1)) / std::max<std::size_t>(q, 1);
          owner[bk.natural_offset + i] = static_cast<int>(j);
        }
      }
    } else {
      for (int r = 0; r < P; ++r) {
        for (const auto& s : part.shards[static_cast<std::size_t>(r)]) {
          if (s.padding) continue;
          for (std::size_t j = 0; j < s.length; ++j)
            owner[lay.tensor_offset[s.tensor] + s.offset + j] = r;
        }
      }
    }
    std::vector<std::vector<int>> orders(static_cast<std::size_t>(P));
    for (int o = 0; o < P; ++o)
      orders[static_cast<std::size_t>(o)] = sum_order(stage, c.algo, naive, P, o);
    return order_of_world{std::move(owner), std::move(orders)};
  };
  std::vector<order_of_world> by_world(64);
  const zero::bucket_layout lay =
      zero::make_buckets(Geometry{}(sizes, c.world_at(1)), c.bucket_bytes / sizeof(T));
  const std::size_t total = lay.tensor_offset.back();  // natural offsets: the same for any P

  std::vector<float> master(total);
  for (std::size_t t = 0; t < sizes.size(); ++t)
    for (std::size_t i = 0; i < sizes[t]; ++i)
      master[lay.tensor_offset[t] + i] = m.init(init_seed, t, i);
  std::vector<std::vector<float>> states(Opt::state_count, std::vector<float>(total, 0.0f));
  auto nested = [&](auto value) {
    std::vector<std::vector<T>> v(sizes.size());
    for (std::size_t t = 0; t < sizes.size(); ++t) {
      v[t].resize(sizes[t]);
      for (std::size_t i = 0; i < sizes[t]; ++i) v[t][i] = value(lay.tensor_offset[t] + i);
    }
    return v;
  };
  auto zeros = [&] { return nested([](std::size_t) { return T{}; }); };
  // Sum over ranks in each element's order, then (when accumulating) add to `acc`.
  auto reduce_into = [&](const std::vector<std::vector<std::vector<T>>>& per_rank,
                         std::vector<T>& acc, bool accumulate) {
    const int P = static_cast<int>(per_rank.size());
    order_of_world& w = by_world.at(static_cast<std::size_t>(P));
    if (w.owner.empty()) w = orders_for(P);
    for (std::size_t t = 0; t < sizes.size(); ++t) {
      for (std::size_t i = 0; i < sizes[t]; ++i) {
        const std::size_t e = lay.tensor_offset[t] + i;
        const auto& seq = w.orders[static_cast<std::size_t>(w.owner[e])];
        T s = per_rank[static_cast<std::size_t>(seq[0])][t][i];
        for (std::size_t k = 1; k < seq.size(); ++k)
          s = s + per_rank[static_cast<std::size_t>(seq[k])][t][i];
        acc[e] = accumulate ? acc[e] + s : s;
      }
    }
  };
  result res;
  for (int step = 1; step <= c.steps; ++step) {
    const int P = c.world_at(step);
    const float scale = 1.0f / static_cast<float>(P * c.micro_batches);
    auto params = nested([&](std::size_t e) { return T(master[e]); });
    std::vector<T> acc(total, T{});
    std::vector<std::vector<std::vector<T>>> local(static_cast<std::size_t>(P), zeros());
    float loss0 = 0;
    for (int k = 0; k < c.micro_batches; ++k) {
      if (stage >= 2) local.assign(static_cast<std::size_t>(P), zeros());
      for (int r = 0; r < P; ++r) {
        zero_example::vector_access<T> a{&params, &local[static_cast<std::size_t>(r)]};
        const float l = zero_example::loss_and_grad(test_model(), batch_for(r, step, k), a);
        if (r == 0) loss0 += l;
      }
      if (stage >= 2) reduce_into(local, acc, k > 0);
    }
    if (stage <= 1) reduce_into(local, acc, false);
    std::array<std::span<float>, Opt::state_count> st;
    for (std::size_t s = 0; s < Opt::state_count; ++s) st[s] = states[s];
    opt.template update<T>(static_cast<std::uint64_t>(step), master, std::span<const T>(acc), scale,
                           st);
    res.losses.push_back(loss0 / static_cast<float>(c.micro_batches));
  }
  res.master = master;
  res.states = states;
  return res;
}

/// Checks that every padding element of rank's shard arrays is zero; returns a message or "".
template <class Driver>
std::string padding_problem(const Driver& d, int rank) {
  if constexpr (!Driver::shards_state) {
    return "";
  } else {
    std::size_t at = 0;
    for (const auto& s : d.layout_partition().shards[static_cast<std::size_t>(rank)]) {
      for (std::size_t j = s.padding ? 0 : s.length; j < s.length; ++j) {
        const std::size_t i = at + j;
        if (d.shard_master()[i] != 0.0f) return "master padding " + std::to_string(i) + " nonzero";
        for (std::size_t k = 0; k < Driver::state_count; ++k)
          if (d.shard_state(k)[i] != 0.0f) return "state padding nonzero";
        if constexpr (Driver::shards_grads)
          if (static_cast<float>(d.shard_grads()[i]) != 0.0f) return "gradient padding nonzero";
        if constexpr (Driver::shards_params)
          if (static_cast<float>(d.shard_params()[i]) != 0.0f) return "parameter padding nonzero";
      }
      at += s.length;
    }
    return "";
  }
}

/// Trains through `zero::sharded_optimizer` on c.world inproc ranks; returns rank 0's view
/// of the whole state. Every rank checks its padding after every step (into `problems`).
template <class Stage, class Geometry, class Opt, class T>
result run_driver(const config& c, const Opt& opt, std::vector<std::string>& problems) {
  const mlp& m = test_model();
  result res;
  std::mutex mu;
  harness::run_ranks(c.world, [&](chorus::inproc_communicator& comm) {
    zero::options o;
    o.bucket_bytes = c.bucket_bytes;
    o.overlap = c.overlap;
    o.micro_batches = c.micro_batches;
    o.max_live_buckets = 4;
    o.algorithm = {c.algo};
    std::minstd_rand rng(static_cast<unsigned>(comm.rank() + 1));
    if (c.delays) {
      o.before_collective = [&rng](std::string_view, std::size_t) {
        std::this_thread::sleep_for(std::chrono::microseconds(rng() % 400));
      };
    }
    zero::sharded_optimizer<chorus::inproc_transport, Stage, Geometry, Opt, T> d(
        comm, m.tensor_sizes(), opt, o);
    d.initialize([&](std::size_t t, std::size_t i) { return m.init(init_seed, t, i); });
    zero_example::driver_access<decltype(d)> a{&d, m.layers(), {}};
    std::vector<float> losses;
    for (int step = 1; step <= c.steps; ++step) {
      float loss = 0;
      for (int k = 0; k < c.micro_batches; ++k) {
        a.begin_micro_batch();
        loss += zero_example::loss_and_grad(m, batch_for(comm.rank(), step, k), a);
      }
      d.step();
      losses.push_back(loss / static_cast<float>(c.micro_batches));
      if (auto p = padding_problem(d, comm.rank()); !p.empty()) {
        std::lock_guard lock(mu);
        problems.push_back("rank " + std::to_string(comm.rank()) + " step " + std::to_string(step) +
                           ": " + p);
      }
    }
    result mine{d.full_state(0), {}, losses};
    for (std::size_t k = 1; k <= Opt::state_count; ++k) mine.states.push_back(d.full_state(k));
    if (comm.rank() == 0) res = std::move(mine);
  });
  return res;
}

/// Index of the first element where a and b differ bitwise, or -1.
inline long first_difference(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size()) return 0;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (std::memcmp(&a[i], &b[i], sizeof(float)) != 0) return static_cast<long>(i);
  return -1;
}

/// max |a - b| / max |b|.
inline double relative_difference(const std::vector<float>& a, const std::vector<float>& b) {
  double num = 0, den = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    num = std::max(num, std::abs(static_cast<double>(a[i]) - b[i]));
    den = std::max(den, std::abs(static_cast<double>(b[i])));
  }
  return den == 0 ? num : num / den;
}

}  // namespace zero_test

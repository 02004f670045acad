#pragma once
/// \file
/// `zero::sharded_optimizer`: data-parallel training with ZeRO stages 0-3 over any
/// communicator (Rajbhandari et al., "ZeRO: Memory Optimizations Toward Training Trillion
/// Parameter Models", SC'20).
///
///  - stage<0>: plain data parallelism (the baseline): gradients all-reduced per bucket,
///    every rank keeps and updates the whole optimizer state.
///  - stage<1>: optimizer state (fp32 master weights + the optimizer's state) sharded; the
///    whole gradient is kept, reduce-scattered per bucket at the last micro-batch; each rank
///    updates its shard; parameters all-gathered per bucket.
///  - stage<2>: + gradients sharded: each bucket's gradient is reduce-scattered as soon as it
///    is reduced (every micro-batch) and accumulated into the rank's gradient shard; at most
///    `max_live_buckets` bucket-sized gradient buffers exist, never the whole gradient.
///  - stage<3>: + parameters sharded: `gather(b)` all-gathers bucket b's parameters before
///    use (prefetching the next bucket in `bucket_order`), `release(b)` frees them.
///
/// A training step, the same for every stage:
///
///     for each micro-batch:
///       for each bucket b (forward order):   opt.gather(b);   ... use opt.param(t) ...
///       for each bucket b (backward order):  opt.gather(b);   ... opt.grad(t)[i] += ...;
///                                            opt.reduce(b);   opt.release(b);
///     opt.step();
///
/// (`gather` and `release` do nothing below stage 3.) `grad(t)` is an accumulator, zeroed
/// by the driver: add the micro-batch's gradient into it, as with torch's `.grad`. The
/// update uses the sum over ranks and micro-batches divided by (ranks x micro-batches).
///
/// **Collective.** Every rank constructs it with the same sizes and options and calls
/// `reduce`, `gather`, `step`, `save`, `load`, `full_state` in the same order.
///
/// **Overlap.** With `overlap` on, collectives are posted as requests
/// (collectives/nonblocking.hpp) and waited for when their result is needed, so the
/// reduce-scatter of one bucket overlaps the backward of the next, the all-gather of one
/// bucket the update of the next, and stage 3's prefetch the current layer. Stage 3's
/// parameter all-gathers go at a higher priority than gradient reductions (what the next
/// layer needs first). Off, the same calls block. The result is bitwise the same either way.
///
/// **Determinism.** Each element's gradient is summed in the order fixed by the collective's
/// algorithm (`options::algorithm`) and its owner rank; see docs/zero.md for which
/// algorithms make stages 1-3 bitwise equal to an unsharded all-reduce.
///
/// **Errors.** Misuse (a parameter of an ungathered stage-3 bucket, too many open buckets,
/// a step before every bucket was reduced) throws `invalid_argument` naming the call and the
/// fix; communication failures are the collectives' errors, raised on the caller's thread.
#include <chorus/collectives/all_gather.hpp>
#include <chorus/collectives/all_reduce.hpp>
#include <chorus/collectives/all_to_all.hpp>
#include <chorus/collectives/barrier.hpp>
#include <chorus/collectives/broadcast.hpp>
#include <chorus/collectives/nonblocking.hpp>
#include <chorus/collectives/reduce_scatter.hpp>
#include <chorus/communicator.hpp>
#include <chorus/core/error.hpp>
#include <chorus/core/ops.hpp>
#include <chorus/core/types.hpp>
#include <chorus/dispatch/algo.hpp>
#include <chorus/zero/buckets.hpp>
#include <chorus/zero/checkpoint.hpp>
#include <chorus/zero/memory.hpp>
#include <chorus/zero/optimizers.hpp>
#include <chorus/zero/partition.hpp>
#include <chorus/zero/redundancy.hpp>

#include <algorithm>
#include <array>
#include <concepts>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <functional>
#include <memory>
#include <numeric>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace chorus::inline v0::zero {

/// ZeRO stage N (0 = plain data parallelism, 1 = optimizer state, 2 = + gradients,
/// 3 = + parameters sharded): the policy that says what the driver shards. Each stage is
/// the previous one plus one more kind of model state cut into shards.
template <int N>
struct stage {
  static_assert(N >= 0 && N <= 3, "chorus::zero::stage<N> exists for N = 0, 1, 2 and 3 only.");
  static constexpr int value = N;
  /// fp32 master weights and optimizer state: this rank keeps and updates its shard only.
  static constexpr bool shards_optimizer_state = N >= 1;
  /// Gradients: reduce-scattered bucket by bucket as backward produces them; this rank
  /// keeps its shard only.
  static constexpr bool shards_gradients = N >= 2;
  /// Parameters: this rank keeps its shard; buckets are all-gathered before use.
  static constexpr bool shards_parameters = N >= 3;
};

/// A stage policy: what the driver shards, each flag implying the one before it.
template <class S>
concept stage_policy = requires {
  { S::shards_optimizer_state } -> std::convertible_to<bool>;
  { S::shards_gradients } -> std::convertible_to<bool>;
  { S::shards_parameters } -> std::convertible_to<bool>;
}
&&(!S::shards_gradients || S::shards_optimizer_state) &&
    (!S::shards_parameters || S::shards_gradients);

/// The compute types: parameters and gradients as the model sees them (mixed precision:
/// half or bfloat16 compute, fp32 master weights).
template <class T>
concept compute_type = std::same_as<T, float> || std::same_as<T, half> || std::same_as<T, bfloat16>;

/// Tuning of the driver (all ranks must pass equal values).
struct options {
  /// Buckets hold whole tensors, at least this many bytes of the compute type each (the
  /// last may be smaller). 0: one bucket. 25 MB, as torch DDP's default.
  std::size_t bucket_bytes = std::size_t{25} * 1000 * 1000;
  /// Post collectives as requests that overlap the caller's computation (who moves them:
  /// the communicator's progress mode); off: blocking calls.
  bool overlap = true;
  /// The order in which `step` updates and all-gathers buckets, and in which stage 3
  /// prefetches (a permutation of 0..buckets-1; empty: 0, 1, ...). Put first what the next
  /// forward needs first (TicTac-style priorities).
  std::vector<std::size_t> bucket_order;
  /// Micro-batches per step (gradient accumulation).
  int micro_batches = 1;
  /// Bucket-sized buffers of each kind (communication, stage-2/3 gradients, stage-3
  /// parameters): how many buckets may be in flight or open at once.
  std::size_t max_live_buckets = 2;
  /// The algorithm of every reduce-scatter / all-gather / all-reduce.
  algo::dynamic algorithm = algo::as_dynamic(algo::ring{});
  /// Called on the caller's thread just before each collective is posted (or run), with its
  /// name and bucket (tests inject delays here; tracing tools record timelines).
  std::function<void(std::string_view collective, std::size_t bucket)> before_collective;
};

template <class Transport, class Stage, class Geometry = flat, class Optimizer = adamw,
          class T = float>
class sharded_optimizer {
  static_assert(stage_policy<Stage>,
                "chorus::zero::sharded_optimizer's second argument must be zero::stage<0>, "
                "stage<1>, stage<2> or stage<3> (or a policy with their three flags, each "
                "implying the one before).");
  static_assert(compute_type<T>,
                "chorus::zero::sharded_optimizer computes in float, chorus::half or "
                "chorus::bfloat16 (its master weights are always float).");
  static_assert(geometry<Geometry>,
                "chorus::zero::sharded_optimizer's geometry must be zero::flat, zero::per_tensor "
                "or zero::whole_tensor (or provide their interface).");
  static_assert(optimizer<Optimizer>,
                "chorus::zero::sharded_optimizer's optimizer must be zero::sgd or zero::adamw "
                "(or provide their interface).");

 public:
  /// What `Stage` shards (the driver branches on these, never on a stage number).
  static constexpr bool shards_state = Stage::shards_optimizer_state;
  static constexpr bool shards_grads = Stage::shards_gradients;
  static constexpr bool shards_params = Stage::shards_parameters;
  /// Stage 1's way: full gradients accumulate locally and are reduce-scattered once, after
  /// the last micro-batch.
  static constexpr bool reduces_after_accumulation = shards_state && !shards_grads;
  static constexpr std::size_t state_count = Optimizer::state_count;
  /// The paper's K: bytes of fp32 master weight and optimizer state per parameter.
  static constexpr double optimizer_bytes_per_parameter = 4.0 * (1 + state_count);

  /// A driver for tensors of `sizes` elements. Collective (allocates, no communication).
  sharded_optimizer(communicator<Transport>& comm, std::vector<std::size_t> sizes,
                    Optimizer opt = {}, options o = {}, Geometry geometry = {})
      : comm_(comm),
        opt_(opt),
        o_(std::move(o)),
        geometry_(std::move(geometry)),
        part_(geometry_(sizes, comm.size())),
        lay_(make_buckets(part_, o_.bucket_bytes / sizeof(T))) {
    if (o_.micro_batches < 1)
      invalid("the constructor", "options::micro_batches must be at least 1");
    if (o_.max_live_buckets < 1)
      invalid("the constructor", "options::max_live_buckets must be at least 1");
    const std::size_t nb = lay_.buckets.size();
    if (o_.bucket_order.empty()) {
      order_.resize(nb);
      std::iota(order_.begin(), order_.end(), std::size_t{0});
    } else {
      order_ = o_.bucket_order;
      std::vector<std::size_t> sorted = order_;
      std::sort(sorted.begin(), sorted.end());
      for (std::size_t i = 0; i < sorted.size(); ++i) {
        if (sorted.size() != nb || sorted[i] != i) {
          invalid("the constructor", "options::bucket_order must be a permutation of 0.." +
                                         std::to_string(nb == 0 ? 0 : nb - 1) + " (there are " +
                                         std::to_string(nb) + " buckets)");
        }
      }
    }
    const std::size_t total = lay_.tensor_offset.back();
    const std::size_t shard = !shards_state ? total : part_.shard_size(comm.rank());
    master_.assign(shard, 0.0f);
    for (auto& s : state_) s.assign(shard, 0.0f);
    params_.assign(shards_params ? shard : total, T{});
    grads_.assign(shards_grads ? shard : total, T{});
    reduced_.assign(nb, 0);
    grad_slot_.assign(nb, -1);
    param_slot_.assign(nb, -1);
    param_op_.assign(nb, nullptr);
    comm_pool_.init(o_.max_live_buckets, lay_.max_packed + lay_.max_part);
    if constexpr (shards_grads) grad_pool_.init(o_.max_live_buckets, lay_.max_natural);
    if constexpr (shards_params) param_pool_.init(o_.max_live_buckets, lay_.max_natural);
  }

  sharded_optimizer(const sharded_optimizer&) = delete;
  sharded_optimizer& operator=(const sharded_optimizer&) = delete;
  /// Waits for the collectives still in flight (they use this driver's buffers); their
  /// errors, if any, are dropped here (the communicator is poisoned by them anyway).
  ~sharded_optimizer() {
    for (const auto& op : pending_) {
      try {
        op->req.wait();
      } catch (...) {
      }
    }
  }

  /// Sets every parameter: `value(t, i)` is element i of tensor t (the same function on
  /// every rank; each rank evaluates only what it stores, so no rank materialises the whole
  /// fp32 model). Optimizer state and the step count are reset. No communication.
  template <class Fn>
  requires std::invocable<Fn&, std::size_t, std::size_t>
  void initialize(Fn value) {
    wait_all();
    release_all();
    if constexpr (!shards_state) {
      for (std::size_t t = 0; t < part_.sizes.size(); ++t) {
        for (std::size_t i = 0; i < part_.sizes[t]; ++i) {
          master_[lay_.tensor_offset[t] + i] = static_cast<float>(value(t, i));
        }
      }
    } else {
      std::size_t at = 0;
      for (const segment& s : part_.shards[rank_index()]) {
        for (std::size_t j = 0; j < s.length; ++j) {
          master_[at + j] = s.padding ? 0.0f : static_cast<float>(value(s.tensor, s.offset + j));
        }
        at += s.length;
      }
    }
    for (auto& s : state_) std::fill(s.begin(), s.end(), 0.0f);
    step_ = 0;
    if constexpr (shards_state && !shards_params) {
      for (std::size_t t = 0; t < part_.sizes.size(); ++t) {
        for (std::size_t i = 0; i < part_.sizes[t]; ++i) {
          params_[lay_.tensor_offset[t] + i] = T(static_cast<float>(value(t, i)));
        }
      }
    } else {
      for (std::size_t i = 0; i < master_.size(); ++i) params_[i] = T(master_[i]);
    }
    reset_gradients();
  }

  // ---- forward / backward

  /// Stage 3: starts all-gathering bucket b's parameters (if not yet there), and the next
  /// bucket of `bucket_order` if a buffer is free, and waits for bucket b. Other stages:
  /// nothing (parameters are whole on every rank).
  void gather(std::size_t b) {
    check_bucket("gather", b);
    if constexpr (shards_params) {
      if (param_slot_[b] < 0) start_gather(b, true);
      const auto pos =
          static_cast<std::size_t>(std::find(order_.begin(), order_.end(), b) - order_.begin());
      if (pos + 1 < order_.size()) {
        const std::size_t next = order_[pos + 1];
        if (param_slot_[next] < 0 && param_pool_.has_free()) start_gather(next, false);
      }
      finish(param_op_[b]);
    }
  }

  /// Stage 3: frees bucket b's gathered parameters (nothing if not gathered). Other stages:
  /// nothing.
  void release(std::size_t b) {
    check_bucket("release", b);
    if constexpr (shards_params) {
      if (param_slot_[b] < 0) return;
      finish(param_op_[b]);
      param_pool_.release(param_slot_[b]);
      param_slot_[b] = -1;
      param_op_[b] = nullptr;
    }
  }

  /// The parameters of tensor t in the compute type (natural layout). Stage 3: only while
  /// its bucket is gathered. Valid until the next `step`, `release` or `load`.
  [[nodiscard]] std::span<const T> param(std::size_t t) {
    check_tensor("param", t);
    const std::size_t b = lay_.tensor_bucket[t];
    if constexpr (shards_params) {
      if (param_slot_[b] < 0) {
        invalid("param(" + std::to_string(t) + ")",
                "its bucket " + std::to_string(b) +
                    " is not gathered; stage 3 keeps parameters "
                    "sharded: call gather(" +
                    std::to_string(b) + ") first");
      }
      finish(param_op_[b]);
      return {param_pool_.data(param_slot_[b]) +
                  (lay_.tensor_offset[t] - lay_.buckets[b].natural_offset),
              part_.sizes[t]};
    } else {
      return {params_.data() + lay_.tensor_offset[t], part_.sizes[t]};
    }
  }

  /// The gradient accumulator of tensor t (natural layout, zero at the start of each
  /// micro-batch at stages 2-3 and of each step at stages 0-1): add into it, then call
  /// `reduce` for its bucket.
  [[nodiscard]] std::span<T> grad(std::size_t t) {
    check_tensor("grad", t);
    const std::size_t b = lay_.tensor_bucket[t];
    if constexpr (shards_grads) {
      if (grad_slot_[b] < 0) open_grad(b, "grad(" + std::to_string(t) + ")");
      return {
          grad_pool_.data(grad_slot_[b]) + (lay_.tensor_offset[t] - lay_.buckets[b].natural_offset),
          part_.sizes[t]};
    } else {
      return {grads_.data() + lay_.tensor_offset[t], part_.sizes[t]};
    }
  }

  /// Bucket b's gradient for this micro-batch is complete. Stages 2-3: reduce-scatter it now
  /// (asynchronously with overlap). Stages 0-1: at the last micro-batch, all-reduce (0) or
  /// reduce-scatter (1) the accumulated gradient.
  void reduce(std::size_t b) {
    check_bucket("reduce", b);
    if (reduced_[b] >= o_.micro_batches) {
      invalid("reduce(" + std::to_string(b) + ")",
              "the bucket was reduced " + std::to_string(reduced_[b]) +
                  " times this step but options::"
                  "micro_batches is " +
                  std::to_string(o_.micro_batches) + "; call step() first");
    }
    ++reduced_[b];
    const bucket& bk = lay_.buckets[b];
    if constexpr (!shards_state) {
      if (reduced_[b] < o_.micro_batches) return;
      hook("all_reduce", b);
      submit(-1, issue(iall_reduce, reduction_priority,
                       std::span<T>(grads_.data() + bk.natural_offset, bk.natural_size), plus{},
                       o_.algorithm));
    } else {
      if (reduces_after_accumulation && reduced_[b] < o_.micro_batches) return;
      const int slot = comm_pool_.acquire([this] { return reclaim(); }, "reduce");
      T* packed = comm_pool_.data(slot);
      if constexpr (reduces_after_accumulation) {
        pack(bk, grads_.data() + bk.natural_offset, packed);
      } else {
        if (grad_slot_[b] < 0) open_grad(b, "reduce(" + std::to_string(b) + ")");
        T* natural = grad_pool_.data(grad_slot_[b]);
        pack(bk, natural, packed);
        std::fill(natural, natural + bk.natural_size, T{});
        grad_pool_.release(grad_slot_[b]);
        grad_slot_[b] = -1;
      }
      // The first micro-batch's sum is stored as is (not added to zero, which would turn
      // -0 into +0): with one micro-batch, stages 1, 2 and 3 see the very same bits.
      const bool first = reduced_[b] == 1;
      hook("reduce_scatter_v", b);
      const std::size_t r = rank_index();
      T* part = packed + lay_.max_packed;
      request rq =
          issue(ireduce_scatter_v, reduction_priority, std::span<const T>(packed, bk.packed_size),
                std::span<T>(part, bk.counts[r]), bk.counts, plus{}, o_.algorithm);
      submit(slot, std::move(rq), [this, &bk, part, first, r] {
        if constexpr (reduces_after_accumulation) {
          static_cast<void>(first);  // this stage copies the reduced part on every micro-batch
          // Keep the reduced own part where the update will read it: the natural gradient.
          for (std::size_t k = bk.run_begin[r]; k < bk.run_begin[r + 1]; ++k) {
            const bucket_run& run = bk.runs[k];
            if (run.padding) continue;
            std::copy_n(part + (run.packed - bk.rank_offset[r]), run.length,
                        grads_.data() + bk.natural_offset + run.natural);
          }
        } else {
          T* g = grads_.data() + bk.shard_offset[r];
          if (first) {
            std::copy_n(part, bk.counts[r], g);
          } else {
            for (std::size_t i = 0; i < bk.counts[r]; ++i) g[i] = g[i] + part[i];
          }
        }
      });
    }
  }

  /// Applies the optimizer: waits for every reduction, updates this rank's shard bucket by
  /// bucket in `bucket_order` and (stages 1-2) all-gathers each bucket's new parameters
  /// while the next is updated. Stage 3 releases every gathered bucket first.
  void step() {
    for (std::size_t b = 0; b < reduced_.size(); ++b) {
      if (reduced_[b] != o_.micro_batches) {
        invalid("step()", "bucket " + std::to_string(b) + " was reduced " +
                              std::to_string(reduced_[b]) + " of " +
                              std::to_string(o_.micro_batches) +
                              " times; call reduce(b) once per micro-batch for every bucket");
      }
    }
    wait_all();
    release_all();
    ++step_;
    const float scale = 1.0f / static_cast<float>(comm_.size() * o_.micro_batches);
    const std::size_t r = rank_index();
    for (std::size_t b : order_) {
      const bucket& bk = lay_.buckets[b];
      if constexpr (!shards_state) {
        const std::size_t o = bk.natural_offset, n = bk.natural_size;
        opt_.template update<T>(step_, {master_.data() + o, n}, {grads_.data() + o, n}, scale,
                                states(o, n));
        for (std::size_t i = o; i < o + n; ++i) params_[i] = T(master_[i]);
        std::fill_n(grads_.data() + o, n, T{});
      } else {
        const std::size_t so = bk.shard_offset[r], n = bk.counts[r];
        int slot = -1;
        std::span<const T> g{grads_.data() + so, n};
        if constexpr (reduces_after_accumulation) {
          slot = comm_pool_.acquire([this] { return reclaim(); }, "step");
          T* own = comm_pool_.data(slot) + lay_.max_packed;
          for (std::size_t k = bk.run_begin[r]; k < bk.run_begin[r + 1]; ++k) {
            const bucket_run& run = bk.runs[k];
            T* dst = own + (run.packed - bk.rank_offset[r]);
            if (run.padding) {
              std::fill_n(dst, run.length, T{});
            } else {
              std::copy_n(grads_.data() + bk.natural_offset + run.natural, run.length, dst);
            }
          }
          g = {own, n};
        }
        opt_.template update<T>(step_, {master_.data() + so, n}, g, scale, states(so, n));
        if constexpr (reduces_after_accumulation) {
          std::fill_n(grads_.data() + bk.natural_offset, bk.natural_size, T{});
        } else {
          std::fill_n(grads_.data() + so, n, T{});
        }
        if constexpr (shards_params) {
          for (std::size_t i = so; i < so + n; ++i) params_[i] = T(master_[i]);
        } else {
          publish(b, slot);
        }
      }
    }
    wait_all();
    std::fill(reduced_.begin(), reduced_.end(), 0);
  }

  // ---- state, checkpoints, accounting

  /// The whole model's master weights (`which` = 0) or optimizer state `which` (1 ..
  /// state_count), in natural layout, on every rank. Collective (an all-gather of shards).
  [[nodiscard]] std::vector<float> full_state(std::size_t which = 0) {
    if (which > state_count)
      invalid("full_state", "which must be 0 (master weights) .. state_count");
    wait_all();
    const std::vector<float>& mine = which == 0 ? master_ : state_[which - 1];
    if constexpr (!shards_state) {
      return mine;
    } else {
      std::vector<std::size_t> counts(part_.shards.size());
      for (std::size_t r = 0; r < counts.size(); ++r)
        counts[r] = part_.shard_size(static_cast<int>(r));
      std::vector<float> all(std::accumulate(counts.begin(), counts.end(), std::size_t{0}));
      hook("all_gather_v", 0);
      all_gather_v(comm_, mine, all, counts, o_.algorithm);
      std::vector<float> out(lay_.tensor_offset.back());
      std::size_t at = 0;
      for (const auto& shard : part_.shards) {
        for (const segment& s : shard) {
          if (!s.padding)
            std::copy_n(all.data() + at, s.length,
                        out.data() + lay_.tensor_offset[s.tensor] + s.offset);
          at += s.length;
        }
      }
      return out;
    }
  }

  /// Saves this rank's master weights and optimizer state into `dir` (one file per rank;
  /// see checkpoint.hpp). Collective: returns when every rank's file is written.
  void save(const std::filesystem::path& dir) {
    wait_all();
    checkpoint_header h{static_cast<std::uint32_t>(comm_.size()),
                        static_cast<std::uint32_t>(comm_.rank()),
                        Geometry::id,
                        Optimizer::id,
                        static_cast<std::uint32_t>(state_count),
                        step_,
                        part_.sizes,
                        {}};
    std::vector<std::vector<float>> arrays;
    if constexpr (!shards_state) {
      // Every rank holds everything; each saves its slice of an even flat split.
      h.geometry_id = flat::id;
      h.segments = flat{}(part_.sizes, comm_.size()).shards[rank_index()];
      arrays.resize(1 + state_count);
      for (std::size_t k = 0; k <= state_count; ++k) {
        const std::vector<float>& src = k == 0 ? master_ : state_[k - 1];
        for (const segment& s : h.segments) {
          for (std::size_t j = 0; j < s.length; ++j) {
            arrays[k].push_back(s.padding ? 0.0f
                                          : src[lay_.tensor_offset[s.tensor] + s.offset + j]);
          }
        }
      }
    } else {
      h.segments = part_.shards[rank_index()];
      arrays.push_back(master_);
      for (const auto& s : state_) arrays.push_back(s);
    }
    const std::vector<std::span<const float>> views(arrays.begin(), arrays.end());
    write_checkpoint_shard(dir, h, views);
    hook("barrier", 0);
    barrier(comm_);
  }

  /// Loads what `save` wrote, from any number of ranks, into this driver's partition
  /// (parameters and optimizer state bit-identical to what was saved), then rebuilds the
  /// compute-type parameters (stages 1-2: an all-gather per bucket). Collective.
  void load(const std::filesystem::path& dir) {
    wait_all();
    release_all();
    const std::vector<checkpoint_target> targets = targets_of(comm_.rank());
    const std::vector<std::span<float>> out = clear_state();
    step_ = read_checkpoint(dir, part_.sizes, Optimizer::id,
                            static_cast<std::uint32_t>(state_count), targets, out);
    state_loaded();
  }

  /// Copies this rank's optimizer state (fp32 master weights and every optimizer state) into
  /// `r`, and receives a copy of its left neighbour's (rank - 1 mod N), so that the loss of
  /// one rank -- or of several, no two of them neighbours -- loses no state: see `restore`
  /// and redundancy.hpp for the protocol and its memory cost. Call it between steps (after
  /// `step()`, before the next micro-batch's first `reduce`), every step or every few: a
  /// restore goes back to the last one. Collective: a send-receive with the neighbours and a
  /// barrier.
  void replicate(replicas& r) {
    for (std::size_t b = 0; b < reduced_.size(); ++b) {
      if (reduced_[b] != 0) {
        invalid("replicate", "bucket " + std::to_string(b) +
                                 " was reduced since the last step(); call replicate between "
                                 "steps, after step()");
      }
    }
    wait_all();
    const int p = comm_.size(), me = comm_.rank();
    r.sizes = part_.sizes;
    r.geometry_id = Geometry::id;
    r.optimizer_id = Optimizer::id;
    r.state_count = static_cast<std::uint32_t>(state_count);
    r.sharded = shards_state;
    r.pending = {};  // frees what a failed call left
    replica_generation& g = r.pending;
    g.valid = true;
    g.step = step_;
    g.world = p;
    g.rank = me;
    g.own.reserve(master_.size() * (1 + state_count));
    g.own.assign(master_.begin(), master_.end());
    for (const auto& st : state_) g.own.insert(g.own.end(), st.begin(), st.end());
    if constexpr (shards_state) {
      if (p > 1) {
        const int left = (me + p - 1) % p;
        g.held.assign(part_.shard_size(left) * (1 + state_count), 0.0f);
        hook("sendrecv", 0);
        sendrecv(comm_, std::span<const float>(g.own), (me + 1) % p, std::span<float>(g.held),
                 left);
      }
    }
    g.complete = true;
    // Past this barrier every rank holds generation `step_`: only then is it committed.
    hook("barrier", 0);
    barrier(comm_);
    r.committed = std::move(r.pending);
    r.pending = {};
  }

  /// Rebuilds the optimizer state on a new group -- one that `shrink` or `grow` returned --
  /// from the copies `replicate` kept. Call it on a driver made (with the same sizes,
  /// stage, geometry and optimizer) on the new communicator, on every rank of it, with this
  /// rank's `replicas` and the shrink's or grow's result. The state is that of the newest
  /// step some member of the old group committed (the returned value, also `step_count()`):
  /// a shard comes from its owner if it is still there, else from its right neighbour; a
  /// rank that joined (`members[q] == -1`, with empty replicas) receives its shard. Ends
  /// with a `replicate(r)` on the new group, so the state is protected again before
  /// training resumes. Collective over the new group.
  ///
  /// Errors (the same on every rank): `invalid_argument` when a rank's replicas describe
  /// another model or none of the old group, or when two neighbouring ranks were both lost
  /// (their shards are gone: load a checkpoint instead).
  template <class Result>
  requires requires(const Result& s) {
    { s.members.size() } -> std::convertible_to<std::size_t>;
    { s.lost.size() } -> std::convertible_to<std::size_t>;
  }
  std::uint64_t restore(replicas& r, const Result& result) {
    const auto kept = std::count_if(result.members.begin(), result.members.end(),
                                    [](int old) { return old >= 0; });
    return restore(r, result.members, static_cast<int>(kept + result.lost.size()));
  }

  /// `restore` with the shrink's or grow's result spelled out: `members[q]` is the old rank
  /// of new rank q (-1 for a rank that joined); `old_size` the old group's size.
  std::uint64_t restore(replicas& r, std::span<const int> members, int old_size) {
    wait_all();
    release_all();
    const int m = comm_.size();
    const bool members_ok =
        members.size() == static_cast<std::size_t>(m) &&
        std::all_of(members.begin(), members.end(),
                    [&](int old) { return old >= -1 && old < old_size; }) &&
        std::any_of(members.begin(), members.end(), [](int old) { return old >= 0; });
    if (!members_ok) {
      invalid("restore", "members lists " + std::to_string(members.size()) +
                             " ranks for a group of " + std::to_string(m) + " (old size " +
                             std::to_string(old_size) +
                             "), or old ranks out of range; pass shrink's or grow's result");
    }
    const auto [chosen, step] = choose_generation(r, members, old_size);
    const std::vector<std::span<float>> out = clear_state();
    if constexpr (!shards_state) {
      // Every old rank held the whole state: the kept ones copy theirs, and the first of
      // them sends it to the ranks that joined.
      if (chosen != nullptr) {
        for (std::size_t k = 0; k < out.size(); ++k)
          std::copy_n(chosen->own.data() + k * master_.size(), master_.size(), out[k].data());
      }
      if (std::count(members.begin(), members.end(), -1) != 0) {
        const int root = static_cast<int>(
            std::find_if(members.begin(), members.end(), [](int old) { return old >= 0; }) -
            members.begin());
        for (const std::span<float> a : out) {
          hook("broadcast", 0);
          broadcast(comm_, a, root);
        }
      }
    } else {
      gather_shards(chosen, members, old_size, out);
    }
    step_ = step;
    state_loaded();
    replicate(r);
    return step_;
  }

  /// What this rank has allocated. Model states match `memory_estimate(stage, psi, N, K,
  /// sizeof(T), sizeof(T))` with psi = the model's elements for whole buffers and
  /// N x (this rank's shard) for sharded ones; buffers are bucket-sized.
  [[nodiscard]] memory_report memory() const noexcept {
    memory_report m;
    m.parameters = params_.size() * sizeof(T);
    m.gradients = grads_.size() * sizeof(T);
    m.optimizer_states = master_.size() * sizeof(float) * (1 + state_count);
    m.buffers =
        (comm_pool_.allocated() + grad_pool_.allocated() + param_pool_.allocated()) * sizeof(T);
    return m;
  }

  [[nodiscard]] const partition& layout_partition() const noexcept { return part_; }
  [[nodiscard]] const bucket_layout& layout() const noexcept { return lay_; }
  [[nodiscard]] std::size_t buckets() const noexcept { return lay_.buckets.size(); }
  /// The bucket holding tensor t.
  [[nodiscard]] std::size_t bucket_of(std::size_t t) const { return lay_.tensor_bucket.at(t); }
  [[nodiscard]] std::uint64_t step_count() const noexcept { return step_; }
  [[nodiscard]] const Optimizer& optimizer_settings() const noexcept { return opt_; }
  /// This rank's fp32 master weights (stage 0: the whole model) in shard order.
  [[nodiscard]] std::span<const float> shard_master() const noexcept { return master_; }
  /// This rank's optimizer state k (0-based) in shard order.
  [[nodiscard]] std::span<const float> shard_state(std::size_t k) const { return state_.at(k); }
  /// Stages 2-3: this rank's gradient shard; stage 3 also `shard_params`.
  [[nodiscard]] std::span<const T> shard_grads() const noexcept { return grads_; }
  [[nodiscard]] std::span<const T> shard_params() const noexcept { return params_; }

 private:
  /// Bucket-sized buffers, allocated on first use, handed out by index.
  struct pool {
    std::vector<std::vector<T>> buffers;
    std::vector<int> free;
    std::size_t width = 0;
    void init(std::size_t count, std::size_t w) {
      buffers.resize(count);
      width = w;
      for (int i = static_cast<int>(count) - 1; i >= 0; --i) free.push_back(i);
    }
    [[nodiscard]] bool has_free() const noexcept { return !free.empty(); }
    template <class Reclaim>
    int acquire(Reclaim reclaim, const char* who) {
      while (free.empty()) {
        if (!reclaim()) {
          throw error(errc::invalid_argument,
                      std::string("chorus::zero::sharded_optimizer::") + who +
                          ": no free bucket buffer (options::max_live_buckets = " +
                          std::to_string(buffers.size()) + ")");
        }
      }
      const int i = free.back();
      free.pop_back();
      auto& b = buffers[static_cast<std::size_t>(i)];
      if (b.size() != width) b.assign(width, T{});
      return i;
    }
    void release(int i) { free.push_back(i); }
    T* data(int i) noexcept { return buffers[static_cast<std::size_t>(i)].data(); }
    [[nodiscard]] std::size_t allocated() const noexcept {
      std::size_t n = 0;
      for (const auto& b : buffers) n += b.size();
      return n;
    }
  };

  /// A collective in flight, what to do with its result, and the communication buffer it
  /// holds until it is finished.
  struct pending_op {
    request req;
    std::function<void()> then;  ///< runs on the caller's thread once the collective is done
    int slot = -1;
    bool finished = false;
  };

  /// Priorities: parameters the next layer needs before gradients wanted only at step().
  static constexpr int reduction_priority = 0;
  static constexpr int gather_priority = 1;

  [[noreturn]] static void invalid(const std::string& call, const std::string& what) {
    throw error(errc::invalid_argument, "chorus::zero::sharded_optimizer::" + call + ": " + what);
  }
  void check_bucket(const char* call, std::size_t b) const {
    if (b >= lay_.buckets.size()) {
      invalid(call, "bucket " + std::to_string(b) + " does not exist (there are " +
                        std::to_string(lay_.buckets.size()) + ")");
    }
  }
  void check_tensor(const char* call, std::size_t t) const {
    if (t >= part_.sizes.size()) {
      invalid(call, "tensor " + std::to_string(t) + " does not exist (there are " +
                        std::to_string(part_.sizes.size()) + ")");
    }
  }
  [[nodiscard]] std::size_t rank_index() const noexcept {
    return static_cast<std::size_t>(comm_.rank());
  }

  std::array<std::span<float>, state_count> states(std::size_t o, std::size_t n) noexcept {
    std::array<std::span<float>, state_count> s;
    for (std::size_t k = 0; k < state_count; ++k) s[k] = {state_[k].data() + o, n};
    return s;
  }

  void hook(std::string_view what, std::size_t b) const {
    if (o_.before_collective) o_.before_collective(what, b);
  }

  /// Posts the nonblocking collective `post` (overlap on) or runs its blocking form (off).
  template <class Blocking, class... Args>
  request issue(const chorus::detail::nonblocking_fn<Blocking>& post, int priority_value,
                Args&&... args) {
    if (o_.overlap) return post(comm_, std::forward<Args>(args)..., priority{priority_value});
    Blocking{}(comm_, std::forward<Args>(args)...);
    return {};
  }

  std::shared_ptr<pending_op> submit(int slot, request req, std::function<void()> then = {}) {
    auto op = std::make_shared<pending_op>();
    op->slot = slot;
    op->req = std::move(req);
    op->then = std::move(then);
    pending_.push_back(op);
    return op;
  }

  /// Waits for `op`, applies its result, frees its buffer; rethrows its failure.
  void finish(const std::shared_ptr<pending_op>& op) {
    if (!op || op->finished) return;
    op->finished = true;
    try {
      op->req.wait();
      if (op->then) op->then();
    } catch (...) {
      if (op->slot >= 0) comm_pool_.release(op->slot);
      throw;
    }
    if (op->slot >= 0) comm_pool_.release(op->slot);
  }

  /// Finishes the oldest queued collective; false if none is queued.
  bool reclaim() {
    while (!pending_.empty()) {
      auto op = pending_.front();
      pending_.pop_front();
      if (!op->finished) {
        finish(op);
        return true;
      }
    }
    return false;
  }

  void wait_all() {
    while (reclaim()) {
    }
  }

  void release_all() {
    if constexpr (shards_params) {
      for (std::size_t b = 0; b < lay_.buckets.size(); ++b) release(b);
    }
  }

  void open_grad(std::size_t b, const std::string& call) {
    if (!grad_pool_.has_free()) {
      invalid(call, "options::max_live_buckets (" + std::to_string(o_.max_live_buckets) +
                        ") gradient buckets are open already; reduce() one of them first");
    }
    grad_slot_[b] = grad_pool_.acquire([] { return false; }, "grad");
  }

  /// Where this driver wants rank q's state: its shard's real segments (stage 0: every
  /// tensor whole), at their positions in the shard.
  [[nodiscard]] std::vector<checkpoint_target> targets_of(int q) const {
    std::vector<checkpoint_target> targets;
    if constexpr (!shards_state) {
      for (std::size_t t = 0; t < part_.sizes.size(); ++t)
        targets.push_back({t, 0, part_.sizes[t], lay_.tensor_offset[t]});
    } else {
      std::size_t at = 0;
      for (const segment& s : part_.shards[static_cast<std::size_t>(q)]) {
        if (!s.padding) targets.push_back({s.tensor, s.offset, s.length, at});
        at += s.length;
      }
    }
    return targets;
  }

  /// Zeroes the master weights and states (padding stays zero) and returns views of them,
  /// master first, for a loader to fill.
  std::vector<std::span<float>> clear_state() {
    std::fill(master_.begin(), master_.end(), 0.0f);
    for (auto& s : state_) std::fill(s.begin(), s.end(), 0.0f);
    std::vector<std::span<float>> out{std::span<float>(master_)};
    for (auto& s : state_) out.emplace_back(s);
    return out;
  }

  /// After the master weights and states were loaded: the compute-type parameters from them
  /// (stages 1-2: an all-gather per bucket), gradients zero.
  void state_loaded() {
    if constexpr (shards_state && !shards_params) {
      for (std::size_t b : order_) publish(b, -1);
      wait_all();
    } else {
      for (std::size_t i = 0; i < master_.size(); ++i) params_[i] = T(master_[i]);
    }
    reset_gradients();
  }

  /// restore's agreement: every rank says what it holds (an all-gather), and all pick the
  /// newest committed step of the old group, or all throw the same error. Returns this
  /// rank's generation of that step (null on a rank that joined) and the step.
  std::pair<const replica_generation*, std::uint64_t> choose_generation(
      const replicas& r, std::span<const int> members, int old_size) {
    const int me = comm_.rank();
    const bool joined = members[me] < 0;
    const auto usable = [&](const replica_generation& g) {
      return !joined && g.valid && g.complete && g.world == old_size && g.rank == members[me];
    };
    const bool none = !r.committed.valid && !r.pending.valid;
    const bool same_model = none || (r.sizes == part_.sizes && r.optimizer_id == Optimizer::id &&
                                     r.state_count == state_count && r.sharded == shards_state &&
                                     (!shards_state || r.geometry_id == Geometry::id));
    // per rank: same model, committed usable, its step, pending usable, its step
    constexpr std::size_t fields = 5;
    const std::vector<std::uint64_t> mine{same_model ? 1u : 0u, usable(r.committed) ? 1u : 0u,
                                          r.committed.step, usable(r.pending) ? 1u : 0u,
                                          r.pending.step};
    std::vector<std::uint64_t> all(fields * static_cast<std::size_t>(comm_.size()));
    hook("all_gather", 0);
    all_gather(comm_, mine, all);
    const auto field = [&](int q, std::size_t f) {
      return all[fields * static_cast<std::size_t>(q) + f];
    };
    const auto who = [&](int q) {
      return "new rank " + std::to_string(q) + " (old rank " + std::to_string(members[q]) + ")";
    };
    bool any = false;
    std::uint64_t step = 0;
    for (int q = 0; q < comm_.size(); ++q) {
      if (field(q, 0) == 0) {
        invalid("restore", who(q) +
                               " passed replicas of another model, stage, geometry or optimizer "
                               "(or none): pass what replicate filled on every rank");
      }
      if (field(q, 1) != 0 && (!any || field(q, 2) > step)) step = field(q, 2);
      any = any || field(q, 1) != 0;
    }
    if (!any) {
      invalid("restore", "no survivor holds a committed replica of the " +
                             std::to_string(old_size) +
                             "-rank group (replicate was never completed on it); load a "
                             "checkpoint instead");
    }
    for (int q = 0; q < comm_.size(); ++q) {
      const bool has =
          (field(q, 1) != 0 && field(q, 2) == step) || (field(q, 3) != 0 && field(q, 4) == step);
      if (!has && members[q] >= 0) {
        invalid("restore", who(q) + " holds no replica of step " + std::to_string(step) +
                               ", which another survivor committed: the replicas were not "
                               "all made by replicate on this group");
      }
    }
    if (joined) return {nullptr, step};
    return {usable(r.committed) && r.committed.step == step ? &r.committed : &r.pending, step};
  }

  /// restore's data movement (stages 1-3): each old rank's shard comes from its owner if it
  /// survived, else from its right neighbour; one all-to-all moves every overlap of an old
  /// shard with a new one, master weights and states together.
  void gather_shards(const replica_generation* mine, std::span<const int> members, int old_size,
                     const std::vector<std::span<float>>& out) {
    const int m = comm_.size(), me = comm_.rank();
    const std::size_t arrays = 1 + state_count;
    std::vector<int> new_rank(static_cast<std::size_t>(old_size), -1);
    for (int q = 0; q < m; ++q)
      if (members[q] >= 0) new_rank.at(static_cast<std::size_t>(members[q])) = q;
    std::vector<int> supplier(static_cast<std::size_t>(old_size));
    for (int o = 0; o < old_size; ++o) {
      const int right = (o + 1) % old_size;
      supplier[o] = new_rank[o] >= 0 ? new_rank[o] : right != o ? new_rank[right] : -1;
      if (supplier[o] < 0) {
        invalid("restore", "old ranks " + std::to_string(o) + " and " + std::to_string(right) +
                               " were both lost, and only rank " + std::to_string(right) +
                               " kept a copy of rank " + std::to_string(o) +
                               "'s shard: load a checkpoint instead");
      }
    }
    const partition old_part = geometry_(part_.sizes, old_size);
    // Calls fn(old rank, target index, first, last, from) for what `source` sends the rank
    // whose `targets` these are.
    const auto walk = [&](int source, const std::vector<checkpoint_target>& targets, auto&& fn) {
      const auto by = targets_by_tensor(targets, part_.sizes.size());
      for (int o = 0; o < old_size; ++o) {
        if (supplier[o] != source) continue;
        for_each_overlap(old_part.shards[static_cast<std::size_t>(o)], targets, by,
                         [&](std::size_t i, std::size_t a, std::size_t b, std::size_t from) {
                           fn(o, i, a, b, from);
                         });
      }
    };
    std::vector<float> send;
    std::vector<std::size_t> send_counts(static_cast<std::size_t>(m), 0);
    for (int q = 0; q < m; ++q) {
      const auto targets = targets_of(q);
      const std::size_t before = send.size();
      walk(me, targets, [&](int o, std::size_t, std::size_t a, std::size_t b, std::size_t from) {
        const std::vector<float>& data = o == mine->rank ? mine->own : mine->held;
        const std::size_t shard = old_part.shard_size(o);
        for (std::size_t k = 0; k < arrays; ++k) {
          const float* src = data.data() + k * shard + from;
          send.insert(send.end(), src, src + (b - a));
        }
      });
      send_counts[static_cast<std::size_t>(q)] = send.size() - before;
    }
    // What arrives, in the order it arrives: (target, first, last) per overlap.
    const std::vector<checkpoint_target> mine_targets = targets_of(me);
    struct piece {
      std::size_t target, first, last;
    };
    std::vector<piece> pieces;
    std::vector<std::size_t> recv_counts(static_cast<std::size_t>(m), 0);
    for (int q = 0; q < m; ++q) {
      walk(q, mine_targets, [&](int, std::size_t i, std::size_t a, std::size_t b, std::size_t) {
        pieces.push_back({i, a, b});
        recv_counts[static_cast<std::size_t>(q)] += arrays * (b - a);
      });
    }
    std::vector<float> recv(
        std::accumulate(recv_counts.begin(), recv_counts.end(), std::size_t{0}));
    hook("all_to_all_v", 0);
    all_to_all_v(comm_, send, send_counts, recv, recv_counts);
    target_coverage filled(mine_targets);
    std::size_t at = 0;
    for (const piece& p : pieces) {
      const checkpoint_target& t = mine_targets[p.target];
      for (std::size_t k = 0; k < arrays; ++k, at += p.last - p.first) {
        std::copy_n(recv.data() + at, p.last - p.first,
                    out[k].data() + t.position + (p.first - t.offset));
      }
      filled.add(p.target, p.first, p.last);
    }
    if (const std::string problem = filled.first_problem(); !problem.empty()) {
      throw error(errc::mismatch, "chorus::zero::sharded_optimizer::restore: received " + problem +
                                      " (expected once): the ranks' partitions differ");
    }
  }

  void reset_gradients() {
    std::fill(grads_.begin(), grads_.end(), T{});
    for (std::size_t b = 0; b < grad_slot_.size(); ++b) {
      if (grad_slot_[b] >= 0) {
        std::fill_n(grad_pool_.data(grad_slot_[b]), lay_.buckets[b].natural_size, T{});
        grad_pool_.release(grad_slot_[b]);
        grad_slot_[b] = -1;
      }
    }
    std::fill(reduced_.begin(), reduced_.end(), 0);
  }

  /// Natural -> packed for one bucket (padding written as zero).
  static void pack(const bucket& bk, const T* natural, T* packed) {
    for (const bucket_run& run : bk.runs) {
      if (run.padding) {
        std::fill_n(packed + run.packed, run.length, T{});
      } else {
        std::copy_n(natural + run.natural, run.length, packed + run.packed);
      }
    }
  }
  /// Packed -> natural for one bucket (padding dropped).
  static void unpack(const bucket& bk, const T* packed, T* natural) {
    for (const bucket_run& run : bk.runs) {
      if (!run.padding) std::copy_n(packed + run.packed, run.length, natural + run.natural);
    }
  }

  /// Stages 1-2: this rank's new parameters of bucket b (from the master shard) all-gathered
  /// into every rank's whole parameters.
  void publish(std::size_t b, int slot) {
    const bucket& bk = lay_.buckets[b];
    const std::size_t r = rank_index();
    if (slot < 0) slot = comm_pool_.acquire([this] { return reclaim(); }, "step");
    T* packed = comm_pool_.data(slot);
    for (std::size_t i = 0; i < bk.counts[r]; ++i) {
      packed[bk.rank_offset[r] + i] = T(master_[bk.shard_offset[r] + i]);
    }
    hook("all_gather_v", b);
    request rq = issue(iall_gather_v, reduction_priority,
                       std::span<const T>(packed + bk.rank_offset[r], bk.counts[r]),
                       std::span<T>(packed, bk.packed_size), bk.counts, o_.algorithm);
    submit(slot, std::move(rq),
           [this, &bk, packed] { unpack(bk, packed, params_.data() + bk.natural_offset); });
  }

  /// Stage 3: queues the all-gather of bucket b's parameters into a parameter buffer.
  void start_gather(std::size_t b, bool required) {
    if (!param_pool_.has_free()) {
      if (!required) return;
      invalid("gather(" + std::to_string(b) + ")",
              "options::max_live_buckets (" + std::to_string(o_.max_live_buckets) +
                  ") buckets are gathered already; release() one of them first");
    }
    const int ps = param_pool_.acquire([] { return false; }, "gather");
    const int cs = comm_pool_.acquire([this] { return reclaim(); }, "gather");
    param_slot_[b] = ps;
    const bucket& bk = lay_.buckets[b];
    T* packed = comm_pool_.data(cs);
    T* natural = param_pool_.data(ps);
    hook("all_gather_v", b);
    const std::size_t r = rank_index();
    request rq = issue(iall_gather_v, gather_priority,
                       std::span<const T>(params_.data() + bk.shard_offset[r], bk.counts[r]),
                       std::span<T>(packed, bk.packed_size), bk.counts, o_.algorithm);
    param_op_[b] =
        submit(cs, std::move(rq), [&bk, packed, natural] { unpack(bk, packed, natural); });
  }

  communicator<Transport>& comm_;
  Optimizer opt_;
  options o_;
  Geometry geometry_;
  partition part_;
  bucket_layout lay_;
  std::vector<std::size_t> order_;
  std::vector<float> master_;  // fp32 master weights: the shard (stage 0: everything)
  std::array<std::vector<float>, state_count> state_;
  std::vector<T> params_;  // stages 0-2: every parameter (natural); stage 3: the shard
  std::vector<T> grads_;   // stages 0-1: every gradient (natural); stages 2-3: the shard
  pool comm_pool_, grad_pool_, param_pool_;
  std::deque<std::shared_ptr<pending_op>> pending_;
  std::vector<int> reduced_;
  std::vector<int> grad_slot_, param_slot_;
  std::vector<std::shared_ptr<pending_op>> param_op_;
  std::uint64_t step_ = 0;
};

}  // namespace chorus::inline v0::zero

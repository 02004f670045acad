/// \file
/// tensor_parallel: Megatron-style tensor parallelism of one transformer layer over shared
/// memory (or UCX), between processes started by chorusrun, checked against the unsplit layer.
///
///     chorusrun -n TP tensor_parallel [--steps N] [--transport shm|ucx]
///
/// --transport ucx runs the same program over UCX (when chorus's ucx component was found at
/// build time), e.g. one rank per host.
///
/// The layer (layer.hpp) is causal self-attention with 4 heads, then the MLP GeLU(h A) B,
/// each with a residual. TP (1, 2 or 4) ranks split the heads and the MLP's hidden units: a
/// rank holds the columns of Wq, Wk, Wv and the rows of Wo for its heads, the columns of A
/// and the rows of B for its hidden units, and the whole batch. It computes its heads (its
/// hidden units) start to end alone; only a block's output is a sum over all of them, so
/// each block needs one `chorus::all_reduce` forward (Megatron's g) and one backward, for the
/// gradient of the block's input (f). The program counts its calls, and checks at every step
/// that there were 1 + 1 per block and that `comm.traffic()` moved nothing else.
///
/// Every rank also trains the unsplit layer (the same code, one shard holding everything);
/// rank 0 prints both losses per step and, per all-reduce, the largest difference between
/// the all-reduced sum and the reference's own as a fraction of the following bound. Both
/// runs do the same float operations in the same order except in those four sums: there a
/// rank adds the terms of its slice and the all-reduce adds the TP partial sums, where the
/// reference adds all n terms in one loop (n = 32 attention forward, 128 both MLP sums, 96 =
/// q, k, v attention backward). The terms t_k are the same floats in both; any order of
/// summing n floats is within gamma_(n-1) sum |t_k| of the exact sum (Higham, Accuracy and
/// Stability of Numerical Algorithms, 2nd ed., sec. 4.2; gamma_m = m u / (1 - m u), u = 2^-24),
/// so the two sums may differ by 2 gamma_(n-1) sum |t_k|, computed per element from the terms.
///
/// A reference left to itself would carry a rounding difference of step 1 through every
/// later operation and step, amplified in a way no rounding bound short of an error analysis
/// of the whole training describes. So it runs in lockstep: it checks each all-reduced sum
/// against its own within the bound, then goes on with the all-reduced one. Its other inputs
/// are then the TP run's, so every step's loss and the final weights (gathered from the
/// slices) must equal its own bit for bit. A second, free-running reference shows the drift
/// without lockstep (its loss is printed, not checked). A failed check on any rank exits
/// non-zero.
#include "../common/transport.hpp"
#include "layer.hpp"

#include <chorus/bootstrap/from_env.hpp>
#include <chorus/chorus.hpp>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>
#include <string_view>
#include <vector>

namespace {

using namespace tp_example;
constexpr dims shape{.seq = 8, .model = 32, .heads = 4, .ffn = 128};
constexpr std::uint64_t seed = 2024;
constexpr float lr = 0.1f;

struct options {
  int steps = 8;
  std::string transport = "shm";
};

options parse(int argc, char** argv) {
  options o;
  for (int i = 1; i < argc; i += 2) {
    const std::string_view flag = argv[i];
    const char* value = i + 1 < argc ? argv[i + 1] : nullptr;
    char* end = nullptr;
    const long steps = flag == "--steps" && value ? std::strtol(value, &end, 10) : 0;
    if (flag == "--steps" && value && steps >= 1 && steps <= 100000 && *end == '\0') {
      o.steps = static_cast<int>(steps);
    } else if (flag == "--transport" && value &&
               (std::string_view(value) == "shm" || std::string_view(value) == "ucx")) {
      o.transport = value;
    } else {
      std::fprintf(stderr,
                   "usage: chorusrun -n TP tensor_parallel [--steps N] [--transport shm|ucx]\n");
      std::exit(2);
    }
  }
  return o;
}

/// The whole tensor from every rank's slice: the slices side by side (a column split) or
/// one under another (a row split).
template <class Comm>
matrix gather(Comm& comm, const matrix& slice, bool by_columns) {
  const std::size_t ranks = static_cast<std::size_t>(comm.size()), n = slice.v.size();
  std::vector<float> all(n * ranks);
  chorus::all_gather(comm, slice.v, all);
  matrix whole(by_columns ? slice.rows : slice.rows * ranks, slice.cols * (by_columns ? ranks : 1));
  for (std::size_t r = 0; r < ranks; ++r)
    for (std::size_t i = 0; i < slice.rows; ++i)
      for (std::size_t c = 0; c < slice.cols; ++c)
        (by_columns ? whole(i, r * slice.cols + c) : whole(r * slice.rows + i, c)) =
            all[r * n + i * slice.cols + c];
  return whole;
}

template <class Comm>
int run(Comm& comm, int steps, const char* over) {
  const auto tp = static_cast<std::size_t>(comm.size());
  const auto rank = static_cast<std::size_t>(comm.rank());
  if (shape.heads % tp != 0 || shape.ffn % tp != 0) {
    std::fprintf(stderr, "tensor_parallel: tp=%zu does not divide %zu heads, %zu hidden units\n",
                 tp, shape.heads, shape.ffn);
    return 2;
  }
  const std::size_t S = shape.seq, D = shape.model;
  const matrix x = block(seed, input, S, D, 0, 0, S, D);
  const matrix y = block(seed, target, S, D, 0, 0, S, D);
  shard mine(shape, seed, rank, tp), lockstep(shape, seed, 0, 1), free_running(shape, seed, 0, 1);

  // The TP run: one all-reduce completes a partial sum. Count the calls and what they moved;
  // keep the result for the reference.
  std::array<std::vector<float>, 4> reduced;
  std::array<int, 4> calls{};
  chorus::traffic counted;
  const reducer all_reduce = [&](site s, partial& part) {
    chorus::all_reduce(comm, part.sum.v, chorus::plus{});
    ++calls[s];
    counted += comm.last_traffic();
    reduced[s] = part.sum.v;
  };
  // The lockstep reference: its own sum of all terms against the all-reduced one, within
  // the bound; then on with the all-reduced one.
  std::array<double, 4> ratio{};  // per site, this step's largest |difference| / bound
  double worst = 0;
  long failures = 0, sums = 0;
  const reducer check = [&](site s, partial& own) {
    // gamma_(n-1) = (n-1) u / (1 - (n-1) u) for a float sum of n terms, u = 2^-24.
    const double nu = static_cast<double>(own.terms - 1) * 0x1.0p-24, gamma = nu / (1 - nu);
    for (std::size_t i = 0; i < own.sum.v.size(); ++i, ++sums) {
      const double diff = std::abs(static_cast<double>(own.sum.v[i]) - reduced[s][i]);
      const double bound = 2 * gamma * own.magnitude[i];
      if (diff > bound) ++failures;
      if (bound > 0) ratio[s] = std::max(ratio[s], diff / bound);
    }
    own.sum.v = reduced[s];
  };
  const reducer keep_own = [](site, partial&) {};

  if (rank == 0) {
    std::printf(
        "tensor_parallel: tp=%zu over %s; one layer (seq %zu, model %zu, %zu "
        "heads, ffn %zu); per rank %zu of %zu heads, %zu of %zu hidden units; %d SGD "
        "steps, lr %g\n",
        tp, over, S, D, shape.heads, shape.ffn, mine.heads, shape.heads, mine.hidden, shape.ffn,
        steps, static_cast<double>(lr));
    std::printf(
        "bound per all-reduced element: 2 gamma_(n-1) sum|terms|, gamma_m = m u / (1 - "
        "m u), u = 2^-24; n = %zu attn fwd, %zu mlp fwd and bwd, %zu attn bwd\n",
        D, shape.ffn, 3 * D);
    std::printf("%4s  %-11s  %-13s  %-12s  %-35s  %-11s  %s\n", "", "loss", "", "",
                "|diff| / bound of each all-reduced sum", "all-reduces", "bytes");
    std::printf("%4s  %-11s  %-13s  %-12s  %8s %8s %8s %8s  %-11s  %s\n", "step", "tp run",
                "1 rank", "free-running", "attn fwd", "mlp fwd", "mlp bwd", "attn bwd", "attn mlp",
                "sent");
  }
  for (int step = 1; step <= steps; ++step) {
    calls = {};
    ratio = {};
    counted = {};
    chorus::traffic expected = comm.traffic();
    const double loss = train_step(mine, x, y, lr, all_reduce);
    expected += counted;  // the four all-reduces' bytes and messages, and nothing else
    const bool only_these = comm.traffic() == expected;
    const double loss_ref = train_step(lockstep, x, y, lr, check);
    const double loss_free = train_step(free_running, x, y, lr, keep_own);
    if (calls != std::array{1, 1, 1, 1} || !only_these || loss != loss_ref) ++failures;
    for (double r : ratio) worst = std::max(worst, r);
    if (rank == 0) {
      std::printf("%4d  %.9f  %.9f %s  %-12.9f  %8.4f %8.4f %8.4f %8.4f  %d+%d  %d+%d     %llu%s\n",
                  step, loss, loss_ref, loss == loss_ref ? "=" : "!", loss_free,
                  ratio[attention_forward], ratio[mlp_forward], ratio[mlp_backward],
                  ratio[attention_backward], calls[attention_forward], calls[attention_backward],
                  calls[mlp_forward], calls[mlp_backward],
                  static_cast<unsigned long long>(counted.sent_bytes),
                  only_these ? "" : " + OTHER TRAFFIC");
    }
  }

  // The final weights, gathered from the slices: the lockstep reference's, bit for bit.
  bool same = true;
  std::size_t parameters = 0;
  for (tensor t : {wq, wk, wv, wo, a, b}) {
    const std::vector<float> whole = gather(comm, mine.w[t], t != wo && t != b).v;
    const std::vector<float>& ref = lockstep.w[t].v;
    same = same && std::memcmp(whole.data(), ref.data(), ref.size() * sizeof(float)) == 0;
    parameters += whole.size();
  }
  if (!same) ++failures;
  std::vector<long> failed{failures};  // any rank's failure fails every rank
  chorus::all_reduce(comm, failed, chorus::plus{});
  if (rank == 0) {
    std::printf("final weights: %zu parameters gathered from %zu ranks, %s the one-rank model's\n",
                parameters, tp, same ? "bit-identical to" : "DIFFERENT from");
    if (failed[0] == 0) {
      std::printf(
          "tensor_parallel: tp=%zu OK (%d steps, 1+1 all-reduces per block per step, "
          "%ld all-reduced sums within bound, worst |diff|/bound %.3f, losses and "
          "weights bit-identical)\n",
          tp, steps, sums, worst);
    } else {
      std::printf("tensor_parallel: tp=%zu MISMATCH (%ld failed checks)\n", tp, failed[0]);
    }
  }
  // chorusrun stops every rank once one exits non-zero: wait until rank 0 has printed.
  std::fflush(stdout);
  chorus::barrier(comm);
  return failed[0] == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) try {
  const options o = parse(argc, argv);
  return examples::with_transport(
      o.transport, "tensor_parallel",
      [&](auto& comm, const char* name) { return run(comm, o.steps, name); });
} catch (const std::exception& e) {
  std::fprintf(stderr, "tensor_parallel: %s\n", e.what());
  return 1;
}

/// \file
/// parallel_3d: tensor, pipeline and data parallelism in one program, on a pp x dp x tp mesh
/// of processes started by chorusrun, checked against the same model trained on one rank.
///
///     chorusrun -n 8 parallel_3d [--mesh PPxDPxTP] [--steps N] [--micro-batches M]
///                                [--schedule 1f1b|gpipe] [--zero 2|3] [--compress]
///                                [--transport shm|ucx]
///
/// The mesh (`chorus::mesh`, default 2x2x2) lays the world's ranks out row-major with tp
/// fastest: world rank = (pp x DP + dp) x TP + tp. A rank's group along an axis is the ranks
/// that share its other two coordinates, and its rank in that group is its coordinate on
/// the axis; rank 0 prints the groups as every rank reported them and checks both rules.
///
/// The model (model.hpp) is 2 x PP residual MLP blocks x + tanh(x A) B (model width 16,
/// 32 hidden units) under a mean squared error, fed micro-batches of R = 4 rows; pipeline
/// stage s holds blocks 2s and 2s+1.
///  - tp (Megatron): a tp rank holds the columns of A and the rows of B of 32/TP hidden
///    units. A block's output and its input's gradient are sums over all hidden units:
///    one `chorus::all_reduce` on the tp axis forward (g) and one backward (f).
///  - pp (1F1B or GPipe): each data-parallel replica runs its M micro-batches through the
///    stages; activations go to the next stage and gradients to the previous one by
///    `chorus::isend` / `chorus::recv` on the pp axis (tag 2 micro + 0 forward, + 1 back).
///  - dp (ZeRO stage 2 or 3): the DP replicas of one (stage, tp slice) share a
///    `chorus::zero::sharded_optimizer` (AdamW, per_tensor geometry, one bucket per block)
///    over the dp axis. After each micro-batch's backward through a block, its bucket is
///    reduce-scattered; `step()` updates this rank's shard and all-gathers the parameters
///    (stage 3: all-gathers a block's parameters before each use instead). Each replica
///    draws its own micro-batches from a seed.
///
/// The check. After every step each rank sends rank 0 (on the world communicator, apart
/// from the axes' counts) its tp sums, its losses, its parameter slice and its traffic.
/// Rank 0 trains the unsplit model on all replicas' micro-batches and compares:
///  - tp: the run and the reference do the same float operations except in the tp sums:
///    a rank adds the terms of its 32/TP hidden units and the all-reduce adds the TP partial
///    sums, where the reference adds all n = 32 terms in one loop. Any order of summing n
///    floats is within gamma_(n-1) sum |t_k| of the exact sum (Higham, Accuracy and
///    Stability of Numerical Algorithms, 2nd ed., sec. 4.2; gamma_m = m u / (1 - m u),
///    u = 2^-24), so the two may differ by 2 gamma_31 sum |t_k|, computed per element from
///    the terms. The reference runs in lockstep (as examples/tensor_parallel does): it checks
///    each tp sum of each (stage, replica, micro-batch) against its own within the bound, then
///    continues with the distributed value. It also checks that every tp rank of a group got
///    the same bits.
///  - dp: ZeRO's reductions need no bound. Stage 2/3 stores a bucket's first micro-batch sum
///    and adds later ones to it, in the order `reduce` is called (micro-batch order in both
///    schedules); with DP = 2 each sum is one float addition g_0 + g_1, the same bits in any
///    order. The reference does exactly that, then the same element-wise AdamW update with
///    scale 1/(DP M). (With DP > 2 the order would depend on the algorithm; the example
///    allows DP = 1 or 2.)
///  - pp: messages move floats unchanged.
///  So every micro-batch loss and every parameter of every rank must equal the reference's
/// bit for bit at every step. A second, free-running reference (own tp sums) shows the
/// drift that lockstep removes; it is printed, not checked.
///  - traffic, per rank and step, from each axis communicator's traffic(): pp sends exactly
///    M activations (not the last stage) and M gradients (not the first), R x 16 floats
///    each; tp exactly its 2 x 2 x M ring all-reduces, each 2(TP-1)/TP x R x 16 floats, and
///    nothing else; dp exactly (DP-1)/DP of a bucket per ZeRO collective (stage 2: 2M
///    reduce-scatters and 2 all-gathers). At 2x2x2 that is 1024, 4096 and 10240 B.
///
/// --compress: ZeRO's compute type becomes `chorus::bfloat16`, so the dp axis moves 16-bit
/// gradients and parameters (what `compress::cast<bfloat16>` puts on the wire: half the
/// bytes; `chorus::zero` takes no `chorus::compress` policy). Bits then differ from the fp32
/// reference by design (the bf16-rounded weights also enter the tp and pp math), so the
/// check becomes a convergence check: the run's mean loss over the last quarter of the steps
/// must be at most half its first step's loss, and within 1 % of the free-running fp32
/// reference's over the same steps (measured at 40 steps: 0.04 %). Traffic is checked as
/// above, with 2-byte elements on dp.
///
/// Exit status: non-zero if any check failed on any rank (rank 0 prints which, then the
/// verdict is broadcast).
#include "../common/transport.hpp"
#include "model.hpp"

#include <chorus/bootstrap/from_env.hpp>
#include <chorus/chorus.hpp>
#include <chorus/group/mesh.hpp>
#include <chorus/zero/zero.hpp>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <exception>
#include <map>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace {

using namespace p3d;
namespace zero = chorus::zero;

constexpr std::size_t model_dim = 16, hidden_dim = 32, rows = 4, blocks_per_stage = 2;
constexpr std::uint64_t weight_seed = 3, data_seed = 17;
const zero::adamw adam{.lr = 1e-2f};

struct options {
  int pp = 2, dp = 2, tp = 2;
  int steps = 4;
  int micro_batches = 4;
  std::string schedule = "1f1b";
  int zero_stage = 2;
  bool compress = false;
  std::string transport = "shm";
};

[[noreturn]] void usage(const char* why) {
  std::fprintf(stderr,
               "parallel_3d: %s\nusage: chorusrun -n PP*DP*TP parallel_3d [--mesh PPxDPxTP] "
               "[--steps N] [--micro-batches M] [--schedule 1f1b|gpipe] [--zero 2|3] "
               "[--compress] [--transport shm|ucx]\n",
               why);
  std::exit(2);
}

options parse(int argc, char** argv) {
  options o;
  auto number = [](const char* text, long lo, long hi) {
    char* end = nullptr;
    const long v = std::strtol(text, &end, 10);
    if (end == text || *end != '\0' || v < lo || v > hi) usage("a number is out of range");
    return static_cast<int>(v);
  };
  for (int i = 1; i < argc; ++i) {
    const std::string_view flag = argv[i];
    if (flag == "--compress") {
      o.compress = true;
      continue;
    }
    if (i + 1 == argc) usage("a flag needs a value");
    const char* value = argv[++i];
    if (flag == "--mesh") {
      int p = 0, d = 0, t = 0;
      char tail = 0;
      if (std::sscanf(value, "%dx%dx%d%c", &p, &d, &t, &tail) != 3 || p < 1 || d < 1 || t < 1)
        usage("--mesh is PPxDPxTP, e.g. 2x2x2");
      o.pp = p, o.dp = d, o.tp = t;
    } else if (flag == "--steps") {
      o.steps = number(value, 1, 100000);
    } else if (flag == "--micro-batches") {
      o.micro_batches = number(value, 1, 1000);
    } else if (flag == "--zero") {
      o.zero_stage = number(value, 2, 3);
    } else if (flag == "--schedule" &&
               (std::string_view(value) == "1f1b" || std::string_view(value) == "gpipe")) {
      o.schedule = value;
    } else if (flag == "--transport" &&
               (std::string_view(value) == "shm" || std::string_view(value) == "ucx")) {
      o.transport = value;
    } else {
      usage("unknown argument");
    }
  }
  if (o.dp > 2) usage("DP must be 1 or 2 (the reference reproduces ZeRO's sums for those)");
  if (hidden_dim % static_cast<std::size_t>(o.tp) != 0) usage("TP must divide 32 hidden units");
  return o;
}

struct action {
  char kind;  // 'F' forward, 'B' backward
  int micro;
};

/// The order in which stage r of p runs the forwards and backwards of m micro-batches:
/// GPipe, all forwards then all backwards; 1F1B, p-1-r forwards, then one forward and one
/// backward in turn, then the backwards left. Backwards run in micro-batch order in both.
std::vector<action> plan(const std::string& schedule, int r, int p, int m) {
  std::vector<action> a;
  const int warm_up = schedule == "gpipe" ? m : std::min(p - 1 - r, m);
  for (int i = 0; i < warm_up; ++i) a.push_back({'F', i});
  for (int i = 0; i + warm_up < m; ++i) {
    a.push_back({'F', i + warm_up});
    a.push_back({'B', i});
  }
  for (int i = m - warm_up; i < m; ++i) a.push_back({'B', i});
  return a;
}

/// What every rank sends rank 0 after a step, as doubles (floats convert exactly): its tp
/// sums per (micro-batch, block, site), its micro-batch losses (the last stage), its
/// parameters (tensor 2k: block k's A slice, model x hidden/TP; 2k+1: its B slice), and
/// counters.
struct report_layout {
  std::size_t micro_batches, slice;  // elements of one weight slice: model x hidden/TP
  enum counter {
    pp_sent,
    pp_messages,
    dp_sent,
    tp_sent,
    tp_calls,
    tp_counted,
    tp_only,
    dp_reduces,
    dp_gathers,
    dp_other,
    stashed
  };
  static constexpr std::size_t counters = 11;
  static constexpr std::size_t sum_size = rows * model_dim;
  [[nodiscard]] std::size_t sum_at(int micro, std::size_t block, site s) const {
    return ((static_cast<std::size_t>(micro) * blocks_per_stage + block) * 2 + s) * sum_size;
  }
  [[nodiscard]] std::size_t losses_at() const { return sum_at(int(micro_batches), 0, forward_sum); }
  [[nodiscard]] std::size_t params_at() const { return losses_at() + micro_batches; }
  [[nodiscard]] std::size_t counter_at(counter c) const {
    return params_at() + 2 * blocks_per_stage * slice + c;
  }
  [[nodiscard]] std::size_t size() const {
    return params_at() + 2 * blocks_per_stage * slice + counters;
  }
};

/// The unsplit model on one rank: every block with all hidden units, AdamW state per tensor.
struct reference {
  std::vector<block> net;
  std::vector<std::vector<float>> m, v;  // per tensor 2l (A of layer l), 2l+1 (B)
  std::uint64_t steps = 0;
  explicit reference(std::size_t layers) {
    for (std::size_t l = 0; l < layers; ++l)
      net.push_back(initial_block(weight_seed, l, model_dim, hidden_dim, 0, hidden_dim));
    for (std::size_t t = 0; t < 2 * layers; ++t) {
      m.emplace_back(model_dim * hidden_dim, 0.0f);
      v.emplace_back(model_dim * hidden_dim, 0.0f);
    }
  }
  std::vector<float>& weights(std::size_t t) {
    return t % 2 == 0 ? net[t / 2].a.v : net[t / 2].b.v;
  }
};

/// One step of the reference on every replica's micro-batches, summing gradients as ZeRO
/// does (see the header); `reducer_of(replica, micro, layer)` completes each tp sum.
/// Returns the loss of each (replica, micro-batch), replica-major.
template <class ReducerOf>
std::vector<double> reference_step(reference& ref, int step, const options& o,
                                   ReducerOf&& reducer_of) {
  const std::size_t tensors = 2 * ref.net.size();
  std::vector<std::vector<float>> shard(tensors);  // ZeRO's gradient shard, here whole
  std::vector<double> losses(std::size_t(o.dp * o.micro_batches));
  for (int micro = 0; micro < o.micro_batches; ++micro) {
    std::vector<std::vector<float>> sum(tensors);  // this micro-batch's reduce-scatter
    for (int replica = 0; replica < o.dp; ++replica) {
      const sample data = micro_batch(data_seed, replica, step, micro, rows, model_dim);
      std::vector<saved> acts(ref.net.size());
      matrix x = data.x, dy;
      for (std::size_t l = 0; l < ref.net.size(); ++l)
        x = forward(ref.net[l], x, acts[l], reducer_of(replica, micro, l));
      losses[std::size_t(replica * o.micro_batches + micro)] = loss_and_grad(x, data.target, dy);
      for (std::size_t l = ref.net.size(); l-- > 0;) {
        matrix grad[2];
        dy = backward(ref.net[l], acts[l], dy, grad[0], grad[1], reducer_of(replica, micro, l));
        for (std::size_t w = 0; w < 2; ++w) {
          std::vector<float> g(grad[w].v.size(), 0.0f);  // the zeroed grad(t), added into
          for (std::size_t i = 0; i < g.size(); ++i) g[i] += grad[w].v[i];
          std::vector<float>& s = sum[2 * l + w];
          if (replica == 0) {
            s = std::move(g);
          } else {
            for (std::size_t i = 0; i < s.size(); ++i) s[i] = s[i] + g[i];
          }
        }
      }
    }
    for (std::size_t t = 0; t < tensors; ++t) {
      if (micro == 0) {
        shard[t] = std::move(sum[t]);
      } else {
        for (std::size_t i = 0; i < shard[t].size(); ++i) shard[t][i] = shard[t][i] + sum[t][i];
      }
    }
  }
  ++ref.steps;
  const float scale = 1.0f / static_cast<float>(o.dp * o.micro_batches);
  for (std::size_t t = 0; t < tensors; ++t)
    adam.update<float>(ref.steps, ref.weights(t), std::span<const float>(shard[t]), scale,
                       {std::span<float>(ref.m[t]), std::span<float>(ref.v[t])});
  return losses;
}

/// Sum over (replica, micro-batch) losses, in that order, as a mean.
double mean(const std::vector<double>& losses) {
  double total = 0;
  for (double l : losses) total += l;
  return total / static_cast<double>(losses.size());
}

std::string group_text(const std::vector<int>& members) {
  std::string s = "{";
  for (std::size_t i = 0; i < members.size(); ++i) s += (i ? " " : "") + std::to_string(members[i]);
  return s + "}";
}

template <class Transport, class Stage, class T>
int train(chorus::communicator<Transport>& world, const options& o, const char* over) {
  const int rank = world.rank();
  const int P = o.pp, M = o.micro_batches;
  chorus::mesh mesh(world, {{"pp", o.pp}, {"dp", o.dp}, {"tp", o.tp}});
  auto& pp = mesh["pp"];
  auto& dp = mesh["dp"];
  auto& tp = mesh["tp"];
  const int stage = mesh.coordinate("pp"), replica = mesh.coordinate("dp"),
            slice_rank = mesh.coordinate("tp");
  const std::size_t hidden = hidden_dim / static_cast<std::size_t>(o.tp),
                    h0 = static_cast<std::size_t>(slice_rank) * hidden;
  long failures = 0;

  // ---- The mesh as every rank sees it.
  {
    std::vector<int> mine{stage, replica, slice_rank, pp.rank(), dp.rank(), tp.rank()};
    std::vector<int> all(rank == 0 ? mine.size() * std::size_t(world.size()) : 0);
    chorus::gather(world, mine, all, 0);
    if (rank == 0) {
      std::printf(
          "parallel_3d: %d ranks over %s as pp %d x dp %d x tp %d; %zu residual MLP blocks "
          "(model %zu, hidden %zu), %zu per stage, %zu hidden units per tp rank; %d "
          "micro-batches of %zu rows per replica, %s; ZeRO stage %d (per_tensor, AdamW lr %g) "
          "in %s; %d steps\n",
          world.size(), over, o.pp, o.dp, o.tp, blocks_per_stage * std::size_t(P), model_dim,
          hidden_dim, blocks_per_stage, hidden, M, rows, o.schedule.c_str(), Stage::value,
          static_cast<double>(adam.lr), o.compress ? "bfloat16 (--compress)" : "float", o.steps);
      std::printf("mesh: world rank = (pp x %d + dp) x %d + tp; groups, in group-rank order:\n",
                  o.dp, o.tp);
      const char* axis_names[3] = {"pp", "dp", "tp"};
      const char* roles[3] = {"stages, send/recv", "ZeRO reduce-scatter/all-gather",
                              "Megatron all-reduce"};
      for (std::size_t axis = 0; axis < 3; ++axis) {
        std::map<std::vector<int>, std::vector<int>> groups;  // other coordinates -> members
        for (int q = 0; q < world.size(); ++q) {
          const int* c = all.data() + 6 * q;
          const std::vector<int> coords{c[0], c[1], c[2]};
          if (mesh.rank_at(coords) != q || c[3 + axis] != c[axis]) ++failures;
          std::vector<int> key = coords;
          key[axis] = -1;
          std::vector<int>& members = groups[key];
          members.resize(std::size_t(mesh.size(axis_names[axis])), -1);
          members[std::size_t(c[3 + axis])] = q;
        }
        std::vector<std::vector<int>> sorted;
        for (auto& [key, members] : groups) sorted.push_back(members);
        std::sort(sorted.begin(), sorted.end());
        std::string line;
        for (const auto& g : sorted) line += " " + group_text(g);
        std::printf("  %s (%s):%s\n", axis_names[axis], roles[axis], line.c_str());
      }
      if (failures) std::printf("  MISMATCH: a rank's coordinates or group rank break the rule\n");
    }
  }

  // ---- This rank's slice of its stage, sharded over dp.
  const std::size_t slice = model_dim * hidden;
  zero::options zo;
  zo.micro_batches = M;
  zo.bucket_bytes = 2 * slice * sizeof(T);  // one bucket per block: its A and B slices
  std::array<long, 3> dp_calls{};           // reduce-scatters, all-gathers, anything else
  zo.before_collective = [&](std::string_view name, std::size_t) {
    ++dp_calls[name == "reduce_scatter_v" ? 0 : name == "all_gather_v" ? 1 : 2];
  };
  const std::vector<std::size_t> sizes(2 * blocks_per_stage, slice);
  zero::sharded_optimizer<Transport, Stage, zero::per_tensor, zero::adamw, T> opt(dp, sizes, adam,
                                                                                  zo);
  for (std::size_t k = 0; k < blocks_per_stage; ++k) {
    if (opt.bucket_of(2 * k) != k || opt.bucket_of(2 * k + 1) != k ||
        opt.buckets() != blocks_per_stage)
      throw std::runtime_error("expected one ZeRO bucket per block");
  }
  const std::size_t first_layer = std::size_t(stage) * blocks_per_stage;
  opt.initialize([&](std::size_t t, std::size_t i) {
    const std::size_t layer = first_layer + t / 2;
    return t % 2 == 0 ? initial_weight(weight_seed, layer, 0, i / hidden, h0 + i % hidden,
                                       model_dim, hidden_dim)
                      : initial_weight(weight_seed, layer, 1, h0 + i / model_dim, i % model_dim,
                                       model_dim, hidden_dim);
  });
  // Block k's weights for one use (stage 3: all-gathered now, released after).
  auto weights = [&](std::size_t k) {
    opt.gather(k);
    block w{hidden_dim, matrix(model_dim, hidden), matrix(hidden, model_dim)};
    const auto a = opt.param(2 * k), b = opt.param(2 * k + 1);
    for (std::size_t i = 0; i < slice; ++i) w.a.v[i] = static_cast<float>(a[i]);
    for (std::size_t i = 0; i < slice; ++i) w.b.v[i] = static_cast<float>(b[i]);
    opt.release(k);
    return w;
  };

  const report_layout lay{std::size_t(M), slice};
  const std::size_t n_layers = blocks_per_stage * std::size_t(P);
  const std::uint64_t sum_bytes = report_layout::sum_size * sizeof(float);
  reference lockstep(n_layers), free_running(n_layers);
  std::vector<double> run_losses, ref_losses;
  double worst = 0;
  std::array<double, 2> all_counters{};  // rank 0's dp reduce-scatters, all-gathers
  long sums_checked = 0;
  if (rank == 0) {
    std::printf(
        "tp bound per summed element: 2 gamma_%zu sum|terms| (%zu hidden units), gamma_m = m u "
        "/ (1 - m u), u = 2^-24\n",
        hidden_dim - 1, hidden_dim);
    std::printf("%4s  %-40s  %-17s  %s\n", "", "loss (mean over replicas, micro-batches)",
                "tp |diff|/bound", "bytes sent by rank 0 per axis");
    std::printf("%4s  %-11s  %-13s  %-12s  %8s %8s  %7s %7s %7s\n", "step", "3-D run",
                o.compress ? "1 rank fp32" : "1 rank", "free-running", "fwd", "bwd", "pp", "dp",
                "tp");
  }

  for (int step = 1; step <= o.steps; ++step) {
    // ---- One step of this rank: its stage of its replica's pipeline, on its tp slice.
    std::vector<double> report(lay.size(), 0.0);
    const chorus::traffic pp0 = pp.traffic(), dp0 = dp.traffic(), tp0 = tp.traffic();
    chorus::traffic tp_counted;
    long tp_calls = 0;
    dp_calls = {};
    auto tp_sum = [&](int micro, std::size_t k) -> reducer {
      return [&, micro, k](site s, partial& part) {
        chorus::all_reduce(tp, part.sum.v, chorus::plus{}, chorus::algo::ring{});
        tp_counted += tp.last_traffic();
        ++tp_calls;
        std::copy(part.sum.v.begin(), part.sum.v.end(),
                  report.begin() + std::ptrdiff_t(lay.sum_at(micro, k, s)));
      };
    };
    std::map<int, std::vector<saved>> stash;  // micro-batch -> each block's activations
    std::map<int, matrix> loss_grad;          // last stage: d(loss)/d(output)
    std::deque<std::pair<matrix, chorus::request>> outbox;
    std::size_t peak = 0;
    auto tag = [](action a) { return std::uint32_t(2 * a.micro + (a.kind == 'B')); };
    auto send = [&](matrix data, int to, action a) {
      outbox.emplace_back(std::move(data), chorus::request{});
      outbox.back().second = chorus::isend(pp, outbox.back().first.v, to, tag(a));
    };
    for (const action a : plan(o.schedule, stage, P, M)) {
      const sample data = micro_batch(data_seed, replica, step, a.micro, rows, model_dim);
      if (a.kind == 'F') {
        matrix x(rows, model_dim);
        if (stage == 0) {
          x = data.x;
        } else {
          chorus::recv(pp, x.v, stage - 1, tag(a));
        }
        std::vector<saved>& acts = stash[a.micro];
        acts.resize(blocks_per_stage);
        for (std::size_t k = 0; k < blocks_per_stage; ++k)
          x = forward(weights(k), x, acts[k], tp_sum(a.micro, k));
        peak = std::max(peak, stash.size());
        if (stage == P - 1) {
          report[lay.losses_at() + std::size_t(a.micro)] =
              loss_and_grad(x, data.target, loss_grad[a.micro]);
        } else {
          send(std::move(x), stage + 1, a);
        }
      } else {
        matrix dy(rows, model_dim);
        if (stage == P - 1) {
          dy = std::move(loss_grad[a.micro]);
          loss_grad.erase(a.micro);
        } else {
          chorus::recv(pp, dy.v, stage + 1, tag(a));
        }
        for (std::size_t k = blocks_per_stage; k-- > 0;) {
          matrix ga, gb;
          dy = backward(weights(k), stash[a.micro][k], dy, ga, gb, tp_sum(a.micro, k));
          const auto da = opt.grad(2 * k), db = opt.grad(2 * k + 1);
          for (std::size_t i = 0; i < slice; ++i) da[i] = da[i] + T(ga.v[i]);
          for (std::size_t i = 0; i < slice; ++i) db[i] = db[i] + T(gb.v[i]);
          opt.reduce(k);  // block k's bucket is complete for this micro-batch
        }
        stash.erase(a.micro);
        if (stage > 0) send(std::move(dy), stage - 1, a);
      }
    }
    for (auto& [data, sent] : outbox) sent.wait();
    opt.step();

    auto at = [&](report_layout::counter c) -> double& { return report[lay.counter_at(c)]; };
    at(report_layout::pp_sent) = double(pp.traffic().sent_bytes - pp0.sent_bytes);
    at(report_layout::pp_messages) = double(pp.traffic().messages_sent - pp0.messages_sent);
    at(report_layout::dp_sent) = double(dp.traffic().sent_bytes - dp0.sent_bytes);
    at(report_layout::tp_sent) = double(tp.traffic().sent_bytes - tp0.sent_bytes);
    at(report_layout::tp_calls) = double(tp_calls);
    at(report_layout::tp_counted) = double(tp_counted.sent_bytes);
    chorus::traffic tp_expected = tp0;
    tp_expected += tp_counted;  // the all-reduces' bytes and messages, and nothing else
    at(report_layout::tp_only) = tp.traffic() == tp_expected ? 1 : 0;
    at(report_layout::dp_reduces) = double(dp_calls[0]);
    at(report_layout::dp_gathers) = double(dp_calls[1]);
    at(report_layout::dp_other) = double(dp_calls[2]);
    at(report_layout::stashed) = double(peak);
    const std::vector<float> master = opt.full_state(0);  // after the counts: it all-gathers
    std::copy(master.begin(), master.end(), report.begin() + std::ptrdiff_t(lay.params_at()));
    std::vector<double> all(rank == 0 ? lay.size() * std::size_t(world.size()) : 0);
    chorus::gather(world, report, all, 0);
    if (rank != 0) continue;

    // ---- Rank 0: the reference, in lockstep on the tp sums, and every comparison.
    auto of = [&](int s, int d, int t) {
      return all.data() + std::size_t(mesh.rank_at(std::vector<int>{s, d, t})) * lay.size();
    };
    double ratio[2] = {0, 0};
    long out_of_bound = 0;
    const auto check = [&](int d, int micro, std::size_t layer) -> reducer {
      const int s = int(layer / blocks_per_stage);
      const std::size_t k = layer % blocks_per_stage;
      return [&, d, micro, s, k](site where, partial& own) {
        const double* got = of(s, d, 0) + lay.sum_at(micro, k, where);
        const double nu = static_cast<double>(own.terms - 1) * 0x1.0p-24, gamma = nu / (1 - nu);
        for (std::size_t i = 0; i < own.sum.v.size(); ++i, ++sums_checked) {
          const double diff = std::abs(static_cast<double>(own.sum.v[i]) - got[i]);
          const double bound = 2 * gamma * own.magnitude[i];
          if (diff > bound) ++out_of_bound;
          if (bound > 0) ratio[where] = std::max(ratio[where], diff / bound);
          own.sum.v[i] = static_cast<float>(got[i]);
        }
      };
    };
    const auto keep_own = [](int, int, std::size_t) -> reducer { return [](site, partial&) {}; };
    const std::vector<double> want =
        o.compress ? std::vector<double>{} : reference_step(lockstep, step, o, check);
    const std::vector<double> drift = reference_step(free_running, step, o, keep_own);
    std::vector<double> got;
    std::vector<std::string> problems;
    auto complain = [&](int s, int d, int t, const std::string& what) {
      problems.push_back("rank " + std::to_string(mesh.rank_at(std::vector<int>{s, d, t})) +
                         " (pp " + std::to_string(s) + " dp " + std::to_string(d) + " tp " +
                         std::to_string(t) + "): " + what);
    };
    for (int d = 0; d < o.dp; ++d) {
      for (int s = 0; s < P; ++s) {
        for (int t = 0; t < o.tp; ++t) {
          const double* r = of(s, d, t);
          auto c = [&](report_layout::counter k) { return r[lay.counter_at(k)]; };
          // Every tp rank of a group got the same sums and losses.
          if (!std::equal(r, r + lay.params_at(), of(s, d, 0)))
            complain(s, d, t, "its tp sums or losses differ from its tp group's rank 0");
          // Parameters: the reference's slice, bit for bit (not with --compress).
          if (!o.compress) {
            const std::size_t th = std::size_t(t) * hidden;
            long differ = 0;
            for (std::size_t k = 0; k < blocks_per_stage; ++k) {
              const block& full = lockstep.net[std::size_t(s) * blocks_per_stage + k];
              const double* p = r + lay.params_at() + 2 * k * slice;
              for (std::size_t i = 0; i < slice; ++i) {
                const float a = full.a(i / hidden, th + i % hidden);
                const float b = full.b(th + i / model_dim, i % model_dim);
                const float pa = static_cast<float>(p[i]), pb = static_cast<float>(p[slice + i]);
                differ += std::memcmp(&a, &pa, sizeof a) != 0;
                differ += std::memcmp(&b, &pb, sizeof b) != 0;
              }
            }
            if (differ)
              complain(s, d, t, std::to_string(differ) + " parameters differ from the reference's");
          }
          // Traffic: exactly what the formulas in the header say.
          const double pp_want =
              double(M) * double(sum_bytes) * ((s < P - 1 ? 1 : 0) + (s > 0 ? 1 : 0));
          const double tp_want = double(2 * blocks_per_stage * std::size_t(M)) * 2.0 * (o.tp - 1) /
                                 o.tp * double(sum_bytes);
          const double piece = std::ceil(double(slice) / o.dp);  // per_tensor, per rank
          const double dp_want = (c(report_layout::dp_reduces) + c(report_layout::dp_gathers)) *
                                 (o.dp - 1) * 2 * piece * sizeof(T);
          const double stash_want = o.schedule == "gpipe" ? M : std::min(M, P - s);
          const double pp_messages_want = double(M) * ((s < P - 1 ? 1 : 0) + (s > 0 ? 1 : 0));
          if (c(report_layout::pp_sent) != pp_want ||
              c(report_layout::pp_messages) != pp_messages_want ||
              c(report_layout::tp_sent) != tp_want || c(report_layout::tp_only) != 1 ||
              c(report_layout::tp_counted) != tp_want ||
              c(report_layout::tp_calls) != double(2 * blocks_per_stage * std::size_t(M)) ||
              c(report_layout::dp_sent) != dp_want ||
              c(report_layout::dp_reduces) != double(blocks_per_stage * std::size_t(M)) ||
              c(report_layout::dp_other) != 0 || c(report_layout::stashed) != stash_want) {
            char what[320];
            std::snprintf(
                what, sizeof what,
                "traffic or stash off: pp %.0f B in %.0f messages (want %.0f in %.0f), "
                "tp %.0f B (all-reduces %.0f B in %.0f calls, want %.0f B, nothing "
                "else: %s), dp %.0f B (want %.0f, %.0f other calls), stashed %.0f "
                "(want %.0f)",
                c(report_layout::pp_sent), c(report_layout::pp_messages), pp_want, pp_messages_want,
                c(report_layout::tp_sent), c(report_layout::tp_counted), c(report_layout::tp_calls),
                tp_want, c(report_layout::tp_only) == 1 ? "yes" : "NO", c(report_layout::dp_sent),
                dp_want, c(report_layout::dp_other), c(report_layout::stashed), stash_want);
            complain(s, d, t, what);
          }
        }
      }
      const double* last = of(P - 1, d, 0) + lay.losses_at();
      got.insert(got.end(), last, last + M);
    }
    const bool same = !o.compress && got == want;
    if (!o.compress && !same) problems.push_back("the losses differ from the reference's");
    if (out_of_bound)
      problems.push_back(std::to_string(out_of_bound) + " tp sums outside the bound");
    failures += long(problems.size());
    for (const std::string& p : problems)
      std::printf("  MISMATCH at step %d: %s\n", step, p.c_str());
    for (double r : ratio) worst = std::max(worst, r);
    all_counters = {all[lay.counter_at(report_layout::dp_reduces)],
                    all[lay.counter_at(report_layout::dp_gathers)]};
    run_losses.push_back(mean(got));
    ref_losses.push_back(mean(drift));
    const double* r0 = all.data();
    char ratios[32] = "       -        -";
    if (!o.compress) std::snprintf(ratios, sizeof ratios, "%8.4f %8.4f", ratio[0], ratio[1]);
    std::printf("%4d  %.9f  %.9f %s  %-12.9f  %s  %7.0f %7.0f %7.0f%s\n", step, mean(got),
                o.compress ? mean(drift) : mean(want),
                o.compress ? " "
                : same     ? "="
                           : "!",
                mean(drift), ratios, r0[lay.counter_at(report_layout::pp_sent)],
                r0[lay.counter_at(report_layout::dp_sent)],
                r0[lay.counter_at(report_layout::tp_sent)],
                problems.empty() ? "" : "  MISMATCH (see above)");
  }

  // ---- The verdict.
  if (rank == 0) {
    const double part = 2 * std::ceil(double(slice) / o.dp) * sizeof(T);  // a rank's bucket part
    const double* c0 = all_counters.data();
    std::printf(
        "bytes sent per rank and step (measured on every rank and step = the formula):\n"
        "  pp: %d micro-batches x %llu B, once per neighbouring stage (activations forward, "
        "gradients back)\n"
        "  tp: %zu ring all-reduces x 2(tp-1)/tp x %llu B = %.0f\n"
        "  dp: ZeRO's collectives x (dp-1) x %.0f B (a rank's part of a block's bucket); rank 0: "
        "%.0f reduce-scatters + %.0f all-gathers\n",
        M, static_cast<unsigned long long>(sum_bytes), 2 * blocks_per_stage * std::size_t(M),
        static_cast<unsigned long long>(sum_bytes),
        double(2 * blocks_per_stage * std::size_t(M)) * 2.0 * (o.tp - 1) / o.tp * double(sum_bytes),
        part, c0[0], c0[1]);
    bool converged = true;
    if (o.compress) {
      // The last quarter of the steps (at least one), run against the fp32 reference.
      const std::size_t n = run_losses.size(), tail = std::max<std::size_t>(1, n / 4);
      double run = 0, ref = 0;
      for (std::size_t i = n - tail; i < n; ++i) run += run_losses[i], ref += ref_losses[i];
      const double rel = std::abs(run - ref) / ref;
      converged = run / double(tail) <= 0.5 * run_losses.front() && rel <= 0.01;
      std::printf(
          "convergence: first step's loss %.6f, last %zu steps' mean %.6f (must be <= "
          "half the first) against the fp32 reference's %.6f: relative difference "
          "%.2e (must be <= 1e-2)\n",
          run_losses.front(), tail, run / double(tail), ref / double(tail), rel);
      if (!converged) ++failures;
    }
    if (failures == 0) {
      if (o.compress) {
        std::printf(
            "parallel_3d: pp=%d dp=%d tp=%d compressed OK (%d steps, bfloat16 on dp, "
            "converged with the fp32 reference; traffic as the formulas)\n",
            o.pp, o.dp, o.tp, o.steps);
      } else {
        std::printf(
            "parallel_3d: pp=%d dp=%d tp=%d OK (%d steps, %ld tp sums within bound, "
            "worst |diff|/bound %.3f; losses and all ranks' parameters bit-identical to "
            "the one-rank model at every step; traffic as the formulas)\n",
            o.pp, o.dp, o.tp, o.steps, sums_checked, worst);
      }
    } else {
      std::printf("parallel_3d: pp=%d dp=%d tp=%d FAILED (%ld failed checks)\n", o.pp, o.dp, o.tp,
                  failures);
    }
  }
  // Rank 0 decides and has printed before any rank may exit (chorusrun stops the others).
  std::fflush(stdout);
  std::vector<int> verdict{failures == 0 ? 1 : 0};
  chorus::broadcast(world, verdict, 0);
  return verdict[0] ? 0 : 1;
}

template <class Transport>
int run(chorus::communicator<Transport>& world, const options& o, const char* over) {
  if (world.size() != o.pp * o.dp * o.tp) {
    if (world.rank() == 0)
      std::fprintf(stderr, "parallel_3d: the mesh %dx%dx%d needs %d ranks, not %d\n", o.pp, o.dp,
                   o.tp, o.pp * o.dp * o.tp, world.size());
    return 2;
  }
  if (o.compress) {
    return o.zero_stage == 2 ? train<Transport, zero::stage<2>, chorus::bfloat16>(world, o, over)
                             : train<Transport, zero::stage<3>, chorus::bfloat16>(world, o, over);
  }
  return o.zero_stage == 2 ? train<Transport, zero::stage<2>, float>(world, o, over)
                           : train<Transport, zero::stage<3>, float>(world, o, over);
}

}  // namespace

int main(int argc, char** argv) try {
  const options o = parse(argc, argv);
  return examples::with_transport(o.transport, "parallel_3d",
                                  [&](auto& comm, const char* name) { return run(comm, o, name); });
} catch (const std::exception& e) {
  std::fprintf(stderr, "parallel_3d: %s\n", e.what());
  return 1;
}

/// \file
/// pipeline_parallel: a small network cut into one stage per rank and trained with the GPipe
/// and the 1F1B (PipeDream-flush) schedules, over shared memory (or UCX) between processes
/// started by chorusrun.
///
///     chorusrun -n 4 pipeline_parallel [--schedule gpipe|1f1b|both] [--micro-batches M]
///                                      [--steps N] [--stage-ms T] [--transport shm|ucx]
///
/// --transport ucx runs the same program over UCX (when chorus's ucx component was found at
/// build time), e.g. one stage per host.
///
/// The model is 2P dense layers of width 16 (tanh, the last one linear) under a squared
/// error; rank r holds layers 2r and 2r+1. A step splits its batch into M micro-batches.
/// A stage receives a micro-batch's activations from r-1 (`chorus::irecv`, posted one action
/// ahead), runs its layers and sends the result to r+1 (`chorus::isend`: a stage never waits
/// for its successor); gradients flow back from r+1 to r the same way. After the M
/// backwards, whose gradients add up, each stage takes one SGD step on its own layers.
/// GPipe runs all M forwards, then all M backwards, so a stage stashes the activations of M
/// micro-batches. 1F1B runs P-1-r forwards (warm-up), then one forward and one backward in
/// turn, then the backwards left (cool-down): stage r stashes at most P-r.
///
/// Both run the backwards in micro-batch order 0..M-1, like the reference (the unsplit model,
/// trained alongside by every rank alone): every float is computed by the same function from
/// the same floats in the same order, and messages move floats unchanged, so each step's loss
/// and each stage's parameters equal the reference's bit for bit (compared with `==`).
///
/// Compute is simulated: a forward or backward does its real math (microseconds), sleeps
/// until T ms after it began, like a GPU kernel leaving the CPU free, and then sends. Rank 0
/// gathers each slot's (start, end) in ms since the step's barrier, prints the last step's
/// timeline and each step's bubble: the fraction of the step's span (first compute start to
/// last compute end, over all stages) that a stage spends not computing, averaged over the
/// stages. Equal stages take (m+p-1)(t_f+t_b) for m(t_f+t_b) of work each, so the bubble is
/// (p-1)/(m+p-1) for both schedules, whatever t_b/t_f (here both T): 3/11 for p=4, m=8.
/// Each slot also waits for one hand-off of latency L, which adds about (1-bubble) L/T: L
/// is ~0.1 ms on an idle machine, 2-3 ms with every core busy, hence T = 150 in the test.
///
/// Exit status: non-zero if a loss or parameter differs from the reference, if a stage
/// stashed other than M (GPipe) or min(M, P-r) (1F1B) micro-batches, or if a schedule's
/// bubble, averaged over the steps, is more than 10 % off (p-1)/(m+p-1).
#include "../common/transport.hpp"

#include <chorus/chorus.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <map>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

namespace {

using clock_type = std::chrono::steady_clock;
using matrix = std::vector<float>;  // rows x width, row-major

constexpr std::size_t width = 16;  // every layer is width x width
constexpr std::size_t rows = 4;    // samples per micro-batch
constexpr std::size_t layers_per_stage = 2;
constexpr float learning_rate = 0.05f;

struct settings {
  std::string schedule = "both";
  int micro_batches = 8;
  int steps = 3;
  int stage_ms = 20;
  std::string transport = "shm";
};

[[noreturn]] void usage(const char* why) {
  std::fprintf(stderr,
               "pipeline_parallel: %s\nusage: chorusrun -n P pipeline_parallel [--schedule "
               "gpipe|1f1b|both] [--micro-batches M] [--steps N] [--stage-ms T] [--transport "
               "shm|ucx]\n",
               why);
  std::exit(2);
}

settings parse(int argc, char** argv) {
  settings s;
  for (int i = 1; i < argc; i += 2) {
    const std::string_view flag = argv[i];
    if (i + 1 == argc) usage("a flag needs a value");
    if (flag == "--schedule") {
      s.schedule = argv[i + 1];
      if (s.schedule == "gpipe" || s.schedule == "1f1b" || s.schedule == "both") continue;
      usage("--schedule is gpipe, 1f1b or both");
    }
    if (flag == "--transport") {
      s.transport = argv[i + 1];
      if (s.transport == "shm" || s.transport == "ucx") continue;
      usage("--transport is shm or ucx");
    }
    char* end = nullptr;
    const int v = static_cast<int>(std::strtol(argv[i + 1], &end, 10));
    if (*end != '\0' || v < 1 || v > 10000) usage("a value is not a number from 1 to 10000");
    int* field = flag == "--micro-batches" ? &s.micro_batches
                 : flag == "--steps"       ? &s.steps
                 : flag == "--stage-ms"    ? &s.stage_ms
                                           : nullptr;
    if (field == nullptr) usage("unknown argument");
    *field = v;
  }
  return s;
}

/// Uniform in [-1, 1) from a key (splitmix64): the same numbers on every rank.
float uniform(std::uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  x ^= x >> 31;
  return static_cast<float>(static_cast<double>(x >> 11) * 0x1.0p-53 * 2.0 - 1.0);
}

struct layer {
  matrix w, b, gw, gb;  // weights (out x in), bias, and their accumulated gradients
  bool linear = false;  // no tanh: the network's last layer
};

layer make_layer(std::size_t index, bool linear) {
  layer l{matrix(width * width), matrix(width), matrix(width * width), matrix(width), linear};
  for (std::size_t i = 0; i < l.w.size(); ++i) l.w[i] = uniform(index << 32 | i) * 0.5f;
  for (std::size_t j = 0; j < width; ++j) l.b[j] = uniform(index << 32 | (1u << 20) | j) * 0.1f;
  return l;
}

/// y = tanh(W x + b) for each row x of a micro-batch (without tanh for the linear layer).
matrix forward(const layer& l, const matrix& x) {
  matrix y(rows * width);
  for (std::size_t s = 0; s < rows; ++s) {
    for (std::size_t j = 0; j < width; ++j) {
      float z = l.b[j];
      for (std::size_t i = 0; i < width; ++i) z += l.w[j * width + i] * x[s * width + i];
      y[s * width + j] = l.linear ? z : std::tanh(z);
    }
  }
  return y;
}

/// Adds one micro-batch's share to l's gradients, given its input x, output y and dL/dy;
/// returns dL/dx.
matrix backward(layer& l, const matrix& x, const matrix& y, const matrix& dy) {
  matrix dx(rows * width, 0.0f);
  for (std::size_t s = 0; s < rows; ++s) {
    for (std::size_t j = 0; j < width; ++j) {
      const float v = y[s * width + j];
      const float dz = l.linear ? dy[s * width + j] : dy[s * width + j] * (1.0f - v * v);
      l.gb[j] += dz;
      for (std::size_t i = 0; i < width; ++i) {
        l.gw[j * width + i] += dz * x[s * width + i];
        dx[s * width + i] += l.w[j * width + i] * dz;
      }
    }
  }
  return dx;
}

void sgd(layer& l) {
  for (std::size_t i = 0; i < l.w.size(); ++i) l.w[i] -= learning_rate * l.gw[i];
  for (std::size_t j = 0; j < width; ++j) l.b[j] -= learning_rate * l.gb[j];
  std::fill(l.gw.begin(), l.gw.end(), 0.0f);
  std::fill(l.gb.begin(), l.gb.end(), 0.0f);
}

/// Micro-batch `micro` of step `step`: inputs uniform in [-1, 1), targets sin(x reversed).
std::pair<matrix, matrix> micro_batch(int step, int micro) {
  matrix x(rows * width), t(rows * width);
  const std::uint64_t key = std::uint64_t(step) << 40 | std::uint64_t(micro) << 20;
  for (std::size_t i = 0; i < x.size(); ++i) x[i] = uniform(key | i);
  for (std::size_t i = 0; i < t.size(); ++i) t[i] = std::sin(2.0f * x[x.size() - 1 - i]);
  return {x, t};
}

/// This micro-batch's share of the step's mean squared error, and dL/dy into `dy`.
float loss_and_grad(const matrix& y, const matrix& t, int micro_batches, matrix& dy) {
  const float n = static_cast<float>(rows * width) * static_cast<float>(micro_batches);
  float loss = 0;
  dy.resize(y.size());
  for (std::size_t i = 0; i < y.size(); ++i) {
    loss += (y[i] - t[i]) * (y[i] - t[i]) / n;
    dy[i] = 2.0f * (y[i] - t[i]) / n;
  }
  return loss;
}

/// One step of the unsplit model, micro-batch after micro-batch; returns the step's loss.
float reference_step(std::vector<layer>& net, int step, int micro_batches) {
  float loss = 0;
  for (int m = 0; m < micro_batches; ++m) {
    auto [x, t] = micro_batch(step, m);
    std::vector<matrix> acts{x};
    for (const layer& l : net) acts.push_back(forward(l, acts.back()));
    matrix dy;
    loss += loss_and_grad(acts.back(), t, micro_batches, dy);
    for (std::size_t l = net.size(); l-- > 0;) dy = backward(net[l], acts[l], acts[l + 1], dy);
  }
  for (layer& l : net) sgd(l);
  return loss;
}

struct action {
  char kind;  // 'F' forward, 'B' backward
  int micro;
};

/// The order in which stage r of p runs the forwards and backwards of m micro-batches.
std::vector<action> plan(const std::string& schedule, int r, int p, int m) {
  std::vector<action> a;
  if (schedule == "gpipe") {
    for (int i = 0; i < m; ++i) a.push_back({'F', i});
    for (int i = 0; i < m; ++i) a.push_back({'B', i});
    return a;
  }
  const int warm_up = std::min(p - 1 - r, m);
  for (int i = 0; i < warm_up; ++i) a.push_back({'F', i});
  for (int i = 0; i + warm_up < m; ++i) {
    a.push_back({'F', i + warm_up});
    a.push_back({'B', i});
  }
  for (int i = m - warm_up; i < m; ++i) a.push_back({'B', i});
  return a;
}

/// What a stage reports to rank 0 after a step: the most micro-batches it stashed at once,
/// the step's loss (last stage), 1 if its parameters equal the reference's, then from
/// `slots_at` on, (start, end) of each action in plan order, in ms since the step's barrier.
constexpr std::size_t peak_at = 0, loss_at = 1, equal_at = 2, slots_at = 3;
std::size_t report_size(std::size_t actions) { return slots_at + 2 * actions; }

/// Runs one step of stage `comm.rank()` on its layers `mine` following `actions`.
template <class Comm>
std::vector<double> pipeline_step(Comm& comm, std::vector<layer>& mine,
                                  const std::vector<action>& actions, int step, const settings& s) {
  const int r = comm.rank(), p = comm.size(), m = s.micro_batches;
  std::vector<double> report(report_size(actions.size()));
  double* slot = report.data() + slots_at;
  auto tag = [](action a) { return std::uint32_t(2 * a.micro + (a.kind == 'B')); };

  std::map<int, std::vector<matrix>> stash;  // micro-batch -> each layer's input, then output
  std::map<int, matrix> loss_grad;           // last stage: dL/dy from the forward
  float loss = 0;
  // Action k's input arrives in inbox[k % 2]; its receive is posted while action k-1 runs.
  matrix inbox[2];
  chorus::request arrived[2];
  auto post_receive = [&](std::size_t k) {
    if (k >= actions.size()) return;
    const int from = actions[k].kind == 'F' ? r - 1 : r + 1;
    if (from < 0 || from >= p) {  // the first stage's input, the last one's loss
      arrived[k % 2] = {};        // complete
      return;
    }
    inbox[k % 2].assign(rows * width, 0.0f);
    arrived[k % 2] = chorus::irecv(comm, inbox[k % 2], from, tag(actions[k]));
  };
  // Sends in flight, each with the buffer it reads from.
  std::deque<std::pair<matrix, chorus::request>> outbox;
  auto send = [&](matrix data, int to, action a) {
    outbox.emplace_back(std::move(data), chorus::request{});
    outbox.back().second = chorus::isend(comm, outbox.back().first, to, tag(a));
    while (!outbox.empty() && outbox.front().second.test()) outbox.pop_front();
  };

  chorus::barrier(comm);
  const clock_type::time_point t0 = clock_type::now();
  auto ms = [&](clock_type::time_point t) {
    return std::chrono::duration<double, std::milli>(t - t0).count();
  };
  post_receive(0);
  for (std::size_t k = 0; k < actions.size(); ++k) {
    post_receive(k + 1);
    arrived[k % 2].wait();
    const clock_type::time_point start = clock_type::now();
    const action a = actions[k];
    matrix out;  // the activations or gradients for a neighbour, and which one
    int to = -1;
    if (a.kind == 'F') {
      auto [x, t] = micro_batch(step, a.micro);
      std::vector<matrix>& acts = stash[a.micro];
      acts = {r == 0 ? std::move(x) : std::move(inbox[k % 2])};
      for (const layer& l : mine) acts.push_back(forward(l, acts.back()));
      report[peak_at] = std::max(report[peak_at], double(stash.size()));
      if (r == p - 1) {
        loss += loss_and_grad(acts.back(), t, m, loss_grad[a.micro]);
      } else {
        out = acts.back();
        to = r + 1;
      }
    } else {
      matrix dy = r == p - 1 ? std::move(loss_grad[a.micro]) : std::move(inbox[k % 2]);
      const std::vector<matrix>& acts = stash[a.micro];
      for (std::size_t l = mine.size(); l-- > 0;) dy = backward(mine[l], acts[l], acts[l + 1], dy);
      stash.erase(a.micro);
      out = std::move(dy);
      to = r > 0 ? r - 1 : -1;
    }
    // The simulated kernel: its result is ready, and leaves, T ms after it started.
    std::this_thread::sleep_until(start + std::chrono::milliseconds(s.stage_ms));
    slot[2 * k] = ms(start);
    slot[2 * k + 1] = ms(clock_type::now());
    if (to >= 0) send(std::move(out), to, a);
  }
  for (auto& [data, sent] : outbox) sent.wait();
  for (layer& l : mine) sgd(l);
  report[loss_at] = loss;
  return report;
}

/// One untimed exchange with both neighbours (tag 2^30, apart from the steps' 2 micro + 0|1):
/// it starts the progress thread and warms the channels, which otherwise costs the first
/// pipelined step about 15 ms.
template <class Comm>
void warm_up(Comm& comm) {
  const int r = comm.rank(), p = comm.size();
  std::vector<float> out(rows * width), in(rows * width);
  if (p > 1) chorus::sendrecv(comm, out, (r + 1) % p, in, (r + p - 1) % p, 1u << 30);
  if (p > 1) chorus::sendrecv(comm, out, (r + p - 1) % p, in, (r + 1) % p, 1u << 30);
}

/// The timeline of one step, one row per stage: Fn / Bn for the forward / backward of
/// micro-batch n (mod 10), '.' for idle, '-' where a slot ran into a third column; a column
/// stands for half a compute slot.
void print_timeline(const std::vector<double>& all, const std::vector<std::vector<action>>& plans,
                    double end, const settings& s) {
  const std::size_t size = report_size(plans[0].size());
  const double column = s.stage_ms / 2.0;
  std::printf("  timeline (one column = %.0f ms):\n", column);
  for (std::size_t q = 0; q < plans.size(); ++q) {
    const double* slot = all.data() + q * size + slots_at;
    std::string row;
    std::size_t previous = SIZE_MAX;
    int seen = 0;  // columns of the current slot so far
    for (double mid = column / 2; mid < end; mid += column) {
      std::size_t k = 0;
      while (k < plans[q].size() && !(slot[2 * k] <= mid && mid < slot[2 * k + 1])) ++k;
      seen = k == previous ? seen + 1 : 0;
      // a slot that ran a little long covers a third column: '-'
      row += k == plans[q].size() ? '.'
             : seen == 0          ? plans[q][k].kind
             : seen == 1          ? char('0' + plans[q][k].micro % 10)
                                  : '-';
      previous = k;
    }
    std::printf("  stage %zu |%s|\n", q, row.c_str());
  }
}

/// Trains from scratch with one schedule; rank 0 prints every step and the last step's
/// timeline. Returns the bubble averaged over steps (on rank 0), or -1 if a check failed.
template <class Comm>
double train(Comm& comm, const std::string& schedule, const settings& s) {
  const int r = comm.rank(), p = comm.size(), m = s.micro_batches;
  const std::size_t n_layers = layers_per_stage * static_cast<std::size_t>(p);
  std::vector<layer> net, mine;
  for (std::size_t l = 0; l < n_layers; ++l) net.push_back(make_layer(l, l + 1 == n_layers));
  mine.assign(net.begin() + r * layers_per_stage, net.begin() + (r + 1) * layers_per_stage);
  std::vector<std::vector<action>> plans;
  for (int q = 0; q < p; ++q) plans.push_back(plan(schedule, q, p, m));
  const std::size_t size = report_size(plans[0].size());

  if (r == 0) std::printf("\n== %s, %d stages, %d micro-batches ==\n", schedule.c_str(), p, m);
  bool ok = true;
  double bubble_sum = 0;
  for (int step = 1; step <= s.steps; ++step) {
    std::vector<double> report = pipeline_step(comm, mine, plans[r], step, s);
    // The reference step, and the bitwise comparison of this stage's layers with it.
    const float want = reference_step(net, step, m);
    bool equal = true;
    for (std::size_t l = 0; l < layers_per_stage; ++l) {
      const layer& ref = net[r * layers_per_stage + l];
      equal = equal && mine[l].w == ref.w && mine[l].b == ref.b;
    }
    report[equal_at] = equal ? 1 : 0;
    std::vector<double> all(r == 0 ? size * p : 0);
    chorus::gather(comm, report, all, 0);
    if (r != 0) continue;

    // Bubble: per stage, the part of [first start, last end] of the step spent not computing.
    double first = all[slots_at], last = 0, busy = 0;
    int stash_ok = 1, params_ok = 1;
    for (int q = 0; q < p; ++q) {
      const double* rep = all.data() + q * size;
      for (std::size_t k = 0; k < plans[q].size(); ++k) {
        first = std::min(first, rep[slots_at + 2 * k]);
        last = std::max(last, rep[slots_at + 2 * k + 1]);
        busy += rep[slots_at + 2 * k + 1] - rep[slots_at + 2 * k];
      }
      const int allowed = schedule == "gpipe" ? m : std::min(m, p - q);
      stash_ok &= rep[peak_at] == allowed;
      params_ok &= rep[equal_at] == 1;
    }
    const double bubble = 1 - busy / p / (last - first);
    const double got = all[(p - 1) * size + loss_at];
    const bool step_ok = got == double(want) && params_ok && stash_ok;
    std::printf("step %d  loss %.7f  reference %.7f  %s  bubble %.3f  stashed", step, got,
                double(want), step_ok ? "bitwise equal" : "MISMATCH", bubble);
    for (int q = 0; q < p; ++q) std::printf(" %.0f", all[q * size + peak_at]);
    std::printf("\n");
    if (step == s.steps) print_timeline(all, plans, last, s);
    ok = ok && step_ok;
    bubble_sum += bubble;
  }
  return ok ? bubble_sum / s.steps : -1;
}

template <class Comm>
int run(Comm& comm, const settings& s, const char* over) {
  const int p = comm.size(), m = s.micro_batches;
  const double theory = double(p - 1) / (m + p - 1);
  std::string line = "pipeline_parallel: p=" + std::to_string(p) + " m=" + std::to_string(m);
  bool ok = true;
  warm_up(comm);
  for (const std::string schedule : {"gpipe", "1f1b"}) {
    if (s.schedule != "both" && s.schedule != schedule) continue;
    const double bubble = train(comm, schedule, s);
    if (comm.rank() != 0) continue;
    const bool close = p == 1 || std::abs(bubble - theory) <= 0.1 * theory;
    ok = ok && bubble >= 0 && close;
    char part[96];
    std::snprintf(part, sizeof part, " %s bubble %.3f (theory %.3f)", schedule.c_str(), bubble,
                  theory);
    line += part;
  }
  // Rank 0 decides, and prints before any rank can exit (chorusrun then stops the others).
  if (comm.rank() == 0) std::printf("%s %s (over %s)\n", line.c_str(), ok ? "OK" : "FAILED", over);
  std::fflush(stdout);
  std::vector<int> verdict{ok ? 1 : 0};
  chorus::broadcast(comm, verdict, 0);
  return verdict[0] ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) try {
  const settings s = parse(argc, argv);
  return examples::with_transport(s.transport, "pipeline_parallel",
                                  [&](auto& comm, const char* name) { return run(comm, s, name); });
} catch (const std::exception& e) {
  std::fprintf(stderr, "pipeline_parallel: %s\n", e.what());
  return 1;
}

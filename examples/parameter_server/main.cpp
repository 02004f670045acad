/// \file
/// parameter_server: asynchronous data-parallel SGD through parameter servers (DistBelief's
/// Downpour SGD; with a staleness bound, Stale Synchronous Parallel), over shared memory (or
/// UCX) between processes started by chorusrun, checked against synchronous SGD.
///
///     chorusrun -n P parameter_server [--servers S] [--staleness K|none] [--steps N]
///                                     [--in-flight D] [--lr ETA] [--transport shm|ucx]
///                                     [--fault none|drop|shard]
///
/// The problem: L2-regularised logistic regression (convex; lambda = 0.01), d = 64 features,
/// 6144 samples generated from a seed, labels drawn from a logistic model. Ranks 0..S-1 are
/// servers: server s owns the contiguous slice [d s / S, d (s+1) / S) of the weights. The
/// other W = P - S ranks are workers, each with its own 6144 / W samples. Worker w's step t
/// computes the gradient of a minibatch (32 of its samples, drawn from (w, t)) at the newest
/// weights it has, and pushes each slice to its server (`chorus::isend`), stamped with the
/// step and the version of that slice it computed on. A server waits for a push from any
/// worker (`chorus::wait_any` over one `chorus::irecv` per worker), applies it (w -= eta g,
/// eta = 0.05), bumps its version (the number of pushes applied) and answers with its slice:
/// that reply is the pull. The staleness of a push is the server's version when it is applied
/// minus the version it was computed on: the number of other pushes applied in between.
///
/// Downpour (--staleness none): a worker keeps up to D pushes in flight (default 4) and
/// computes on whatever replies have come back; it never waits for other workers.
///
/// SSP (--staleness K): a worker may start step t only when every server has applied every
/// worker's pushes of steps 0..t-K-1. A server's clock is the fewest pushes it has applied
/// from any worker; it holds the reply to a push of step j back until its clock is at least
/// j+1-K, and a worker waits for the replies to its previous push before each step, so it
/// starts step t with clock >= t-K on every server (checked from the clock each reply
/// carries). Then a push of step t was computed on a version holding the worker's own t
/// pushes and at least t-K of every other worker's, and is applied before any other worker
/// can push step t+K+1 (that needs the clock past t): its staleness is at most (W-1)(2K+1),
/// and no worker is more than K+1 pushes ahead of another. K = 0 is lockstep: every push of
/// round t is computed on exactly the weights after round t-1, as in synchronous SGD.
///
/// No wait can hang: every one (wait_any, wait, the collectives) is bounded by the
/// communicator's timeout, set to 20 s. Workers end with a "done" message once every push is
/// answered; a server stops when all its workers are done, and nothing is left in flight.
///
/// The synchronous baseline: the W workers (a subgroup) run N rounds of data-parallel SGD on
/// the same minibatches: each round `chorus::all_reduce`s (sum) their W gradients and applies
/// w -= eta sum, so W N gradients are applied at rate eta, as in the asynchronous run.
///
/// Checks (on rank 0; any failure exits non-zero, naming the check):
/// 1. Bookkeeping. Every server applied exactly N pushes from every worker, in step order;
///    each reply answered the push it was meant for; no staleness is negative; and the bytes
///    all ranks sent (`comm.traffic()`) are W (2N+1) (d + 3S) 8: per worker and server N
///    pushes, N replies and one "done", each with a header of 3 doubles.
/// 2. Conservation. From w = 0, the final weights must be -eta times the sum of every
///    gradient the workers pushed (each worker adds up its own; `all_reduce` sums them). A
///    sum of T terms in any order is within gamma_T sum|terms| of the exact one (Higham,
///    Accuracy and Stability of Numerical Algorithms, sec. 4.2; gamma_T = T u / (1 - T u),
///    u = 2^-53), so the servers' and the workers' sums may differ by 2 gamma_(WN+2) eta
///    sum|g| per weight (~1e-13). A dropped, repeated or misrouted gradient is off by ~1e-3.
/// 3. Staleness. SSP: at most (W-1)(2K+1), workers at most K+1 pushes apart, every step
///    started with clock >= t-K. K = 0: each staleness 0..W-1 exactly N times per server, and
///    the loss equal to the synchronous one within 1e-10 relative: the runs differ only in the
///    order a round's W gradients are added (2e-16 measured).
/// 4. Loss. E = L - L*, the excess over the optimum L* (full-batch gradient descent on rank 0
///    until |grad L|^2 / (2 lambda), a bound on L - L* for a lambda-strongly convex L, is
///    below 1e-12). The asynchronous run can end above the synchronous one for three reasons:
///    - Drift. Without a bound a worker can run ahead; the last updates then come from fewer
///      workers, pulling the weights toward the optimum of their shards (1/W of the data each,
///      not the optimum of all of it). The extreme a bound K allows is the workers taking
///      turns of K+1 steps (Downpour: all N at once); rank 0 runs those, every gradient fresh,
///      each worker last once, and takes the worst, E_turns. SSP K=2 gives E_sync within
///      0.2 %; Downpour's extreme is ~5 E_sync.
///    - Staleness. The full loss is L-smooth (L = lambda_max(X^T X / n) / 4 + lambda = 0.11,
///      power iteration), and s updates move w by at most s eta |g|, so a gradient computed s
///      updates late is off by at most a fraction eta L s of itself: eta L s_mean, with the
///      measured mean staleness (0.06 for Downpour's ~10).
///    - Noise. SGD's final iterate is random: other interleavings of the same minibatches end
///      elsewhere. 0.25: over 100 simulated interleavings (random worker speeds) the worst
///      ended at 0.93 E_turns; over 80 runs under extra load (40 of each ctest) Downpour
///      ended at most at 0.88 E_turns (one with a staleness of 2401), SSP at 1.007 E_sync.
///    So: E_async <= (1.25 + eta L s_mean) max(E_sync, E_turns) + 1e-4 E_0. Also E_async <=
///    E_0 / 4 (it learned), and L* below both runs (the optimum is one).
///
/// --fault drop makes each server skip the gradient of every 10th push (a lost update) and
/// fails check 2 (the loss moves less than its noise: it is as if eta were 10 % smaller);
/// --fault shard makes the workers push each slice shifted by one weight (an off-by-one in
/// the shard offset) and fails checks 2 and 4.
#include "../common/transport.hpp"

#include <chorus/bootstrap/from_env.hpp>
#include <chorus/chorus.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <exception>
#include <numeric>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace {

using clock_type = std::chrono::steady_clock;

// The problem and the optimiser.
constexpr std::size_t features = 64;
constexpr std::size_t samples = 6144;
constexpr std::size_t batch = 32;
constexpr double lambda = 1e-2;  // L2 regularisation: L is lambda-strongly convex

// The messages: a push is {kind, step, version, gradient slice...}, a reply {step answered,
// version, clock, weight slice...}; both have a header of 3 doubles (exact up to 2^53).
constexpr std::uint32_t push_tag = 1, reply_tag = 2;
constexpr std::size_t header = 3;
constexpr double kind_gradient = 0, kind_done = 1;

struct options {
  int servers = 1;
  int staleness = -1;  // -1: none (Downpour)
  int steps = 1200;
  int in_flight = 4;
  double lr = 0.05;  // eta
  std::string transport = "shm";
  std::string fault = "none";
};

[[noreturn]] void usage(const char* why) {
  std::fprintf(stderr,
               "parameter_server: %s\nusage: chorusrun -n P parameter_server [--servers S] "
               "[--staleness K|none] [--steps N] [--in-flight D] [--lr ETA] [--transport shm|ucx] "
               "[--fault none|drop|shard]\n",
               why);
  std::exit(2);
}

options parse(int argc, char** argv) {
  options o;
  for (int i = 1; i < argc; i += 2) {
    const std::string_view flag = argv[i];
    if (i + 1 == argc) usage("a flag needs a value");
    const std::string_view value = argv[i + 1];
    if (flag == "--transport" && (value == "shm" || value == "ucx")) {
      o.transport = value;
    } else if (flag == "--fault" && (value == "none" || value == "drop" || value == "shard")) {
      o.fault = value;
    } else if (flag == "--lr") {
      char* end = nullptr;
      o.lr = std::strtod(argv[i + 1], &end);
      if (*end != '\0' || !(o.lr > 0 && o.lr <= 100)) usage("--lr is a number in (0, 100]");
    } else if (flag == "--staleness" && value == "none") {
      o.staleness = -1;
    } else {
      char* end = nullptr;
      const long v = std::strtol(argv[i + 1], &end, 10);
      int* field = flag == "--servers"     ? &o.servers
                   : flag == "--staleness" ? &o.staleness
                   : flag == "--steps"     ? &o.steps
                   : flag == "--in-flight" ? &o.in_flight
                                           : nullptr;
      if (field == nullptr) usage("unknown argument");
      const long low = flag == "--staleness" ? 0 : 1;
      if (*end != '\0' || v < low || v > 100000) usage("a value is out of range");
      *field = static_cast<int>(v);
    }
  }
  return o;
}

/// 64 random bits from a key (splitmix64): the same numbers on every rank.
std::uint64_t mix(std::uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

/// Uniform in [0, 1) from stream `stream`, element `i`.
double uniform(std::uint64_t stream, std::uint64_t i) {
  return static_cast<double>(mix(stream << 40 | i) >> 11) * 0x1.0p-53;
}

/// The data set: sample i is x[i * features ...], label y[i] = +-1. Every rank generates all
/// of it (rank 0 evaluates the full loss); a worker trains on its own samples only.
struct problem {
  std::vector<double> x, y;
};

problem make_problem() {
  problem p{std::vector<double>(samples * features), std::vector<double>(samples)};
  std::vector<double> truth(features);  // weights of the model the labels come from
  for (std::size_t j = 0; j < features; ++j) truth[j] = uniform(1, j) - 0.5;
  for (std::size_t i = 0; i < samples; ++i) {
    double margin = 0;
    for (std::size_t j = 0; j < features; ++j) {
      p.x[i * features + j] = 2 * uniform(2, i * features + j) - 1;
      margin += p.x[i * features + j] * truth[j];
    }
    p.y[i] = uniform(3, i) < 1 / (1 + std::exp(-margin)) ? 1 : -1;
  }
  return p;
}

/// log(1 + e^-z) without overflow.
double softplus_neg(double z) {
  return z > 0 ? std::log1p(std::exp(-z)) : -z + std::log1p(std::exp(z));
}

/// The full-data loss (1/n) sum log(1 + e^(-y x.w)) + lambda/2 |w|^2, and its gradient into
/// `grad` when given.
double loss(const problem& p, std::span<const double> w, std::vector<double>* grad = nullptr) {
  double sum = 0;
  if (grad != nullptr) grad->assign(features, 0.0);
  for (std::size_t i = 0; i < samples; ++i) {
    const double* x = &p.x[i * features];
    double z = 0;
    for (std::size_t j = 0; j < features; ++j) z += x[j] * w[j];
    z *= p.y[i];
    sum += softplus_neg(z);
    if (grad == nullptr) continue;
    const double c = -p.y[i] / (1 + std::exp(z)) / samples;
    for (std::size_t j = 0; j < features; ++j) (*grad)[j] += c * x[j];
  }
  double norm2 = 0;
  for (std::size_t j = 0; j < features; ++j) {
    norm2 += w[j] * w[j];
    if (grad != nullptr) (*grad)[j] += lambda * w[j];
  }
  return sum / samples + lambda / 2 * norm2;
}

/// Worker `worker` of `workers`: its samples are [begin, end).
std::pair<std::size_t, std::size_t> samples_of(int worker, int workers) {
  const auto w = static_cast<std::size_t>(worker), n = static_cast<std::size_t>(workers);
  return {samples * w / n, samples * (w + 1) / n};
}

/// The gradient of worker `worker`'s minibatch of step `step` at `w`, into `g`: the same
/// minibatch in the synchronous and the asynchronous run.
void minibatch_gradient(const problem& p, std::span<const double> w, int worker, int workers,
                        int step, std::vector<double>& g) {
  const auto [begin, end] = samples_of(worker, workers);
  g.assign(features, 0.0);
  for (std::size_t k = 0; k < batch; ++k) {
    const std::uint64_t key = (std::uint64_t(worker) << 32 | std::uint64_t(step)) * batch + k;
    const std::size_t i = begin + mix(key) % (end - begin);
    const double* x = &p.x[i * features];
    double z = 0;
    for (std::size_t j = 0; j < features; ++j) z += x[j] * w[j];
    const double c = -p.y[i] / (1 + std::exp(p.y[i] * z)) / batch;
    for (std::size_t j = 0; j < features; ++j) g[j] += c * x[j];
  }
  for (std::size_t j = 0; j < features; ++j) g[j] += lambda * w[j];
}

/// The optimum by full-batch gradient descent with backtracking (Armijo), until
/// |grad|^2 / (2 lambda) -- a bound on L(w) - L* -- is below 1e-12. Returns {L*, that bound,
/// iterations}.
struct optimum {
  double loss, bound;
  int iterations;
};

optimum solve(const problem& p) {
  std::vector<double> w(features, 0.0), g, trial(features);
  double step = 1, value = loss(p, w, &g);
  for (int it = 1; it <= 5000; ++it) {
    double g2 = 0;
    for (double v : g) g2 += v * v;
    if (g2 / (2 * lambda) < 1e-12) return {value, g2 / (2 * lambda), it};
    step *= 2;
    for (;;) {
      for (std::size_t j = 0; j < features; ++j) trial[j] = w[j] - step * g[j];
      const double next = loss(p, trial);
      if (next <= value - step / 2 * g2) break;
      step /= 2;
    }
    w = trial;
    value = loss(p, w, &g);
  }
  return {value, 1, -1};  // not converged: reported, and check 4 fails
}

/// The smoothness constant of the loss: L = lambda_max(X^T X / n) / 4 + lambda (the logistic
/// loss curves at most 1/4), lambda_max by power iteration.
double smoothness(const problem& p) {
  std::vector<double> v(features, 1.0), next(features);
  double top = 0;
  for (int it = 0; it < 100; ++it) {
    next.assign(features, 0.0);
    for (std::size_t i = 0; i < samples; ++i) {
      const double* x = &p.x[i * features];
      double z = 0;
      for (std::size_t j = 0; j < features; ++j) z += x[j] * v[j];
      for (std::size_t j = 0; j < features; ++j) next[j] += z * x[j] / samples;
    }
    double norm = 0;
    for (double e : next) norm += e * e;
    top = std::sqrt(norm);  // |X^T X v / n| with |v| = 1: tends to lambda_max from below
    for (std::size_t j = 0; j < features; ++j) v[j] = next[j] / top;
  }
  return top / 4 + lambda;
}

/// The worst loss of the extreme interleavings a staleness bound allows: the workers take
/// turns, `block` steps at a time (K+1 under SSP, all N under Downpour), the turns ending
/// with each worker in turn; every gradient at the current weights.
double worst_interleaving(const problem& p, const options& o, int workers) {
  const int block = o.staleness < 0 ? o.steps : std::min(o.staleness + 1, o.steps);
  double worst = 0;
  std::vector<double> w, g;
  for (int last = 0; last < workers; ++last) {
    w.assign(features, 0.0);
    for (int from = 0; from < o.steps; from += block) {
      for (int q = 1; q <= workers; ++q) {
        const int worker = (last + q) % workers;
        for (int t = from; t < std::min(from + block, o.steps); ++t) {
          minibatch_gradient(p, w, worker, workers, t, g);
          for (std::size_t j = 0; j < features; ++j) w[j] -= o.lr * g[j];
        }
      }
    }
    worst = std::max(worst, loss(p, w));
  }
  return worst;
}

/// Server s of `servers` owns the weights [begin, end).
std::pair<std::size_t, std::size_t> slice_of(int s, int servers) {
  const auto i = static_cast<std::size_t>(s), n = static_cast<std::size_t>(servers);
  return {features * i / n, features * (i + 1) / n};
}

/// What each rank reports to rank 0 after the asynchronous run (integers, gathered).
/// Counters first, then pushes applied per rank (servers), then the staleness histogram.
enum counter : std::size_t {
  out_of_order,    // server: a push or "done" out of step order; worker: a reply that
                   // answered another push than the next one
  negative,        // server: a push computed on a version the server had not reached
  ssp_violations,  // worker: a step started with a server's clock < t - K
  replies_held,    // server: replies held back by the staleness bound
  waited,          // worker: waits for a reply that was not in yet
  staleness_max,   // server
  staleness_sum,   // server
  apart,           // server: most minus fewest pushes applied from any two workers
  sent_bytes,      // this rank's bytes sent during the asynchronous run
  counters
};
constexpr std::size_t histogram_size = 1024;  // staleness 0..1022, then 1023 and more

struct report {
  std::vector<std::int64_t> v;
  int ranks;
  explicit report(int p)
      : v(counters + static_cast<std::size_t>(p) + histogram_size, 0), ranks(p) {}
  std::int64_t& operator[](counter c) { return v[c]; }
  std::int64_t& applied_from(int rank) { return v[counters + static_cast<std::size_t>(rank)]; }
  std::int64_t& histogram(std::int64_t s) {
    const auto i = static_cast<std::size_t>(std::min<std::int64_t>(s, histogram_size - 1));
    return v[counters + static_cast<std::size_t>(ranks) + i];
  }
};

/// A server's loop: apply pushes from any worker until every worker said "done".
template <class Comm>
void serve(Comm& comm, const options& o, std::vector<double>& slice, report& rep) {
  const int S = o.servers, W = comm.size() - S;
  const std::size_t len = slice.size();
  // One receive posted per worker; `order` lists the workers still pushing, the one served
  // longest ago first (wait_any returns the first complete request in the list).
  std::vector<std::vector<double>> inbox(W, std::vector<double>(header + len));
  std::vector<chorus::request> arrived(W);
  std::vector<int> order(W);
  for (int w = 0; w < W; ++w) {
    arrived[w] = chorus::irecv(comm, inbox[w], S + w, push_tag);
    order[w] = w;
  }
  std::vector<std::int64_t> applied(W, 0);        // pushes applied per worker
  std::vector<std::deque<std::int64_t>> held(W);  // steps whose reply is not sent yet
  std::deque<std::pair<std::vector<double>, chorus::request>> outbox;  // replies in flight
  std::int64_t version = 0, pushes = 0;
  std::vector<chorus::request> waiting;

  // Sends every reply the staleness bound lets go: the reply to a push of step j once the
  // clock (every worker's pushes of steps < clock applied) is at least j + 1 - K.
  auto release = [&] {
    const std::int64_t clock = *std::min_element(applied.begin(), applied.end());
    for (int w = 0; w < W; ++w) {
      while (!held[w].empty() && (o.staleness < 0 || clock >= held[w].front() + 1 - o.staleness)) {
        std::vector<double> reply(header + len);
        reply[0] = static_cast<double>(held[w].front());
        reply[1] = static_cast<double>(version);
        reply[2] = static_cast<double>(clock);
        std::copy(slice.begin(), slice.end(), reply.begin() + header);
        outbox.emplace_back(std::move(reply), chorus::request{});
        outbox.back().second = chorus::isend(comm, outbox.back().first, S + w, reply_tag);
        held[w].pop_front();
      }
    }
    while (!outbox.empty() && outbox.front().second.test()) outbox.pop_front();
  };

  while (!order.empty()) {
    waiting.clear();
    for (int w : order) waiting.push_back(arrived[w]);
    const std::size_t k = chorus::wait_any(waiting);  // bounded: fails at the comm's timeout
    const int w = order[k];
    order.erase(order.begin() + static_cast<std::ptrdiff_t>(k));
    const std::vector<double>& m = inbox[w];
    const auto step = static_cast<std::int64_t>(m[1]);
    if (m[0] == kind_done) {  // no more pushes from w: its receive is not posted again
      if (step != o.steps || applied[w] != o.steps || !held[w].empty()) ++rep[out_of_order];
      continue;
    }
    if (step != applied[w]) ++rep[out_of_order];
    const std::int64_t staleness = version - static_cast<std::int64_t>(m[2]);
    if (staleness < 0) ++rep[negative];
    ++rep.histogram(std::max<std::int64_t>(staleness, 0));
    rep[staleness_max] = std::max(rep[staleness_max], staleness);
    rep[staleness_sum] += staleness;
    const bool drop = o.fault == "drop" && ++pushes % 10 == 0;
    for (std::size_t j = 0; j < len && !drop; ++j) slice[j] -= o.lr * m[header + j];
    ++version;
    ++applied[w];
    held[w].push_back(step);
    arrived[w] = chorus::irecv(comm, inbox[w], S + w, push_tag);
    order.push_back(w);
    const auto [fewest, most] = std::minmax_element(applied.begin(), applied.end());
    rep[apart] = std::max(rep[apart], *most - *fewest);
    release();
    if (!held[w].empty()) ++rep[replies_held];
  }
  for (const auto& [reply, sent] : outbox) sent.wait();
  for (int w = 0; w < W; ++w) rep.applied_from(S + w) = applied[w];
}

/// A worker's loop: N steps of compute, push, and absorb replies. Adds every gradient it
/// pushed, and their magnitudes, into `pushed` and `magnitude` (check 2).
template <class Comm>
void work(Comm& comm, const options& o, const problem& p, std::vector<double>& pushed,
          std::vector<double>& magnitude, report& rep) {
  const int S = o.servers, W = comm.size() - S, me = comm.rank() - S;
  // At most `window` pushes without their reply per server; SSP waits for the previous one.
  const int window = o.staleness < 0 ? o.in_flight : 1;
  struct slot {
    std::vector<double> push, reply;
    chorus::request sent, received;
  };
  std::vector<std::vector<slot>> slots(S, std::vector<slot>(window));  // [server][push % window]
  std::vector<double> w(features, 0.0), g;  // the newest weights the replies brought
  std::vector<std::int64_t> version(S, 0), clock(S, 0), replied(S, 0);

  // Takes the reply to push `replied[s]` from server s into w: waits for it if `block`,
  // else only if it is in already. Returns whether it took one.
  auto absorb = [&](int s, bool block) {
    const slot& sl = slots[s][replied[s] % window];
    if (!sl.received.test()) {
      if (!block) return false;
      ++rep[waited];
      sl.received.wait();  // bounded: fails at the communicator's timeout
    }
    if (static_cast<std::int64_t>(sl.reply[0]) != replied[s]) ++rep[out_of_order];
    version[s] = static_cast<std::int64_t>(sl.reply[1]);
    clock[s] = static_cast<std::int64_t>(sl.reply[2]);
    std::copy(sl.reply.begin() + header, sl.reply.end(), w.begin() + slice_of(s, S).first);
    ++replied[s];
    return true;
  };

  for (int t = 0; t < o.steps; ++t) {
    for (int s = 0; s < S; ++s) {
      while (replied[s] < t - window + 1) absorb(s, true);  // the window's oldest reply
      while (replied[s] < t && absorb(s, false)) {          // and whatever else is in
      }
      if (o.staleness >= 0 && clock[s] < t - o.staleness) ++rep[ssp_violations];
    }
    minibatch_gradient(p, w, me, W, t, g);
    for (std::size_t j = 0; j < features; ++j) {
      pushed[j] += g[j];
      magnitude[j] += std::abs(g[j]);
    }
    for (int s = 0; s < S; ++s) {
      const auto [begin, end] = slice_of(s, S);
      slot& sl = slots[s][t % window];
      sl.sent.wait();  // push t - window's send: complete, since its reply came
      sl.push.assign(header + end - begin, 0.0);
      sl.push[0] = kind_gradient;
      sl.push[1] = t;
      sl.push[2] = static_cast<double>(version[s]);
      const std::size_t shift = o.fault == "shard" ? 1 : 0;  // the off-by-one of --fault shard
      for (std::size_t j = begin; j < end; ++j)
        sl.push[header + j - begin] = g[(j + shift) % features];
      sl.reply.assign(header + end - begin, 0.0);
      sl.received = chorus::irecv(comm, sl.reply, s, reply_tag);
      sl.sent = chorus::isend(comm, sl.push, s, push_tag);
    }
  }
  for (int s = 0; s < S; ++s) {
    while (replied[s] < o.steps) absorb(s, true);
  }
  // "done" to every server, once every push is answered.
  std::vector<std::vector<double>> done(S);
  std::vector<chorus::request> sends;
  for (int s = 0; s < S; ++s) {
    for (const slot& sl : slots[s]) sl.sent.wait();
    const auto [begin, end] = slice_of(s, S);
    done[s].assign(header + end - begin, 0.0);
    done[s][0] = kind_done;
    done[s][1] = o.steps;
    done[s][2] = static_cast<double>(version[s]);
    sends.push_back(chorus::isend(comm, done[s], s, push_tag));
  }
  chorus::wait_all(sends);
}

/// The synchronous baseline: the workers' subgroup all-reduces their W gradients each round.
/// Returns the final weights on every rank, and the workers' bytes sent.
template <class Comm>
std::vector<double> train_synchronously(Comm& comm, const options& o, const problem& p,
                                        std::uint64_t& sent) {
  const int S = o.servers, W = comm.size() - S;
  std::vector<int> workers(W);
  std::iota(workers.begin(), workers.end(), S);
  auto group = comm.subgroup(workers);  // collective over comm; nullopt on the servers
  std::vector<double> w(features, 0.0), g;
  if (group) {
    for (int t = 0; t < o.steps; ++t) {
      minibatch_gradient(p, w, comm.rank() - S, W, t, g);
      chorus::all_reduce(*group, g, chorus::plus{});
      for (std::size_t j = 0; j < features; ++j) w[j] -= o.lr * g[j];
    }
    sent = group->traffic().sent_bytes;
  }
  chorus::broadcast(comm, w, S);  // rank 0, a server, evaluates the loss
  return w;
}

double seconds_since(clock_type::time_point t) {
  return std::chrono::duration<double>(clock_type::now() - t).count();
}

/// Staleness statistics from the servers' histogram and the sum of all stalenesses.
struct staleness_stats {
  std::int64_t count = 0, min = -1, median = 0, p99 = 0;
  double mean = 0;
};

staleness_stats summarise(const std::vector<std::int64_t>& h, std::int64_t sum) {
  staleness_stats st;
  for (std::int64_t c : h) st.count += c;
  std::int64_t seen = 0;
  for (std::size_t s = 0; s < h.size(); ++s) {
    if (h[s] == 0) continue;
    if (st.min < 0) st.min = static_cast<std::int64_t>(s);
    if (seen < (st.count + 1) / 2 && seen + h[s] >= (st.count + 1) / 2)
      st.median = static_cast<std::int64_t>(s);
    if (seen < (st.count * 99 + 99) / 100 && seen + h[s] >= (st.count * 99 + 99) / 100)
      st.p99 = static_cast<std::int64_t>(s);
    seen += h[s];
  }
  st.mean = static_cast<double>(sum) / static_cast<double>(std::max<std::int64_t>(st.count, 1));
  return st;
}

struct timings {
  double sync_seconds, async_seconds;
  std::uint64_t sync_bytes;
};

/// Rank 0: prints what the runs did and checks it (the header comment's 1-4). `all` holds
/// every rank's report, `pushed` the sums of the pushed gradients and of their magnitudes.
bool verify(const options& o, const problem& data, int W, const std::vector<std::int64_t>& all,
            const std::vector<double>& pushed, const std::vector<double>& w_sync,
            const std::vector<double>& w_async, const timings& took) {
  const int S = o.servers, P = S + W;
  const std::int64_t N = o.steps, K = o.staleness;
  const std::size_t size = all.size() / static_cast<std::size_t>(P);
  auto at = [&](int r) { return all.data() + static_cast<std::size_t>(r) * size; };
  std::int64_t total[counters] = {}, most_stale = 0, most_apart = 0;
  std::vector<std::int64_t> hist(histogram_size, 0);
  bool counts_ok = true;
  for (int r = 0; r < P; ++r) {
    for (std::size_t c = 0; c < counters; ++c) total[c] += at(r)[c];
    most_stale = std::max(most_stale, at(r)[staleness_max]);
    most_apart = std::max(most_apart, at(r)[apart]);
    if (r >= S) continue;
    for (int w = 0; w < W; ++w) counts_ok = counts_ok && at(r)[counters + S + w] == N;
    for (std::size_t i = 0; i < histogram_size; ++i) hist[i] += at(r)[counters + P + i];
  }
  const staleness_stats st = summarise(hist, total[staleness_sum]);

  std::printf(
      "synchronous:  %lld rounds of all_reduce over the %d workers, %lld gradients "
      "applied, %.2f s, %llu bytes sent (%.0f per worker per round)\n",
      static_cast<long long>(N), W, static_cast<long long>(W * N), took.sync_seconds,
      static_cast<unsigned long long>(took.sync_bytes),
      static_cast<double>(took.sync_bytes) / static_cast<double>(W * N));
  const auto message_bytes = static_cast<std::int64_t>((features + header * S) * sizeof(double));
  const std::int64_t expected_bytes = W * (2 * N + 1) * message_bytes;
  std::printf(
      "asynchronous: %lld pushes applied, %.2f s, %lld bytes sent (W (2N+1) (d + 3S) 8 "
      "= %lld), %lld replies held back by the bound, %lld waits for a reply\n",
      static_cast<long long>(st.count), took.async_seconds,
      static_cast<long long>(total[sent_bytes]), static_cast<long long>(expected_bytes),
      static_cast<long long>(total[replies_held]), static_cast<long long>(total[waited]));
  for (int s = 0; s < S; ++s) {
    std::printf("  server %d applied, per worker:", s);
    for (int w = 0; w < W; ++w)
      std::printf(" %lld", static_cast<long long>(at(s)[counters + S + w]));
    std::printf("\n");
  }
  std::printf("workers apart (most minus fewest pushes applied, on any server): at most %lld",
              static_cast<long long>(most_apart));
  if (K >= 0) std::printf(" (bound K+1 = %lld)", static_cast<long long>(K + 1));
  std::printf(
      "\nstaleness seen by the servers: min %lld  median %lld  mean %.2f  p99 %lld  max %lld",
      static_cast<long long>(st.min), static_cast<long long>(st.median), st.mean,
      static_cast<long long>(st.p99), static_cast<long long>(most_stale));
  const std::int64_t bound = (W - 1) * (2 * K + 1);
  if (K >= 0) std::printf("  (bound (W-1)(2K+1) = %lld)", static_cast<long long>(bound));
  std::printf("\n  counts:");
  for (std::size_t lo = 0; lo < histogram_size; lo = lo == 0 ? 1 : 2 * lo) {
    const std::size_t hi = lo == 0 ? 1 : std::min(2 * lo, histogram_size);
    std::int64_t c = 0;
    for (std::size_t i = lo; i < hi; ++i) c += hist[i];
    if (c == 0) continue;
    if (hi - lo == 1) {
      std::printf(" [%zu] %lld", lo, static_cast<long long>(c));
    } else {
      std::printf(" [%zu-%zu] %lld", lo, hi - 1, static_cast<long long>(c));
    }
  }
  std::printf("\n");

  // 2. Conservation: T = W N terms per weight on both sides, plus the two products by lr.
  const double T = static_cast<double>(W * N) + 2, u = 0x1.0p-53, gamma = T * u / (1 - T * u);
  double worst = 0;
  std::size_t off = 0;
  for (std::size_t j = 0; j < features; ++j) {
    const double tol = 2 * gamma * o.lr * pushed[features + j];
    const double diff = std::abs(w_async[j] + o.lr * pushed[j]);
    if (diff > tol) ++off;
    if (tol > 0) worst = std::max(worst, diff / tol);
  }
  std::printf(
      "conservation: %zu of %zu weights differ from -lr sum(pushed g) by more than "
      "2 gamma_T lr sum|g| (worst: %.3g of it)\n",
      off, features, worst);

  // 4. Losses.
  const double L0 = loss(data, std::vector<double>(features, 0.0));
  const double Ls = loss(data, w_sync), La = loss(data, w_async);
  const optimum opt = solve(data);
  const double Lt = worst_interleaving(data, o, W);
  const double Es = Ls - opt.loss, Ea = La - opt.loss, E0 = L0 - opt.loss, Et = Lt - opt.loss;
  const double smooth = smoothness(data);
  const double factor = 1 + 0.25 + o.lr * smooth * st.mean;
  const double allowed = factor * std::max(Es, Et) + 1e-4 * E0;
  std::printf(
      "loss: initial %.6f  synchronous %.6f  asynchronous %.6f (difference %.1e)  "
      "optimum %.6f (%d steps of gradient descent, within %.0e)\n",
      L0, Ls, La, La - Ls, opt.loss, opt.iterations, opt.bound);
  std::printf(
      "excess over the optimum: synchronous %.3e  workers in turns of %lld steps %.3e  "
      "asynchronous %.3e <= (1.25 + lr L mean staleness = %.3f) * %.3e + 1e-4 E_0 = "
      "%.3e (L = %.3f)\n",
      Es, static_cast<long long>(K < 0 ? N : std::min(K + 1, N)), Et, Ea, factor, std::max(Es, Et),
      allowed, smooth);

  const bool lockstep_ok = [&] {  // K = 0: one push of each staleness 0..W-1 per round
    for (std::size_t i = 0; i < histogram_size; ++i)
      if (hist[i] != (i < static_cast<std::size_t>(W) ? N * S : 0)) return false;
    return std::abs(La - Ls) <= 1e-10 * Ls;
  }();
  struct check {
    bool pass;
    const char* what;
  };
  const check checks[] = {
      {counts_ok, "every server applied N pushes from every worker"},
      {total[out_of_order] == 0, "pushes, replies and done messages in step order"},
      {total[negative] == 0, "no push computed on a version its server had not reached"},
      {total[sent_bytes] == expected_bytes, "bytes sent = W (2N+1) (d + 3S) 8"},
      {off == 0, "final weights = -lr * sum of the pushed gradients, within rounding"},
      {K < 0 || most_stale <= bound, "staleness within (W-1)(2K+1)"},
      {K < 0 || most_apart <= K + 1, "workers within K+1 pushes of each other"},
      {total[ssp_violations] == 0, "every step started with clock >= t - K on every server"},
      {K != 0 || lockstep_ok, "K = 0: staleness 0..W-1 once per round, loss = synchronous"},
      {opt.iterations > 0 && La >= opt.loss - 1e-12 && Ls >= opt.loss - 1e-12,
       "the optimum is below both runs"},
      {Ea <= allowed, "asynchronous excess loss within the margin"},
      {Ea <= E0 / 4, "asynchronous run closed 3/4 of the initial gap"},
  };
  bool ok = true;
  for (const check& c : checks) {
    if (!c.pass) std::printf("FAILED: %s\n", c.what);
    ok = ok && c.pass;
  }
  const std::string k = K < 0 ? "none" : std::to_string(K);
  if (ok) {
    std::printf(
        "parameter_server: S=%d W=%d staleness %s: %lld pushes, staleness max %lld, "
        "loss %.6f vs synchronous %.6f, bytes exact, gradients conserved: OK\n",
        S, W, k.c_str(), static_cast<long long>(st.count), static_cast<long long>(most_stale), La,
        Ls);
  } else {
    std::printf("parameter_server: S=%d W=%d staleness %s: FAILED\n", S, W, k.c_str());
  }
  return ok;
}

template <class Comm>
int run(Comm& comm, const options& o, const char* over) {
  const int P = comm.size(), S = o.servers, W = P - S, rank = comm.rank();
  if (S < 1 || W < 1) {
    std::fprintf(stderr, "parameter_server: %d ranks cannot hold %d servers and a worker\n", P, S);
    return 2;
  }
  // Every wait below (wait_any, wait, the collectives) fails with errc::timeout after 20 s
  // without progress, instead of hanging.
  comm.set_timeout(std::chrono::seconds(20));
  const problem data = make_problem();
  const std::string mode = o.staleness < 0
                               ? "no staleness bound (Downpour, " + std::to_string(o.in_flight) +
                                     " pushes in flight per worker)"
                               : "staleness bound " + std::to_string(o.staleness) + " (SSP)";
  if (rank == 0) {
    std::printf(
        "parameter_server: %d server%s + %d workers over %s; logistic regression, %zu "
        "features, %zu samples (%zu per worker), batch %zu, lr %g, L2 %g; %d steps per "
        "worker; %s\n",
        S, S > 1 ? "s" : "", W, over, features, samples, samples / static_cast<std::size_t>(W),
        batch, o.lr, lambda, o.steps, mode.c_str());
  }

  // 1. The synchronous baseline.
  chorus::barrier(comm);
  clock_type::time_point start = clock_type::now();
  std::uint64_t sync_sent = 0;
  const std::vector<double> w_sync = train_synchronously(comm, o, data, sync_sent);
  const double sync_seconds = seconds_since(start);

  // 2. The asynchronous run.
  report rep(P);
  std::vector<double> pushed(2 * features, 0.0);  // sum of pushed gradients, then of |g|
  const auto [begin, end] = rank < S ? slice_of(rank, S) : std::pair<std::size_t, std::size_t>{};
  std::vector<double> slice(end - begin, 0.0);
  chorus::barrier(comm);
  start = clock_type::now();
  const std::uint64_t before = comm.traffic().sent_bytes;
  if (rank < S) {
    serve(comm, o, slice, rep);
  } else {
    std::vector<double> sum(features, 0.0), magnitude(features, 0.0);
    work(comm, o, data, sum, magnitude, rep);
    std::copy(sum.begin(), sum.end(), pushed.begin());
    std::copy(magnitude.begin(), magnitude.end(), pushed.begin() + features);
  }
  rep[sent_bytes] = static_cast<std::int64_t>(comm.traffic().sent_bytes - before);
  chorus::barrier(comm);
  const double async_seconds = seconds_since(start);

  // 3. Everything to rank 0: the weights, the pushed sums, the reports.
  std::vector<double> w_async(features);
  std::vector<std::size_t> counts(P, 0);
  for (int s = 0; s < S; ++s) counts[s] = slice_of(s, S).second - slice_of(s, S).first;
  chorus::all_gather_v(comm, slice, w_async, counts);
  chorus::all_reduce(comm, pushed, chorus::plus{});
  std::vector<std::uint64_t> sync_bytes{sync_sent};
  chorus::all_reduce(comm, sync_bytes, chorus::plus{});
  std::vector<std::int64_t> all(rank == 0 ? rep.v.size() * P : 0);
  chorus::gather(comm, rep.v, all, 0);

  bool ok = true;
  if (rank == 0) {
    const timings took{sync_seconds, async_seconds, sync_bytes[0]};
    ok = verify(o, data, W, all, pushed, w_sync, w_async, took);
  }
  // chorusrun stops every rank once one exits non-zero: wait until rank 0 has printed.
  std::fflush(stdout);
  std::vector<int> verdict{ok ? 1 : 0};
  chorus::broadcast(comm, verdict, 0);
  return verdict[0] == 1 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) try {
  const options o = parse(argc, argv);
  return examples::with_transport(o.transport, "parameter_server",
                                  [&](auto& comm, const char* name) { return run(comm, o, name); });
} catch (const std::exception& e) {
  std::fprintf(stderr, "parameter_server: %s\n", e.what());
  return 1;
}

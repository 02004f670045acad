/// \file
/// expert_parallel: a mixture-of-experts layer (GShard, Switch Transformer) with its experts
/// spread over the ranks, between processes started by chorusrun, checked against the same
/// layer on one rank.
///
///     chorusrun -n P expert_parallel [--steps N] [--tokens T] [--experts-per-rank K]
///                                    [--capacity-factor F] [--require-drops]
///                                    [--transport shm|ucx]
///
/// --transport ucx runs the same program over UCX (when chorus's ucx component was found at
/// build time), e.g. one rank per host.
///
/// The layer (moe.hpp): E = P K experts, each a ReLU MLP model 16 -> hidden 32 -> model 16;
/// expert e lives on rank e / K. A router (x Wr, softmax) is replicated on every rank. Each
/// rank has its own T tokens (data parallel outside the experts) and routes each one to its
/// top-1 expert; the gate is that expert's probability and out = x + gate * expert(x).
/// Tokens are fresh at every step, so the load changes from step to step.
///
/// Capacity. Each expert takes at most C = ceil(F N / E) tokens per step, N = P T the
/// tokens of all ranks: one limit per expert for the whole global batch, Switch's
/// "tokens per batch / experts x capacity factor". When more tokens choose an expert, the
/// first C in (rank, position) order win; the others are dropped and pass the residual only
/// (out = x). An owner decides, so nobody needs everyone's counts:
///   1. `chorus::all_to_all` of counts: rank s tells each owner how many of its tokens chose
///      each of the owner's experts;
///   2. the owner grants slots in rank order and answers, by a second `all_to_all`, how
///      many of s's tokens each expert keeps and how many chose it in all (the loads the
///      balance loss needs);
///   3. `chorus::all_to_all_v` sends the kept tokens (model floats each), packed by expert
///      and position, to their owners; the experts compute; a second `all_to_all_v` brings
///      the outputs back in the same order.
/// Backward, `all_to_all_v` carries gate * d loss / d out to the experts (their weights
/// are updated on their owner) and the gradients of their inputs back to the tokens' ranks.
/// The router's gradient is a sum over all tokens: `chorus::all_reduce` of the ranks' sums.
/// So a step moves 4 x (kept tokens that change rank) x model x 4 bytes by all_to_all_v;
/// each rank adds up `comm.last_traffic()` after each call and checks its own share.
///
/// The loss is the mean squared error against a teacher, tanh(x A), plus Switch's balance
/// loss alpha E sum_e f_e P_e (alpha = 0.01; f_e the fraction of tokens whose top-1 is e,
/// before capacity; P_e the mean router probability of e). Printed per step: both losses,
/// E sum_e f_e P_e ("balance": 1 for a uniform router, E when all go to one expert), the
/// tokens that chose each expert, the tokens dropped, and the all_to_all_v bytes of all ranks.
///
/// The check. Every rank also trains the whole layer alone: all ranks' tokens, all experts,
/// the routing and capacity rule applied in one pass over the tokens in (rank, position)
/// order (not the owners' grants: a second implementation of the rule). The two runs do
/// the same float operations in the same order (moe.hpp calls the same functions on the
/// same rows in the same order), except the router's gradient: there each rank sums its T
/// tokens' terms and the all-reduce adds the P sums, where the reference sums all N terms in
/// one loop. Any order of summing n floats is within gamma_(n-1) sum |t_k| of the exact sum
/// (Higham, Accuracy and Stability of Numerical Algorithms, 2nd ed., sec. 4.2; gamma_m =
/// m u / (1 - m u), u = 2^-24), so the two may differ by 2 gamma_(N-1) sum |t_k|, computed per
/// element from the terms. As in examples/tensor_parallel the reference runs in lockstep:
/// it checks the all-reduced gradient against its own within that bound, then goes on with
/// the all-reduced one. Everything else must then be equal exactly: each token's expert,
/// gate and kept/dropped fate, the tokens per expert and the drops, the outputs and the
/// gradients of the layer's input (bit for bit), each step's loss (the ranks' parts are
/// moved by `chorus::all_gather`, which is exact, and added in rank order, as the reference
/// adds its own), and at the end every expert's weights on its owner and the router's on
/// every rank. Each rank also checks the bytes of every all_to_all_v against the counts.
/// With --require-drops a run in which no token was dropped fails, as it did not test the
/// capacity path. A failed check on any rank exits non-zero.
#include "../common/transport.hpp"
#include "moe.hpp"

#include <chorus/bootstrap/from_env.hpp>
#include <chorus/chorus.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <numeric>
#include <string>
#include <string_view>
#include <vector>

namespace {

using namespace ep_example;
constexpr std::uint64_t seed = 2025;
/// The loss averages over N x model elements, so its gradients are small and the rate large.
/// Losses of single steps jump with the fresh tokens; over 60 steps at 4 ranks the mean of
/// ten steps' losses falls from 0.48 to 0.38 (and the router concentrates: balance 1.00 to
/// 1.15, drops 16 to 34 a step, as Switch's small alpha does not hold it).
constexpr float lr = 10.0f;
constexpr double alpha = 0.01;  ///< Switch Transformer's weight of the balance loss

struct options {
  int steps = 6;
  std::size_t tokens = 32;
  std::size_t experts_per_rank = 2;
  double capacity_factor = 1.0;
  bool require_drops = false;
  std::string transport = "shm";
};

[[noreturn]] void usage() {
  std::fprintf(stderr,
               "usage: chorusrun -n P expert_parallel [--steps N] [--tokens T] "
               "[--experts-per-rank K] [--capacity-factor F] [--require-drops] "
               "[--transport shm|ucx]\n");
  std::exit(2);
}

options parse(int argc, char** argv) {
  options o;
  for (int i = 1; i < argc; ++i) {
    const std::string_view flag = argv[i];
    if (flag == "--require-drops") {
      o.require_drops = true;
      continue;
    }
    if (i + 1 >= argc) usage();
    const char* value = argv[++i];
    char* end = nullptr;
    if (flag == "--transport") {
      if (std::string_view(value) != "shm" && std::string_view(value) != "ucx") usage();
      o.transport = value;
    } else if (flag == "--capacity-factor") {
      o.capacity_factor = std::strtod(value, &end);
      if (*end != '\0' || !(o.capacity_factor > 0 && o.capacity_factor <= 64)) usage();
    } else {
      const long n = std::strtol(value, &end, 10);
      if (*end != '\0' || n < 1 || n > 4096) usage();
      if (flag == "--steps") {
        o.steps = static_cast<int>(n);
      } else if (flag == "--tokens") {
        o.tokens = static_cast<std::size_t>(n);
      } else if (flag == "--experts-per-rank" && n <= 16) {
        o.experts_per_rank = static_cast<std::size_t>(n);
      } else {
        usage();
      }
    }
  }
  return o;
}

/// The rows `index` of m, in that order; and the reverse, rows of m set from `rows`.
matrix rows_of(const matrix& m, const std::vector<std::size_t>& index) {
  matrix r(index.size(), m.cols);
  for (std::size_t k = 0; k < index.size(); ++k) std::copy_n(m.row(index[k]), m.cols, r.row(k));
  return r;
}
void put_rows(matrix& m, const std::vector<std::size_t>& index, const matrix& rows) {
  for (std::size_t k = 0; k < index.size(); ++k) std::copy_n(rows.row(k), m.cols, m.row(index[k]));
}

/// What the layer's size is in this run.
struct setup {
  dims d;
  std::size_t ranks, per_rank, tokens, all_tokens, capacity;
};

/// A rank's part of the loss: its squared error, then its sum of each expert's probability.
std::vector<double> loss_part(double squared_error, const routing& r) {
  std::vector<double> part{squared_error};
  part.insert(part.end(), r.prob_sum.begin(), r.prob_sum.end());
  return part;
}
/// The loss of a step from every rank's part, added in rank order (`parts`: P parts one after
/// the other): the mean squared error plus alpha times the balance quantity E sum_e f_e P_e.
struct step_loss {
  double loss, balance;
};
step_loss total_loss(const setup& s, const std::vector<double>& parts,
                     const std::vector<std::uint64_t>& routed) {
  const std::size_t E = s.d.experts, stride = 1 + E;
  const double n = static_cast<double>(s.all_tokens);
  double se = 0, balance = 0;
  for (std::size_t q = 0; q < s.ranks; ++q) se += parts[q * stride];
  for (std::size_t e = 0; e < E; ++e) {
    double p = 0;
    for (std::size_t q = 0; q < s.ranks; ++q) p += parts[q * stride + 1 + e];
    balance += static_cast<double>(routed[e]) / n * (p / n);
  }
  balance *= static_cast<double>(E);
  return {se / (n * static_cast<double>(s.d.model)) + alpha * balance, balance};
}

/// One step of the distributed layer on this rank, for the checks and the printout.
struct ep_step {
  routing r;
  std::vector<char> kept;
  std::vector<std::uint64_t> routed;  ///< per expert, all ranks' tokens (from the owners)
  std::vector<std::uint64_t> filled;  ///< per expert of this rank: tokens it computed
  matrix out, dx;                     ///< this rank's outputs and input gradients
  matrix dwr;                         ///< the all-reduced router gradient
  double squared_error = 0;
  chorus::traffic moved, expected;  ///< by the four all_to_all_v, and by the formula
};

/// This rank's part of the layer: the router and its own K experts.
struct ep_model {
  matrix router;
  std::vector<expert> experts;
};

/// Forward, backward and SGD update of one step on this rank (see the file comment).
template <class Comm>
ep_step train_ep(Comm& comm, ep_model& m, const setup& s, const batch& b) {
  const std::size_t P = s.ranks, K = s.per_rank, E = s.d.experts, D = s.d.model;
  const std::size_t me = static_cast<std::size_t>(comm.rank()), T = s.tokens;
  ep_step st;
  st.r = route(m.router, b.x);

  // 1. Count exchange: routed[q K + j] of my tokens chose expert q K + j, rank q's j-th;
  //    after the all_to_all (K counts to each rank), asked[s K + j] of rank s's tokens
  //    chose my j-th expert.
  std::vector<std::uint64_t> asked(E);
  chorus::all_to_all(comm, st.r.routed, asked);
  // 2. Each of my experts grants its C slots in rank order. The answer to rank s holds, per
  //    expert j: how many of s's tokens it keeps, and how many tokens chose it in all.
  std::vector<std::uint64_t> answer(2 * E), granted(2 * E);
  st.filled.assign(K, 0);
  for (std::size_t j = 0; j < K; ++j) {
    std::uint64_t chose = 0;
    for (std::size_t q = 0; q < P; ++q) chose += asked[q * K + j];
    for (std::size_t q = 0; q < P; ++q) {
      const std::uint64_t keep =
          std::min<std::uint64_t>(asked[q * K + j], s.capacity - st.filled[j]);
      st.filled[j] += keep;
      answer[2 * (q * K + j)] = keep;
      answer[2 * (q * K + j) + 1] = chose;
    }
  }
  chorus::all_to_all(comm, answer, granted);  // granted[2e], granted[2e + 1]: expert e's

  // 3. My kept tokens: expert e's first granted[2e] in position order. Packed by expert
  //    (so by owner) and position; send[q] tokens go to rank q, recv[q] come from it.
  st.kept.assign(T, 0);
  st.routed.assign(E, 0);
  std::vector<std::size_t> packed, send(P), recv(P);
  for (std::size_t e = 0; e < E; ++e) {
    st.routed[e] = granted[2 * e + 1];
    std::uint64_t left = granted[2 * e];
    for (std::size_t t = 0; t < T && left > 0; ++t) {
      if (st.r.choice[t] != e) continue;
      st.kept[t] = 1;
      packed.push_back(t);
      ++send[e / K];
      --left;
    }
  }
  // My expert j's rows in the arriving buffer: rank 0's block, then rank 1's, ...; each
  // block holds expert 0's rows, then expert 1's.
  std::vector<std::vector<std::size_t>> rows(K);
  std::size_t at = 0;
  for (std::size_t q = 0; q < P; ++q) {
    for (std::size_t j = 0; j < K; ++j) {
      const std::uint64_t keep = answer[2 * (q * K + j)];
      recv[q] += keep;
      for (std::uint64_t i = 0; i < keep; ++i) rows[j].push_back(at++);
    }
  }
  std::vector<std::size_t> send_floats(P), recv_floats(P);
  for (std::size_t q = 0; q < P; ++q) {
    send_floats[q] = send[q] * D;
    recv_floats[q] = recv[q] * D;
    if (q == me) continue;  // the own block is a copy, no traffic
    st.expected.sent_bytes += 2 * (send[q] + recv[q]) * D * sizeof(float);
    st.expected.received_bytes += 2 * (send[q] + recv[q]) * D * sizeof(float);
  }
  // There (dispatch: to the experts) and back (combine: to the tokens' ranks).
  const auto there = [&](const matrix& from, matrix& to) {
    to = matrix(at, D);
    chorus::all_to_all_v(comm, from.v, send_floats, to.v, recv_floats);
    st.moved += comm.last_traffic();
  };
  const auto back = [&](const matrix& from, matrix& to) {
    to = matrix(packed.size(), D);
    chorus::all_to_all_v(comm, from.v, recv_floats, to.v, send_floats);
    st.moved += comm.last_traffic();
  };

  // 4. Dispatch, the experts, combine.
  matrix arrived, y_rows(at, D), returned;
  there(rows_of(b.x, packed), arrived);
  std::vector<expert_pass> pass;
  for (std::size_t j = 0; j < K; ++j) {
    pass.push_back(expert_forward(m.experts[j], rows_of(arrived, rows[j])));
    put_rows(y_rows, rows[j], pass[j].y);
  }
  back(y_rows, returned);
  matrix y(T, D);
  put_rows(y, packed, returned);
  st.out = combine(b.x, st.r, st.kept, y);
  st.squared_error = squared_error(st.out, b.target);

  // 5. Backward: gate * dout to the experts, their input gradients back.
  const matrix dout = output_grad(st.out, b.target, s.all_tokens);
  matrix dy_rows, dx_rows(at, D), dx_back;
  there(rows_of(expert_output_grad(st.r, st.kept, dout), packed), dy_rows);
  std::vector<expert> grad(K);
  for (std::size_t j = 0; j < K; ++j) {
    matrix dx_j;
    expert_backward(m.experts[j], pass[j], rows_of(dy_rows, rows[j]), grad[j], dx_j);
    put_rows(dx_rows, rows[j], dx_j);
  }
  back(dx_rows, dx_back);
  matrix dx_expert(T, D), dlogits;
  put_rows(dx_expert, packed, dx_back);
  router_backward(m.router, st.r, st.kept, dout, y, dx_expert,
                  balance_coefficients(st.routed, s.all_tokens, alpha), dlogits, st.dx);

  // 6. The router's gradient: my tokens' sum, then the sum over the ranks.
  st.dwr = matrix(D, E);
  add_product(st.dwr, b.x, true, dlogits, false);
  chorus::all_reduce(comm, st.dwr.v, chorus::plus{});

  // 7. SGD: the router on every rank (the same gradient everywhere), experts on their owner.
  sgd(m.router, st.dwr, lr);
  for (std::size_t j = 0; j < K; ++j) {
    sgd(m.experts[j].w1, grad[j].w1, lr);
    sgd(m.experts[j].w2, grad[j].w2, lr);
  }
  return st;
}

/// The whole layer on one rank: every rank's tokens, every expert.
struct reference {
  matrix router;
  std::vector<expert> experts;
  // One step's results:
  std::vector<routing> r;                   ///< per rank
  std::vector<std::vector<char>> kept;      ///< per rank
  std::vector<matrix> out, dx;              ///< per rank
  std::vector<double> squared_error;        ///< per rank
  std::vector<std::uint64_t> routed, load;  ///< per expert: chose it, computed by it
  std::vector<expert> grad;                 ///< per expert
  matrix dwr;                               ///< the router's gradient, summed in one loop
  std::vector<double> magnitude;            ///< per element of dwr: sum |terms|
};

/// Forward and backward of one step of the reference (the update is `update`, after the
/// lockstep check of the router gradient).
void reference_pass(reference& ref, const setup& s, const std::vector<batch>& batches) {
  const std::size_t P = s.ranks, E = s.d.experts, D = s.d.model, T = s.tokens;
  ref.r.clear();
  ref.routed.assign(E, 0);
  ref.load.assign(E, 0);
  for (std::size_t q = 0; q < P; ++q) {
    ref.r.push_back(route(ref.router, batches[q].x));
    for (std::size_t e = 0; e < E; ++e) ref.routed[e] += ref.r[q].routed[e];
  }
  // Capacity in one pass over the global batch in (rank, position) order; expert e's rows
  // are its kept tokens in that order.
  ref.kept.assign(P, std::vector<char>(T, 0));
  std::vector<std::vector<std::pair<std::size_t, std::size_t>>> tokens_of(E);
  for (std::size_t q = 0; q < P; ++q) {
    for (std::size_t t = 0; t < T; ++t) {
      const std::size_t e = ref.r[q].choice[t];
      if (ref.load[e] == s.capacity) continue;  // dropped
      ++ref.load[e];
      ref.kept[q][t] = 1;
      tokens_of[e].emplace_back(q, t);
    }
  }
  const auto gather = [&](const std::vector<matrix>& per_rank, std::size_t e) {
    matrix m(tokens_of[e].size(), D);
    for (std::size_t k = 0; k < tokens_of[e].size(); ++k)
      std::copy_n(per_rank[tokens_of[e][k].first].row(tokens_of[e][k].second), D, m.row(k));
    return m;
  };
  const auto scatter = [&](std::vector<matrix>& per_rank, std::size_t e, const matrix& m) {
    for (std::size_t k = 0; k < tokens_of[e].size(); ++k)
      std::copy_n(m.row(k), D, per_rank[tokens_of[e][k].first].row(tokens_of[e][k].second));
  };

  std::vector<matrix> x(P), y(P, matrix(T, D)), dy(P), dx_expert(P, matrix(T, D));
  for (std::size_t q = 0; q < P; ++q) x[q] = batches[q].x;
  std::vector<expert_pass> pass;
  for (std::size_t e = 0; e < E; ++e) {
    pass.push_back(expert_forward(ref.experts[e], gather(x, e)));
    scatter(y, e, pass[e].y);
  }
  ref.out.clear();
  ref.squared_error.clear();
  std::vector<matrix> dout;
  for (std::size_t q = 0; q < P; ++q) {
    ref.out.push_back(combine(x[q], ref.r[q], ref.kept[q], y[q]));
    ref.squared_error.push_back(squared_error(ref.out[q], batches[q].target));
    dout.push_back(output_grad(ref.out[q], batches[q].target, s.all_tokens));
    dy[q] = expert_output_grad(ref.r[q], ref.kept[q], dout[q]);
  }
  ref.grad.assign(E, expert{});
  for (std::size_t e = 0; e < E; ++e) {
    matrix dx_e;
    expert_backward(ref.experts[e], pass[e], gather(dy, e), ref.grad[e], dx_e);
    scatter(dx_expert, e, dx_e);
  }
  // The router: per rank as the distributed run does, but its weight gradient as one sum
  // over all N tokens, with the magnitude of its terms for the bound.
  const std::vector<float> coefficient = balance_coefficients(ref.routed, s.all_tokens, alpha);
  matrix all_x(s.all_tokens, D), all_dlogits(s.all_tokens, E);
  ref.dx.assign(P, matrix{});
  for (std::size_t q = 0; q < P; ++q) {
    matrix dlogits;
    router_backward(ref.router, ref.r[q], ref.kept[q], dout[q], y[q], dx_expert[q], coefficient,
                    dlogits, ref.dx[q]);
    std::copy(x[q].v.begin(), x[q].v.end(), all_x.v.begin() + static_cast<long>(q * T * D));
    std::copy(dlogits.v.begin(), dlogits.v.end(),
              all_dlogits.v.begin() + static_cast<long>(q * T * E));
  }
  ref.dwr = matrix(D, E);
  ref.magnitude.assign(D * E, 0.0);
  add_product(ref.dwr, all_x, true, all_dlogits, false, &ref.magnitude);
}

void update(reference& ref) {
  sgd(ref.router, ref.dwr, lr);
  for (std::size_t e = 0; e < ref.experts.size(); ++e) {
    sgd(ref.experts[e].w1, ref.grad[e].w1, lr);
    sgd(ref.experts[e].w2, ref.grad[e].w2, lr);
  }
}

bool same_bits(const matrix& a, const matrix& b) {
  return a.v.size() == b.v.size() &&
         std::memcmp(a.v.data(), b.v.data(), a.v.size() * sizeof(float)) == 0;
}
bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

void print_header(const setup& s, const options& o, const char* over) {
  const std::size_t P = s.ranks, E = s.d.experts, D = s.d.model;
  std::printf(
      "expert_parallel: %zu rank%s over %s; %zu experts (%zu per rank, MLP %zu-%zu-%zu), router "
      "%zux%zu replicated; %zu tokens per rank, %zu per step; top-1, capacity factor %g -> %zu "
      "tokens per expert per step, first come in (rank, position) order; %d SGD steps, lr %g, "
      "balance loss weight %g\n",
      P, P == 1 ? "" : "s", over, E, s.per_rank, D, s.d.hidden, D, D, E, s.tokens, s.all_tokens,
      o.capacity_factor, s.capacity, o.steps, static_cast<double>(lr), alpha);
  std::printf(
      "router gradient bound per element: 2 gamma_(N-1) sum|terms|, N = %zu, gamma_m = m u / "
      "(1 - m u), u = 2^-24\n",
      s.all_tokens);
  std::printf("%4s  %-26s  %7s  %-*s  %7s  %8s  %s\n", "", "loss", "", static_cast<int>(4 * E),
              "tokens that chose expert", "", "dWr", "all_to_all_v");
  std::printf("%4s  %-11s  %-13s %7s ", "step", "ep run", "1 rank", "balance");
  for (std::size_t e = 0; e < E; ++e) std::printf(" %3zu", e);
  std::printf("  %7s  %8s  %s\n", "dropped", "diff/bnd", "bytes, all ranks");
}

template <class Comm>
int run(Comm& comm, const options& o, const char* over) {
  const auto P = static_cast<std::size_t>(comm.size());
  const auto me = static_cast<std::size_t>(comm.rank());
  setup s{.d = {.model = 16, .hidden = 32, .experts = P * o.experts_per_rank},
          .ranks = P,
          .per_rank = o.experts_per_rank,
          .tokens = o.tokens,
          .all_tokens = P * o.tokens,
          .capacity = 0};
  s.capacity = static_cast<std::size_t>(std::ceil(
      o.capacity_factor * static_cast<double>(s.all_tokens) / static_cast<double>(s.d.experts)));
  const std::size_t E = s.d.experts, K = s.per_rank;

  ep_model mine{make_router(s.d, seed), {}};
  reference ref;
  ref.router = make_router(s.d, seed);
  for (std::size_t j = 0; j < K; ++j) mine.experts.push_back(make_expert(s.d, seed, me * K + j));
  for (std::size_t e = 0; e < E; ++e) ref.experts.push_back(make_expert(s.d, seed, e));

  long failures = 0;
  const auto fail = [&](int step, const std::string& what) {
    ++failures;
    std::fprintf(stderr, "expert_parallel: rank %zu step %d: %s\n", me, step, what.c_str());
  };
  std::vector<std::uint64_t> routed_total(E), kept_total(E), computed_by(P);
  std::uint64_t dropped_total = 0;
  double worst = 0;
  long sums = 0;
  if (me == 0) print_header(s, o, over);

  for (int step = 1; step <= o.steps; ++step) {
    std::vector<batch> batches;
    for (std::size_t q = 0; q < P; ++q)
      batches.push_back(make_batch(s.d, seed, static_cast<std::size_t>(step), q, s.tokens));
    const ep_step st = train_ep(comm, mine, s, batches[me]);
    reference_pass(ref, s, batches);

    // Routing, capacity and loads: exactly the reference's.
    if (st.r.choice != ref.r[me].choice || !same_bits(st.r.gate, ref.r[me].gate))
      fail(step, "a token's expert or gate differs from the reference");
    if (st.kept != ref.kept[me]) fail(step, "the dropped tokens differ from the reference");
    if (st.routed != ref.routed) fail(step, "the tokens per expert differ from the reference");
    for (std::size_t j = 0; j < K; ++j)
      if (st.filled[j] != ref.load[me * K + j])
        fail(step, "expert " + std::to_string(me * K + j) + "'s load differs from the reference");
    for (std::size_t e = 0; e < E; ++e)
      if (ref.load[e] != std::min<std::uint64_t>(ref.routed[e], s.capacity))
        fail(step, "expert " + std::to_string(e) + " computed other than min(chosen, capacity)");
    // Outputs and input gradients: bit for bit.
    if (!same_bits(st.out, ref.out[me])) fail(step, "the output differs from the reference");
    if (!same_bits(st.dx, ref.dx[me]))
      fail(step, "the gradient of the layer's input differs from the reference");
    // The router gradient: within the bound; then the reference goes on with the all-reduced
    // one.
    const double nu = static_cast<double>(s.all_tokens - 1) * 0x1.0p-24, gamma = nu / (1 - nu);
    double ratio = 0;
    std::size_t beyond = 0;
    for (std::size_t i = 0; i < st.dwr.v.size(); ++i, ++sums) {
      const double diff = std::abs(static_cast<double>(st.dwr.v[i]) - ref.dwr.v[i]);
      const double bound = 2 * gamma * ref.magnitude[i];
      if (diff > bound) ++beyond;
      if (bound > 0) ratio = std::max(ratio, diff / bound);
    }
    if (beyond > 0)
      fail(step, std::to_string(beyond) +
                     " elements of the all-reduced router gradient are "
                     "beyond the bound from the reference's");
    worst = std::max(worst, ratio);
    ref.dwr = st.dwr;
    update(ref);
    // The four all_to_all_v moved 4 x (kept tokens that change rank) x model floats.
    if (st.moved.sent_bytes != st.expected.sent_bytes ||
        st.moved.received_bytes != st.expected.received_bytes)
      fail(step, "comm.last_traffic() of the all_to_all_v calls: sent " +
                     std::to_string(st.moved.sent_bytes) + " received " +
                     std::to_string(st.moved.received_bytes) + " bytes, expected " +
                     std::to_string(st.expected.sent_bytes) + " each");

    // The loss from every rank's part in rank order, and the reference's from its own.
    const std::vector<double> part = loss_part(st.squared_error, st.r);
    std::vector<double> parts(part.size() * P), ref_parts;
    chorus::all_gather(comm, part, parts);
    for (std::size_t q = 0; q < P; ++q) {
      const std::vector<double> own = loss_part(ref.squared_error[q], ref.r[q]);
      ref_parts.insert(ref_parts.end(), own.begin(), own.end());
    }
    const step_loss loss = total_loss(s, parts, st.routed);
    const step_loss loss_ref = total_loss(s, ref_parts, ref.routed);
    if (loss.loss != loss_ref.loss) fail(step, "the loss differs from the reference");
    std::vector<std::uint64_t> bytes{st.moved.sent_bytes}, all_bytes(P);
    chorus::all_gather(comm, bytes, all_bytes);

    std::uint64_t dropped = 0;
    for (std::size_t e = 0; e < E; ++e) {
      dropped += ref.routed[e] - ref.load[e];
      routed_total[e] += ref.routed[e];
      kept_total[e] += ref.load[e];
      computed_by[e / K] += ref.load[e];
    }
    dropped_total += dropped;
    if (me == 0) {
      std::printf("%4d  %.9f  %.9f %s %7.3f ", step, loss.loss, loss_ref.loss,
                  loss.loss == loss_ref.loss ? "=" : "!", loss.balance);
      for (std::size_t e = 0; e < E; ++e)
        std::printf(" %3llu", static_cast<unsigned long long>(st.routed[e]));
      std::printf("  %7llu  %8.4f  %llu\n", static_cast<unsigned long long>(dropped), ratio,
                  static_cast<unsigned long long>(
                      std::accumulate(all_bytes.begin(), all_bytes.end(), std::uint64_t{0})));
    }
  }

  // The final weights: my experts and the router as the reference has them, and the router
  // the same on every rank.
  for (std::size_t j = 0; j < K; ++j)
    if (!same_bits(mine.experts[j].w1, ref.experts[me * K + j].w1) ||
        !same_bits(mine.experts[j].w2, ref.experts[me * K + j].w2))
      fail(o.steps,
           "expert " + std::to_string(me * K + j) + "'s final weights differ from the reference's");
  if (!same_bits(mine.router, ref.router))
    fail(o.steps, "the router's final weights differ from the reference's");
  const std::size_t w = mine.router.v.size();
  std::vector<float> routers(P * w);
  chorus::all_gather(comm, mine.router.v, routers);
  for (std::size_t q = 0; q < P; ++q)
    if (std::memcmp(routers.data() + q * w, mine.router.v.data(), w * sizeof(float)) != 0)
      fail(o.steps, "rank " + std::to_string(q) + "'s router differs from this rank's");
  if (o.require_drops && dropped_total == 0)
    fail(o.steps,
         "no token was dropped, so the capacity path went untested "
         "(--require-drops; lower --capacity-factor)");

  std::vector<long> failed{failures};  // any rank's failure fails every rank
  chorus::all_reduce(comm, failed, chorus::plus{});
  if (me == 0) {
    std::printf("load over %d steps (capacity %zu tokens per expert per step):\n", o.steps,
                s.capacity);
    for (std::size_t e = 0; e < E; ++e)
      std::printf(
          "  expert %zu on rank %zu: %4llu tokens chose it, %4llu computed, %3llu dropped\n", e,
          e / K, static_cast<unsigned long long>(routed_total[e]),
          static_cast<unsigned long long>(kept_total[e]),
          static_cast<unsigned long long>(routed_total[e] - kept_total[e]));
    std::printf("tokens computed by each rank's experts:");
    for (std::size_t q = 0; q < P; ++q)
      std::printf(" %llu", static_cast<unsigned long long>(computed_by[q]));
    std::printf("\n");
    if (failed[0] == 0) {
      std::printf(
          "expert_parallel: %zu ranks x %zu experts OK (%d steps, %llu of %zu tokens dropped; "
          "routing, loads, outputs, input gradients, losses and weights bit-identical to one "
          "rank; %ld router-gradient sums within bound, worst |diff|/bound %.3f)\n",
          P, K, o.steps, static_cast<unsigned long long>(dropped_total),
          s.all_tokens * static_cast<std::size_t>(o.steps), sums, worst);
    } else {
      std::printf("expert_parallel: %zu ranks x %zu experts FAILED (%ld failed checks)\n", P, K,
                  failed[0]);
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
  return examples::with_transport(o.transport, "expert_parallel",
                                  [&](auto& comm, const char* name) { return run(comm, o, name); });
} catch (const std::exception& e) {
  std::fprintf(stderr, "expert_parallel: %s\n", e.what());
  return 1;
}

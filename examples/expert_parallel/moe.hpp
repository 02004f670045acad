#pragma once
/// \file
/// The mixture-of-experts layer of the expert-parallel example, in plain loops: a router
/// (a linear layer and a softmax, top-1), experts that are 2-layer ReLU MLPs, the
/// combination out = x + gate * expert(x), a mean squared error against a fixed teacher,
/// and Switch Transformer's load-balancing quantity.
///
/// The code is cut where expert parallelism cuts it. The *token side* (`route`, `combine`,
/// `output_grad`, `router_backward`, ...) works on one rank's batch; the *expert side*
/// (`expert_forward`, `expert_backward`) works on the rows one expert was given, in the
/// order it was given them. The distributed run and the one-rank reference call the same
/// functions on the same rows in the same order; only the way the rows reach an expert
/// differs (`chorus::all_to_all_v` against a copy in memory). So every float they compute is
/// the same, except the router's weight gradient, which is a sum over the tokens of all
/// ranks (main.cpp checks it within a bound).
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace ep_example {

/// splitmix64, and a float uniform in [-1, 1) from a key: the same numbers on every rank.
inline std::uint64_t mix(std::uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}
inline float uniform(std::uint64_t key) {
  return static_cast<float>(static_cast<double>(mix(key) >> 11) * 0x1.0p-53 * 2.0 - 1.0);
}

/// A rows x cols matrix of floats, row-major.
struct matrix {
  std::size_t rows = 0, cols = 0;
  std::vector<float> v;
  matrix() = default;
  matrix(std::size_t r, std::size_t c) : rows(r), cols(c), v(r * c, 0.0f) {}
  float& operator()(std::size_t r, std::size_t c) { return v[r * cols + c]; }
  float operator()(std::size_t r, std::size_t c) const { return v[r * cols + c]; }
  float* row(std::size_t r) { return v.data() + r * cols; }
  [[nodiscard]] const float* row(std::size_t r) const { return v.data() + r * cols; }
};

/// out += op(x) op(w), op transposing where asked. Each element adds its terms in ascending
/// order of the inner index and, given `magnitude`, their absolute values there too.
inline void add_product(matrix& out, const matrix& x, bool tx, const matrix& w, bool tw,
                        std::vector<double>* magnitude = nullptr) {
  const std::size_t inner = tx ? x.rows : x.cols;
  for (std::size_t r = 0; r < out.rows; ++r) {
    for (std::size_t c = 0; c < out.cols; ++c) {
      float sum = out(r, c);
      double mag = 0;
      for (std::size_t k = 0; k < inner; ++k) {
        const float term = (tx ? x(k, r) : x(r, k)) * (tw ? w(c, k) : w(k, c));
        sum += term;
        mag += std::abs(static_cast<double>(term));
      }
      out(r, c) = sum;
      if (magnitude) (*magnitude)[r * out.cols + c] += mag;
    }
  }
}

/// w -= lr * g, element by element.
inline void sgd(matrix& w, const matrix& g, float lr) {
  for (std::size_t i = 0; i < w.v.size(); ++i) w.v[i] -= lr * g.v[i];
}

struct dims {
  std::size_t model = 16;   ///< width of a token
  std::size_t hidden = 32;  ///< hidden units of an expert
  std::size_t experts = 8;  ///< E
};

/// What a seeded number belongs to (the top byte of its key).
enum stream : std::uint64_t { router_init, expert_w1, expert_w2, token, teacher };
inline std::uint64_t key(std::uint64_t seed, stream s, std::uint64_t a, std::uint64_t b) {
  return mix(mix(seed ^ (s << 56)) ^ (a << 24)) ^ b;
}

/// The router's weights (model x experts), uniform in +-1/sqrt(model); replicated on every rank.
inline matrix make_router(const dims& d, std::uint64_t seed) {
  matrix w(d.model, d.experts);
  const float scale = 1.0f / std::sqrt(static_cast<float>(d.model));
  for (std::size_t i = 0; i < w.v.size(); ++i)
    w.v[i] = scale * uniform(key(seed, router_init, 0, i));
  return w;
}

/// An expert: y = relu(x W1) W2, W1 model x hidden, W2 hidden x model.
struct expert {
  matrix w1, w2;
  expert() = default;
  explicit expert(const dims& d) : w1(d.model, d.hidden), w2(d.hidden, d.model) {}
};
/// Expert e's initial weights (whichever rank builds it): uniform in +-1/sqrt(fan-in).
inline expert make_expert(const dims& d, std::uint64_t seed, std::size_t e) {
  expert x(d);
  const float s1 = 1.0f / std::sqrt(static_cast<float>(d.model));
  const float s2 = 1.0f / std::sqrt(static_cast<float>(d.hidden));
  for (std::size_t i = 0; i < x.w1.v.size(); ++i)
    x.w1.v[i] = s1 * uniform(key(seed, expert_w1, e, i));
  for (std::size_t i = 0; i < x.w2.v.size(); ++i)
    x.w2.v[i] = s2 * uniform(key(seed, expert_w2, e, i));
  return x;
}

/// One rank's tokens at one step (fresh ones at every step) and their targets: tokens
/// uniform in [-1, 1), targets tanh(x A) for a fixed teacher A.
struct batch {
  matrix x, target;
};
inline batch make_batch(const dims& d, std::uint64_t seed, std::size_t step, std::size_t rank,
                        std::size_t tokens) {
  const std::size_t D = d.model;
  batch b{matrix(tokens, D), matrix(tokens, D)};
  matrix a(D, D);
  for (std::size_t i = 0; i < a.v.size(); ++i)
    a.v[i] = 1.5f / std::sqrt(static_cast<float>(D)) * uniform(key(seed, teacher, 0, i));
  for (std::size_t t = 0; t < tokens; ++t)
    for (std::size_t i = 0; i < D; ++i)
      b.x(t, i) = uniform(key(seed, token, (step << 20) + rank, t * D + i));
  add_product(b.target, b.x, false, a, false);
  for (float& y : b.target.v) y = std::tanh(y);
  return b;
}

/// The router's decision for each token of a batch: the softmax of x Wr, the chosen expert
/// (the largest probability, the lowest index among equals) and its probability, the gate.
struct routing {
  matrix probs;                       ///< tokens x experts
  std::vector<std::size_t> choice;    ///< per token
  std::vector<float> gate;            ///< per token: probs(t, choice[t])
  std::vector<std::uint64_t> routed;  ///< per expert: how many tokens chose it
  std::vector<double> prob_sum;       ///< per expert: the sum of its probability over tokens
};
inline routing route(const matrix& wr, const matrix& x) {
  const std::size_t T = x.rows, E = wr.cols;
  routing r{matrix(T, E), std::vector<std::size_t>(T), std::vector<float>(T),
            std::vector<std::uint64_t>(E), std::vector<double>(E)};
  add_product(r.probs, x, false, wr, false);  // the logits
  for (std::size_t t = 0; t < T; ++t) {
    float* p = r.probs.row(t);
    const float top = *std::max_element(p, p + E);
    float sum = 0;
    for (std::size_t e = 0; e < E; ++e) sum += (p[e] = std::exp(p[e] - top));
    for (std::size_t e = 0; e < E; ++e) p[e] /= sum;
    r.choice[t] = static_cast<std::size_t>(std::max_element(p, p + E) - p);
    r.gate[t] = p[r.choice[t]];
    ++r.routed[r.choice[t]];
    for (std::size_t e = 0; e < E; ++e) r.prob_sum[e] += p[e];
  }
  return r;
}

/// out = x + gate * y for a kept token, x for a dropped one (it passes the residual only).
/// `y` holds the expert's output for each kept token's row (dropped rows are unused).
inline matrix combine(const matrix& x, const routing& r, const std::vector<char>& kept,
                      const matrix& y) {
  matrix out = x;
  for (std::size_t t = 0; t < x.rows; ++t)
    if (kept[t])
      for (std::size_t i = 0; i < x.cols; ++i) out(t, i) += r.gate[t] * y(t, i);
  return out;
}

/// sum over the batch of (out - target)^2: this rank's part of the loss's numerator.
inline double squared_error(const matrix& out, const matrix& target) {
  double s = 0;
  for (std::size_t i = 0; i < out.v.size(); ++i) {
    const double d = static_cast<double>(out.v[i]) - target.v[i];
    s += d * d;
  }
  return s;
}

/// d loss / d out = 2 (out - target) / (N model): the loss is the mean over all N tokens of
/// all ranks and all their elements.
inline matrix output_grad(const matrix& out, const matrix& target, std::size_t all_tokens) {
  matrix g(out.rows, out.cols);
  const float scale = 2.0f / static_cast<float>(all_tokens * out.cols);
  for (std::size_t i = 0; i < g.v.size(); ++i) g.v[i] = scale * (out.v[i] - target.v[i]);
  return g;
}

/// d loss / d y for each kept token's expert output: gate * dout (out = x + gate * y).
inline matrix expert_output_grad(const routing& r, const std::vector<char>& kept,
                                 const matrix& dout) {
  matrix dy(dout.rows, dout.cols);
  for (std::size_t t = 0; t < dout.rows; ++t)
    if (kept[t])
      for (std::size_t i = 0; i < dout.cols; ++i) dy(t, i) = r.gate[t] * dout(t, i);
  return dy;
}

/// Switch's load-balancing loss alpha E sum_e f_e P_e, with f_e = routed_e / N (the
/// fraction of all tokens whose top-1 choice is e, before capacity) and P_e the mean over
/// all tokens of the router's probability for e. f_e does not depend on the weights (argmax),
/// so d/d probs(t, e) = alpha E f_e / N: this is `coefficient[e]`, the same for every token.
inline std::vector<float> balance_coefficients(const std::vector<std::uint64_t>& routed,
                                               std::size_t all_tokens, double alpha) {
  std::vector<float> c(routed.size());
  const double n = static_cast<double>(all_tokens), E = static_cast<double>(routed.size());
  for (std::size_t e = 0; e < c.size(); ++e)
    c[e] = static_cast<float>(alpha * E * static_cast<double>(routed[e]) / (n * n));
  return c;
}

/// The backward pass of the token side, after the experts' input gradients `dx_expert`
/// came back (rows of kept tokens). For each token: the gate's gradient dot(dout, y) (kept
/// tokens only: a dropped token did not use its gate), the balance term, back through the
/// softmax to the logits (`dlogits`, tokens x experts), and the gradient of the layer's
/// input: dout (the residual) + dlogits Wr^T + dx_expert.
inline void router_backward(const matrix& wr, const routing& r, const std::vector<char>& kept,
                            const matrix& dout, const matrix& y, const matrix& dx_expert,
                            const std::vector<float>& coefficient, matrix& dlogits, matrix& dx) {
  const std::size_t T = dout.rows, D = dout.cols, E = wr.cols;
  dlogits = matrix(T, E);
  dx = dout;
  std::vector<float> dp(E);
  for (std::size_t t = 0; t < T; ++t) {
    const float* p = r.probs.row(t);
    for (std::size_t e = 0; e < E; ++e) dp[e] = coefficient[e];
    if (kept[t]) {
      float dgate = 0;
      for (std::size_t i = 0; i < D; ++i) dgate += dout(t, i) * y(t, i);
      dp[r.choice[t]] += dgate;
    }
    float inner = 0;  // sum_e p_e dp_e; softmax: dz_e = p_e (dp_e - inner)
    for (std::size_t e = 0; e < E; ++e) inner += p[e] * dp[e];
    for (std::size_t e = 0; e < E; ++e) dlogits(t, e) = p[e] * (dp[e] - inner);
    for (std::size_t i = 0; i < D; ++i) {
      float s = 0;
      for (std::size_t e = 0; e < E; ++e) s += dlogits(t, e) * wr(i, e);
      dx(t, i) += s;
      if (kept[t]) dx(t, i) += dx_expert(t, i);
    }
  }
}

/// What an expert's forward pass keeps for its backward pass.
struct expert_pass {
  matrix x, pre;  ///< its input rows, and x W1 before the ReLU
  matrix h, y;    ///< relu(x W1), and the output h W2
};
inline expert_pass expert_forward(const expert& w, matrix x) {
  expert_pass f{std::move(x), {}, {}, {}};
  f.pre = matrix(f.x.rows, w.w1.cols);
  add_product(f.pre, f.x, false, w.w1, false);
  f.h = f.pre;
  for (float& v : f.h.v) v = std::max(v, 0.0f);
  f.y = matrix(f.x.rows, w.w2.cols);
  add_product(f.y, f.h, false, w.w2, false);
  return f;
}
/// Given dy (the rows' output gradients, in the forward's row order): the weight gradients
/// (sums over the rows, in that order) and dx, the gradients of the input rows.
inline void expert_backward(const expert& w, const expert_pass& f, const matrix& dy, expert& grad,
                            matrix& dx) {
  grad = expert({.model = w.w1.rows, .hidden = w.w1.cols, .experts = 0});
  add_product(grad.w2, f.h, true, dy, false);
  matrix dpre(f.x.rows, w.w1.cols);
  add_product(dpre, dy, false, w.w2, true);
  for (std::size_t i = 0; i < dpre.v.size(); ++i)
    if (!(f.pre.v[i] > 0)) dpre.v[i] = 0;
  add_product(grad.w1, f.x, true, dpre, false);
  dx = matrix(f.x.rows, w.w1.rows);
  add_product(dx, dpre, false, w.w1, true);
}

}  // namespace ep_example

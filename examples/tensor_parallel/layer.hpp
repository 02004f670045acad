#pragma once
/// \file
/// One transformer layer in plain loops for the tensor-parallel example: causal self-attention,
/// then the MLP GeLU(h A) B, each with a residual, trained by SGD on a mean squared error.
///
/// A `shard` holds one tensor-parallel rank's slices of the weights: for its heads, the
/// columns of Wq, Wk, Wv and the rows of Wo; for its slice of the MLP's hidden units, the
/// columns of A and the rows of B. The one-rank reference is the shard that holds
/// everything, and runs through the same code. Every sum that runs over the split dimension
/// is handed to a `reducer` as a `partial`; every other number a shard computes depends only
/// on inputs all ranks share and on its own slices, so it is the same on every rank as in
/// the reference, bit for bit.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <vector>

namespace tp_example {

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

struct dims {
  std::size_t seq, model, heads, ffn;
  [[nodiscard]] std::size_t head_dim() const { return model / heads; }
};

/// A rows x cols matrix of floats, row-major.
struct matrix {
  std::size_t rows = 0, cols = 0;
  std::vector<float> v;
  matrix() = default;
  matrix(std::size_t r, std::size_t c) : rows(r), cols(c), v(r * c, 0.0f) {}
  float& operator()(std::size_t r, std::size_t c) { return v[r * cols + c]; }
  float operator()(std::size_t r, std::size_t c) const { return v[r * cols + c]; }
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
inline matrix product(const matrix& x, bool tx, const matrix& w, bool tw) {
  matrix out(tx ? x.cols : x.rows, tw ? w.rows : w.cols);
  add_product(out, x, tx, w, tw);
  return out;
}

/// This shard's part of a sum over the split dimension: its sums, the sum of the absolute
/// values of their terms, and how many terms the whole (unsplit) sum has.
struct partial {
  matrix sum;
  std::vector<double> magnitude;
  std::size_t terms;
  partial(std::size_t r, std::size_t c, std::size_t n) : sum(r, c), magnitude(r * c), terms(n) {}
};

/// The four sums over the split dimension in a step: Megatron's `g` (forward) and `f`
/// (backward) of each block.
enum site { attention_forward, mlp_forward, mlp_backward, attention_backward };
/// Completes a partial sum in place. Type-erased, so that one compiled `train_step` serves
/// the tensor-parallel run and the reference alike.
using reducer = std::function<void(site, partial&)>;

/// The tensors of the layer. `block` is rows [r0, r0 + rows) x columns [c0, c0 + cols) of
/// tensor t as the unsplit model has it (full_rows x full_cols): weights uniform in
/// +-1/sqrt(fan-in), the input and the target uniform in [-1, 1).
enum tensor { wq, wk, wv, wo, a, b, input, target };
inline matrix block(std::uint64_t seed, tensor t, std::size_t rows, std::size_t cols,
                    std::size_t r0, std::size_t c0, std::size_t full_rows, std::size_t full_cols) {
  const float scale = t >= input ? 1.0f : 1.0f / std::sqrt(static_cast<float>(full_rows));
  matrix m(rows, cols);
  for (std::size_t r = 0; r < rows; ++r)
    for (std::size_t c = 0; c < cols; ++c)
      m(r, c) =
          scale * uniform(mix(seed ^ (std::uint64_t(t) << 56)) ^ ((r0 + r) * full_cols + c0 + c));
  return m;
}

struct shard {
  dims d;
  std::size_t heads, hidden;  ///< how many heads and MLP hidden units this shard holds
  matrix w[6];                ///< indexed by `tensor`: wq, wk, wv, wo, a, b

  /// Rank `rank` of `ranks`: heads and hidden units in contiguous, equal blocks.
  shard(dims shape, std::uint64_t seed, std::size_t rank, std::size_t ranks)
      : d(shape), heads(shape.heads / ranks), hidden(shape.ffn / ranks) {
    const std::size_t D = d.model, width = heads * d.head_dim(), c0 = rank * width;
    for (tensor t : {wq, wk, wv}) w[t] = block(seed, t, D, width, 0, c0, D, D);
    w[wo] = block(seed, wo, width, D, c0, 0, D, D);
    w[a] = block(seed, a, D, hidden, 0, rank * hidden, D, d.ffn);
    w[b] = block(seed, b, hidden, D, rank * hidden, 0, d.ffn, D);
  }
};

/// GeLU in its tanh form (GPT-2's and Megatron's), and its derivative in `grad`.
inline float gelu(float u, float& grad) {
  const float k = 0.7978845608f, th = std::tanh(k * (u + 0.044715f * u * u * u));
  grad = 0.5f * (1.0f + th) + 0.5f * u * (1.0f - th * th) * k * (1.0f + 3 * 0.044715f * u * u);
  return 0.5f * u * (1.0f + th);
}

/// One SGD step of the layer on (x, target); returns the loss, mean of (out - target)^2.
inline double train_step(shard& m, const matrix& x, const matrix& target, float lr,
                         const reducer& reduce) {
  const std::size_t S = m.d.seq, D = m.d.model, hd = m.d.head_dim();
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  // Attention forward: this shard's heads, each a causal softmax(q k^T / sqrt(hd)) v.
  const matrix q = product(x, false, m.w[wq], false), k = product(x, false, m.w[wk], false),
               v = product(x, false, m.w[wv], false);
  std::vector<matrix> p(m.heads, matrix(S, S));
  matrix o(S, m.heads * hd);
  for (std::size_t h = 0; h < m.heads; ++h) {
    for (std::size_t s = 0; s < S; ++s) {
      float top = -INFINITY, total = 0;
      for (std::size_t t = 0; t <= s; ++t) {
        float dot = 0;
        for (std::size_t e = h * hd; e < (h + 1) * hd; ++e) dot += q(s, e) * k(t, e);
        p[h](s, t) = dot * scale;
        top = std::max(top, p[h](s, t));
      }
      for (std::size_t t = 0; t <= s; ++t) total += p[h](s, t) = std::exp(p[h](s, t) - top);
      for (std::size_t t = 0; t <= s; ++t) p[h](s, t) /= total;
      for (std::size_t t = 0; t <= s; ++t)
        for (std::size_t e = h * hd; e < (h + 1) * hd; ++e) o(s, e) += p[h](s, t) * v(t, e);
    }
  }
  partial z(S, D, D);  // g: the heads' outputs through Wo, summed over all heads
  add_product(z.sum, o, false, m.w[wo], false, &z.magnitude);
  reduce(attention_forward, z);
  matrix h1 = x;
  for (std::size_t i = 0; i < h1.v.size(); ++i) h1.v[i] += z.sum.v[i];

  // MLP forward: this shard's hidden units.
  matrix g = product(h1, false, m.w[a], false), gelu_grad(S, m.hidden);
  for (std::size_t i = 0; i < g.v.size(); ++i) g.v[i] = gelu(g.v[i], gelu_grad.v[i]);
  partial y(S, D, m.d.ffn);  // g: summed over all hidden units
  add_product(y.sum, g, false, m.w[b], false, &y.magnitude);
  reduce(mlp_forward, y);

  // Loss, and its gradient at the output h1 + y.
  double loss = 0;
  matrix dout(S, D);
  const float n = static_cast<float>(S * D);
  for (std::size_t i = 0; i < dout.v.size(); ++i) {
    const float diff = h1.v[i] + y.sum.v[i] - target.v[i];
    loss += static_cast<double>(diff) * diff;
    dout.v[i] = 2.0f * diff / n;
  }

  // MLP backward. The weight gradients need only this shard's own activations.
  matrix grad[6];
  grad[b] = product(g, true, dout, false);
  matrix du = product(dout, false, m.w[b], true);
  for (std::size_t i = 0; i < du.v.size(); ++i) du.v[i] *= gelu_grad.v[i];
  grad[a] = product(h1, true, du, false);
  partial dh1(S, D, m.d.ffn);  // f: d(loss)/d(h1) through the MLP, over all hidden units
  add_product(dh1.sum, du, false, m.w[a], true, &dh1.magnitude);
  reduce(mlp_backward, dh1);
  // The residual's share is added once, after the sum (added before, it would count tp times).
  for (std::size_t i = 0; i < dout.v.size(); ++i) dh1.sum.v[i] += dout.v[i];

  // Attention backward, head by head.
  const matrix& dz = dh1.sum;
  grad[wo] = product(o, true, dz, false);
  const matrix d_o = product(dz, false, m.w[wo], true);
  matrix dq(S, m.heads * hd), dk(S, m.heads * hd), dv(S, m.heads * hd);
  for (std::size_t h = 0; h < m.heads; ++h) {
    for (std::size_t s = 0; s < S; ++s) {
      std::vector<float> dp(s + 1);
      float mean = 0;  // softmax backward: ds = p (dp - sum_t p dp)
      for (std::size_t t = 0; t <= s; ++t) {
        for (std::size_t e = h * hd; e < (h + 1) * hd; ++e) {
          dp[t] += d_o(s, e) * v(t, e);
          dv(t, e) += p[h](s, t) * d_o(s, e);
        }
        mean += p[h](s, t) * dp[t];
      }
      for (std::size_t t = 0; t <= s; ++t) {
        const float ds = p[h](s, t) * (dp[t] - mean) * scale;
        for (std::size_t e = h * hd; e < (h + 1) * hd; ++e) {
          dq(s, e) += ds * k(t, e);
          dk(t, e) += ds * q(s, e);
        }
      }
    }
  }
  grad[wq] = product(x, true, dq, false);
  grad[wk] = product(x, true, dk, false);
  grad[wv] = product(x, true, dv, false);
  partial dx(S, D, 3 * D);  // f: d(loss)/d(x) through q, k and v, over all heads
  add_product(dx.sum, dq, false, m.w[wq], true, &dx.magnitude);
  add_product(dx.sum, dk, false, m.w[wk], true, &dx.magnitude);
  add_product(dx.sum, dv, false, m.w[wv], true, &dx.magnitude);
  reduce(attention_backward, dx);  // a layer below would continue from dx + dz

  for (int t = wq; t <= b; ++t)
    for (std::size_t i = 0; i < m.w[t].v.size(); ++i) m.w[t].v[i] -= lr * grad[t].v[i];
  return loss / static_cast<double>(S * D);
}

}  // namespace tp_example

#pragma once
/// \file
/// A small multi-layer perceptron in plain C++ for the ZeRO example and tests: tanh hidden
/// layers, a linear output, mean squared error against a fixed "teacher" function of the
/// input. Data and initial weights come from a seed (splitmix64), so every rank and every
/// run sees the same numbers.
///
/// The model's tensors are W_0, b_0, W_1, b_1, ... (W_l is dims[l+1] x dims[l], row-major).
/// `loss_and_grad` reads parameters and adds gradients through an *access* object, so the
/// same code trains from plain vectors (the unsharded reference) and through
/// `zero::sharded_optimizer` (`driver_access`, which gathers, reduces and releases buckets
/// layer by layer as a framework's hooks would).
#include <chorus/core/types.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace zero_example {

/// splitmix64: a small, good, reproducible generator.
inline std::uint64_t mix(std::uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}
/// Uniform in [-1, 1) from a key.
inline float uniform(std::uint64_t key) {
  return static_cast<float>(static_cast<double>(mix(key) >> 11) * 0x1.0p-53 * 2.0 - 1.0);
}

struct mlp {
  std::vector<std::size_t> dims;  ///< input, hidden..., output widths

  [[nodiscard]] std::size_t layers() const { return dims.size() - 1; }
  [[nodiscard]] std::vector<std::size_t> tensor_sizes() const {
    std::vector<std::size_t> s;
    for (std::size_t l = 0; l < layers(); ++l) {
      s.push_back(dims[l + 1] * dims[l]);
      s.push_back(dims[l + 1]);
    }
    return s;
  }
  /// Initial value of element i of tensor t: uniform in +-1/sqrt(fan-in) for weights,
  /// small for biases.
  [[nodiscard]] float init(std::uint64_t seed, std::size_t t, std::size_t i) const {
    const float u = uniform(mix(seed) ^ (t << 40) ^ i);
    const float scale = t % 2 == 0 ? 1.0f / std::sqrt(static_cast<float>(dims[t / 2])) : 0.1f;
    return u * scale;
  }
};

/// n samples: inputs uniform in [-1, 1), targets y_j = sin(sum_i x_i * (i + j + 1) / in).
struct batch {
  std::size_t n = 0;
  std::vector<float> x, y;
};
inline batch make_batch(const mlp& m, std::uint64_t seed, std::size_t n) {
  const std::size_t in = m.dims.front(), out = m.dims.back();
  batch b{n, std::vector<float>(n * in), std::vector<float>(n * out)};
  for (std::size_t k = 0; k < n * in; ++k) b.x[k] = uniform(mix(seed * 0x10001 + 7) ^ k);
  for (std::size_t s = 0; s < n; ++s) {
    for (std::size_t j = 0; j < out; ++j) {
      double z = 0;
      for (std::size_t i = 0; i < in; ++i)
        z += b.x[s * in + i] * static_cast<double>(i + j + 1) / static_cast<double>(in);
      b.y[s * out + j] = static_cast<float>(std::sin(z));
    }
  }
  return b;
}

/// The mean (over samples) of 0.5 * |f(x) - y|^2, and its gradient added into the access.
/// Access: `param(t)` (a span of any type convertible to float), `add_grad(t, span<const
/// float>)`, and hooks `before_layer(l)`, `after_forward(l)`, `after_backward(l)`.
template <class Access>
float loss_and_grad(const mlp& m, const batch& b, Access& a) {
  const std::size_t L = m.layers();
  std::vector<std::vector<float>> act(L + 1);  // act[l]: input of layer l (n x dims[l])
  act[0] = b.x;
  for (std::size_t l = 0; l < L; ++l) {
    a.before_layer(l);
    const auto w = a.param(2 * l);
    const auto bias = a.param(2 * l + 1);
    const std::size_t in = m.dims[l], out = m.dims[l + 1];
    act[l + 1].assign(b.n * out, 0.0f);
    for (std::size_t s = 0; s < b.n; ++s) {
      for (std::size_t j = 0; j < out; ++j) {
        float z = static_cast<float>(bias[j]);
        for (std::size_t i = 0; i < in; ++i)
          z += static_cast<float>(w[j * in + i]) * act[l][s * in + i];
        act[l + 1][s * out + j] = l + 1 < L ? std::tanh(z) : z;
      }
    }
    a.after_forward(l);
  }
  // d(loss)/d(output), then back through the layers.
  const std::size_t out_w = m.dims.back();
  std::vector<float> delta(b.n * out_w);
  double loss = 0;
  for (std::size_t k = 0; k < delta.size(); ++k) {
    const float e = act[L][k] - b.y[k];
    loss += 0.5 * static_cast<double>(e) * e;
    delta[k] = e / static_cast<float>(b.n);
  }
  for (std::size_t l = L; l-- > 0;) {
    a.before_layer(l);
    const auto w = a.param(2 * l);
    const std::size_t in = m.dims[l], out = m.dims[l + 1];
    std::vector<float> gw(out * in, 0.0f), gb(out, 0.0f), prev(b.n * in, 0.0f);
    for (std::size_t s = 0; s < b.n; ++s) {
      for (std::size_t j = 0; j < out; ++j) {
        const float d = delta[s * out + j];
        gb[j] += d;
        for (std::size_t i = 0; i < in; ++i) {
          gw[j * in + i] += d * act[l][s * in + i];
          prev[s * in + i] += d * static_cast<float>(w[j * in + i]);
        }
      }
    }
    if (l > 0) {  // through tanh: act[l] = tanh(z), d tanh = 1 - act^2
      for (std::size_t k = 0; k < prev.size(); ++k) prev[k] *= 1.0f - act[l][k] * act[l][k];
    }
    a.add_grad(2 * l, gw);
    a.add_grad(2 * l + 1, gb);
    a.after_backward(l);
    delta = std::move(prev);
  }
  return static_cast<float>(loss / static_cast<double>(b.n));
}

/// `dst[i] += src[i]` in the compute type (what a framework's gradient accumulation does).
template <class T>
void accumulate(std::span<T> dst, std::span<const float> src) {
  for (std::size_t i = 0; i < dst.size(); ++i) dst[i] = dst[i] + T(src[i]);
}

/// Parameters and gradients in plain vectors (natural layout, one per tensor).
template <class T>
struct vector_access {
  std::vector<std::vector<T>>* params;
  std::vector<std::vector<T>>* grads;
  std::span<const T> param(std::size_t t) const { return (*params)[t]; }
  void add_grad(std::size_t t, std::span<const float> g) { accumulate<T>((*grads)[t], g); }
  void before_layer(std::size_t) {}
  void after_forward(std::size_t) {}
  void after_backward(std::size_t) {}
};

/// Drives a `zero::sharded_optimizer` from the layer hooks: gathers the buckets of a layer
/// before it runs, releases them when no later step of the pass needs them, and reduces
/// each bucket as soon as the backward pass has produced all its gradients.
template <class Driver>
struct driver_access {
  Driver* d;
  std::size_t layers;
  std::vector<char> reduced;  // per bucket, this micro-batch

  void begin_micro_batch() { reduced.assign(d->buckets(), 0); }
  auto param(std::size_t t) { return d->param(t); }
  void add_grad(std::size_t t, std::span<const float> g) { accumulate(d->grad(t), g); }
  void before_layer(std::size_t l) {
    d->gather(d->bucket_of(2 * l));
    d->gather(d->bucket_of(2 * l + 1));
  }
  /// Forward: keep the last layer (backward starts there) and buckets the next layer uses.
  void after_forward(std::size_t l) {
    if (l + 1 == layers) return;
    for (std::size_t t : {2 * l, 2 * l + 1}) {
      const std::size_t b = d->bucket_of(t);
      if (b != d->bucket_of(2 * l + 2) && b != d->bucket_of(2 * l + 3)) d->release(b);
    }
  }
  /// Backward: every tensor >= 2l has its gradient; reduce the buckets that are complete.
  void after_backward(std::size_t l) {
    for (std::size_t b = d->buckets(); b-- > 0;) {
      if (reduced[b] || d->layout().buckets[b].first_tensor < 2 * l) continue;
      d->reduce(b);
      reduced[b] = 1;
      if (l == 0 || (b != d->bucket_of(2 * l - 2) && b != d->bucket_of(2 * l - 1))) d->release(b);
    }
  }
};

}  // namespace zero_example

#pragma once
/// \file
/// Element-wise optimizers for `zero::sharded_optimizer`: SGD with momentum and Adam(W).
///
/// An optimizer updates fp32 master weights from gradients of the compute type `T`
/// (`float`, `chorus::half` or `chorus::bfloat16`), element by element, keeping
/// `state_count` fp32 values per parameter. Being element-wise, the update of a shard is
/// exactly the update of those elements in the whole vector: the sharded and the unsharded
/// run compute the same bits. A zero gradient on a zero weight with zero state leaves all
/// of them zero, so padding stays zero.
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

namespace chorus::inline v0::zero {

/// SGD with momentum (torch's form): `m = momentum * m + (g + weight_decay * w)`,
/// `w -= lr * m`. One state value (the momentum buffer) per parameter.
struct sgd {
  static constexpr std::string_view name = "sgd";
  static constexpr std::uint32_t id = 1;
  static constexpr std::size_t state_count = 1;
  float lr = 0.01f;
  float momentum = 0.9f;
  float weight_decay = 0.0f;

  /// Updates `w` from `g * grad_scale` (`step` counts from 1).
  template <class T>
  void update(std::uint64_t /*step*/, std::span<float> w, std::span<const T> g, float grad_scale,
              std::array<std::span<float>, 1> state) const noexcept {
    float* m = state[0].data();
    for (std::size_t i = 0; i < w.size(); ++i) {
      const float d = static_cast<float>(g[i]) * grad_scale + weight_decay * w[i];
      m[i] = momentum * m[i] + d;
      w[i] -= lr * m[i];
    }
  }
};

/// Adam with decoupled weight decay (AdamW; `weight_decay = 0` is Adam):
/// `m = b1 m + (1 - b1) g`, `v = b2 v + (1 - b2) g^2`,
/// `w -= lr * (weight_decay * w + (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps))`.
/// Two state values (m, v) per parameter.
struct adamw {
  static constexpr std::string_view name = "adamw";
  static constexpr std::uint32_t id = 2;
  static constexpr std::size_t state_count = 2;
  float lr = 1e-3f;
  float beta1 = 0.9f;
  float beta2 = 0.999f;
  float eps = 1e-8f;
  float weight_decay = 0.0f;

  template <class T>
  void update(std::uint64_t step, std::span<float> w, std::span<const T> g, float grad_scale,
              std::array<std::span<float>, 2> state) const noexcept {
    float* m = state[0].data();
    float* v = state[1].data();
    const auto t = static_cast<double>(step);
    const auto c1 = static_cast<float>(1.0 - std::pow(static_cast<double>(beta1), t));
    const auto c2 = static_cast<float>(1.0 - std::pow(static_cast<double>(beta2), t));
    for (std::size_t i = 0; i < w.size(); ++i) {
      const float x = static_cast<float>(g[i]) * grad_scale;
      m[i] = beta1 * m[i] + (1.0f - beta1) * x;
      v[i] = beta2 * v[i] + (1.0f - beta2) * x * x;
      const float u = (m[i] / c1) / (std::sqrt(v[i] / c2) + eps);
      w[i] -= lr * (weight_decay * w[i] + u);
    }
  }
};

/// An optimizer the driver can run.
template <class O>
concept optimizer = requires {
  { O::state_count } -> std::convertible_to<std::size_t>;
  { O::id } -> std::convertible_to<std::uint32_t>;
  { O::name } -> std::convertible_to<std::string_view>;
};

}  // namespace chorus::inline v0::zero

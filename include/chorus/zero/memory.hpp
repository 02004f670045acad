#pragma once
/// \file
/// ZeRO memory accounting: the paper's model-state estimate (Rajbhandari et al., SC'20,
/// section 5) and the report of what `zero::sharded_optimizer` actually allocates.
#include <cstddef>
#include <stdexcept>

namespace chorus::inline v0::zero {

/// Bytes of model state per rank, by kind. Decimal units: 1 GB = 1e9 bytes.
struct model_memory {
  double parameters = 0;        ///< the compute-type parameters
  double gradients = 0;         ///< the compute-type gradients
  double optimizer_states = 0;  ///< fp32 master weights and optimizer state (K per parameter)
  [[nodiscard]] constexpr double total() const noexcept {
    return parameters + gradients + optimizer_states;
  }
};

/// The paper's estimate of model-state memory per rank for ZeRO stage 0 (plain data
/// parallelism) to 3, with `psi` parameters, `n` ranks and `k` bytes of optimizer state per
/// parameter (12 for mixed-precision Adam: fp32 weights, momentum and variance), and
/// compute-type parameters and gradients of `param_bytes` / `grad_bytes` each (2 for
/// fp16/bf16):
///
///     stage 0: (P + G + K) psi        stage 2: P psi + (G + K) psi / n
///     stage 1: (P + G) psi + K psi/n  stage 3: (P + G + K) psi / n
///
/// With psi = 7.5e9, n = 64, k = 12: 120, 31.4, 16.6 and 1.9 GB (the paper's figure 1).
[[nodiscard]] constexpr model_memory memory_estimate(int stage, double psi, int n, double k,
                                                     double param_bytes = 2,
                                                     double grad_bytes = 2) {
  if (stage < 0 || stage > 3) {
    throw std::invalid_argument("chorus::zero::memory_estimate: the stage must be 0, 1, 2 or 3");
  }
  if (n < 1) throw std::invalid_argument("chorus::zero::memory_estimate: n must be at least 1");
  const double shard = psi / n;
  return {param_bytes * (stage >= 3 ? shard : psi), grad_bytes * (stage >= 2 ? shard : psi),
          k * (stage >= 1 ? shard : psi)};
}

/// What one rank of a `sharded_optimizer` has allocated, in bytes: its model state (to be
/// compared with `memory_estimate`) and its communication buffers (bucket-sized, independent
/// of the model size; the paper's "temporary buffers").
struct memory_report {
  std::size_t parameters = 0;
  std::size_t gradients = 0;
  std::size_t optimizer_states = 0;
  std::size_t buffers = 0;
  [[nodiscard]] constexpr std::size_t model_states() const noexcept {
    return parameters + gradients + optimizer_states;
  }
  [[nodiscard]] constexpr std::size_t total() const noexcept { return model_states() + buffers; }
};

}  // namespace chorus::inline v0::zero

#pragma once
/// \file
/// The model of the 3-D example in plain loops: a stack of residual MLP blocks
/// x + tanh(x A) B (A: model x hidden, B: hidden x model), trained on a mean squared error.
///
/// A `block` holds one tensor-parallel rank's slice of a block's weights: the columns of A
/// and the rows of B for its hidden units (Megatron's column-split, then row-split MLP). The
/// one-rank reference holds every hidden unit and runs through the same functions. Only two
/// sums per block run over the hidden units: the output tanh(x A) B (forward) and the
/// gradient of the block's input (backward); each is handed to a `reducer` as a `partial`.
/// Every other number a slice computes depends only on its inputs (the same on every tp
/// rank) and its own columns or rows, so it equals the reference's bit for bit.
#include "../tensor_parallel/layer.hpp"

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <vector>

namespace p3d {

// The tensor-parallel example's building blocks, used as they are: the keyed random numbers,
// the matrix, its products (which add in a fixed order and can sum their terms' magnitudes)
// and a slice's `partial` sum.
using tp_example::add_product;
using tp_example::matrix;
using tp_example::mix;
using tp_example::partial;
using tp_example::product;
using tp_example::uniform;

/// The two sums over the hidden units in a block: Megatron's g (forward) and f (backward).
enum site { forward_sum, backward_sum };
/// Completes a partial sum in place (type-erased: one compiled block serves all runs).
using reducer = std::function<void(site, partial&)>;

/// One tp rank's slice of a block: `hidden` of the block's `full_hidden` units.
struct block {
  std::size_t full_hidden = 0;
  matrix a, b;  ///< a: model x hidden (columns of A), b: hidden x model (rows of B)
};

/// Element (r, c) of weight `which` (0: A, 1: B) of layer `layer`, as the unsplit model has
/// it: uniform in +-1/sqrt(fan-in).
inline float initial_weight(std::uint64_t seed, std::size_t layer, int which, std::size_t r,
                            std::size_t c, std::size_t model, std::size_t hidden) {
  const std::size_t fan_in = which == 0 ? model : hidden, cols = which == 0 ? hidden : model;
  const std::uint64_t key = mix(seed ^ (std::uint64_t(layer) << 48) ^ (std::uint64_t(which) << 40));
  return uniform(key ^ (r * cols + c)) / std::sqrt(static_cast<float>(fan_in));
}

/// Hidden units [h0, h0 + hidden) of layer `layer` as initialised.
inline block initial_block(std::uint64_t seed, std::size_t layer, std::size_t model,
                           std::size_t full_hidden, std::size_t h0, std::size_t hidden) {
  block w{full_hidden, matrix(model, hidden), matrix(hidden, model)};
  for (std::size_t r = 0; r < model; ++r)
    for (std::size_t c = 0; c < hidden; ++c)
      w.a(r, c) = initial_weight(seed, layer, 0, r, h0 + c, model, full_hidden);
  for (std::size_t r = 0; r < hidden; ++r)
    for (std::size_t c = 0; c < model; ++c)
      w.b(r, c) = initial_weight(seed, layer, 1, h0 + r, c, model, full_hidden);
  return w;
}

/// What a block's backward needs from its forward: the input and tanh(x A).
struct saved {
  matrix x, g;
};

/// x + tanh(x A) B for a micro-batch x (rows x model); the sum over hidden units through
/// `reduce`.
inline matrix forward(const block& w, const matrix& x, saved& s, const reducer& reduce) {
  s.x = x;
  s.g = product(x, false, w.a, false);
  for (float& u : s.g.v) u = std::tanh(u);
  partial y(x.rows, x.cols, w.full_hidden);
  add_product(y.sum, s.g, false, w.b, false, &y.magnitude);
  reduce(forward_sum, y);
  matrix out = x;
  for (std::size_t i = 0; i < out.v.size(); ++i) out.v[i] += y.sum.v[i];
  return out;
}

/// Given d(loss)/d(out), sets this slice's weight gradients `ga`, `gb` and returns
/// d(loss)/d(x), whose sum over hidden units goes through `reduce`.
inline matrix backward(const block& w, const saved& s, const matrix& dout, matrix& ga, matrix& gb,
                       const reducer& reduce) {
  gb = product(s.g, true, dout, false);
  matrix du = product(dout, false, w.b, true);
  for (std::size_t i = 0; i < du.v.size(); ++i) du.v[i] *= 1.0f - s.g.v[i] * s.g.v[i];
  ga = product(s.x, true, du, false);
  partial dx(dout.rows, dout.cols, w.full_hidden);
  add_product(dx.sum, du, false, w.a, true, &dx.magnitude);
  reduce(backward_sum, dx);
  // The residual's share is added once, after the sum (before, it would count tp times).
  for (std::size_t i = 0; i < dx.sum.v.size(); ++i) dx.sum.v[i] += dout.v[i];
  return dx.sum;
}

/// Micro-batch `micro` of data-parallel replica `replica` at `step`: inputs uniform in
/// [-1, 1), targets sin(2 x) of the row reversed.
struct sample {
  matrix x, target;
};
inline sample micro_batch(std::uint64_t seed, int replica, int step, int micro, std::size_t rows,
                          std::size_t model) {
  sample s{matrix(rows, model), matrix(rows, model)};
  const std::uint64_t key = mix(seed ^ (std::uint64_t(replica) << 48) ^
                                (std::uint64_t(step) << 24) ^ std::uint64_t(micro));
  for (std::size_t i = 0; i < s.x.v.size(); ++i) s.x.v[i] = uniform(key ^ (i << 32));
  for (std::size_t r = 0; r < rows; ++r)
    for (std::size_t c = 0; c < model; ++c) s.target(r, c) = std::sin(2.0f * s.x(r, model - 1 - c));
  return s;
}

/// The micro-batch's mean of (y - target)^2, and its gradient into `dy`.
inline double loss_and_grad(const matrix& y, const matrix& target, matrix& dy) {
  dy = matrix(y.rows, y.cols);
  const float n = static_cast<float>(y.v.size());
  double loss = 0;
  for (std::size_t i = 0; i < y.v.size(); ++i) {
    const float diff = y.v[i] - target.v[i];
    loss += static_cast<double>(diff) * diff;
    dy.v[i] = 2.0f * diff / n;
  }
  return loss / static_cast<double>(y.v.size());
}

}  // namespace p3d

// Convergence on CPU across 8 inproc ranks with heterogeneous data: least squares and
// logistic regression by full-batch gradient descent, gradients averaged by compressed
// all-reduce. Each compressed run must reach the uncompressed result within the tolerance
// stated next to it (docs/compression.md quotes them); the negative control, top-k without
// error feedback, must NOT get there -- proving that error feedback is what makes it work.
#include "support/harness.hpp"

#include <chorus/compress/compress.hpp>

#include <cmath>
#include <cstdint>
#include <functional>
#include <random>
#include <vector>

namespace cc = chorus::compress;

namespace {
constexpr int ranks = 8;
constexpr std::size_t dim = 256;  // a 16 x 16 matrix for PowerSGD
constexpr std::size_t samples = 48;

enum class model { least_squares, logistic };

/// Rank r's data: features with a rank-specific shift and targets from a rank-specific
/// model, so local optima differ and local gradients at the global optimum do not vanish.
struct data {
  std::vector<double> a;  // samples x dim
  std::vector<double> b;  // samples
};

data make_data(int rank, model m) {
  std::mt19937_64 gen(1000 + static_cast<std::uint64_t>(rank));
  std::normal_distribution<double> n01(0.0, 1.0);
  data d{std::vector<double>(samples * dim), std::vector<double>(samples)};
  std::vector<double> truth(dim);
  for (std::size_t j = 0; j < dim; ++j)
    truth[j] = std::sin(0.1 * double(j)) + 0.5 * rank * ((j % ranks) == std::size_t(rank));
  for (std::size_t s = 0; s < samples; ++s) {
    double dot = 0;
    for (std::size_t j = 0; j < dim; ++j) {
      const double v =
          n01(gen) / std::sqrt(double(dim)) + ((j % ranks) == std::size_t(rank) ? 0.3 : 0.0);
      d.a[s * dim + j] = v;
      dot += v * truth[j];
    }
    d.b[s] =
        m == model::least_squares ? dot + 0.1 * n01(gen) : (dot + 0.3 * n01(gen) > 0 ? 1.0 : 0.0);
  }
  return d;
}

/// Local mean gradient and loss at w.
double local_gradient(const data& d, model m, const std::vector<double>& w,
                      std::vector<double>& g) {
  std::fill(g.begin(), g.end(), 0.0);
  double loss = 0;
  for (std::size_t s = 0; s < samples; ++s) {
    double z = 0;
    for (std::size_t j = 0; j < dim; ++j) z += d.a[s * dim + j] * w[j];
    double err = 0;
    if (m == model::least_squares) {
      err = z - d.b[s];
      loss += 0.5 * err * err;
    } else {
      const double p = 1.0 / (1.0 + std::exp(-z));
      err = p - d.b[s];
      loss += -(d.b[s] * std::log(p + 1e-300) + (1 - d.b[s]) * std::log(1 - p + 1e-300));
    }
    for (std::size_t j = 0; j < dim; ++j) g[j] += err * d.a[s * dim + j];
  }
  for (double& v : g) v /= double(samples);
  return loss / double(samples);
}

/// How the gradients are averaged.
enum class method { plain, top_k_ef, top_k_no_ef, sign_ef, power_sgd_ef, qsgd };

/// One rank's compression state (residual, PowerSGD's Q) and the reduction it runs.
struct reducer {
  method how;
  cc::residual<double> res{};
  cc::power_sgd_state q{};
  cc::ledger book{};

  void operator()(chorus::inproc_communicator& comm, std::vector<double>& g) {
    using cc::error_feedback;
    switch (how) {
      case method::plain:
        chorus::all_reduce(comm, g, chorus::average{});
        break;
      case method::top_k_ef:  // exactly k = ceil(0.01 * 256) = 3 elements per rank and step
        chorus::all_reduce(comm, g, chorus::average{},
                           error_feedback{cc::top_k{.ratio = 0.01}, res}, book, cc::gather_path{});
        break;
      case method::top_k_no_ef:
        chorus::all_reduce(comm, g, chorus::average{}, cc::top_k{.ratio = 0.01}, book,
                           cc::gather_path{});
        break;
      case method::sign_ef:
        chorus::all_reduce(comm, g, chorus::average{}, error_feedback{cc::scaled_sign{}, res},
                           book);
        break;
      case method::power_sgd_ef:
        chorus::all_reduce(comm, g, chorus::average{},
                           error_feedback{cc::power_sgd{.rank = 2, .rows = 16, .state = &q}, res},
                           book);
        break;
      case method::qsgd:
        chorus::all_reduce(comm, g, chorus::average{}, cc::qsgd{.levels = 64, .seed = 1}, book);
        break;
    }
  }
};

/// Trains for `steps`; returns the model (identical on every rank; rank 0's).
std::vector<double> train(model m, method how, int steps, double lr) {
  std::vector<double> result;
  std::mutex mu;
  harness::run_ranks(ranks, [&](chorus::inproc_communicator& comm) {
    const data d = make_data(comm.rank(), m);
    std::vector<double> w(dim, 0.0), g(dim);
    reducer reduce{how};
    for (int t = 0; t < steps; ++t) {
      local_gradient(d, m, w, g);
      reduce(comm, g);
      for (std::size_t j = 0; j < dim; ++j) w[j] -= lr * g[j];
    }
    if (comm.rank() == 0) {
      std::lock_guard lock(mu);
      result = w;
    }
  });
  return result;
}

double relative_distance(const std::vector<double>& a, const std::vector<double>& b) {
  double num = 0, den = 0;
  for (std::size_t j = 0; j < a.size(); ++j) {
    num += (a[j] - b[j]) * (a[j] - b[j]);
    den += b[j] * b[j];
  }
  return std::sqrt(num / den);
}
}  // namespace

TEST_CASE("compressed gradient descent reaches the uncompressed result; without EF it does not") {
  for (model m : {model::least_squares, model::logistic}) {
    const bool ls = m == model::least_squares;
    const double lr = ls ? 0.5 : 2.0;
    const int steps = 1500;
    const auto reference = train(m, method::plain, steps, lr);
    auto distance = [&](method how) {
      return relative_distance(train(m, how, steps, lr), reference);
    };
    const double top_k_ef = distance(method::top_k_ef);
    const double top_k_no_ef = distance(method::top_k_no_ef);
    const double sign_ef = distance(method::sign_ef);
    const double power_sgd = distance(method::power_sgd_ef);
    const double qsgd = distance(method::qsgd);
    INFO((ls ? "least squares" : "logistic regression")
         << ": relative distance to the uncompressed model: top-k 1% + EF " << top_k_ef
         << ", top-k 1% without EF " << top_k_no_ef << ", scaled sign + EF " << sign_ef
         << ", PowerSGD rank 2 + EF " << power_sgd << ", QSGD 64 levels " << qsgd);
    // Tolerances (docs/compression.md): top-k sends 3 of 256 elements per rank and step, so
    // after the same 1500 steps it is still catching up (measured 0.023 / 0.009); the others
    // measured below 0.005.
    CHECK(top_k_ef < 0.05);
    CHECK(sign_ef < 0.01);
    CHECK(power_sgd < 0.01);
    CHECK(qsgd < 0.01);
    // The negative control: the same top-k without error feedback stalls far away (measured
    // 1.4 / 1.3), because each rank's largest local components do not sum to zero at the
    // optimum of the heterogeneous problem.
    CHECK(top_k_no_ef > 0.5);
  }
}

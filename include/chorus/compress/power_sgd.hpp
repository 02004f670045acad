#pragma once
/// \file
/// `compress::power_sgd{.rank, .rows}`: PowerSGD's rank-r approximation of a gradient
/// matrix, computed across ranks with two all-reduces of small matrices.
///
/// The gradient (n elements) is an `rows x cols` matrix M (row-major, cols = n / rows).
/// One step (Vogels et al., one power iteration, warm-started):
///   1. P = M Q                  (rows x r)   all-reduced: P = sum of every rank's M Q
///   2. P <- orthonormal columns (Gram-Schmidt; a column that vanishes stays zero, so a
///      gradient of rank < r gives no NaN)
///   3. Q = M^T P                (cols x r)   all-reduced
///   4. result = P Q^T = P P^T (sum of M): the sum's projection on span(P)
/// Q is kept for the next step (warm start) in `power_sgd_state`, owned by the caller; the
/// first Q is drawn from `seed` identically on every rank. Bytes per step:
/// (rows + cols) r sizeof(T). A matrix of rank <= r is reconstructed exactly in one step.
/// Under `error_feedback` the part this rank sent is P Q_local^T (linear: the ranks' parts
/// add up to the result).
#include <chorus/compress/compressor.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <istream>
#include <limits>
#include <ostream>
#include <vector>

namespace chorus::inline v0::compress {

/// The warm-start matrix Q of one PowerSGD tensor (kept in double whatever the gradient
/// type; cols x rank, row-major). Owned by the caller; save it with checkpoints.
struct power_sgd_state {
  std::vector<double> q;
  std::size_t cols = 0;
  std::size_t rank = 0;

  void save(std::ostream& os) const {
    const std::uint64_t header[3] = {0x6368707367640001ull, cols, rank};
    os.write(reinterpret_cast<const char*>(header), sizeof(header));
    os.write(reinterpret_cast<const char*>(q.data()),
             static_cast<std::streamsize>(q.size() * sizeof(double)));
  }
  void load(std::istream& is) {
    std::uint64_t header[3];
    is.read(reinterpret_cast<char*>(header), sizeof(header));
    if (!is || header[0] != 0x6368707367640001ull) {
      detail::invalid("power_sgd_state::load", "the stream does not hold a saved PowerSGD state");
    }
    cols = header[1];
    rank = header[2];
    q.resize(cols * rank);
    is.read(reinterpret_cast<char*>(q.data()),
            static_cast<std::streamsize>(q.size() * sizeof(double)));
    if (!is) detail::invalid("power_sgd_state::load", "the stream ended inside the saved Q matrix");
  }
};

/// PowerSGD: rank-`rank` approximation of the `rows x (n / rows)` gradient matrix.
struct power_sgd {
  static constexpr bool summable = false;
  static constexpr bool stochastic =
      false;  // the first Q is drawn from `seed`, the same everywhere
  static constexpr bool unbiased = false;
  static constexpr bool low_rank = true;

  std::size_t rank = 1;
  std::size_t rows = 0;
  power_sgd_state* state = nullptr;
  std::uint64_t seed = 0;

  /// Bytes of both all-reduced matrices for n elements.
  template <gradient_type T>
  [[nodiscard]] std::size_t wire_bytes(std::size_t n) const {
    const std::size_t cols = check_shape(n);
    return (rows + cols) * rank * sizeof(T);
  }

  /// Checks the shape and returns cols.
  std::size_t check_shape(std::size_t n) const {
    if (rows == 0 || n % rows != 0) {
      detail::invalid("power_sgd", "a tensor of " + std::to_string(n) +
                                       " elements is not a matrix of .rows = " +
                                       std::to_string(rows) + " rows; pass .rows dividing it");
    }
    if (rank == 0) detail::invalid("power_sgd", ".rank is 0; pass e.g. .rank = 4");
    if (state == nullptr) {
      detail::invalid("power_sgd",
                      "no state: pass .state = &q with a power_sgd_state q that "
                      "lives as long as the training run");
    }
    return n / rows;
  }

  /// One PowerSGD step on `m` (rows x cols). `sum(span<T>)` all-reduces in place (sum over
  /// ranks). Writes the approximation of the sum to `result` and, when `sent` is not empty,
  /// this rank's share P Q_local^T to `sent`.
  template <gradient_type T, class AllReduceSum>
  void run(std::span<const T> m, std::span<T> result, std::span<T> sent, AllReduceSum&& sum) const {
    const std::size_t n = m.size();
    const std::size_t cols = check_shape(n);
    const std::size_t r = rank;
    power_sgd_state& st = *state;
    if (st.cols != cols || st.rank != r || st.q.size() != cols * r) {
      st.cols = cols;
      st.rank = r;
      st.q.resize(cols * r);
      const counter_rng rng(rng_key{seed, 0, cols * 1315423911ull + r, rng_key::shared});
      for (std::size_t i = 0; i < st.q.size(); ++i) st.q[i] = 2.0 * rng.uniform(i) - 1.0;
    }
    std::vector<T> p(rows * r, T(0)), q(cols * r, T(0));
    // P = M Q
    for (std::size_t i = 0; i < rows; ++i) {
      for (std::size_t j = 0; j < cols; ++j) {
        const T v = m[i * cols + j];
        if (v == T(0)) continue;
        for (std::size_t c = 0; c < r; ++c) p[i * r + c] += v * static_cast<T>(st.q[j * r + c]);
      }
    }
    sum(std::span<T>(p));
    orthonormalize(p, rows, r);
    // Q = M^T P
    for (std::size_t i = 0; i < rows; ++i) {
      for (std::size_t j = 0; j < cols; ++j) {
        const T v = m[i * cols + j];
        if (v == T(0)) continue;
        for (std::size_t c = 0; c < r; ++c) q[j * r + c] += v * p[i * r + c];
      }
    }
    if (!sent.empty()) product(p, q, sent, rows, cols, r);
    sum(std::span<T>(q));
    product(p, q, result, rows, cols, r);
    for (std::size_t i = 0; i < q.size(); ++i) st.q[i] = static_cast<double>(q[i]);
  }

 private:
  /// Modified Gram-Schmidt on the columns of the rows x r matrix `a`; a column whose norm
  /// vanishes (relative to the largest) is set to zero instead of divided by ~0.
  template <class T>
  static void orthonormalize(std::vector<T>& a, std::size_t rows, std::size_t r) {
    T largest = 0;
    for (std::size_t c = 0; c < r; ++c) {
      T s = 0;
      for (std::size_t i = 0; i < rows; ++i) s += a[i * r + c] * a[i * r + c];
      largest = std::max(largest, std::sqrt(s));
    }
    const T tiny = largest * static_cast<T>(r * rows) * std::numeric_limits<T>::epsilon();
    for (std::size_t c = 0; c < r; ++c) {
      for (std::size_t prev = 0; prev < c; ++prev) {
        T dot = 0;
        for (std::size_t i = 0; i < rows; ++i) dot += a[i * r + c] * a[i * r + prev];
        for (std::size_t i = 0; i < rows; ++i) a[i * r + c] -= dot * a[i * r + prev];
      }
      T s = 0;
      for (std::size_t i = 0; i < rows; ++i) s += a[i * r + c] * a[i * r + c];
      const T norm = std::sqrt(s);
      const T scale = (norm > tiny && norm > T(0)) ? T(1) / norm : T(0);
      for (std::size_t i = 0; i < rows; ++i) a[i * r + c] *= scale;
    }
  }

  /// out = P Q^T.
  template <class T>
  static void product(const std::vector<T>& p, const std::vector<T>& q, std::span<T> out,
                      std::size_t rows, std::size_t cols, std::size_t r) {
    for (std::size_t i = 0; i < rows; ++i) {
      for (std::size_t j = 0; j < cols; ++j) {
        T v = 0;
        for (std::size_t c = 0; c < r; ++c) v += p[i * r + c] * q[j * r + c];
        out[i * cols + j] = v;
      }
    }
  }
};

}  // namespace chorus::inline v0::compress

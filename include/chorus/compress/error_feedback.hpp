#pragma once
/// \file
/// `compress::error_feedback<C, T>`: wraps any compressor so that what it drops is kept
/// and added to the next step's gradient (Seide et al.'s 1-bit SGD, Karimireddy et al.'s
/// EF-SGD, Deep Gradient Compression's momentum-free form).
///
/// Per call on a tensor: x = gradient + residual; payload = encode(x);
/// residual = x - decode(payload). So over any number of steps
///     sum of what was sent + residual == sum of the gradients
/// (up to the rounding of those two subtractions): nothing is lost, only delayed.
///
/// The residuals live in a `compress::residual<T>` the caller owns, one buffer per tensor
/// id (and, on the two-stage path, one per owned shard for the server side: 1/P of the
/// tensor, not a full copy). Save and load it with the model's checkpoint.
///
///     chorus::compress::residual<float> res;
///     chorus::all_reduce(comm, grad, chorus::average{},
///         chorus::compress::error_feedback{chorus::compress::top_k{.ratio = 0.01}, res});
#include <chorus/compress/compressor.hpp>
#include <chorus/compress/sparsify.hpp>

#include <cstdint>
#include <cstring>
#include <istream>
#include <map>
#include <ostream>
#include <vector>

namespace chorus::inline v0::compress {

/// Error-feedback residuals of one rank, one buffer per tensor id, created zero-filled on
/// first use. Owned by the caller; not thread-safe (one per rank).
template <gradient_type T>
class residual {
 public:
  /// Worker-side residuals use the tensor id as key; the two-stage path's server-side
  /// residuals (this rank's shard only) use `server_key(id)`.
  static constexpr std::uint64_t server_key(std::uint64_t tensor) noexcept {
    return tensor | (std::uint64_t{1} << 63);
  }

  /// The buffer of `key`, `n` elements (zeros when new). Throws `invalid_argument` when it
  /// exists with another size: one id per tensor.
  std::span<T> buffer(std::uint64_t key, std::size_t n) {
    auto [it, fresh] = buffers_.try_emplace(key);
    if (fresh) it->second.assign(n, T(0));
    if (it->second.size() != n) {
      detail::invalid("residual", "tensor id " + std::to_string(key & ~server_key(0)) + " has a " +
                                      std::to_string(it->second.size()) +
                                      "-element residual but this call has " + std::to_string(n) +
                                      " elements; give each tensor its own compress::tensor{id}");
    }
    return it->second;
  }
  /// The buffer of `key`, or an empty span.
  [[nodiscard]] std::span<const T> view(std::uint64_t key) const {
    const auto it = buffers_.find(key);
    return it == buffers_.end() ? std::span<const T>{} : std::span<const T>(it->second);
  }
  /// Bytes held by every buffer.
  [[nodiscard]] std::size_t bytes() const noexcept {
    std::size_t b = 0;
    for (const auto& [k, v] : buffers_) b += v.size() * sizeof(T);
    return b;
  }
  void clear() noexcept { buffers_.clear(); }

  /// Writes every buffer (binary; the same element type must load it).
  void save(std::ostream& os) const {
    const std::uint64_t header[3] = {magic, sizeof(T), buffers_.size()};
    os.write(reinterpret_cast<const char*>(header), sizeof(header));
    for (const auto& [key, v] : buffers_) {
      const std::uint64_t entry[2] = {key, v.size()};
      os.write(reinterpret_cast<const char*>(entry), sizeof(entry));
      os.write(reinterpret_cast<const char*>(v.data()),
               static_cast<std::streamsize>(v.size() * sizeof(T)));
    }
  }
  /// Replaces every buffer with what `save` wrote.
  void load(std::istream& is) {
    std::uint64_t header[3];
    is.read(reinterpret_cast<char*>(header), sizeof(header));
    if (!is || header[0] != magic) {
      detail::invalid("residual::load", "the stream does not hold saved residuals");
    }
    if (header[1] != sizeof(T)) {
      detail::invalid("residual::load", "the residuals were saved with " +
                                            std::to_string(header[1] * 8) +
                                            "-bit elements; load them into the same type");
    }
    std::map<std::uint64_t, std::vector<T>> loaded;
    for (std::uint64_t b = 0; b < header[2]; ++b) {
      std::uint64_t entry[2];
      is.read(reinterpret_cast<char*>(entry), sizeof(entry));
      if (!is) break;
      auto& v = loaded[entry[0]];
      v.resize(entry[1]);
      is.read(reinterpret_cast<char*>(v.data()),
              static_cast<std::streamsize>(entry[1] * sizeof(T)));
    }
    if (!is) detail::invalid("residual::load", "the stream ended inside the saved residuals");
    buffers_ = std::move(loaded);
  }

 private:
  static constexpr std::uint64_t magic = 0x6368726573696401ull;
  std::map<std::uint64_t, std::vector<T>> buffers_;
};

/// Error feedback around compressor `C`; the residual store is the caller's.
template <class C, gradient_type T = float>
struct error_feedback {
  static_assert(
      !requires { typename C::inner_type; },
      "chorus::compress::error_feedback wraps a compressor, not another "
      "error_feedback: one residual per tensor is enough.");
  using inner_type = C;
  using value_type = T;
  static constexpr bool summable = C::summable;
  static constexpr bool stochastic = C::stochastic;
  static constexpr bool unbiased = false;  // the delayed residual biases each step on purpose
  static constexpr bool low_rank = traits<C>::low_rank;

  C codec;
  residual<T>* store;

  error_feedback(C c, residual<T>& r) : codec(c), store(&r) {}
};

/// Encodes `g` into `wire` with codec `c`; when `r` (a residual, as long as `g`) is not
/// empty, under error feedback: x = g + r is encoded and r becomes x - decode(wire).
/// `scratch` (at least as long as `g` when `r` is not empty) holds x.
template <class T, compressor<T> C>
void feedback_encode(const C& c, std::span<const T> g, std::span<T> r, std::span<std::byte> wire,
                     const context& ctx, std::span<T> scratch) {
  if (r.empty()) {
    c.encode(g, wire, ctx);
    return;
  }
  for (std::size_t i = 0; i < g.size(); ++i) scratch[i] = g[i] + r[i];
  const std::span<const T> x = scratch.first(g.size());
  c.encode(x, wire, ctx);
  decode(c, std::span<const std::byte>(wire), r, ctx);
  for (std::size_t i = 0; i < g.size(); ++i) r[i] = x[i] - r[i];
}

template <class C, class T>
error_feedback(C, residual<T>&) -> error_feedback<C, T>;

/// Deep Gradient Compression's pairing: exact top-k under error feedback.
template <gradient_type T = float>
using dgc = error_feedback<top_k, T>;

}  // namespace chorus::inline v0::compress

#pragma once
/// \file
/// The `chorus::compress::compressor` concept, its traits, and the wire helpers every
/// policy shares.
///
/// A compressor turns n gradient elements (`float` or `double`) into exactly
/// `wire_bytes<T>(n)` bytes and back. It is a value: its tuning (ratio, levels, block size,
/// seed) lives in data members set with designated initializers, and its behaviour in
/// static traits that the compressed collectives read at compile time:
///
/// | trait | meaning |
/// |---|---|
/// | `summable` | payloads of different ranks can be added without decoding: the payload is an
/// array of `wire_t<T>` elements and `decode(a + b) == decode(a) + decode(b)` | | `stochastic` |
/// the output depends on random draws (keyed by seed, step, tensor, rank) | | `unbiased` |
/// E[decode(encode(x))] == x | | `low_rank` | a matrix method with its own collective (PowerSGD),
/// not a byte codec |
///
/// State: every codec here is stateless between calls except where noted (PowerSGD keeps
/// its Q matrix; `error_feedback` keeps a residual); such state is owned by the caller.
#include <chorus/compress/rng.hpp>
#include <chorus/core/bytes.hpp>
#include <chorus/core/error.hpp>
#include <chorus/core/float16.hpp>

#include <cmath>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <span>
#include <string>
#include <type_traits>

namespace chorus::inline v0::compress {

/// The element types gradients are compressed from.
template <class T>
concept gradient_type = std::same_as<T, float> || std::same_as<T, double>;

/// Where and when one encode or decode runs: stochastic codecs key their random draws by
/// it, `cast{.pre_divide = true}` divides by `ranks`.
struct context {
  int rank = 0;
  int ranks = 1;
  std::uint64_t seed = 0;
  std::uint64_t step = 0;
  std::uint64_t tensor = 0;
  /// Which block of a chunked tensor (reduce-scatter and two-stage paths encode per block).
  std::uint64_t block = 0;

  /// The key of draws private to this rank (quantisation noise).
  [[nodiscard]] rng_key private_key(std::uint64_t codec_seed) const noexcept {
    return {codec_seed ^ seed, step, mix64(tensor) ^ block, static_cast<std::uint64_t>(rank)};
  }
  /// The key of draws every rank makes identically (random-k indices).
  [[nodiscard]] rng_key shared_key(std::uint64_t codec_seed) const noexcept {
    return {codec_seed ^ seed, step, mix64(tensor) ^ block, rng_key::shared};
  }
};

/// A byte codec for gradients of type `T`: exact wire size, encode, and decode-and-add.
///
///     std::size_t wire_bytes<T>(std::size_t n) const;              // exact, for n elements
///     void encode(std::span<const T> x, std::span<std::byte> wire, const context&) const;
///     void decode_add(std::span<const std::byte> wire, std::span<T> y, const context&) const;
///                                                                   // y += decode(wire)
/// plus the static traits `summable`, `stochastic`, `unbiased`.
template <class C, class T>
concept compressor = gradient_type<T> &&
    requires(const C& c, std::size_t n, std::span<const T> x, std::span<std::byte> w,
             std::span<const std::byte> cw, std::span<T> y, const context& ctx) {
  { C::summable } -> std::convertible_to<bool>;
  { C::stochastic } -> std::convertible_to<bool>;
  { C::unbiased } -> std::convertible_to<bool>;
  { c.template wire_bytes<T>(n) } -> std::same_as<std::size_t>;
  c.encode(x, w, ctx);
  c.decode_add(cw, y, ctx);
};

namespace detail {

/// Whether the codecs' AVX/AVX2 kernels for float may run: AVX2 present, and vector paths
/// allowed (`chorus::set_vector_conversions`, `CHORUS_FLOAT16_SCALAR`). Either way the
/// bits are the same.
inline bool vector_codecs() noexcept {
#if CHORUS_FLOAT16_X86_DISPATCH
  return vector_conversions() && chorus::detail::cpu_float16().avx2;
#else
  return false;
#endif
}

template <class C>
concept has_low_rank_flag = requires {
  { C::low_rank } -> std::convertible_to<bool>;
};
template <class C>
concept is_decorator = requires {
  typename C::inner_type;
};
}  // namespace detail

/// The traits of a compressor (or of an `error_feedback` decorator: those of what it wraps).
template <class C>
struct traits {
  static constexpr bool summable = C::summable;
  static constexpr bool stochastic = C::stochastic;
  static constexpr bool unbiased = C::unbiased;
  static constexpr bool deterministic = !C::stochastic;
  static constexpr bool low_rank = [] {
    if constexpr (detail::has_low_rank_flag<C>) {
      return bool(C::low_rank);
    } else {
      return false;
    }
  }();
};

namespace detail {
[[noreturn]] inline void invalid(const char* who, const std::string& what) {
  throw error(errc::invalid_argument, std::string("chorus::compress::") + who + ": " + what);
}

/// ceil(a / b) for b > 0.
constexpr std::size_t ceil_div(std::size_t a, std::size_t b) noexcept { return (a + b - 1) / b; }

/// How many of n elements a sparsifier with `ratio` keeps: ceil(ratio * n), at least one
/// when n > 0, at most n. The product is taken a few ulps low before the ceiling, so that
/// a ratio written in decimal does not round one element up (0.07 is 0.0700...0007 as a
/// double: 100 * 0.07 keeps 7, not 8), while 10,000,001 * 1e-7 still keeps 2.
inline std::size_t kept(const char* who, double ratio, std::size_t n) {
  if (!(ratio > 0.0 && ratio <= 1.0)) {
    invalid(who, "ratio " + std::to_string(ratio) + " is outside (0, 1]; pass e.g. .ratio = 0.01");
  }
  if (n == 0) return 0;
  const double x = static_cast<double>(n) * ratio;
  const auto k =
      static_cast<std::size_t>(std::ceil(x - x * 4 * std::numeric_limits<double>::epsilon()));
  return k < 1 ? 1 : (k > n ? n : k);
}

/// Indices travel as 32-bit integers: a tensor above 2^32 elements must be split.
inline void check_index_range(const char* who, std::size_t n) {
  if (n > 0xffffffffull) {
    invalid(who, "a tensor of " + std::to_string(n) +
                     " elements does not fit 32-bit indices; compress it in pieces");
  }
}

/// The payloads are written into memory sized exactly (`wire_bytes`): the unchecked
/// cursors of core/bytes.hpp.
using wire_writer = chorus::detail::span_writer;
using wire_reader = chorus::detail::span_reader;

/// Packs `bits`-wide codes (bits <= 8) little-endian into bytes, 64 bits at a time.
class bit_packer {
 public:
  bit_packer(std::byte* out, unsigned bits) noexcept : out_(out), bits_(bits) {}
  void put(std::uint64_t code) noexcept {
    acc_ |= code << fill_;
    fill_ += bits_;
    if (fill_ >= 64) {
      std::memcpy(out_, &acc_, 8);
      out_ += 8;
      fill_ -= 64;
      acc_ = fill_ == 0 ? 0 : code >> (bits_ - fill_);
    }
  }
  /// Writes the remaining bits (whole bytes only: the wire size rounds up to bytes).
  void flush() noexcept {
    const unsigned bytes = (fill_ + 7) / 8;
    std::memcpy(out_, &acc_, bytes);
  }

 private:
  std::byte* out_;
  std::uint64_t acc_ = 0;
  unsigned bits_;
  unsigned fill_ = 0;
};

/// Reads what `bit_packer` wrote; `total_bytes` bounds the reads.
class bit_unpacker {
 public:
  bit_unpacker(const std::byte* in, std::size_t total_bytes, unsigned bits) noexcept
      : in_(in), left_(total_bytes), bits_(bits), mask_((std::uint64_t{1} << bits) - 1) {}
  std::uint64_t get() noexcept {
    if (fill_ < bits_) {
      std::uint64_t next = 0;
      const std::size_t take = left_ < 8 ? left_ : 8;
      std::memcpy(&next, in_, take);
      in_ += take;
      left_ -= take;
      const std::uint64_t code = (acc_ | (next << fill_)) & mask_;
      const unsigned used = bits_ - fill_;  // bits taken from `next`
      acc_ = used == 64 ? 0 : next >> used;
      fill_ = static_cast<unsigned>(take * 8) - used;
      return code;
    }
    const std::uint64_t code = acc_ & mask_;
    acc_ >>= bits_;
    fill_ -= bits_;
    return code;
  }

 private:
  const std::byte* in_;
  std::size_t left_;
  std::uint64_t acc_ = 0;
  unsigned fill_ = 0;
  unsigned bits_;
  std::uint64_t mask_;
};

/// The wire must have exactly the size the codec promises.
inline void check_wire(const char* who, std::size_t got, std::size_t want) {
  if (got != want) {
    invalid(who, "the wire buffer has " + std::to_string(got) + " bytes but must have " +
                     std::to_string(want) + " (wire_bytes of the element count)");
  }
}

/// Zeroes `y`; an empty span (whose data() may be null) is left alone.
template <class T>
void zero_fill(std::span<T> y) noexcept {
  if (!y.empty()) std::memset(static_cast<void*>(y.data()), 0, y.size_bytes());
}
}  // namespace detail

/// `y = decode(wire)`: zero-fills, then decodes and adds.
template <class T, compressor<T> C>
void decode(const C& c, std::span<const std::byte> wire, std::span<T> y, const context& ctx) {
  detail::zero_fill(y);
  c.decode_add(wire, y, ctx);
}

}  // namespace chorus::inline v0::compress

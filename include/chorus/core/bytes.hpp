#pragma once
/// \file
/// Values to and from bytes, written once for every format chorus speaks: the tcp_store
/// protocol, ZeRO checkpoint files and the compressed payloads. Little-endian throughout
/// (the hosts chorus runs on are; a static_assert says so).
///
///  - `byte_writer` appends to a growable buffer; `byte_reader` reads it back with bounds
///    checks -- a read past the end yields zeros (or an empty span) and marks the reader
///    failed, so a parser of untrusted bytes checks once, after its last field.
///  - `span_writer` / `span_reader` move through memory the caller has sized exactly (the
///    compressed payloads, whose size `wire_bytes` computed): no checks, for hot loops.
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <type_traits>
#include <vector>

namespace chorus::inline v0::detail {

static_assert(std::endian::native == std::endian::little,
              "chorus's byte formats assume a little-endian host");

/// The `n` (<= 8) low bytes at `p` as a little-endian unsigned value.
inline std::uint64_t load_le(const std::byte* p, int n) noexcept {
  std::uint64_t v = 0;
  for (int i = n - 1; i >= 0; --i) v = (v << 8) | std::to_integer<std::uint64_t>(p[i]);
  return v;
}

/// Stores the `n` (<= 8) low bytes of `v` at `p`, little-endian.
inline void store_le(std::byte* p, std::uint64_t v, int n) noexcept {
  for (int i = 0; i < n; ++i) p[i] = std::byte((v >> (8 * i)) & 0xFF);
}

/// Appends values to a growable byte buffer.
class byte_writer {
 public:
  /// The low `n` bytes of `v`, little-endian (a fixed-width protocol field).
  byte_writer& put_le(std::uint64_t v, int n) {
    const std::size_t at = bytes.size();
    bytes.resize(at + static_cast<std::size_t>(n));
    store_le(bytes.data() + at, v, n);
    return *this;
  }
  /// The object representation of `v` (trivially copyable).
  template <class V>
  byte_writer& put(const V& v) {
    static_assert(std::is_trivially_copyable_v<V>);
    return put_bytes(std::as_bytes(std::span(&v, 1)));
  }
  byte_writer& put_bytes(std::span<const std::byte> b) {
    bytes.insert(bytes.end(), b.begin(), b.end());
    return *this;
  }

  std::vector<std::byte> bytes;
};

/// Reads values out of bytes; see the file comment for what a short read does.
class byte_reader {
 public:
  explicit byte_reader(std::span<const std::byte> data) noexcept : data_(data) {}

  /// A little-endian field of `n` (<= 8) bytes.
  std::uint64_t take_le(int n) noexcept {
    const std::span<const std::byte> b = take(static_cast<std::size_t>(n));
    return b.empty() ? 0 : load_le(b.data(), n);
  }
  /// A value written by `byte_writer::put`.
  template <class V>
  V get() noexcept {
    static_assert(std::is_trivially_copyable_v<V> && std::is_default_constructible_v<V>);
    V v{};
    const std::span<const std::byte> b = take(sizeof(V));
    if (!b.empty()) std::memcpy(&v, b.data(), sizeof(V));
    return v;
  }
  /// The next `n` bytes, or an empty span (and failed) if fewer are left.
  std::span<const std::byte> take(std::size_t n) noexcept {
    if (failed_ || left() < n) {
      failed_ = true;
      return {};
    }
    const auto out = data_.subspan(pos_, n);
    pos_ += n;
    return out;
  }

  [[nodiscard]] std::size_t left() const noexcept { return data_.size() - pos_; }
  [[nodiscard]] std::size_t position() const noexcept { return pos_; }
  [[nodiscard]] bool failed() const noexcept { return failed_; }
  /// Every read was in bounds and nothing is left over.
  [[nodiscard]] bool complete() const noexcept { return !failed_ && pos_ == data_.size(); }

 private:
  std::span<const std::byte> data_;
  std::size_t pos_ = 0;
  bool failed_ = false;
};

/// Writes trivially copyable values into memory sized for them (unaligned-safe).
class span_writer {
 public:
  explicit span_writer(std::span<std::byte> out) noexcept : p_(out.data()) {}
  template <class V>
  void put(const V& v) noexcept {
    std::memcpy(p_, &v, sizeof(V));
    p_ += sizeof(V);
  }
  [[nodiscard]] std::byte* position() noexcept { return p_; }

 private:
  std::byte* p_;
};

/// Reads what `span_writer` wrote.
class span_reader {
 public:
  explicit span_reader(std::span<const std::byte> in) noexcept : p_(in.data()) {}
  template <class V>
  V get() noexcept {
    V v;
    std::memcpy(&v, p_, sizeof(V));
    p_ += sizeof(V);
    return v;
  }
  [[nodiscard]] const std::byte* position() const noexcept { return p_; }

 private:
  const std::byte* p_;
};

}  // namespace chorus::inline v0::detail

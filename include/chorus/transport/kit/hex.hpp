#pragma once
/// \file
/// Bytes as lowercase hex text and back: how transports publish binary addresses and ids
/// (UCX worker addresses, NCCL's unique id) through the text-friendly bootstrap stores.
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace chorus::inline v0::detail {

inline std::string to_hex(const void* data, std::size_t n) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string s;
  s.reserve(2 * n);
  const auto* p = static_cast<const unsigned char*>(data);
  for (std::size_t i = 0; i < n; ++i) {
    s += digits[p[i] >> 4];
    s += digits[p[i] & 15];
  }
  return s;
}

/// The bytes of `s`; empty when `s` is not hex of whole bytes.
inline std::vector<unsigned char> from_hex(std::string_view s) {
  auto value = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  std::vector<unsigned char> out;
  if (s.size() % 2 != 0) return {};
  out.reserve(s.size() / 2);
  for (std::size_t i = 0; i < s.size(); i += 2) {
    const int hi = value(s[i]);
    const int lo = value(s[i + 1]);
    if (hi < 0 || lo < 0) return {};
    out.push_back(static_cast<unsigned char>(hi * 16 + lo));
  }
  return out;
}

}  // namespace chorus::inline v0::detail

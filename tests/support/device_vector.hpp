#pragma once
// n elements of T in device memory (chorus::device::memory) with the typed copies the GPU
// tests need: upload a host vector, download into a fresh one, poison with 0xFF bytes (for
// floats a NaN, which never equals an expected value).
#include <chorus/device/runtime.hpp>

#include <cstddef>
#include <span>
#include <vector>

namespace harness {

template <class T>
struct device_vector {
  explicit device_vector(std::size_t n) : size(n), memory(n * sizeof(T)) {}
  [[nodiscard]] T* data() const noexcept { return memory.as<T>(); }
  [[nodiscard]] std::span<T> span() const noexcept { return {data(), size}; }
  void upload(const std::vector<T>& v) const { memory.upload(v.data(), v.size() * sizeof(T)); }
  [[nodiscard]] std::vector<T> download() const {
    std::vector<T> v(size);
    memory.download(v.data(), size * sizeof(T));
    return v;
  }
  void poison() const { memory.fill(0xFF); }

  std::size_t size;
  chorus::device::memory memory;
};

}  // namespace harness

#pragma once
/// \file
/// `per_peer<T>`: one T per rank of the group, indexed by the rank as the transports name it
/// (an `int`), so that a backend keeps one record of everything it holds per peer instead
/// of parallel vectors indexed through casts.
#include <cstddef>
#include <vector>

namespace chorus::inline v0::kit {

template <class T>
class per_peer {
 public:
  per_peer() = default;
  explicit per_peer(int ranks) : items_(static_cast<std::size_t>(ranks)) {}

  [[nodiscard]] T& operator[](int rank) noexcept { return items_[static_cast<std::size_t>(rank)]; }
  [[nodiscard]] const T& operator[](int rank) const noexcept {
    return items_[static_cast<std::size_t>(rank)];
  }
  [[nodiscard]] int size() const noexcept { return static_cast<int>(items_.size()); }
  [[nodiscard]] auto begin() noexcept { return items_.begin(); }
  [[nodiscard]] auto end() noexcept { return items_.end(); }

 private:
  std::vector<T> items_;
};

}  // namespace chorus::inline v0::kit

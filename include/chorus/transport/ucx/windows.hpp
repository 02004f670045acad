#pragma once
/// \file
/// The windows of `chorus::ucx_transport` (one-sided access through UCP RMA): what a rank
/// tells its peers about a window, what it holds of one (its registration and the peers'
/// remote keys), and the list that releases them with the transport.
#include <chorus/transport/ucx/state.hpp>

#include <ucp/api/ucp.h>

#include <cstdint>
#include <span>
#include <utility>
#include <vector>

namespace chorus::inline v0::detail::ucx {

/// What a rank tells its peers about one window.
struct window_record {
  std::uint64_t address = 0;
  std::uint64_t bytes = 0;
  std::uint64_t rkey_bytes = 0;
};

struct window_state {
  std::span<std::byte> local;
  ucp_mem_h memh = nullptr;
  std::vector<window_record> records;
  std::vector<ucp_rkey_h> rkeys;  ///< per peer; null for empty windows and this rank
};

/// One transport's windows (a group's windows are its own): their registrations and remote
/// keys are released with the transport, before the state they were made with.
class window_list {
 public:
  window_list() = default;
  explicit window_list(state* owner) noexcept : owner_(owner) {}
  window_list(window_list&& o) noexcept
      : owner_(std::exchange(o.owner_, nullptr)), list_(std::move(o.list_)) {}
  window_list& operator=(window_list&& o) noexcept {
    if (this != &o) {
      release();
      owner_ = std::exchange(o.owner_, nullptr);
      list_ = std::move(o.list_);
    }
    return *this;
  }
  ~window_list() { release(); }

  [[nodiscard]] std::vector<window_state>& list() noexcept { return list_; }
  [[nodiscard]] const std::vector<window_state>& list() const noexcept { return list_; }

  void release() noexcept {
    if (owner_ != nullptr && !list_.empty()) {
      worker_guard guard(*owner_);
      for (window_state& w : list_) {
        for (ucp_rkey_h k : w.rkeys) {
          if (k != nullptr) ucp_rkey_destroy(k);
        }
        if (w.memh != nullptr && owner_->context != nullptr) ucp_mem_unmap(owner_->context, w.memh);
      }
    }
    list_.clear();
  }

 private:
  state* owner_ = nullptr;
  std::vector<window_state> list_;
};

}  // namespace chorus::inline v0::detail::ucx

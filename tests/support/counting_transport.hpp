#pragma once
// A transport that forwards to another and counts, at the transport, every byte and
// operation handed to it: what the communicator's traffic counters and the compression
// ledger must agree with. `Windows` picks what it shows of the inner transport's windows:
// none (every collective runs two-sided), or get/put only (one-sided collectives then run
// with gets, each counted here).
#include <chorus/chorus.hpp>

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <utility>

namespace harness {

enum class windows { none, get_put };

template <class Inner, windows Windows>
class counting_transport {
 public:
  using request = typename Inner::request;

  explicit counting_transport(Inner inner) : inner_(std::move(inner)) {}

  [[nodiscard]] int rank() const noexcept { return inner_.rank(); }
  [[nodiscard]] int size() const noexcept { return inner_.size(); }

  request isend(int peer, chorus::tag_t tag, std::span<const std::byte> data) {
    count.sent_bytes += data.size();
    ++count.messages_sent;
    return inner_.isend(peer, tag, data);
  }
  request irecv(int peer, chorus::tag_t tag, std::span<std::byte> data) {
    count.received_bytes += data.size();
    ++count.messages_received;
    return inner_.irecv(peer, tag, data);
  }
  bool test(request& r) { return inner_.test(r); }
  void wait(request& r, chorus::deadline d) { inner_.wait(r, d); }
  void cancel(request& r) noexcept { inner_.cancel(r); }
  void abort(std::string_view reason) noexcept { inner_.abort(reason); }
  void abort(chorus::errc code, std::string_view reason) noexcept { inner_.abort(code, reason); }

  // Windows reached with get/put only (no peer_window: nothing is loaded behind our back).
  using window = typename Inner::window;
  window register_window(std::span<std::byte> local,
                         chorus::deadline d = chorus::deadline::after(
                             chorus::default_timeout)) requires(Windows == windows::get_put) {
    return inner_.register_window(local, d);
  }
  request get(window w, int peer, std::size_t offset,
              std::span<std::byte> local) requires(Windows == windows::get_put) {
    count.received_bytes += local.size();
    ++count.messages_received;
    return inner_.get(w, peer, offset, local);
  }
  request put(window w, int peer, std::size_t offset,
              std::span<const std::byte> src) requires(Windows == windows::get_put) {
    count.sent_bytes += src.size();
    ++count.messages_sent;
    return inner_.put(w, peer, offset, src);
  }

  /// Everything handed to the inner transport so far.
  chorus::traffic count{};

 private:
  Inner inner_;
};

}  // namespace harness

#pragma once
/// \file
/// The state of `chorus::ucx_transport` that outlives moves and is shared by a job's groups:
/// the UCP context and worker, the endpoint (and health) of every peer, the abort record
/// and its sends, and the posted operations. The error callback and other threads' aborts
/// reach it at a fixed address; `worker_guard` lets one thread into the worker at a time.
#include <chorus/bootstrap/posix.hpp>
#include <chorus/core/deadline.hpp>
#include <chorus/core/error.hpp>
#include <chorus/transport/kit/abort_record.hpp>
#include <chorus/transport/kit/group_view.hpp>
#include <chorus/transport/kit/peer_processes.hpp>
#include <chorus/transport/kit/per_peer.hpp>

#include <ucp/api/ucp.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace chorus::inline v0::detail::ucx {

enum class op_kind : std::uint8_t { send, recv, get, put, done };

/// One posted operation. `request` is UCX's handle while UCX works on it; `flush` (put
/// only) is the endpoint flush that makes the put visible at the peer.
struct operation {
  op_kind kind = op_kind::done;
  int peer = 0;
  std::size_t bytes = 0;
  void* request = nullptr;
  void* flush = nullptr;
  ucp_tag_recv_info_t info{};
  bool complete = false;
  ucs_status_t status = UCS_OK;
  /// Set when the operation failed in a way the transport already explained.
  bool failed = false;
  errc code = errc::transport;
  std::string failure;
};

using operation_ptr = std::shared_ptr<operation>;

/// The abort record sent to every peer.
struct abort_message {
  std::int32_t rank = 0;
  std::int32_t code = 0;
  char reason[488] = {};
};

/// Everything the error callback and other threads may touch lives here, at a fixed
/// address, so that the transport object itself can move.
struct state {
  int rank = 0;
  int size = 1;
  ucp_context_h context = nullptr;
  ucp_worker_h worker = nullptr;
  /// Everything this rank holds for one peer.
  struct link {
    ucp_ep_h ep = nullptr;
    ucs_status_t status = UCS_OK;  ///< what UCX's error callback reported (UCS_OK: healthy)
    bool closed = false;           ///< force-closed by `cancel` (or failed and closed)
    bool local = false;            ///< same host, pid and network namespace
    bool exited = false;           ///< a local peer whose process has exited
    std::pair<state*, int> callback{nullptr, 0};  ///< (state, peer) for the error callback
  };
  kit::per_peer<link> links;  ///< made once: the callbacks hold addresses into it
  kit::peer_processes peers;  ///< the local peers' processes, watched
  /// The host of each world rank, numbered in order of first appearance.
  std::vector<int> hosts;
  kit::context_pool contexts;  ///< the group contexts this process uses

  /// The group's abort record (raised here or received from a peer).
  kit::abort_record<488> abort{};
  /// Whether this rank must still send the record to its peers (raised here by a thread
  /// that could not enter the worker).
  std::atomic<bool> abort_pending_send{false};
  /// Held (exchange to true) by whichever thread is inside the worker: the user's thread in
  /// any call, or a foreign thread's `abort` that sends the record itself.
  std::atomic<bool> busy{false};
  int efd = -1;                       ///< the worker's event fd (owned by UCX)
  bootstrap::detail::unique_fd wake;  ///< written by `abort` from another thread
  /// The receive that takes abort records from any peer.
  void* abort_request = nullptr;
  /// Abort records on their way to peers: kept until UCX has delivered them (a peer that is
  /// busy elsewhere may take a while to progress its side), and waited for at shutdown.
  std::vector<std::pair<void*, int>> abort_sends;  ///< (request, peer)
  abort_message abort_in{};
  abort_message abort_out{};  ///< what `abort_sends` carry
  /// The error the last failed wait threw: what `cancel` sends ahead when it must
  /// force-close an endpoint (so peers learn the real cause first).
  std::string last_failure;
  errc last_code = errc::aborted;

  state() = default;
  state(const state&) = delete;
  state& operator=(const state&) = delete;

  ~state() { shutdown(); }

  static void on_error(void* arg, ucp_ep_h, ucs_status_t status) noexcept {
    auto* a = static_cast<std::pair<state*, int>*>(arg);
    auto& s = a->first->links[a->second].status;
    if (s == UCS_OK) s = status;
  }

  void shutdown() noexcept {
    if (worker != nullptr) {
      if (abort_request != nullptr) {
        ucp_request_cancel(worker, abort_request);
        for (int i = 0; i < 1000 && ucp_request_check_status(abort_request) == UCS_INPROGRESS;
             ++i) {
          ucp_worker_progress(worker);
        }
        ucp_request_free(abort_request);
        abort_request = nullptr;
      }
      // A failed rank exits right after its abort: give the records half a second to reach
      // peers that are alive but not progressing yet. A record to a peer that is gone never
      // completes: stop waiting for it as soon as that is known (its process exited, or UCX
      // reported its endpoint), so that a survivor exits at once (it waited 5 s for those).
      const auto until = clock::now() + std::chrono::milliseconds(500);
      for (const auto& [r, peer] : abort_sends) {
        link& l = links[peer];
        while (ucp_request_check_status(r) == UCS_INPROGRESS && clock::now() < until) {
          if (!l.exited) l.exited = peers.gone(peer);
          if (l.status != UCS_OK || l.exited) break;
          ucp_worker_progress(worker);
        }
        ucp_request_free(r);  // released now, or by UCX when it completes
      }
      abort_sends.clear();
      close_endpoints();
    }
    if (worker != nullptr) ucp_worker_destroy(worker);
    worker = nullptr;
    if (context != nullptr) ucp_cleanup(context);
    context = nullptr;
  }

  /// Closes every endpoint: flushed where the peer is healthy (its last messages still
  /// reach it), forced where it failed; gives up waiting after a second.
  void close_endpoints() noexcept {
    std::vector<void*> closing;
    for (link& l : links) {
      if (l.ep == nullptr) continue;
      ucp_request_param_t param{};
      param.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS;
      param.flags = l.status != UCS_OK || l.exited ? UCP_EP_CLOSE_FLAG_FORCE : 0;
      void* r = ucp_ep_close_nbx(l.ep, &param);
      if (UCS_PTR_IS_PTR(r)) closing.push_back(r);
      l.ep = nullptr;
    }
    const auto until = clock::now() + std::chrono::seconds(1);
    for (void* r : closing) {
      while (ucp_request_check_status(r) == UCS_INPROGRESS && clock::now() < until) {
        ucp_worker_progress(worker);
      }
      ucp_request_free(r);
    }
  }
};

/// Holds `state::busy` for the calling thread.
class worker_guard {
 public:
  explicit worker_guard(state& s) noexcept : s_(s) {
    while (s_.busy.exchange(true, std::memory_order_acquire)) std::this_thread::yield();
  }
  worker_guard(const worker_guard&) = delete;
  worker_guard& operator=(const worker_guard&) = delete;
  ~worker_guard() { s_.busy.store(false, std::memory_order_release); }

 private:
  state& s_;
};

}  // namespace chorus::inline v0::detail::ucx

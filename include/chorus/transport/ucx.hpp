#pragma once
/// \file
/// `chorus::ucx_transport`: processes on one host or across hosts exchange messages through
/// UCX (UCP tag matching and RMA), the engine Open MPI and UCC run on.
///
/// Every rank owns one UCP context and one worker (single-threaded). The ranks exchange
/// worker addresses through the caller's `blob_exchange` (the bootstrap store), then each
/// rank creates an endpoint to every peer with `UCP_ERR_HANDLING_MODE_PEER` and an error
/// callback, so a peer whose connection fails (its process died, its host went away) is
/// reported as `errc::peer_lost` naming it instead of a hang.
///
/// Tags: UCX matches on one 64-bit tag per worker, so the sender's world rank and the
/// group's context must be inside it.
///
///     bits 46..63  sender's world rank (up to 2^18 ranks)
///     bits 34..45  the group's context (0 for the world; kit/group_view.hpp)
///     bits 32..33  kind: 0 collective, 1 user point-to-point, 2 control (abort, windows)
///     collective   bits 16..31 sequence number mod 2^16, bits 0..15 schedule tag
///     user, control bits 0..31 the user's tag / the control code
///
/// The schedule tags are small (0, 1) plus five reserved values at the top of the 32-bit
/// range (0xfffffff0.., see transport/kit/tags.hpp, exec/one_sided.hpp), which fold onto their
/// low 16 bits. Receives match the whole tag (mask of all ones): per (sender, tag) FIFO is
/// UCX's per-endpoint ordering. The sequence number wraps after 2^16 collectives of one
/// group, harmless unless that many are in flight at once (the rule of transport/kit/tags.hpp).
///
/// Groups (`communicator::split`, `subgroup`): a group's transport shares the world's UCP
/// worker and endpoints (no new connection); only its context in the tags and its windows
/// are its own. An abort, from any group, reaches every rank of the job and fails every
/// group: they share the connections that a failure breaks. Peers in transport errors are
/// named by their world rank.
///
/// Progress is driven by the caller: `test` and `wait` call `ucp_worker_progress`. `wait`
/// spins on progress for a while, yields between progress calls for up to 5 ms, then arms
/// the worker (`ucp_worker_arm`) and sleeps in poll() on its event fd, so an arriving
/// message wakes it at once; a sleep lasts at most `detail::ucx::longest_sleep`, after which
/// it checks its deadline and its peers' liveness and progresses again (progress that
/// raises no event is never delayed by more than that). Peers on the same host and in the
/// same network and pid namespace are also watched through their pidfds (a dead local
/// process is reported within `liveness_period` whatever UCX's keep-alive settings); peers
/// elsewhere rely on UCX's error callback (a closed TCP connection, a failed InfiniBand QP).
///
/// `abort(reason)` may be called from any thread: it records the cause and, if no other
/// thread is inside the transport, sends it to every peer at once; otherwise the thread in
/// `wait` wakes at once (an eventfd beside the worker's), sends it and throws. Every rank
/// keeps one receive posted for abort records from any peer, so an abort reaches every
/// rank's next wait.
///
/// UCX's own environment (UCX_TLS, UCX_NET_DEVICES, UCX_*) is read by UCX as it is; chorus
/// sets nothing. A configuration under which UCX has no usable transport, or cannot reach a
/// peer, is reported by the constructor in one line naming the variables.
///
/// The pieces live under transport/ucx/: tags.hpp (the tag layout above), state.hpp (the
/// worker, the peers' endpoints, the abort record: what the job's groups share),
/// windows.hpp (RMA registrations and remote keys), environment.hpp (UCX's variables, the
/// host identity). This file is the group's transport over them.
#include <chorus/bootstrap/from_env.hpp>
#include <chorus/bootstrap/posix.hpp>
#include <chorus/core/deadline.hpp>
#include <chorus/core/error.hpp>
#include <chorus/transport/contract.hpp>
#include <chorus/transport/kit/abort_record.hpp>
#include <chorus/transport/kit/cpus.hpp>
#include <chorus/transport/kit/exchange.hpp>
#include <chorus/transport/kit/group_view.hpp>
#include <chorus/transport/kit/hex.hpp>
#include <chorus/transport/kit/peer_processes.hpp>
#include <chorus/transport/kit/per_peer.hpp>
#include <chorus/transport/kit/records.hpp>
#include <chorus/transport/kit/wait_ladder.hpp>
#include <chorus/transport/ucx/environment.hpp>
#include <chorus/transport/ucx/state.hpp>
#include <chorus/transport/ucx/tags.hpp>
#include <chorus/transport/ucx/windows.hpp>

#include <ucp/api/ucp.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include <poll.h>
#include <sched.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace chorus::inline v0 {

namespace detail::ucx {

/// How long a waiting rank sleeps on the worker's event fd at most before it progresses
/// again, and how often it checks its local peers' pidfds. Messages wake it at once; the
/// bound only matters for progress UCX raises no event for.
inline constexpr auto longest_sleep = std::chrono::milliseconds(1);
inline constexpr auto liveness_period = std::chrono::milliseconds(50);
/// Progress calls before yielding (fewer when ranks outnumber CPUs: spinning then only
/// steals the time slice of the peer being waited for).
inline constexpr int spin_iterations = 4000;
inline constexpr int oversubscribed_spin_iterations = 64;
/// How long a waiting rank keeps progressing between yields before it sleeps. Rendezvous
/// steps of UCX's protocols do not all raise events on the worker's fd: sleeping right
/// after the spin made every 64 KiB all-reduce at 2 ranks take ~1 ms (one sleep per
/// message, over sm and tcp alike), against ~0.1 ms when progressing between yields.
/// Yielding still hands the CPU to a peer that needs it when ranks outnumber CPUs.
inline constexpr auto yield_window = std::chrono::milliseconds(5);
/// How long a rank keeps progressing after it saw a peer fail, to take in what the peer
/// sent before (its abort record arrives over the same connection as its data).
inline constexpr auto drain_period = std::chrono::milliseconds(100);
/// How long `cancel` lets a send in flight finish on its own before it force-closes the
/// endpoint (which fails the send, so UCX lets go of the buffer).
inline constexpr auto cancel_grace = std::chrono::milliseconds(100);

}  // namespace detail::ucx

/// Point-to-point (and one-sided) transport over UCX between processes on any hosts.
///
/// A group of the job's ranks (`communicator::split`, `subgroup`) is another
/// `ucx_transport` over the same worker and endpoints: no new connection, its own context
/// in the tags, its own windows.
class ucx_transport {
 public:
  /// The name reports and messages give this transport (`CHORUS_DEBUG=info`).
  static constexpr std::string_view debug_name = "ucx";
  using request = detail::ucx::operation_ptr;

  /// Names one window of the group, as returned by `register_window`.
  struct window {
    std::size_t index = static_cast<std::size_t>(-1);
  };

  /// Creates this rank's UCP context and worker, exchanges worker addresses through
  /// `exchange` (one all-gather), and creates an endpoint to every peer. Throws
  /// `errc::transport` in one line when UCX cannot start with the environment's UCX_*
  /// settings or cannot reach a peer.
  ucx_transport(int rank, int size, const blob_exchange& exchange)
      : state_(std::make_shared<detail::ucx::state>()),
        view_(kit::group_view::world(rank, size)),
        windows_(state_.get()) {
    if (size < 1 || rank < 0 || rank >= size || size > detail::ucx::max_ranks) {
      throw error(errc::invalid_argument, "chorus::ucx_transport: rank " + std::to_string(rank) +
                                              " is outside a group of " + std::to_string(size) +
                                              " (at most 2^18 ranks)");
    }
    detail::ucx::state& s = *state_;
    s.rank = rank;
    s.size = size;
    const auto n = static_cast<std::size_t>(size);
    s.links = kit::per_peer<detail::ucx::state::link>(size);
    s.peers = kit::peer_processes(size);
    start_worker();

    // One exchange: "<pid> <host identity> <hex worker address>".
    ucp_address_t* address = nullptr;
    std::size_t address_bytes = 0;
    check(ucp_worker_get_address(s.worker, &address, &address_bytes), "ucp_worker_get_address");
    const std::string mine = std::to_string(::getpid()) + " " + detail::ucx::host_identity() + " " +
                             chorus::detail::to_hex(address, address_bytes);
    ucp_worker_release_address(s.worker, address);
    const std::vector<std::string> blobs = exchange(mine);
    if (blobs.size() != n) {
      throw error(errc::transport, "chorus::ucx_transport: the exchange returned " +
                                       std::to_string(blobs.size()) + " entries for " +
                                       std::to_string(size) + " ranks");
    }
    const std::string my_host = detail::ucx::host_identity();
    std::vector<std::string> host_names;
    auto host_index = [&](const std::string& name) {
      const auto at = std::find(host_names.begin(), host_names.end(), name);
      if (at != host_names.end()) return static_cast<int>(at - host_names.begin());
      host_names.push_back(name);
      return static_cast<int>(host_names.size() - 1);
    };
    s.hosts.assign(n, 0);
    for (int p = 0; p < size; ++p) {
      const std::string& blob = blobs[static_cast<std::size_t>(p)];
      const auto first = blob.find(' ');
      const auto second = first == std::string::npos ? first : blob.find(' ', first + 1);
      s.hosts[static_cast<std::size_t>(p)] =
          host_index(p == rank || second == std::string::npos
                         ? (p == rank ? my_host : std::string("?") + std::to_string(p))
                         : blob.substr(first + 1, second - first - 1));
      if (p == rank) continue;
      const auto bytes = second == std::string::npos
                             ? std::vector<unsigned char>{}
                             : chorus::detail::from_hex(std::string_view(blob).substr(second + 1));
      if (bytes.empty()) {
        throw error(errc::transport, "chorus::ucx_transport: rank " + std::to_string(rank) +
                                         ": rank " + std::to_string(p) +
                                         " published no usable worker address");
      }
      const int pid = std::atoi(blob.substr(0, first).c_str());
      s.links[p].local = blob.substr(first + 1, second - first - 1) == my_host;
      if (s.links[p].local) s.peers.watch(p, pid);
      s.links[p].callback = {&s, p};
      ucp_ep_params_t params{};
      params.field_mask = UCP_EP_PARAM_FIELD_REMOTE_ADDRESS | UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE |
                          UCP_EP_PARAM_FIELD_ERR_HANDLER;
      params.address = reinterpret_cast<const ucp_address_t*>(bytes.data());
      params.err_mode = UCP_ERR_HANDLING_MODE_PEER;
      params.err_handler.cb = &detail::ucx::state::on_error;
      params.err_handler.arg = &s.links[p].callback;
      const ucs_status_t st = ucp_ep_create(s.worker, &params, &s.links[p].ep);
      if (st != UCS_OK) {
        s.links[p].ep = nullptr;
        throw error(errc::transport,
                    "chorus::ucx_transport: rank " + std::to_string(rank) + " cannot reach rank " +
                        std::to_string(p) + " through UCX (ucp_ep_create: " +
                        detail::ucx::status_text(st) + ") with " + detail::ucx::ucx_environment() +
                        "; `ucx_info -d` lists the transports and devices");
      }
    }
    post_abort_receive();
    if (size > kit::usable_cpus()) {
      spin_limit_ = detail::ucx::oversubscribed_spin_iterations;
    }
    hosts_ = std::make_shared<const std::vector<int>>(s.hosts);
  }

  /// The transport of the job `bootstrap::from_env()` found (chorusrun, torchrun, mpirun,
  /// srun): ranks meet through the job's store under `chorus/<job_id>/ucx/<instance>/...`.
  /// Give each communicator of a job its own `instance` name.
  explicit ucx_transport(const bootstrap::world& world, std::string_view instance = "comm0")
      : ucx_transport(world, recovery_point::of_job(world.store, world.job_id, "ucx", instance)) {}

  /// A new transport of `size` ranks with a new worker and endpoints, finding its peers
  /// through `exchange`, that can be rebuilt again from `point` (`communicator::shrink`).
  static ucx_transport rebuilt(recovery_point point, int rank, int size,
                               const blob_exchange& exchange) {
    ucx_transport t(rank, size, exchange);
    t.recovery_ = std::make_shared<const recovery_point>(std::move(point));
    return t;
  }

  /// Where this group can be rebuilt from after a failure; null for a transport made
  /// without a store and for a group made by `split` (shrinkable_transport).
  [[nodiscard]] const recovery_point* recovery() const noexcept {
    return view_.members ? nullptr : recovery_.get();
  }
  /// Whether `peer` (a rank of this group) is known to be gone: on this host (same pid
  /// namespace), its process exited; anywhere, UCX reported its endpoint failed (a process
  /// on another host that dies has its connections reset by its kernel). A peer this rank
  /// never waited for after it died may not be reported: false then.
  [[nodiscard]] bool peer_gone(int peer) const noexcept {
    if (peer < 0 || peer >= view_.size || peer == view_.rank) return false;
    const int w = view_.world(peer);
    const auto& l = state_->links[w];
    return (l.local && state_->peers.gone(w)) || l.status != UCS_OK;
  }

  ucx_transport(ucx_transport&&) noexcept = default;
  ucx_transport& operator=(ucx_transport&& o) noexcept {
    if (this != &o) {
      windows_.release();  // while the state they were made with is surely alive
      windows_ = std::move(o.windows_);
      view_ = std::move(o.view_);
      hosts_ = std::move(o.hosts_);
      spin_limit_ = o.spin_limit_;
      recovery_ = std::move(o.recovery_);
      state_ = std::move(o.state_);
    }
    return *this;
  }
  ~ucx_transport() = default;

  [[nodiscard]] int rank() const noexcept { return view_.rank; }
  [[nodiscard]] int size() const noexcept { return view_.size; }
  /// This rank in the job's world.
  [[nodiscard]] int world_rank() const noexcept { return state_->rank; }

  /// The host of each rank of this group, numbered in order of first appearance: ranks on
  /// one host share a kernel and a network namespace (so namespace "hosts" count as hosts).
  [[nodiscard]] std::span<const int> hosts() const noexcept {
    return hosts_ ? std::span<const int>(*hosts_) : std::span<const int>();
  }

  /// The transport of a group of this one's ranks, on the same worker and endpoints
  /// (group/split.hpp).
  [[nodiscard]] ucx_transport split(const group_spec& g) const {
    return ucx_transport(*this,
                         view_.subgroup(g.members, g.rank, g.context, state_->contexts, state_));
  }
  [[nodiscard]] kit::context_mask used_contexts() const { return state_->contexts.used(); }

  request isend(int peer, tag_t tag, std::span<const std::byte> data) {
    detail::ucx::worker_guard guard(*state_);
    check_peer(peer, "send to");
    return post_send(view_.world(peer), detail::ucx::encode(world_rank(), view_.tag(tag)), data);
  }

  request irecv(int peer, tag_t tag, std::span<std::byte> data) {
    detail::ucx::worker_guard guard(*state_);
    check_peer(peer, "receive from");
    const int w = view_.world(peer);
    return post_recv(w, detail::ucx::encode(w, view_.tag(tag)), data);
  }

  bool test(request& req) {
    detail::ucx::worker_guard guard(*state_);
    progress();
    return finished(req);
  }

  void wait(request& req, deadline until) {
    detail::ucx::worker_guard guard(*state_);
    try {
      if (!wait_locked(req, until)) {
        throw error(errc::timeout, who(world_rank()) + ": no " +
                                       (req->kind == detail::ucx::op_kind::recv
                                            ? "message from"
                                            : std::string("completion of a ") + kind_name(*req)) +
                                       " " + who(req->peer) + " before the deadline" +
                                       stopped_peers());
      }
    } catch (const error& e) {
      // Tell the peers now, before the caller's unwinding cancels (and maybe force-closes)
      // anything: they learn the real cause, not a broken connection.
      remember_failure(e);
      throw;
    }
  }

  /// Like `wait`, but returns false at the deadline instead of failing (the request stays
  /// posted and nobody is told); a lost peer or an abort still throws.
  bool try_wait(request& req, deadline until) {
    detail::ucx::worker_guard guard(*state_);
    try {
      return wait_locked(req, until);
    } catch (const error& e) {
      remember_failure(e);
      throw;
    }
  }

  void cancel(request& req) noexcept {
    if (!req || req->complete) return;
    detail::ucx::worker_guard guard(*state_);
    detail::ucx::state& s = *state_;
    if (req->kind == detail::ucx::op_kind::recv && req->request != nullptr) {
      ucp_request_cancel(s.worker, req->request);
    }
    // A receive that matched a message, a send, a get or a put may still be moving bytes:
    // let it finish for a moment, then fail the endpoint so UCX lets go of the buffer.
    const auto grace = clock::now() + detail::ucx::cancel_grace;
    while (!poll(*req) && !peer_failed(req->peer) && clock::now() < grace) {
      ucp_worker_progress(s.worker);
    }
    if (!req->complete) {
      force_close(req->peer);
      const auto until = clock::now() + detail::ucx::cancel_grace;
      while (!poll(*req) && clock::now() < until) ucp_worker_progress(s.worker);
    }
    if (!req->complete) {
      // UCX keeps a receive that matched a dead peer's rendezvous message until data that
      // will never come; a dead peer writes nothing more, so the buffer is safe. A live
      // peer's endpoint has just been closed: nothing more arrives from it either, but say so.
      if (s.links[req->peer].status == UCS_OK && !s.links[req->peer].exited) {
        std::fprintf(stderr,
                     "chorus::ucx_transport: rank %d: a request to rank %d did not finish after "
                     "its endpoint was closed; releasing it\n",
                     s.rank, req->peer);
      }
      if (req->request != nullptr) ucp_request_free(req->request);
      if (req->flush != nullptr) ucp_request_free(req->flush);
      req->request = nullptr;
      req->flush = nullptr;
      req->complete = true;
    }
    req->failed = true;
    req->code = errc::aborted;
    req->failure = "cancelled";
  }

  void abort(std::string_view reason) noexcept { abort(errc::aborted, reason); }

  /// Aborts with the code of the failure that caused it; peers fail with the same code.
  /// Never blocks for long: when another thread is inside the transport, it only records
  /// the cause, and that thread sends it within one nap.
  void abort(errc code, std::string_view reason) noexcept {
    detail::ucx::state& s = *state_;
    if (!record_abort(s.rank, code, reason)) return;
    s.abort_pending_send.store(true, std::memory_order_release);
    if (!s.busy.exchange(true, std::memory_order_acquire)) {
      send_abort_records();
      s.busy.store(false, std::memory_order_release);
    } else if (s.wake.get() >= 0) {
      const std::uint64_t one = 1;  // wakes the thread sleeping in wait
      (void)!::write(s.wake.get(), &one, sizeof one);
    }
  }

  /// Collective (every rank calls it, in the same order relative to other window calls):
  /// registers `local` with UCX (`ucp_mem_map`) and exchanges its packed remote key with
  /// every peer, so that peers reach it with `get`/`put`. Each rank may offer a different
  /// size, 0 included. The registration lives as long as the transport.
  window register_window(std::span<std::byte> local,
                         deadline until = deadline::after(default_timeout)) {
    detail::ucx::state& s = *state_;
    detail::ucx::window_state w;
    w.local = local;
    void* packed = nullptr;
    std::size_t packed_bytes = 0;
    {
      detail::ucx::worker_guard guard(s);
      if (!local.empty()) {
        ucp_mem_map_params_t params{};
        params.field_mask = UCP_MEM_MAP_PARAM_FIELD_ADDRESS | UCP_MEM_MAP_PARAM_FIELD_LENGTH;
        params.address = local.data();
        params.length = local.size();
        check(ucp_mem_map(s.context, &params, &w.memh), "ucp_mem_map");
        const ucs_status_t st = ucp_rkey_pack(s.context, w.memh, &packed, &packed_bytes);
        if (st != UCS_OK) {
          ucp_mem_unmap(s.context, w.memh);
          check(st, "ucp_rkey_pack");
        }
      }
    }
    // From here the window is ours to clean up with the transport, whatever happens.
    windows_.list().push_back(std::move(w));
    detail::ucx::window_state& mine = windows_.list().back();
    std::string rkey(static_cast<const char*>(packed), packed_bytes);
    if (packed != nullptr) ucp_rkey_buffer_release(packed);
    detail::ucx::window_record record{reinterpret_cast<std::uintptr_t>(local.data()), local.size(),
                                      rkey.size()};
    mine.records = exchange_records(record, until);
    // The keys, sized by the records.
    std::vector<std::string> keys(static_cast<std::size_t>(size()));
    {
      std::vector<request> pending;
      for (int p = 0; p < size(); ++p) {
        const auto i = static_cast<std::size_t>(p);
        if (p == rank() || mine.records[i].rkey_bytes == 0) continue;
        keys[i].resize(mine.records[i].rkey_bytes);
        pending.push_back(
            control_recv(p, detail::ucx::control_rkey,
                         {reinterpret_cast<std::byte*>(keys[i].data()), keys[i].size()}));
      }
      for (int p = 0; p < size(); ++p) {
        if (p == rank() || rkey.empty()) continue;
        pending.push_back(
            control_send(p, detail::ucx::control_rkey,
                         {reinterpret_cast<const std::byte*>(rkey.data()), rkey.size()}));
      }
      wait_all(pending, until);
    }
    detail::ucx::worker_guard guard(s);
    mine.rkeys.assign(static_cast<std::size_t>(size()), nullptr);
    for (int p = 0; p < size(); ++p) {
      const auto i = static_cast<std::size_t>(p);
      if (keys[i].empty()) continue;
      check(ucp_ep_rkey_unpack(ep(view_.world(p)), keys[i].data(), &mine.rkeys[i]),
            "ucp_ep_rkey_unpack");
    }
    return window{windows_.list().size() - 1};
  }

  /// This rank's memory of window `w`.
  [[nodiscard]] std::span<std::byte> local_window(window w) const {
    return window_at(w, "local_window").local;
  }

  /// Size of rank `peer`'s part of window `w`.
  [[nodiscard]] std::size_t window_bytes(window w, int peer) const {
    const auto& s = window_at(w, "window_bytes");
    check_window_rank(peer, "window_bytes");
    return s.records[static_cast<std::size_t>(peer)].bytes;
  }

  /// Reads `local.size()` bytes at `offset` of rank `peer`'s part of window `w` into
  /// `local` (`ucp_get_nbx`); complete once `test`/`wait` says so.
  request get(window w, int peer, std::size_t offset, std::span<std::byte> local) {
    return one_sided(detail::ucx::op_kind::get, w, peer, offset, local.data(), local.size());
  }

  /// Writes `src` to `offset` of rank `peer`'s part of window `w` (`ucp_put_nbx`, then an
  /// endpoint flush): complete once the bytes are in the peer's memory.
  request put(window w, int peer, std::size_t offset, std::span<const std::byte> src) {
    return one_sided(detail::ucx::op_kind::put, w, peer, offset, const_cast<std::byte*>(src.data()),
                     src.size());
  }

 private:
  /// The world constructor's work: meets through the store at `at`, which it keeps for a
  /// shrink.
  ucx_transport(const bootstrap::world& world, recovery_point at)
      : ucx_transport(world.rank, world.size,
                      store_exchange(at.store, at.prefix, world.rank, world.size, world.timeout)) {
    recovery_ = std::make_shared<const recovery_point>(std::move(at));
  }

  /// A group of `parent`'s ranks, on its state.
  ucx_transport(const ucx_transport& parent, kit::group_view view)
      : state_(parent.state_),
        view_(std::move(view)),
        windows_(state_.get()),
        spin_limit_(parent.spin_limit_) {
    std::vector<int> mine(static_cast<std::size_t>(view_.size));
    std::vector<int> renumbered(state_->hosts.size(), -1);
    int next = 0;
    for (int r = 0; r < view_.size; ++r) {
      int& h = renumbered[static_cast<std::size_t>(
          state_->hosts[static_cast<std::size_t>(view_.world(r))])];
      if (h < 0) h = next++;
      mine[static_cast<std::size_t>(r)] = h;
    }
    hosts_ = std::make_shared<const std::vector<int>>(std::move(mine));
  }

  void start_worker() {
    detail::ucx::state& s = *state_;
    ucp_config_t* config = nullptr;
    ucs_status_t st = ucp_config_read(nullptr, nullptr, &config);
    if (st != UCS_OK) configuration_error("ucp_config_read", st);
    // UCX 1.13's shared-memory transports (posix, sysv) support peer-failure handling but
    // do not offer it unless asked (UCX_MM_ERROR_HANDLING, or UCX_POSIX_/UCX_SYSV_, default
    // n), and an endpoint in UCP_ERR_HANDLING_MODE_PEER then finds every sm peer
    // unreachable. This default is the only UCX setting chorus changes, and only where the
    // environment does not set it.
    if (std::getenv("UCX_MM_ERROR_HANDLING") == nullptr &&
        std::getenv("UCX_POSIX_ERROR_HANDLING") == nullptr &&
        std::getenv("UCX_SYSV_ERROR_HANDLING") == nullptr && detail::ucx::may_use_mm()) {
      (void)ucp_config_modify(config, "MM_ERROR_HANDLING", "y");
    }
    ucp_params_t params{};
    params.field_mask = UCP_PARAM_FIELD_FEATURES | UCP_PARAM_FIELD_ESTIMATED_NUM_EPS |
                        UCP_PARAM_FIELD_MT_WORKERS_SHARED;
    params.features = UCP_FEATURE_TAG | UCP_FEATURE_RMA | UCP_FEATURE_WAKEUP;
    params.estimated_num_eps = static_cast<std::size_t>(s.size);
    params.mt_workers_shared = 0;
    st = ucp_init(&params, config, &s.context);
    ucp_config_release(config);
    if (st != UCS_OK) {
      s.context = nullptr;
      configuration_error("ucp_init", st);
    }
    ucp_worker_params_t wp{};
    wp.field_mask = UCP_WORKER_PARAM_FIELD_THREAD_MODE;
    wp.thread_mode = UCS_THREAD_MODE_SINGLE;
    st = ucp_worker_create(s.context, &wp, &s.worker);
    if (st != UCS_OK) {
      s.worker = nullptr;
      configuration_error("ucp_worker_create", st);
    }
    if (ucp_worker_get_efd(s.worker, &s.efd) != UCS_OK) s.efd = -1;  // then wait naps
    s.wake = bootstrap::detail::unique_fd(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  }

  [[noreturn]] void configuration_error(const char* what, ucs_status_t st) const {
    throw error(errc::transport,
                "chorus::ucx_transport: rank " + std::to_string(rank()) + ": UCX cannot start (" +
                    what + ": " + detail::ucx::status_text(st) + ") with " +
                    detail::ucx::ucx_environment() +
                    "; `ucx_info -d` lists the transports and devices this host has");
  }

  void check(ucs_status_t st, const char* what) const {
    if (st != UCS_OK) {
      throw error(errc::transport, "chorus::ucx_transport: rank " + std::to_string(rank()) + ": " +
                                       what + " failed: " + detail::ucx::status_text(st));
    }
  }

  void check_peer(int peer, const char* what) const {
    detail::check_transport_peer(rank(), size(), peer, what);
  }

  [[nodiscard]] ucp_ep_h ep(int peer) const noexcept { return state_->links[peer].ep; }

  /// A non-null address for zero-byte messages (UCX does not read it).
  static void* payload(const void* p) noexcept {
    static std::byte dummy;
    return p != nullptr ? const_cast<void*>(p) : &dummy;
  }

  /// False (and `op` completed with the reason) when the endpoint to `peer` is gone.
  bool usable(int peer, detail::ucx::operation& op) {
    if (state_->links[peer].ep != nullptr && !state_->links[peer].closed) return true;
    op.complete = true;
    op.failed = true;
    op.code = errc::peer_lost;
    op.failure = lost_message(peer, op);
    return false;
  }

  /// Records what a `*_nbx` call returned.
  static void start(detail::ucx::operation& op, ucs_status_ptr_t r) {
    if (r == nullptr) {  // completed at once
      op.complete = true;
      op.status = UCS_OK;
    } else if (UCS_PTR_IS_ERR(r)) {
      op.complete = true;
      op.status = UCS_PTR_STATUS(r);
    } else {
      op.request = r;
    }
  }

  /// Polls `op`'s UCX requests and frees those that finished. True once all have.
  bool poll(detail::ucx::operation& op) {
    if (op.complete) return true;
    if (op.request != nullptr) {
      const ucs_status_t st = op.kind == detail::ucx::op_kind::recv
                                  ? ucp_tag_recv_request_test(op.request, &op.info)
                                  : ucp_request_check_status(op.request);
      if (st == UCS_INPROGRESS) return false;
      ucp_request_free(op.request);
      op.request = nullptr;
      if (op.status == UCS_OK) op.status = st;
    }
    if (op.flush != nullptr) {
      const ucs_status_t st = ucp_request_check_status(op.flush);
      if (st == UCS_INPROGRESS) return false;
      ucp_request_free(op.flush);
      op.flush = nullptr;
      if (op.status == UCS_OK) op.status = st;
    }
    op.complete = true;
    return true;
  }

  /// Moves whatever UCX can move; polls the abort receive. True if anything happened.
  bool progress() {
    detail::ucx::state& s = *state_;
    const unsigned events = ucp_worker_progress(s.worker);
    if (s.abort_request != nullptr && ucp_request_check_status(s.abort_request) != UCS_INPROGRESS) {
      const ucs_status_t st = ucp_request_check_status(s.abort_request);
      ucp_request_free(s.abort_request);
      s.abort_request = nullptr;
      if (st == UCS_OK) {
        std::string reason(s.abort_in.reason, strnlen(s.abort_in.reason, sizeof s.abort_in.reason));
        record_abort(s.abort_in.rank, static_cast<errc>(s.abort_in.code), reason);
      }
    }
    return events != 0;
  }

  /// Whether `req` is done: true, false, or throws its failure (and an abort).
  bool finished(request& req) {
    if (!poll(*req)) {
      check_aborted();
      return false;
    }
    if (req->failed) throw error(req->code, req->failure);
    const ucs_status_t st = req->status;
    if (st == UCS_OK) {
      if (req->kind == detail::ucx::op_kind::recv && req->info.length != req->bytes) {
        throw error(errc::mismatch, mismatch_message(*req, std::to_string(req->info.length)));
      }
      return true;
    }
    if (st == UCS_ERR_MESSAGE_TRUNCATED) {
      throw error(errc::mismatch,
                  mismatch_message(*req, "more than " + std::to_string(req->bytes)));
    }
    check_aborted();
    if (state_->links[req->peer].status != UCS_OK || state_->links[req->peer].exited ||
        state_->links[req->peer].closed || st == UCS_ERR_ENDPOINT_TIMEOUT ||
        st == UCS_ERR_CONNECTION_RESET || st == UCS_ERR_UNREACHABLE) {
      throw error(errc::peer_lost,
                  lost_message(req->peer, *req) + " (" + detail::ucx::status_text(st) + ")");
    }
    throw error(errc::transport, who(world_rank()) + ": UCX failed a " + kind_name(*req) + " " +
                                     who(req->peer) + ": " + detail::ucx::status_text(st));
  }

  /// "rank 3" in the world's transport, "world rank 3" in a group's: transport errors name
  /// peers by their world rank (the communicator adds the group rank of the caller).
  [[nodiscard]] std::string who(int world) const {
    return (view_.members ? "world rank " : "rank ") + std::to_string(world);
  }

  static const char* kind_name(const detail::ucx::operation& op) noexcept {
    switch (op.kind) {
      case detail::ucx::op_kind::send:
        return "send to";
      case detail::ucx::op_kind::recv:
        return "receive from";
      case detail::ucx::op_kind::get:
        return "get from";
      case detail::ucx::op_kind::put:
        return "put to";
      case detail::ucx::op_kind::done:
        break;
    }
    return "request with";
  }

  std::string mismatch_message(const detail::ucx::operation& op, const std::string& sent) const {
    return who(world_rank()) + " posted a receive of " + std::to_string(op.bytes) + " bytes from " +
           who(op.peer) + " but that rank sent " + sent +
           " bytes with the same tag: the ranks called with different counts or types";
  }

  std::string lost_message(int peer, const detail::ucx::operation& op) const {
    std::string why;
    if (state_->links[peer].exited) {
      why = " (pid " + std::to_string(state_->peers.pid(peer)) + ") exited";
    } else if (state_->links[peer].status != UCS_OK) {
      why = "'s connection failed (UCX: " + detail::ucx::status_text(state_->links[peer].status) +
            ")";
    } else {
      why = "'s endpoint was closed after an earlier failure";
    }
    return who(world_rank()) + ": " + who(peer) + why + " while this rank " +
           (op.kind == detail::ucx::op_kind::recv
                ? "waited for a message from it"
                : std::string("was in a ") + kind_name(op) + " it");
  }

  /// Marks local peers whose process has exited (pidfd readable).
  /// The local peers (same host and pid namespace) whose processes are stopped, as clauses
  /// for a timeout's message (`kit::peer_processes::stopped_clause`).
  [[nodiscard]] std::string stopped_peers() const {
    const detail::ucx::state& s = *state_;
    std::string why;
    for (int p = 0; p < s.size; ++p) {
      if (p != s.rank) why += s.peers.stopped_clause(p);
    }
    return why;
  }

  void check_local_peers() {
    detail::ucx::state& s = *state_;
    for (int p = 0; p < s.peers.size(); ++p) {
      if (!s.links[p].exited && s.peers.gone(p)) s.links[p].exited = true;
    }
  }

  [[nodiscard]] bool peer_failed(int peer) const noexcept {
    return state_->links[peer].status != UCS_OK || state_->links[peer].exited ||
           state_->links[peer].closed;
  }

  /// Waits for `req` until `until`; false at the deadline.
  bool wait_locked(request& req, deadline until) {
    // Spin on progress, then yield between progress calls for `yield_window`, then sleep
    // on the worker's event fd; peers and the deadline are checked from the yield rung on.
    kit::wait_ladder ladder(spin_limit_, 0, detail::ucx::yield_window);
    auto next_liveness = clock::now();
    for (;;) {
      const bool moved = progress();
      if (finished(req)) return true;
      if (moved) {
        ladder.reset();
        continue;
      }
      const kit::wait_ladder::rung rung = ladder.idle();
      if (rung == kit::wait_ladder::rung::spin) continue;
      const auto now = clock::now();
      if (now >= next_liveness) {
        check_local_peers();
        next_liveness = now + detail::ucx::liveness_period;
      }
      if (peer_failed(req->peer)) {
        // Take whatever it sent before failing (its abort record above all, which names
        // the real cause), then give up on it.
        const auto drain_until = clock::now() + detail::ucx::drain_period;
        do {
          progress();
          if (finished(req)) return true;
        } while (clock::now() < drain_until);
        throw error(errc::peer_lost, lost_message(req->peer, *req));
      }
      if (now >= until.at) return false;
      if (rung == kit::wait_ladder::rung::yield) continue;
      sleep_until_event(std::min<duration>(detail::ucx::longest_sleep, until.at - now));
    }
  }

  /// Sleeps until the worker has an event, `abort` rings, or `most` has passed. The caller
  /// holds `busy`; it is let go for the sleep itself, so that another thread of the process
  /// (another group's progress thread, or a caller) can post and progress meanwhile: a
  /// thread that slept holding it could stall, across processes, the very peer it waits
  /// for. A thread that progresses the worker meanwhile may take the event, and this sleep
  /// then ends at `most` (at most `longest_sleep`).
  void sleep_until_event(duration most) {
    detail::ucx::state& s = *state_;
    const ucs_status_t st = ucp_worker_arm(s.worker);
    if (st == UCS_ERR_BUSY) return;  // events are pending: progress them
    s.busy.store(false, std::memory_order_release);
    bool woken = false;
    if (st != UCS_OK || s.efd < 0) {
      std::this_thread::sleep_for(most);
    } else {
      pollfd fds[2] = {{s.efd, POLLIN, 0}, {s.wake.get(), POLLIN, 0}};
      const auto ms = std::chrono::ceil<std::chrono::milliseconds>(most).count();
      woken = ::poll(fds, 2, static_cast<int>(ms)) > 0 && (fds[1].revents & POLLIN) != 0;
    }
    while (s.busy.exchange(true, std::memory_order_acquire)) std::this_thread::yield();
    if (woken) {
      std::uint64_t count = 0;
      (void)!::read(s.wake.get(), &count, sizeof count);
    }
  }

  /// Records the error a wait threw, and aborts the group with it so peers hear the cause.
  void remember_failure(const error& e) noexcept {
    detail::ucx::state& s = *state_;
    try {
      s.last_failure = e.what();
      s.last_code = e.value();
    } catch (...) {
    }
    if (record_abort(s.rank, e.value(), e.what())) send_abort_records();
  }

  /// Stores an abort record unless one is there. True if this call stored it.
  bool record_abort(int who, errc code, std::string_view reason) noexcept {
    detail::ucx::state& s = *state_;
    return s.abort.record(who, code, reason);
  }

  /// Sends this rank's abort record to every reachable peer and gives the sends a moment
  /// to leave (they are small: eager, complete once UCX has them). The caller holds `busy`.
  void send_abort_records() noexcept {
    detail::ucx::state& s = *state_;
    s.abort_pending_send.store(false, std::memory_order_relaxed);
    // UCX may read the record after this function returns: it lives in the state.
    detail::ucx::abort_message& m = s.abort_out;
    m.rank = s.abort.rank;
    m.code = s.abort.code;
    std::memcpy(m.reason, s.abort.reason, sizeof m.reason);
    std::vector<std::pair<void*, int>>& sends = s.abort_sends;
    for (int p = 0; p < s.size; ++p) {
      if (p == s.rank || s.links[p].ep == nullptr || s.links[p].closed ||
          s.links[p].status != UCS_OK) {
        continue;
      }
      const ucp_request_param_t param = bytes_param();
      void* r =
          ucp_tag_send_nbx(s.links[p].ep, &m, sizeof m,
                           detail::ucx::control_tag(s.rank, detail::ucx::control_abort), &param);
      if (UCS_PTR_IS_PTR(r)) sends.emplace_back(r, p);
    }
    // Usually they leave at once; a peer that is not progressing gets them at shutdown.
    const auto until = clock::now() + std::chrono::milliseconds(100);
    for (const auto& [r, peer] : sends) {
      while (ucp_request_check_status(r) == UCS_INPROGRESS && clock::now() < until) {
        ucp_worker_progress(s.worker);
      }
    }
  }

  /// Throws the group's abort record, first sending it to the peers if it was raised here
  /// by another thread.
  void check_aborted() {
    detail::ucx::state& s = *state_;
    if (!s.abort.raised()) return;
    s.abort.wait_complete();
    if (s.abort_pending_send.load(std::memory_order_acquire)) send_abort_records();
    throw error(s.abort.error_code(), s.abort.describe(s.rank));
  }

  void post_abort_receive() {
    detail::ucx::state& s = *state_;
    const ucp_request_param_t param = bytes_param();
    void* r = ucp_tag_recv_nbx(s.worker, &s.abort_in, sizeof s.abort_in,
                               detail::ucx::control_tag(0, detail::ucx::control_abort),
                               detail::ucx::any_sender_mask, &param);
    if (UCS_PTR_IS_ERR(r)) check(UCS_PTR_STATUS(r), "posting the abort receive");
    s.abort_request = r;  // null: an abort arrived already; progress() cannot see it then
    if (r == nullptr) {
      std::string reason(s.abort_in.reason, strnlen(s.abort_in.reason, sizeof s.abort_in.reason));
      record_abort(s.abort_in.rank, static_cast<errc>(s.abort_in.code), reason);
    }
  }

  /// Force-closes the endpoint to `peer`: every operation on it fails, and UCX stops
  /// touching their buffers. The peers have been sent this rank's abort record first.
  void force_close(int peer) noexcept {
    detail::ucx::state& s = *state_;
    if (s.links[peer].ep == nullptr || s.links[peer].closed) return;
    if (!s.abort.raised()) {
      const std::string why = s.last_failure.empty()
                                  ? "rank " + std::to_string(s.rank) +
                                        " cancelled an operation that its peer never completed"
                                  : s.last_failure;
      if (record_abort(s.rank, s.last_failure.empty() ? errc::aborted : s.last_code, why)) {
        send_abort_records();
      }
    } else if (s.abort_pending_send.load(std::memory_order_acquire)) {
      send_abort_records();
    }
    ucp_request_param_t param{};
    param.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS;
    param.flags = UCP_EP_CLOSE_FLAG_FORCE;
    void* r = ucp_ep_close_nbx(s.links[peer].ep, &param);
    s.links[peer].ep = nullptr;
    s.links[peer].closed = true;
    if (UCS_PTR_IS_PTR(r)) {
      const auto until = clock::now() + std::chrono::seconds(1);
      while (ucp_request_check_status(r) == UCS_INPROGRESS && clock::now() < until) {
        ucp_worker_progress(s.worker);
      }
      ucp_request_free(r);
    }
  }

  /// A control message to group rank `peer`, on this group's context.
  request control_send(int peer, std::uint32_t code, std::span<const std::byte> data) {
    detail::ucx::worker_guard guard(*state_);
    return post_send(view_.world(peer), detail::ucx::control_tag(world_rank(), code, view_.context),
                     data);
  }

  request control_recv(int peer, std::uint32_t code, std::span<std::byte> data) {
    detail::ucx::worker_guard guard(*state_);
    const int w = view_.world(peer);
    return post_recv(w, detail::ucx::control_tag(w, code, view_.context), data);
  }

  static std::shared_ptr<detail::ucx::operation> new_op(detail::ucx::op_kind kind, int peer,
                                                        std::size_t bytes) {
    auto op = std::make_shared<detail::ucx::operation>();
    op->kind = kind;
    op->peer = peer;
    op->bytes = bytes;
    return op;
  }

  /// Contiguous bytes; `flags` adds UCP_OP_ATTR_FLAG_* bits.
  static ucp_request_param_t bytes_param(std::uint32_t flags = 0) {
    ucp_request_param_t param{};
    param.op_attr_mask = UCP_OP_ATTR_FIELD_DATATYPE | flags;
    param.datatype = ucp_dt_make_contig(1);
    return param;
  }

  /// Posts a tagged send with UCX tag `t`. The caller holds the worker.
  request post_send(int peer, ucp_tag_t t, std::span<const std::byte> data) {
    check_aborted();
    auto op = new_op(detail::ucx::op_kind::send, peer, data.size());
    if (!usable(peer, *op)) return op;
    const ucp_request_param_t param = bytes_param();
    start(*op, ucp_tag_send_nbx(ep(peer), payload(data.data()), data.size(), t, &param));
    return op;
  }

  /// Posts a receive of UCX tag `t` (matched exactly). Always returns a request to test:
  /// UCP_OP_ATTR_FLAG_NO_IMM_CMPL, so the received length comes from
  /// ucp_tag_recv_request_test even for a message that was already there.
  request post_recv(int peer, ucp_tag_t t, std::span<std::byte> data) {
    check_aborted();
    auto op = new_op(detail::ucx::op_kind::recv, peer, data.size());
    const ucp_request_param_t param = bytes_param(UCP_OP_ATTR_FLAG_NO_IMM_CMPL);
    start(*op, ucp_tag_recv_nbx(state_->worker, payload(data.data()), data.size(), t, ~ucp_tag_t{0},
                                &param));
    return op;
  }

  /// `get` (read the peer's window into `local`) or `put` (write `local` into it).
  request one_sided(detail::ucx::op_kind kind, window w, int peer, std::size_t offset,
                    std::byte* local, std::size_t bytes) {
    const bool is_get = kind == detail::ucx::op_kind::get;
    detail::ucx::worker_guard guard(*state_);
    check_aborted();
    auto op = new_op(kind, peer, bytes);
    const std::uint64_t remote = one_sided_target(w, peer, offset, bytes, is_get ? "get" : "put");
    if (bytes == 0 || peer == rank()) {
      auto* mine = reinterpret_cast<std::byte*>(remote);
      if (bytes != 0) std::memcpy(is_get ? local : mine, is_get ? mine : local, bytes);
      op->complete = true;
      return op;
    }
    const int world = view_.world(peer);
    op->peer = world;
    if (!usable(world, *op)) return op;
    const ucp_request_param_t param = bytes_param();
    ucp_rkey_h rkey = windows_.list()[w.index].rkeys[static_cast<std::size_t>(peer)];
    if (is_get) {
      start(*op, ucp_get_nbx(ep(world), local, bytes, remote, rkey, &param));
      return op;
    }
    start(*op, ucp_put_nbx(ep(world), local, bytes, remote, rkey, &param));
    if (op->complete && op->status != UCS_OK) return op;
    // A put completes locally (the source may be reused); the flush completes once it has
    // reached the peer's memory.
    const ucp_request_param_t flush{};
    void* f = ucp_ep_flush_nbx(ep(world), &flush);
    if (UCS_PTR_IS_ERR(f)) {
      op->status = UCS_PTR_STATUS(f);
    } else if (f != nullptr) {
      op->flush = f;
      op->complete = false;
    }
    return op;
  }

  void wait_all(std::vector<request>& pending, deadline until) {
    kit::wait_all_or_cancel(*this, pending, until);
  }

  /// Every rank's record of the window being registered (kit::exchange_records).
  std::vector<detail::ucx::window_record> exchange_records(const detail::ucx::window_record& mine,
                                                           deadline until) {
    return kit::exchange_records(
        *this, rank(), size(), mine,
        [&](int p, std::span<std::byte> b) {
          return control_recv(p, detail::ucx::control_window, b);
        },
        [&](int p, std::span<const std::byte> b) {
          return control_send(p, detail::ucx::control_window, b);
        },
        until);
  }

  const detail::ucx::window_state& window_at(window w, const char* what) const {
    if (w.index >= windows_.list().size()) {
      throw error(errc::invalid_argument,
                  std::string("chorus::ucx_transport::") + what + ": rank " +
                      std::to_string(rank()) +
                      ": not a window of this transport; use the value register_window returned");
    }
    return windows_.list()[w.index];
  }

  void check_window_rank(int peer, const char* what) const {
    if (peer < 0 || peer >= size()) {
      throw error(errc::invalid_argument,
                  std::string("chorus::ucx_transport::") + what + ": rank " + std::to_string(peer) +
                      " is outside the group; ranks are 0.." + std::to_string(size() - 1));
    }
  }

  /// Checks a one-sided access and returns the peer's address of it.
  std::uint64_t one_sided_target(window w, int peer, std::size_t offset, std::size_t bytes,
                                 const char* what) const {
    const detail::ucx::window_state& s = window_at(w, what);
    check_window_rank(peer, what);
    const detail::ucx::window_record& r = s.records[static_cast<std::size_t>(peer)];
    if (offset > r.bytes || bytes > r.bytes - offset) {
      throw error(errc::invalid_argument,
                  std::string("chorus::ucx_transport::") + what + ": rank " +
                      std::to_string(rank()) + ": " + std::to_string(bytes) + " bytes at offset " +
                      std::to_string(offset) + " do not fit rank " + std::to_string(peer) +
                      "'s window of " + std::to_string(r.bytes) + " bytes");
    }
    return r.address + offset;
  }

  /// Shared by the world's transport and its groups' (the worker, the endpoints, the abort
  /// record); a group's keeps it alive.
  std::shared_ptr<detail::ucx::state> state_;
  kit::group_view view_;
  detail::ucx::window_list windows_;  ///< released before `state_` (declared after it)
  int spin_limit_ = detail::ucx::spin_iterations;
  std::shared_ptr<const std::vector<int>> hosts_;   ///< per rank of this group
  std::shared_ptr<const recovery_point> recovery_;  ///< null: cannot be rebuilt
};

static_assert(transport<ucx_transport>);
static_assert(rma_transport<ucx_transport>);
static_assert(splittable_transport<ucx_transport>);
static_assert(shrinkable_transport<ucx_transport>);

}  // namespace chorus::inline v0

#pragma once
/// \file
/// `chorus::inproc_transport`: ranks are threads of one process.
///
/// The test and example workhorse, and a fair model of a real transport: messages are
/// matched by (source, tag) in FIFO order exactly as the concept requires, small messages
/// are buffered eagerly (a send completes at once) and large ones use a rendezvous (the
/// receiver copies straight from the sender's buffer, once, and the send completes only
/// then). Waits have deadlines; `abort()` from any thread wakes every waiting rank; a rank
/// whose function throws, or returns while a peer still waits for it, makes the peers fail
/// instead of hang.
///
/// Typical use:
///
///     chorus::inproc::run(4, [](chorus::inproc_communicator& comm) {
///       std::vector<float> v(1024, 1.0f);
///       chorus::all_reduce(comm, v, chorus::plus{});
///     });
#include <chorus/bootstrap/memory_store.hpp>
#include <chorus/communicator.hpp>
#include <chorus/core/deadline.hpp>
#include <chorus/core/error.hpp>
#include <chorus/transport/contract.hpp>
#include <chorus/transport/kit/abort_record.hpp>
#include <chorus/transport/kit/copy.hpp>
#include <chorus/transport/kit/group_view.hpp>

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <deque>
#include <exception>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

namespace chorus::inline v0 {

namespace detail::inproc {

/// Messages up to this size are copied into the message at send time (the send completes
/// at once, like MPI's eager protocol); larger ones wait for the receiver, which copies
/// directly from the sender's memory. 64 KiB keeps the extra copy cheap (it stays in L2)
/// while letting ordinary blocking user code (send then recv on both sides) work for small
/// messages, as it does with MPI.
inline constexpr std::size_t eager_limit = 64 * 1024;

enum class state : int { posted = 0, matched = 1, done = 2 };

struct operation {
  bool is_send = false;
  int owner = 0;  ///< the rank that posted it
  int peer = 0;   ///< destination of a send, source of a receive
  tag_t tag = 0;
  const std::byte* send_data = nullptr;
  std::byte* recv_data = nullptr;
  std::size_t bytes = 0;
  std::vector<std::byte> eager;  ///< the buffered copy of an eager send
  /// posted -> matched (under the mailbox lock, by the matching side) -> done (after the
  /// copy). Stores of `done` are release and loads acquire, so whoever sees `done` also
  /// sees the copied bytes and `failure`.
  std::atomic<state> progress{state::posted};
  bool failed = false;
  std::string failure;
};

using operation_ptr = std::shared_ptr<operation>;

/// Removes and returns the oldest queued operation satisfying `match` (FIFO matching), or
/// null. Called with the owning mailbox locked.
template <class Match>
operation_ptr take_first(std::deque<operation_ptr>& queue, Match&& match) {
  for (auto it = queue.begin(); it != queue.end(); ++it) {
    if (match(**it)) {
      operation_ptr found = std::move(*it);
      queue.erase(it);
      return found;
    }
  }
  return nullptr;
}

/// Messages addressed to one rank: its posted receives and the sends that arrived before a
/// receive was posted.
struct mailbox {
  std::mutex mutex;
  std::deque<operation_ptr> receives;
  std::deque<operation_ptr> arrived;
};

/// Where a rank sleeps while it waits.
struct doorbell {
  std::mutex mutex;
  std::condition_variable cv;
};

struct group {
  explicit group(int n)
      : size(n),
        boxes(std::make_unique<mailbox[]>(static_cast<std::size_t>(n))),
        bells(std::make_unique<doorbell[]>(static_cast<std::size_t>(n))),
        exited(std::make_unique<std::atomic<bool>[]>(static_cast<std::size_t>(n))),
        contexts(std::make_unique<kit::context_pool[]>(static_cast<std::size_t>(n))) {}

  const int size;
  std::unique_ptr<mailbox[]> boxes;
  std::unique_ptr<doorbell[]> bells;
  std::unique_ptr<std::atomic<bool>[]> exited;    ///< release-stored after a rank's last op
  std::unique_ptr<kit::context_pool[]> contexts;  ///< the group contexts each rank uses

  /// The group's abort record (first writer wins; see transport/kit/abort_record.hpp).
  kit::abort_record<1024> aborted{};
  /// Where the group can be rebuilt from after a rank leaves (`communicator::shrink`): an
  /// in-process store; null for a group made by `rebuilt` (its transports hold theirs).
  std::shared_ptr<const recovery_point> recovery;

  /// Wakes `rank` if it sleeps. Taking the mutex orders the wake-up after the state change
  /// the waiter re-checks under the same mutex, so no wake-up is lost.
  void ring(int rank) {
    doorbell& b = bells[static_cast<std::size_t>(rank)];
    { std::lock_guard lock(b.mutex); }
    b.cv.notify_all();
  }
  void ring_all() {
    for (int r = 0; r < size; ++r) ring(r);
  }

  void abort(int rank, errc code, std::string_view reason) noexcept {
    aborted.record(rank, code, reason);
    ring_all();
  }

  /// Marks `rank` gone: peers waiting for it fail with `peer_lost`.
  void mark_exited(int rank) noexcept {
    exited[static_cast<std::size_t>(rank)].store(true, std::memory_order_release);
    ring_all();
  }
};

/// Marks a rank of a rebuilt group gone when the last of its transports (the group's and
/// its splits') is destroyed: a rank's thread that leaves lets its peers fail at once, as
/// `inproc::run` does for the groups it makes.
struct exit_marker {
  exit_marker(std::shared_ptr<group> of, int r) : g(std::move(of)), rank(r) {}
  exit_marker(const exit_marker&) = delete;
  exit_marker& operator=(const exit_marker&) = delete;
  ~exit_marker() { g->mark_exited(rank); }
  std::shared_ptr<group> g;
  int rank;
};

/// Hands a rebuilt group from its rank 0 to the others by name, within the process: rank 0
/// registers it, the others take it (null once rank 0 has given it up).
inline std::shared_ptr<group> handed_group(const std::string& name,
                                           std::shared_ptr<group> offered = nullptr) {
  static std::mutex mutex;
  static std::map<std::string, std::weak_ptr<group>> offers;
  std::lock_guard lock(mutex);
  std::erase_if(offers, [](const auto& entry) { return entry.second.expired(); });
  if (offered) {
    offers[name] = offered;
    return offered;
  }
  const auto it = offers.find(name);
  return it == offers.end() ? nullptr : it->second.lock();
}

/// Copies the payload of `send` into `recv` (or records a size mismatch) and completes
/// both. Called by whichever side matched, outside any lock.
inline void deliver(group& g, operation& send, operation& recv) {
  if (send.bytes != recv.bytes) {
    recv.failed = true;
    recv.failure = "rank " + std::to_string(recv.owner) + " posted a receive of " +
                   std::to_string(recv.bytes) + " bytes from rank " + std::to_string(send.owner) +
                   " but that rank sent " + std::to_string(send.bytes) +
                   " bytes with the same tag: the ranks called with different counts or types";
  } else if (send.bytes != 0) {
    detail::copy_bytes(recv.recv_data, send.send_data, send.bytes);
  }
  recv.progress.store(state::done, std::memory_order_release);
  g.ring(recv.owner);
  if (send.progress.load(std::memory_order_acquire) != state::done) {
    send.progress.store(state::done, std::memory_order_release);
    g.ring(send.owner);
  }
}

}  // namespace detail::inproc

/// Point-to-point transport between threads of one process. Create a group with
/// `inproc_transport::create_group(n)` and one transport per rank with
/// `inproc_transport(group, rank)`, or let `chorus::inproc::run` do both. Subgroups
/// (`communicator::split`) share the group's mailboxes; in messages, ranks are the world's.
class inproc_transport {
  using operation = detail::inproc::operation;

 public:
  /// The name reports and messages give this transport (`CHORUS_DEBUG=info`).
  static constexpr std::string_view debug_name = "inproc";
  using request = detail::inproc::operation_ptr;
  using group_handle = std::shared_ptr<detail::inproc::group>;

  /// A group of `ranks` ranks (at least 1).
  static group_handle create_group(int ranks) {
    if (ranks < 1) {
      throw error(errc::invalid_argument,
                  "chorus::inproc_transport: a group needs at least "
                  "one rank, got " +
                      std::to_string(ranks));
    }
    // Its own prefix: the groups of a process share the registry that hands a rebuilt
    // group over (detail::inproc::handed_group), which knows them by their keys.
    static std::atomic<std::uint64_t> made{0};
    auto g = std::make_shared<detail::inproc::group>(ranks);
    g->recovery = std::make_shared<const recovery_point>(recovery_point{
        bootstrap::memory_store(), "chorus/inproc/" + std::to_string(made.fetch_add(1)), ""});
    return g;
  }

  /// A new group of `size` ranks with new mailboxes: its rank 0 makes it and hands it to
  /// the others through `exchange`; it can be rebuilt again from `point`
  /// (`communicator::shrink`). The rank is marked gone when its last transport of the group
  /// is destroyed.
  static inproc_transport rebuilt(recovery_point point, int rank, int size,
                                  const blob_exchange& exchange) {
    if (size < 1 || rank < 0 || rank >= size) {
      throw error(errc::invalid_argument, "chorus::inproc_transport: rank " + std::to_string(rank) +
                                              " is outside a group of " + std::to_string(size));
    }
    const std::string name = point.prefix;
    group_handle g;
    if (rank == 0)
      g = detail::inproc::handed_group(name, std::make_shared<detail::inproc::group>(size));
    (void)exchange(rank == 0 ? name : std::string());
    if (rank != 0) g = detail::inproc::handed_group(name);
    if (!g) {
      throw error(errc::peer_lost, "chorus::inproc_transport: rank " + std::to_string(rank) +
                                       " of a rebuilt group: rank 0 gave the group up before "
                                       "this rank took it");
    }
    (void)exchange(std::string());  // every rank holds the group: rank 0 may let it go
    inproc_transport t(g, rank);
    t.recovery_ = std::make_shared<const recovery_point>(std::move(point));
    t.exit_ = std::make_shared<detail::inproc::exit_marker>(g, rank);
    return t;
  }

  inproc_transport(group_handle group, int rank)
      : group_(std::move(group)), view_(kit::group_view::world(rank, group_ ? group_->size : 0)) {
    if (!group_ || rank < 0 || rank >= group_->size) {
      throw error(errc::invalid_argument, "chorus::inproc_transport: rank " + std::to_string(rank) +
                                              " is outside the group of " +
                                              std::to_string(group_ ? group_->size : 0) + " ranks");
    }
    rank_ = rank;
    recovery_ = group_->recovery;
  }

  /// Where this group can be rebuilt from after a rank leaves; null for a group made by
  /// `split` (shrinkable_transport).
  [[nodiscard]] const recovery_point* recovery() const noexcept {
    return view_.members ? nullptr : recovery_.get();
  }
  /// Whether `peer` (a rank of this group) has left: its rank function returned
  /// (`inproc::run`), or its transports of a rebuilt group are gone.
  [[nodiscard]] bool peer_gone(int peer) const noexcept {
    return peer >= 0 && peer < view_.size && peer != view_.rank &&
           group_->exited[static_cast<std::size_t>(view_.world(peer))].load(
               std::memory_order_acquire);
  }

  [[nodiscard]] int rank() const noexcept { return view_.rank; }
  [[nodiscard]] int size() const noexcept { return view_.size; }
  /// This rank in the world the transport's group belongs to.
  [[nodiscard]] int world_rank() const noexcept { return rank_; }

  /// The transport of a group of this one's ranks, on the same mailboxes (group/split.hpp).
  [[nodiscard]] inproc_transport split(const group_spec& g) const {
    inproc_transport t(*this);
    t.view_ = view_.subgroup(g.members, g.rank, g.context,
                             group_->contexts[static_cast<std::size_t>(rank_)], group_);
    return t;
  }
  [[nodiscard]] kit::context_mask used_contexts() const {
    return group_->contexts[static_cast<std::size_t>(rank_)].used();
  }

  request isend(int group_peer, tag_t group_tag, std::span<const std::byte> data) {
    check_peer(group_peer, "send to");
    check_aborted();
    const int peer = view_.world(group_peer);
    const tag_t tag = view_.tag(group_tag);
    auto op = std::make_shared<detail::inproc::operation>();
    op->is_send = true;
    op->owner = rank_;
    op->peer = peer;
    op->tag = tag;
    op->send_data = data.data();
    op->bytes = data.size();
    detail::inproc::mailbox& box = group_->boxes[static_cast<std::size_t>(peer)];
    request matched;
    {
      std::lock_guard lock(box.mutex);
      matched = detail::inproc::take_first(
          box.receives, [&](const operation& r) { return r.peer == rank_ && r.tag == tag; });
      if (matched) {
        matched->progress.store(detail::inproc::state::matched, std::memory_order_relaxed);
      } else {
        if (op->bytes <= detail::inproc::eager_limit) {
          op->eager.assign(data.begin(), data.end());
          op->send_data = op->eager.data();
          op->progress.store(detail::inproc::state::done, std::memory_order_release);
        }
        box.arrived.push_back(op);
      }
    }
    if (matched) detail::inproc::deliver(*group_, *op, *matched);
    return op;
  }

  request irecv(int group_peer, tag_t group_tag, std::span<std::byte> data) {
    check_peer(group_peer, "receive from");
    check_aborted();
    const int peer = view_.world(group_peer);
    const tag_t tag = view_.tag(group_tag);
    auto op = std::make_shared<detail::inproc::operation>();
    op->owner = rank_;
    op->peer = peer;
    op->tag = tag;
    op->recv_data = data.data();
    op->bytes = data.size();
    detail::inproc::mailbox& box = group_->boxes[static_cast<std::size_t>(rank_)];
    request matched;
    {
      std::lock_guard lock(box.mutex);
      matched = detail::inproc::take_first(
          box.arrived, [&](const operation& a) { return a.owner == peer && a.tag == tag; });
      if (!matched) box.receives.push_back(op);
    }
    if (matched) detail::inproc::deliver(*group_, *matched, *op);
    return op;
  }

  bool test(request& req) {
    if (done(req)) return true;
    check_aborted();
    // A peer that has returned from its rank function will never post the other half of
    // this operation. Its last operation happened before its `exited` flag was set, so
    // re-check completion after seeing the flag.
    if (group_->exited[static_cast<std::size_t>(req->peer)].load(std::memory_order_acquire)) {
      if (done(req)) return true;
      throw error(errc::peer_lost, "rank " + std::to_string(rank_) + ": rank " +
                                       std::to_string(req->peer) +
                                       " returned from its rank function while this rank still " +
                                       (req->is_send ? "sends to" : "waits for a message from") +
                                       " it; every rank must make the same sequence of calls");
    }
    return false;
  }

  void wait(request& req, deadline until) {
    if (try_wait(req, until)) return;
    throw error(errc::timeout, "rank " + std::to_string(rank_) + ": no " +
                                   (req->is_send ? "receive posted by" : "message from") +
                                   " rank " + std::to_string(req->peer) + " before the deadline");
  }

  /// Like `wait`, but returns false at the deadline instead of failing (the request stays
  /// posted); a lost peer or an abort still throws.
  bool try_wait(request& req, deadline until) {
    detail::inproc::doorbell& bell = group_->bells[static_cast<std::size_t>(rank_)];
    for (;;) {
      if (test(req)) return true;
      std::unique_lock lock(bell.mutex);
      const bool woken = bell.cv.wait_until(lock, until.at, [&] {
        return req->progress.load(std::memory_order_acquire) == detail::inproc::state::done ||
               group_->aborted.raised() ||
               group_->exited[static_cast<std::size_t>(req->peer)].load(std::memory_order_acquire);
      });
      if (!woken) {
        lock.unlock();
        return test(req);
      }
    }
  }

  void cancel(request& req) noexcept {
    if (!req) return;
    using detail::inproc::state;
    if (req->progress.load(std::memory_order_acquire) == state::done) return;
    // Withdraw it if still queued; otherwise the other side is copying right now, which
    // finishes without waiting for anything, so spin until it is done.
    const int box_rank = req->is_send ? req->peer : rank_;
    detail::inproc::mailbox& box = group_->boxes[static_cast<std::size_t>(box_rank)];
    {
      std::lock_guard lock(box.mutex);
      auto& queue = req->is_send ? box.arrived : box.receives;
      if (detail::inproc::take_first(queue, [&](const operation& o) { return &o == req.get(); })) {
        req->failed = true;
        req->failure = "cancelled";
        req->progress.store(state::done, std::memory_order_release);
        return;
      }
    }
    while (req->progress.load(std::memory_order_acquire) != state::done) {
      std::this_thread::yield();
    }
  }

  void abort(std::string_view reason) noexcept { abort(errc::aborted, reason); }
  /// Aborts with the code of the failure that caused it; peers fail with the same code.
  void abort(errc code, std::string_view reason) noexcept { group_->abort(rank_, code, reason); }

  /// Marks this rank as gone: peers that wait for it fail with `errc::peer_lost` instead of
  /// waiting for their deadline. `inproc::run` calls it when a rank function returns.
  void mark_exited() noexcept { group_->mark_exited(rank_); }

  [[nodiscard]] const group_handle& group() const noexcept { return group_; }

 private:
  bool done(request& req) {
    if (req->progress.load(std::memory_order_acquire) != detail::inproc::state::done) {
      return false;
    }
    if (req->failed) throw error(errc::mismatch, req->failure);
    return true;
  }

  void check_peer(int peer, const char* what) const {
    detail::check_transport_peer(view_.rank, view_.size, peer, what);
  }

  void check_aborted() { group_->aborted.throw_if_raised(rank_); }

  group_handle group_;
  kit::group_view view_;
  int rank_ = 0;  ///< in the world
  std::shared_ptr<const recovery_point> recovery_;
  std::shared_ptr<detail::inproc::exit_marker> exit_;  ///< a rebuilt group's rank only
};

static_assert(transport<inproc_transport>);
static_assert(shrinkable_transport<inproc_transport>);

/// A communicator over threads of one process.
using inproc_communicator = communicator<inproc_transport>;

namespace inproc {

/// Runs `fn(comm)` on `ranks` threads, one `inproc_communicator` each, and returns when all
/// have finished.
///
/// If a rank function throws, the group is aborted so the other ranks fail promptly instead
/// of waiting for their deadlines, and after every thread has finished the first exception
/// that was thrown (the cause, not the consequences) is rethrown here.
template <class Fn>
void run(int ranks, Fn&& fn, communicator_options options = communicator_options::from_env()) {
  auto group = inproc_transport::create_group(ranks);
  std::mutex first_mutex;
  std::exception_ptr first;
  auto body = [&](int rank) {
    inproc_transport transport(group, rank);
    // Declared outside the try block so the catch below (which knows the exception's text)
    // aborts the group before the communicator's destructor would.
    inproc_communicator comm(transport, options);
    try {
      fn(comm);
    } catch (...) {
      {
        std::lock_guard lock(first_mutex);
        if (!first) first = std::current_exception();
      }
      std::string what = "its rank function threw";
      try {
        throw;
      } catch (const std::exception& e) {
        what += ": ";
        what += e.what();
      } catch (...) {
      }
      transport.abort(what);
    }
    transport.mark_exited();
  };
  std::vector<std::thread> threads;
  threads.reserve(static_cast<std::size_t>(ranks));
  try {
    for (int r = 1; r < ranks; ++r) threads.emplace_back(body, r);
  } catch (...) {
    group->abort(0, errc::aborted, "could not start the rank threads");
    for (auto& t : threads) t.join();
    throw;
  }
  body(0);
  for (auto& t : threads) t.join();
  if (first) std::rethrow_exception(first);
}

}  // namespace inproc

}  // namespace chorus::inline v0

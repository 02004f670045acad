#pragma once
/// \file
/// `chorus::communicator<Transport>`: one rank's handle on a group -- the transport, the
/// collective sequence number, the scratch memory, the settings, and the poisoned state.
///
/// A communicator is used by one thread at a time (like an MPI communicator or an NCCL
/// communicator on one stream); `abort()` is the exception and may be called from any
/// thread. After any failure inside a collective the communicator is poisoned: the group is
/// aborted so peers fail fast, and every later call on this communicator throws at once
/// with the original cause instead of hanging on a group that can no longer make progress.
#include <chorus/core/deadline.hpp>
#include <chorus/core/error.hpp>
#include <chorus/core/request.hpp>
#include <chorus/schedule/tuning.hpp>
#include <chorus/transport/contract.hpp>

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <exception>
#include <functional>
#include <memory>
#include <new>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace chorus::inline v0 {

/// The color of a rank that joins no group in `communicator::split` (MPI_UNDEFINED).
inline constexpr int undefined = -32766;

/// Who moves the bytes of nonblocking operations (`docs/collectives.md`).
enum class progress_mode {
  /// A progress thread per communicator, started by its first nonblocking call: requests
  /// advance while the caller computes or sleeps. The default.
  thread,
  /// Only the caller's `request::test()` / `wait()` (and blocking calls) advance requests,
  /// as in MPI without asynchronous progress: no extra thread.
  caller,
};

/// The progress mode from `CHORUS_PROGRESS` (`thread` or `caller`; unset: `thread`).
inline progress_mode progress_from_env() {
  const char* value = std::getenv("CHORUS_PROGRESS");
  if (value == nullptr || std::string_view(value).empty()) return progress_mode::thread;
  const std::string_view v(value);
  if (v == "thread") return progress_mode::thread;
  if (v == "caller") return progress_mode::caller;
  throw error(errc::invalid_argument, std::string("chorus: CHORUS_PROGRESS='") + value +
                                          "' is not a progress mode; use thread or caller");
}

namespace detail {
/// The requests in flight on one communicator, seen from the communicator (the engine is
/// `dispatch/progress.hpp`'s `engine<Transport>`).
class async_engine {
 public:
  virtual ~async_engine() = default;
  /// The communicator moved: the engine's pointer to it follows.
  virtual void rebind(void* comm) noexcept = 0;
  /// Whether any operation is in flight.
  [[nodiscard]] virtual bool busy() const noexcept = 0;
  /// Completes every operation in flight (driving them if no thread does); failures stay
  /// with their requests.
  virtual void drain() = 0;
  /// Stops the progress thread; operations still in flight are cancelled and fail, and the
  /// group is aborted (peers would otherwise wait for their messages).
  virtual void shut_down() noexcept = 0;
};

/// Set by a nonblocking entry point around the blocking one it reuses: dispatch posts the
/// call as a request instead of running it (`dispatch/progress.hpp`).
struct posting {
  int priority = 0;
  std::shared_ptr<void> keep;             ///< a copy of the op object the call points to
  std::shared_ptr<pending_operation> op;  ///< the posted operation, once posted
};
}  // namespace detail

/// Settings of a communicator; `from_env()` reads `CHORUS_TIMEOUT` and `CHORUS_CHECK`.
struct communicator_options {
  /// How long any single wait may block before failing with `errc::timeout`.
  duration timeout = default_timeout;
  /// Exchange a fingerprint (collective, element type, count, root, op, algorithm,
  /// sequence number) before every collective and fail with `errc::mismatch` when ranks
  /// disagree. Costs one small message per rank per collective.
  bool check = false;
  /// Picks the algorithm of every call made with `algo::automatic`; empty: the default rule
  /// (`schedule::default_tuning`). Every rank must use the same tuner.
  schedule::tuner tuner{};
  /// Who advances nonblocking operations: a progress thread (default) or the caller.
  progress_mode progress = progress_mode::thread;

  /// The settings from the environment (throws `errc::invalid_argument` for bad values).
  static communicator_options from_env() {
    return {timeout_from_env(), check_from_env(), {}, progress_from_env()};
  }
};

/// The stages of `communicator::shrink`, in order (`shrink_options::observer`).
enum class shrink_stage {
  joined,   ///< this rank announced itself to the survivors of this attempt
  decided,  ///< the survivors agreed on the new group, and this rank is in it
  rebuilt,  ///< the new group's transport is up on this rank
};

/// Settings of one `communicator::shrink`.
struct shrink_options {
  /// How long the survivors wait for each other: a rank that neither announces itself nor
  /// is known to have exited (its process gone) within it is left out; and how long the
  /// members then have to build the new group. Unset: the communicator's timeout.
  std::optional<duration> timeout = {};
  /// Called on this rank as the shrink reaches each stage of each attempt (logging; tests
  /// that fail a rank at a chosen point). May throw, which ends the shrink on this rank.
  std::function<void(shrink_stage, int attempt)> observer = {};
};

template <class Transport>
struct shrink_result;

/// Bytes and messages one rank moved through its transport, counted by the executors as
/// they hand each operation to the transport: what crossed the wire (or shared memory),
/// whatever path ran -- a schedule's messages, one-sided loads and gets, a fingerprint.
struct traffic {
  std::uint64_t sent_bytes = 0;         ///< handed to `isend` or `put`
  std::uint64_t received_bytes = 0;     ///< arrived by `irecv` or `get`, or loaded from a
                                        ///< peer's mapped window
  std::uint64_t messages_sent = 0;      ///< sends and puts, zero-byte ones included
  std::uint64_t messages_received = 0;  ///< receives, gets and window loads
  traffic& operator+=(const traffic& o) noexcept {
    sent_bytes += o.sent_bytes;
    received_bytes += o.received_bytes;
    messages_sent += o.messages_sent;
    messages_received += o.messages_received;
    return *this;
  }
  friend bool operator==(const traffic&, const traffic&) = default;
};

template <any_transport Transport>
class communicator {
 public:
  using transport_type = Transport;

  explicit communicator(Transport transport,
                        communicator_options options = communicator_options::from_env())
      : transport_(std::move(transport)),
        options_(options),
        uncaught_at_construction_(std::uncaught_exceptions()) {
    describe_hosts();
  }

  communicator(const communicator&) = delete;
  communicator& operator=(const communicator&) = delete;
  /// Moving hands the group over; the moved-from communicator may only be destroyed.
  communicator(communicator&& other) noexcept(std::is_nothrow_move_constructible_v<Transport>)
      : transport_(std::move(other.transport_)),
        options_(std::move(other.options_)),
        sequence_(other.sequence_),
        finished_traffic_(other.finished_traffic_),
        last_traffic_(other.last_traffic_),
        scratch_(std::move(other.scratch_)),
        scratch_bytes_(std::exchange(other.scratch_bytes_, 0)),
        algorithm_state_(std::move(other.algorithm_state_)),
        extensions_(std::move(other.extensions_)),
        poison_(std::move(other.poison_)),
        poison_state_(other.poison_state_.load(std::memory_order_acquire)),
        uncaught_at_construction_(other.uncaught_at_construction_),
        host_count_(other.host_count_),
        min_ranks_per_host_(other.min_ranks_per_host_),
        owns_(std::exchange(other.owns_, false)),
        engine_(std::move(other.engine_)) {
    if (engine_) engine_->rebind(this);
  }
  communicator& operator=(communicator&&) = delete;

  /// If the communicator is destroyed because an exception propagates through its owner,
  /// the group is aborted: the peers would otherwise wait for this rank until their
  /// deadlines.
  ~communicator() {
    // Requests in flight end first (cancelled, the group aborted), while the transport
    // they use is still here.
    if (engine_) engine_->shut_down();
    if (owns_ && std::uncaught_exceptions() > uncaught_at_construction_) {
      transport_.abort("its communicator was destroyed while an exception propagated");
    }
  }

  [[nodiscard]] int rank() const noexcept { return transport_.rank(); }
  [[nodiscard]] int size() const noexcept { return transport_.size(); }
  /// This rank in the job's world: `rank()` for a communicator that is not a subgroup.
  [[nodiscard]] int world_rank() const noexcept {
    if constexpr (requires { transport_.world_rank(); }) {
      return transport_.world_rank();
    } else {
      return transport_.rank();
    }
  }

  /// The host of each rank (`hosts()[r]`: 0 for the host of rank 0, then numbered in order
  /// of first appearance), as the transport found it at start-up (UCX: the same kernel and
  /// network namespace); empty when the transport has every rank on one host (inproc, shm,
  /// NCCL). The hierarchical algorithms read it (`algo::hierarchical`).
  [[nodiscard]] std::span<const int> hosts() const noexcept {
    if constexpr (requires { transport_.hosts(); }) {
      return transport_.hosts();
    } else {
      return {};
    }
  }

  /// How many hosts the ranks are on (1 when `hosts()` is empty).
  [[nodiscard]] int host_count() const noexcept { return host_count_; }
  /// The fewest ranks any one host has (`size()` on one host).
  [[nodiscard]] int min_ranks_per_host() const noexcept { return min_ranks_per_host_; }

  /// Splits this communicator's ranks into groups (MPI_Comm_split, ncclCommSplit): the
  /// ranks that pass the same `color` (>= 0) form a group, ordered by `key`, then by rank
  /// here; `chorus::undefined` joins none (nullopt). Collective over this communicator.
  /// The group shares this communicator's channels (no new segment or connection), has
  /// its own sequence numbers and `CHORUS_CHECK` fingerprints, and starts with this
  /// communicator's options. Defined in <chorus/group/split.hpp> (in chorus.hpp).
  [[nodiscard]] std::optional<communicator> split(int color, int key = 0);
  /// The group of `ranks` (ranks of this communicator; group rank i is `ranks[i]`), like
  /// torch's `new_group`: collective over this communicator, every rank passing the same
  /// list; nullopt on ranks not in it. Different lists fail with `errc::mismatch`.
  [[nodiscard]] std::optional<communicator> subgroup(std::span<const int> ranks);
  /// After a failure, the ranks still alive make a new communicator of themselves (ULFM's
  /// `MPIX_Comm_shrink`, NCCL's `ncclCommShrink`): every survivor calls it, they agree
  /// through the job's store on who is left (a rank known to have exited is left out at
  /// once; any other is waited for until the deadline), and they build a new transport
  /// with new channels over those ranks, numbered 0.. in their old order. A further failure
  /// during the shrink is survived (the survivors try again without the dead rank). Works
  /// on a poisoned communicator and on a healthy one (every rank calls it then: the result
  /// has the same ranks over new channels). This communicator is left as it was: destroy
  /// it. Defined in <chorus/group/shrink.hpp> (in chorus.hpp); docs/fault-tolerance.md.
  [[nodiscard]] shrink_result<Transport> shrink(const shrink_options& options);
  [[nodiscard]] shrink_result<Transport> shrink() { return shrink(shrink_options{}); }
  [[nodiscard]] Transport& transport() noexcept { return transport_; }
  [[nodiscard]] const communicator_options& options() const noexcept { return options_; }
  void set_timeout(duration timeout) noexcept { options_.timeout = timeout; }
  void set_check(bool check) noexcept { options_.check = check; }
  /// Replaces the tuner of `algo::automatic` calls (`communicator_options::tuner`). Every
  /// rank must set the same one, between collectives (`chorus::tune_by_model` does it).
  void set_tuner(schedule::tuner tuner) { options_.tuner = std::move(tuner); }
  /// Who advances nonblocking operations; takes effect only before the first one is posted.
  void set_progress(progress_mode mode) noexcept {
    if (!engine_) options_.progress = mode;
  }

  /// A deadline `options().timeout` from now.
  [[nodiscard]] deadline make_deadline() const noexcept {
    return deadline::after(options_.timeout);
  }

  /// What this rank moved since the communicator was made.
  [[nodiscard]] struct traffic traffic() const noexcept {
    struct traffic all = finished_traffic_;
    all += last_traffic_;
    return all;
  }
  /// What this rank moved in the most recent collective (or point-to-point call).
  [[nodiscard]] const struct traffic& last_traffic() const noexcept { return last_traffic_; }
  /// Called by the executors for every operation they hand to the transport.
  void count_sent(std::size_t bytes) noexcept {
    last_traffic_.sent_bytes += bytes;
    ++last_traffic_.messages_sent;
  }
  void count_received(std::size_t bytes) noexcept {
    last_traffic_.received_bytes += bytes;
    ++last_traffic_.messages_received;
  }
  /// Starts the count of `last_traffic()` afresh (dispatch, at the start of each call).
  void start_traffic() noexcept {
    finished_traffic_ += last_traffic_;
    last_traffic_ = {};
  }

  /// Sequence number of the most recent collective (0 before the first).
  [[nodiscard]] std::uint32_t sequence() const noexcept { return sequence_; }
  /// Starts a new collective and returns its sequence number (1, 2, ...).
  std::uint32_t next_sequence() noexcept { return ++sequence_; }

  /// Scratch memory of at least `bytes` bytes, 64-byte aligned, reused across calls
  /// (grows, never shrinks: the hot path stops allocating after warm-up).
  std::span<std::byte> scratch(std::size_t bytes) {
    if (bytes > scratch_bytes_) {
      const std::size_t grown = std::max(bytes, scratch_bytes_ + scratch_bytes_ / 2);
      scratch_.reset(static_cast<std::byte*>(::operator new[](grown, std::align_val_t{64})));
      scratch_bytes_ = grown;
    }
    return {scratch_.get(), bytes};
  }

  /// State that an algorithm keeps with the communicator between calls (the one-sided
  /// collectives keep their staging window here, see exec/one_sided.hpp). Empty until
  /// the first such call.
  [[nodiscard]] std::shared_ptr<void>& algorithm_state() noexcept { return algorithm_state_; }

  /// An object of type `T` kept with this communicator for layers above it (the compressed
  /// collectives keep their `compress::session` here): value-initialised on first use,
  /// destroyed with the communicator. One per type.
  template <class T>
  T& extension() {
    static constexpr char key = 0;  // one address per T
    for (auto& [k, p] : extensions_) {
      if (k == &key) return *static_cast<T*>(p.get());
    }
    auto made = std::make_shared<T>();
    T& result = *made;
    extensions_.emplace_back(&key, std::move(made));
    return result;
  }

  /// The engine of this communicator's nonblocking operations (null before the first).
  [[nodiscard]] detail::async_engine* engine() const noexcept { return engine_.get(); }
  void set_engine(std::shared_ptr<detail::async_engine> e) noexcept { engine_ = std::move(e); }
  [[nodiscard]] const std::shared_ptr<detail::async_engine>& engine_handle() const noexcept {
    return engine_;
  }
  /// Non-null while a nonblocking entry point is posting a call (dispatch reads it).
  [[nodiscard]] detail::posting* posting() const noexcept { return posting_; }
  void set_posting(detail::posting* p) noexcept { posting_ = p; }
  /// Completes every nonblocking operation in flight: what a blocking call, `split` or a
  /// one-sided collective does first, so that issue order holds and one thread at a time
  /// uses the transport.
  void drain_requests() {
    if (engine_ && engine_->busy()) engine_->drain();
  }

  /// Whether an earlier failure made this communicator unusable.
  [[nodiscard]] bool poisoned() const noexcept {
    return poison_state_.load(std::memory_order_acquire) == poison_set;
  }

  /// Throws the poisoning error if there is one.
  void throw_if_poisoned() const {
    if (!poisoned()) return;
    const errc code = poison_ ? poison_->first : errc::aborted;
    throw error(code, "rank " + std::to_string(rank()) +
                          ": this communicator is unusable after an earlier failure (" +
                          (poison_ ? poison_->second : std::string("cause unknown")) +
                          "); create a new group (chorus cannot resynchronise a failed one)");
  }

  /// Records `e` as the cause that makes this communicator unusable and aborts the group
  /// so that the peers stop waiting for this rank. The first cause wins; safe from the
  /// progress thread while the caller's thread checks `poisoned()`.
  void fail(const error& e) noexcept {
    int expected = poison_none;
    if (poison_state_.compare_exchange_strong(expected, poison_writing,
                                              std::memory_order_acq_rel)) {
      try {
        poison_.emplace(e.value(), e.what());
      } catch (...) {
      }
      poison_state_.store(poison_set, std::memory_order_release);
    }
    // A transport that can carry the cause's code lets every peer fail with it too (a
    // dead rank is `peer_lost` everywhere, not `aborted` for all but one).
    if constexpr (requires { transport_.abort(e.value(), std::string_view(e.what())); }) {
      transport_.abort(e.value(), e.what());
    } else {
      transport_.abort(e.what());
    }
  }

  /// Aborts the group: every pending and future wait of every rank fails promptly. Never
  /// blocks; may be called from another thread than the one using the communicator.
  void abort(std::string_view reason = "abort() was called") noexcept { transport_.abort(reason); }

 private:
  /// Sets `host_count_` and `min_ranks_per_host_` from `hosts()` (numbered from 0), once:
  /// the tuner reads them on every automatic call.
  void describe_hosts() {
    const std::span<const int> hosts = this->hosts();
    host_count_ = 1;
    min_ranks_per_host_ = size();
    if (hosts.empty()) return;
    std::vector<int> ranks_on(static_cast<std::size_t>(std::ranges::max(hosts)) + 1, 0);
    for (int h : hosts) ++ranks_on[static_cast<std::size_t>(h)];
    host_count_ = 0;
    for (int n : ranks_on) {
      if (n == 0) continue;
      ++host_count_;
      min_ranks_per_host_ = std::min(min_ranks_per_host_, n);
    }
  }

  struct aligned_delete {
    void operator()(std::byte* p) const noexcept { ::operator delete[](p, std::align_val_t{64}); }
  };

  Transport transport_;
  communicator_options options_;
  std::uint32_t sequence_ = 0;
  struct traffic finished_traffic_ {};  ///< every call before the most recent one
  struct traffic last_traffic_ {};
  std::unique_ptr<std::byte[], aligned_delete> scratch_;
  std::size_t scratch_bytes_ = 0;
  std::shared_ptr<void> algorithm_state_;
  std::vector<std::pair<const void*, std::shared_ptr<void>>> extensions_;
  std::optional<std::pair<errc, std::string>> poison_;  ///< written once, before poison_set
  static constexpr int poison_none = 0, poison_writing = 1, poison_set = 2;
  std::atomic<int> poison_state_{poison_none};
  int uncaught_at_construction_;
  int host_count_ = 1;
  int min_ranks_per_host_ = 1;
  bool owns_ = true;  ///< false once moved from
  detail::posting* posting_ = nullptr;
  std::shared_ptr<detail::async_engine> engine_;  ///< last: shut down before the rest goes
};

}  // namespace chorus::inline v0

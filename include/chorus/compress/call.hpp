#pragma once
/// \file
/// What every compressed collective shares: the path tags and trailing arguments, the
/// compile-time rules, and the per-call state (codec, residual, context, session, ledger,
/// algorithm tag) that each path (`sum_path.hpp`, `gather_path.hpp`, `two_stage.hpp`,
/// `low_rank_path.hpp`) works with.
#include <chorus/communicator.hpp>
#include <chorus/compress/compressor.hpp>
#include <chorus/compress/error_feedback.hpp>
#include <chorus/compress/ledger.hpp>
#include <chorus/compress/session.hpp>
#include <chorus/core/buffer.hpp>
#include <chorus/core/ops.hpp>
#include <chorus/core/split.hpp>
#include <chorus/dispatch/algo.hpp>

#include <chrono>
#include <cstdint>
#include <cstring>
#include <numeric>
#include <type_traits>
#include <vector>

namespace chorus::inline v0::compress {

/// Reduce in the compressed domain (summable codecs only).
struct sum_path {};
/// All-gather every payload, decode and add locally.
struct gather_path {};
/// Compressed all-to-all, per-owner decode-sum-re-encode, compressed all-gather.
struct two_stage {};
/// The path the traits pick (the default). Not `algo::automatic`, which picks the
/// algorithm of the collectives that move the payloads.
struct auto_path {};

/// Requirement: the result must not depend on random draws.
struct deterministic_t {};
inline constexpr deterministic_t deterministic{};
/// A set of requirements, made by `compress::require(...)`.
template <class... R>
struct requirements {};
template <class... R>
constexpr requirements<R...> require(R...) noexcept {
  return {};
}

/// Which tensor a call reduces: keys its residual, its step counter and its random draws.
struct tensor {
  std::uint64_t id = 0;
};

namespace detail {
template <class X>
inline constexpr bool is_path_v = std::is_same_v<X, sum_path> || std::is_same_v<X, gather_path> ||
                                  std::is_same_v<X, two_stage> || std::is_same_v<X, auto_path>;
template <class X>
inline constexpr bool is_requirements_v = false;
template <class... R>
inline constexpr bool is_requirements_v<requirements<R...>> = true;
template <class X>
inline constexpr bool requires_deterministic_v = false;
template <class... R>
inline constexpr bool requires_deterministic_v<requirements<R...>> =
    (std::is_same_v<R, deterministic_t> || ...);

template <class X>
inline constexpr bool is_ledger_v = std::is_same_v<X, ledger>;
template <class X>
inline constexpr bool is_algo_v = chorus::algo::tag<X>;

/// The trailing arguments of a compressed collective, by type (cv-ref removed).
template <class... Args>
struct call_args {
  static_assert(((is_path_v<Args> || is_requirements_v<Args> || std::is_same_v<Args, tensor> ||
                  is_ledger_v<Args> || is_algo_v<Args>)&&...),
                "After the compression policy, chorus collectives take only a path "
                "(compress::sum_path, gather_path, two_stage, auto_path), an algorithm tag, "
                "compress::require(...), compress::tensor{id} and a compress::ledger&.");
  static_assert((int(is_path_v<Args>) + ... + 0) <= 1,
                "A compressed collective takes at most one path.");
  static_assert((int(is_algo_v<Args>) + ... + 0) <= 1,
                "A compressed collective takes at most one algorithm tag.");
  static_assert((int(is_ledger_v<Args>) + ... + 0) <= 1,
                "A compressed collective takes at most one ledger.");
  template <template <class> class Is, class Default, class First, class... Rest>
  static auto first_of() {
    if constexpr (Is<First>::value) {
      return First{};
    } else if constexpr (sizeof...(Rest) == 0) {
      return Default{};
    } else {
      return first_of<Is, Default, Rest...>();
    }
  }
  template <class X>
  struct path_q : std::bool_constant<is_path_v<X>> {};
  template <class X>
  struct algo_q : std::bool_constant<is_algo_v<X>> {};
  using path = decltype(first_of<path_q, auto_path, Args..., auto_path>());
  using algo =
      decltype(first_of<algo_q, chorus::algo::automatic, Args..., chorus::algo::automatic>());
  static constexpr bool deterministic = (requires_deterministic_v<Args> || ...);
};

/// The argument of type `X` (cv aside) among `args`, the last if several, or null.
template <class X, class... Args>
X* find_arg(Args&... args) noexcept {
  X* found = nullptr;
  (
      [&](auto& a) {
        if constexpr (std::is_same_v<std::remove_cvref_t<decltype(a)>, std::remove_cv_t<X>>) {
          found = &a;
        }
      }(args),
      ...);
  return found;
}

/// The tensor id among `args` (0 if none).
template <class... Args>
std::uint64_t tensor_id_of(Args&... args) noexcept {
  const tensor* t = find_arg<const tensor>(args...);
  return t != nullptr ? t->id : 0;
}

/// The algorithm tag among `args` (a default `Algo` if none).
template <class Algo, class... Args>
Algo algo_of(Args&... args) noexcept {
  const Algo* a = find_arg<const Algo>(args...);
  return a != nullptr ? *a : Algo{};
}

/// The codec inside a policy, and the error-feedback residual store if any.
template <class Policy, class T>
struct unwrap {
  using codec = Policy;
  static constexpr bool feedback = false;
  static const codec& get(const Policy& p) noexcept { return p; }
  static residual<T>* store(const Policy&) noexcept { return nullptr; }
};
template <class C, class V, class T>
struct unwrap<error_feedback<C, V>, T> {
  static_assert(std::is_same_v<V, T>,
                "chorus::compress::error_feedback: the residual's element type must be the "
                "gradient's element type.");
  using codec = C;
  static constexpr bool feedback = true;
  static const codec& get(const error_feedback<C, V>& p) noexcept { return p.codec; }
  static residual<T>* store(const error_feedback<C, V>& p) noexcept { return p.store; }
};

/// The compile-time rules of every compressed collective, one sentence each.
template <class T, class Op, class Policy, class Path, bool Deterministic>
consteval void check_policy() {
  static_assert(gradient_type<T>,
                "Compressed collectives reduce float or double gradients; convert 16-bit "
                "gradients to float first (cast<half> compresses them on the wire).");
  static_assert(std::is_same_v<Op, chorus::plus> || std::is_same_v<Op, chorus::average>,
                "Compressed collectives reduce with chorus::plus or chorus::average only: "
                "compressed payloads can be added, not multiplied or compared.");
  if constexpr (gradient_type<T>) {
    using C = typename unwrap<Policy, T>::codec;
    static_assert(compressor<C, T> || traits<C>::low_rank,
                  "The policy is not a chorus::compress compressor for this element type (it "
                  "needs wire_bytes, encode, decode_add and the summable, stochastic and "
                  "unbiased traits).");
    static_assert(!(Deterministic && traits<C>::stochastic),
                  "compress::require(compress::deterministic) rejects stochastic compressors "
                  "(random_k, qsgd, terngrad): choose a deterministic one or drop the "
                  "requirement.");
    static_assert(!std::is_same_v<Path, sum_path> || traits<C>::summable,
                  "compress::sum_path adds payloads without decoding, which needs a summable "
                  "compressor (none, cast, random_k); use compress::gather_path or "
                  "compress::two_stage for this one.");
    static_assert(!traits<C>::low_rank || std::is_same_v<Path, auto_path>,
                  "compress::power_sgd runs its own two all-reduces of small matrices; pass no "
                  "path (or compress::auto_path).");
  }
}

template <class T>
void finalize_sum(std::span<T> v, bool average, int ranks) {
  if (!average) return;
  const T inv = T(1) / static_cast<T>(ranks);
  for (T& x : v) x *= inv;
}

/// The session's scratch slots (session::scratch): buffers that are alive at the same time
/// take different slots; each is reused by the next call instead of allocated again.
enum scratch_slot : std::size_t {
  feedback_slot,  ///< error feedback's g + residual, inside one encode
  wire_slot,      ///< the payloads being moved (all of them, or this rank's outgoing)
  wire2_slot,     ///< the second payload buffer (this rank's, or the incoming)
  copy_slot,      ///< a copy of the gradient (PowerSGD's input, two_stage's)
  sent_slot,      ///< PowerSGD's share sent, for error feedback
  shard_slot,     ///< two_stage's reduced shard
};

/// Per-call state shared by the paths. `book` is the caller's ledger, or a fresh one when
/// nobody observes the call; `algo` the tag for the collectives that move payloads.
template <class T, class Codec, class Algo>
struct call_state {
  const Codec& codec;
  residual<T>* store;  // null without error feedback
  context ctx;
  std::uint64_t tensor_id;
  ledger& book;
  session& sess;
  Algo algo;

  /// The tag for the payload collective `C`: the caller's, which must run it.
  template <schedule::collective C>
  const Algo& tag() const noexcept {
    static_assert(chorus::algo::can_run<Algo, C>,
                  "The algorithm tag of a compressed collective must run every collective its "
                  "path moves payloads with: the sum path and power_sgd all_reduce (or "
                  "reduce_scatter), the gather path all_gather, two_stage all_to_all and "
                  "all_gather (algo::direct or algo::automatic).");
    return algo;
  }

  /// Runs `move()`, one collective on `comm` moving payloads, timing it as such in the
  /// ledger and adding the bytes its executor counted.
  template <class Tr, class Move>
  void collective(communicator<Tr>& comm, Move&& move) {
    const auto start = std::chrono::steady_clock::now();
    move();
    book.add_collective(seconds_since(start));
    book.add_traffic(comm.last_traffic());
  }

  std::span<T> worker_residual(std::size_t n) {
    return store ? store->buffer(tensor_id, n) : std::span<T>{};
  }
  std::span<T> server_residual(std::size_t n) {
    return store ? store->buffer(residual<T>::server_key(tensor_id), n) : std::span<T>{};
  }
  /// Encodes `g` (block `block`) into `wire`, with error feedback on `r` when not empty.
  void encode(std::span<const T> g, std::span<T> r, std::span<std::byte> wire,
              std::uint64_t block) {
    const auto start = std::chrono::steady_clock::now();
    context c = ctx;
    c.block = block;
    feedback_encode(codec, g, r, wire, c,
                    r.empty() ? std::span<T>{} : sess.template scratch<T>(feedback_slot, g.size()));
    book.add_encode(seconds_since(start));
    book.add_payload(wire.size());
  }
  /// y += decode(wire) of rank `from`'s block `block`.
  void decode_add(std::span<const std::byte> wire, std::span<T> y, int from, std::uint64_t block) {
    const auto start = std::chrono::steady_clock::now();
    context c = ctx;
    c.rank = from;
    c.block = block;
    codec.decode_add(wire, y, c);
    book.add_decode(seconds_since(start));
  }
};

/// Block j of `counts` of `data`.
template <class T>
std::span<T> block_of(std::span<T> data, const std::vector<std::size_t>& counts,
                      const std::vector<std::size_t>& offsets, std::size_t j) {
  return data.subspan(offsets[j], counts[j]);
}

template <class Tr>
context make_context(communicator<Tr>& comm, session& sess, std::uint64_t tensor_id) {
  context ctx;
  ctx.rank = comm.rank();
  ctx.ranks = comm.size();
  ctx.tensor = tensor_id;
  ctx.step = sess.next_step(tensor_id);
  return ctx;
}

/// Runs `body(book)` with the caller's ledger among `args`, or a fresh one.
template <class Body, class... Args>
void with_ledger(Body&& body, Args&... args) {
  if (ledger* observer = find_arg<ledger>(args...)) {
    body(*observer);
  } else {
    ledger unobserved;
    body(unobserved);
  }
}

}  // namespace detail
}  // namespace chorus::inline v0::compress

#pragma once
/// \file
/// Compression as a policy of the main collectives: `chorus::all_reduce`,
/// `chorus::reduce_scatter(_v)` and `chorus::all_gather` take a compressor (or an
/// `error_feedback` around one) where the plain calls take their algorithm, with the path
/// chosen at compile time from the compressor's traits. Including this header is what
/// enables it (it specialises `chorus::collective_policy_traits`).
///
///     chorus::all_reduce(comm, grad, chorus::average{},
///         chorus::compress::error_feedback{chorus::compress::top_k{.ratio = 0.01}, residual});
///     chorus::all_reduce(comm, in, out, chorus::plus{}, chorus::compress::cast<chorus::half>{},
///                        chorus::algo::ring{}, book);   // out of place, a tag, an observer
///
/// Trailing arguments, any order, each at most once: a path (below), an algorithm tag for
/// the collectives that move the payloads (it must run all of them: a compile error says
/// which), `compress::require(...)`, `compress::tensor{id}`, and a `compress::ledger&` that
/// observes the call (bytes and times). What calls keep between them (step counters,
/// scratch) is the communicator's `compress::session` (`session.hpp`).
///
/// **Paths.**
///  - `sum_path`: the payload is an array of `wire_t` elements that adds as it is
///    (summable codecs: `none`, `cast`, `random_k`); it rides the normal all-reduce /
///    reduce-scatter in the compressed domain. A non-summable codec here does not compile.
///  - `gather_path`: every rank's payload is all-gathered, then each rank decodes all P of
///    them and adds (in rank order, so every rank gets the same bits). Receives P - 1
///    payloads per rank.
///  - `two_stage` (1-bit Adam, ZeRO++ qgZ): the gradient is cut into P blocks, each
///    encoded; a compressed all-to-all gives block j to rank j, which decodes and sums its
///    P pieces, adds its server-side residual (under error feedback, 1/P of the tensor),
///    re-encodes, and a compressed all-gather returns every block. About 2 (P - 1) / P
///    payloads per rank.
///  - `auto_path` (default): `sum_path` for summable codecs, PowerSGD's own two all-reduces
///    for `power_sgd`, `two_stage` otherwise.
/// reduce_scatter uses the compressed reduce-scatter (summable) or the all-to-all plus
/// decode-and-sum (the first stage of `two_stage`) otherwise.
///
/// **Ops.** `chorus::plus` or `chorus::average` (the decoded sum divided by P).
///
/// **Determinism.** Every rank ends with the same bits; a rerun with the same inputs, seeds
/// and steps gives the same bits. `compress::require(compress::deterministic)` turns a
/// stochastic codec into a compile error.
///
/// **Errors.** `invalid_argument` for bad tuning values (ratio outside (0, 1], PowerSGD
/// shape) or mismatched sizes, before any byte moves; then as for every collective.
#include <chorus/collectives/all_gather.hpp>
#include <chorus/collectives/all_reduce.hpp>
#include <chorus/collectives/all_to_all.hpp>
#include <chorus/collectives/policy.hpp>
#include <chorus/collectives/reduce_scatter.hpp>
#include <chorus/communicator.hpp>
#include <chorus/compress/compressor.hpp>
#include <chorus/compress/error_feedback.hpp>
#include <chorus/compress/ledger.hpp>
#include <chorus/compress/power_sgd.hpp>
#include <chorus/compress/session.hpp>
#include <chorus/core/buffer.hpp>
#include <chorus/core/ops.hpp>
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

/// The tensor id among `args` (0 if none).
template <class... Args>
std::uint64_t tensor_id_of(const Args&... args) {
  std::uint64_t id = 0;
  (
      [&](const auto& a) {
        if constexpr (std::is_same_v<std::remove_cvref_t<decltype(a)>, tensor>) id = a.id;
      }(args),
      ...);
  return id;
}

/// The ledger among `args`, or null.
template <class... Args>
ledger* ledger_of(Args&... args) {
  ledger* found = nullptr;
  (
      [&](auto& a) {
        if constexpr (std::is_same_v<std::remove_cvref_t<decltype(a)>, ledger>) found = &a;
      }(args),
      ...);
  return found;
}

/// The algorithm tag among `args` (a default `Algo` if none).
template <class Algo, class... Args>
Algo algo_of(const Args&... args) {
  Algo found{};
  (
      [&](const auto& a) {
        if constexpr (std::is_same_v<std::remove_cvref_t<decltype(a)>, Algo>) found = a;
      }(args),
      ...);
  return found;
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

/// The compressed reduce-scatter: block j of `in` goes, encoded, to rank j, which decodes
/// and sums its P pieces into `out`. Summable codecs reduce-scatter the payload elements;
/// the others exchange payload bytes with an all-to-all. Worker residual: all of `in`.
template <class Tr, class T, class Codec, class Algo>
void reduce_scatter_blocks(communicator<Tr>& comm, call_state<T, Codec, Algo>& st,
                           std::span<const T> in, std::span<T> out,
                           const std::vector<std::size_t>& counts, bool summed, bool count_plain) {
  const int p = comm.size();
  const int r = comm.rank();
  const auto ranks = static_cast<std::size_t>(p);
  const auto offsets = chorus::detail::prefix_offsets(counts);
  std::span<T> res = st.worker_residual(in.size());
  zero_fill(out);
  if constexpr (traits<Codec>::summable) {
    if (summed) {
      using W = typename Codec::template wire_t<T>;
      std::vector<std::size_t> wcounts(ranks);
      for (std::size_t j = 0; j < ranks; ++j)
        wcounts[j] = st.codec.template wire_count<T>(counts[j]);
      const auto woffsets = chorus::detail::prefix_offsets(wcounts);
      const std::span<W> wire = st.sess.template scratch<W>(wire_slot, woffsets.back());
      const std::span<W> mine =
          st.sess.template scratch<W>(wire2_slot, wcounts[static_cast<std::size_t>(r)]);
      for (std::size_t j = 0; j < ranks; ++j) {
        st.encode(block_of(in, counts, offsets, j),
                  res.empty() ? res : block_of(res, counts, offsets, j),
                  std::as_writable_bytes(wire.subspan(woffsets[j], wcounts[j])), j);
      }
      st.collective(comm, [&] {
        chorus::reduce_scatter_v(comm, wire, mine, wcounts, chorus::plus{},
                                 st.template tag<schedule::collective::reduce_scatter>());
      });
      if (count_plain) {
        st.book.add_plain(
            plain_sent_bytes(comm, schedule::collective::reduce_scatter, sizeof(T), 0, counts));
      }
      st.decode_add(std::as_bytes(std::span<const W>(mine)), out, r, static_cast<std::uint64_t>(r));
      return;
    }
  }
  // Exchange payload bytes: block j (wire_bytes(counts[j])) to rank j.
  std::vector<std::size_t> send(ranks),
      recv(ranks, st.codec.template wire_bytes<T>(counts[static_cast<std::size_t>(r)]));
  for (std::size_t j = 0; j < ranks; ++j) send[j] = st.codec.template wire_bytes<T>(counts[j]);
  const auto soff = chorus::detail::prefix_offsets(send),
             roff = chorus::detail::prefix_offsets(recv);
  const std::span<std::uint8_t> sbuf =
      st.sess.template scratch<std::uint8_t>(wire_slot, soff.back());
  const std::span<std::uint8_t> rbuf =
      st.sess.template scratch<std::uint8_t>(wire2_slot, roff.back());
  for (std::size_t j = 0; j < ranks; ++j) {
    st.encode(block_of(in, counts, offsets, j),
              res.empty() ? res : block_of(res, counts, offsets, j),
              std::as_writable_bytes(sbuf.subspan(soff[j], send[j])), j);
  }
  st.collective(comm, [&] {
    chorus::all_to_all_v(comm, sbuf, send, rbuf, recv,
                         st.template tag<schedule::collective::all_to_all>());
  });
  if (count_plain) {
    st.book.add_plain(
        plain_sent_bytes(comm, schedule::collective::reduce_scatter, sizeof(T), 0, counts));
  }
  for (std::size_t i = 0; i < ranks; ++i) {
    st.decode_add(std::as_bytes(rbuf.subspan(roff[i], recv[i])), out, static_cast<int>(i),
                  static_cast<std::uint64_t>(r));
  }
}

/// Encodes `in` (this rank's block), all-gathers the payloads and decodes block j into
/// `out` block j. `block_base` separates the draws of the two-stage path's second stage.
template <class Tr, class T, class Codec, class Algo>
void all_gather_blocks(communicator<Tr>& comm, call_state<T, Codec, Algo>& st,
                       std::span<const T> in, std::span<T> res, std::span<T> out,
                       const std::vector<std::size_t>& counts, std::uint64_t block_base,
                       bool count_plain) {
  const int p = comm.size();
  const int r = comm.rank();
  const auto ranks = static_cast<std::size_t>(p);
  const auto offsets = chorus::detail::prefix_offsets(counts);
  std::vector<std::size_t> wb(ranks);
  for (std::size_t j = 0; j < ranks; ++j) wb[j] = st.codec.template wire_bytes<T>(counts[j]);
  const auto woff = chorus::detail::prefix_offsets(wb);
  const std::span<std::uint8_t> mine =
      st.sess.template scratch<std::uint8_t>(wire2_slot, wb[static_cast<std::size_t>(r)]);
  const std::span<std::uint8_t> all =
      st.sess.template scratch<std::uint8_t>(wire_slot, woff.back());
  st.encode(in, res, std::as_writable_bytes(mine), block_base + static_cast<std::uint64_t>(r));
  st.collective(comm, [&] {
    chorus::all_gather_v(comm, std::span<const std::uint8_t>(mine), all, wb,
                         st.template tag<schedule::collective::all_gather>());
  });
  if (count_plain) {
    st.book.add_plain(
        plain_sent_bytes(comm, schedule::collective::all_gather, sizeof(T), 0, counts));
  }
  for (std::size_t j = 0; j < ranks; ++j) {
    std::span<T> dst = block_of(out, counts, offsets, j);
    zero_fill(dst);
    st.decode_add(std::as_bytes(all.subspan(woff[j], wb[j])), dst, static_cast<int>(j),
                  block_base + j);
  }
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
  if (ledger* observer = ledger_of(args...)) {
    body(*observer);
  } else {
    ledger unobserved;
    body(unobserved);
  }
}

struct all_reduce_impl {
  /// In place: `data` becomes the (decoded) sum or average over ranks.
  template <class Tr, class T, class Op, class Policy, class... Args>
  static void call(communicator<Tr>& comm, std::span<T> data, const Policy& policy, Args&... args) {
    using A = call_args<std::remove_cvref_t<Args>...>;
    using Path = typename A::path;
    check_policy<T, Op, Policy, Path, A::deterministic>();
    if constexpr (gradient_type<T>) {
      using U = unwrap<Policy, T>;
      using Codec = typename U::codec;
      using Algo = typename A::algo;
      const std::uint64_t id = tensor_id_of(args...);
      session& sess = session_of(comm);
      comm.throw_if_poisoned();
      with_ledger(
          [&](ledger& book) {
            call_state<T, Codec, Algo> st{
                U::get(policy), U::store(policy),      make_context(comm, sess, id), id, book,
                sess,           algo_of<Algo>(args...)};
            book.begin(data.size());
            run<Path>(comm, st, data);
            finalize_sum(data, std::is_same_v<Op, chorus::average>, comm.size());
            book.end();
          },
          args...);
    }
  }

 private:
  template <class Path, class Tr, class T, class Codec, class Algo>
  static void run(communicator<Tr>& comm, call_state<T, Codec, Algo>& st, std::span<T> data) {
    const int p = comm.size();
    const int r = comm.rank();
    const std::size_t n = data.size();
    const std::uint64_t plain =
        plain_sent_bytes(comm, schedule::collective::all_reduce, sizeof(T), n);
    if constexpr (traits<Codec>::low_rank) {
      // PowerSGD: x = g (+ residual); two all-reduces; under error feedback the residual
      // becomes x - P Q_local^T.
      std::span<T> res = st.worker_residual(n);
      const std::span<T> x = st.sess.template scratch<T>(copy_slot, n);
      const std::span<T> sent = st.sess.template scratch<T>(sent_slot, res.empty() ? 0 : n);
      std::copy(data.begin(), data.end(), x.begin());
      for (std::size_t i = 0; i < res.size(); ++i) x[i] += res[i];
      const double collectives_before = st.book.last().collective_seconds;
      const auto start = std::chrono::steady_clock::now();
      st.codec.template run<T>(std::span<const T>(x), data, sent, [&](std::span<T> m) {
        st.collective(comm, [&] {
          chorus::all_reduce(comm, m, chorus::plus{},
                             st.template tag<schedule::collective::all_reduce>());
        });
        st.book.add_payload(m.size_bytes());
      });
      st.book.add_encode(seconds_since(start) -
                         (st.book.last().collective_seconds - collectives_before));
      for (std::size_t i = 0; i < res.size(); ++i) res[i] = x[i] - sent[i];
      st.book.add_plain(plain);
    } else if constexpr (std::is_same_v<Path, sum_path> ||
                         (std::is_same_v<Path, auto_path> && traits<Codec>::summable)) {
      using W = typename Codec::template wire_t<T>;
      const std::span<W> wire =
          st.sess.template scratch<W>(wire_slot, st.codec.template wire_count<T>(n));
      st.encode(std::span<const T>(data), st.worker_residual(n), std::as_writable_bytes(wire), 0);
      st.collective(comm, [&] {
        chorus::all_reduce(comm, wire, chorus::plus{},
                           st.template tag<schedule::collective::all_reduce>());
      });
      st.book.add_plain(plain);
      zero_fill(data);
      st.decode_add(std::as_bytes(std::span<const W>(wire)), data, r, 0);
    } else if constexpr (std::is_same_v<Path, gather_path>) {
      const std::vector<std::size_t> counts(static_cast<std::size_t>(p), n);
      const std::span<std::uint8_t> mine =
          st.sess.template scratch<std::uint8_t>(wire2_slot, st.codec.template wire_bytes<T>(n));
      const std::span<std::uint8_t> all =
          st.sess.template scratch<std::uint8_t>(wire_slot, mine.size() * counts.size());
      st.encode(std::span<const T>(data), st.worker_residual(n), std::as_writable_bytes(mine), 0);
      st.collective(comm, [&] {
        chorus::all_gather(comm, std::span<const std::uint8_t>(mine), all,
                           st.template tag<schedule::collective::all_gather>());
      });
      st.book.add_plain(plain);
      zero_fill(data);
      for (int j = 0; j < p; ++j) {
        st.decode_add(
            std::as_bytes(all.subspan(static_cast<std::size_t>(j) * mine.size(), mine.size())),
            data, j, 0);
      }
    } else {  // two_stage
      const auto counts = chorus::detail::even_split{n, static_cast<std::size_t>(p)}.sizes();
      const auto mine = static_cast<std::size_t>(r);
      const std::span<T> shard = st.sess.template scratch<T>(shard_slot, counts[mine]);
      const std::span<T> g = st.sess.template scratch<T>(copy_slot, n);
      std::copy(data.begin(), data.end(), g.begin());
      reduce_scatter_blocks(comm, st, std::span<const T>(g), shard, counts, false, false);
      all_gather_blocks(comm, st, std::span<const T>(shard), st.server_residual(shard.size()), data,
                        counts, static_cast<std::uint64_t>(p), false);
      st.book.add_plain(plain);  // the baseline is one plain all-reduce
    }
  }
};

struct reduce_scatter_impl {
  /// Rank j receives `counts[j]` elements of the reduced `in`; the same `counts` everywhere.
  /// Under error feedback the residual has the input's size (what this rank encodes).
  template <class Tr, class T, class Op, class Policy, class... Args>
  static void call(const char* api, communicator<Tr>& comm, std::span<const T> in, std::span<T> out,
                   const std::vector<std::size_t>& counts, const Policy& policy, Args&... args) {
    using A = call_args<std::remove_cvref_t<Args>...>;
    check_policy<T, Op, Policy, typename A::path, A::deterministic>();
    if constexpr (gradient_type<T>) run<Tr, T, Op>(api, comm, in, out, counts, policy, args...);
  }

 private:
  template <class Tr, class T, class Op, class Policy, class... Args>
  static void run(const char* api, communicator<Tr>& comm, std::span<const T> in, std::span<T> out,
                  const std::vector<std::size_t>& counts, const Policy& policy, Args&... args) {
    using A = call_args<std::remove_cvref_t<Args>...>;
    using Path = typename A::path;
    using Algo = typename A::algo;
    using U = unwrap<Policy, T>;
    using Codec = typename U::codec;
    static_assert(!traits<Codec>::low_rank,
                  "compress::power_sgd approximates whole matrices; it runs with "
                  "chorus::all_reduce only.");
    const int r = comm.rank();
    chorus::detail::check_count(api, "the input", in.size(), chorus::detail::sum(counts),
                                "the sum of the block counts");
    chorus::detail::check_count(api, "the output", out.size(), counts[static_cast<std::size_t>(r)],
                                "this rank's block count");
    if (chorus::detail::overlaps(in.data(), in.size(), static_cast<const T*>(out.data()),
                                 out.size())) {
      chorus::detail::invalid(api,
                              "the input and output overlap; compressed reduce-scatter "
                              "needs disjoint buffers");
    }
    const std::uint64_t id = tensor_id_of(args...);
    session& sess = session_of(comm);
    comm.throw_if_poisoned();
    with_ledger(
        [&](ledger& book) {
          call_state<T, Codec, Algo> st{
              U::get(policy), U::store(policy),      make_context(comm, sess, id), id, book,
              sess,           algo_of<Algo>(args...)};
          book.begin(in.size());
          constexpr bool summed = std::is_same_v<Path, sum_path> ||
                                  (std::is_same_v<Path, auto_path> && traits<Codec>::summable);
          reduce_scatter_blocks(comm, st, in, out, counts, summed, true);
          finalize_sum(out, std::is_same_v<Op, chorus::average>, comm.size());
          book.end();
        },
        args...);
  }
};

struct all_gather_impl {
  /// Equal blocks: every rank encodes its `in`, every rank decodes all of them into `out`
  /// (as ZeRO++'s quantised weight all-gather). No error feedback: nothing is summed.
  template <class Tr, class T, class Policy, class... Args>
  static void call(communicator<Tr>& comm, std::span<const T> in, std::span<T> out,
                   const Policy& policy, Args&... args) {
    using A = call_args<std::remove_cvref_t<Args>...>;
    check_policy<T, chorus::plus, Policy, gather_path, A::deterministic>();
    static_assert(!unwrap<Policy, T>::feedback,
                  "A compressed all_gather moves data without summing it, so error feedback has "
                  "nothing to feed back; pass the bare compressor.");
    if constexpr (gradient_type<T>) {
      using Algo = typename A::algo;
      const std::vector<std::size_t> counts(static_cast<std::size_t>(comm.size()), in.size());
      chorus::detail::check_count("all_gather", "the output", out.size(),
                                  chorus::detail::sum(counts), "ranks x the input's count");
      const std::uint64_t id = tensor_id_of(args...);
      session& sess = session_of(comm);
      comm.throw_if_poisoned();
      with_ledger(
          [&](ledger& book) {
            call_state<T, Policy, Algo> st{policy, nullptr, make_context(comm, sess, id), id,
                                           book,   sess,    algo_of<Algo>(args...)};
            book.begin(out.size());
            all_gather_blocks(comm, st, in, std::span<T>{}, out, counts, 0, true);
            book.end();
          },
          args...);
    }
  }
};
}  // namespace detail

/// What `chorus::all_reduce` and the others take as a compression policy: a compressor
/// (`none`, `cast`, `top_k`, ..., `power_sgd`) or an `error_feedback` around one.
template <class P>
concept policy = requires {
  { P::summable } -> std::convertible_to<bool>;
  { P::stochastic } -> std::convertible_to<bool>;
  { P::unbiased } -> std::convertible_to<bool>;
};

}  // namespace chorus::inline v0::compress

namespace chorus::inline v0 {

/// Compression policies plug into the main collectives (`collectives/policy.hpp`).
template <class P>
requires compress::policy<P>
struct collective_policy_traits<P> {
  static constexpr bool enabled = true;

  template <class Tr, class T, class Op, class... Args>
  static void all_reduce(communicator<Tr>& comm, std::span<T> data, const Op&, const P& policy,
                         Args&... args) {
    compress::detail::all_reduce_impl::call<Tr, T, Op>(comm, data, policy, args...);
  }
  template <class Tr, class T, class Op, class... Args>
  static void reduce_scatter(const char* api, communicator<Tr>& comm, std::span<const T> in,
                             std::span<T> out, const std::vector<std::size_t>& counts, const Op&,
                             const P& policy, Args&... args) {
    compress::detail::reduce_scatter_impl::call<Tr, T, Op>(api, comm, in, out, counts, policy,
                                                           args...);
  }
  template <class Tr, class T, class... Args>
  static void all_gather(communicator<Tr>& comm, std::span<const T> in, std::span<T> out,
                         const P& policy, Args&... args) {
    compress::detail::all_gather_impl::call(comm, in, out, policy, args...);
  }
};

}  // namespace chorus::inline v0

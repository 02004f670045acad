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
#include <chorus/collectives/policy.hpp>
#include <chorus/communicator.hpp>
#include <chorus/compress/call.hpp>
#include <chorus/compress/gather_path.hpp>
#include <chorus/compress/low_rank_path.hpp>
#include <chorus/compress/sum_path.hpp>
#include <chorus/compress/two_stage.hpp>

#include <cstdint>
#include <type_traits>
#include <vector>

namespace chorus::inline v0::compress {
namespace detail {

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
    const std::uint64_t plain =
        plain_sent_bytes(comm, schedule::collective::all_reduce, sizeof(T), data.size());
    if constexpr (traits<Codec>::low_rank) {
      all_reduce_low_rank(comm, st, data, plain);
    } else if constexpr (std::is_same_v<Path, sum_path> ||
                         (std::is_same_v<Path, auto_path> && traits<Codec>::summable)) {
      all_reduce_summed(comm, st, data, plain);
    } else if constexpr (std::is_same_v<Path, gather_path>) {
      all_reduce_gathered(comm, st, data, plain);
    } else {
      all_reduce_two_stage(comm, st, data, plain);
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

#pragma once
/// \file
/// `chorus::all_to_all` and `chorus::all_to_all_v`: rank i's block j goes to rank j's
/// block i.
///
/// **Collective.** Every rank calls it with the same element type and algorithm.
/// `all_to_all`: input and output both hold P equal blocks (`in.size() == out.size()`,
/// divisible by P). `all_to_all_v`: `send_counts[j]` elements go to rank j (blocks packed
/// in rank order in the input) and `recv_counts[j]` arrive from rank j (packed in the
/// output); rank i's `send_counts[j]` must equal rank j's `recv_counts[i]`.
///
/// **Completion.** Blocking. Never in place: input and output must not overlap.
///
/// **Determinism.** Pure data movement: the output is exact.
///
/// **Errors.** `invalid_argument` before any byte moves for sizes that do not divide or do
/// not match the counts, or overlapping buffers; `mismatch` when a peer's count for a block
/// differs from this rank's; then as for every collective.
#include <chorus/communicator.hpp>
#include <chorus/core/buffer.hpp>
#include <chorus/dispatch/algo.hpp>
#include <chorus/dispatch/launch.hpp>

#include <vector>

namespace chorus::inline v0 {

namespace detail {
struct all_to_all_base {
 protected:
  template <class Transport, class T, class Algo>
  static void run(const char* api, communicator<Transport>& comm, std::span<const T> in,
                  std::span<T> out, const std::vector<std::size_t>& send_counts,
                  const std::vector<std::size_t>& recv_counts, const Algo& a) {
    algo::require_can_run<Algo, schedule::collective::all_to_all>();
    check_count(api, "the input", in.size(), sum(send_counts), "the sum of the send counts");
    check_count(api, "the output", out.size(), sum(recv_counts), "the sum of the receive counts");
    check_alias(api, in, out, std::nullopt, nullptr);
    std::vector<std::size_t> send_offsets(send_counts.size()), recv_offsets(recv_counts.size());
    std::exclusive_scan(send_counts.begin(), send_counts.end(), send_offsets.begin(),
                        std::size_t{0});
    std::exclusive_scan(recv_counts.begin(), recv_counts.end(), recv_offsets.begin(),
                        std::size_t{0});
    collective_call call = make_call(schedule::collective::all_to_all, api, in, out);
    call.send_counts = send_counts;
    call.send_offsets = send_offsets;
    call.recv_counts = recv_counts;
    call.recv_offsets = recv_offsets;
    set_algorithm(call, a);
    run_collective(comm, call);
  }
};

struct all_to_all_fn : all_to_all_base {
  /// Pointer and count: `count` elements to and from each rank (`comm.size() * count` in
  /// `in` and in `out`).
  template <transport Transport, transferable T, algo::tag Algo = algo::automatic>
  void operator()(communicator<Transport>& comm, const T* in, T* out, std::size_t count,
                  Algo a = {}) const {
    const std::size_t n = count * static_cast<std::size_t>(comm.size());
    (*this)(comm, std::span<const T>(in, n), std::span<T>(out, n), a);
  }

  template <transport Transport, buffer In, buffer Out, algo::tag Algo = algo::automatic>
  void operator()(communicator<Transport>& comm, In&& in, Out&& out, Algo a = {}) const {
    check_buffers<In, Out>();
    const auto i = as_const_span(in);
    const auto p = static_cast<std::size_t>(comm.size());
    if (i.size() % p != 0) {
      invalid("all_to_all", "the input has " + std::to_string(i.size()) +
                                " elements, which is not a multiple of the " + std::to_string(p) +
                                " ranks; use all_to_all_v for unequal blocks");
    }
    const std::vector<std::size_t> counts(p, i.size() / p);
    run("all_to_all", comm, i, as_span(out), counts, counts, a);
  }
};

struct all_to_all_v_fn : all_to_all_base {
  template <transport Transport, buffer In, count_list SendCounts, buffer Out,
            count_list RecvCounts, algo::tag Algo = algo::automatic>
  void operator()(communicator<Transport>& comm, In&& in, const SendCounts& send_counts, Out&& out,
                  const RecvCounts& recv_counts, Algo a = {}) const {
    check_buffers<In, Out>();
    run("all_to_all_v", comm, as_const_span(in), as_span(out),
        to_counts("all_to_all_v", "send_counts", send_counts, comm.size()),
        to_counts("all_to_all_v", "recv_counts", recv_counts, comm.size()), a);
  }
};
}  // namespace detail

/// Personalised exchange with equal blocks: rank i's block j becomes rank j's block i.
inline constexpr detail::all_to_all_fn all_to_all{};
/// Personalised exchange with per-peer counts (blocks packed in rank order).
inline constexpr detail::all_to_all_v_fn all_to_all_v{};

}  // namespace chorus::inline v0

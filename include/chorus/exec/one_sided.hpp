#pragma once
/// \file
/// One-sided all-reduce, reduce-scatter and all-gather: ranks take their peers' data
/// straight out of windows instead of exchanging it in messages: `algo::one_sided`, on a
/// transport with windows -- loads and stores where the windows are mapped into every
/// process (`shm_transport::allocate_window`), `get` where peers reach them only through the
/// transport (`ucx_transport`: `ucp_get_nbx` on registered memory).
///
/// Each rank owns a staging window of two slots of P pieces. The vectors go through in
/// chunks; chunk j holds piece j of every block (block q is the part rank q reduces, or
/// contributes, or receives):
///
///   1. copy in   each rank copies its pieces of chunk j into its window slot (j mod 2)
///   2. ready     a zero-byte message to and from every peer: everybody has copied in
///   3. reduce    rank q reduces piece q over all P windows -- loading peers' memory
///                directly, or from a local buffer its gets land in, each peer's piece
///                reduced as soon as it arrives -- into its own window (all-reduce) or its
///                output (reduce-scatter)
///   4. reduced   (all-reduce) zero-byte messages again: every piece is reduced
///   5. gather    each rank copies (or gets) piece q of rank q's window into its output
///
/// All-gather has no reduction: each rank copies in its own block's piece (its slot holds
/// P pieces' worth), then after `ready` copies (or gets) every peer's piece out.
///
/// Reusing a slot is safe without a closing barrier: slot (j mod 2) is written again for
/// chunk j+2 only after this rank received every peer's `ready` for chunk j+1, which each
/// peer sends after its last read of chunk j (a get counts as read once it completes, and
/// every get of a chunk completes before its rank goes on). The chunk counter runs on
/// across calls, so consecutive collectives pipeline the same way.
///
/// Where peers read windows with `get` (the memory stays the owner's: UCX serves a get from
/// it, shared memory reads it with process_vm_readv), each call ends with one more
/// zero-byte exchange, `done`, sent once this rank's last get completed: a rank returns only
/// when no peer reads its window any more, so it may free it, or exit, right away. Mapped
/// windows need none: each process's mapping keeps the memory alive.
///
/// A chunk is at most 2 MiB per rank (pieces of 256 KiB at small P), so the copies in
/// steps 1, 3 and 5 run in cache and main memory sees each input read once and each output
/// written once: the traffic of the memory-bandwidth floor. Every element is reduced by
/// exactly one rank, so every rank receives bit-identical results.
#include <chorus/communicator.hpp>
#include <chorus/exec/executor.hpp>
#include <chorus/schedule/one_sided.hpp>
#include <chorus/schedule/schedule.hpp>
#include <chorus/transport/contract.hpp>
#include <chorus/transport/kit/copy.hpp>
#include <chorus/transport/kit/tags.hpp>

#include <algorithm>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <span>
#include <vector>

namespace chorus::inline v0::detail {

/// The schedule tags of the zero-byte synchronisation messages (never a schedule's tag).
inline constexpr std::uint32_t one_sided_ready_tag = 0xfffffff0u;
inline constexpr std::uint32_t one_sided_reduced_tag = 0xfffffff1u;
inline constexpr std::uint32_t one_sided_done_tag = 0xfffffff2u;

/// What the communicator keeps between one-sided calls.
template <class Window>
struct one_sided_state {
  Window window;
  std::size_t piece_bytes = 0;
  std::uint64_t chunks = 0;  ///< chunks run so far; chunk k uses slot k mod 2
  /// Windows read with `get` only: the memory this rank registered as its window, and P-1
  /// pieces where the gets of step 3 land. The transport's registration outlives them
  /// (the communicator drops this state before its transport); it refers to memory no
  /// rank touches any more by then.
  std::unique_ptr<std::byte[]> staging;
  std::unique_ptr<std::byte[]> landing;
};

/// Zero-byte messages to and from every peer; returns once every peer has sent its own.
template <transport Transport>
void one_sided_sync(communicator<Transport>& comm, tag_t tag) {
  Transport& t = comm.transport();
  const int p = comm.size();
  const int r = comm.rank();
  request_set<Transport> pending(t);
  for (int q = 0; q < p; ++q) {
    if (q == r) continue;
    pending.push(t.irecv(q, tag, {}));
    comm.count_received(0);
  }
  for (int q = 0; q < p; ++q) {
    if (q == r) continue;
    pending.push(t.isend(q, tag, {}));
    comm.count_sent(0);
  }
  pending.wait_all([&] { return comm.make_deadline(); });
}

/// Runs one all-reduce, reduce-scatter or all-gather (`kind`) one-sidedly (P > 1) on the
/// buffers `call`, with `counts` (P entries) the elements of each rank's block. Every byte
/// read from a peer's window, by load or by get, is counted into `comm.traffic()` as
/// received.
template <one_sided_transport Transport>
void execute_one_sided(communicator<Transport>& comm, schedule::collective kind,
                       const exec_buffers& call, std::span<const std::size_t> counts,
                       std::uint32_t sequence) {
  using schedule::collective;
  using state_type = one_sided_state<typename Transport::window>;
  constexpr bool mapped = mapped_window_transport<Transport>;
  Transport& t = comm.transport();
  const int p = comm.size();
  const int r = comm.rank();
  const auto pu = static_cast<std::size_t>(p);
  const auto ru = static_cast<std::size_t>(r);

  // The staging window: allocated by the first one-sided call, on every rank at once (every
  // rank takes this path for the same call: the choice depends only on the call).
  auto& slot_state = comm.algorithm_state();
  if (!slot_state) {
    auto fresh = std::make_shared<state_type>();
    fresh->piece_bytes = schedule::one_sided_piece_bytes(p);
    const std::size_t window_bytes = 2 * pu * fresh->piece_bytes;
    if constexpr (mapped) {
      fresh->window = t.allocate_window(window_bytes, comm.make_deadline());
    } else {
      fresh->staging = std::make_unique<std::byte[]>(window_bytes);
      fresh->landing = std::make_unique<std::byte[]>((pu - 1) * fresh->piece_bytes);
      fresh->window = t.register_window(std::span<std::byte>(fresh->staging.get(), window_bytes),
                                        comm.make_deadline());
    }
    slot_state = fresh;
  }
  state_type& st = *std::static_pointer_cast<state_type>(slot_state);

  const std::size_t es = call.elem_size;
  const std::size_t slot_bytes = pu * st.piece_bytes;
  // Elements of one block per chunk: all-gather stages only its own block, in a whole slot.
  const bool gather_only = kind == collective::all_gather;
  const std::size_t per_chunk = (gather_only ? slot_bytes : st.piece_bytes) / es;
  std::vector<std::size_t> offsets(pu + 1, 0);
  std::size_t largest = 0;
  for (std::size_t q = 0; q < pu; ++q) {
    offsets[q + 1] = offsets[q] + counts[q];
    largest = std::max(largest, counts[q]);
  }
  const std::size_t chunks = (largest + per_chunk - 1) / per_chunk;
  const tag_t ready = collective_tag(sequence, one_sided_ready_tag);
  const tag_t reduced = collective_tag(sequence, one_sided_reduced_tag);
  std::byte* const own_window = [&] {
    if constexpr (mapped) {
      return t.peer_window(st.window, r);
    } else {
      return st.staging.get();
    }
  }();
  request_set<Transport> pending(t);
  auto finish = [&] {  // completes the gets `fetch` started
    pending.wait_all([&] { return comm.make_deadline(); });
    pending.clear();
  };
  // Copies `bytes` at `offset` of rank q's window to `dst`: a copy now, or a get that
  // `finish` completes.
  auto fetch = [&](std::size_t q, std::size_t offset, std::byte* dst, std::size_t bytes) {
    if (q != ru) comm.count_received(bytes);
    if constexpr (mapped) {
      copy_bytes(dst, t.peer_window(st.window, static_cast<int>(q)) + offset, bytes);
    } else if (q == ru) {
      copy_bytes(dst, own_window + offset, bytes);
    } else {
      pending.push(t.get(st.window, static_cast<int>(q), offset, std::span<std::byte>(dst, bytes)));
    }
  };

  // An in-place all-gather: the caller's input is its own (non-empty) block of the output.
  const bool in_place =
      gather_only && counts[ru] != 0 && call.input == call.output + offsets[ru] * es;
  for (std::size_t j = 0; j < chunks; ++j, ++st.chunks) {
    const std::size_t slot = (st.chunks % 2) * slot_bytes;
    const std::size_t lo = j * per_chunk;
    auto piece = [&](std::size_t q) {  // elements of block q in this chunk
      return counts[q] > lo ? std::min(per_chunk, counts[q] - lo) : std::size_t{0};
    };
    std::byte* const mine = own_window + slot;

    if (gather_only) {
      if (piece(ru) != 0) copy_bytes(mine, call.input + lo * es, piece(ru) * es);
      one_sided_sync(comm, ready);
      for (std::size_t q = 0; q < pu; ++q) {
        // In place, this rank's own block is already where it belongs. Decided by rank, not
        // by comparing addresses: an empty own block starts where the next rank's does.
        if (piece(q) != 0 && !(q == ru && in_place)) {
          fetch(q, slot, call.output + (offsets[q] + lo) * es, piece(q) * es);
        }
      }
      finish();
      continue;
    }

    // 1. copy in: every block's piece (reduce-scatter and all-reduce read whole inputs)
    for (std::size_t q = 0; q < pu; ++q) {
      if (piece(q) != 0) {
        copy_bytes(mine + q * st.piece_bytes, call.input + (offsets[q] + lo) * es, piece(q) * es);
      }
    }
    one_sided_sync(comm, ready);
    // 3. reduce piece r over every window, starting with this rank's own (so that an
    //    all-reduce can accumulate in place in its window)
    if (const std::size_t n = piece(ru); n != 0) {
      std::byte* dst =
          kind == collective::all_reduce ? mine + ru * st.piece_bytes : call.output + lo * es;
      const std::size_t at = slot + ru * st.piece_bytes;
      // Source k is the piece of rank (r + k) mod P: read in place, or landed by get k-1.
      auto source = [&](std::size_t k) -> const std::byte* {
        if (k != 0) comm.count_received(n * es);
        if constexpr (mapped) {
          return t.peer_window(st.window, static_cast<int>((ru + k) % pu)) + at;
        } else {
          if (k == 0) return own_window + at;
          t.wait(pending[k - 1], comm.make_deadline());
          pending.completed_below(k);
          return st.landing.get() + (k - 1) * st.piece_bytes;
        }
      };
      if constexpr (!mapped) {
        for (std::size_t k = 1; k < pu; ++k) {
          pending.push(
              t.get(st.window, static_cast<int>((ru + k) % pu), at,
                    std::span<std::byte>(st.landing.get() + (k - 1) * st.piece_bytes, n * es)));
        }
      }
      call.reduce(dst, source(0), source(1), n, call.op_object);
      for (std::size_t k = 2; k < pu; ++k) call.reduce(dst, dst, source(k), n, call.op_object);
      pending.clear();
    }
    if (kind != collective::all_reduce) continue;
    one_sided_sync(comm, reduced);
    // 5. gather every reduced piece
    for (std::size_t q = 0; q < pu; ++q) {
      if (piece(q) != 0) {
        fetch(q, slot + q * st.piece_bytes, call.output + (offsets[q] + lo) * es, piece(q) * es);
      }
    }
    finish();
  }
  if constexpr (!mapped) one_sided_sync(comm, collective_tag(sequence, one_sided_done_tag));
}

}  // namespace chorus::inline v0::detail

#pragma once
/// \file
/// The gather path: every rank's payload is all-gathered and each rank decodes all of them
/// (rank order, so every rank gets the same bits); also the compressed all-gather and the
/// second stage of `two_stage`.
#include <chorus/collectives/all_gather.hpp>
#include <chorus/compress/call.hpp>

namespace chorus::inline v0::compress::detail {

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

/// The gather path of the compressed all-reduce: every payload all-gathered, all P decoded
/// in rank order and added.
template <class Tr, class T, class Codec, class Algo>
void all_reduce_gathered(communicator<Tr>& comm, call_state<T, Codec, Algo>& st, std::span<T> data,
                         std::uint64_t plain) {
  const int p = comm.size();
  const std::size_t n = data.size();
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
        std::as_bytes(all.subspan(static_cast<std::size_t>(j) * mine.size(), mine.size())), data, j,
        0);
  }
}

}  // namespace chorus::inline v0::compress::detail

#pragma once
/// \file
/// The sum path: summable payloads (`none`, `cast`, `random_k`) ride the plain all-reduce
/// and reduce-scatter on their wire element type, reduced without decoding.
#include <chorus/collectives/all_reduce.hpp>
#include <chorus/collectives/reduce_scatter.hpp>
#include <chorus/compress/call.hpp>

namespace chorus::inline v0::compress::detail {

/// The sum path of the compressed all-reduce.
template <class Tr, class T, class Codec, class Algo>
void all_reduce_summed(communicator<Tr>& comm, call_state<T, Codec, Algo>& st, std::span<T> data,
                       std::uint64_t plain) {
  const int r = comm.rank();
  const std::size_t n = data.size();
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
}

/// The sum path of the compressed reduce-scatter: each block encoded into the wire type,
/// the payload elements reduce-scattered as they are, this rank's block decoded.
template <class Tr, class T, class Codec, class Algo>
void reduce_scatter_summed(communicator<Tr>& comm, call_state<T, Codec, Algo>& st,
                           std::span<const T> in, std::span<T> out,
                           const std::vector<std::size_t>& counts, bool count_plain) {
  const int r = comm.rank();
  const auto ranks = static_cast<std::size_t>(comm.size());
  const auto offsets = chorus::detail::prefix_offsets(counts);
  std::span<T> res = st.worker_residual(in.size());
  zero_fill(out);
  using W = typename Codec::template wire_t<T>;
  std::vector<std::size_t> wcounts(ranks);
  for (std::size_t j = 0; j < ranks; ++j) wcounts[j] = st.codec.template wire_count<T>(counts[j]);
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
}

}  // namespace chorus::inline v0::compress::detail

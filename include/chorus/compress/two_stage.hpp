#pragma once
/// \file
/// The two-stage path (1-bit Adam, ZeRO++ qgZ): per-block encode, compressed all-to-all,
/// the owner decodes and sums, adds its server residual, re-encodes, compressed all-gather.
/// Its first stage is also the compressed reduce-scatter of non-summable codecs.
#include <chorus/collectives/all_to_all.hpp>
#include <chorus/compress/call.hpp>
#include <chorus/compress/gather_path.hpp>
#include <chorus/compress/sum_path.hpp>

namespace chorus::inline v0::compress::detail {

/// The compressed reduce-scatter: block j of `in` goes, encoded, to rank j, which decodes
/// and sums its P pieces into `out`. Summable codecs on the sum path reduce-scatter the
/// payload elements (`sum_path.hpp`); the others exchange payload bytes with an
/// all-to-all, here. Worker residual: all of `in`.
template <class Tr, class T, class Codec, class Algo>
void reduce_scatter_blocks(communicator<Tr>& comm, call_state<T, Codec, Algo>& st,
                           std::span<const T> in, std::span<T> out,
                           const std::vector<std::size_t>& counts, bool summed, bool count_plain) {
  if constexpr (traits<Codec>::summable) {
    if (summed) {
      reduce_scatter_summed(comm, st, in, out, counts, count_plain);
      return;
    }
  }
  (void)summed;
  const int p = comm.size();
  const int r = comm.rank();
  const auto ranks = static_cast<std::size_t>(p);
  const auto offsets = chorus::detail::prefix_offsets(counts);
  std::span<T> res = st.worker_residual(in.size());
  zero_fill(out);
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

/// The two-stage compressed all-reduce: compressed reduce-scatter by all-to-all, then the
/// owner re-encodes (with its server-side residual) and a compressed all-gather returns
/// every block.
template <class Tr, class T, class Codec, class Algo>
void all_reduce_two_stage(communicator<Tr>& comm, call_state<T, Codec, Algo>& st, std::span<T> data,
                          std::uint64_t plain) {
  const int p = comm.size();
  const int r = comm.rank();
  const std::size_t n = data.size();
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

}  // namespace chorus::inline v0::compress::detail

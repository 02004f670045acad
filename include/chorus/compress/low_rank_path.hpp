#pragma once
/// \file
/// The low-rank path: `power_sgd` runs its own two all-reduces of small matrices.
#include <chorus/collectives/all_reduce.hpp>
#include <chorus/compress/call.hpp>
#include <chorus/compress/power_sgd.hpp>

namespace chorus::inline v0::compress::detail {

/// PowerSGD's path: x = g (+ residual); two all-reduces of the small factors; under error
/// feedback the residual becomes x - P Q_local^T.
template <class Tr, class T, class Codec, class Algo>
void all_reduce_low_rank(communicator<Tr>& comm, call_state<T, Codec, Algo>& st, std::span<T> data,
                         std::uint64_t plain) {
  const std::size_t n = data.size();
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
}

}  // namespace chorus::inline v0::compress::detail

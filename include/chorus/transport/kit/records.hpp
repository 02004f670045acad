#pragma once
/// \file
/// Exchanging small fixed-size records between every pair of ranks over a transport's own
/// messages (the window records of `shm_transport` and `ucx_transport`), and the
/// wait-for-all-or-cancel that such setup exchanges end with.
#include <chorus/core/deadline.hpp>

#include <cstddef>
#include <span>
#include <type_traits>
#include <vector>

namespace chorus::inline v0::kit {

/// Waits for every request of `pending` in order; if one wait throws, cancels the rest
/// (so no transport keeps pointers into the caller's buffers) and rethrows.
template <class Transport, class Request>
void wait_all_or_cancel(Transport& t, std::vector<Request>& pending, deadline until) {
  std::size_t done = 0;
  try {
    for (; done < pending.size(); ++done) t.wait(pending[done], until);
  } catch (...) {
    for (std::size_t i = done; i < pending.size(); ++i) t.cancel(pending[i]);
    throw;
  }
}

/// Sends `mine` to every other rank and returns every rank's record (`mine` at index
/// `rank`). `post_recv(peer, bytes)` and `post_send(peer, bytes)` post one message and
/// return its request; then `t`'s waits complete them all by `until`. Every rank calls the
/// exchanges in the same order and messages of one (source, tag) are FIFO, so consecutive
/// exchanges never mix.
template <class Record, class Transport, class PostRecv, class PostSend>
std::vector<Record> exchange_records(Transport& t, int rank, int size, const Record& mine,
                                     PostRecv post_recv, PostSend post_send, deadline until) {
  static_assert(std::is_trivially_copyable_v<Record>, "records travel as bytes");
  std::vector<Record> all(static_cast<std::size_t>(size));
  all[static_cast<std::size_t>(rank)] = mine;
  std::vector<decltype(post_send(0, std::span<const std::byte>{}))> pending;
  for (int p = 0; p < size; ++p) {
    if (p == rank) continue;
    pending.push_back(post_recv(p, std::as_writable_bytes(std::span(&all[std::size_t(p)], 1))));
  }
  for (int p = 0; p < size; ++p) {
    if (p == rank) continue;
    pending.push_back(post_send(p, std::as_bytes(std::span(&mine, 1))));
  }
  wait_all_or_cancel(t, pending, until);
  return all;
}

}  // namespace chorus::inline v0::kit

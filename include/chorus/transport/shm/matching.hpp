#pragma once
/// \file
/// Matching for `chorus::shm_transport`: posted sends and receives (`operation`), and for
/// each peer a `mailbox` that pairs the messages arriving from it with the receives posted
/// for it -- by tag, in FIFO order, as MPI matches within one (source, tag). A message that
/// arrives before its receive is buffered; one whose receive is posted while it streams in
/// is taken over (what arrived is copied, the rest streams straight into the receive). A
/// receive of another size than the message fails with `errc::mismatch` and the message is
/// dropped. Process-local: the shared memory only holds the slots (segment.hpp).
#include <chorus/transport/kit/copy.hpp>
#include <chorus/transport/kit/tags.hpp>

#include <algorithm>
#include <cstddef>
#include <deque>
#include <memory>
#include <string>
#include <vector>

namespace chorus::inline v0::detail::shm {

enum class state : int { posted, active, done };

/// One posted send or receive. Process-local; the shared memory only holds slots.
struct operation {
  bool is_send = false;
  int peer = 0;
  tag_t tag = 0;
  const std::byte* send_data = nullptr;
  std::byte* recv_data = nullptr;
  std::size_t bytes = 0;
  std::size_t progress = 0;      ///< bytes moved so far
  std::vector<std::byte> owned;  ///< a private copy of a send cancelled mid-stream (`cancel`)
  state status = state::posted;
  bool failed = false;
  std::string failure;
};

using operation_ptr = std::shared_ptr<operation>;

/// A message that arrived before its receive was posted. Its storage is not initialised:
/// only the pages the message's bytes are written to are touched (a page fault each), so a
/// large message whose receive is posted while it streams in (which then takes the rest
/// over, see `mailbox::post`) costs only what had arrived.
struct unexpected_message {
  tag_t tag = 0;
  std::unique_ptr<std::byte[]> data;
  std::size_t bytes = 0;
  std::size_t received = 0;
  [[nodiscard]] bool complete() const noexcept { return received == bytes; }
};

/// Fails receive `op` of rank `rank`: the peer sent `sent` bytes with its tag.
inline void mismatch(operation& op, std::size_t sent, int rank) {
  op.failed = true;
  op.failure = "rank " + std::to_string(rank) + " posted a receive of " + std::to_string(op.bytes) +
               " bytes from rank " + std::to_string(op.peer) + " but that rank sent " +
               std::to_string(sent) +
               " bytes with the same tag: the ranks called with different counts or types";
  op.status = state::done;
}

/// The message from one peer that is streaming in: it fills `target` (a matched receive),
/// or `buffer` (an unexpected message), or nothing (`discard`).
struct incoming_state {
  operation_ptr target;                        ///< the receive being filled, or null
  std::shared_ptr<unexpected_message> buffer;  ///< or the buffered message
  bool discard = false;                        ///< drop the rest (cancelled or size mismatch)
  bool active = false;
  std::size_t total = 0;
  std::size_t received = 0;

  /// Where the bytes of the message go; null when they are dropped.
  [[nodiscard]] std::byte* destination() const noexcept {
    return discard ? nullptr : target ? target->recv_data : buffer->data.get();
  }
};

/// The receive side of one peer: receives posted for it, messages from it that arrived
/// before their receive, and the message streaming in. `rank` in the methods is this
/// rank (world), for the messages of a mismatch.
struct mailbox {
  std::deque<operation_ptr> posted;  ///< unmatched receives, in posting order
  /// messages that arrived before their receive, in arrival order
  std::deque<std::shared_ptr<unexpected_message>> unexpected;
  incoming_state incoming;  ///< the message streaming in

  /// A receive was posted: it takes the oldest arrived message with its tag (complete, or
  /// still streaming in), or waits in `posted`.
  void post(const operation_ptr& op, int rank) {
    for (auto it = unexpected.begin(); it != unexpected.end(); ++it) {
      unexpected_message& u = **it;
      if (u.tag != op->tag) continue;
      if (u.complete()) {
        deliver_buffered(u, *op, rank);
      } else {
        take_over(u, op, rank);
      }
      unexpected.erase(it);
      return;
    }
    posted.push_back(op);
  }

  /// A message of `total` bytes with `tag` starts to arrive: it goes into the oldest posted
  /// receive with its tag, or into a new buffer.
  void start(tag_t tag, std::size_t total, int rank) {
    incoming = incoming_state{};
    incoming.active = true;
    incoming.total = total;
    for (auto it = posted.begin(); it != posted.end(); ++it) {
      if ((*it)->tag != tag) continue;
      incoming.target = *it;
      posted.erase(it);
      incoming.target->status = state::active;
      if (incoming.target->bytes != total) {
        mismatch(*incoming.target, total, rank);
        incoming.discard = true;
      }
      return;
    }
    incoming.buffer = std::make_shared<unexpected_message>();
    incoming.buffer->tag = tag;
    incoming.buffer->data.reset(new std::byte[total]);  // not value-initialised: see the struct
    incoming.buffer->bytes = total;
    unexpected.push_back(incoming.buffer);
  }

  /// The message streaming in has arrived whole.
  void finish() {
    if (incoming.target) {
      if (incoming.target->status != state::done) {  // not cancelled, no mismatch
        incoming.target->progress = incoming.total;
        incoming.target->status = state::done;
      }
    } else if (incoming.buffer) {
      incoming.buffer->received = incoming.buffer->bytes;
    }
    incoming = incoming_state{};
  }

  /// Receive `op` is cancelled: it leaves the queue, and if the message streaming in was
  /// going into it, the rest of that message is dropped.
  void cancel(const operation_ptr& op) {
    std::erase(posted, op);
    if (incoming.target == op) incoming.discard = true;
  }

 private:
  /// A receive `op` matches `u`, the message that is still streaming in (the only one that
  /// can be incomplete): what has arrived is copied and the rest streams straight into the
  /// receive. A size mismatch fails `op` and drops the rest.
  void take_over(unexpected_message& u, const operation_ptr& op, int rank) {
    incoming.buffer.reset();  // `u` stays alive in `unexpected` until the caller erases it
    if (op->bytes != u.bytes) {
      mismatch(*op, u.bytes, rank);
      incoming.discard = true;
      return;
    }
    if (incoming.received != 0) copy_bytes(op->recv_data, u.data.get(), incoming.received);
    incoming.target = op;
    op->status = state::active;
  }

  static void deliver_buffered(const unexpected_message& u, operation& op, int rank) {
    if (op.bytes != u.bytes) {
      mismatch(op, u.bytes, rank);
    } else if (u.bytes != 0) {
      copy_bytes(op.recv_data, u.data.get(), u.bytes);
    }
    op.progress = op.bytes;
    op.status = state::done;
  }
};

}  // namespace chorus::inline v0::detail::shm

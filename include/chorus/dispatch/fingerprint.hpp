#pragma once
/// \file
/// The identity of a call that every rank must agree on, its description in messages
/// ("all_reduce #7 (ring, float32, count 1024, op sum)"), and the `CHORUS_CHECK` exchange
/// that compares it between neighbours.
#include <chorus/communicator.hpp>
#include <chorus/core/error.hpp>
#include <chorus/core/hash.hpp>
#include <chorus/core/ops.hpp>
#include <chorus/core/types.hpp>
#include <chorus/dispatch/call.hpp>
#include <chorus/exec/executor.hpp>
#include <chorus/schedule/schedule.hpp>
#include <chorus/transport/kit/tags.hpp>

#include <cstdint>
#include <numeric>
#include <span>
#include <string>

namespace chorus::inline v0::detail {

/// The identity of a call that every rank must agree on (`CHORUS_CHECK=1`).
struct fingerprint {
  std::uint32_t sequence = 0;
  std::uint8_t kind = 0;
  std::uint8_t type = 0;
  std::uint8_t op = 0;
  std::uint8_t algorithm = 0;
  std::int32_t root = 0;
  std::uint32_t elem_size = 0;  ///< bytes per element (user types of one dtype differ in it)
  std::uint64_t count = 0;
  std::uint64_t counts_hash = 0;
  friend bool operator==(const fingerprint&, const fingerprint&) = default;
};

/// FNV-1a over the little-endian bytes of each count.
inline std::uint64_t hash_counts(std::span<const std::size_t> counts) noexcept {
  fnv1a h;
  for (std::size_t c : counts) h.add_value(static_cast<std::uint64_t>(c));
  return h.value;
}

/// "all_reduce #7 (ring, float32, count 1024, op sum)".
inline std::string describe(const fingerprint& f) {
  const auto kind = static_cast<schedule::collective>(f.kind);
  std::string s(schedule::name(kind));
  s += " #" + std::to_string(f.sequence) + " (";
  s += schedule::name(static_cast<schedule::algorithm>(f.algorithm));
  if (kind != schedule::collective::barrier) {
    s += ", ";
    s += name(static_cast<dtype>(f.type));
    if (static_cast<dtype>(f.type) == dtype::user)
      s += " of " + std::to_string(f.elem_size) + " bytes";
    if (kind != schedule::collective::all_to_all) s += ", count " + std::to_string(f.count);
  }
  if (schedule::is_reducing(kind)) {
    s += ", op ";
    s += name(static_cast<op_kind>(f.op));
  }
  if (schedule::is_rooted(kind)) s += ", root " + std::to_string(f.root);
  s += ")";
  return s;
}

inline fingerprint make_fingerprint(const collective_call& call, schedule::algorithm a,
                                    std::uint32_t sequence) {
  fingerprint f;
  f.sequence = sequence;
  f.kind = static_cast<std::uint8_t>(call.kind);
  f.type = static_cast<std::uint8_t>(call.type);
  f.op = static_cast<std::uint8_t>(call.has_op ? call.op : op_kind::custom);
  f.algorithm = static_cast<std::uint8_t>(a);
  f.root = schedule::is_rooted(call.kind) ? call.root : 0;
  f.elem_size = static_cast<std::uint32_t>(call.elem_size);
  if (!call.counts.empty()) {
    f.count = std::accumulate(call.counts.begin(), call.counts.end(), std::uint64_t{0});
    f.counts_hash = hash_counts(call.counts);
  } else if (call.kind != schedule::collective::all_to_all) {
    f.count = call.count;
  }
  return f;
}

/// Throws `errc::mismatch` naming both calls when the left neighbour's fingerprint differs
/// from this rank's.
inline void throw_if_mismatched(int r, int p, const fingerprint& theirs, const fingerprint& mine) {
  if (theirs == mine) return;
  throw error(errc::mismatch, "collective mismatch: rank " + std::to_string((r + p - 1) % p) +
                                  " called " + describe(theirs) + " but rank " + std::to_string(r) +
                                  " called " + describe(mine) +
                                  "; every rank must call the same collectives in the same "
                                  "order with matching arguments");
}

/// Exchanges fingerprints around the ring (send to rank+1, receive from rank-1) and throws
/// `errc::mismatch` naming both calls when the left neighbour's differs. If any two ranks
/// disagree then some pair of neighbours does, and that rank reports and aborts the group.
template <transport Transport>
void check_fingerprint(communicator<Transport>& comm, const fingerprint& mine) {
  const int p = comm.size();
  if (p == 1) return;
  const int r = comm.rank();
  fingerprint theirs;
  Transport& t = comm.transport();
  const tag_t tag = collective_tag(0, check_tag);
  auto rq = t.irecv((r + p - 1) % p, tag, {reinterpret_cast<std::byte*>(&theirs), sizeof theirs});
  request_set<Transport> pending(t);
  pending.push(std::move(rq));
  comm.count_received(sizeof theirs);
  pending.push(t.isend((r + 1) % p, tag, {reinterpret_cast<const std::byte*>(&mine), sizeof mine}));
  comm.count_sent(sizeof mine);
  t.wait(pending[0], comm.make_deadline());
  pending.completed_below(1);
  t.wait(pending[1], comm.make_deadline());
  pending.completed_below(2);
  throw_if_mismatched(r, p, theirs, mine);
}

}  // namespace chorus::inline v0::detail

#pragma once
/// \file
/// In-memory redundancy for `zero::sharded_optimizer`: what `replicate` keeps and `restore`
/// reads, so that the survivors of a failed rank rebuild the whole optimizer state on a
/// shrunk group without a checkpoint on disk.
///
/// **What is kept.** At a step boundary `replicate` copies this rank's shard (fp32 master
/// weights and every optimizer state) and receives a copy of its left neighbour's (rank
/// r - 1 mod N) over the communicator. The state of any one rank, and of any set of ranks
/// no two of which are neighbours on that ring, survives its loss: its right neighbour holds
/// it. Stage 0 keeps one copy of the whole state and sends nothing (every rank has it all).
///
/// **Cost.** Between calls: two shards of fp32 state, 2 x (1 + S) x 4 x (shard elements)
/// bytes, S the optimizer's state count (AdamW: 24 bytes per element of the shard, stage 0:
/// 12 per parameter); twice that while `replicate` runs. Each `replicate` moves one shard
/// to one neighbour and copies one.
///
/// **Consistency.** A generation becomes *committed* only after a barrier that every rank
/// reaches once it holds its copies, so if any rank has committed generation s, every rank
/// held s when it entered that barrier. A rank keeps the previous committed generation until
/// then. `restore` takes the newest step that some survivor committed, which every survivor
/// holds, committed or pending.
#include <cstddef>
#include <cstdint>
#include <vector>

namespace chorus::inline v0::zero {

/// One generation: this rank's shard and its left neighbour's, as of one step.
struct replica_generation {
  bool valid = false;     ///< holds a copy at all
  bool complete = false;  ///< the neighbour's copy arrived too
  std::uint64_t step = 0;
  int world = 0;  ///< size of the group that made it
  int rank = -1;  ///< this rank's rank in that group
  /// This rank's shard: master weights, then each state, the shard size each.
  std::vector<float> own;
  /// The shard of rank (rank - 1) mod world, laid out the same way (empty at stage 0 or on
  /// one rank).
  std::vector<float> held;

  [[nodiscard]] std::size_t bytes() const noexcept {
    return (own.capacity() + held.capacity()) * sizeof(float);
  }
};

/// What `sharded_optimizer::replicate` keeps on one rank. Pass the same object to every
/// `replicate` and to `restore`; it is valid across a shrink (it describes the old group
/// until the first `replicate` on the new one).
struct replicas {
  /// The last generation every rank reached the commit barrier of (see the file comment).
  replica_generation committed;
  /// A generation being made: left here when `replicate` fails part-way.
  replica_generation pending;
  /// The model it describes: checked by `restore`.
  std::vector<std::size_t> sizes;
  std::uint32_t geometry_id = 0;
  std::uint32_t optimizer_id = 0;
  std::uint32_t state_count = 0;
  bool sharded = false;  ///< stages 1-3: copies are shards; stage 0: the whole state

  /// Bytes held now (both generations).
  [[nodiscard]] std::size_t bytes() const noexcept { return committed.bytes() + pending.bytes(); }
  /// The committed step, or 0 when nothing was committed yet.
  [[nodiscard]] std::uint64_t step() const noexcept { return committed.valid ? committed.step : 0; }
};

}  // namespace chorus::inline v0::zero

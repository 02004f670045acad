#pragma once
/// \file
/// What a transport needs to serve a group of its ranks (`communicator::split`,
/// `subgroup`) over the channels it already has: the group's members as world ranks, this
/// rank's place among them, and a context number that the transport puts into every tag
/// (`kit/tags.hpp`) so that the messages of groups sharing a channel never match each
/// other's.
///
/// Contexts are agreed when a group is made (MPI's context-id allocation): every rank of
/// the parent contributes the set of contexts it uses (`context_pool::used`), the union is
/// taken, and each new group gets a context free on all of its members. A group's context
/// goes back to its rank's pool when the last transport of that group on that rank is gone.
#include <chorus/transport/kit/tags.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

namespace chorus::inline v0::kit {

/// The contexts one rank uses, a bit each (context 0, the world's, always).
using context_mask = std::array<std::uint64_t, detail::context_count / 64>;

/// The contexts in use on one rank (one process for shm and UCX, one thread for inproc).
class context_pool {
 public:
  context_pool() noexcept { used_[0] = 1; }
  context_pool(const context_pool&) = delete;
  context_pool& operator=(const context_pool&) = delete;

  [[nodiscard]] context_mask used() const {
    std::lock_guard lock(mutex_);
    return used_;
  }
  void take(std::uint32_t context) {
    std::lock_guard lock(mutex_);
    used_[context / 64] |= std::uint64_t{1} << (context % 64);
  }
  void give_back(std::uint32_t context) noexcept {
    if (context == 0) return;
    std::lock_guard lock(mutex_);
    used_[context / 64] &= ~(std::uint64_t{1} << (context % 64));
  }

 private:
  mutable std::mutex mutex_;
  context_mask used_{};
};

/// Holds one context of a pool for as long as any transport of the group exists on this
/// rank; `keep` keeps the pool's owner alive.
struct context_lease {
  context_lease(std::shared_ptr<void> keep, context_pool& pool, std::uint32_t context)
      : keep_(std::move(keep)), pool_(&pool), context_(context) {
    pool_->take(context_);
  }
  context_lease(const context_lease&) = delete;
  context_lease& operator=(const context_lease&) = delete;
  ~context_lease() { pool_->give_back(context_); }

 private:
  std::shared_ptr<void> keep_;
  context_pool* pool_;
  std::uint32_t context_;
};

/// One rank's view of a group of the world's ranks.
struct group_view {
  /// World rank of each group rank; null for the world itself.
  std::shared_ptr<const std::vector<int>> members;
  int rank = 0;  ///< this rank's place in the group
  int size = 1;
  std::uint32_t context = 0;
  std::shared_ptr<const context_lease> lease;  ///< null for the world

  /// The whole world, `rank` of `size`.
  static group_view world(int rank, int size) noexcept { return {nullptr, rank, size, 0, {}}; }

  /// The group of `members` (ranks of this view) in which this rank is `rank`, on context
  /// `context`, taken from `pool` (kept alive by `keep`).
  [[nodiscard]] group_view subgroup(const std::vector<int>& parent_members, int new_rank,
                                    std::uint32_t new_context, context_pool& pool,
                                    std::shared_ptr<void> keep) const {
    auto world_members = std::make_shared<std::vector<int>>();
    world_members->reserve(parent_members.size());
    for (int m : parent_members) world_members->push_back(world(m));
    group_view g;
    g.members = std::move(world_members);
    g.rank = new_rank;
    g.size = static_cast<int>(parent_members.size());
    g.context = new_context;
    g.lease = std::make_shared<const context_lease>(std::move(keep), pool, new_context);
    return g;
  }

  /// The world rank of group rank `r`.
  [[nodiscard]] int world(int r) const noexcept {
    return members ? (*members)[static_cast<std::size_t>(r)] : r;
  }
  [[nodiscard]] int world_rank() const noexcept { return world(rank); }
  /// The group rank of world rank `w`, or -1 if it is not a member.
  [[nodiscard]] int group_rank_of(int w) const noexcept {
    if (!members) return w;
    for (std::size_t i = 0; i < members->size(); ++i) {
      if ((*members)[i] == w) return static_cast<int>(i);
    }
    return -1;
  }
  /// `tag` as it travels for this group.
  [[nodiscard]] tag_t tag(tag_t t) const noexcept { return detail::with_context(t, context); }
};

}  // namespace chorus::inline v0::kit

#pragma once
/// \file
/// The schedules a thread built lately, by (algorithm, call shape): a call shaped like one
/// of them runs that schedule again instead of building it anew.
///
/// A schedule is a pure function of its algorithm and `schedule::params` (the shape: kind,
/// rank, size, root, counts, piece, hosts; never the buffers or the element type), so a
/// schedule built for one call serves every later call of the same shape, on any
/// communicator. Training loops repeat a handful of shapes; for a small message the build
/// is a tenth of the call (docs/performance.md, "Small messages after the one-line slot").
///
/// Per thread, so no lock; a few entries, replaced oldest first; schedules of more than
/// `max_ops` operations (large vectors cut into many pieces, where the build is a small part
/// of the call) are built every time rather than kept.
#include <chorus/schedule/build.hpp>
#include <chorus/schedule/schedule.hpp>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

namespace chorus::inline v0::detail {

class schedule_cache {
 public:
  static constexpr std::size_t entries = 8;
  static constexpr std::size_t max_ops = 4096;

  /// The schedule of `a` for `p`: a kept one if a call of the same shape built it, else
  /// built now (and kept unless it is large).
  std::shared_ptr<const schedule::schedule> get(schedule::algorithm a, const schedule::params& p) {
    for (entry& e : entries_) {
      if (e.built && e.matches(a, p)) return e.built;
    }
    auto built = std::make_shared<const schedule::schedule>(schedule::build(a, p));
    if (built->ops.size() <= max_ops) {
      entries_[next_].keep(a, p, built);
      next_ = (next_ + 1) % entries;
    }
    return built;
  }

 private:
  struct entry {
    schedule::algorithm algo{};
    schedule::collective kind{};
    int rank = 0;
    int size = 0;
    int root = 0;
    std::size_t count = 0;
    std::size_t chunk_count = 0;
    /// counts, send_counts, send_offsets, recv_counts, recv_offsets, one after another
    std::vector<std::size_t> lists;
    std::array<std::size_t, 5> list_sizes{};
    std::vector<int> hosts;
    std::shared_ptr<const schedule::schedule> built;

    static std::array<std::span<const std::size_t>, 5> lists_of(const schedule::params& p) {
      return {p.counts, p.send_counts, p.send_offsets, p.recv_counts, p.recv_offsets};
    }

    [[nodiscard]] bool matches(schedule::algorithm a, const schedule::params& p) const {
      if (a != algo || p.kind != kind || p.rank != rank || p.size != size || p.root != root ||
          p.count != count || p.chunk_count != chunk_count || !std::ranges::equal(p.hosts, hosts)) {
        return false;
      }
      std::size_t at = 0;
      const auto theirs = lists_of(p);
      for (std::size_t i = 0; i < theirs.size(); ++i) {
        if (theirs[i].size() != list_sizes[i]) return false;
        if (!std::equal(theirs[i].begin(), theirs[i].end(), lists.begin() + static_cast<long>(at)))
          return false;
        at += list_sizes[i];
      }
      return true;
    }

    void keep(schedule::algorithm a, const schedule::params& p,
              std::shared_ptr<const schedule::schedule> s) {
      algo = a;
      kind = p.kind;
      rank = p.rank;
      size = p.size;
      root = p.root;
      count = p.count;
      chunk_count = p.chunk_count;
      lists.clear();
      const auto theirs = lists_of(p);
      for (std::size_t i = 0; i < theirs.size(); ++i) {
        lists.insert(lists.end(), theirs[i].begin(), theirs[i].end());
        list_sizes[i] = theirs[i].size();
      }
      hosts.assign(p.hosts.begin(), p.hosts.end());
      built = std::move(s);
    }
  };

  std::array<entry, entries> entries_{};
  std::size_t next_ = 0;
};

/// `schedule::build(a, p)` through this thread's `schedule_cache`.
inline std::shared_ptr<const schedule::schedule> cached_schedule(schedule::algorithm a,
                                                                 const schedule::params& p) {
  thread_local schedule_cache cache;
  return cache.get(a, p);
}

}  // namespace chorus::inline v0::detail

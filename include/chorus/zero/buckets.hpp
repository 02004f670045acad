#pragma once
/// \file
/// Buckets: groups of consecutive tensors that move together in one collective, and the
/// packed layout that lets one reduce-scatter or all-gather serve a whole bucket under any
/// partition geometry.
///
/// A bucket's *natural* layout is its tensors back to back (what the user computes with).
/// Its *packed* layout is rank-major: rank 0's part of the bucket (its segments of the
/// bucket's tensors, padding included, in shard order), then rank 1's, ... . Rank r's part
/// is contiguous in its shard too, so
///  - reduce_scatter_v(packed gradients, counts) leaves rank r's reduced part in its shard,
///  - all_gather_v(rank r's part, counts) rebuilds the packed parameters everywhere,
/// and `runs` map packed positions to natural ones (padding runs map to nothing: zeros).
/// For `flat` the packed layout of a bucket is its natural layout plus trailing padding;
/// for `per_tensor` it is the interleaved layout of FSDP2; for `whole_tensor` the tensors
/// grouped by owner.
#include <chorus/zero/partition.hpp>

#include <algorithm>
#include <cstddef>
#include <vector>

namespace chorus::inline v0::zero {

/// A copy between packed and natural positions of one bucket.
struct bucket_run {
  std::size_t packed = 0;   ///< offset in the packed bucket
  std::size_t natural = 0;  ///< offset in the bucket's natural range (unused for padding)
  std::size_t length = 0;
  bool padding = false;
};

/// One bucket of tensors `[first_tensor, end_tensor)`.
struct bucket {
  std::size_t first_tensor = 0;
  std::size_t end_tensor = 0;
  std::size_t natural_offset = 0;         ///< of the first tensor in the model's natural vector
  std::size_t natural_size = 0;           ///< elements of its tensors
  std::size_t packed_size = 0;            ///< natural_size + padding
  std::vector<std::size_t> counts;        ///< per rank: elements of its part
  std::vector<std::size_t> rank_offset;   ///< per rank: where its part starts in the packed bucket
  std::vector<std::size_t> shard_offset;  ///< per rank: where its part starts in its shard
  std::vector<std::size_t> run_begin;     ///< rank r's runs: [run_begin[r], run_begin[r + 1])
  std::vector<bucket_run> runs;
};

/// Every bucket of a model under one partition.
struct bucket_layout {
  std::vector<std::size_t> tensor_offset;  ///< natural offset of each tensor (and the total)
  std::vector<std::size_t> tensor_bucket;  ///< the bucket of each tensor
  std::vector<bucket> buckets;
  std::size_t max_packed = 0;   ///< largest packed bucket
  std::size_t max_natural = 0;  ///< largest natural bucket
  std::size_t max_part = 0;     ///< largest part of one rank in one bucket
};

/// Cuts the tensors into buckets of at least `bucket_elements` elements each (the last may
/// be smaller; a tensor is never split; 0 = one bucket) and lays each out for partition `p`.
[[nodiscard]] constexpr bucket_layout make_buckets(const partition& p,
                                                   std::size_t bucket_elements) {
  bucket_layout l;
  const std::size_t n = p.sizes.size();
  const std::size_t world = p.shards.size();
  l.tensor_offset.assign(n + 1, 0);
  for (std::size_t t = 0; t < n; ++t) l.tensor_offset[t + 1] = l.tensor_offset[t] + p.sizes[t];
  l.tensor_bucket.assign(n, 0);
  for (std::size_t t = 0; t < n;) {
    bucket b;
    b.first_tensor = t;
    b.natural_offset = l.tensor_offset[t];
    while (t < n && (bucket_elements == 0 || b.natural_size < bucket_elements)) {
      l.tensor_bucket[t] = l.buckets.size();
      b.natural_size += p.sizes[t++];
    }
    b.end_tensor = t;
    l.buckets.push_back(std::move(b));
  }
  std::vector<std::size_t> next(world, 0),
      shard_at(world, 0);  // per rank: next segment, shard position
  for (bucket& b : l.buckets) {
    b.counts.assign(world, 0);
    b.rank_offset.assign(world, 0);
    b.shard_offset.assign(world, 0);
    b.run_begin.assign(world + 1, 0);
    for (std::size_t r = 0; r < world; ++r) {
      b.rank_offset[r] = b.packed_size;
      b.shard_offset[r] = shard_at[r];
      b.run_begin[r] = b.runs.size();
      const auto& shard = p.shards[r];
      for (; next[r] < shard.size() && shard[next[r]].tensor < b.end_tensor; ++next[r]) {
        const segment& s = shard[next[r]];
        b.runs.push_back({b.packed_size, l.tensor_offset[s.tensor] - b.natural_offset + s.offset,
                          s.length, s.padding});
        b.packed_size += s.length;
        b.counts[r] += s.length;
      }
      shard_at[r] += b.counts[r];
      l.max_part = std::max(l.max_part, b.counts[r]);
    }
    b.run_begin[world] = b.runs.size();
    l.max_packed = std::max(l.max_packed, b.packed_size);
    l.max_natural = std::max(l.max_natural, b.natural_size);
  }
  return l;
}

}  // namespace chorus::inline v0::zero

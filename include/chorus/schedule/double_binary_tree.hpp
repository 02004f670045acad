#pragma once
/// \file
/// Double binary tree all_reduce: two binary trees over the same ranks, each carrying half
/// of the vector with the pipelined reduce-then-broadcast of `pipelined_tree`.
///
/// In one binary tree the inner nodes receive from two children and send to two, while the
/// leaves send once and receive once: the inner nodes' links limit the bandwidth and the
/// leaves' links idle. With two trees that each carry half of the vector, and where no rank
/// is an inner node of both (true for every P the tests check, 1..64), every rank does
/// inner-node work for at most half of the data.
///
/// Tree 0 is the in-order tree on positions 1..P placed on rank x - 1: its leaves are the
/// odd positions, i.e. the even ranks. Tree 1 is tree 0 mirrored (rank P - x) when P is
/// even, which turns even ranks into odd ones, and tree 0 shifted by one (rank x mod P) when
/// P is odd. Tree 0 reduces elements [0, ceil(n/2)) with tag 0, tree 1 the rest with tag 1,
/// so that messages of the two trees between the same pair of ranks never match each
/// other. Both trees follow the same global step clock and their ops of a step are merged
/// into one step; they touch disjoint elements, so they cannot conflict.
#include <chorus/schedule/layout.hpp>
#include <chorus/schedule/schedule.hpp>
#include <chorus/schedule/tree.hpp>

#include <cstddef>
#include <stdexcept>

namespace chorus::inline v0::schedule::detail {

/// Tree 0 of the pair: the in-order tree on rank x - 1.
inline tree_shape double_tree_first(int size) {
  return inorder_tree(size, [](int x) { return x - 1; });
}

/// Tree 1 of the pair: mirrored (even P) or shifted (odd P).
inline tree_shape double_tree_second(int size) {
  if (size % 2 == 0) return inorder_tree(size, [size](int x) { return size - x; });
  return inorder_tree(size, [size](int x) { return x % size; });
}

inline schedule double_binary_tree_all_reduce(const params& p) {
  timeline tl;
  const std::size_t first = (p.count + 1) / 2;
  pipelined_tree(tl, double_tree_first(p.size), p.rank, 0, first, p.chunk_count, 0,
                 tree_mode::all_reduce);
  pipelined_tree(tl, double_tree_second(p.size), p.rank, first, p.count - first, p.chunk_count, 1,
                 tree_mode::all_reduce);
  return tl.finish();
}

/// The double binary tree generator (all_reduce only).
inline schedule build_double_binary_tree(const params& p) {
  if (p.kind == collective::all_reduce) return double_binary_tree_all_reduce(p);
  throw std::invalid_argument("the double_binary_tree algorithm implements only all_reduce");
}

}  // namespace chorus::inline v0::schedule::detail

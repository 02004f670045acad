#pragma once
/// \file
/// `communicator::split` and `communicator::subgroup`: groups of a communicator's ranks that
/// share its channels.
///
/// Both are one small collective over the parent (an all-gather of each rank's color, key,
/// argument digest and the group contexts it uses -- a chorus collective like any other,
/// with its deadline, sequence number and `CHORUS_CHECK` fingerprint), then a decision that
/// every rank computes alike from the same gathered records, so that an error (a bad color,
/// different lists, no free context) is raised on every rank or on none. Each new group gets
/// a context that no member uses yet (kit/group_view.hpp): its messages never match another
/// group's, although they travel through the same rings (shm), mailboxes (inproc) or
/// endpoints.
#include <chorus/collectives/all_gather.hpp>
#include <chorus/communicator.hpp>
#include <chorus/core/error.hpp>
#include <chorus/core/hash.hpp>
#include <chorus/transport/contract.hpp>
#include <chorus/transport/kit/group_view.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

namespace chorus::inline v0 {

namespace detail::group {

/// What each rank contributes to a split, as 64-bit words.
enum word : std::size_t { color_word, key_word, kind_word, digest_word, mask_words };
inline constexpr std::size_t record_words = mask_words + kit::context_mask{}.size();
inline constexpr std::uint64_t split_kind = 1;
inline constexpr std::uint64_t subgroup_kind = 2;

/// Every rank's record, gathered over `comm`, and the decision taken from them.
template <class Transport>
std::optional<communicator<Transport>> make(communicator<Transport>& comm, const char* api,
                                            int color, int key, std::uint64_t kind,
                                            std::uint64_t digest) {
  static_assert(splittable_transport<Transport>,
                "chorus: this transport cannot make groups yet (inproc, shm and UCX can; "
                "NCCL groups are on the way, see docs/groups.md)");
  const int p = comm.size();
  std::vector<std::uint64_t> mine(record_words);
  mine[color_word] = static_cast<std::uint64_t>(static_cast<std::int64_t>(color));
  mine[key_word] = static_cast<std::uint64_t>(static_cast<std::int64_t>(key));
  mine[kind_word] = kind;
  mine[digest_word] = digest;
  const kit::context_mask used = comm.transport().used_contexts();
  std::copy(used.begin(), used.end(), mine.begin() + mask_words);
  std::vector<std::uint64_t> all(record_words * static_cast<std::size_t>(p));
  all_gather(comm, mine, all);

  auto at = [&](int r, std::size_t w) {
    return all[static_cast<std::size_t>(r) * record_words + w];
  };
  auto color_of = [&](int r) {
    return static_cast<int>(static_cast<std::int64_t>(at(r, color_word)));
  };
  auto key_of = [&](int r) { return static_cast<int>(static_cast<std::int64_t>(at(r, key_word))); };
  const std::string who = std::string("chorus::communicator::") + api + ": ";
  for (int r = 0; r < p; ++r) {
    if (at(r, kind_word) != kind) {
      throw error(errc::mismatch, who + "rank " + std::to_string(r) + " called " +
                                      (at(r, kind_word) == split_kind ? "split" : "subgroup") +
                                      " while rank " + std::to_string(comm.rank()) + " called " +
                                      api + "; every rank must call the same one");
    }
    if (at(r, digest_word) != at(0, digest_word)) {
      throw error(errc::mismatch, who + "rank " + std::to_string(r) +
                                      " passed a different list of ranks than rank 0; every "
                                      "rank must pass the same list");
    }
    const int c = color_of(r);
    if (c < 0 && c != undefined) {
      throw error(errc::invalid_argument,
                  who + "rank " + std::to_string(r) + " passed color " + std::to_string(c) +
                      "; a color is >= 0, or chorus::undefined for no group");
    }
  }

  // The distinct colors, ascending; the i-th gets the i-th context free on every rank.
  std::vector<int> colors;
  for (int r = 0; r < p; ++r) {
    if (color_of(r) != undefined) colors.push_back(color_of(r));
  }
  std::sort(colors.begin(), colors.end());
  colors.erase(std::unique(colors.begin(), colors.end()), colors.end());
  kit::context_mask taken{};
  for (int r = 0; r < p; ++r) {
    for (std::size_t w = 0; w < taken.size(); ++w) taken[w] |= at(r, mask_words + w);
  }
  std::vector<std::uint32_t> contexts;
  for (std::uint32_t c = 1; c < detail::context_count && contexts.size() < colors.size(); ++c) {
    if ((taken[c / 64] & (std::uint64_t{1} << (c % 64))) == 0) contexts.push_back(c);
  }
  if (contexts.size() < colors.size()) {
    throw error(errc::invalid_argument,
                who + "no free group context for " + std::to_string(colors.size()) +
                    " new groups: a rank may belong to at most " +
                    std::to_string(detail::context_count - 1) +
                    " groups at once; destroy groups that are no longer used");
  }
  if (color == undefined) return std::nullopt;

  group_spec spec;
  spec.color = color;
  spec.key = key;
  spec.context = contexts[static_cast<std::size_t>(
      std::lower_bound(colors.begin(), colors.end(), color) - colors.begin())];
  for (int r = 0; r < p; ++r) {
    if (color_of(r) == color) spec.members.push_back(r);
  }
  std::stable_sort(spec.members.begin(), spec.members.end(),
                   [&](int a, int b) { return key_of(a) < key_of(b); });
  spec.rank = static_cast<int>(std::find(spec.members.begin(), spec.members.end(), comm.rank()) -
                               spec.members.begin());
  return std::optional<communicator<Transport>>(std::in_place, comm.transport().split(spec),
                                                comm.options());
}

}  // namespace detail::group

template <any_transport Transport>
std::optional<communicator<Transport>> communicator<Transport>::split(int color, int key) {
  return detail::group::make(*this, "split", color, key, detail::group::split_kind, 0);
}

template <any_transport Transport>
std::optional<communicator<Transport>> communicator<Transport>::subgroup(
    std::span<const int> ranks) {
  fnv1a digest;
  digest.add_value(ranks.size());
  for (int r : ranks) digest.add_value(static_cast<std::uint64_t>(static_cast<std::int64_t>(r)));
  // Checked on every rank alike (the lists are the same, or make() says they are not).
  int position = undefined;
  std::string problem;
  for (std::size_t i = 0; i < ranks.size(); ++i) {
    const int r = ranks[i];
    if (r < 0 || r >= size()) {
      problem = "rank " + std::to_string(r) + " is not a rank of this communicator (0.." +
                std::to_string(size() - 1) + ")";
    } else if (std::find(ranks.begin(), ranks.begin() + static_cast<std::ptrdiff_t>(i), r) !=
               ranks.begin() + static_cast<std::ptrdiff_t>(i)) {
      problem = "rank " + std::to_string(r) + " is listed twice";
    }
    if (r == rank()) position = static_cast<int>(i);
  }
  if (ranks.empty()) problem = "the list of ranks is empty";
  const std::uint64_t d = digest.value;
  const bool member = problem.empty() && position != undefined;
  auto group = detail::group::make(*this, "subgroup", member ? 0 : undefined, member ? position : 0,
                                   detail::group::subgroup_kind, d);
  if (!problem.empty()) {
    throw error(errc::invalid_argument, "chorus::communicator::subgroup: " + problem);
  }
  return group;
}

}  // namespace chorus::inline v0

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
///
/// A transport that makes groups itself (`native_split_transport`: NCCL's `ncclCommSplit`)
/// gets no all-gather: arguments are checked on each rank before the transport is called,
/// and the transport's own split does the rest (`native` below).
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
                "chorus: this transport cannot make groups (inproc, shm, UCX and NCCL can; "
                "see docs/groups.md)");
  // Requests in flight finish first: making the group reads the transport's state, which
  // the progress thread may be changing.
  comm.drain_requests();
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

/// What is wrong with a subgroup's list of `ranks` of a communicator of `size` ranks, as a
/// sentence; empty when nothing is.
inline std::string list_problem(std::span<const int> ranks, int size) {
  if (ranks.empty()) return "the list of ranks is empty";
  for (std::size_t i = 0; i < ranks.size(); ++i) {
    const int r = ranks[i];
    if (r < 0 || r >= size) {
      return "rank " + std::to_string(r) + " is not a rank of this communicator (0.." +
             std::to_string(size - 1) + ")";
    }
    if (std::find(ranks.begin(), ranks.begin() + static_cast<std::ptrdiff_t>(i), r) !=
        ranks.begin() + static_cast<std::ptrdiff_t>(i)) {
      return "rank " + std::to_string(r) + " is listed twice";
    }
  }
  return {};
}

/// A digest of a subgroup's list.
inline std::uint64_t list_digest(std::span<const int> ranks) {
  fnv1a digest;
  digest.add_value(ranks.size());
  for (int r : ranks) digest.add_value(static_cast<std::uint64_t>(static_cast<std::int64_t>(r)));
  return digest.value;
}

/// The color a subgroup's members pass to a native split: 31 bits of the list's digest, so
/// that ranks passing different lists land in different groups (and find out, `native`).
inline int list_color(std::span<const int> ranks) {
  const std::uint64_t d = list_digest(ranks);
  return static_cast<int>((d ^ (d >> 32)) & 0x7fffffffu);
}

/// `split` and `subgroup` on a transport that splits natively. Nothing is gathered: the
/// arguments are checked here, before the transport is called (a rank that throws here
/// leaves the others waiting until their deadline, as NCCL offers no cheap way to tell
/// them), then the transport makes the group. For a subgroup (`list` not null) each member
/// passes a color made from its list and its place in it as the key, so the group NCCL
/// makes holds exactly the listed ranks that passed the same list; when it holds fewer
/// than the list names, some listed rank passed another list, and every member of that
/// group says so with `errc::mismatch` (and the group is destroyed, the parent stays).
template <class Transport>
std::optional<communicator<Transport>> native(communicator<Transport>& comm, const char* api,
                                              int color, int key,
                                              const std::span<const int>* list) {
  const std::string who =
      std::string("chorus::communicator::") + api + ": rank " + std::to_string(comm.rank()) +
      (comm.world_rank() != comm.rank() ? " (world rank " + std::to_string(comm.world_rank()) + ")"
                                        : std::string()) +
      ": ";
  if (color < 0 && color != undefined) {
    throw error(errc::invalid_argument,
                who + "color " + std::to_string(color) +
                    " is not a color; a color is >= 0, or chorus::undefined for no group");
  }
  comm.throw_if_poisoned();
  std::optional<Transport> made;
  try {
    made = comm.transport().split(color == undefined ? -1 : color, key, comm.make_deadline());
  } catch (const error& e) {
    comm.fail(e);  // the transport aborted the family: this communicator is unusable too
    throw;
  }
  if (!made) return std::nullopt;
  if (list != nullptr && made->size() != static_cast<int>(list->size())) {
    const std::size_t listed = list->size();
    const int got = made->size();
    made.reset();  // every member of this group finds the same, and destroys it
    throw error(errc::mismatch,
                who + "the group of the " + std::to_string(listed) + " ranks listed has " +
                    std::to_string(got) +
                    " members: the others passed a different list; every rank must pass the "
                    "same list");
  }
  return std::optional<communicator<Transport>>(std::in_place, std::move(*made), comm.options());
}

}  // namespace detail::group

template <any_transport Transport>
std::optional<communicator<Transport>> communicator<Transport>::split(int color, int key) {
  if constexpr (native_split_transport<Transport>) {
    return detail::group::native(*this, "split", color, key, nullptr);
  } else {
    return detail::group::make(*this, "split", color, key, detail::group::split_kind, 0);
  }
}

template <any_transport Transport>
std::optional<communicator<Transport>> communicator<Transport>::subgroup(
    std::span<const int> ranks) {
  // Checked on every rank alike (the lists are the same, or make() says they are not).
  const std::string problem = detail::group::list_problem(ranks, size());
  int position = undefined;
  for (std::size_t i = 0; i < ranks.size(); ++i) {
    if (ranks[i] == rank()) position = static_cast<int>(i);
  }
  const bool member = problem.empty() && position != undefined;
  if constexpr (native_split_transport<Transport>) {
    // Nothing to agree with: the list is checked here, before the transport is called.
    if (!problem.empty()) {
      throw error(errc::invalid_argument, "chorus::communicator::subgroup: " + problem);
    }
    return detail::group::native(*this, "subgroup",
                                 member ? detail::group::list_color(ranks) : undefined,
                                 member ? position : 0, &ranks);
  } else {
    auto group =
        detail::group::make(*this, "subgroup", member ? 0 : undefined, member ? position : 0,
                            detail::group::subgroup_kind, detail::group::list_digest(ranks));
    if (!problem.empty()) {
      throw error(errc::invalid_argument, "chorus::communicator::subgroup: " + problem);
    }
    return group;
  }
}

}  // namespace chorus::inline v0

#pragma once
/// \file
/// `communicator::shrink`: after a rank dies, the ranks still alive agree on who is left and
/// make a new communicator of themselves (ULFM's `MPIX_Comm_shrink`, NCCL's
/// `ncclCommShrink`, torch elastic's new rendezvous).
///
/// The dead rank's channels cannot be trusted (an aborted collective leaves half-sent
/// messages in them), so the survivors do not reuse them: they meet in the job's store,
/// which outlives every rank but the one that serves it (chorusrun serves it itself), and
/// build a new transport. One shrink is a series of attempts, each under its own keys
/// `<group prefix>/shrink/<call>/<attempt>/...`:
///
///  1. **Join.** Each survivor sets `join/<its old rank>`.
///  2. **Wait.** It waits until every candidate (every old rank not left out by an earlier
///     attempt) has joined or is known to have exited (`peer_gone`: a pidfd on this host),
///     or until the deadline; or until another survivor has already decided.
///  3. **Decide.** It proposes the ranks that joined and are not known dead with
///     `compare_set(decision, {}, proposal)`: the first proposal wins and every survivor
///     reads the same winner, so the membership is the same everywhere. A rank that is not
///     in it (it joined after the others' deadline) fails with `errc::timeout`.
///  4. **Rebuild.** The members build a new transport over the store (`rebuilt`), under
///     `build/`: each round's blobs are read while watching the members' processes. The
///     attempt's outcome is agreed like the membership, with `compare_set(outcome, {}, ...)`:
///     a member that finds a blob missing and its writer dead proposes "died <rank>", a
///     member that finished building proposes "ok". If "ok" won, every blob exists (the
///     winner read them all), so whoever proposed "died" reads on; if "died" won, every
///     member drops what it built and the next attempt starts without that rank.
///
/// A rank that is merely slow is waited for until the deadline and kept. The deadline
/// (`shrink_options::timeout`) applies to each wait: for the others to join an attempt, and
/// for the members to build. A timeout or another error ends the shrink on the rank that
/// sees it.
#include <chorus/bootstrap/store.hpp>
#include <chorus/communicator.hpp>
#include <chorus/core/deadline.hpp>
#include <chorus/core/error.hpp>
#include <chorus/transport/contract.hpp>
#include <chorus/transport/kit/exchange.hpp>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace chorus::inline v0 {

/// What `communicator::shrink` returns on each survivor.
template <class Transport>
struct shrink_result {
  /// The survivors, ranked 0.. in the order of their ranks in the old communicator.
  communicator<Transport> comm;
  /// `members[r]`: the old rank of new rank `r`.
  std::vector<int> members;
  /// The old ranks left out (dead, or too late), ascending.
  std::vector<int> lost;
  /// How many attempts it took (more than 1 when a rank died during the shrink).
  int attempts = 1;
  /// How long the shrink took on this rank.
  duration took{};

  /// The new rank of old rank `old_rank`, or `chorus::undefined` if it was left out.
  [[nodiscard]] int new_rank(int old_rank) const noexcept {
    const auto it = std::find(members.begin(), members.end(), old_rank);
    return it == members.end() ? undefined : static_cast<int>(it - members.begin());
  }
};

namespace detail::shrink {

/// How many times `shrink` was called on one communicator (every survivor calls it the same
/// number of times, so the count names the call in the store's keys).
struct calls {
  int count = 0;
};

/// "0,1,3" for {0, 1, 3}.
inline std::string encode(const std::vector<int>& ranks) {
  std::string out;
  for (std::size_t i = 0; i < ranks.size(); ++i) {
    if (i != 0) out += ',';
    out += std::to_string(ranks[i]);
  }
  return out;
}

/// The ranks of a decision, checked: ascending, within [0, size). Throws `transport` for a
/// value no chorus rank wrote.
inline std::vector<int> decode(const std::string& text, int size, const std::string& key) {
  std::vector<int> out;
  const char* p = text.data();
  const char* end = text.data() + text.size();
  while (p < end) {
    int r = 0;
    const auto [next, ec] = std::from_chars(p, end, r);
    if (ec != std::errc{} || r < 0 || r >= size || (!out.empty() && r <= out.back()) ||
        (next != end && *next != ',')) {
      throw error(errc::transport, "chorus::communicator::shrink: the decision under '" + key +
                                       "' is not a list of ranks ('" + text +
                                       "'): another program wrote that key in the store");
    }
    out.push_back(r);
    p = next == end ? end : next + 1;
  }
  if (out.empty()) {
    throw error(errc::transport, "chorus::communicator::shrink: the decision under '" + key +
                                     "' is empty: another program wrote that key in the store");
  }
  return out;
}

/// Raised inside an attempt when a member died during it: the survivors start the next.
struct member_died {
  int old_rank;
};

/// The attempt's outcome as agreed in the store: proposes `mine` ("ok" or "died <rank>")
/// under `key`; the first proposal, whoever made it, holds. Returns when that was "ok";
/// throws `member_died` when it was a death.
inline void agree_outcome(bootstrap::any_store& store, const std::string& key,
                          const std::string& mine) {
  const std::string won =
      bootstrap::as_string(store.compare_set(key, {}, bootstrap::to_bytes(mine)));
  if (won == "ok") return;
  int r = -1;
  if (won.starts_with("died ")) std::from_chars(won.data() + 5, won.data() + won.size(), r);
  if (r < 0) {
    throw error(errc::transport, "chorus::communicator::shrink: the outcome under '" + key +
                                     "' is '" + won +
                                     "': another program wrote that key in the store");
  }
  throw member_died{r};
}

/// A blob exchange among the decided `members` (old ranks) through `store` under
/// `prefix/<round>/<new rank>`, reading each member's blob while watching its process
/// through the old transport: a member that exits before its blob appears ends the attempt
/// for every member (`agree_outcome` under `outcome`) instead of holding everyone until
/// the deadline.
template <class Transport>
blob_exchange watched_exchange(bootstrap::any_store store, std::string prefix, std::string outcome,
                               std::vector<int> members, int new_rank, const Transport& old,
                               deadline until) {
  auto round = std::make_shared<int>(0);
  return [store, prefix = std::move(prefix), outcome = std::move(outcome),
          members = std::move(members), new_rank, &old, until,
          round](const std::string& mine) mutable {
    const std::string base = prefix + "/" + std::to_string((*round)++) + "/";
    store.set(base + std::to_string(new_rank), bootstrap::to_bytes(mine));
    std::vector<std::string> out(members.size());
    out[static_cast<std::size_t>(new_rank)] = mine;
    for (std::size_t i = 0; i < members.size(); ++i) {
      if (static_cast<int>(i) == new_rank) continue;
      const std::vector<std::string> key{base + std::to_string(i)};
      backoff wait;            // 1 ms up to 20 ms
      bool agreed_ok = false;  // "ok" won: the blob exists, only not seen yet
      while (!store.check(key)) {
        if (!agreed_ok && old.peer_gone(members[i])) {
          agree_outcome(store, outcome, "died " + std::to_string(members[i]));
          agreed_ok = true;
        }
        if (until.expired()) {
          throw error(errc::timeout,
                      "chorus::communicator::shrink: old rank " + std::to_string(members[i]) +
                          " was agreed to be in the new group but did not take part in building "
                          "it before the deadline (key '" +
                          key[0] + "')");
        }
        wait.pause(until);
      }
      out[i] = bootstrap::as_string(store.get(key[0], until));
    }
    return out;
  };
}

/// Builds this rank's part of a new group of `members` (old ranks; -1 for a rank that has
/// none, which is not watched) under `base` -- `base/group` for the new group's own keys,
/// `base/build` for the exchange -- watching the members through `watched`, and agrees on
/// the outcome under `base/outcome`. Throws `member_died` when a member died meanwhile.
template <class Transport, class Watched>
Transport rebuild(bootstrap::any_store& store, const std::string& base, const std::string& job,
                  const std::vector<int>& members, int new_rank, const Watched& watched,
                  deadline until) {
  const std::string outcome = base + "/outcome";
  Transport made = Transport::rebuilt(
      recovery_point{store, base + "/group", job}, new_rank, static_cast<int>(members.size()),
      watched_exchange(store, base + "/build", outcome, members, new_rank, watched, until));
  agree_outcome(store, outcome, "ok");  // or drop `made`: a member died
  return made;
}

}  // namespace detail::shrink

template <any_transport Transport>
shrink_result<Transport> communicator<Transport>::shrink(const shrink_options& options) {
  static_assert(shrinkable_transport<Transport>,
                "chorus: communicator::shrink needs a transport that can be rebuilt over the "
                "ranks still alive (inproc, shm and UCX can; see docs/fault-tolerance.md)");
  const auto start = clock::now();
  const std::string who = "chorus::communicator::shrink: rank " + std::to_string(rank()) + ": ";
  const recovery_point* at = transport_.recovery();
  if (at == nullptr) {
    throw error(errc::invalid_argument,
                who +
                    "this communicator cannot shrink: its transport was made without the "
                    "job's store (from a bare blob_exchange) or it is a group made by split or "
                    "subgroup. Make the job's communicator from a bootstrap::world "
                    "(bootstrap::from_env()), shrink that, and split the result again");
  }
  // Requests in flight end first: failed and cancelled on a poisoned communicator, finished
  // on a healthy one.
  if (engine_) {
    if (poisoned()) {
      engine_->shut_down();
    } else {
      drain_requests();
    }
  }
  const duration timeout = options.timeout.value_or(options_.timeout);
  bootstrap::any_store store = at->store;
  const int call = ++extension<detail::shrink::calls>().count;
  const int old_size = size();
  const int me = rank();
  std::vector<bool> candidate(static_cast<std::size_t>(old_size), true);
  auto notify = [&](shrink_stage stage, int attempt) {
    if (options.observer) options.observer(stage, attempt);
  };

  for (int attempt = 1;; ++attempt) {
    const std::string base =
        at->prefix + "/shrink/" + std::to_string(call) + "/" + std::to_string(attempt);
    const std::string decision_key = base + "/decision";
    const std::vector<std::string> decision_keys{decision_key};
    const deadline until = deadline::after(timeout);  // for the others to join

    // 1. Join.
    store.set(base + "/join/" + std::to_string(me), bootstrap::to_bytes(std::to_string(me)));
    notify(shrink_stage::joined, attempt);

    // 2. Wait for every candidate to join or to be known dead, or for a decision.
    std::vector<int> proposal;
    {
      backoff wait;  // 1 ms up to 20 ms
      for (;;) {
        if (store.check(decision_keys)) break;
        proposal.clear();
        bool pending = false;
        for (int r = 0; r < old_size; ++r) {
          if (!candidate[static_cast<std::size_t>(r)]) continue;
          if (r == me) {
            proposal.push_back(r);
            continue;
          }
          if (transport_.peer_gone(r)) continue;
          if (store.check(std::vector<std::string>{base + "/join/" + std::to_string(r)})) {
            proposal.push_back(r);
          } else {
            pending = true;
          }
        }
        if (!pending || until.expired()) break;
        wait.pause(until);
      }
    }

    // 3. Decide: the first proposal in the store wins, everywhere.
    const std::string decided = bootstrap::as_string(
        store.compare_set(decision_key, {}, bootstrap::to_bytes(detail::shrink::encode(proposal))));
    std::vector<int> members = detail::shrink::decode(decided, old_size, decision_key);
    const auto mine = std::find(members.begin(), members.end(), me);
    if (mine == members.end()) {
      throw error(errc::timeout,
                  who + "left out of the shrunk group: the other survivors decided on ranks " +
                      decided + " without this rank (it called shrink after their deadline of " +
                      std::to_string(std::chrono::duration<double>(timeout).count()) +
                      " s, or was taken for dead). This rank must leave the job");
    }
    const int new_rank = static_cast<int>(mine - members.begin());
    notify(shrink_stage::decided, attempt);
    const deadline build_until = deadline::after(timeout);  // for the members to build

    // 4. Rebuild over the members, watching them; a member that dies now means another
    // attempt without it.
    try {
      Transport made = detail::shrink::rebuild<Transport>(store, base, at->job, members, new_rank,
                                                          transport_, build_until);
      notify(shrink_stage::rebuilt, attempt);
      std::vector<int> lost;
      for (int r = 0; r < old_size; ++r) {
        if (std::find(members.begin(), members.end(), r) == members.end()) lost.push_back(r);
      }
      return shrink_result<Transport>{communicator<Transport>(std::move(made), options_),
                                      std::move(members), std::move(lost), attempt,
                                      clock::now() - start};
    } catch (const detail::shrink::member_died&) {
      // The next attempt's candidates: this one's members (those left out stay out). The
      // dead one is among them, known dead now: each attempt leaves out at least one more
      // rank, so there are at most as many attempts as ranks.
      std::fill(candidate.begin(), candidate.end(), false);
      for (int r : members) candidate[static_cast<std::size_t>(r)] = true;
    }
  }
}

}  // namespace chorus::inline v0

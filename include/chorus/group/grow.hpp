#pragma once
/// \file
/// Growing a group back after a shrink (torch elastic's other half): a replacement process
/// knocks at the job's door in the store, and the members admit it at a step boundary; all
/// of them then build a new communicator, the members keeping their ranks and each joiner
/// taking the next one.
///
///     // a member, between steps
///     if (auto grown = chorus::grow(comm, {.wait_for = 1})) { ... grown->comm ... }
///
///     // the replacement process (e.g. started by `chorusrun --replace`)
///     auto world = chorus::bootstrap::from_env();
///     auto grown = chorus::join<chorus::shm_transport>(world);
///
/// **Collective.** Every member of `comm` calls `grow` the same number of times; the call
/// admits the joiners knocking when the first member decides (waiting for `wait_for` of
/// them up to the deadline), and every member gets the same answer: `std::nullopt` when
/// nobody was admitted, else the new communicator. The old communicator is left as it was
/// and stays usable.
///
/// **Failures.** A joiner that dies before the new group is built makes every member's
/// `grow` fail with `timeout` at the deadline (the old communicator is still healthy); a
/// member that dies during it makes `grow` fail with `peer_lost` (shrink next). A joiner that
/// is not admitted before its deadline fails with `timeout`.
///
/// One door per job: the members of one group at a time admit joiners (docs/fault-tolerance.md).
#include <chorus/bootstrap/from_env.hpp>
#include <chorus/bootstrap/store.hpp>
#include <chorus/communicator.hpp>
#include <chorus/core/deadline.hpp>
#include <chorus/core/error.hpp>
#include <chorus/group/shrink.hpp>
#include <chorus/transport/contract.hpp>

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace chorus::inline v0 {

struct grow_options {
  /// How many joiners to wait for (0: admit those knocking now, if any, without waiting).
  int wait_for = 0;
  /// The most one call admits.
  int max_joiners = std::numeric_limits<int>::max();
  /// How long to wait for `wait_for` joiners, and then for every rank to build the new
  /// group; by default the communicator's timeout.
  std::optional<duration> timeout;
};

struct join_options {
  /// How long to wait to be admitted, and then for the group to be built; by default the
  /// world's timeout.
  std::optional<duration> timeout;
  /// The new communicator's options.
  communicator_options comm = communicator_options::from_env();
};

/// What `grow` returns on each member and `join` on each joiner.
template <class Transport>
struct grow_result {
  /// The members in the order of their old ranks, then the joiners in the order they knocked.
  communicator<Transport> comm;
  /// `members[r]`: the old rank of new rank `r`, or -1 for a rank that joined.
  std::vector<int> members;
  /// Always empty: nobody is lost by growing (the field lets `zero::sharded_optimizer::
  /// restore` read a grow's result as it reads a shrink's).
  std::vector<int> lost;
  /// How many ranks joined.
  int joined = 0;
  /// How long it took on this rank (on a joiner: from its knock).
  duration took{};
};

/// Whether this process was started to join a running job (`chorusrun --replace` sets
/// CHORUS_JOIN=1 for the processes it starts in place of failed ranks).
inline bool joining() noexcept {
  const char* v = std::getenv("CHORUS_JOIN");
  return v != nullptr && std::string_view(v) == "1";
}

namespace detail::grow {

inline std::string door(const std::string& job) { return "chorus/" + job + "/door"; }

/// What a joiner is told: where to build, its rank, the new size, how many joined.
struct answer {
  std::string prefix;
  int rank = 0;
  int size = 0;
  int joined = 0;
};

inline std::string encode(const answer& a) {
  return std::to_string(a.rank) + " " + std::to_string(a.size) + " " + std::to_string(a.joined) +
         " " + a.prefix;
}

inline answer decode(const std::string& text, const std::string& key) {
  answer a;
  const char* p = text.data();
  const char* end = p + text.size();
  for (int* field : {&a.rank, &a.size, &a.joined}) {
    const auto [next, ec] = std::from_chars(p, end, *field);
    if (ec != std::errc{} || next == end || *next != ' ') {
      throw error(errc::transport, "chorus::join: the answer under '" + key + "' ('" + text +
                                       "') is not one chorus wrote: another program wrote "
                                       "that key in the store");
    }
    p = next + 1;
  }
  a.prefix.assign(p, end);
  return a;
}

/// A transport stand-in for a joiner's exchange: it has no old group whose ranks it could
/// watch.
struct nobody_watched {
  [[nodiscard]] bool peer_gone(int) const noexcept { return false; }
};

/// How many times `grow` was called on one communicator (names the call in the keys).
struct calls {
  int count = 0;
};

/// The grown group's `members`: old ranks 0..size-joined-1 keep their ranks, then -1 for
/// each joiner.
inline std::vector<int> grown_members(int size, int joined) {
  std::vector<int> members(static_cast<std::size_t>(size), -1);
  for (int r = 0; r < size - joined; ++r) members[static_cast<std::size_t>(r)] = r;
  return members;
}

/// Builds this rank's part of the grown group (as a shrink rebuilds); a member that died
/// meanwhile is `peer_lost`.
template <class Transport, class Watched>
Transport build(bootstrap::any_store& store, const std::string& base, const std::string& job,
                const std::vector<int>& members, int new_rank, const Watched& watched,
                deadline until, const char* api) {
  try {
    return shrink::rebuild<Transport>(store, base, job, members, new_rank, watched, until);
  } catch (const shrink::member_died& d) {
    throw error(errc::peer_lost, std::string(api) + ": old rank " + std::to_string(d.old_rank) +
                                     " died while the grown group was built; the members "
                                     "must shrink their communicator");
  }
}

}  // namespace detail::grow

/// Admits the joiners knocking at the job's door (see the file comment). Collective over
/// `comm`'s members; returns `std::nullopt` on every member when nobody was admitted.
template <any_transport Transport>
std::optional<grow_result<Transport>> grow(communicator<Transport>& comm,
                                           const grow_options& options = {}) {
  static_assert(shrinkable_transport<Transport>,
                "chorus::grow needs a transport that can be rebuilt through the job's store "
                "(shm and UCX can; see docs/fault-tolerance.md)");
  const auto start = clock::now();
  const std::string who = "chorus::grow: rank " + std::to_string(comm.rank()) + ": ";
  const recovery_point* at = comm.transport().recovery();
  if (at == nullptr) {
    throw error(errc::invalid_argument,
                who +
                    "this communicator cannot grow: its transport was made without the job's "
                    "store, or it is a group made by split or subgroup. Grow the job's "
                    "communicator (made from bootstrap::from_env()) and split the result");
  }
  if (options.wait_for < 0 || options.max_joiners < 1 || options.wait_for > options.max_joiners) {
    throw error(errc::invalid_argument,
                who + "wait_for must be 0..max_joiners and max_joiners at least 1");
  }
  comm.throw_if_poisoned();
  comm.drain_requests();
  bootstrap::any_store store = at->store;
  const std::string door = detail::grow::door(at->job);
  const duration timeout = options.timeout.value_or(comm.options().timeout);
  const int call = ++comm.template extension<detail::grow::calls>().count;
  const std::string base = at->prefix + "/grow/" + std::to_string(call);
  const std::string decision_key = base + "/decision";
  const deadline until = deadline::after(timeout);
  // Knocks admitted by earlier calls (of this group or the groups before it).
  const std::string admitted_key = door + "/admitted";
  const std::int64_t admitted =
      store.check(std::vector<std::string>{admitted_key})
          ? std::strtoll(bootstrap::as_string(store.get(admitted_key, until)).c_str(), nullptr, 10)
          : 0;

  // 1. Wait for `wait_for` knocks beyond those, or for a decision.
  const std::int64_t first = admitted + 1;
  std::int64_t knocks = 0;
  {
    backoff wait;
    for (;;) {
      if (store.check(std::vector<std::string>{decision_key})) break;
      knocks = store.add(door + "/knocks", 0);
      if (knocks - first + 1 >= options.wait_for || until.expired()) break;
      wait.pause(until);
    }
  }
  // 2. Decide: the first proposal holds everywhere ("first last", or "none").
  const std::int64_t last = std::min<std::int64_t>(knocks, first + options.max_joiners - 1);
  const std::string proposal =
      last >= first ? std::to_string(first) + " " + std::to_string(last) : "none";
  const std::string decided =
      bootstrap::as_string(store.compare_set(decision_key, {}, bootstrap::to_bytes(proposal)));
  if (decided == "none") return std::nullopt;
  long long lo = 0, hi = 0;
  if (std::sscanf(decided.c_str(), "%lld %lld", &lo, &hi) != 2 || lo < 1 || hi < lo) {
    throw error(errc::transport, who + "the decision under '" + decision_key + "' ('" + decided +
                                     "') is not one chorus wrote");
  }
  const int m = comm.size();
  const int joined = static_cast<int>(hi - lo + 1);
  // The door's count of admitted knocks moves on once (every member proposes the same).
  store.compare_set(admitted_key,
                    lo == 1 ? bootstrap::bytes{} : bootstrap::to_bytes(std::to_string(lo - 1)),
                    bootstrap::to_bytes(std::to_string(hi)));
  for (long long t = lo; t <= hi; ++t) {
    const detail::grow::answer a{base, m + static_cast<int>(t - lo), m + joined, joined};
    store.compare_set(door + "/answer/" + std::to_string(t), {},
                      bootstrap::to_bytes(detail::grow::encode(a)));
  }

  // 3. Build the grown group, watching the members.
  std::vector<int> members = detail::grow::grown_members(m + joined, joined);
  Transport made =
      detail::grow::build<Transport>(store, base, at->job, members, comm.rank(), comm.transport(),
                                     deadline::after(timeout), "chorus::grow");
  return grow_result<Transport>{communicator<Transport>(std::move(made), comm.options()),
                                std::move(members),
                                {},
                                joined,
                                clock::now() - start};
}

/// Joins the running job of `world` (see the file comment): knocks at its door, waits to be
/// admitted by a `grow` of its members, and builds the grown group with them.
template <any_transport Transport>
grow_result<Transport> join(const bootstrap::world& world, const join_options& options = {}) {
  static_assert(shrinkable_transport<Transport>,
                "chorus::join needs a transport that can be rebuilt through the job's store "
                "(shm and UCX can; see docs/fault-tolerance.md)");
  const auto start = clock::now();
  if (!world.store) {
    throw error(errc::invalid_argument,
                "chorus::join: the world has no store to knock at (start the process with the "
                "job's store: chorusrun --replace, or CHORUS_STORE and CHORUS_JOB_ID)");
  }
  bootstrap::any_store store = world.store;
  const std::string door = detail::grow::door(world.job_id);
  const duration timeout = options.timeout.value_or(world.timeout);
  const std::int64_t ticket = store.add(door + "/knocks", 1);
  const std::string key = door + "/answer/" + std::to_string(ticket);
  bootstrap::bytes text;
  try {
    text = store.get(key, deadline::after(timeout));
  } catch (const error& e) {
    if (e.value() != errc::timeout) throw;
    throw error(
        errc::timeout,
        "chorus::join: knock " + std::to_string(ticket) + " at job '" + world.job_id +
            "' was not admitted within " +
            std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(timeout).count()) +
            " ms: the members call chorus::grow between steps; is the job running?");
  }
  const detail::grow::answer a = detail::grow::decode(bootstrap::as_string(text), key);
  std::vector<int> members = detail::grow::grown_members(a.size, a.joined);
  Transport made = detail::grow::build<Transport>(store, a.prefix, world.job_id, members, a.rank,
                                                  detail::grow::nobody_watched{},
                                                  deadline::after(timeout), "chorus::join");
  return grow_result<Transport>{communicator<Transport>(std::move(made), options.comm),
                                std::move(members),
                                {},
                                a.joined,
                                clock::now() - start};
}

}  // namespace chorus::inline v0

#pragma once
/// \file
/// Hierarchical schedules: ranks spread over several hosts (`params::hosts`) talk first
/// within each host, then across hosts, so that the slow links between hosts carry as
/// little as the collective allows.
///
/// Every phase is an existing generator's schedule of a sub-problem among a subgroup of
/// ranks (a ring, or a direct gather / scatter), built for (rank = index in the subgroup,
/// size = subgroup size, the sub-problem's counts, `chunk_count`) and moved into the real
/// call: each peer becomes the subgroup member's global rank, each region moves to where
/// the sub-problem's buffer lives (the real input, output or scratch, at an offset), and
/// the phase's steps follow the previous phase's. A sub-problem's buffers are always placed
/// either apart or exactly as its collective's in-place form aliases them, so every phase
/// is correct because its generator is correct in both aliasing modes. Tags stay 0: pairs
/// within a host and pairs across hosts are disjoint, phases follow each other on every
/// rank, and each phase lists a pair's messages in the same order on both sides.
///
/// Words: the members of a host are its ranks in increasing rank order; local(r) is r's
/// index among them; H is the number of hosts. The layout is uniform when every host has
/// the same number L of members; then inter group l is [member l of host 0, member l of
/// host 1, ...].
///
/// Uniform layout (H > 1, L > 1):
///  - all_reduce: ring reduce_scatter within the host of the vector cut into L even blocks
///    (block local(r) lands in the output), ring all_reduce of that block across hosts
///    among inter group local(r), in place, then ring all_gather within the host, in
///    place. Each rank sends 2(H-1)/H of its block, 2(H-1)/(H L) of the vector, off its host.
///    On two hosts the middle phase is `two_host_exchange` (no two-way pairs), and a vector
///    of at least 4HL elements goes as two halves pipelined by one phase
///    (`uniform_all_reduce`).
///  - reduce_scatter: copies pack the input into scratch as L parts, part l holding the
///    blocks of inter group l's members in host order; ring reduce_scatter of the parts
///    within the host (in place in scratch); ring reduce_scatter of part local(r) across
///    hosts among inter group local(r) into the output.
///  - all_gather: ring all_gather across hosts among inter group local(r) into part
///    local(r) of a packed scratch vector (the mirror of reduce_scatter's); ring all_gather
///    of the parts within the host, in place; copies unpack it into the output.
///  - broadcast: ring broadcast across hosts among inter group local(root), from the root;
///    then ring broadcast within each host from its member local(root), in place.
///  - reduce: ring reduce within each host to its member local(root) (into scratch; into
///    the output on the root itself); then ring reduce across hosts among inter group
///    local(root) to the root.
///
/// Other layouts (hosts of different sizes) use one representative per host, rep(h): the
/// root on the root's host in rooted collectives, else member 0.
///  - all_reduce: ring reduce within the host to rep (in its output), ring all_reduce among
///    the reps in place, ring broadcast within the host from rep in place.
///  - broadcast: ring broadcast among the reps from the root, then within each host from
///    rep. reduce: ring reduce within each host to rep (into scratch but on the root), then
///    ring reduce among the reps to the root.
///  - reduce_scatter: copies pack the input into scratch host by host (the blocks of host
///    0's members, then host 1's, ...); ring reduce of the packed vector to member 0 of
///    each host (in place in scratch); ring reduce_scatter among the reps, part h = host h's
///    blocks (in place in scratch); direct scatter of its part from member 0 within each
///    host into the output.
///  - all_gather: direct gather of the host's blocks to member 0 into its part of the
///    packed scratch vector (host by host); ring all_gather of the parts among the reps, in
///    place; ring broadcast of the whole packed vector within each host from member 0, in
///    place; copies unpack it into the output.
///
/// One host (hosts empty, or all equal), or one rank on every host: the phases degenerate
/// into a single ring over all ranks, which is what this family then returns.
#include <chorus/schedule/direct.hpp>
#include <chorus/schedule/layout.hpp>
#include <chorus/schedule/ring.hpp>
#include <chorus/schedule/schedule.hpp>

#include <algorithm>
#include <array>
#include <cstddef>
#include <span>
#include <stdexcept>
#include <vector>

namespace chorus::inline v0::schedule::detail {

/// Which rank sits on which host: the hosts in order of first appearance, each with its
/// members in increasing rank order.
struct host_layout {
  std::vector<std::vector<int>> members;  ///< by host
  std::vector<int> host;                  ///< by rank
  std::vector<int> local;                 ///< by rank: index among its host's members

  explicit host_layout(const params& p) : host(idx(p.size), 0), local(idx(p.size), 0) {
    std::vector<int> seen;  // the host values met so far, in order of first appearance
    for (int r = 0; r < p.size; ++r) {
      const int value = p.hosts.empty() ? 0 : p.hosts[idx(r)];
      const auto at = std::find(seen.begin(), seen.end(), value);
      const int h = static_cast<int>(at - seen.begin());
      if (at == seen.end()) {
        seen.push_back(value);
        members.emplace_back();
      }
      host[idx(r)] = h;
      local[idx(r)] = static_cast<int>(members[idx(h)].size());
      members[idx(h)].push_back(r);
    }
  }
  [[nodiscard]] int hosts() const noexcept { return static_cast<int>(members.size()); }
  [[nodiscard]] bool uniform() const noexcept {
    return std::all_of(members.begin(), members.end(),
                       [&](const std::vector<int>& m) { return m.size() == members[0].size(); });
  }
  /// The largest number of ranks on one host.
  [[nodiscard]] std::size_t widest() const noexcept {
    std::size_t w = 0;
    for (const std::vector<int>& m : members) w = std::max(w, m.size());
    return w;
  }
  /// Inter group l: [member l of host 0, member l of host 1, ...] (uniform layouts).
  [[nodiscard]] std::vector<int> inter_group(int l) const {
    std::vector<int> g;
    for (const std::vector<int>& m : members) g.push_back(m[idx(l)]);
    return g;
  }
  /// Every inter group, l = 0, 1, ... (uniform layouts).
  [[nodiscard]] std::vector<std::vector<int>> inter_groups() const {
    std::vector<std::vector<int>> gs;
    for (std::size_t l = 0; l < members[0].size(); ++l)
      gs.push_back(inter_group(static_cast<int>(l)));
    return gs;
  }
};

/// Where a sub-problem's three buffers (input, output, scratch) start in the real call.
struct placement {
  std::array<region, 3> base;  ///< by `buffer`; only `buf` and `offset` are used
};

/// Where a sub-problem's buffer starts: `offset` elements into `b`.
inline constexpr region start(buffer b, std::size_t offset) noexcept { return {b, offset, 0}; }

/// Appends to `s` the schedule `sub` of a sub-problem among the ranks `group` (peer j of
/// `sub` is rank group[j]), each region moved to where its buffer lives (`where`), after
/// the steps `s` has. A copy whose source and destination become the same region is
/// dropped: it would copy an element onto itself.
inline void append(schedule& s, const schedule& sub, std::span<const int> group,
                   const placement& where) {
  auto move = [&](region g) {
    const region& b = where.base[static_cast<std::size_t>(g.buf)];
    return region{b.buf, b.offset + g.offset, g.count};
  };
  for (std::size_t k = 0; k < sub.steps(); ++k) {
    for (const op& o : sub.step(k)) {
      op moved = o;
      if (o.code == op_code::copy) {
        moved.src = move(o.src);
        moved.dst = move(o.dst);
        if (moved.src == moved.dst) continue;
      } else {
        moved.peer = group[idx(o.peer)];
        if (o.code != op_code::recv) moved.src = move(o.src);
        if (o.code != op_code::send) moved.dst = move(o.dst);
      }
      s.add(moved);
    }
    s.end_step();
  }
  if (sub.scratch_count != 0) {
    const region& b = where.base[static_cast<std::size_t>(buffer::scratch)];
    s.scratch_count = std::max(s.scratch_count, b.offset + sub.scratch_count);
  }
}

/// One phase: the sub-problem `sub` (kind, root, count or counts, chunk_count) among
/// `group`, run by rank `p.rank` if it is a member, with its buffers at `where`.
/// `generator` is `build_ring` or `build_direct`.
template <class Generator>
void phase(schedule& s, const params& p, params sub, std::span<const int> group,
           const placement& where, Generator generator) {
  const auto me = std::find(group.begin(), group.end(), p.rank);
  if (me == group.end()) return;
  sub.rank = static_cast<int>(me - group.begin());
  sub.size = static_cast<int>(group.size());
  sub.chunk_count = p.chunk_count;
  append(s, generator(sub), group, where);
}

/// A sub-problem of collective `kind` over `count` elements (`root`: index in the group).
inline params sub_problem(collective kind, std::size_t count, int root = 0) {
  params q;
  q.kind = kind;
  q.count = count;
  q.root = root;
  return q;
}

/// A sub-problem of collective `kind` with one block count per member.
inline params sub_problem(collective kind, std::span<const std::size_t> counts, int root = 0) {
  params q;
  q.kind = kind;
  q.counts = counts;
  q.root = root;
  return q;
}

inline placement place(region input, region output, region scratch) {
  return {{input, output, scratch}};
}

/// A packed copy of the blocks of every rank: block j (counts[j] elements at offset
/// off[j] of the collective's layout) at `packed[j]` in scratch, part by part.
struct packing {
  std::vector<std::size_t> packed;      ///< by rank: offset in scratch
  std::vector<std::size_t> part_size;   ///< by part
  std::vector<std::size_t> part_begin;  ///< by part, plus the total at the end
  /// `parts[k]` lists the ranks of part k in the order their blocks are packed.
  packing(std::span<const std::size_t> counts, const std::vector<std::vector<int>>& parts)
      : packed(counts.size(), 0), part_begin(1, 0) {
    std::size_t at = 0;
    for (const std::vector<int>& part : parts) {
      std::size_t size = 0;
      for (int j : part) {
        packed[idx(j)] = at + size;
        size += counts[idx(j)];
      }
      part_size.push_back(size);
      at += size;
      part_begin.push_back(at);
    }
  }
  [[nodiscard]] std::size_t total() const noexcept { return part_begin.back(); }
};

/// One step of copies between the blocks in the collective's layout (`buf`) and their
/// packed places in scratch: into scratch (`into_scratch`) or back out of it.
inline void repack(schedule& s, const packing& pk, std::span<const std::size_t> counts, buffer buf,
                   bool into_scratch) {
  const std::vector<std::size_t> off = prefix_offsets(counts);
  for (std::size_t j = 0; j < counts.size(); ++j) {
    if (counts[j] == 0) continue;
    const region laid{buf, off[j], counts[j]}, packed = scr(pk.packed[j], counts[j]);
    s.add({op_code::copy, -1, 0, into_scratch ? laid : packed, into_scratch ? packed : laid});
  }
  s.end_step();
  s.scratch_count = std::max(s.scratch_count, pk.total());
}

/// The counts of the ranks `group`, in group order.
inline std::vector<std::size_t> counts_of(std::span<const std::size_t> counts,
                                          std::span<const int> group) {
  std::vector<std::size_t> c;
  for (int j : group) c.push_back(counts[idx(j)]);
  return c;
}

/// Adds `code` ops moving `[offset, offset + n)` of the output to or from `peer`, piece by
/// piece (`chunk` elements; 0: whole), in the same order on both sides of the message.
inline void pieces(schedule& s, op_code code, int peer, std::size_t offset, std::size_t n,
                   std::size_t chunk) {
  const piece_split ps{n, chunk};
  for (std::size_t k = 0; k < ps.count(); ++k) {
    const region piece = out(offset + ps.offset(k), ps.size(k));
    op o{code, peer, 0, {}, {}};
    if (code != op_code::recv) o.src = piece;
    if (code != op_code::send) o.dst = piece;
    s.add(o);
  }
}

/// The cross-host part of the uniform all_reduce on exactly two hosts (A, B) of L >= 2
/// ranks, once member l of each host holds its host's partial sum of block l (blocks at
/// `base + off[l]` of the output). A ring between two ranks is an exchange: each pair's
/// connection would carry data both ways at once, and over TCP (UCX tcp) the rendezvous
/// handshakes of one direction then queue behind the other direction's data, which halved
/// the rate on a shaped link (docs/performance.md). Here no rank sends to a rank of the
/// other host that it receives from in the same step: B's owners are rotated by one. With
/// halves .0 and .1 of block l, next = l + 1, prev = l - 1 (mod L):
///  1. A_l sends l.1 to B_next and adds B_l's l.0 into its own; B_l sends l.0 to A_l and
///     receives A_prev's prev.1.
///  2. B_l sends its partial l.1 to B_next (within B) and adds B_prev's partial prev.1
///     into what step 1 brought: A_l owns the sum of l.0, B_next the sum of l.1.
///  3. A_l sends l.0 to B_l and receives l.1 from B_next; B_l sends prev.1 to A_prev and
///     B_prev, and receives l.0 from A_l and l.1 from B_next: every member l holds block l.
/// Each host sends the whole vector across once (S, as the two-rank rings would). A's
/// steps are slots 0 and 2 of the three (`exchange_slots`).
inline void two_host_exchange(schedule& s, const params& p, const host_layout& hl, std::size_t base,
                              std::span<const std::size_t> blocks,
                              std::span<const std::size_t> off) {
  const int r = p.rank, l = hl.local[idx(r)];
  const int L = static_cast<int>(hl.members[0].size());
  const int next = (l + 1) % L, prev = (l + L - 1) % L;
  auto a = [&](int j) { return hl.members[0][idx(j)]; };
  auto b = [&](int j) { return hl.members[1][idx(j)]; };
  auto half = [&](int j, int which) {  // (offset, count) of half `which` of block j
    const even_split h{blocks[idx(j)], 2};
    return std::pair{base + off[idx(j)] + h.offset(idx(which)), h.size(idx(which))};
  };
  const std::size_t chunk = p.chunk_count;
  const auto [o0, n0] = half(l, 0);
  const auto [o1, n1] = half(l, 1);
  if (hl.host[idx(r)] == 0) {
    pieces(s, op_code::recv_reduce, b(l), o0, n0, chunk);
    pieces(s, op_code::send, b(next), o1, n1, chunk);
    s.end_step();
    pieces(s, op_code::recv, b(next), o1, n1, chunk);
    pieces(s, op_code::send, b(l), o0, n0, chunk);
    s.end_step();
  } else {
    const auto [p1, m1] = half(prev, 1);
    pieces(s, op_code::recv, a(prev), p1, m1, chunk);
    pieces(s, op_code::send, a(l), o0, n0, chunk);
    s.end_step();
    pieces(s, op_code::recv_reduce, b(prev), p1, m1, chunk);
    pieces(s, op_code::send, b(next), o1, n1, chunk);
    s.end_step();
    pieces(s, op_code::recv, a(l), o0, n0, chunk);
    pieces(s, op_code::recv, b(next), o1, n1, chunk);
    pieces(s, op_code::send, a(prev), p1, m1, chunk);
    pieces(s, op_code::send, b(prev), p1, m1, chunk);
    s.end_step();
  }
}

/// The uniform all_reduce of `[base, base + n)` of the vector: reduce_scatter within the
/// host, all_reduce across (`two_host_exchange` on two hosts), all_gather within; scratch
/// from `scratch_base` on. Appended to `s`.
inline void uniform_all_reduce_part(schedule& s, const params& p, const host_layout& hl,
                                    std::size_t base, std::size_t n, std::size_t scratch_base) {
  using enum collective;
  const int r = p.rank, l = hl.local[idx(r)];
  const std::vector<int>& mine = hl.members[idx(hl.host[idx(r)])];
  const std::vector<std::size_t> blocks = even_split{n, mine.size()}.sizes();
  const std::vector<std::size_t> off = prefix_offsets(blocks);
  const region block = start(buffer::output, base + off[idx(l)]);
  const region scratch = start(buffer::scratch, scratch_base);
  phase(s, p, sub_problem(reduce_scatter, blocks), mine,
        place(start(buffer::input, base), block, scratch), build_ring);
  if (hl.hosts() == 2 && mine.size() >= 2) {
    two_host_exchange(s, p, hl, base, blocks, off);
  } else {
    phase(s, p, sub_problem(all_reduce, blocks[idx(l)]), hl.inter_group(l),
          place(block, block, scratch), build_ring);
  }
  phase(s, p, sub_problem(all_gather, blocks), mine,
        place(block, start(buffer::output, base), scratch), build_ring);
}

/// The steps a rank's part of `uniform_all_reduce_part` takes in the global step order
/// (slots) when none of its transfers is empty: L - 1 for the reduce_scatter, the cross
/// phase's (3 on two hosts, where host 0 skips slot 1; else 2(H-1)), L - 1 for the
/// all_gather. Empty when the part's step count shows an empty transfer was skipped.
inline std::vector<std::size_t> part_slots(const params& p, const host_layout& hl,
                                           std::size_t steps) {
  const std::size_t L = hl.members[0].size(), H = idx(hl.hosts());
  const bool two = H == 2 && L >= 2;
  const bool skips = two && hl.host[idx(p.rank)] == 0;
  const std::size_t cross = two ? 3 : 2 * (H - 1);
  if (steps != 2 * (L - 1) + cross - (skips ? 1 : 0)) return {};
  std::vector<std::size_t> slot;
  for (std::size_t k = 0; k < 2 * (L - 1) + cross; ++k) {
    if (!(skips && k == L)) slot.push_back(k);  // host 0's idle middle exchange step
  }
  return slot;
}

/// Uniform all_reduce. A large vector goes as two halves in a pipeline: the second half's
/// reduce_scatter within the host runs in the same steps as the first half's cross-host
/// phase, and the first half's all_gather with the second half's cross-host phase, so the
/// links between hosts are busy while the hosts reduce (the hosts' work showed as ~20 % of
/// the time on two shaped 1 Gbit/s links, docs/performance.md). Both halves' steps are
/// placed by global slot, so every message is sent and received in the same step and
/// each pair lists its messages in the same order on both sides (the first half's first).
inline schedule uniform_all_reduce(const params& p, const host_layout& hl) {
  const std::size_t L = hl.members[0].size();
  schedule whole;
  const std::size_t half = p.count / 2;
  // Every block, and every half block of the two-host exchange, of both halves non-empty.
  if (L >= 2 && half >= 2 * L * idx(hl.hosts())) {
    schedule first, second;
    uniform_all_reduce_part(first, p, hl, 0, half, 0);
    uniform_all_reduce_part(second, p, hl, half, p.count - half, first.scratch_count);
    const std::vector<std::size_t> s1 = part_slots(p, hl, first.steps()),
                                   s2 = part_slots(p, hl, second.steps());
    if (!s1.empty() && !s2.empty()) {
      // The second half starts as the first crosses hosts. On two hosts, the cross steps
      // of a part are its exchange's first and third: a shift of 2 would put one part's
      // A -> B step beside the other's B -> A step, the two-way traffic the exchange
      // avoids; L = 3 shifts by 1 instead.
      const std::size_t shift = hl.hosts() == 2 && L == 3 ? 1 : L - 1;
      const std::size_t slots = s2.back() + shift + 1;
      std::vector<std::vector<op>> merged(slots);
      for (std::size_t k = 0; k < first.steps(); ++k) {
        for (const op& o : first.step(k)) merged[s1[k]].push_back(o);
      }
      for (std::size_t k = 0; k < second.steps(); ++k) {
        for (const op& o : second.step(k)) merged[s2[k] + shift].push_back(o);
      }
      for (const std::vector<op>& step : merged) {
        for (const op& o : step) whole.add(o);
        whole.end_step();
      }
      whole.scratch_count = std::max(first.scratch_count, second.scratch_count);
      return whole;
    }
  }
  uniform_all_reduce_part(whole, p, hl, 0, p.count, 0);
  return whole;
}

/// What the packed reduce_scatter and all_gather share: the blocks packed part by part in
/// scratch (`packed`; `parts[k]` lists the ranks of part k), this rank's part of it
/// (`part`, part `index`), and the sub-problems' scratch after it (`staging`).
struct packed_parts {
  const std::vector<int>& mine;  ///< this rank's host's members
  packing pk;
  region packed, part, staging;
  packed_parts(const params& p, const host_layout& hl, const std::vector<std::vector<int>>& parts,
               int index)
      : mine(hl.members[idx(hl.host[idx(p.rank)])]),
        pk(p.counts, parts),
        packed(start(buffer::scratch, 0)),
        part(start(buffer::scratch, pk.part_begin[idx(index)])),
        staging(start(buffer::scratch, pk.total())) {}
};

/// Uniform reduce_scatter: pack by inter group, reduce_scatter the parts within the host,
/// then reduce_scatter the own part across hosts.
inline schedule uniform_reduce_scatter(const params& p, const host_layout& hl) {
  schedule s;
  const int l = hl.local[idx(p.rank)];
  const std::vector<std::vector<int>> groups = hl.inter_groups();
  const packed_parts pp(p, hl, groups, l);
  repack(s, pp.pk, p.counts, buffer::input, true);
  phase(s, p, sub_problem(collective::reduce_scatter, pp.pk.part_size), pp.mine,
        place(start(buffer::scratch, 0), pp.part, pp.staging), build_ring);
  const std::vector<std::size_t> across = counts_of(p.counts, groups[idx(l)]);
  phase(s, p, sub_problem(collective::reduce_scatter, across), groups[idx(l)],
        place(pp.part, start(buffer::output, 0), pp.staging), build_ring);
  return s;
}

/// Uniform all_gather: all_gather across hosts into the own part of a packed vector,
/// all_gather the parts within the host, unpack.
inline schedule uniform_all_gather(const params& p, const host_layout& hl) {
  schedule s;
  const int l = hl.local[idx(p.rank)];
  const std::vector<std::vector<int>> groups = hl.inter_groups();
  const packed_parts pp(p, hl, groups, l);
  const std::vector<std::size_t> across = counts_of(p.counts, groups[idx(l)]);
  phase(s, p, sub_problem(collective::all_gather, across), groups[idx(l)],
        place(start(buffer::input, 0), pp.part, pp.staging), build_ring);
  phase(s, p, sub_problem(collective::all_gather, pp.pk.part_size), pp.mine,
        place(pp.part, start(buffer::scratch, 0), pp.staging), build_ring);
  repack(s, pp.pk, p.counts, buffer::output, false);
  return s;
}

/// Broadcast or reduce through one representative per host, `reps[h]` (the root among
/// them): across the representatives, then within each host (broadcast), or the reverse
/// (reduce).
inline schedule rooted_through(const params& p, const host_layout& hl,
                               const std::vector<int>& reps) {
  schedule s;
  const int r = p.rank, h = hl.host[idx(r)];
  const std::vector<int>& mine = hl.members[idx(h)];
  const int local_rep = hl.local[idx(reps[idx(h)])];
  const int root_host = hl.host[idx(p.root)];
  const region input = start(buffer::input, 0), output = start(buffer::output, 0);
  if (p.kind == collective::broadcast) {
    phase(s, p, sub_problem(collective::broadcast, p.count, root_host), reps,
          place(input, output, start(buffer::scratch, 0)), build_ring);
    phase(s, p, sub_problem(collective::broadcast, p.count, local_rep), mine,
          place(output, output, start(buffer::scratch, 0)), build_ring);
    return s;
  }
  // reduce: a representative other than the root holds its host's sum in scratch; the
  // root's sum is in its output from the start. Non-root outputs are never touched (the
  // generators leave non-root outputs alone).
  const bool holds = r == reps[idx(h)] && r != p.root;
  const region sum = holds ? start(buffer::scratch, 0) : output;
  const region staging = start(buffer::scratch, holds ? p.count : 0);
  phase(s, p, sub_problem(collective::reduce, p.count, local_rep), mine, place(input, sum, staging),
        build_ring);
  phase(s, p, sub_problem(collective::reduce, p.count, root_host), reps, place(sum, sum, staging),
        build_ring);
  if (holds) s.scratch_count = std::max(s.scratch_count, p.count);
  return s;
}

/// Non-uniform all_reduce: reduce to member 0 of each host, all_reduce among them,
/// broadcast back within each host.
inline schedule representative_all_reduce(const params& p, const host_layout& hl,
                                          const std::vector<int>& reps) {
  schedule s;
  using enum collective;
  const std::vector<int>& mine = hl.members[idx(hl.host[idx(p.rank)])];
  const region input = start(buffer::input, 0), output = start(buffer::output, 0);
  const region staging = start(buffer::scratch, 0);
  phase(s, p, sub_problem(reduce, p.count), mine, place(input, output, staging), build_ring);
  phase(s, p, sub_problem(all_reduce, p.count), reps, place(output, output, staging), build_ring);
  phase(s, p, sub_problem(broadcast, p.count), mine, place(output, output, staging), build_ring);
  return s;
}

/// Non-uniform reduce_scatter: pack host by host, reduce to member 0, reduce_scatter the
/// hosts' parts among the members 0, scatter within each host.
inline schedule representative_reduce_scatter(const params& p, const host_layout& hl,
                                              const std::vector<int>& reps) {
  schedule s;
  using enum collective;
  const packed_parts pp(p, hl, hl.members, hl.host[idx(p.rank)]);
  repack(s, pp.pk, p.counts, buffer::input, true);
  phase(s, p, sub_problem(reduce, pp.pk.total()), pp.mine, place(pp.packed, pp.packed, pp.staging),
        build_ring);
  phase(s, p, sub_problem(reduce_scatter, pp.pk.part_size), reps,
        place(pp.packed, pp.part, pp.staging), build_ring);
  const std::vector<std::size_t> within = counts_of(p.counts, pp.mine);
  phase(s, p, sub_problem(scatter, within), pp.mine,
        place(pp.part, start(buffer::output, 0), pp.staging), build_direct);
  return s;
}

/// Non-uniform all_gather: gather to member 0 into the host's part of a packed vector,
/// all_gather the parts among the members 0, broadcast within each host, unpack.
inline schedule representative_all_gather(const params& p, const host_layout& hl,
                                          const std::vector<int>& reps) {
  schedule s;
  using enum collective;
  const packed_parts pp(p, hl, hl.members, hl.host[idx(p.rank)]);
  const std::vector<std::size_t> within = counts_of(p.counts, pp.mine);
  phase(s, p, sub_problem(gather, within), pp.mine,
        place(start(buffer::input, 0), pp.part, pp.staging), build_direct);
  phase(s, p, sub_problem(all_gather, pp.pk.part_size), reps, place(pp.part, pp.packed, pp.staging),
        build_ring);
  phase(s, p, sub_problem(broadcast, pp.pk.total()), pp.mine,
        place(pp.packed, pp.packed, pp.staging), build_ring);
  repack(s, pp.pk, p.counts, buffer::output, false);
  return s;
}

/// The hierarchical generator for every collective `supports(algorithm::hierarchical, ...)`
/// allows.
inline schedule build_hierarchical(const params& p) {
  using enum collective;
  if (p.kind != all_reduce && p.kind != reduce_scatter && p.kind != all_gather &&
      p.kind != broadcast && p.kind != reduce) {
    throw std::invalid_argument("the hierarchical algorithm does not implement this collective");
  }
  const host_layout hl(p);
  // One host, or one rank on every host: a single level, the ring over all ranks.
  if (hl.hosts() == 1 || hl.widest() == 1) return build_ring(p);
  const int root_host = hl.host[idx(p.root)];
  if (hl.uniform()) {
    switch (p.kind) {
      case all_reduce:
        return uniform_all_reduce(p, hl);
      case reduce_scatter:
        return uniform_reduce_scatter(p, hl);
      case all_gather:
        return uniform_all_gather(p, hl);
      default:
        return rooted_through(p, hl, hl.inter_group(hl.local[idx(p.root)]));
    }
  }
  const bool rooted = p.kind == broadcast || p.kind == reduce;
  std::vector<int> reps;
  for (int h = 0; h < hl.hosts(); ++h) {
    reps.push_back(rooted && h == root_host ? p.root : hl.members[idx(h)][0]);
  }
  switch (p.kind) {
    case all_reduce:
      return representative_all_reduce(p, hl, reps);
    case reduce_scatter:
      return representative_reduce_scatter(p, hl, reps);
    case all_gather:
      return representative_all_gather(p, hl, reps);
    default:
      return rooted_through(p, hl, reps);
  }
}

}  // namespace chorus::inline v0::schedule::detail

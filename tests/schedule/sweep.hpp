#pragma once
/// \file
/// Test support for the schedule generators: one simulated case (parameters of every rank
/// for any collective, all_to_all included) and the sweep over rank counts, roots, counts,
/// chunk sizes and both aliasing modes that the exhaustive tests run per algorithm.
#include <chorus/schedule/build.hpp>
#include <chorus/schedule/simulate.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <cstddef>
#include <set>
#include <span>
#include <sstream>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

namespace sched_test {

using namespace chorus::schedule;

inline constexpr collective all_collectives[] = {
    collective::all_reduce, collective::reduce_scatter, collective::all_gather,
    collective::broadcast,  collective::reduce,         collective::barrier,
    collective::all_to_all, collective::gather,         collective::scatter};

inline bool uses_counts(collective c) {
  return c == collective::reduce_scatter || c == collective::all_gather ||
         c == collective::gather || c == collective::scatter;
}

inline bool rooted(collective c) {
  return c == collective::broadcast || c == collective::reduce || c == collective::gather ||
         c == collective::scatter;
}

/// Whether `chunk_count` changes the schedule of (a, c).
inline bool pipelined(algorithm a, collective c) {
  if (a == algorithm::ring || a == algorithm::hierarchical) return c != collective::barrier;
  if (a == algorithm::tree) {
    return c == collective::all_reduce || c == collective::broadcast || c == collective::reduce;
  }
  return a == algorithm::double_binary_tree;
}

inline bool has_in_place(collective c) {
  return c != collective::all_to_all && c != collective::barrier;
}

/// One simulated call: every rank's parameters, the arrays they point into kept alive.
struct call {
  algorithm alg = algorithm::ring;
  collective kind = collective::all_reduce;
  int size = 1;
  int root = 0;
  bool in_place = false;
  std::size_t count = 0;            // all_reduce, broadcast, reduce
  std::vector<std::size_t> counts;  // reduce_scatter, all_gather, gather, scatter
  std::size_t chunk = 0;
  int a2a_pattern = 0;     // all_to_all
  std::vector<int> hosts;  // params::hosts (empty: one host)

  [[nodiscard]] std::string describe() const {
    std::ostringstream s;
    s << name(alg) << " " << name(kind) << " P=" << size;
    if (!hosts.empty()) {
      s << " hosts={";
      for (std::size_t i = 0; i < hosts.size(); ++i) s << (i ? "," : "") << hosts[i];
      s << "}";
    }
    s << " root=" << root << (in_place ? " in place" : " out of place") << " chunk=" << chunk;
    if (uses_counts(kind)) {
      s << " counts={";
      for (std::size_t i = 0; i < counts.size(); ++i) s << (i ? "," : "") << counts[i];
      s << "}";
    } else if (kind == collective::all_to_all) {
      s << " all_to_all pattern " << a2a_pattern;
    } else {
      s << " count=" << count;
    }
    return s.str();
  }
};

/// The per-rank send/receive layout of all_to_all pattern k:
///  0: nothing at all; 1: two elements per pair, packed; 2: irregular counts with zeros,
///  gaps between the blocks, and receive blocks stored in reverse peer order; 3: only
///  the own block and the block for the next rank.
struct a2a_layout {
  std::vector<std::vector<std::size_t>> sc, so, rc, ro;
};

inline a2a_layout make_a2a(int size, int pattern) {
  const std::size_t P = static_cast<std::size_t>(size);
  a2a_layout l;
  l.sc.assign(P, std::vector<std::size_t>(P, 0));
  for (std::size_t r = 0; r < P; ++r) {
    for (std::size_t j = 0; j < P; ++j) {
      switch (pattern) {
        case 1:
          l.sc[r][j] = 2;
          break;
        case 2:
          l.sc[r][j] = (r * 7 + j * 3 + 1) % 4;
          break;
        case 3:
          l.sc[r][j] = (j == r || j == (r + 1) % P) ? 3 : 0;
          break;
        default:
          break;
      }
    }
  }
  l.so.assign(P, {});
  l.rc.assign(P, {});
  l.ro.assign(P, std::vector<std::size_t>(P, 0));
  for (std::size_t r = 0; r < P; ++r) {
    std::size_t at = 0;
    for (std::size_t j = 0; j < P; ++j) {
      l.so[r].push_back(at);
      at += l.sc[r][j] + (pattern == 2 ? 1 : 0);
      l.rc[r].push_back(l.sc[j][r]);
    }
    at = 0;
    for (std::size_t k = P; k-- > 0;) {
      const std::size_t j = pattern == 2 ? k : P - 1 - k;
      l.ro[r][j] = at;
      at += l.rc[r][j] + (pattern == 2 ? 2 : 0);
    }
  }
  return l;
}

inline simulation_result run(const call& c, const simulate_options& base = {}) {
  params common;
  common.kind = c.kind;
  common.size = c.size;
  common.root = c.root;
  common.count = c.count;
  common.chunk_count = c.chunk;
  common.hosts = c.hosts;
  if (uses_counts(c.kind)) common.counts = c.counts;
  std::vector<params> ps = params_for_all_ranks(common);
  a2a_layout l;
  if (c.kind == collective::all_to_all) {
    l = make_a2a(c.size, c.a2a_pattern);
    for (std::size_t r = 0; r < ps.size(); ++r) {
      ps[r].send_counts = l.sc[r];
      ps[r].send_offsets = l.so[r];
      ps[r].recv_counts = l.rc[r];
      ps[r].recv_offsets = l.ro[r];
    }
  }
  simulate_options opt = base;
  opt.in_place = c.in_place;
  return simulate(c.alg, std::span<const params>(ps), opt);
}

/// Counts for all_reduce / broadcast / reduce: 0, 1, P - 1, P, 7P + 3 and one below P.
inline std::vector<std::size_t> count_values(int size) {
  const std::size_t P = static_cast<std::size_t>(size);
  std::vector<std::size_t> v{0, 1, P - 1, P, 7 * P + 3, std::max<std::size_t>(1, P / 3)};
  std::sort(v.begin(), v.end());
  v.erase(std::unique(v.begin(), v.end()), v.end());
  return v;
}

/// Block counts for the v-count collectives: equal blocks of 0, 1 and 3 elements, blocks
/// of varying size with zeros among them, a single non-empty block, and blocks of 0 or 1
/// (fewer elements in all than ranks).
inline std::vector<std::vector<std::size_t>> count_patterns(int size) {
  const std::size_t P = static_cast<std::size_t>(size);
  std::vector<std::vector<std::size_t>> v;
  for (std::size_t b : {std::size_t{0}, std::size_t{1}, std::size_t{3}}) v.emplace_back(P, b);
  std::vector<std::size_t> varied(P), single(P, 0), sparse(P);
  for (std::size_t j = 0; j < P; ++j) {
    varied[j] = j % 3 == 1 ? 0 : (j * 5 + P) % 7;
    sparse[j] = j % 2;
  }
  single[P - 1 - (P / 3)] = 5;
  v.push_back(varied);
  v.push_back(single);
  v.push_back(sparse);
  return v;
}

inline constexpr std::size_t chunk_values[] = {0, 1, 3, 1000};

/// Every case of the sweep of (a, c) at P ranks. For P <= 16: both aliasing modes, every
/// count (or count pattern), every root; where the algorithm pipelines, chunk sizes 0, 1,
/// 3 and 1000 in turn, and at root 0 every chunk size with every count. For larger P (to
/// keep the run short): both aliasing modes, each with two of the counts (a different two
/// for each P), the roots 0, 1, P/2 and P - 1 and the chunk sizes in turn.
inline std::vector<call> sweep_cases(algorithm a, collective c, int size) {
  std::vector<call> cases;
  const bool full = size <= 16;
  std::vector<int> roots{0};
  if (rooted(c)) {
    roots.clear();
    if (full) {
      for (int r = 0; r < size; ++r) roots.push_back(r);
    } else {
      roots = {0, 1, size / 2, size - 1};
    }
  }
  std::vector<std::size_t> chunks{0};
  if (pipelined(a, c)) chunks.assign(std::begin(chunk_values), std::end(chunk_values));
  const std::vector<bool> modes =
      has_in_place(c) ? std::vector<bool>{false, true} : std::vector<bool>{false};
  // The data variants of this collective, as (count, counts, all_to_all pattern).
  std::vector<call> variants;
  if (c == collective::barrier) {
    variants.emplace_back();
  } else if (c == collective::all_to_all) {
    for (int k = 0; k < 4; ++k) {
      call v;
      v.a2a_pattern = k;
      variants.push_back(v);
    }
  } else if (uses_counts(c)) {
    for (auto& counts : count_patterns(size)) {
      call v;
      v.counts = counts;
      variants.push_back(v);
    }
  } else {
    for (std::size_t n : count_values(size)) {
      call v;
      v.count = n;
      variants.push_back(v);
    }
  }
  std::size_t turn = static_cast<std::size_t>(size);
  std::vector<std::pair<const call*, bool>> sampled;
  for (bool mode : modes) {
    for (const call& v : variants) {
      auto add = [&](int root, std::size_t chunk) {
        call x = v;
        x.alg = a;
        x.kind = c;
        x.size = size;
        x.root = root;
        x.in_place = mode;
        x.chunk = chunk;
        cases.push_back(x);
      };
      if (full) {
        for (int root : roots) {
          if (root == 0) {
            for (std::size_t chunk : chunks) add(root, chunk);
          } else {
            add(root, chunks[turn++ % chunks.size()]);
          }
        }
      } else {
        sampled.push_back({&v, mode});
      }
    }
  }
  // Larger P: two of the data variants per aliasing mode, a different pair for each P,
  // each with the next root and chunk size in turn.
  for (std::size_t k = 0; k < sampled.size(); ++k) {
    const std::size_t nv = variants.size();
    const std::size_t pick = k % nv;
    const std::size_t first = turn % nv, second = (turn + (nv + 1) / 2) % nv;
    if (nv > 2 && pick != first && pick != second) continue;
    call x = *sampled[k].first;
    x.alg = a;
    x.kind = c;
    x.size = size;
    x.in_place = sampled[k].second;
    x.root = roots[(turn + k) % roots.size()];
    x.chunk = chunks[(turn + k / nv + k) % chunks.size()];
    cases.push_back(x);
  }
  return cases;
}

/// Simulates every case of the sweep of every collective algorithm `a` supports, for
/// P = 1..64, and fails with the first few broken cases. Also checks that the sweep did
/// cover every P in both aliasing modes.
inline void sweep_algorithm(algorithm a) {
  for (collective c : all_collectives) {
    if (!supports(a, c)) continue;
    INFO("algorithm " << name(a) << ", collective " << name(c));
    std::size_t failures = 0, runs = 0;
    std::set<std::pair<int, bool>> covered;
    for (int size = 1; size <= 64; ++size) {
      for (const call& x : sweep_cases(a, c, size)) {
        const simulation_result res = run(x);
        ++runs;
        covered.insert({size, x.in_place});
        if (!res.ok && ++failures <= 5) FAIL_CHECK(x.describe() << ": " << res.error);
      }
    }
    CHECK(failures == 0);
    CHECK(covered.size() == (has_in_place(c) ? 128u : 64u));
    CHECK(runs > 0);
  }
}

}  // namespace sched_test

#pragma once
/// \file
/// A symbolic executor of all P ranks' schedules of one collective: it proves a set of
/// schedules correct (or says precisely what is wrong) and measures them.
///
/// It models the step semantics of `schedule.hpp` exactly:
///  - Rendezvous matching. A message is a send of rank a and a receive of rank b with the
///    same (a, b, tag); equal keys match in the order each side lists them (FIFO). An op is
///    matched when its counterpart's rank has reached the counterpart's step; a rank leaves
///    a step only when every op of it is matched. A send therefore never completes into a
///    buffer ("eager"): schedules that pass here also run over transports that block.
///    When no rank can move, the schedules DEADLOCK, which is reported, not looped on.
///  - Static checks first: every op well formed (peer in range and not itself, equal
///    counts where required, no write to `input`), every region inside its buffer (sizes
///    from the collective's layout; non-root inputs of broadcast / scatter and non-root
///    outputs of reduce / gather are empty), scratch inside `scratch_count`, every message
///    has a counterpart (no unmatched message) of the same size, each pair of ranks lists
///    its messages in the same order on both sides whatever their tags (so that transports
///    without tags, NCCL, pair them by position), and the hazard rule
///    within each step, on physical memory (in place, input and output alias as
///    `params` describes; a copy whose source and destination are the same memory is a
///    no-op, as in the executor).
///  - Symbolic values (P <= 64). Every element holds the set (a 64-bit mask) of ranks whose
///    input it combines and the element index it stands for; rank r's input element i
///    starts as ({r}, i). A reduction of two values must combine the same index and
///    disjoint sets ("reduced twice" otherwise). Reading uninitialised memory is an error;
///    so is reading an input element after the aliased output element changed it. At the
///    end every rank's output is checked against the collective's definition (all_reduce:
///    every rank, every element; reduce_scatter: block r; all_gather / gather / scatter /
///    broadcast / all_to_all: every element from the right (rank, index); reduce: the
///    root).
///  - Barrier: every rank must finish knowing that every rank entered, where knowledge
///    travels only with received messages (a rank enters when it posts its first step).
///
/// The statistics (steps, messages, elements per rank, a latency-bandwidth time estimate)
/// serve tests and the tuner.
#include <chorus/schedule/build.hpp>
#include <chorus/schedule/schedule.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <optional>
#include <span>
#include <string>
#include <tuple>
#include <unordered_map>
#include <utility>
#include <vector>

namespace chorus::inline v0::schedule {

/// A latency-bandwidth model of the schedules' time (`simulation_result::time`), in any unit
/// (seconds for `schedule/cost.hpp`):
///
///  - a message of n elements costs alpha + beta * n, plus gamma * n for a `recv_reduce`
///    (its receiver combines what arrives); it starts when both sides have posted it;
///  - messages between ranks on different hosts (`params::hosts`) use `inter_alpha` and
///    `inter_beta` (negative: the same as within a host); a host has one link to the
///    others, so where k of its ranks send to other hosts in the same step (the same step
///    index of their schedules), each of those messages costs k * inter_beta per element;
///  - one rank's port is shared: the messages of one step overlap in latency, but a rank
///    sends its step's bytes one after another, and receives (and reduces, and copies) them
///    one after another, paying `overhead` per message on each side (LogP's o). A step of
///    rank a therefore ends no earlier than its earliest message start + the largest alpha
///    of the step + the larger of its send time (sum of overhead + beta * n) and its
///    receive time (sum of overhead + beta * n + gamma * n of its receives, plus copy * n of
///    its copies), and no earlier than any one message's end.
///
/// With the defaults, `time` counts message hops on the critical path.
struct cost_model {
  double alpha = 1.0;
  double beta = 0.0;
  double gamma = 0.0;
  double copy = 0.0;
  double overhead = 0.0;
  double inter_alpha = -1.0;
  double inter_beta = -1.0;
};

struct simulate_options {
  /// Alias input and output as the collective's in-place form (see `params`).
  /// all_to_all has no in-place form; barrier has no data (ignored).
  bool in_place = false;
  /// Track symbolic values, check the result and the barrier property (needs P <= 64).
  /// Without it only the structure is checked: bounds, hazards, matching, deadlock.
  bool check_values = true;
  cost_model cost{};
};

struct simulation_result {
  bool ok = false;
  std::string error;              ///< the first problem found, as a sentence; empty when ok
  std::size_t steps = 0;          ///< max over ranks of schedule steps
  std::size_t message_steps = 0;  ///< max over ranks of steps with a send or receive
  std::size_t messages = 0;       ///< messages in total
  std::size_t elements = 0;       ///< elements sent in total
  std::size_t max_sent_messages = 0;
  std::size_t max_sent_elements = 0;
  std::size_t max_received_elements = 0;
  std::size_t max_scratch = 0;          ///< max over ranks of scratch_count
  double time = 0;                      ///< critical path under `simulate_options::cost`
  std::size_t critical_hops = 0;        ///< messages one after another on that critical path
  std::size_t max_link_elements = 0;    ///< most elements sent from one rank to one other
  std::size_t inter_host_elements = 0;  ///< elements sent between ranks of different hosts
  std::vector<std::size_t> steps_per_rank;
  std::vector<std::size_t> sent_messages;      ///< per rank
  std::vector<std::size_t> sent_elements;      ///< per rank
  std::vector<std::size_t> received_elements;  ///< per rank
};

namespace detail {

struct sim_error {
  std::string what;
};

/// A symbolic element: the ranks whose contribution it holds (0: uninitialised) and the
/// element index of those contributions.
struct sym_value {
  std::uint64_t mask = 0;
  std::size_t index = 0;
  friend constexpr bool operator==(const sym_value&, const sym_value&) = default;
};

/// Where a logical buffer of one rank lives: physical array (0, 1, 2), base, size.
struct sim_mapping {
  int array = 0;
  std::size_t base = 0;
  std::size_t size = 0;
};

struct sim_interval {
  int array = 0;
  std::size_t begin = 0;
  std::size_t end = 0;
  friend constexpr bool operator==(const sim_interval&, const sim_interval&) = default;
  [[nodiscard]] bool overlaps(const sim_interval& o) const noexcept {
    return array == o.array && begin < o.end && o.begin < end;
  }
};

inline std::string buffer_name(buffer b) {
  switch (b) {
    case buffer::input:
      return "input";
    case buffer::output:
      return "output";
    case buffer::scratch:
      return "scratch";
  }
  return "?";
}

inline std::string code_name(op_code c) {
  switch (c) {
    case op_code::send:
      return "send";
    case op_code::recv:
      return "recv";
    case op_code::recv_reduce:
      return "recv_reduce";
    case op_code::copy:
      return "copy";
  }
  return "?";
}

inline std::string describe(const region& r) {
  return buffer_name(r.buf) + "[" + std::to_string(r.offset) + ", " +
         std::to_string(r.offset + r.count) + ")";
}

inline std::string ranks_of(std::uint64_t mask) {
  std::string s = "{";
  bool first = true;
  for (int b = 0; b < 64; ++b) {
    if ((mask >> b & 1u) == 0) continue;
    if (!first) s += ",";
    s += std::to_string(b);
    first = false;
  }
  return s + "}";
}

inline std::string describe(const sym_value& v) {
  if (v.mask == 0) return "nothing (uninitialised)";
  return "element " + std::to_string(v.index) + " of ranks " + ranks_of(v.mask);
}

/// Everything the simulator needs to know about one rank.
struct sim_rank {
  const schedule* sched = nullptr;
  sim_mapping map[3];  ///< by buffer: input, output, scratch
  std::size_t array_size[3] = {0, 0, 0};
  std::vector<std::uint32_t> op_step;   ///< step of each op
  std::vector<int> partner_rank;        ///< for message ops
  std::vector<std::size_t> partner_op;  ///< for message ops
  /// By send op: the port time of the sends before it in its step (they leave first).
  std::vector<double> send_before;
  std::size_t step = 0;     ///< current step
  bool posted = false;      ///< whether the current step is posted
  std::size_t pending = 0;  ///< message ops of the current step still without counterpart
  std::vector<sym_value> mem[3];
  std::vector<sym_value> arena;              ///< send payloads, appended at posting
  std::vector<std::size_t> captured;         ///< by send op: where its payload starts
  std::vector<std::uint64_t> captured_know;  ///< by send op: the sender's knowledge
  std::uint64_t know = 0;
  std::vector<double> post_time;       ///< by step
  std::vector<std::size_t> post_hops;  ///< by step: messages on the path to post_time
  double finish_time = 0;
  std::size_t finish_hops = 0;
};

/// `Checked`: the whole simulator, every check of the file comment. Without: only what the
/// time and the statistics need (matching, the walk, deadlock), for schedules known good --
/// the cost model's predictions (`cost.hpp`), which then cost far less to compile.
template <bool Checked>
class simulator_impl {
 public:
  simulator_impl(std::span<const schedule> schedules, std::span<const params> ps,
                 const simulate_options& opt, simulation_result& res)
      : scheds_(schedules), ps_(ps), opt_(opt), res_(res) {}

  void run() {
    if constexpr (Checked) check_params();
    size_ = ps_[0].size;
    P_ = static_cast<std::size_t>(size_);
    kind_ = ps_[0].kind;
    if constexpr (Checked) {
      if (opt_.check_values && size_ > 64) {
        fail("symbolic value tracking supports at most 64 ranks, got " + std::to_string(size_) +
             " (set check_values = false to check only the structure)");
      }
      if (opt_.in_place && kind_ == collective::all_to_all) {
        fail("all_to_all has no in-place form");
      }
    }
    values_ = Checked && opt_.check_values;
    ranks_.resize(P_);
    count_host_senders();
    for (std::size_t a = 0; a < P_; ++a) setup_rank(a);
    statistics();
    if constexpr (Checked) {
      for (std::size_t a = 0; a < P_; ++a) static_checks(a);
    }
    match();
    execute();
    if constexpr (Checked) {
      if (values_) verify();
    }
  }

 private:
  [[noreturn]] static void fail(std::string what) { throw sim_error{std::move(what)}; }

  static std::string where(std::size_t a, std::size_t s, std::size_t i) {
    return "rank " + std::to_string(a) + " step " + std::to_string(s) + " op " + std::to_string(i);
  }

  // ---- parameters -------------------------------------------------------------------

  void check_params() {
    if (ps_.empty()) fail("no ranks given");
    if (scheds_.size() != ps_.size()) {
      fail("got " + std::to_string(scheds_.size()) + " schedules for " +
           std::to_string(ps_.size()) + " ranks");
    }
    const params& p0 = ps_[0];
    if (p0.size < 1 || static_cast<std::size_t>(p0.size) != ps_.size()) {
      fail("params say " + std::to_string(p0.size) + " ranks but " + std::to_string(ps_.size()) +
           " are given");
    }
    auto same = [](std::span<const std::size_t> x, std::span<const std::size_t> y) {
      return std::equal(x.begin(), x.end(), y.begin(), y.end());
    };
    for (std::size_t a = 0; a < ps_.size(); ++a) {
      const params& p = ps_[a];
      if (p.rank != static_cast<int>(a)) {
        fail("params of rank " + std::to_string(a) + " name rank " + std::to_string(p.rank));
      }
      if (p.kind != p0.kind || p.size != p0.size || p.root != p0.root || p.count != p0.count ||
          p.chunk_count != p0.chunk_count || !same(p.counts, p0.counts) ||
          !std::equal(p.hosts.begin(), p.hosts.end(), p0.hosts.begin(), p0.hosts.end())) {
        fail("params of rank " + std::to_string(a) + " disagree with rank 0's");
      }
    }
    if (p0.root < 0 || p0.root >= p0.size) fail("root out of range");
    const std::size_t n = ps_.size();
    if (!p0.hosts.empty() && (p0.hosts.size() != n || std::any_of(p0.hosts.begin(), p0.hosts.end(),
                                                                  [](int h) { return h < 0; }))) {
      fail("hosts must name one host (numbered from 0) per rank, or be empty");
    }
    const bool blocks = p0.kind == collective::reduce_scatter ||
                        p0.kind == collective::all_gather || p0.kind == collective::gather ||
                        p0.kind == collective::scatter;
    if (blocks && p0.counts.size() != n) fail("counts must have one entry per rank");
    if (p0.kind == collective::all_to_all) {
      for (std::size_t a = 0; a < n; ++a) {
        const params& p = ps_[a];
        if (p.send_counts.size() != n || p.send_offsets.size() != n || p.recv_counts.size() != n ||
            p.recv_offsets.size() != n) {
          fail("all_to_all params of rank " + std::to_string(a) + " need one entry per rank");
        }
      }
      for (std::size_t a = 0; a < n; ++a) {
        for (std::size_t b = 0; b < n; ++b) {
          if (ps_[a].send_counts[b] != ps_[b].recv_counts[a]) {
            fail("all_to_all params inconsistent: rank " + std::to_string(a) + " sends " +
                 std::to_string(ps_[a].send_counts[b]) + " elements to rank " + std::to_string(b) +
                 ", which expects " + std::to_string(ps_[b].recv_counts[a]));
          }
        }
      }
    }
  }

  // ---- layout -----------------------------------------------------------------------

  void setup_rank(std::size_t a) {
    sim_rank& R = ranks_[a];
    const params& p = ps_[a];
    R.sched = &scheds_[a];
    const schedule& s = *R.sched;
    if (s.step_begin.empty() || s.step_begin.front() != 0 || s.step_begin.back() != s.ops.size() ||
        !std::is_sorted(s.step_begin.begin(), s.step_begin.end())) {
      fail("rank " + std::to_string(a) + "'s schedule is malformed (step_begin)");
    }
    const bool root = p.rank == p.root;
    const std::size_t r = a;
    std::size_t total = 0;
    std::vector<std::size_t> off(1, 0);
    for (std::size_t c : p.counts) off.push_back(total += c);
    std::size_t in_size = 0, out_size = 0;
    switch (kind_) {
      case collective::all_reduce:
        in_size = out_size = p.count;
        break;
      case collective::reduce_scatter:
        in_size = total;
        out_size = p.counts[r];
        break;
      case collective::all_gather:
        in_size = p.counts[r];
        out_size = total;
        break;
      case collective::broadcast:
        in_size = root ? p.count : 0;
        out_size = p.count;
        break;
      case collective::reduce:
        in_size = p.count;
        out_size = root ? p.count : 0;
        break;
      case collective::barrier:
        break;
      case collective::all_to_all:
        for (std::size_t j = 0; j < P_; ++j) {
          in_size = std::max(in_size, p.send_offsets[j] + p.send_counts[j]);
          out_size = std::max(out_size, p.recv_offsets[j] + p.recv_counts[j]);
        }
        break;
      case collective::gather:
        in_size = p.counts[r];
        out_size = root ? total : 0;
        break;
      case collective::scatter:
        in_size = root ? total : 0;
        out_size = p.counts[r];
        break;
    }
    R.map[0] = {0, 0, in_size};
    R.map[1] = {1, 0, out_size};
    R.map[2] = {2, 0, s.scratch_count};
    if (opt_.in_place) {
      switch (kind_) {
        case collective::all_reduce:
          R.map[0] = {1, 0, in_size};
          break;
        case collective::reduce_scatter:
          R.map[1] = {0, off[r], out_size};
          break;
        case collective::all_gather:
          R.map[0] = {1, off[r], in_size};
          break;
        case collective::broadcast:
        case collective::reduce:
          if (root) R.map[0] = {1, 0, in_size};
          break;
        case collective::gather:
          if (root) R.map[0] = {1, off[r], in_size};
          break;
        case collective::scatter:
          if (root) R.map[1] = {0, off[r], out_size};
          break;
        default:
          break;
      }
    }
    for (const sim_mapping& m : R.map) {
      R.array_size[m.array] = std::max(R.array_size[m.array], m.base + m.size);
    }
    R.op_step.resize(s.ops.size());
    for (std::size_t st = 0; st < s.steps(); ++st) {
      for (std::size_t i = s.step_begin[st]; i < s.step_begin[st + 1]; ++i) {
        R.op_step[i] = static_cast<std::uint32_t>(st);
      }
    }
    R.partner_rank.assign(s.ops.size(), -1);
    R.send_before.assign(s.ops.size(), 0.0);
    for (std::size_t st = 0; st < s.steps(); ++st) {
      double before = 0;
      for (std::size_t i = s.step_begin[st]; i < s.step_begin[st + 1]; ++i) {
        const op& o = s.ops[i];
        if (o.code != op_code::send) continue;
        R.send_before[i] = before;
        before +=
            opt_.cost.overhead + beta_between(a, o.peer, st) * static_cast<double>(o.src.count);
      }
    }
    R.partner_op.assign(s.ops.size(), 0);
    R.post_time.assign(s.steps() + 1, 0.0);
    R.post_hops.assign(s.steps() + 1, 0);
    if (Checked && values_) {
      for (int k = 0; k < 3; ++k) R.mem[k].assign(R.array_size[k], sym_value{});
      const sim_mapping& m = R.map[0];
      for (std::size_t i = 0; i < m.size; ++i) {
        R.mem[m.array][m.base + i] = {std::uint64_t{1} << r, i};
      }
      R.captured.assign(s.ops.size(), 0);
      R.captured_know.assign(s.ops.size(), 0);
      R.know = std::uint64_t{1} << r;
    }
  }

  /// Whether a message between ranks a and b leaves a host (`params::hosts`).
  [[nodiscard]] bool across_hosts(std::size_t a, int b) const {
    const std::span<const int> hosts = ps_[a].hosts;
    const auto bu = static_cast<std::size_t>(b);
    return !hosts.empty() && a < hosts.size() && bu < hosts.size() && hosts[a] != hosts[bu];
  }
  /// The time per element of a message that rank `a` sends rank `b` in a's step `st`.
  /// Between hosts, the host's link is shared: the inter-host beta times the number of
  /// ranks of a's host that send to other hosts in the same step.
  [[nodiscard]] double beta_between(std::size_t a, int b, std::size_t st) const {
    const cost_model& c = opt_.cost;
    if (!across_hosts(a, b)) return c.beta;
    const double beta = c.inter_beta >= 0 ? c.inter_beta : c.beta;
    const auto h = static_cast<std::size_t>(ps_[a].hosts[a]);  // >= 0: check_params, build
    if (h >= host_senders_.size()) return beta;
    const std::vector<int>& per_step = host_senders_[h];
    return beta * std::max(1, st < per_step.size() ? per_step[st] : 1);
  }

  /// host_senders_[h][st]: how many ranks of host h send to another host in their step st.
  void count_host_senders() {
    host_senders_.clear();
    for (std::size_t a = 0; a < P_; ++a) {
      const std::span<const int> hosts = ps_[a].hosts;
      if (hosts.size() != P_) continue;
      const auto h = static_cast<std::size_t>(std::max(hosts[a], 0));
      if (host_senders_.size() <= h) host_senders_.resize(h + 1);
      const schedule& s = scheds_[a];
      auto& per_step = host_senders_[h];
      if (per_step.size() < s.steps()) per_step.resize(s.steps(), 0);
      for (std::size_t st = 0; st < s.steps(); ++st) {
        for (const op& o : s.step(st)) {
          if (o.code == op_code::send && across_hosts(a, o.peer)) {
            ++per_step[st];
            break;
          }
        }
      }
    }
  }
  [[nodiscard]] double alpha_between(std::size_t a, int b) const {
    const cost_model& c = opt_.cost;
    return across_hosts(a, b) && c.inter_alpha >= 0 ? c.inter_alpha : c.alpha;
  }

  [[nodiscard]] sim_interval phys(std::size_t a, const region& g) const {
    const sim_mapping& m = ranks_[a].map[static_cast<int>(g.buf)];
    return {m.array, m.base + g.offset, m.base + g.offset + g.count};
  }

  // ---- statistics -------------------------------------------------------------------

  void statistics() {
    res_.steps_per_rank.assign(P_, 0);
    res_.sent_messages.assign(P_, 0);
    res_.sent_elements.assign(P_, 0);
    res_.received_elements.assign(P_, 0);
    std::unordered_map<std::size_t, std::size_t> link;  // a * P + b: elements a sent b
    for (std::size_t a = 0; a < P_; ++a) {
      const schedule& s = *ranks_[a].sched;
      res_.steps_per_rank[a] = s.steps();
      std::size_t msg_steps = 0;
      for (std::size_t st = 0; st < s.steps(); ++st) {
        bool any = false;
        for (const op& o : s.step(st)) {
          if (o.code == op_code::send) {
            ++res_.sent_messages[a];
            res_.sent_elements[a] += o.src.count;
            const auto b = static_cast<std::size_t>(o.peer);
            if (b < P_) link[a * P_ + b] += o.src.count;
            if (across_hosts(a, o.peer)) res_.inter_host_elements += o.src.count;
          } else if (o.code != op_code::copy) {
            res_.received_elements[a] += o.dst.count;
          }
          any = any || o.code != op_code::copy;
        }
        msg_steps += any ? 1 : 0;
      }
      res_.steps = std::max(res_.steps, s.steps());
      res_.message_steps = std::max(res_.message_steps, msg_steps);
      res_.messages += res_.sent_messages[a];
      res_.elements += res_.sent_elements[a];
      res_.max_sent_messages = std::max(res_.max_sent_messages, res_.sent_messages[a]);
      res_.max_sent_elements = std::max(res_.max_sent_elements, res_.sent_elements[a]);
      res_.max_received_elements = std::max(res_.max_received_elements, res_.received_elements[a]);
      res_.max_scratch = std::max(res_.max_scratch, s.scratch_count);
    }
    for (const auto& [pair, elements] : link) {
      res_.max_link_elements = std::max(res_.max_link_elements, elements);
    }
  }

  // ---- static checks ----------------------------------------------------------------

  void check_region(std::size_t a, std::size_t st, std::size_t i, const region& g,
                    const char* role) const {
    if (static_cast<int>(g.buf) > 2) fail(where(a, st, i) + ": " + role + " names no buffer");
    const std::size_t size = ranks_[a].map[static_cast<int>(g.buf)].size;
    if (g.offset > size || g.count > size - g.offset) {
      fail("out of bounds: " + where(a, st, i) + " " + role + " " + describe(g) + " exceeds the " +
           buffer_name(g.buf) + " buffer of " + std::to_string(size) + " elements");
    }
  }

  void static_checks(std::size_t a) {
    const schedule& s = *ranks_[a].sched;
    for (std::size_t st = 0; st < s.steps(); ++st) {
      for (std::size_t i = s.step_begin[st]; i < s.step_begin[st + 1]; ++i) {
        const op& o = s.ops[i];
        auto at = [&] { return where(a, st, i); };
        if (o.code != op_code::copy) {
          if (o.peer < 0 || o.peer >= size_) {
            fail(at() + ": " + code_name(o.code) + " names peer " + std::to_string(o.peer) +
                 ", out of range");
          }
          if (static_cast<std::size_t>(o.peer) == a) {
            fail(at() + ": " + code_name(o.code) + " names its own rank as peer");
          }
        }
        switch (o.code) {
          case op_code::send:
            check_region(a, st, i, o.src, "source");
            break;
          case op_code::recv:
            check_region(a, st, i, o.dst, "destination");
            break;
          case op_code::recv_reduce:
          case op_code::copy:
            check_region(a, st, i, o.src, "source");
            check_region(a, st, i, o.dst, "destination");
            if (o.src.count != o.dst.count) {
              fail(at() + ": " + code_name(o.code) + " source " + describe(o.src) +
                   " and destination " + describe(o.dst) + " differ in size");
            }
            break;
          default:
            fail(at() + ": unknown op code");
        }
        if (o.code != op_code::send && o.dst.buf == buffer::input) {
          fail(at() + ": " + code_name(o.code) + " writes to the input buffer " + describe(o.dst));
        }
        if ((o.code == op_code::recv_reduce || o.code == op_code::copy) && o.dst.count != 0) {
          const sim_interval x = phys(a, o.src), y = phys(a, o.dst);
          if (x.overlaps(y) && !(x == y)) {
            fail("hazard: " + at() + ": " + code_name(o.code) + " source " + describe(o.src) +
                 " partly overlaps its destination " + describe(o.dst));
          }
        }
      }
      check_hazards(a, st);
    }
  }

  /// The hazard rule of one step, on physical memory.
  void check_hazards(std::size_t a, std::size_t st) {
    const schedule& s = *ranks_[a].sched;
    std::vector<access>& writes = writes_;
    std::vector<access>& reads = reads_;
    std::vector<access>& merged = merged_;
    writes.clear();
    reads.clear();
    merged.clear();
    for (std::size_t i = s.step_begin[st]; i < s.step_begin[st + 1]; ++i) {
      const op& o = s.ops[i];
      switch (o.code) {
        case op_code::send:
          reads.push_back({phys(a, o.src), i, false});
          break;
        case op_code::recv:
          writes.push_back({phys(a, o.dst), i, false});
          break;
        case op_code::recv_reduce: {
          const sim_interval x = phys(a, o.src), y = phys(a, o.dst);
          writes.push_back({y, i, true});
          if (!(x == y)) reads.push_back({x, i, true});
          break;
        }
        case op_code::copy: {
          const sim_interval x = phys(a, o.src), y = phys(a, o.dst);
          if (x == y) break;  // in place: the executor does nothing
          writes.push_back({y, i, false});
          reads.push_back({x, i, false});
          break;
        }
      }
    }
    auto empty = [](const access& x) { return x.iv.begin == x.iv.end; };
    std::erase_if(writes, empty);
    std::erase_if(reads, empty);
    auto before = [](const access& x, const access& y) {
      return std::tie(x.iv.array, x.iv.begin, x.iv.end, x.op) <
             std::tie(y.iv.array, y.iv.begin, y.iv.end, y.op);
    };
    std::sort(writes.begin(), writes.end(), before);
    // Several recv_reduce ops onto the very same destination are one accumulation.
    for (const access& w : writes) {
      if (!merged.empty() && merged.back().iv == w.iv && merged.back().reduce && w.reduce) continue;
      merged.push_back(w);
    }
    for (std::size_t k = 1; k < merged.size(); ++k) {
      if (merged[k - 1].iv.overlaps(merged[k].iv)) {
        fail("hazard: rank " + std::to_string(a) + " step " + std::to_string(st) + ": ops " +
             std::to_string(merged[k - 1].op) + " and " + std::to_string(merged[k].op) +
             " write the same elements");
      }
    }
    // `merged` is now disjoint and sorted: find the writes each read overlaps.
    for (const access& rd : reads) {
      auto it =
          std::lower_bound(merged.begin(), merged.end(), rd, [](const access& w, const access& x) {
            return std::tie(w.iv.array, w.iv.end) <= std::tie(x.iv.array, x.iv.begin);
          });
      if (it != merged.end() && it->iv.overlaps(rd.iv)) {
        fail("hazard: rank " + std::to_string(a) + " step " + std::to_string(st) + ": op " +
             std::to_string(rd.op) + " reads elements that op " + std::to_string(it->op) +
             " writes in the same step");
      }
    }
  }

  // ---- matching ---------------------------------------------------------------------

  void match() {
    // Receives on each channel (source, destination, tag), in the order the receiving rank
    // lists them (FIFO); sends are then paired with them in the order the sender lists
    // them.
    struct channel {
      std::vector<std::size_t> recvs;
      std::size_t sends = 0;
    };
    auto key = [this](std::size_t src, std::size_t dst, std::uint32_t tag) {
      return (static_cast<std::uint64_t>(src * P_ + dst) << 32) | tag;
    };
    std::unordered_map<std::uint64_t, channel> channels;
    for (std::size_t b = 0; b < P_; ++b) {
      const schedule& s = *ranks_[b].sched;
      for (std::size_t i = 0; i < s.ops.size(); ++i) {
        const op& o = s.ops[i];
        if (o.code == op_code::recv || o.code == op_code::recv_reduce) {
          channels[key(static_cast<std::size_t>(o.peer), b, o.tag)].recvs.push_back(i);
        }
      }
    }
    auto unmatched = [](std::size_t a, std::size_t b, std::uint32_t tag, std::size_t sends,
                        std::size_t recvs) {
      fail("unmatched message: rank " + std::to_string(a) + " sends " + std::to_string(sends) +
           " message(s) to rank " + std::to_string(b) + " with tag " + std::to_string(tag) +
           " but rank " + std::to_string(b) + " receives " + std::to_string(recvs));
    };
    for (std::size_t a = 0; a < P_; ++a) {
      const schedule& s = *ranks_[a].sched;
      for (std::size_t i = 0; i < s.ops.size(); ++i) {
        const op& so = s.ops[i];
        if (so.code != op_code::send) continue;
        const std::size_t b = static_cast<std::size_t>(so.peer);
        channel& c = channels[key(a, b, so.tag)];
        const std::size_t k = c.sends++;
        if (k >= c.recvs.size()) {
          std::size_t total = 0;
          for (const op& x : s.ops) {
            if (x.code == op_code::send && x.peer == so.peer && x.tag == so.tag) ++total;
          }
          unmatched(a, b, so.tag, total, c.recvs.size());
        }
        const std::size_t j = c.recvs[k];
        const op& ro = ranks_[b].sched->ops[j];
        if (so.src.count != ro.dst.count) {
          fail("size mismatch: message #" + std::to_string(k) + " from rank " + std::to_string(a) +
               " to rank " + std::to_string(b) + " (tag " + std::to_string(so.tag) + ") sends " +
               std::to_string(so.src.count) + " elements but the receive expects " +
               std::to_string(ro.dst.count));
        }
        ranks_[a].partner_rank[i] = static_cast<int>(b);
        ranks_[a].partner_op[i] = j;
        ranks_[b].partner_rank[j] = static_cast<int>(a);
        ranks_[b].partner_op[j] = i;
      }
    }
    // Positional order: each pair's messages in the same order on both sides, tags aside
    // (what a transport without tags, NCCL, matches by). With tag matching done above,
    // the receives a rank's sends to one peer pair with must come in increasing op order.
    for (std::size_t a = 0; a < P_; ++a) {
      const schedule& s = *ranks_[a].sched;
      std::vector<std::size_t> last(P_, 0);
      std::vector<bool> any(P_, false);
      for (std::size_t i = 0; i < s.ops.size(); ++i) {
        if (s.ops[i].code != op_code::send) continue;
        const auto b = static_cast<std::size_t>(s.ops[i].peer);
        const std::size_t j = ranks_[a].partner_op[i];
        if (any[b] && j < last[b]) {
          fail("order: rank " + std::to_string(a) + " sends to rank " + std::to_string(b) +
               " in another order than rank " + std::to_string(b) + " lists the receives (op " +
               std::to_string(i) + ", tag " + std::to_string(s.ops[i].tag) +
               "); a transport without tags (NCCL) would pair them wrongly");
        }
        any[b] = true;
        last[b] = j;
      }
    }
    // Receives left over; report the lowest channel for a stable message.
    bool found = false;
    std::uint64_t worst = 0;
    for (const auto& [k, c] : channels) {
      if (c.sends != c.recvs.size() && (!found || k < worst)) {
        found = true;
        worst = k;
      }
    }
    if (found) {
      const channel& c = channels[worst];
      const std::size_t pair = static_cast<std::size_t>(worst >> 32);
      unmatched(pair / P_, pair % P_, static_cast<std::uint32_t>(worst & 0xffffffffu), c.sends,
                c.recvs.size());
    }
  }

  // ---- execution --------------------------------------------------------------------

  [[nodiscard]] bool done(std::size_t a) const {
    return ranks_[a].step >= ranks_[a].sched->steps();
  }

  /// Reads a region of rank a's memory into `into` (appending), checking that every
  /// element is initialised and that input elements still hold the input.
  void read(std::size_t a, std::size_t st, std::size_t op_index, const region& g, const char* what,
            std::vector<sym_value>& into) const {
    const sim_rank& R = ranks_[a];
    const sim_interval iv = phys(a, g);
    for (std::size_t i = 0; i < g.count; ++i) {
      const sym_value v = R.mem[iv.array][iv.begin + i];
      if (g.buf == buffer::input && !(v == sym_value{std::uint64_t{1} << a, g.offset + i})) {
        fail(where(a, st, op_index) + " (" + what + ") reads input element " +
             std::to_string(g.offset + i) +
             " after the aliased output element was overwritten (it holds " + describe(v) + ")");
      }
      if (v.mask == 0) {
        fail(where(a, st, op_index) + " (" + what + ") reads uninitialised " + buffer_name(g.buf) +
             " element " + std::to_string(g.offset + i));
      }
      into.push_back(v);
    }
  }

  void write(std::size_t a, const region& g, const sym_value* v) {
    const sim_interval iv = phys(a, g);
    std::copy(v, v + g.count,
              ranks_[a].mem[iv.array].begin() + static_cast<std::ptrdiff_t>(iv.begin));
  }

  /// Whether op j of rank b is posted: b is in the op's step and has posted it.
  [[nodiscard]] bool posted(std::size_t b, std::size_t j) const {
    const sim_rank& B = ranks_[b];
    return B.posted && B.step == B.op_step[j];
  }

  /// Rank a enters its current step: its sends capture their payload (and what a knows),
  /// and every message op meets its counterpart if that is posted already. Ranks left with
  /// nothing to wait for go to `ready`.
  void post(std::size_t a, double when, std::vector<std::size_t>& ready) {
    sim_rank& R = ranks_[a];
    const schedule& s = *R.sched;
    R.post_time[R.step] = when;
    R.post_hops[R.step] = R.finish_hops;
    R.pending = 0;
    for (std::size_t i = s.step_begin[R.step]; i < s.step_begin[R.step + 1]; ++i) {
      const op& o = s.ops[i];
      if (o.code == op_code::copy) continue;
      const std::size_t b = static_cast<std::size_t>(R.partner_rank[i]);
      if (posted(b, R.partner_op[i])) {
        if (--ranks_[b].pending == 0) ready.push_back(b);
      } else {
        ++R.pending;
      }
      if constexpr (Checked) {
        if (values_ && o.code == op_code::send) {
          R.captured[i] = R.arena.size();
          read(a, R.step, i, o.src, "send", R.arena);
          R.captured_know[i] = R.know;
        }
      }
    }
    R.posted = true;
    if (R.pending == 0) ready.push_back(a);
  }

  /// Completes rank a's current step: applies copies and receives in op order.
  void complete(std::size_t a) {
    sim_rank& R = ranks_[a];
    const schedule& s = *R.sched;
    const std::size_t st = R.step;
    const cost_model& c = opt_.cost;
    double finish = R.post_time[st];
    std::size_t finish_hops = R.post_hops[st];
    // Whichever bound is the largest so far, with the hops of the path that led to it.
    const auto later = [&](double t, std::size_t hops) {
      if (t > finish) {
        finish = t;
        finish_hops = hops;
      }
    };
    double first_start = -1;  // of the step's messages
    std::size_t first_hops = 0;
    double max_alpha = 0;
    double send_time = 0;  // the port: what this rank sends, and what it receives and does
    double recv_time = 0;
    for (std::size_t i = s.step_begin[st]; i < s.step_begin[st + 1]; ++i) {
      const op& o = s.ops[i];
      if (o.code == op_code::copy) {
        recv_time += c.copy * static_cast<double>(o.dst.count);
      } else {
        const sim_rank& B = ranks_[static_cast<std::size_t>(R.partner_rank[i])];
        const std::size_t bst = B.op_step[R.partner_op[i]];
        const bool theirs = B.post_time[bst] > R.post_time[st];
        const double start = theirs ? B.post_time[bst] : R.post_time[st];
        const std::size_t hops = 1 + (theirs ? B.post_hops[bst] : R.post_hops[st]);
        const double n = static_cast<double>(o.code == op_code::send ? o.src.count : o.dst.count);
        const double alpha = alpha_between(a, o.peer);
        // priced by the sender's link (its host's, between hosts)
        const double beta = o.code == op_code::send ? beta_between(a, o.peer, st)
                                                    : beta_between(static_cast<std::size_t>(o.peer),
                                                                   static_cast<int>(a), bst);
        const double reduce = o.code == op_code::recv_reduce ? c.gamma * n : 0.0;
        // the message leaves after the sender's earlier sends of its step
        const double queued =
            o.code == op_code::send ? R.send_before[i] : B.send_before[R.partner_op[i]];
        later(start + alpha + queued + c.overhead + beta * n + reduce, hops);
        if (first_start < 0 || start < first_start) {
          first_start = start;
          first_hops = hops;
        }
        max_alpha = std::max(max_alpha, alpha);
        (o.code == op_code::send ? send_time : recv_time) += c.overhead + beta * n + reduce;
      }
      if constexpr (Checked) {
        if (!values_) continue;
        switch (o.code) {
          case op_code::send:
            break;
          case op_code::copy:
            if (!(phys(a, o.src) == phys(a, o.dst))) {
              buf_.clear();
              read(a, st, i, o.src, "copy", buf_);
              write(a, o.dst, buf_.data());
            }
            break;
          case op_code::recv:
          case op_code::recv_reduce: {
            const sim_rank& B = ranks_[static_cast<std::size_t>(R.partner_rank[i])];
            const std::size_t j = R.partner_op[i];
            R.know |= B.captured_know[j];
            buf_.assign(B.arena.begin() + static_cast<std::ptrdiff_t>(B.captured[j]),
                        B.arena.begin() + static_cast<std::ptrdiff_t>(B.captured[j] + o.dst.count));
            if (o.code == op_code::recv_reduce) {
              mine_.clear();
              read(a, st, i, o.src, "recv_reduce", mine_);
              for (std::size_t k = 0; k < buf_.size(); ++k) {
                if (mine_[k].index != buf_[k].index) {
                  fail(where(a, st, i) + " (recv_reduce) combines element " +
                       std::to_string(mine_[k].index) + " with element " +
                       std::to_string(buf_[k].index));
                }
                if ((mine_[k].mask & buf_[k].mask) != 0) {
                  fail("reduced twice: " + where(a, st, i) + " (recv_reduce from rank " +
                       std::to_string(o.peer) + ") adds " + describe(buf_[k]) + " to " +
                       describe(mine_[k]) + ": ranks " + ranks_of(mine_[k].mask & buf_[k].mask) +
                       " would count twice");
                }
                buf_[k].mask |= mine_[k].mask;
              }
            }
            write(a, o.dst, buf_.data());
            break;
          }
        }
      }
    }
    if (first_start < 0) {  // copies only
      first_start = R.post_time[st];
      first_hops = R.post_hops[st];
    }
    later(first_start + max_alpha + std::max(send_time, recv_time), first_hops);
    R.finish_time = finish;
    R.finish_hops = finish_hops;
    ++R.step;
  }

  void execute() {
    // Ranks whose current step has every message op matched; completing a step posts the
    // next one, which may make the rank itself or its peers ready.
    std::vector<std::size_t> ready;
    for (std::size_t a = 0; a < P_; ++a) {
      if (!done(a)) post(a, 0.0, ready);
    }
    while (!ready.empty()) {
      const std::size_t a = ready.back();
      ready.pop_back();
      complete(a);
      ranks_[a].posted = false;
      if (!done(a)) post(a, ranks_[a].finish_time, ready);
    }
    std::string stuck;
    int listed = 0;
    for (std::size_t a = 0; a < P_; ++a) {
      if (done(a)) continue;
      if (listed++ == 4) {
        stuck += "; ...";
        break;
      }
      const sim_rank& R = ranks_[a];
      const schedule& s = *R.sched;
      for (std::size_t i = s.step_begin[R.step]; i < s.step_begin[R.step + 1]; ++i) {
        const op& o = s.ops[i];
        if (o.code == op_code::copy) continue;
        const std::size_t b = static_cast<std::size_t>(R.partner_rank[i]);
        const sim_rank& B = ranks_[b];
        if (posted(b, R.partner_op[i])) continue;
        if (!stuck.empty()) stuck += "; ";
        stuck += "rank " + std::to_string(a) + " waits in step " + std::to_string(R.step) +
                 " on its " + code_name(o.code) + (o.code == op_code::send ? " to" : " from") +
                 " rank " + std::to_string(o.peer) + " (tag " + std::to_string(o.tag) +
                 "), which rank " + std::to_string(o.peer) + " posts only in its step " +
                 std::to_string(B.op_step[R.partner_op[i]]);
        break;
      }
    }
    if (listed > 0) fail("deadlock: " + stuck);
    for (const sim_rank& R : ranks_) {
      if (R.finish_time > res_.time ||
          (R.finish_time == res_.time && R.finish_hops > res_.critical_hops)) {
        res_.time = R.finish_time;
        res_.critical_hops = R.finish_hops;
      }
    }
  }

  // ---- verification -----------------------------------------------------------------

  void expect(std::size_t a, std::size_t i, sym_value want) const {
    const sim_rank& R = ranks_[a];
    const sim_mapping& m = R.map[1];
    const sym_value got = R.mem[m.array][m.base + i];
    if (!(got == want)) {
      fail("wrong result: rank " + std::to_string(a) + " output element " + std::to_string(i) +
           " holds " + describe(got) + " but should hold " + describe(want));
    }
  }

  void verify() {
    const params& p = ps_[0];
    const std::uint64_t all = size_ == 64 ? ~std::uint64_t{0} : (std::uint64_t{1} << P_) - 1;
    const std::size_t root = static_cast<std::size_t>(p.root);
    std::vector<std::size_t> off(1, 0);
    for (std::size_t c : p.counts) off.push_back(off.back() + c);
    auto bit = [](std::size_t r) { return std::uint64_t{1} << r; };
    switch (kind_) {
      case collective::all_reduce:
        for (std::size_t a = 0; a < P_; ++a) {
          for (std::size_t i = 0; i < p.count; ++i) expect(a, i, {all, i});
        }
        break;
      case collective::reduce_scatter:
        for (std::size_t a = 0; a < P_; ++a) {
          for (std::size_t i = 0; i < p.counts[a]; ++i) expect(a, i, {all, off[a] + i});
        }
        break;
      case collective::all_gather:
        for (std::size_t a = 0; a < P_; ++a) {
          for (std::size_t j = 0; j < P_; ++j) {
            for (std::size_t i = 0; i < p.counts[j]; ++i) expect(a, off[j] + i, {bit(j), i});
          }
        }
        break;
      case collective::broadcast:
        for (std::size_t a = 0; a < P_; ++a) {
          for (std::size_t i = 0; i < p.count; ++i) expect(a, i, {bit(root), i});
        }
        break;
      case collective::reduce:
        for (std::size_t i = 0; i < p.count; ++i) expect(root, i, {all, i});
        break;
      case collective::barrier:
        for (std::size_t a = 0; a < P_; ++a) {
          const std::uint64_t missing = all & ~ranks_[a].know;
          if (missing != 0) {
            fail("barrier broken: rank " + std::to_string(a) +
                 " can leave before it heard that ranks " + ranks_of(missing) + " entered");
          }
        }
        break;
      case collective::all_to_all:
        for (std::size_t a = 0; a < P_; ++a) {
          for (std::size_t j = 0; j < P_; ++j) {
            for (std::size_t i = 0; i < ps_[a].recv_counts[j]; ++i) {
              expect(a, ps_[a].recv_offsets[j] + i, {bit(j), ps_[j].send_offsets[a] + i});
            }
          }
        }
        break;
      case collective::gather:
        for (std::size_t j = 0; j < P_; ++j) {
          for (std::size_t i = 0; i < p.counts[j]; ++i) expect(root, off[j] + i, {bit(j), i});
        }
        break;
      case collective::scatter:
        for (std::size_t a = 0; a < P_; ++a) {
          for (std::size_t i = 0; i < p.counts[a]; ++i) expect(a, i, {bit(root), off[a] + i});
        }
        break;
    }
  }

  std::span<const schedule> scheds_;
  std::span<const params> ps_;
  simulate_options opt_;
  simulation_result& res_;
  int size_ = 0;
  std::size_t P_ = 0;
  collective kind_ = collective::all_reduce;
  bool values_ = true;
  std::vector<sim_rank> ranks_;
  std::vector<std::vector<int>> host_senders_;
  struct access {
    sim_interval iv;
    std::size_t op;
    bool reduce;
  };
  std::vector<access> writes_, reads_, merged_;  // check_hazards' working space
  std::vector<sym_value> buf_, mine_;            // complete's working space
};

using simulator = simulator_impl<true>;

/// Runs `schedules` (one per rank, `rank_params[r]` describing rank r's call) for their time
/// and statistics only, without the checks of `simulate`: for schedules that `build` made,
/// which the tests prove. An error (a deadlock, an unmatched message) still fails it.
inline simulation_result time_schedules(std::span<const schedule> schedules,
                                        std::span<const params> rank_params,
                                        const cost_model& cost) {
  simulation_result res;
  simulate_options options;
  options.check_values = false;
  options.cost = cost;
  try {
    simulator_impl<false> sim(schedules, rank_params, options, res);
    sim.run();
    res.ok = true;
  } catch (const sim_error& e) {
    res.ok = false;
    res.error = e.what;
  }
  return res;
}

}  // namespace detail

/// Runs the given schedules, one per rank, with `rank_params[r]` describing rank r's call
/// (all ranks must agree on kind, size, root, count, counts, chunk_count and hosts; all_to_all
/// counts must be consistent across ranks). Never throws except for allocation failure.
inline simulation_result simulate(std::span<const schedule> schedules,
                                  std::span<const params> rank_params,
                                  const simulate_options& options = {}) {
  simulation_result res;
  try {
    detail::simulator sim(schedules, rank_params, options, res);
    sim.run();
    res.ok = true;
  } catch (const detail::sim_error& e) {
    res.ok = false;
    res.error = e.what;
  }
  return res;
}

/// Every rank's schedule, `build(a, rank_params[r])`; nullopt when a rank's build throws
/// (a layout the family cannot run), with the rank and the reason in `why` when given.
inline std::optional<std::vector<schedule>> build_every_rank(algorithm a,
                                                             std::span<const params> rank_params,
                                                             std::string* why = nullptr) {
  std::vector<schedule> schedules;
  schedules.reserve(rank_params.size());
  for (std::size_t r = 0; r < rank_params.size(); ++r) {
    try {
      schedules.push_back(build(a, rank_params[r]));
    } catch (const std::exception& e) {
      if (why != nullptr) *why = "build failed for rank " + std::to_string(r) + ": " + e.what();
      return std::nullopt;
    }
  }
  return schedules;
}

/// Builds every rank's schedule with `build(a, rank_params[r])` and simulates them.
inline simulation_result simulate(algorithm a, std::span<const params> rank_params,
                                  const simulate_options& options = {}) {
  simulation_result res;
  const auto schedules = build_every_rank(a, rank_params, &res.error);
  if (!schedules) return res;
  return simulate(*schedules, rank_params, options);
}

/// The params of every rank: `common` with `rank` set to 0..size-1.
inline std::vector<params> params_for_all_ranks(const params& common) {
  std::vector<params> ps(static_cast<std::size_t>(common.size < 0 ? 0 : common.size), common);
  for (std::size_t r = 0; r < ps.size(); ++r) ps[r].rank = static_cast<int>(r);
  return ps;
}

/// Builds and simulates `common` on every rank (not for all_to_all with unequal counts).
inline simulation_result simulate(algorithm a, const params& common,
                                  const simulate_options& options = {}) {
  const std::vector<params> ps = params_for_all_ranks(common);
  return simulate(a, std::span<const params>(ps), options);
}

}  // namespace chorus::inline v0::schedule

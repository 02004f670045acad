// The bytes chorus says it moved are the bytes the transport moved: every executor counts
// what it hands to the transport into the communicator (communicator::traffic), and the
// compression ledger adds those counters up. Checked here against a transport that counts
// for itself (support/counting_transport.hpp), over real processes on shared memory, for
// every algorithm and path: two-sided schedules, one-sided with gets, one-sided with loads
// from mapped windows, and each compression path.
#include "../support/counting_transport.hpp"
#include "../support/processes.hpp"

#include <chorus/compress/compress.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace {

using harness::windows;
template <windows W>
using counted = harness::counting_transport<chorus::shm_transport, W>;

template <windows W, class Fn>
void run_counted(int ranks, const std::string& name, Fn fn, chorus::communicator_options o = {}) {
  const std::string job = harness::unique_job(name);
  harness::process_options options;
  options.comm = o;
  auto results = harness::run_processes_with(
      ranks,
      [&job](int rank, int size, const chorus::blob_exchange& exchange) {
        return counted<W>(chorus::shm_transport(rank, size, job, exchange));
      },
      fn, options);
  INFO("ranks = " << ranks);
  harness::require_all_ok(results);
  REQUIRE(harness::shm_leftovers(job).empty());
}

std::string describe(const chorus::traffic& t) {
  return "sent " + std::to_string(t.sent_bytes) + " B in " + std::to_string(t.messages_sent) +
         ", received " + std::to_string(t.received_bytes) + " B in " +
         std::to_string(t.messages_received);
}

/// Runs `call()` and checks that the communicator's count of it equals the transport's.
template <class Comm, class Call>
void expect_counted(Comm& comm, harness::failures& f, const std::string& what, Call call) {
  const chorus::traffic before = comm.transport().count;
  call();
  chorus::traffic moved = comm.transport().count;
  moved.sent_bytes -= before.sent_bytes;
  moved.received_bytes -= before.received_bytes;
  moved.messages_sent -= before.messages_sent;
  moved.messages_received -= before.messages_received;
  if (!(comm.last_traffic() == moved)) {
    f.add(what + ": the communicator counted " + describe(comm.last_traffic()) +
          ", the transport " + describe(moved));
  }
  if (comm.size() > 1 && moved.sent_bytes + moved.received_bytes == 0) {
    f.add(what + ": nothing moved");
  }
}

/// Every algorithm of the three bandwidth collectives and automatic, plus a rooted one and
/// all-to-all; `one_sided` where the transport shows windows.
template <class Comm>
void every_path(Comm& comm, harness::failures& f) {
  using chorus::schedule::algorithm;
  using chorus::schedule::collective;
  const std::size_t n = 30011;  // not a multiple of any rank count: uneven blocks
  const auto p = static_cast<std::size_t>(comm.size());
  std::vector<float> in(n * p, 1.0f), out(n * p);
  constexpr bool windows = chorus::one_sided_transport<typename Comm::transport_type>;
  for (auto a : chorus::schedule::all_algorithms) {
    if (!windows && !chorus::schedule::has_schedule(a)) continue;
    const chorus::algo::dynamic d{a, 4096};
    const std::string name(chorus::schedule::name(a));
    if (chorus::schedule::supports(a, collective::all_reduce)) {
      expect_counted(comm, f, "all_reduce " + name, [&] {
        chorus::all_reduce(comm, std::span(in).first(n), std::span(out).first(n), chorus::plus{},
                           d);
      });
    }
    if (chorus::schedule::supports(a, collective::reduce_scatter)) {
      expect_counted(comm, f, "reduce_scatter " + name, [&] {
        chorus::reduce_scatter(comm, in, std::span(out).first(n), chorus::plus{}, d);
      });
    }
    if (chorus::schedule::supports(a, collective::all_gather)) {
      expect_counted(comm, f, "all_gather " + name,
                     [&] { chorus::all_gather(comm, std::span(in).first(n), out, d); });
    }
    if (chorus::schedule::supports(a, collective::broadcast)) {
      expect_counted(comm, f, "broadcast " + name,
                     [&] { chorus::broadcast(comm, std::span(out).first(n), 1, d); });
    }
  }
  expect_counted(comm, f, "all_reduce automatic",
                 [&] { chorus::all_reduce(comm, std::span(out).first(n), chorus::plus{}); });
  expect_counted(comm, f, "all_to_all", [&] { chorus::all_to_all(comm, in, out); });
}

/// Each compression path: the ledger's sent and received bytes are the transport's.
template <class Comm>
void every_compression_path(Comm& comm, harness::failures& f) {
  namespace cc = chorus::compress;
  const std::size_t n = 40000;
  std::vector<float> g(n);
  for (std::size_t i = 0; i < n; ++i) g[i] = float((i * 7 + 3 * std::size_t(comm.rank())) % 13);
  auto check = [&](const std::string& what, auto call) {
    cc::ledger book;
    const chorus::traffic before = comm.transport().count;
    call(book);
    const chorus::traffic& now = comm.transport().count;
    const auto sent = now.sent_bytes - before.sent_bytes;
    const auto received = now.received_bytes - before.received_bytes;
    if (book.last().sent_bytes != sent || book.last().received_bytes != received) {
      f.add(what + ": the ledger booked sent " + std::to_string(book.last().sent_bytes) +
            " B, received " + std::to_string(book.last().received_bytes) +
            " B; the transport moved " + std::to_string(sent) + " and " + std::to_string(received));
    }
    if (received == 0) f.add(what + ": nothing moved");
  };
  check("cast (sum path)", [&](cc::ledger& b) {
    chorus::all_reduce(comm, g, chorus::plus{}, cc::cast<chorus::half>{}, b);
  });
  check("top_k (gather path)", [&](cc::ledger& b) {
    chorus::all_reduce(comm, g, chorus::plus{}, cc::top_k{.ratio = 0.05}, b, cc::gather_path{});
  });
  check("top_k (two_stage)", [&](cc::ledger& b) {
    chorus::all_reduce(comm, g, chorus::plus{}, cc::top_k{.ratio = 0.05}, b, cc::two_stage{});
  });
  check("scaled_sign (two_stage)", [&](cc::ledger& b) {
    chorus::all_reduce(comm, g, chorus::average{}, cc::scaled_sign{}, b, cc::two_stage{});
  });
  cc::power_sgd_state state;
  check("power_sgd", [&](cc::ledger& b) {
    chorus::all_reduce(comm, g, chorus::plus{},
                       cc::power_sgd{.rank = 2, .rows = 200, .state = &state}, b);
  });
  const auto p = static_cast<std::size_t>(comm.size());
  std::vector<float> block(n / p);
  check("reduce_scatter cast", [&](cc::ledger& b) {
    chorus::reduce_scatter(comm, std::span(g).first(block.size() * p), block, chorus::plus{},
                           cc::cast<chorus::bfloat16>{}, b);
  });
}

/// A tuner that runs every collective one-sidedly where it can: compression's collectives
/// then take the one-sided path too.
chorus::communicator_options one_sided_everywhere() {
  chorus::communicator_options o;
  o.tuner = [](const chorus::schedule::tuning_query& q) -> chorus::schedule::tuning_choice {
    if (q.ranks > 1 && chorus::schedule::supports(chorus::schedule::algorithm::one_sided, q.kind)) {
      return {chorus::schedule::algorithm::one_sided};
    }
    return chorus::schedule::default_tuning(q);
  };
  return o;
}

}  // namespace

TEST_CASE("traffic: two-sided schedules count what the transport moved") {
  for (int ranks : {2, 3, 4}) {
    run_counted<windows::none>(ranks, "traffic2", [](auto& comm, harness::failures& f) {
      every_path(comm, f);
      every_compression_path(comm, f);
    });
  }
}

TEST_CASE("traffic: one-sided with gets counts what the transport moved") {
  for (int ranks : {2, 3, 4}) {
    run_counted<windows::get_put>(
        ranks, "traffic1",
        [](auto& comm, harness::failures& f) {
          every_path(comm, f);
          every_compression_path(comm, f);  // through the one-sided tuner
          // no barrier before leaving: a one-sided call over gets returns only once no peer
          // reads this rank's window any more (its closing `done` exchange), so the rank may
          // exit at once -- without that, a peer's last get failed (process_vm_readv: "No such
          // process"), and over UCX the exiting rank crashed serving it
        },
        one_sided_everywhere());
  }
}

TEST_CASE("traffic: one-sided with loads counts every byte read from peers' windows") {
  for (int ranks : {2, 3, 4}) {
    const std::string job = harness::unique_job("trafficm");
    auto results = harness::run_processes(ranks, job, [](auto& comm, harness::failures& f) {
      const auto p = static_cast<std::size_t>(comm.size());
      const auto r = static_cast<std::size_t>(comm.rank());
      const std::size_t n = 100003;
      std::vector<float> v(n, 1.0f);
      chorus::all_reduce(comm, v, chorus::plus{}, chorus::algo::one_sided{});
      // rank r reduces its block out of P - 1 peers' windows, then reads every other block
      const std::size_t mine = n / p + (r < n % p ? 1 : 0);
      const std::uint64_t want = ((p - 1) * mine + (n - mine)) * sizeof(float);
      const chorus::traffic& t = comm.last_traffic();
      if (t.received_bytes != want || t.sent_bytes != 0) {
        f.add("one-sided all_reduce: " + std::to_string(t.received_bytes) + " B received, " +
              std::to_string(t.sent_bytes) + " B sent; want " + std::to_string(want) + " and 0");
      }
      if (v[0] != float(p)) f.add("wrong sum");
    });
    INFO("ranks = " << ranks);
    harness::require_all_ok(results);
  }
}

// Compressed collectives over inproc ranks: every path against a serial reference, byte
// counters against the formulas, PowerSGD's exactness, fp16 range, errors, and the report.
#include "support/harness.hpp"

#include <chorus/compress/compress.hpp>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <limits>
#include <mutex>
#include <span>
#include <stdexcept>
#include <thread>
#include <vector>

namespace cc = chorus::compress;
using harness::run_ranks;

namespace {
/// Rank r's gradient: smooth, different per rank, not sparse.
template <class T>
std::vector<T> gradient(int rank, std::size_t n, std::uint64_t step = 0) {
  std::vector<T> g(n);
  for (std::size_t i = 0; i < n; ++i)
    g[i] = static_cast<T>(std::sin(0.37 * double(i) + 1.3 * rank + 0.11 * double(step)) *
                          (1.0 + double(i % 7)));
  return g;
}
/// Small integers: every sum is exact in every type, half included.
template <class T>
std::vector<T> integers(int rank, std::size_t n) {
  std::vector<T> g(n);
  for (std::size_t i = 0; i < n; ++i)
    g[i] = static_cast<T>(int((i * 5 + std::size_t(rank) * 3) % 11) - 5);
  return g;
}
template <class T>
std::vector<T> integer_sum(int ranks, std::size_t n) {
  std::vector<T> s(n, T(0));
  for (int r = 0; r < ranks; ++r) {
    const auto g = integers<T>(r, n);
    for (std::size_t i = 0; i < n; ++i) s[i] += g[i];
  }
  return s;
}
}  // namespace

TEST_CASE("gather path: the decoded sum of every rank's payload, identical on every rank") {
  for (int ranks : {2, 3, 4, 7}) {
    harness::failures f;
    std::mutex m;
    std::vector<std::vector<double>> results(static_cast<std::size_t>(ranks));
    run_ranks(ranks, [&](chorus::inproc_communicator& comm) {
      const std::size_t n = 1000;
      const cc::top_k codec{.ratio = 0.02};
      auto g = gradient<double>(comm.rank(), n);
      cc::ledger book;
      chorus::all_reduce(comm, g, chorus::plus{}, codec, book, cc::gather_path{});
      // serial reference: decode every rank's payload in rank order
      std::vector<double> want(n, 0.0);
      for (int j = 0; j < comm.size(); ++j) {
        const auto x = gradient<double>(j, n);
        std::vector<std::byte> w(codec.wire_bytes<double>(n));
        codec.encode(std::span<const double>(x), std::span(w), {});
        codec.decode_add(std::span<const std::byte>(w), std::span<double>(want), {});
      }
      if (g != want) f.add("rank " + std::to_string(comm.rank()) + ": result differs");
      // bytes: this rank's payload 20 x (4 + 8); at 2 and 4 ranks (recursive doubling
      // without folding) it goes to each of the P - 1 others once
      if (book.last().payload_bytes != 20 * 12) f.add("payload bytes");
      if ((ranks == 2 || ranks == 4) &&
          book.last().sent_bytes != std::uint64_t(comm.size() - 1) * 20 * 12) {
        f.add("sent bytes " + std::to_string(book.last().sent_bytes));
      }
      std::lock_guard lock(m);
      results[static_cast<std::size_t>(comm.rank())] = g;
    });
    INFO(f.report());
    CHECK(f.count() == 0);
    for (const auto& r : results) CHECK(r == results[0]);
  }
}

TEST_CASE("sum path: cast and none reduce in the compressed domain") {
  const int ranks = 4;
  harness::failures f;
  run_ranks(ranks, [&](chorus::inproc_communicator& comm) {
    const std::size_t n = std::size_t{1} << 18;  // 1 MiB of float: the ring on both sides
    cc::ledger book;
    auto g = integers<float>(comm.rank(), n);
    chorus::all_reduce(comm, g, chorus::plus{}, cc::cast<chorus::half>{}, book);
    if (g != integer_sum<float>(ranks, n)) f.add("cast<half> sum");
    // ring all-reduce: 2 (P - 1) blocks of n / P elements, 2 bytes instead of 4
    const std::uint64_t ring_elems = 2 * 3 * (n / 4);
    if (book.last().sent_bytes != ring_elems * 2) f.add("cast sent bytes");
    if (book.last().plain_bytes != ring_elems * 4) f.add("cast plain bytes");
    if (book.last().payload_bytes != n * 2) f.add("cast payload bytes");

    auto a = integers<double>(comm.rank(), 999);
    chorus::all_reduce(comm, a, chorus::average{}, cc::none{}, book, cc::sum_path{}, cc::tensor{1});
    auto want = integer_sum<double>(ranks, 999);
    for (auto& v : want) v /= ranks;
    if (a != want) f.add("none average");
    if (book.last().sent_bytes != book.last().plain_bytes) f.add("none sends what plain sends");

    // random_k: one shared index set, so the sum path is exact on the kept elements
    auto b = gradient<double>(comm.rank(), 500);
    chorus::all_reduce(comm, b, chorus::plus{}, cc::random_k{.ratio = 0.1, .seed = 3}, book);
    std::size_t nonzero = 0;
    for (double v : b) nonzero += v != 0;
    if (nonzero != 50) f.add("random_k kept " + std::to_string(nonzero));
  });
  INFO(f.report());
  CHECK(f.count() == 0);
}

TEST_CASE("cast<half>: 8 ranks each holding 1e4 overflow half unless pre-divided") {
  harness::failures f;
  run_ranks(8, [&](chorus::inproc_communicator& comm) {
    cc::ledger book;
    std::vector<float> plain(16, 1e4f), divided(16, 1e4f);
    chorus::all_reduce(comm, plain, chorus::plus{}, cc::cast<chorus::half>{}, book);
    chorus::all_reduce(comm, divided, chorus::plus{}, cc::cast<chorus::half>{.pre_divide = true},
                       book);
    if (!std::isinf(plain[0])) f.add("without pre-division the half sum should overflow");
    for (float v : divided) {
      if (v != 8e4f) f.add("pre-divided sum " + std::to_string(v));
    }
  });
  INFO(f.report());
  CHECK(f.count() == 0);
}

TEST_CASE("two-stage path: all-to-all, owner decode-sum-re-encode, all-gather") {
  for (int ranks : {1, 3, 4, 8}) {
    harness::failures f;
    run_ranks(ranks, [&](chorus::inproc_communicator& comm) {
      const std::size_t n = 1000;
      cc::ledger book;
      // a lossless codec through two stages is exact
      auto g = integers<double>(comm.rank(), n);
      chorus::all_reduce(comm, g, chorus::plus{}, cc::top_k{.ratio = 1.0}, book, cc::two_stage{});
      if (g != integer_sum<double>(comm.size(), n)) f.add("top_k(1.0) two-stage");
      // block_quant: both quantisations within their steps of the exact sum
      auto q = gradient<double>(comm.rank(), n);
      std::vector<double> exact(n, 0.0);
      for (int j = 0; j < comm.size(); ++j) {
        const auto x = gradient<double>(j, n);
        for (std::size_t i = 0; i < n; ++i) exact[i] += x[i];
      }
      chorus::all_reduce(comm, q, chorus::plus{}, cc::block_quant<std::int8_t>{.block = 32}, book);
      for (std::size_t i = 0; i < n; ++i) {
        // each of P inputs (|x| <= 7) and the sum (|s| <= 7 P) off by at most half a step
        const double bound = (7.0 * comm.size() / 127 / 2) * 2 + 1e-9;
        if (std::abs(q[i] - exact[i]) > bound) {
          f.add("block_quant two-stage element " + std::to_string(i));
          break;
        }
      }
      // bytes: block j (about n / P elements) to each other rank, then this rank's block to
      // each other rank again
      if (comm.size() == 4) {
        const cc::top_k t{.ratio = 0.01};
        auto h = gradient<float>(comm.rank(), n);
        chorus::all_reduce(comm, h, chorus::plus{}, t, book);  // automatic = two_stage here
        const std::uint64_t block = t.wire_bytes<float>(250);  // 3 x 8 bytes
        if (book.last().payload_bytes != 4 * block + block) f.add("payload bytes (4 out, 1 back)");
        if (book.last().sent_bytes != 3 * block + 3 * block) {
          f.add("sent bytes " + std::to_string(book.last().sent_bytes));
        }
      }
    });
    INFO("ranks " << ranks << ": " << f.report());
    CHECK(f.count() == 0);
  }
}

TEST_CASE("error feedback through the collective conserves every rank's gradient") {
  const int ranks = 4;
  const std::size_t n = 300;
  harness::failures f;
  std::mutex m;
  std::vector<double> sum_results(n, 0.0), sum_residuals(n, 0.0), sum_gradients(n, 0.0);
  run_ranks(ranks, [&](chorus::inproc_communicator& comm) {
    cc::ledger book;
    cc::residual<double> res;
    std::vector<double> results(n, 0.0), grads(n, 0.0);
    for (std::uint64_t step = 0; step < 100; ++step) {
      auto g = gradient<double>(comm.rank(), n, step);
      for (std::size_t i = 0; i < n; ++i) grads[i] += g[i];
      chorus::all_reduce(comm, g, chorus::plus{}, cc::error_feedback{cc::top_k{.ratio = 0.02}, res},
                         book, cc::gather_path{});
      for (std::size_t i = 0; i < n; ++i) results[i] += g[i];
    }
    if (res.bytes() != n * sizeof(double)) f.add("one worker residual of n elements");
    std::lock_guard lock(m);
    const auto r = res.view(0);
    for (std::size_t i = 0; i < n; ++i) {
      sum_residuals[i] += r[i];
      sum_gradients[i] += grads[i];
      if (comm.rank() == 0) sum_results[i] = results[i];  // identical on every rank
    }
  });
  CHECK(f.count() == 0);
  double worst = 0, held = 0;
  for (std::size_t i = 0; i < n; ++i) {
    worst = std::max(worst, std::abs(sum_results[i] + sum_residuals[i] - sum_gradients[i]));
    held += std::abs(sum_residuals[i]);
  }
  CHECK(worst <= 1e-12);
  CHECK(held > 1.0);

  // two-stage keeps the server residual for this rank's shard only: n / P, not n
  run_ranks(ranks, [&](chorus::inproc_communicator& comm) {
    cc::ledger book;
    cc::residual<float> res;
    auto g = gradient<float>(comm.rank(), 400);
    chorus::all_reduce(comm, g, chorus::average{}, cc::error_feedback{cc::scaled_sign{}, res}, book,
                       cc::two_stage{}, cc::tensor{7});
    if (res.view(cc::residual<float>::server_key(7)).size() != 100) f.add("server residual size");
    if (res.view(7).size() != 400) f.add("worker residual size");
  });
  CHECK(f.count() == 0);
}

TEST_CASE("power_sgd reconstructs a rank-r sum exactly in one step, zero columns included") {
  const std::size_t rows = 12, cols = 9;
  auto u = [](std::size_t i) { return std::cos(0.5 * double(i)) + 0.25; };
  auto v = [](std::size_t j) { return double(j % 4) - 1.5; };
  auto w = [](std::size_t i) { return double(i * i % 5) - 2.0; };
  auto z = [](std::size_t j) { return std::sin(1.0 + double(j)); };
  auto matrix = [&](int rank) {  // a_r u v^T + b_r w z^T: the sum over ranks has rank 2
    std::vector<double> m(rows * cols);
    for (std::size_t i = 0; i < rows; ++i)
      for (std::size_t j = 0; j < cols; ++j)
        m[i * cols + j] = (1.0 + rank) * u(i) * v(j) + (2.0 - 0.5 * rank) * w(i) * z(j);
    return m;
  };
  for (std::size_t rank : {std::size_t{2}, std::size_t{3}}) {  // 3: one column must vanish
    harness::failures f;
    run_ranks(4, [&](chorus::inproc_communicator& comm) {
      cc::power_sgd_state q;
      cc::ledger book;
      auto g = matrix(comm.rank());
      chorus::all_reduce(comm, g, chorus::plus{},
                         cc::power_sgd{.rank = rank, .rows = rows, .state = &q}, book);
      std::vector<double> want(rows * cols, 0.0);
      for (int r = 0; r < comm.size(); ++r) {
        const auto m = matrix(r);
        for (std::size_t i = 0; i < m.size(); ++i) want[i] += m[i];
      }
      for (std::size_t i = 0; i < want.size(); ++i) {
        if (!(std::abs(g[i] - want[i]) <= 1e-9 * (1 + std::abs(want[i])))) {
          f.add("element " + std::to_string(i) + ": " + std::to_string(g[i]) + " vs " +
                std::to_string(want[i]));
          break;
        }
      }
      if (book.last().payload_bytes != (rows + cols) * rank * sizeof(double)) f.add("payload");
      if (q.q.size() != cols * rank) f.add("warm-start Q kept");
      // an all-zero gradient gives zeros, not NaN
      std::vector<double> zero(rows * cols, 0.0);
      chorus::all_reduce(comm, zero, chorus::plus{},
                         cc::power_sgd{.rank = rank, .rows = rows, .state = &q}, book);
      for (double x : zero) {
        if (x != 0.0) {
          f.add("zero gradient gave " + std::to_string(x));
          break;
        }
      }
    });
    INFO("rank " << rank << ": " << f.report());
    CHECK(f.count() == 0);
  }
}

TEST_CASE("compressed reduce_scatter and all_gather") {
  for (int ranks : {1, 2, 5}) {
    harness::failures f;
    run_ranks(ranks, [&](chorus::inproc_communicator& comm) {
      const auto p = static_cast<std::size_t>(comm.size());
      const std::size_t block = 40;
      cc::ledger book;
      const auto in = integers<float>(comm.rank(), block * p);
      const auto sum = integer_sum<float>(comm.size(), block * p);
      std::vector<float> out(block);
      const std::size_t mine = static_cast<std::size_t>(comm.rank()) * block;
      // summable: the payload elements are reduce-scattered
      chorus::reduce_scatter(comm, in, out, chorus::plus{}, cc::cast<chorus::bfloat16>{}, book);
      for (std::size_t i = 0; i < block; ++i)
        if (out[i] != sum[mine + i]) f.add("cast reduce_scatter");
      // not summable: all-to-all + decode-sum; lossless top_k(1.0) is exact
      chorus::reduce_scatter(comm, in, out, chorus::average{}, cc::top_k{.ratio = 1.0}, book);
      for (std::size_t i = 0; i < block; ++i)
        if (out[i] != sum[mine + i] / float(p)) f.add("top_k reduce_scatter average");
      // uneven blocks
      std::vector<std::size_t> counts(p);
      for (std::size_t j = 0; j < p; ++j) counts[j] = j % 2 ? 0 : 3 + j;
      std::size_t total = 0;
      for (auto c : counts) total += c;
      const auto vin = integers<double>(comm.rank(), total);
      const auto vsum = integer_sum<double>(comm.size(), total);
      std::vector<double> vout(counts[static_cast<std::size_t>(comm.rank())]);
      chorus::reduce_scatter_v(comm, vin, vout, counts, chorus::plus{}, cc::scaled_sign{}, book);
      chorus::reduce_scatter_v(comm, vin, vout, counts, chorus::plus{}, cc::none{}, book);
      std::size_t off = 0;
      for (std::size_t j = 0; j < static_cast<std::size_t>(comm.rank()); ++j) off += counts[j];
      for (std::size_t i = 0; i < vout.size(); ++i)
        if (vout[i] != vsum[off + i]) f.add("none reduce_scatter_v");
      // all_gather: every block decoded in place
      std::vector<float> all(block * p);
      chorus::all_gather(comm, out, all, cc::cast<chorus::half>{}, book);
      std::vector<float> want_all(block * p);
      for (std::size_t j = 0; j < p; ++j)
        for (std::size_t i = 0; i < block; ++i)
          want_all[j * block + i] = float(chorus::half(sum[j * block + i] / float(p)));
      if (all != want_all) f.add("all_gather");
      if (p > 1 && book.last().sent_bytes * 2 != book.last().plain_bytes) f.add("all_gather bytes");
    });
    INFO("ranks " << ranks << ": " << f.report());
    CHECK(f.count() == 0);
  }
}

TEST_CASE("reruns are bit-identical; stochastic noise differs per rank") {
  std::vector<std::vector<float>> first(4), second(4);
  for (auto* out : {&first, &second}) {
    run_ranks(4, [&](chorus::inproc_communicator& comm) {
      cc::ledger book;
      auto g = gradient<float>(comm.rank(), 777);
      chorus::all_reduce(comm, g, chorus::plus{}, cc::qsgd{.levels = 8, .seed = 1}, book,
                         cc::gather_path{});
      chorus::all_reduce(comm, g, chorus::plus{}, cc::terngrad{.seed = 1}, book);
      (*out)[static_cast<std::size_t>(comm.rank())] = g;
    });
  }
  CHECK(first == second);
  for (const auto& r : first) CHECK(r == first[0]);
}

TEST_CASE("errors name what is wrong before any byte moves") {
  harness::failures f;
  run_ranks(2, [&](chorus::inproc_communicator& comm) {
    cc::ledger book;
    cc::residual<float> res;
    std::vector<float> g(100, 1.0f), small(10, 1.0f);
    chorus::all_reduce(comm, g, chorus::plus{}, cc::error_feedback{cc::top_k{.ratio = 0.1}, res},
                       book);
    try {
      chorus::all_reduce(comm, small, chorus::plus{},
                         cc::error_feedback{cc::top_k{.ratio = 0.1}, res}, book);
      f.add("a residual of another size must be refused");
    } catch (const chorus::error& e) {
      if (std::string(e.what()).find("compress::tensor{id}") == std::string::npos) f.add(e.what());
    }
    try {
      chorus::all_reduce(comm, g, chorus::plus{}, cc::power_sgd{.rank = 2, .rows = 10}, book);
      f.add("power_sgd without state must be refused");
    } catch (const chorus::error& e) {
      if (std::string(e.what()).find(".state") == std::string::npos) f.add(e.what());
    }
    try {
      std::vector<float> out(7);
      chorus::reduce_scatter(comm, g, out, chorus::plus{}, cc::none{}, book);
      f.add("a wrong output size must be refused");
    } catch (const chorus::error& e) {
      if (e.code() != chorus::errc::invalid_argument) f.add(e.what());
    }
    // the communicator is still usable
    chorus::all_reduce(comm, g, chorus::plus{}, cc::none{}, book);
    if (g[0] != 2.0f * 2.0f) f.add("usable after argument errors: " + std::to_string(g[0]));
  });
  INFO(f.report());
  CHECK(f.count() == 0);
}

TEST_CASE("ledger: the local work outside encode and decode is counted, collectives are not") {
  cc::ledger book;
  book.begin(1000);
  book.add_encode(0.001);
  std::this_thread::sleep_for(std::chrono::milliseconds(30));  // untimed local work
  book.add_collective(0.004);  // (pretend) 4 ms of the 30 were a collective
  book.end();
  const cc::ledger::totals& t = book.total();
  CHECK(t.collective_seconds == Approx(0.004));
  // The wall time was at least 30 ms: at least 30 - 4 - 1 = 25 ms were other local work.
  CHECK(t.other_seconds >= 0.025);
  const cc::report r(book);
  CHECK(r.codec_seconds() == Approx(r.encode_seconds + r.decode_seconds + r.other_seconds));
  CHECK(r.codec_seconds() >= 0.026);
  CHECK_THAT(r.to_string(), Catch::Contains("+ other"));
}

TEST_CASE("session: scratch is kept, so steady-state calls reuse it") {
  cc::session book;
  const std::span<float> a = book.scratch<float>(0, 1000);
  const std::span<float> b = book.scratch<float>(1, 10);
  CHECK(a.size() == 1000);
  CHECK(b.data() != a.data());
  CHECK(book.scratch<float>(0, 500).data() == a.data());  // smaller: the same memory
  CHECK(book.scratch<double>(0, 500).data() == static_cast<void*>(a.data()));
  // A compressed all-reduce allocates its payload buffers once: the second call of the same
  // size finds them in the communicator's session, with or without a ledger observing.
  run_ranks(2, [&](chorus::inproc_communicator& comm) {
    cc::ledger observer;
    cc::residual<float> res;
    std::vector<float> g(4096, 1.0f + static_cast<float>(comm.rank()));
    const auto policy = cc::error_feedback{cc::top_k{.ratio = 0.01}, res};
    chorus::all_reduce(comm, g, chorus::plus{}, policy, observer);
    cc::session& mine = cc::session_of(comm);
    const void* wire = mine.scratch<std::byte>(cc::detail::wire_slot, 0).data();
    const void* feedback = mine.scratch<std::byte>(cc::detail::feedback_slot, 0).data();
    chorus::all_reduce(comm, g, chorus::plus{}, policy);
    const bool same = mine.scratch<std::byte>(cc::detail::wire_slot, 0).data() == wire &&
                      mine.scratch<std::byte>(cc::detail::feedback_slot, 0).data() == feedback &&
                      wire != nullptr && feedback != nullptr;
    if (!same) throw std::logic_error("the second call reallocated its scratch");
    // the step counter of tensor 0 advanced once per call, observed or not
    if (mine.step(0) != 2) throw std::logic_error("tensor 0 is not at step 2");
  });
}

TEST_CASE("report: ratio, codec time and the break-even link rate") {
  cc::ledger book;
  for (int call = 0; call < 4; ++call) {
    book.begin(1000);
    book.add_traffic({.sent_bytes = 1000, .received_bytes = 1000});
    book.add_plain(8000);
    book.add_encode(0.002);
    book.add_decode(0.0015);
    book.end();
  }
  const cc::report r(book);
  CHECK(r.calls == 4);
  CHECK(r.ratio() == Approx(8.0));
  CHECK(r.codec_seconds() == Approx(0.0035));
  CHECK(r.break_even_bytes_per_second() == Approx(7000 / 0.0035));  // 2 MB/s
  // at the break-even rate both take the same time; below it compression wins
  const double be = r.break_even_bytes_per_second();
  CHECK(r.compressed_seconds(be) == Approx(r.plain_seconds(be)));
  CHECK(r.compressed_seconds(be / 2) < r.plain_seconds(be / 2));
  CHECK(r.compressed_seconds(be * 2) > r.plain_seconds(be * 2));
  CHECK_THAT(r.to_string(), Catch::Contains("ratio 8"));
  cc::ledger empty;
  CHECK(cc::report(empty).ratio() == 1.0);
  CHECK(cc::report(empty).break_even_bytes_per_second() == 0.0);
}

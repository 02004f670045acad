/// \file
/// hello_all_reduce: the quick start. Several ranks, one all-reduce, every algorithm.
///
/// N ranks (threads of this process, joined by the in-process transport; 4 by default) each
/// hold 1 Mi floats and sum them with `chorus::all_reduce`, once per algorithm chorus
/// offers. For each algorithm the program checks every element of every rank's result and
/// prints, like nccl-tests, the median time of a few runs, the algorithm bandwidth (bytes
/// of one rank's vector over time) and the bus bandwidth (algbw * 2(n-1)/n, the traffic a
/// ring moves per rank, which makes numbers comparable across rank counts).
///
///   hello_all_reduce [--ranks N | N] [--count ELEMENTS] [--iters RUNS]
///
/// Exits non-zero when any element is wrong or any algorithm fails.
#include <chorus/chorus.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace {

struct options {
  int ranks = 4;
  std::size_t count = std::size_t{1} << 20;  // 1 Mi floats, 4 MiB per rank
  int iters = 5;                             // timed runs; the median is reported
  int warmup = 1;                            // untimed runs first (page faults, thread start)
};

[[noreturn]] void usage(int status) {
  std::fprintf(status == 0 ? stdout : stderr,
               "usage: hello_all_reduce [--ranks N | N] [--count ELEMENTS] [--iters RUNS]\n");
  std::exit(status);
}

long parse_number(std::string_view text, long min) {
  char* end = nullptr;
  const std::string copy(text);
  const long value = std::strtol(copy.c_str(), &end, 10);
  if (copy.empty() || *end != '\0' || value < min) {
    std::fprintf(stderr, "hello_all_reduce: '%s' is not a number >= %ld\n", copy.c_str(), min);
    usage(2);
  }
  return value;
}

options parse(int argc, char** argv) {
  options opt;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    auto value = [&] {
      if (i + 1 >= argc) usage(2);
      return std::string_view(argv[++i]);
    };
    if (arg == "-h" || arg == "--help") {
      usage(0);
    } else if (arg == "--ranks") {
      opt.ranks = static_cast<int>(parse_number(value(), 1));
    } else if (arg == "--count") {
      opt.count = static_cast<std::size_t>(parse_number(value(), 0));
    } else if (arg == "--iters") {
      opt.iters = static_cast<int>(parse_number(value(), 1));
    } else if (!arg.empty() && arg[0] != '-') {
      opt.ranks = static_cast<int>(parse_number(arg, 1));
    } else {
      usage(2);
    }
  }
  return opt;
}

// Rank r's input: small integers, so that every partial sum is exact in float and the
// result can be checked with ==, whatever order an algorithm adds in.
float input(int rank, std::size_t i) {
  return static_cast<float>(rank + 1 + static_cast<int>(i % 8));
}

float expected(int ranks, std::size_t i) {
  return static_cast<float>(ranks * (ranks + 1) / 2 + ranks * static_cast<int>(i % 8));
}

struct result {
  double median_seconds = 0;
  long wrong = 0;
};

// Runs warmup + iters all-reduces of opt.count floats with `algo` on opt.ranks ranks. A run
// starts after a barrier; its time is the slowest rank's.
template <class Algorithm>
result measure(const options& opt, Algorithm algo) {
  using clock = std::chrono::steady_clock;
  std::vector<std::vector<double>> seconds(
      static_cast<std::size_t>(opt.ranks),
      std::vector<double>(static_cast<std::size_t>(opt.iters)));
  std::atomic<long> wrong = 0;

  chorus::inproc::run(opt.ranks, [&](chorus::inproc_communicator& comm) {
    const int rank = comm.rank();
    std::vector<float> in(opt.count);
    std::vector<float> out(opt.count);
    for (std::size_t i = 0; i < opt.count; ++i) in[i] = input(rank, i);

    long mine = 0;
    for (int it = -opt.warmup; it < opt.iters; ++it) {
      std::fill(out.begin(), out.end(), -1.0f);  // so that a missed element is seen
      chorus::barrier(comm);
      const auto start = clock::now();
      chorus::all_reduce(comm, std::span<const float>{in}, std::span{out}, chorus::plus{}, algo);
      const auto stop = clock::now();
      if (it >= 0) {
        seconds[static_cast<std::size_t>(rank)][static_cast<std::size_t>(it)] =
            std::chrono::duration<double>(stop - start).count();
      }
      for (std::size_t i = 0; i < opt.count; ++i) {
        if (out[i] != expected(comm.size(), i)) ++mine;
      }
    }
    wrong += mine;
  });

  std::vector<double> slowest(static_cast<std::size_t>(opt.iters), 0.0);
  for (const auto& per_rank : seconds) {
    for (std::size_t it = 0; it < slowest.size(); ++it) {
      slowest[it] = std::max(slowest[it], per_rank[it]);
    }
  }
  std::sort(slowest.begin(), slowest.end());
  const std::size_t mid = slowest.size() / 2;
  const double median =
      slowest.size() % 2 == 1 ? slowest[mid] : (slowest[mid - 1] + slowest[mid]) / 2;
  return {median, wrong.load()};
}

}  // namespace

int main(int argc, char** argv) {
  const options opt = parse(argc, argv);
  const double bytes = static_cast<double>(opt.count * sizeof(float));
  const double bus_factor = 2.0 * (opt.ranks - 1) / opt.ranks;

  std::printf(
      "chorus %s hello_all_reduce: %d ranks (threads, in-process transport), %zu floats "
      "(%.2f MB) each, sum, median of %d runs\n\n",
      CHORUS_VERSION_STRING, opt.ranks, opt.count, bytes / 1e6, opt.iters);
  std::printf("%-20s %12s %14s %14s %8s\n", "algorithm", "time (us)", "algbw (GB/s)",
              "busbw (GB/s)", "#wrong");

  int failures = 0;
  auto row = [&](std::string_view name, auto algo) {
    try {
      const result r = measure(opt, algo);
      const double algbw = r.median_seconds > 0 ? bytes / r.median_seconds / 1e9 : 0.0;
      std::printf("%-20.*s %12.1f %14.2f %14.2f %8ld\n", static_cast<int>(name.size()), name.data(),
                  r.median_seconds * 1e6, algbw, algbw * bus_factor, r.wrong);
      if (r.wrong != 0) ++failures;
    } catch (const chorus::error& e) {
      std::printf("%-20.*s chorus error: %s\n", static_cast<int>(name.size()), name.data(),
                  e.what());
      ++failures;
    } catch (const std::exception& e) {
      std::printf("%-20.*s error: %s\n", static_cast<int>(name.size()), name.data(), e.what());
      ++failures;
    }
  };
  row("ring", chorus::algo::ring{});
  row("tree", chorus::algo::tree{});
  row("double_binary_tree", chorus::algo::double_binary_tree{});
  row("recursive_doubling", chorus::algo::recursive_doubling{});
  row("halving_doubling", chorus::algo::halving_doubling{});
  row("direct", chorus::algo::direct{});
  row("automatic", chorus::algo::automatic{});

  std::printf("\n%s\n", failures == 0 ? "all results verified" : "FAILED: see the rows above");
  return failures == 0 ? 0 : 1;
}

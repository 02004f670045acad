/// \file
/// shm_all_reduce: the quick start's main job. N processes on this machine, started by
/// chorusrun (or torchrun, mpirun, srun), all-reduce over shared memory.
///
///     chorusrun -n 4 shm_all_reduce [--max-bytes BYTES] [--iters RUNS]
///
/// Each rank finds the job with `chorus::bootstrap::from_env()`, joins it with a
/// `chorus::shm_transport`, and sums float vectors from 8 bytes up to --max-bytes (x8 per
/// step) with every algorithm. Rank 0 prints, like nccl-tests, the time of the slowest rank
/// (median of the runs), the algorithm bandwidth and the bus bandwidth (algbw * 2(n-1)/n),
/// and the number of wrong elements over all ranks. Exits non-zero if any is wrong.
#include <chorus/chorus.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

namespace {

struct options {
  std::size_t max_bytes = std::size_t{16} << 20;
  int iters = 5;
};

options parse(int argc, char** argv) {
  options o;
  for (int i = 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    if ((a == "--max-bytes" || a == "--iters") && i + 1 < argc) {
      const long v = std::strtol(argv[++i], nullptr, 10);
      if (v < 1) {
        std::fprintf(stderr, "shm_all_reduce: %s needs a positive number\n", argv[i - 1]);
        std::exit(2);
      }
      if (a == "--max-bytes") o.max_bytes = static_cast<std::size_t>(v);
      if (a == "--iters") o.iters = static_cast<int>(v);
    } else {
      std::fprintf(stderr, "usage: chorusrun -n N shm_all_reduce [--max-bytes B] [--iters R]\n");
      std::exit(2);
    }
  }
  return o;
}

}  // namespace

int main(int argc, char** argv) try {
  const options opt = parse(argc, argv);
  const chorus::bootstrap::world world = chorus::bootstrap::from_env();
  chorus::communicator<chorus::shm_transport> comm{chorus::shm_transport{world}};
  const int p = comm.size();
  const int r = comm.rank();
  if (r == 0) {
    std::printf(
        "chorus %s shm_all_reduce: %d ranks (processes, shared memory), float sum, "
        "median of %d runs\n\n",
        CHORUS_VERSION_STRING, p, opt.iters);
    std::printf("%12s %10s %-20s %11s %9s %9s %7s\n", "size (B)", "count", "algorithm", "time (us)",
                "algbw", "busbw", "#wrong");
  }
  namespace algo = chorus::algo;
  const std::pair<const char*, algo::dynamic> algorithms[] = {
      {"ring", algo::as_dynamic(algo::ring{})},
      {"tree", algo::as_dynamic(algo::tree{})},
      {"double_binary_tree", algo::as_dynamic(algo::double_binary_tree{})},
      {"recursive_doubling", algo::as_dynamic(algo::recursive_doubling{})},
      {"halving_doubling", algo::as_dynamic(algo::halving_doubling{})},
      {"direct", algo::as_dynamic(algo::direct{})},
      {"one_sided", algo::as_dynamic(algo::one_sided{})},
      {"automatic", algo::as_dynamic(algo::automatic{})},
  };
  long long wrong_total = 0;
  for (std::size_t bytes = 8; bytes <= opt.max_bytes; bytes *= 8) {
    const std::size_t count = bytes / sizeof(float);
    std::vector<float> v(count);
    for (const auto& [name, algo] : algorithms) {
      std::vector<double> times;
      long long wrong = 0;
      for (int it = -1; it < opt.iters; ++it) {  // it == -1: warm-up
        // rank r contributes r+1 at every element: every sum is p(p+1)/2, exact in float
        std::fill(v.begin(), v.end(), static_cast<float>(r + 1));
        chorus::barrier(comm);
        const auto start = std::chrono::steady_clock::now();
        chorus::all_reduce(comm, v, chorus::plus{}, algo);
        std::vector<double> t{
            std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count()};
        chorus::all_reduce(comm, t, chorus::maximum{});  // the slowest rank's time
        if (it >= 0) times.push_back(t[0]);
        const float want = static_cast<float>(p * (p + 1) / 2);
        wrong = static_cast<long long>(
            std::count_if(v.begin(), v.end(), [&](float x) { return x != want; }));
      }
      std::vector<long long> w{wrong};
      chorus::all_reduce(comm, w, chorus::plus{});
      wrong_total += w[0];
      std::nth_element(times.begin(), times.begin() + static_cast<std::ptrdiff_t>(times.size() / 2),
                       times.end());
      const double t = times[times.size() / 2];
      const double algbw = static_cast<double>(bytes) / t / 1e9;
      const double busbw = algbw * 2.0 * (p - 1) / p;
      if (r == 0) {
        std::printf("%12zu %10zu %-20s %11.2f %9.2f %9.2f %7lld\n", bytes, count, name, t * 1e6,
                    algbw, busbw, w[0]);
      }
    }
  }
  if (r == 0) std::printf("\n%s\n", wrong_total == 0 ? "all results verified" : "WRONG RESULTS");
  return wrong_total == 0 ? 0 : 1;
} catch (const std::exception& e) {
  std::fprintf(stderr, "shm_all_reduce: %s\n", e.what());
  return 1;
}

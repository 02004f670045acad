// chorus-overlap: how much of a nonblocking all-reduce hides behind work that leaves the
// CPU free (a sleep standing in for GPU compute). Run under a launcher over shared memory:
//
//   chorusrun -n 2 build-perf/bench/perf/chorus-overlap [MiB] [work ms] [iterations]
//
// (defaults 16 MiB, 10 ms, 30). Per iteration, after a barrier, each rank times
//   work      the work alone (sleep)
//   comm      a blocking all-reduce alone
//   serial    a blocking all-reduce, then the work
//   overlap   iall_reduce posted, the work, then wait() (the progress thread moves it)
// and rank 0 prints the medians over iterations (the slowest rank's time per iteration)
// and overlap / work: 1.0 means the all-reduce was hidden entirely.
#include <chorus/bootstrap/from_env.hpp>
#include <chorus/chorus.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

namespace {

using clock_type = std::chrono::steady_clock;
using comm_type = chorus::communicator<chorus::shm_transport>;

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0.0 : v[v.size() / 2];
}

/// The slowest rank's time of `body()` in milliseconds (every rank gets it).
template <class Body>
double timed(comm_type& comm, Body&& body) {
  chorus::barrier(comm);
  const auto start = clock_type::now();
  body();
  std::vector<double> ms{
      std::chrono::duration<double, std::milli>(clock_type::now() - start).count()};
  chorus::all_reduce(comm, ms, chorus::maximum{});
  return ms[0];
}

}  // namespace

int main(int argc, char** argv) try {
  const double mib = argc > 1 ? std::atof(argv[1]) : 16.0;
  const int work_ms = argc > 2 ? std::atoi(argv[2]) : 10;
  const int iterations = argc > 3 ? std::atoi(argv[3]) : 30;
  if (mib <= 0 || work_ms < 0 || iterations <= 0) {
    std::fprintf(stderr, "usage: chorus-overlap [MiB > 0] [work ms >= 0] [iterations > 0]\n");
    return 2;
  }
  const chorus::bootstrap::world world = chorus::bootstrap::from_env();
  comm_type comm{chorus::shm_transport{world}};
  std::vector<float> data(static_cast<std::size_t>(mib * (1 << 20)) / sizeof(float), 1.0f);
  const auto work = [&] { std::this_thread::sleep_for(std::chrono::milliseconds{work_ms}); };
  std::vector<double> t_work, t_comm, t_serial, t_overlap;
  long long wrong = 0;
  for (int it = -2; it < iterations; ++it) {  // two warm-up rounds
    const double w = timed(comm, work);
    const double c = timed(comm, [&] { chorus::all_reduce(comm, data, chorus::maximum{}); });
    const double s = timed(comm, [&] {
      chorus::all_reduce(comm, data, chorus::maximum{});
      work();
    });
    const double o = timed(comm, [&] {
      chorus::request r = chorus::iall_reduce(comm, data, chorus::maximum{});
      work();
      r.wait();
    });
    wrong += std::count_if(data.begin(), data.end(), [](float x) { return x != 1.0f; });
    if (it < 0) continue;
    t_work.push_back(w);
    t_comm.push_back(c);
    t_serial.push_back(s);
    t_overlap.push_back(o);
  }
  if (comm.rank() == 0) {
    const double mw = median(t_work), mc = median(t_comm), ms = median(t_serial),
                 mo = median(t_overlap);
    std::printf(
        "chorus-overlap: %d ranks (shm), all_reduce of %.0f MiB float, work %d ms, "
        "median of %d (slowest rank)\n",
        comm.size(), mib, work_ms, iterations);
    std::printf("%-10s %10s\n", "what", "time (ms)");
    std::printf("%-10s %10.2f\n%-10s %10.2f\n%-10s %10.2f\n%-10s %10.2f\n", "work", mw, "comm", mc,
                "serial", ms, "overlap", mo);
    std::printf("overlap / work = %.3f   hidden = %.0f %% of the all-reduce   #wrong %lld\n",
                mo / mw, mc > 0 ? 100.0 * (mw + mc - mo) / mc : 0.0, wrong);
  }
  return wrong == 0 ? 0 : 1;
} catch (const std::exception& e) {
  std::fprintf(stderr, "chorus-overlap: %s\n", e.what());
  return 1;
}

// Several processes sharing one GPU over the shared-memory transport, with device buffers
// staged through pinned host memory (chorus::device::staged): every collective NCCL has,
// with a few algorithms and sizes, against exact references. Needs a GPU: without one the
// binary says why and exits 77, which ctest reports as skipped (never as passed). The
// probe runs in a child process, because CUDA must not be initialised before the fork
// that starts the ranks.
#define CATCH_CONFIG_RUNNER
#include "support/device_vector.hpp"
#include "support/processes.hpp"

#include <chorus/chorus.hpp>
#include <chorus/device/runtime.hpp>
#include <chorus/device/staged.hpp>

#include <catch2/catch.hpp>

#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <string>
#include <vector>

namespace {

using harness::failures;
using shm_communicator = chorus::communicator<chorus::shm_transport>;

using harness::device_vector;

/// Rank r's element i: small integers, so float sums are exact in any order.
float value(int r, std::size_t i) {
  return static_cast<float>((r + 1) * 3 + static_cast<int>(i % 17));
}

template <class Algo>
void check_all(shm_communicator& comm, failures& f, const Algo& a, const std::string& algo,
               std::size_t n, cudaStream_t stream) {
  chorus::device::staged<chorus::shm_transport> gpu(comm);
  const int r = comm.rank();
  const int p = comm.size();
  const auto P = static_cast<std::size_t>(p);
  auto expect = [&](const std::string& what, const std::vector<float>& got, auto want) {
    for (std::size_t i = 0; i < got.size(); ++i) {
      if (!(got[i] == want(i))) {
        f.add(what + " " + algo + " n=" + std::to_string(n) + " rank " + std::to_string(r) +
              ": element " + std::to_string(i) + " is " + std::to_string(got[i]) + ", expected " +
              std::to_string(want(i)));
        return;
      }
    }
  };
  auto sum_at = [&](std::size_t i) {
    float s = 0;
    for (int q = 0; q < p; ++q) s += value(q, i);
    return s;
  };
  std::vector<float> mine(n * P);
  for (std::size_t i = 0; i < mine.size(); ++i) mine[i] = value(r, i);

  {  // all_reduce, in place
    device_vector<float> d(n);
    d.upload(std::vector<float>(mine.begin(), mine.begin() + static_cast<std::ptrdiff_t>(n)));
    gpu.all_reduce(d.span(), chorus::plus{}, stream, a);
    expect("all_reduce", d.download(), sum_at);
  }
  {  // reduce_scatter
    device_vector<float> in(n * P), out(n);
    in.upload(mine);
    out.poison();
    gpu.reduce_scatter(std::span<const float>(in.span()), out.span(), chorus::plus{}, stream, a);
    expect("reduce_scatter", out.download(),
           [&](std::size_t i) { return sum_at(n * static_cast<std::size_t>(r) + i); });
  }
  {  // all_gather
    device_vector<float> in(n), out(n * P);
    in.upload(std::vector<float>(mine.begin(), mine.begin() + static_cast<std::ptrdiff_t>(n)));
    out.poison();
    gpu.all_gather(std::span<const float>(in.span()), out.span(), stream, a);
    expect("all_gather", out.download(),
           [&](std::size_t i) { return value(static_cast<int>(i / n), i % n); });
  }
  {  // broadcast from the last rank
    device_vector<float> buf(n);
    if (r == p - 1) {
      buf.upload(std::vector<float>(mine.begin(), mine.begin() + static_cast<std::ptrdiff_t>(n)));
    } else {
      buf.poison();
    }
    gpu.broadcast(buf.span(), p - 1, stream, a);
    expect("broadcast", buf.download(), [&](std::size_t i) { return value(p - 1, i); });
  }
  {  // reduce to rank 0
    device_vector<float> in(n), out(n);
    in.upload(std::vector<float>(mine.begin(), mine.begin() + static_cast<std::ptrdiff_t>(n)));
    out.poison();
    gpu.reduce(std::span<const float>(in.span()), out.span(), chorus::plus{}, 0, stream, a);
    if (r == 0) expect("reduce", out.download(), sum_at);
  }
  if (n > 0 && gpu.pinned_bytes() < (n * P + n) * sizeof(float)) {
    f.add("the pinned staging buffer is smaller than the largest call");
  }
}

TEST_CASE("staged: 3 processes share the GPU over shm; every collective on device buffers",
          "[cuda]") {
  const std::string job = harness::unique_job("staged");
  auto results = harness::run_processes(3, job, [](shm_communicator& comm, failures& f) {
    cudaStream_t stream = nullptr;
    chorus::device::check(cudaStreamCreate(&stream), "cudaStreamCreate");
    for (std::size_t n : {std::size_t{1}, std::size_t{1000}, (std::size_t{1} << 20) + 3}) {
      check_all(comm, f, chorus::algo::automatic{}, "automatic", n, stream);
      check_all(comm, f, chorus::algo::ring{}, "ring", n, stream);
      check_all(comm, f, chorus::algo::direct{}, "direct", n, stream);
    }
    cudaStreamDestroy(stream);
  });
  harness::require_all_ok(results);
  REQUIRE(harness::shm_leftovers(job).empty());
}

/// Why no GPU can be used, asked in a child process (CUDA must not start before the fork
/// of the ranks); empty when one can.
std::string probe_in_child() {
  int fds[2];
  if (::pipe(fds) != 0) return "pipe failed";
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::close(fds[0]);
    const std::string why = chorus::device::unavailable_reason();
    (void)!::write(fds[1], why.data(), why.size());
    ::_exit(0);
  }
  ::close(fds[1]);
  std::string why;
  char buf[256];
  for (ssize_t got; (got = ::read(fds[0], buf, sizeof buf)) > 0;)
    why.append(buf, static_cast<std::size_t>(got));
  ::close(fds[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) return "the device probe crashed";
  return why;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string why = probe_in_child();
  if (!why.empty()) {
    std::printf("no CUDA device: %s; the staged device-buffer tests were not run\n", why.c_str());
    return 77;  // ctest: SKIP_RETURN_CODE
  }
  return Catch::Session().run(argc, argv);
}

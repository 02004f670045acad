// Shared-memory ping-pong between two processes: latency (small sizes) and bandwidth (large
// sizes) of chorus::shm_transport through chorus::send / chorus::recv. The benchmark
// process forks an echo peer once; for each run it tells the peer the size and the number
// of round trips, then times them. Reported time is per round trip; `one_way` is half
// of it, and bytes/s counts both directions.
//
// `cache_line`: the floor under any shared-memory message between two processes -- two
// processes hand one 8-byte counter back and forth through shared memory, each spinning
// on the other's cache line. One way is the time for a write on one core to become a
// read on the other.
#include <chorus/bootstrap/file_store.hpp>
#include <chorus/chorus.hpp>

#include <benchmark/benchmark.h>

#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <new>
#include <string>
#include <vector>

namespace {

using shm_comm = chorus::communicator<chorus::shm_transport>;
constexpr std::uint64_t stop = ~std::uint64_t{0};

std::unique_ptr<shm_comm> connect(int rank, const std::filesystem::path& dir,
                                  const std::string& job) {
  chorus::bootstrap::any_store store{chorus::bootstrap::file_store(dir)};
  chorus::shm_transport t(
      rank, 2, job, chorus::store_exchange(store, "pingpong", rank, 2, std::chrono::seconds(30)));
  return std::make_unique<shm_comm>(std::move(t));
}

/// The forked echo peer and this process's end of the pair.
class peer {
 public:
  peer() {
    char tmpl[] = "/tmp/chorus-pingpong-XXXXXX";
    if (::mkdtemp(tmpl) == nullptr) std::abort();
    dir_ = tmpl;
    const std::string job = "pingpong-" + std::to_string(::getpid());
    child_ = ::fork();
    if (child_ == 0) {
      echo(connect(1, dir_, job));
      std::_Exit(0);
    }
    comm_ = connect(0, dir_, job);
  }
  ~peer() {
    std::array<std::uint64_t, 2> control{stop, 0};
    chorus::send(*comm_, control, 1, 0);
    ::waitpid(child_, nullptr, 0);
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  shm_comm& comm() { return *comm_; }

 private:
  static void echo(std::unique_ptr<shm_comm> comm) {
    std::vector<std::uint8_t> buf;
    for (;;) {
      std::array<std::uint64_t, 2> control{};
      chorus::recv(*comm, control, 0, 0);
      if (control[0] == stop) return;
      buf.resize(control[0]);
      for (std::uint64_t i = 0; i < control[1]; ++i) {
        chorus::recv(*comm, buf, 0, 1);
        chorus::send(*comm, buf, 0, 1);
      }
    }
  }

  std::filesystem::path dir_;
  pid_t child_ = -1;
  std::unique_ptr<shm_comm> comm_;
};

peer& the_peer() {
  static peer p;
  return p;
}

void ping_pong(benchmark::State& state) {
  const auto bytes = static_cast<std::size_t>(state.range(0));
  shm_comm& comm = the_peer().comm();
  std::vector<std::uint8_t> buf(bytes, 7);
  std::array<std::uint64_t, 2> control{bytes, static_cast<std::uint64_t>(state.max_iterations)};
  chorus::send(comm, control, 1, 0);
  for (auto _ : state) {
    chorus::send(comm, buf, 1, 1);
    chorus::recv(comm, buf, 1, 1);
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * 2 * bytes));
  // Seconds per one-way message (printed with an SI prefix: 1.2u is 1.2 us).
  state.counters["one_way"] =
      benchmark::Counter(static_cast<double>(state.iterations()) * 2,
                         benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}

BENCHMARK(ping_pong)->RangeMultiplier(8)->Range(8, 16 << 20)->UseRealTime();

void cache_line(benchmark::State& state) {
  struct alignas(64) line {
    std::atomic<std::uint64_t> value{0};
  };
  void* mem =
      ::mmap(nullptr, 2 * sizeof(line), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) {
    state.SkipWithError("mmap failed");
    return;
  }
  auto* ping = new (mem) line;
  auto* pong = new (static_cast<line*>(mem) + 1) line;
  const auto rounds = static_cast<std::uint64_t>(state.max_iterations);
  const pid_t child = ::fork();
  if (child == 0) {
    for (std::uint64_t i = 1; i <= rounds; ++i) {
      while (ping->value.load(std::memory_order_acquire) != i) {
      }
      pong->value.store(i, std::memory_order_release);
    }
    std::_Exit(0);
  }
  std::uint64_t i = 0;
  for (auto _ : state) {
    ++i;
    ping->value.store(i, std::memory_order_release);
    while (pong->value.load(std::memory_order_acquire) != i) {
    }
  }
  ::waitpid(child, nullptr, 0);
  ::munmap(mem, 2 * sizeof(line));
  state.counters["one_way"] =
      benchmark::Counter(static_cast<double>(state.iterations()) * 2,
                         benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}

BENCHMARK(cache_line)->UseRealTime();

}  // namespace

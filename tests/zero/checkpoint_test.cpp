// Checkpoints: what N ranks save, M ranks load, for every N, M in {1, 2, 3, 4, 5, 8}, with
// any stage and geometry on either side -- master weights and optimizer state bit-identical
// to the saved unsharded state. Damaged, truncated and mismatched files are clear errors.
#include "reference.hpp"

#include <catch2/catch.hpp>

#include <unistd.h>
#include <filesystem>
#include <fstream>

namespace {

using namespace zero_test;
namespace fs = std::filesystem;

/// A fresh directory under the temporary directory, removed at the end of the scope.
struct temp_dir {
  fs::path path;
  explicit temp_dir(const std::string& name)
      : path(fs::temp_directory_path() /
             ("chorus-zero-" + std::to_string(::getpid()) + "-" + name)) {
    fs::remove_all(path);
  }
  ~temp_dir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

struct saved {
  std::vector<std::vector<float>> state;  // master, then the optimizer's states (natural layout)
  std::uint64_t step = 0;
};

zero::options small_buckets() {
  zero::options o;
  o.bucket_bytes = 50 * 4;
  o.max_live_buckets = 4;
  return o;
}

/// Trains 3 steps on `world` ranks with (Stage, Geometry), saves into `dir`, and returns
/// the whole state as rank 0 saw it.
template <class Stage, class Geometry>
saved train_and_save(int world, const fs::path& dir) {
  saved out;
  harness::run_ranks(world, [&](chorus::inproc_communicator& comm) {
    const mlp& m = test_model();
    zero::sharded_optimizer<chorus::inproc_transport, Stage, Geometry, zero::adamw> d(
        comm, m.tensor_sizes(), {.lr = 1e-2f}, small_buckets());
    d.initialize([&](std::size_t t, std::size_t i) { return m.init(init_seed, t, i); });
    zero_example::driver_access<decltype(d)> a{&d, m.layers(), {}};
    for (int step = 1; step <= 3; ++step) {
      a.begin_micro_batch();
      (void)zero_example::loss_and_grad(m, batch_for(comm.rank(), step, 0), a);
      d.step();
    }
    d.save(dir);
    saved s{{d.full_state(0), d.full_state(1), d.full_state(2)}, d.step_count()};
    if (comm.rank() == 0) out = std::move(s);
  });
  return out;
}

/// Loads `dir` on `world` ranks with (Stage, Geometry); returns the whole state and checks
/// on every rank that the compute-type parameters were rebuilt from the loaded weights.
template <class Stage, class Geometry>
saved load(int world, const fs::path& dir, harness::failures& f) {
  saved out;
  harness::run_ranks(world, [&](chorus::inproc_communicator& comm) {
    const mlp& m = test_model();
    zero::sharded_optimizer<chorus::inproc_transport, Stage, Geometry, zero::adamw> d(
        comm, m.tensor_sizes(), {.lr = 1e-2f}, small_buckets());
    d.load(dir);
    saved s{{d.full_state(0), d.full_state(1), d.full_state(2)}, d.step_count()};
    const auto& offsets = d.layout().tensor_offset;
    for (std::size_t t = 0; t + 1 < offsets.size(); ++t) {
      d.gather(d.bucket_of(t));
      const auto p = d.param(t);
      for (std::size_t i = 0; i < p.size(); ++i) {
        if (p[i] != s.state[0][offsets[t] + i]) {
          f.add("rank " + std::to_string(comm.rank()) + ": parameter " + std::to_string(i) +
                " of tensor " + std::to_string(t) + " not rebuilt from the loaded master weights");
          break;
        }
      }
      d.release(d.bucket_of(t));
    }
    if (comm.rank() == 0) out = std::move(s);
  });
  return out;
}

/// Stage and geometry by index, so that the N x M sweep mixes them on both sides.
template <class Fn>
void with_kind(int k, Fn&& fn) {
  switch (k % 6) {
    case 0:
      return fn(zero::stage<1>{}, zero::flat{});
    case 1:
      return fn(zero::stage<2>{}, zero::per_tensor{});
    case 2:
      return fn(zero::stage<3>{}, zero::whole_tensor{});
    case 3:
      return fn(zero::stage<0>{}, zero::flat{});
    case 4:
      return fn(zero::stage<3>{}, zero::per_tensor{});
    default:
      return fn(zero::stage<2>{}, zero::whole_tensor{});
  }
}

}  // namespace

TEST_CASE("reshard: N ranks save, M ranks load, bit-identical, for all N, M in {1,2,3,4,5,8}") {
  int kind = 0;
  for (int n : training_worlds) {
    temp_dir dir("reshard-" + std::to_string(n));
    saved before;
    with_kind(kind++, [&](auto s, auto g) {
      before = train_and_save<decltype(s), decltype(g)>(n, dir.path);
    });
    REQUIRE(before.step == 3);
    int load_kind = 0;
    for (int mranks : training_worlds) {
      with_kind(load_kind++ + n, [&](auto s, auto g) {
        INFO("saved by " << n << " ranks, loaded by " << mranks << " ranks at stage "
                         << decltype(s)::value << ", " << decltype(g)::name);
        harness::failures f;
        const saved after = load<decltype(s), decltype(g)>(mranks, dir.path, f);
        INFO(f.report());
        CHECK(f.count() == 0);
        CHECK(after.step == before.step);
        for (std::size_t k = 0; k < 3; ++k)
          CHECK(first_difference(after.state[k], before.state[k]) == -1);
      });
    }
  }
}

namespace {
/// Loads `dir` into a 1-rank driver of `sizes` and returns the error message ("" if none).
template <class Opt = zero::adamw>
std::string load_error(const fs::path& dir,
                       std::vector<std::size_t> sizes = test_model().tensor_sizes()) {
  std::string message;
  try {
    harness::run_ranks(1, [&](chorus::inproc_communicator& comm) {
      zero::sharded_optimizer<chorus::inproc_transport, zero::stage<2>, zero::flat, Opt> d(comm,
                                                                                           sizes);
      d.load(dir);
    });
  } catch (const chorus::error& e) {
    CHECK(e.value() == chorus::errc::invalid_argument);
    message = e.what();
  }
  return message;
}
}  // namespace

TEST_CASE("damaged, truncated, missing and mismatched checkpoints are clear errors") {
  temp_dir dir("errors");
  (void)train_and_save<zero::stage<2>, zero::flat>(2, dir.path);
  const fs::path f0 = dir.path / "zero-rank-00000-of-00002.chz";
  const fs::path f1 = dir.path / "zero-rank-00001-of-00002.chz";
  REQUIRE(fs::exists(f0));
  REQUIRE(fs::exists(f1));
  CHECK(load_error(dir.path).empty());  // the control: it loads

  CHECK_THAT(load_error(dir.path, {5, 6}), Catch::Contains("different model"));
  CHECK_THAT(load_error<zero::sgd>(dir.path), Catch::Contains("different optimizer"));
  CHECK_THAT(load_error(dir.path / "nowhere"), Catch::Contains("is not a directory"));

  const auto size = fs::file_size(f1);
  std::vector<char> bytes(size);
  std::ifstream(f1, std::ios::binary).read(bytes.data(), static_cast<std::streamsize>(size));
  auto write_f1 = [&](const std::vector<char>& b) {
    std::ofstream(f1, std::ios::binary | std::ios::trunc)
        .write(b.data(), static_cast<std::streamsize>(b.size()));
  };

  auto flipped = bytes;
  flipped[size / 2] = static_cast<char>(flipped[size / 2] ^ 0x10);
  write_f1(flipped);
  CHECK_THAT(load_error(dir.path), Catch::Contains("fails its checksum"));

  write_f1({bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(size / 3)});
  CHECK_THAT(load_error(dir.path), Catch::Contains("fails its checksum"));
  write_f1({bytes.begin(), bytes.begin() + 10});
  CHECK_THAT(load_error(dir.path), Catch::Contains("truncated"));

  auto magic = bytes;
  magic[0] = 'X';
  write_f1(magic);
  CHECK_THAT(load_error(dir.path), Catch::Contains("wrong magic"));

  fs::remove(f1);
  CHECK_THAT(load_error(dir.path), Catch::Contains("cannot be opened"));
  write_f1(bytes);
  CHECK(load_error(dir.path).empty());

  // Two checkpoints of different world sizes in one directory: ambiguous.
  (void)train_and_save<zero::stage<1>, zero::flat>(3, dir.path);
  CHECK_THAT(load_error(dir.path), Catch::Contains("different world sizes"));
}

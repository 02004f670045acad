// file_store: the store contract with threads, the same semantics between forked
// processes (add is atomic: N processes x 1000 adds == N * 1000), key encoding, clear(),
// timeouts that name the key and the directory, and descriptors that do not leak.
#include <chorus/bootstrap/file_store.hpp>

#include <catch2/catch.hpp>

#include "bootstrap/process.hpp"
#include "bootstrap/store_contract.hpp"

#include <sys/stat.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

using namespace std::chrono_literals;
namespace bs = chorus::bootstrap;
namespace fs = std::filesystem;
using contract::soon;

namespace {

/// A fresh directory under the temporary directory, removed with everything in it.
struct temp_dir {
  fs::path path;
  temp_dir() {
    std::string pattern = (fs::temp_directory_path() / "chorus-file-store-XXXXXX").string();
    REQUIRE(::mkdtemp(pattern.data()) != nullptr);
    path = pattern;
  }
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;
  ~temp_dir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

bs::file_store store_in(const fs::path& dir) {
  return bs::file_store(dir, {.timeout = 20s, .poll_interval = 5ms});
}

}  // namespace

TEST_CASE("file_store keeps the store contract (one store object per thread-rank)") {
  temp_dir dir;
  contract::check_store_contract([&] { return store_in(dir.path / "store"); });
}

TEST_CASE("file_store: add is atomic between processes") {
  temp_dir dir;
  constexpr int n = 4;
  constexpr int adds = 1000;
  std::vector<proc::child> ranks;
  for (int r = 0; r < n; ++r) {
    ranks.emplace_back([&] {
      auto s = store_in(dir.path);
      for (int i = 0; i < adds; ++i) s.add("count", 1);
      return 0;
    });
  }
  for (auto& r : ranks) CHECK(r.exit_code(120s) == 0);
  CHECK(store_in(dir.path).add("count", 0) == n * adds);
}

TEST_CASE("file_store: processes rendezvous through the directory") {
  temp_dir dir;
  constexpr int n = 3;
  std::vector<proc::child> ranks;
  for (int r = 0; r < n; ++r) {
    ranks.emplace_back([&, r] {
      auto s = store_in(dir.path);
      std::this_thread::sleep_for(std::chrono::milliseconds(30 * r));  // arrive at different times
      const auto blobs = bs::all_gather_blob(s, "job/addr", r, n,
                                             bs::to_bytes("rank" + std::to_string(r)), soon());
      for (int p = 0; p < n; ++p) {
        if (bs::as_string(blobs[static_cast<std::size_t>(p)]) != "rank" + std::to_string(p)) {
          return 10 + p;
        }
      }
      bs::barrier(s, "job/barrier", r, n, soon());
      return 0;
    });
  }
  for (auto& r : ranks) CHECK(r.exit_code() == 0);
}

TEST_CASE("file_store: any key maps to its own file; over-long keys are refused") {
  temp_dir dir;
  auto s = store_in(dir.path);
  const std::vector<std::string> keys{"a/b", "a%2Fb", "a b", "a\nb", "..", "caf\xc3\xa9", "a.b"};
  for (const auto& k : keys) s.set(k, bs::to_bytes("value of " + k));
  for (const auto& k : keys) CHECK(bs::as_string(s.get(k, soon())) == "value of " + k);
  for (const auto& e : fs::directory_iterator(dir.path)) {
    const auto name = e.path().filename().string();
    CHECK(name.starts_with("k."));
    CHECK(name.find('/') == std::string::npos);
  }
  CHECK_NOTHROW(s.set(std::string(250, 'x'), bs::to_bytes("fits")));
  try {
    s.set(std::string(251, 'x'), bs::to_bytes("too long"));
    FAIL("set returned");
  } catch (const chorus::error& e) {
    CHECK(e.value() == chorus::errc::invalid_argument);
    CHECK_THAT(e.what(), Catch::Contains("too long"));
  }
}

TEST_CASE("file_store: a timeout names the key and the directory") {
  temp_dir dir;
  auto s = store_in(dir.path);
  try {
    (void)s.get("missing/key", contract::brief());
    FAIL("get returned");
  } catch (const chorus::error& e) {
    CHECK(e.value() == chorus::errc::timeout);
    CHECK_THAT(e.what(), Catch::Contains("missing/key") && Catch::Contains(dir.path.string()));
  }
}

TEST_CASE("file_store: clear() removes the keys, temporaries and lock, nothing else") {
  temp_dir dir;
  auto s = store_in(dir.path);
  s.set("one", bs::to_bytes("1"));
  s.add("two", 2);
  { std::ofstream(dir.path / "unrelated.txt") << "keep me"; }
  CHECK(s.clear() == 3);  // k.one, k.two, .lock
  CHECK_FALSE(s.check(std::vector<std::string>{"one"}));
  CHECK(fs::exists(dir.path / "unrelated.txt"));
  // Usable again after clear.
  CHECK(s.add("two", 1) == 1);
}

TEST_CASE("file_store: a new directory is private, and a path that is a file is refused") {
  temp_dir dir;
  store_in(dir.path / "nested" / "store");
  struct stat st {};
  REQUIRE(::stat((dir.path / "nested" / "store").c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0700);
  { std::ofstream(dir.path / "file") << "x"; }
  CHECK_THROWS_AS(store_in(dir.path / "file"), chorus::error);
}

TEST_CASE("file_store: descriptor counts stay flat") {
  temp_dir dir;
  auto s = store_in(dir.path);
  const int before = proc::open_fds();
  for (int i = 0; i < 1000; ++i) {
    const std::string key = "fd/" + std::to_string(i % 10);
    s.set(key, bs::to_bytes(std::to_string(i)));
    (void)s.get(key, soon());
    if (i % 100 == 0) s.add("fd/count", 1);
  }
  CHECK_THROWS_AS(s.get("fd/missing", chorus::deadline::after(5ms)), chorus::error);
  CHECK(proc::open_fds() == before);
}

// Calibration on first use (docs/tuning.md): chorus::calibrate measures a profile every
// rank agrees on; cached_profile keeps it per host in a cache directory, reads it back,
// measures again when the file is missing, unreadable, from another chorus version or
// when asked to, and never fails because the cache cannot be written; tune_by_model makes
// the model the communicator's tuner.
#include "../support/harness.hpp"

#include <chorus/dispatch/profile_json.hpp>
#include <chorus/tuning/calibrate.hpp>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace {

namespace fs = std::filesystem;

/// A fresh directory for the test's cache, removed with everything in it at scope exit.
struct temp_dir {
  fs::path path;
  explicit temp_dir(const char* name)
      : path(fs::temp_directory_path() /
             ("chorus-calibrate-test-" + std::to_string(::getpid()) + "-" + name)) {
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~temp_dir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

std::string read_text(const fs::path& file) {
  std::ifstream in(file);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

/// Every rank's result of cached_profile on 2 inproc ranks.
std::vector<chorus::profile_cache_result> cached_on_two(const chorus::profile_cache_options& o) {
  std::vector<chorus::profile_cache_result> got(2);
  chorus::inproc::run(2, [&](chorus::inproc_communicator& comm) {
    got[static_cast<std::size_t>(comm.rank())] = chorus::cached_profile(comm, o);
  });
  return got;
}

std::string dumped(const chorus::schedule::cost_profile& p) { return chorus::to_json(p).dump(); }

}  // namespace

TEST_CASE("calibrate: every rank gets rank 0's measurements, each one plausible") {
  std::vector<chorus::calibration> got(3);
  chorus::inproc::run(3, [&](chorus::inproc_communicator& comm) {
    got[static_cast<std::size_t>(comm.rank())] = chorus::calibrate(comm);
  });
  const chorus::schedule::cost_profile& p = got[0].profile;
  CHECK(dumped(got[1].profile) == dumped(p));
  CHECK(dumped(got[2].profile) == dumped(p));
  CHECK(p.source.find("inproc, 3 ranks, ") == 0);
  // A message costs something, and no rate is beyond a terabyte per second.
  CHECK(p.alpha > 0);
  CHECK(p.alpha < 1e-2);
  for (double per_byte : {p.beta, p.reduce, p.copy}) {
    CHECK(per_byte > 1e-12);
    CHECK(per_byte < 1e-6);
  }
  CHECK(p.cache_bytes >= std::size_t{256} << 10);
  CHECK(p.cache_bytes <= std::size_t{64} << 20);
  CHECK(p.window < 0);  // inproc has no windows
  CHECK(p.window_reduce < 0);
  CHECK(got[0].measured["ranks"] == 3);
  CHECK(got[0].measured["ping_pong_half_round_trip_s"].size() == 1);  // 8 B
  CHECK(got[0].measured["exchange_s"].size() == 5);                   // 256 KiB..64 MiB
}

TEST_CASE("calibrate: one rank has nothing to measure") {
  const temp_dir dir("one");
  std::string error;
  chorus::profile_cache_result r;
  chorus::inproc::run(1, [&](chorus::inproc_communicator& comm) {
    try {
      (void)chorus::calibrate(comm);
    } catch (const chorus::error& e) {
      error = e.what();
    }
    r = chorus::cached_profile(comm, {dir.path, false});
  });
  CHECK(error.find("needs 2 or more ranks, this communicator has 1") != std::string::npos);
  CHECK_FALSE(r.calibrated);
  CHECK(r.profile.source == chorus::schedule::builtin_profile("inproc").source);
  CHECK(fs::is_empty(dir.path));
}

TEST_CASE("cached_profile: measured and saved on first use, read back after") {
  const temp_dir dir("first");
  const chorus::profile_cache_options o{dir.path, false};
  const auto first = cached_on_two(o);
  CHECK(first[0].calibrated);
  CHECK(first[1].calibrated);
  CHECK(first[0].note == "no cached profile");
  CHECK(dumped(first[1].profile) == dumped(first[0].profile));
  const fs::path file = first[0].file;
  CHECK(file.parent_path() == dir.path);
  const std::string name = file.filename().string();
  CHECK(name.find(".inproc.2ranks.") != std::string::npos);
  REQUIRE(fs::exists(file));
  // The file is a profile chorus-perf's --profile reads too, with the calibration's record.
  CHECK(dumped(chorus::load_cost_profile(file.string())) == dumped(first[0].profile));
  const nlohmann::json saved = nlohmann::json::parse(read_text(file));
  CHECK(saved["calibration"]["chorus"] == CHORUS_VERSION_STRING);
  CHECK(saved["calibration"]["transport"] == "inproc");

  const auto second = cached_on_two(o);
  CHECK_FALSE(second[0].calibrated);
  CHECK_FALSE(second[1].calibrated);
  CHECK(second[0].note.empty());
  CHECK(second[0].file == file);
  CHECK(dumped(second[0].profile) == dumped(first[0].profile));
  CHECK(dumped(second[1].profile) == dumped(first[0].profile));

  // Another rank count is another file.
  std::vector<chorus::profile_cache_result> three(3);
  chorus::inproc::run(3, [&](chorus::inproc_communicator& comm) {
    three[static_cast<std::size_t>(comm.rank())] = chorus::cached_profile(comm, o);
  });
  CHECK(three[0].calibrated);
  CHECK(three[0].file.filename().string().find(".inproc.3ranks.") != std::string::npos);

  // Asked to, it measures again and replaces the file.
  const auto again = cached_on_two({dir.path, true});
  CHECK(again[0].calibrated);
  CHECK(again[0].note == "recalibrate was asked for");
  CHECK(dumped(chorus::load_cost_profile(file.string())) == dumped(again[0].profile));
}

TEST_CASE("cached_profile: a damaged file or another version's is measured again") {
  const temp_dir dir("damaged");
  const chorus::profile_cache_options o{dir.path, false};
  const fs::path file = cached_on_two(o)[0].file;

  std::ofstream(file) << "{ \"chorus_cost_profile\": 1, \"alpha_s\": ";  // cut short
  auto r = cached_on_two(o);
  CHECK(r[0].calibrated);
  CHECK(r[0].note.find(file.string() + " is not a cached profile: ") == 0);
  CHECK_NOTHROW(chorus::load_cost_profile(file.string()));  // replaced by a whole one

  nlohmann::json old = nlohmann::json::parse(read_text(file));
  old["calibration"]["chorus"] = "0.0.1";
  std::ofstream(file) << old.dump();
  r = cached_on_two(o);
  CHECK(r[0].calibrated);
  CHECK(r[0].note.find("was measured by chorus \"0.0.1\"") != std::string::npos);
  CHECK(nlohmann::json::parse(read_text(file))["calibration"]["chorus"] == CHORUS_VERSION_STRING);
}

TEST_CASE("cached_profile: a cache that cannot be written costs a calibration, not an error") {
  const temp_dir dir("unwritable");
  std::ofstream(dir.path / "a-file") << "not a directory";
  const auto r = cached_on_two({dir.path / "a-file" / "cache", false});
  CHECK(r[0].calibrated);
  CHECK(r[0].note.find("no cached profile; not saved: cannot create ") == 0);
  CHECK(dumped(r[1].profile) == dumped(r[0].profile));
  CHECK(r[0].profile.alpha > 0);
  // no temporary file left behind either
  std::size_t entries = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(dir.path)) ++entries;
  CHECK(entries == 1);
}

TEST_CASE("cached_profile: the file name says what the profile is valid for") {
  using chorus::detail::profile_cache_name;
  CHECK(profile_cache_name("node-7", "shm", 4, 1, true) == "node-7.shm.4ranks.json");
  CHECK(profile_cache_name("gpu.example.org", "ucx", 16, 2, true) ==
        "gpu_example_org.ucx.16ranks.2hosts.json");
  CHECK(profile_cache_name("a/b", "shm", 2, 1, false) == "a_b.shm.2ranks.unoptimized.json");
}

TEST_CASE("tune_by_model: the model tuner with the cached profile decides automatic calls") {
  const temp_dir dir("tune");
  std::vector<std::string> before(2), chooser(2), source(2);
  std::vector<chorus::profile_cache_result> r(2);
  chorus::inproc::run(2, [&](chorus::inproc_communicator& comm) {
    const auto i = static_cast<std::size_t>(comm.rank());
    using chorus::schedule::collective;
    before[i] = chorus::explain(comm, collective::all_reduce, 4096).chooser;
    r[i] = chorus::tune_by_model(comm, {dir.path, false});
    const auto e = chorus::explain(comm, collective::all_reduce, 4096);
    chooser[i] = e.chooser;
    source[i] = e.profile.source;
  });
  CHECK(before == std::vector<std::string>{"default rule", "default rule"});
  CHECK(chooser == std::vector<std::string>{"model", "model"});
  CHECK(source[0] == r[0].profile.source);
  CHECK(source[1] == r[0].profile.source);
}

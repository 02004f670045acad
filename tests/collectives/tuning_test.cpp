// The tuner seen from a communicator (docs/tuning.md): chorus::explain, a model_tuner in the
// communicator's options deciding what runs, CHORUS_DEBUG=tuning's explanations, and cost
// profiles as JSON files.
#include "../support/harness.hpp"

#include <chorus/dispatch/debug.hpp>
#include <chorus/dispatch/profile_json.hpp>

#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <mutex>
#include <span>
#include <string>
#include <vector>

namespace {

/// Latency so dear that the model's choice is never the default rule's ring at 1 MiB.
chorus::schedule::cost_profile latency_bound() {
  chorus::schedule::cost_profile p;
  p.source = "test: latency-bound";
  p.alpha = 1e-3;
  p.beta = 1e-13;
  p.reduce = 1e-13;
  p.copy = 1e-13;
  return p;
}

/// A file name in the test's temporary directory, removed at the end of the scope.
struct temp_file {
  std::string path;
  explicit temp_file(const char* name)
      : path("/tmp/chorus-tuning-test-" + std::to_string(::getpid()) + "-" + name) {}
  ~temp_file() { std::remove(path.c_str()); }
};

}  // namespace

TEST_CASE("tuning: explain names the default rule's choice and the model's view of it") {
  chorus::inproc::run(4, [&](chorus::inproc_communicator& comm) {
    using chorus::schedule::collective;
    const auto e = chorus::explain(comm, collective::all_reduce, std::size_t{1} << 20);
    CHECK(e.chooser == "default rule");
    CHECK(e.query.ranks == 4);
    CHECK(e.query.bytes == std::size_t{1} << 20);
    CHECK_FALSE(e.query.mapped_windows);  // inproc has no windows
    CHECK(e.choice.algo == chorus::schedule::default_tuning(e.query).algo);
    CHECK(e.profile.source.find("inproc") != std::string::npos);
    CHECK_FALSE(e.candidates.empty());
    for (const auto& c : e.candidates) CHECK(c.algo != chorus::schedule::algorithm::one_sided);
    CHECK(chorus::schedule::to_string(e).find("chosen by the default rule") != std::string::npos);
  });
}

TEST_CASE("tuning: a model_tuner in the options decides what automatic runs") {
  std::vector<chorus::call_report> got;
  std::mutex m;
  chorus::set_debug_sink([&](const chorus::call_report& r) {
    std::lock_guard lock(m);
    got.push_back(r);
  });
  chorus::set_debug_level(chorus::debug_level::info);
  chorus::communicator_options opt;
  opt.tuner = chorus::schedule::model_tuner{latency_bound()};
  chorus::schedule::tuning_explanation seen;
  chorus::inproc::run(
      4,
      [&](chorus::inproc_communicator& comm) {
        std::vector<float> v(std::size_t{1} << 18, 1.0f);  // 1 MiB
        chorus::all_reduce(comm, std::span<float>(v), chorus::plus{});
        CHECK(v[0] == 4.0f);
        CHECK(v.back() == 4.0f);
        const auto e =
            chorus::explain(comm, chorus::schedule::collective::all_reduce, std::size_t{1} << 20);
        CHECK(e.chooser == "model");
        CHECK(e.choice.algo == e.candidates.front().algo);
        if (comm.rank() == 0) seen = e;
      },
      opt);
  chorus::set_debug_level(chorus::debug_level::off);
  chorus::set_debug_sink({});
  REQUIRE(got.size() == 4);
  INFO(chorus::schedule::to_string(seen));
  // the default rule runs ring at 1 MiB on 4 ranks; the latency-bound model does not
  CHECK(chorus::schedule::default_tuning(seen.query).algo == chorus::schedule::algorithm::ring);
  CHECK(seen.choice.algo != chorus::schedule::algorithm::ring);
  for (const auto& r : got) {
    CHECK(r.tuned);
    CHECK(r.algorithm == seen.choice.algo);
  }
}

TEST_CASE("tuning: CHORUS_DEBUG=tuning explains each call shape once per process") {
  std::vector<std::string> got;
  std::mutex m;
  chorus::set_tuning_sink(
      [&](int, std::string_view transport, const chorus::schedule::tuning_explanation& e) {
        std::lock_guard lock(m);
        got.push_back(std::string(transport) + ": " + chorus::schedule::to_string(e));
      });
  chorus::set_debug_level(chorus::debug_level::tuning);
  CHECK(chorus::get_debug_level() == chorus::debug_level::tuning);
  chorus::inproc::run(3, [&](chorus::inproc_communicator& comm) {
    std::vector<float> v(1000, 1.0f), w(5000, 1.0f);
    chorus::all_reduce(comm, std::span<float>(v), chorus::plus{});
    chorus::all_reduce(comm, std::span<float>(v), chorus::plus{});  // same shape: not again
    chorus::all_reduce(comm, std::span<float>(w), chorus::plus{});
    chorus::all_reduce(comm, std::span<float>(v), chorus::plus{}, chorus::algo::ring{});  // named
    CHECK(v[0] == 27.0f);  // three sums over 3 ranks
  });
  chorus::set_debug_level(chorus::debug_level::off);
  chorus::set_tuning_sink({});
  REQUIRE(got.size() == 2);
  CHECK(got[0].starts_with("inproc: all_reduce of 3.9 KiB on 3 ranks\n"));
  CHECK(got[1].starts_with("inproc: all_reduce of 19.5 KiB on 3 ranks\n"));
  CHECK(got[0].find("<- chosen") != std::string::npos);
  CHECK(got[0].find("chosen by the default rule") != std::string::npos);
}

TEST_CASE("tuning: cost profiles round-trip through JSON; bad files are named") {
  temp_file file("profile.json");
  chorus::schedule::cost_profile p = latency_bound();
  p.overhead = 3e-7;
  p.inter_alpha = 5e-6;
  p.window = 0;
  p.window_reduce = 2e-11;
  chorus::save_cost_profile(file.path, p, {{"measured", {{"ranks", 4}}}});
  const chorus::schedule::cost_profile q = chorus::load_cost_profile(file.path);
  CHECK(q.source == p.source);
  CHECK(q.alpha == p.alpha);
  CHECK(q.beta == p.beta);
  CHECK(q.overhead == p.overhead);
  CHECK(q.reduce == p.reduce);
  CHECK(q.copy == p.copy);
  CHECK(q.inter_alpha == p.inter_alpha);
  CHECK(q.inter_beta == p.inter_beta);
  CHECK(q.window == p.window);
  CHECK(q.window_reduce == p.window_reduce);

  const auto fails_with = [&](const std::string& text, const std::string& what) {
    {
      std::ofstream out(file.path);
      out << text;
    }
    try {
      (void)chorus::load_cost_profile(file.path);
      FAIL("no error for: " << text);
    } catch (const chorus::error& e) {
      CHECK(e.code() == chorus::errc::invalid_argument);
      CHECK_THAT(e.what(), Catch::Contains(what));
      CHECK_THAT(e.what(), Catch::Contains("chorus-perf --calibrate"));
    }
  };
  fails_with("{", "is not JSON");
  fails_with("[1, 2]", "not a JSON object");
  fails_with(R"({"alpha_s": 1})", "not a chorus cost profile of format 1");
  auto j = chorus::to_json(p);
  j.erase("beta_s_per_byte");
  fails_with(j.dump(), "no \"beta_s_per_byte\"");
  j = chorus::to_json(p);
  j["alpha_s"] = -1;
  fails_with(j.dump(), "\"alpha_s\" is -1; it must be finite and >= 0");
  j = chorus::to_json(p);
  j["copy_s_per_byte"] = "fast";
  fails_with(j.dump(), "\"copy_s_per_byte\" is not a number");
  j = chorus::to_json(p);
  j["window_reduce_s_per_byte"] = "fast";
  fails_with(j.dump(), "\"window_reduce_s_per_byte\" is not a number");
  // A file written before window_reduce was measured loads, with it as `window`.
  j = chorus::to_json(p);
  j.erase("window_reduce_s_per_byte");
  {
    std::ofstream out(file.path);
    out << j.dump();
  }
  CHECK(chorus::load_cost_profile(file.path).window_reduce < 0);
  try {
    (void)chorus::load_cost_profile(file.path + ".missing");
    FAIL("no error for a missing file");
  } catch (const chorus::error& e) {
    CHECK_THAT(e.what(), Catch::Contains("cannot read"));
  }
}

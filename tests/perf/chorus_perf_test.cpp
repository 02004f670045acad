// chorus-perf as a user runs it: argument errors, result checking, the JSON and CSV files,
// the plot, and (where MPI is built) --compare mpi. Never how fast: only what it says.
#include <nlohmann/json.hpp>

#include <catch2/catch.hpp>

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

extern char** environ;

namespace {

namespace fs = std::filesystem;

struct outcome {
  int status = -1;
  std::string out, err;
};

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

/// A scratch directory, removed at the end of the test case.
struct scratch_dir {
  fs::path path;
  scratch_dir() {
    char tmpl[] = "/tmp/chorus-perf-test-XXXXXX";
    REQUIRE(::mkdtemp(tmpl) != nullptr);
    path = tmpl;
  }
  ~scratch_dir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  [[nodiscard]] std::string file(const std::string& name) const { return (path / name).string(); }
};

/// Runs chorus-perf with `args`; stdout and stderr captured, stdin /dev/null.
outcome chorus_perf(const std::vector<std::string>& args) {
  scratch_dir dir;
  const std::string out = dir.file("out"), err = dir.file("err");
  std::vector<std::string> argv = {CHORUS_PERF_EXE};
  argv.insert(argv.end(), args.begin(), args.end());
  std::vector<char*> raw;
  for (auto& a : argv) raw.push_back(a.data());
  raw.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 1, out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  posix_spawn_file_actions_addopen(&actions, 2, err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  pid_t pid = -1;
  const int rc = ::posix_spawn(&pid, raw[0], &actions, nullptr, raw.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  REQUIRE(rc == 0);
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  outcome o;
  o.status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  o.out = slurp(out);
  o.err = slurp(err);
  return o;
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);) lines.push_back(l);
  return lines;
}

/// Exit 2, nothing on stdout, and exactly one line on stderr that names `what`.
void expect_usage_error(const std::vector<std::string>& args, const std::string& what) {
  const outcome o = chorus_perf(args);
  INFO("stderr: " << o.err);
  CHECK(o.status == 2);
  CHECK(o.out.empty());
  const auto lines = lines_of(o.err);
  REQUIRE(lines.size() == 1);
  CHECK(lines[0].rfind("chorus-perf: ", 0) == 0);
  CHECK(lines[0].find(what) != std::string::npos);
}

/// Data rows of the table (the lines that do not start with '#').
std::vector<std::string> data_rows(const std::string& out) {
  std::vector<std::string> rows;
  for (const auto& l : lines_of(out)) {
    if (!l.empty() && l[0] != '#') rows.push_back(l);
  }
  return rows;
}

const std::vector<std::string> small = {"-b", "64", "-e", "4K", "-f", "4", "-n", "2", "-w", "1"};

std::vector<std::string> with(std::vector<std::string> a, const std::vector<std::string>& more) {
  a.insert(a.end(), more.begin(), more.end());
  return a;
}

}  // namespace

#if CHORUS_PERF_HAVE_NCCL
TEST_CASE("-t nccl without a usable GPU fails at once with one line saying why") {
  const outcome o = chorus_perf(with(small, {"-t", "nccl", "-a", "ring,native"}));
  INFO("stdout: " << o.out << "\nstderr: " << o.err);
  if (o.status == 0) {  // a GPU machine: the sweep ran, and every result was right
    CHECK(o.out.find("#wrong") != std::string::npos);
    return;
  }
  CHECK(o.status == 1);
  const auto lines = lines_of(o.err);
  REQUIRE(lines.size() == 1);
  CHECK(lines[0].find("-t nccl needs a CUDA device") != std::string::npos);
}
#endif

TEST_CASE("argument errors give one clear line and exit status 2") {
  expect_usage_error({"-b", "12X"}, "'12X' is not a size");
  expect_usage_error({"-e", "1.5M"}, "'1.5M' is not a size");
  expect_usage_error({"-b", "1M", "-e", "1K"}, "-b 1M is larger than -e 1K");
  expect_usage_error({"-a", "ring,spiral"}, "unknown algorithm 'spiral'");
  expect_usage_error({"all_gather", "-a", "tree"}, "algorithm tree cannot run all_gather");
  expect_usage_error({"-t", "carrier_pigeon"}, "unknown transport 'carrier_pigeon'");
#if !CHORUS_PERF_HAVE_UCX
  expect_usage_error({"-t", "ucx"}, "-t ucx: this chorus-perf was built without UCX");
#endif
#if !CHORUS_PERF_HAVE_NCCL
  expect_usage_error({"-t", "nccl"}, "-t nccl: this chorus-perf was built without NCCL");
#endif
  expect_usage_error({"-a", "ring,native"},
                     "-a native runs NCCL's own collectives, so it needs -t nccl");
  expect_usage_error({"all_to_all", "-t", "nccl", "-a", "native"},
                     "-a native: NCCL has no all_to_all");
  expect_usage_error({"-d", "float17"}, "unknown datatype 'float17'");
  expect_usage_error({"-o", "xor"}, "unknown op 'xor'");
  expect_usage_error({"all_scatter"}, "unknown collective 'all_scatter'");
  expect_usage_error({"-f", "1"}, "-f must be larger than 1");
  expect_usage_error({"--frobnicate"}, "--frobnicate");
  expect_usage_error({"broadcast", "-t", "inproc", "--np", "2", "-r", "2"}, "-r 2 is not a rank");
  expect_usage_error({"--compare", "nccl"}, "only 'mpi' is known");

  {  // --plot without gnuplot in PATH says what to install, before measuring anything
    const std::string path = std::getenv("PATH") != nullptr ? std::getenv("PATH") : "";
    ::setenv("PATH", "/nonexistent", 1);
    expect_usage_error({"--plot", "x.png"}, "--plot needs gnuplot");
    ::setenv("PATH", path.c_str(), 1);
  }

  // The positive control: the same tool with valid arguments exits 0.
  CHECK(chorus_perf(with(small, {"-t", "inproc", "--np", "2"})).status == 0);
}

TEST_CASE("every collective's results verify, for several types and rank counts") {
  struct run {
    std::vector<std::string> args;
  };
  const std::vector<std::vector<std::string>> cases = {
      {"all_reduce", "-d", "bfloat16", "-o", "sum", "-a", "ring,tree,direct"},
      {"all_reduce", "-d", "int8", "-o", "prod", "-a", "recursive_doubling,halving_doubling"},
      {"all_reduce", "-d", "float16", "-o", "avg"},
      {"reduce_scatter", "-d", "float64", "-o", "max", "-a", "ring,halving_doubling,direct"},
      {"all_gather", "-d", "uint16", "-a", "ring,recursive_doubling,direct"},
      {"broadcast", "-d", "int32", "-r", "2", "-a", "ring,tree,direct"},
      {"reduce", "-d", "float32", "-o", "min", "-r", "1", "-a", "tree,direct"},
      {"all_to_all", "-d", "uint64"},
      {"sendrecv", "-d", "int64"},
  };
  for (const auto& c : cases) {
    for (const char* np : {"3", "4"}) {
      const outcome o = chorus_perf(with(with(c, small), {"-t", "inproc", "--np", np}));
      INFO(o.out << o.err);
      CHECK(o.status == 0);
      CHECK(o.out.find("#wrong over all sizes and ranks: 0 (OK)") != std::string::npos);
      CHECK(data_rows(o.out).size() == 4);  // 64, 256, 1K, 4K
    }
  }
}

#if CHORUS_PERF_HAVE_UCX
TEST_CASE("-t ucx runs its ranks under chorusrun and verifies every result") {
  for (const char* coll : {"all_reduce", "all_gather"}) {
    const outcome o = chorus_perf(with(small, {coll, "-t", "ucx", "--np", "2", "-a", "ring"}));
    INFO(o.out << o.err);
    CHECK(o.status == 0);
    CHECK(o.out.find("#wrong over all sizes and ranks: 0 (OK)") != std::string::npos);
    CHECK(data_rows(o.out).size() == 4);  // 64, 256, 1K, 4K
  }
}
#endif

TEST_CASE("a corrupted result is counted in #wrong and fails the run") {
  scratch_dir dir;
  SECTION("threads") {
    const outcome o = chorus_perf(with(
        small, {"-t", "inproc", "--np", "3", "--test-corrupt-rank", "1", "--json", dir.file("j")}));
    INFO(o.out << o.err);
    CHECK(o.status == 1);
    CHECK(o.out.find("(WRONG RESULTS)") != std::string::npos);
    const auto j = nlohmann::json::parse(slurp(dir.file("j")));
    // one damaged element per size and placement, on rank 1 only
    CHECK(j["wrong_total"] == 4 * 2);
    for (const auto& r : j["results"]) CHECK(r["wrong"] == 1);
  }
  SECTION("processes under chorusrun") {
    const outcome o = chorus_perf(with(small, {"reduce_scatter", "-t", "shm", "--np", "2",
                                               "--test-corrupt-rank", "0", "-e", "64"}));
    INFO(o.out << o.err);
    CHECK(o.status == 1);
    const auto rows = data_rows(o.out);
    REQUIRE(rows.size() == 1);
    // the #wrong columns (out-of-place, in-place) of the only row: the 9th and 13th fields
    std::istringstream fields(rows[0]);
    std::vector<std::string> f;
    for (std::string x; fields >> x;) f.push_back(x);
    REQUIRE(f.size() == 13);
    CHECK(f[8] == "1");
    CHECK(f[12] == "1");
  }
  SECTION("control: the same runs without the hook pass") {
    CHECK(chorus_perf(with(small, {"-t", "inproc", "--np", "3"})).status == 0);
    CHECK(
        chorus_perf(with(small, {"reduce_scatter", "-t", "shm", "--np", "2", "-e", "64"})).status ==
        0);
  }
}

TEST_CASE("the JSON file parses and has every documented field; the CSV matches it") {
  scratch_dir dir;
  const outcome o = chorus_perf(with(
      small, {"-t", "shm", "--np", "2", "-a", "ring,automatic", "--percentiles", "--floor",
              "--floor-bytes", "1M", "--json", dir.file("r.json"), "--csv", dir.file("r.csv")}));
  INFO(o.out << o.err);
  REQUIRE(o.status == 0);
  const auto j = nlohmann::json::parse(slurp(dir.file("r.json")));
  // The fields docs/benchmarking.md documents.
  for (const char* k : {"tool", "command", "environment", "settings", "floor", "results", "summary",
                        "wrong_total"}) {
    CHECK(j.contains(k));
  }
  for (const char* k : {"host", "os", "cpu", "cores", "compiler", "chorus_version", "library",
                        "launcher", "date"}) {
    CHECK(j["environment"].contains(k));
  }
  for (const char* k :
       {"collective", "transport", "ranks", "algorithms", "type", "redop", "root", "min_bytes",
        "max_bytes", "step_factor", "step_bytes", "iters", "warmup_iters", "check"}) {
    CHECK(j["settings"].contains(k));
  }
  for (const char* k : {"copy_gbs", "bytes_per_rank", "busbw_gbs"}) CHECK(j["floor"].contains(k));
  CHECK(j["tool"] == "chorus-perf");
  CHECK(j["settings"]["ranks"] == 2);
  CHECK(j["settings"]["transport"] == "shm");
  CHECK(j["environment"]["launcher"] == "chorusrun");
  CHECK(j["floor"]["copy_gbs"].get<double>() > 0);
  // 4 sizes x 2 algorithms x 2 placements
  REQUIRE(j["results"].size() == 16);
  for (const auto& r : j["results"]) {
    for (const char* k : {"size", "count", "type", "redop", "root", "algorithm", "placement",
                          "time_us", "algbw_gbs", "busbw_gbs", "wrong", "p50_us", "p99_us"}) {
      CHECK(r.contains(k));
    }
    CHECK(r["wrong"] == 0);
    CHECK(r["size"].get<std::size_t>() == 4 * r["count"].get<std::size_t>());
    const double t = r["time_us"], algbw = r["algbw_gbs"], busbw = r["busbw_gbs"];
    CHECK(t > 0);
    CHECK(algbw == Approx(r["size"].get<double>() / (t * 1e-6) / 1e9));
    CHECK(busbw == Approx(algbw * 2 * (2 - 1) / 2.0));  // all-reduce: 2(n-1)/n
    CHECK(r["p50_us"].get<double>() <= r["p99_us"].get<double>());
  }
  REQUIRE(j["summary"].size() == 4);
  for (const auto& s : j["summary"]) {
    for (const char* k : {"algorithm", "placement", "peak_busbw_gbs", "peak_size", "largest_size",
                          "largest_busbw_gbs", "wrong"}) {
      CHECK(s.contains(k));
    }
    CHECK(s["largest_size"] == 4096);
    CHECK(s["peak_busbw_gbs"].get<double>() >= s["largest_busbw_gbs"].get<double>());
  }
  // The CSV: the environment as comments, then one row per result.
  const auto csv = lines_of(slurp(dir.file("r.csv")));
  std::size_t header = 0;
  while (header < csv.size() && csv[header].rfind("#", 0) == 0) ++header;
  REQUIRE(header < csv.size());
  CHECK(csv[header].rfind("tool,host,transport,ranks,collective,algorithm,placement,size", 0) == 0);
  CHECK(csv.size() - header - 1 == 16);
}

TEST_CASE("--plot draws a PNG") {
  scratch_dir dir;
  const outcome o =
      chorus_perf(with(small, {"-t", "inproc", "--np", "2", "-a", "ring,direct", "--floor",
                               "--floor-bytes", "1M", "--plot", dir.file("p.png")}));
  INFO(o.out << o.err);
  REQUIRE(o.status == 0);
  const std::string png = slurp(dir.file("p.png"));
  REQUIRE(png.size() > 1000);
  CHECK(png.substr(1, 3) == "PNG");
}

#if CHORUS_PERF_HAVE_MPI
TEST_CASE("--compare mpi runs both tools on the same sizes and prints the ratio") {
#if defined(__SANITIZE_ADDRESS__)
  // Open MPI's own allocations outlive MPI_Finalize; they are not chorus's leaks.
  const char* asan = std::getenv("ASAN_OPTIONS");
  ::setenv("ASAN_OPTIONS", (std::string(asan ? asan : "") + ":detect_leaks=0").c_str(), 1);
#endif
  scratch_dir dir;
  const auto args = with(small, {"-t", "shm", "--np", "2", "-a", "ring,automatic", "--compare",
                                 "mpi", "--rounds", "2", "--floor-bytes", "1M"});
  const outcome o = chorus_perf(with(args, {"--json", dir.file("c.json")}));
  INFO(o.out << o.err);
  REQUIRE(o.status == 0);
  const auto rows = data_rows(o.out);
  REQUIRE(rows.size() == 4);
  const auto j = nlohmann::json::parse(slurp(dir.file("c.json")));
  REQUIRE(j["rows"].size() == 4);
  CHECK(j["chorus_runs"].size() == 2);
  CHECK(j["mpi_runs"].size() == 2);
  for (const auto& r : j["rows"]) {
    const double mpi_t = r["mpi"]["time_us"];
    for (const char* a : {"ring", "automatic"}) {
      const double t = r["chorus"][a]["time_us"];
      CHECK(r["ratio_vs_mpi"][a].get<double>() == Approx(mpi_t / t));
    }
  }
  CHECK(o.out.find("#wrong over all rounds and ranks: chorus 0, MPI 0 (OK)") != std::string::npos);

  // A damaged result in the MPI runs fails the comparison too.
  const outcome bad = chorus_perf(with(args, {"--test-corrupt-rank", "1"}));
  CHECK(bad.status == 1);
  CHECK(bad.out.find("(WRONG RESULTS)") != std::string::npos);
}
#endif

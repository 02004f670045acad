// chorus-perf as a user runs it: argument errors, result checking, the JSON and CSV files,
// the plot, and (where MPI is built) --compare mpi. Never how fast: only what it says.
#include <chorus/dispatch/profile_json.hpp>

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
#include <optional>
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

/// Runs `argv`; stdout and stderr captured, stdin /dev/null.
outcome spawn(std::vector<std::string> argv) {
  scratch_dir dir;
  const std::string out = dir.file("out"), err = dir.file("err");
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

/// Runs chorus-perf with `args`.
outcome chorus_perf(const std::vector<std::string>& args) {
  std::vector<std::string> argv = {CHORUS_PERF_EXE};
  argv.insert(argv.end(), args.begin(), args.end());
  return spawn(std::move(argv));
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
TEST_CASE("--transport nccl without a usable GPU fails at once with one line saying why") {
  const outcome o = chorus_perf(with(small, {"--transport", "nccl", "--algo", "ring,native"}));
  INFO("stdout: " << o.out << "\nstderr: " << o.err);
  if (o.status == 0) {  // a GPU machine: the sweep ran, and every result was right
    CHECK(o.out.find("#wrong") != std::string::npos);
    return;
  }
  CHECK(o.status == 1);
  const auto lines = lines_of(o.err);
  REQUIRE(lines.size() == 1);
  CHECK(lines[0].find("--transport nccl needs a CUDA device") != std::string::npos);
}
#endif

TEST_CASE("argument errors give one clear line and exit status 2") {
  expect_usage_error({"-b", "12X"}, "'12X' is not a size");
  expect_usage_error({"-e", "1.5M"}, "'1.5M' is not a size");
  expect_usage_error({"-b", "1M", "-e", "1K"}, "-b 1M is larger than -e 1K");
  expect_usage_error({"--algo", "ring,spiral"}, "unknown algorithm 'spiral'");
  expect_usage_error({"all_gather", "--algo", "tree"}, "algorithm tree cannot run all_gather");
  expect_usage_error({"--transport", "carrier_pigeon"}, "unknown transport 'carrier_pigeon'");
  // -t and -a are nccl-tests' (threads, average); the old chorus meanings are pointed to
  expect_usage_error({"-t", "shm"}, "the transport is --transport shm");
  expect_usage_error({"-a", "ring"}, "the algorithm is --algo ring");
#if !CHORUS_PERF_HAVE_UCX
  expect_usage_error({"--transport", "ucx"},
                     "--transport ucx: this chorus-perf was built without UCX");
#endif
#if !CHORUS_PERF_HAVE_NCCL
  expect_usage_error({"--transport", "nccl"},
                     "--transport nccl: this chorus-perf was built without NCCL");
#endif
  expect_usage_error({"--algo", "ring,native"},
                     "--algo native runs NCCL's own collectives, so it needs --transport nccl");
  expect_usage_error({"all_to_all", "--transport", "nccl", "--algo", "native"},
                     "--algo native: NCCL has no all_to_all");
  expect_usage_error({"-d", "float17"}, "unknown datatype 'float17'");
  expect_usage_error({"-o", "xor"}, "unknown op 'xor'");
  expect_usage_error({"all_scatter"}, "unknown collective 'all_scatter'");
  expect_usage_error({"-f", "1"}, "-f must be larger than 1");
  expect_usage_error({"--frobnicate"}, "--frobnicate");
  expect_usage_error({"broadcast", "--transport", "inproc", "--np", "2", "-r", "2"},
                     "-r 2 is not a rank");
  expect_usage_error({"--compare", "nccl"}, "only 'mpi' is known");

  {  // --plot without gnuplot in PATH says what to install, before measuring anything
    const std::string path = std::getenv("PATH") != nullptr ? std::getenv("PATH") : "";
    ::setenv("PATH", "/nonexistent", 1);
    expect_usage_error({"--plot", "x.png"}, "--plot needs gnuplot");
    ::setenv("PATH", path.c_str(), 1);
  }

  // The positive control: the same tool with valid arguments exits 0.
  CHECK(chorus_perf(with(small, {"--transport", "inproc", "--np", "2"})).status == 0);
}

TEST_CASE("every collective's results verify, for several types and rank counts") {
  struct run {
    std::vector<std::string> args;
  };
  const std::vector<std::vector<std::string>> cases = {
      {"all_reduce", "-d", "bfloat16", "-o", "sum", "--algo", "ring,tree,direct"},
      {"all_reduce", "-d", "int8", "-o", "prod", "--algo", "recursive_doubling,halving_doubling"},
      {"all_reduce", "-d", "float16", "-o", "avg"},
      {"reduce_scatter", "-d", "float64", "-o", "max", "--algo", "ring,halving_doubling,direct"},
      {"all_gather", "-d", "uint16", "--algo", "ring,recursive_doubling,direct"},
      {"broadcast", "-d", "int32", "-r", "2", "--algo", "ring,tree,direct"},
      {"reduce", "-d", "float32", "-o", "min", "-r", "1", "--algo", "tree,direct"},
      {"all_to_all", "-d", "uint64"},
      {"sendrecv", "-d", "int64"},
  };
  for (const auto& c : cases) {
    for (const char* np : {"3", "4"}) {
      const outcome o = chorus_perf(with(with(c, small), {"--transport", "inproc", "--np", np}));
      INFO(o.out << o.err);
      CHECK(o.status == 0);
      CHECK(o.out.find("#wrong over all sizes and ranks: 0 (OK)") != std::string::npos);
      // one table per algorithm, each 64, 256, 1K, 4K
      std::size_t tables = 0;
      for (const auto& l : lines_of(o.out)) tables += l.rfind("# Algorithm: ", 0) == 0 ? 1 : 0;
      CHECK(tables >= 1);
      CHECK(data_rows(o.out).size() == 4 * tables);
    }
  }
}

#if CHORUS_PERF_HAVE_UCX
TEST_CASE("--transport ucx runs its ranks under chorusrun and verifies every result") {
  for (const char* coll : {"all_reduce", "all_gather"}) {
    const outcome o =
        chorus_perf(with(small, {coll, "--transport", "ucx", "--np", "2", "--algo", "ring"}));
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
    const outcome o =
        chorus_perf(with(small, {"--transport", "inproc", "--np", "3", "--test-corrupt-rank", "1",
                                 "--json", dir.file("j")}));
    INFO(o.out << o.err);
    CHECK(o.status == 1);
    CHECK(o.out.find("(WRONG RESULTS)") != std::string::npos);
    const auto j = nlohmann::json::parse(slurp(dir.file("j")));
    // one damaged element per size and placement, on rank 1 only
    CHECK(j["wrong_total"] == 4 * 2);
    for (const auto& r : j["results"]) CHECK(r["wrong"] == 1);
  }
  SECTION("processes under chorusrun") {
    const outcome o = chorus_perf(with(small, {"reduce_scatter", "--transport", "shm", "--np", "2",
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
    CHECK(chorus_perf(with(small, {"--transport", "inproc", "--np", "3"})).status == 0);
    CHECK(
        chorus_perf(with(small, {"reduce_scatter", "--transport", "shm", "--np", "2", "-e", "64"}))
            .status == 0);
  }
}

TEST_CASE("the JSON file parses and has every documented field; the CSV matches it") {
  scratch_dir dir;
  const outcome o = chorus_perf(with(
      small, {"--transport", "shm", "--np", "2", "--algo", "ring,automatic", "-I", "1", "--floor",
              "--floor-bytes", "1M", "--json", dir.file("r.json"), "--csv", dir.file("r.csv")}));
  INFO(o.out << o.err);
  REQUIRE(o.status == 0);
  const auto j = nlohmann::json::parse(slurp(dir.file("r.json")));
  // The fields docs/benchmarking.md documents.
  for (const char* k : {"tool", "command", "environment", "settings", "floor", "results", "summary",
                        "wrong_total", "out_of_bounds", "average_busbw_gbs"}) {
    CHECK(j.contains(k));
  }
  for (const char* k : {"host", "os", "cpu", "cores", "compiler", "build_flags", "commit",
                        "chorus_version", "library", "launcher", "date", "variables"}) {
    CHECK(j["environment"].contains(k));
  }
  // chorusrun's variables are recorded; the job secret is not
  const auto& vars = j["environment"]["variables"];
  CHECK(vars.contains("CHORUS_RANK"));
  for (const auto& [k, v] : vars.items()) {
    if (k.find("SECRET") != std::string::npos) CHECK(v == "(not recorded)");
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
    for (const char* k :
         {"size", "count", "type", "redop", "root", "algorithm", "placement", "cycle", "time_us",
          "algbw_gbs", "busbw_gbs", "wrong", "rank_time_us", "per_iteration"}) {
      CHECK(r.contains(k));
    }
    REQUIRE(r["rank_time_us"].size() == 2);
    for (const char* k : {"min_us", "max_us", "avg_us", "p50_us", "p99_us", "cv_pct", "times_us"}) {
      CHECK(r["per_iteration"].contains(k));
    }
    CHECK(r["per_iteration"]["times_us"].size() == 2);  // -n 2
    CHECK(r["wrong"] == 0);
    CHECK(r["size"].get<std::size_t>() == 4 * r["count"].get<std::size_t>());
    const double t = r["time_us"], algbw = r["algbw_gbs"], busbw = r["busbw_gbs"];
    CHECK(t > 0);
    CHECK(algbw == Approx(r["size"].get<double>() / (t * 1e-6) / 1e9));
    CHECK(busbw == Approx(algbw * 2 * (2 - 1) / 2.0));  // all-reduce: 2(n-1)/n
    const auto& it = r["per_iteration"];
    CHECK(it["min_us"].get<double>() <= it["p50_us"].get<double>());
    CHECK(it["p50_us"].get<double>() <= it["p99_us"].get<double>());
    CHECK(it["p99_us"].get<double>() <= it["max_us"].get<double>());
    // -a 1 (the default): the time is the average of the ranks' means
    CHECK(t ==
          Approx((r["rank_time_us"][0].get<double>() + r["rank_time_us"][1].get<double>()) / 2));
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
      chorus_perf(with(small, {"--transport", "inproc", "--np", "2", "--algo", "ring,direct",
                               "--floor", "--floor-bytes", "1M", "--plot", dir.file("p.png")}));
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
  const auto args = with(small, {"--transport", "shm", "--np", "2", "--algo", "ring,automatic",
                                 "--compare", "mpi", "--rounds", "2", "--floor-bytes", "1M"});
  const outcome o = chorus_perf(with(args, {"--json", dir.file("c.json")}));
  INFO(o.out << o.err);
  REQUIRE(o.status == 0);
  const auto rows = data_rows(o.out);
  REQUIRE(rows.size() == 4);
  const auto j = nlohmann::json::parse(slurp(dir.file("c.json")));
  REQUIRE(j["rows"].size() == 4);
  // size by size (so that rows stream): 4 sizes x 2 rounds of each tool
  CHECK(j["chorus_runs"].size() == 8);
  CHECK(j["mpi_runs"].size() == 8);
  CHECK(j["floor"]["copy_gbs"].get<double>() > 0);
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

// ---------------------------------------------------------------------------------------------
// nccl-tests' output format. The parser below is written against nccl-tests' own output (its
// src/util.cu: data rows of size, count, type, redop, root, then per placement time, algbw,
// busbw, #wrong; '#' lines otherwise; closing lines "# Out of bounds values : N OK|FAILED"
// and "# Avg bus bandwidth    : X"), not against chorus-perf's code, as the scripts people
// already have for nccl-tests parse it.

namespace {

struct nccl_row {
  std::size_t size = 0, count = 0;
  std::string type, redop;
  int root = 0;
  struct placement {
    double time = 0, algbw = 0, busbw = 0;
    std::string wrong;
  } out_of_place, in_place;
};

struct nccl_output {
  std::vector<nccl_row> rows;
  std::optional<long long> out_of_bounds;
  std::string out_of_bounds_verdict;
  std::optional<double> avg_busbw;
};

nccl_output parse_nccl_tests(const std::string& text, std::size_t fields_per_placement = 4) {
  nccl_output out;
  for (const auto& line : lines_of(text)) {
    if (line.empty()) continue;
    if (line[0] == '#') {
      const auto colon = line.find(':');
      if (colon == std::string::npos) continue;
      std::istringstream value(line.substr(colon + 1));
      if (line.rfind("# Out of bounds values", 0) == 0) {
        long long n = 0;
        value >> n >> out.out_of_bounds_verdict;
        out.out_of_bounds = n;
      } else if (line.rfind("# Avg bus bandwidth", 0) == 0) {
        double bw = 0;
        value >> bw;
        out.avg_busbw = bw;
      }
      continue;
    }
    std::istringstream in(line);
    std::vector<std::string> f;
    for (std::string x; in >> x;) f.push_back(x);
    REQUIRE(f.size() >= 5 + 2 * fields_per_placement);
    nccl_row r;
    r.size = std::stoull(f[0]);
    r.count = std::stoull(f[1]);
    r.type = f[2];
    r.redop = f[3];
    r.root = std::stoi(f[4]);
    for (int p = 0; p < 2; ++p) {
      auto& x = p == 0 ? r.out_of_place : r.in_place;
      const std::size_t at = 5 + static_cast<std::size_t>(p) * fields_per_placement;
      if (f[at] == "N/A") continue;
      x.time = std::stod(f[at]);
      x.algbw = std::stod(f[at + 1]);
      x.busbw = std::stod(f[at + 2]);
      x.wrong = f[at + 3];
    }
    out.rows.push_back(r);
  }
  return out;
}

/// nccl-tests' type names for chorus's.
std::string nccl_type(const std::string& chorus_name) {
  if (chorus_name == "float32") return "float";
  if (chorus_name == "float64") return "double";
  if (chorus_name == "float16") return "half";
  return chorus_name;
}

/// Runs chorus-perf with -J into a scratch file; the outcome and the parsed JSON.
std::pair<outcome, nlohmann::json> run_with_json(std::vector<std::string> args) {
  scratch_dir dir;
  const outcome o = chorus_perf(with(std::move(args), {"-J", dir.file("r.json")}));
  nlohmann::json j;
  if (fs::exists(dir.file("r.json"))) j = nlohmann::json::parse(slurp(dir.file("r.json")));
  return {o, j};
}

}  // namespace

TEST_CASE("an nccl-tests parser reads chorus-perf's output, and the numbers round-trip") {
  const auto [o, j] =
      run_with_json(with(small, {"--transport", "shm", "--np", "2", "--algo", "ring,automatic"}));
  INFO(o.out << o.err);
  REQUIRE(o.status == 0);
  const nccl_output parsed = parse_nccl_tests(o.out);
  REQUIRE(parsed.rows.size() == 8);  // one table per algorithm: 2 x (64, 256, 1K, 4K)
  REQUIRE(j["results"].size() == 16);
  double busbw_sum = 0;
  for (std::size_t i = 0; i < parsed.rows.size(); ++i) {
    const auto& row = parsed.rows[i];
    const auto& oop = j["results"][2 * i];
    const auto& ip = j["results"][2 * i + 1];
    INFO("row " << i);
    CHECK(oop["algorithm"] == (i < 4 ? "ring" : "automatic"));
    CHECK(row.size == oop["size"].get<std::size_t>());
    CHECK(row.count == oop["count"].get<std::size_t>());
    CHECK(row.type == nccl_type(oop["type"]));
    CHECK(row.redop == oop["redop"]);
    CHECK(row.root == oop["root"].get<int>());
    for (const auto& [x, r] : {std::pair{row.out_of_place, oop}, std::pair{row.in_place, ip}}) {
      // printed with 2 decimals where they fit
      CHECK(x.time == Approx(r["time_us"].get<double>()).margin(0.006));
      CHECK(x.algbw == Approx(r["algbw_gbs"].get<double>()).margin(0.006));
      CHECK(x.busbw == Approx(r["busbw_gbs"].get<double>()).margin(0.006));
      CHECK(x.wrong == "0");
      busbw_sum += r["busbw_gbs"].get<double>();
    }
  }
  REQUIRE(parsed.out_of_bounds);
  CHECK(*parsed.out_of_bounds == 0);
  CHECK(parsed.out_of_bounds_verdict == "OK");
  REQUIRE(parsed.avg_busbw);
  CHECK(*parsed.avg_busbw == Approx(busbw_sum / 16).epsilon(1e-4));
  CHECK(*parsed.avg_busbw == Approx(j["average_busbw_gbs"].get<double>()).epsilon(1e-4));

  SECTION("wrong results count as out-of-bounds tests, and FAILED") {
    const outcome bad = chorus_perf(
        with(small, {"--transport", "inproc", "--np", "3", "--test-corrupt-rank", "2"}));
    CHECK(bad.status == 1);
    const nccl_output p = parse_nccl_tests(bad.out);
    REQUIRE(p.out_of_bounds);
    CHECK(*p.out_of_bounds == 8);  // every test: 4 sizes x 2 placements
    CHECK(p.out_of_bounds_verdict == "FAILED");
  }
}

TEST_CASE("every nccl-tests flag is accepted with nccl-tests' meaning") {
  const std::vector<std::string> threads = {"--transport", "inproc", "--np", "2"};
  const auto run = [&](const std::vector<std::string>& more) {
    return run_with_json(with(with(small, threads), more));
  };

  SECTION("-t: threads per process, each a rank (inproc); refused where ranks are processes") {
    const auto [o, j] =
        run_with_json(with(small, {"--transport", "inproc", "-t", "3", "all_gather"}));
    INFO(o.out << o.err);
    REQUIRE(o.status == 0);
    CHECK(j["settings"]["ranks"] == 3);
    CHECK(o.out.find("# nThread 3 nGpus 1") != std::string::npos);
    expect_usage_error({"--transport", "shm", "-t", "2"}, "needs --transport inproc");
    expect_usage_error({"--transport", "inproc", "-t", "2", "--np", "3"}, "give one");
  }
  SECTION("-g: one GPU per rank") {
    CHECK(run({"-g", "1"}).first.status == 0);
    expect_usage_error({"-g", "2"}, "one GPU per rank");
  }
  SECTION("-b -e -f -i: the sizes") {
    const auto [o, j] = run({"-b", "102", "-e", "402", "-i", "100"});
    const auto rows = parse_nccl_tests(o.out).rows;
    REQUIRE(rows.size() == 4);
    CHECK(rows[0].size == 100);  // 102 bytes: 25 whole float32 elements, as nccl-tests counts
    CHECK(rows[3].size == 400);
    const auto [o2, j2] = run({"-b", "8", "-e", "512", "-f", "8"});
    CHECK(parse_nccl_tests(o2.out).rows.size() == 3);  // 8, 64, 512
  }
  SECTION("-n -w -m: iterations, warm-up, calls per iteration") {
    const auto [o, j] = run({"-n", "3", "-w", "0", "-m", "4"});
    REQUIRE(o.status == 0);
    CHECK(o.out.find("warmup iters: 0 iters: 3 agg iters: 4") != std::string::npos);
    CHECK(j["settings"]["agg_iters"] == 4);
    CHECK(j["results"][0]["per_iteration"]["times_us"].size() == 3);
  }
  SECTION("-N: the sweep runs and prints this many times") {
    const auto [o, j] = run({"-N", "3"});
    CHECK(parse_nccl_tests(o.out).rows.size() == 3 * 4);
    CHECK(j["results"].back()["cycle"] == 2);
  }
  SECTION("-p: parallel init") {
    const auto [o, j] = run({"-p", "1"});
    CHECK(o.status == 0);
    CHECK(o.out.find("# Parallel Init Enabled") != std::string::npos);
  }
  SECTION("-c: checked calls, 0 for none") {
    const auto [o, j] = run({"-c", "0"});
    const auto rows = parse_nccl_tests(o.out).rows;
    REQUIRE(!rows.empty());
    CHECK(rows[0].out_of_place.wrong == "N/A");
    CHECK(o.out.find("# results not checked (-c 0)") != std::string::npos);
    // three checked calls each count the damaged element
    const auto [bad, jb] = run({"-c", "3", "--test-corrupt-rank", "1"});
    CHECK(bad.status == 1);
    for (const auto& r : jb["results"]) CHECK(r["wrong"] == 1);  // only the first is damaged
  }
  SECTION("-o and -d: one, or all") {
    const auto [o, j] = run({"-o", "all", "-d", "int32"});
    REQUIRE(o.status == 0);
    const auto rows = parse_nccl_tests(o.out).rows;
    REQUIRE(rows.size() == 5 * 4);  // sum, prod, max, min, avg
    CHECK(rows[0].redop == "sum");
    CHECK(rows[4].redop == "prod");
    CHECK(rows[19].redop == "avg");
    CHECK(rows[0].type == "int32");
    const auto [o2, j2] = run({"-d", "all", "-o", "max"});
    REQUIRE(o2.status == 0);
    const auto rows2 = parse_nccl_tests(o2.out).rows;
    CHECK(rows2.size() == 12 * 4);
    CHECK(rows2.front().type == "int8");
    CHECK(rows2.back().type == "double");
    expect_usage_error({"-o", "mulsum"}, "mulsum");
  }
  SECTION("-r: the root") {
    const auto [o, j] = run({"broadcast", "-r", "1"});
    REQUIRE(o.status == 0);
    for (const auto& r : parse_nccl_tests(o.out).rows) CHECK(r.root == 1);
  }
  SECTION("-z: blocking modes") {
    for (const char* z : {"1", "2", "3"}) {
      const auto [o, j] = run({"-z", z});
      CHECK(o.status == 0);
      CHECK(o.out.find("# Blocking Enabled") != std::string::npos);
      CHECK(j["settings"]["blocking"] == std::stoi(z));
    }
    expect_usage_error({"-z", "4"}, "-z must be");
  }
  SECTION("-y: NCCL's null stream, refused without NCCL") {
    CHECK(run({"-y", "0"}).first.status == 0);
    expect_usage_error({"-y", "1"}, "needs --transport nccl");
  }
  SECTION("-T: the timeout of every wait") {
    const auto [o, j] = run({"-T", "7"});
    CHECK(o.status == 0);
    CHECK(j["settings"]["timeout_s"] == 7);
    CHECK(j["environment"]["variables"]["CHORUS_TIMEOUT"].get<std::string>().rfind("7", 0) == 0);
  }
  SECTION("-C: the heading says cputime") {
    const auto [o, j] = run({"-C", "1"});
    CHECK(o.out.find("cputime") != std::string::npos);
  }
  SECTION("-S: a timestamp ends every row") {
    const auto [o, j] = run({"-S", "1"});
    for (const auto& l : data_rows(o.out)) {
      std::istringstream in(l);
      std::vector<std::string> f;
      for (std::string x; in >> x;) f.push_back(x);
      REQUIRE(f.size() == 15);
      CHECK(f[13].size() == 10);  // YYYY-MM-DD
      CHECK(f[14].size() == 8);   // HH:MM:SS
    }
  }
  SECTION("-J: the JSON file") {
    const auto [o, j] = run({});
    CHECK(j["results"].size() == 8);
  }
  SECTION("-a: how rank times combine") {
    for (const int a : {0, 1, 2, 3}) {
      const auto [o, j] = run({"-a", std::to_string(a)});
      REQUIRE(o.status == 0);
      CHECK(j["settings"]["average"] == a);
      for (const auto& r : j["results"]) {
        const std::vector<double> each = r["rank_time_us"];
        REQUIRE(each.size() == 2);
        const double want = a == 0   ? each[0]
                            : a == 1 ? (each[0] + each[1]) / 2
                            : a == 2 ? std::min(each[0], each[1])
                                     : std::max(each[0], each[1]);
        CHECK(r["time_us"].get<double>() == Approx(want));
      }
    }
    expect_usage_error({"-a", "4"}, "-a 4");
  }
  SECTION("-G -R -x -D -V: NCCL features, refused without NCCL rather than ignored") {
    CHECK(run({"-G", "0", "-R", "0"}).first.status == 0);
    expect_usage_error({"-G", "1"}, "-G 1: CUDA graphs");
    expect_usage_error({"-R", "1"}, "-R 1: buffer registration");
    expect_usage_error({"-x", "1"}, "-x 1: NCCL's CTA policy");
    expect_usage_error({"-D", "1"}, "device implementation");
    expect_usage_error({"-V", "8"}, "device implementation");
  }
  SECTION("-M: the memory report") {
    const auto [o, j] = run({"-M", "1"});
    CHECK(o.out.find("# Host memory usage") != std::string::npos);
    CHECK(j["memory"]["buffers_bytes"].get<std::size_t>() >= 2 * 4096);
  }
  SECTION("-u: misaligned buffers still give exact results") {
    const auto [o, j] = run({"-u", "1", "reduce_scatter", "-d", "float64"});
    CHECK(o.status == 0);
    CHECK(j["settings"]["unalign"] == 1);
    CHECK(j["wrong_total"] == 0);
  }
  SECTION("-I -K: per-iteration columns") {
    const auto [o, j] = run({"-I", "1", "-K", "1", "-n", "4"});
    REQUIRE(o.status == 0);
    CHECK(o.out.find("i_p99") != std::string::npos);
    const auto rows = data_rows(o.out);
    REQUIRE(!rows.empty());
    std::istringstream in(rows[0]);
    std::vector<std::string> f;
    for (std::string x; in >> x;) f.push_back(x);
    REQUIRE(f.size() == 5 + 2 * 8);
    CHECK(std::stod(f[9]) <= std::stod(f[10]));                       // i_min <= i_max
    CHECK(j["results"][0]["per_iteration"]["times_us"].size() == 3);  // 4 less 1 skipped
    expect_usage_error({"-K", "1"}, "-K needs -I 1");
  }
  SECTION("-h: the help names every flag") {
    const outcome o = chorus_perf({"-h"});
    CHECK(o.status == 0);
    for (const char* flag : {"--nthreads",
                             "--ngpus",
                             "--minbytes",
                             "--maxbytes",
                             "--stepbytes",
                             "--stepfactor",
                             "--iters",
                             "--agg_iters",
                             "--warmup_iters",
                             "--run_cycles",
                             "--parallel_init",
                             "--check",
                             "--op",
                             "--datatype",
                             "--root",
                             "--blocking",
                             "--stream_null",
                             "--timeout",
                             "--cudagraph",
                             "--report_cputime",
                             "--report_timestamps",
                             "--output_file",
                             "--average",
                             "--local_register",
                             "--cta_policy",
                             "--device_implementation",
                             "--device_cta_count",
                             "--memory",
                             "--unalign",
                             "--per_iter_timing",
                             "--per_iter_skip"}) {
      CHECK(o.out.find(flag) != std::string::npos);
    }
  }
}

TEST_CASE("--latency prints an OSU-style table: average, min, median, max per size") {
  const auto [o, j] =
      run_with_json(with(small, {"--transport", "inproc", "--np", "2", "--latency", "-n", "5"}));
  INFO(o.out << o.err);
  REQUIRE(o.status == 0);
  CHECK(o.out.find("Avg Latency(us)") != std::string::npos);
  const auto rows = data_rows(o.out);
  REQUIRE(rows.size() == 4);
  for (std::size_t i = 0; i < rows.size(); ++i) {
    std::istringstream in(rows[i]);
    double size = 0, avg = 0, lo = 0, p50 = 0, hi = 0;
    int iterations = 0;
    in >> size >> avg >> lo >> p50 >> hi >> iterations;
    CHECK(lo <= p50);
    CHECK(p50 <= hi);
    CHECK(iterations == 5);
    CHECK(avg == Approx(j["results"][2 * i]["time_us"].get<double>()).margin(0.006));
  }
}

TEST_CASE("CHORUS_DEBUG=info reports every collective on stderr; a bad value is one error") {
  const std::vector<std::string> args = {"--transport", "inproc", "--np",   "2",   "-b",
                                         "64",          "-e",     "64",     "-n",  "1",
                                         "-w",          "0",      "--algo", "ring"};
  ::setenv("CHORUS_DEBUG", "info", 1);
  const outcome o = chorus_perf(args);
  ::setenv("CHORUS_DEBUG", "verbose", 1);
  const outcome bad = chorus_perf(args);
  ::unsetenv("CHORUS_DEBUG");
  INFO(o.out << o.err);
  REQUIRE(o.status == 0);
  CHECK(o.err.find("chorus: rank 0/2 pid ") != std::string::npos);
  CHECK(o.err.find("chorus: rank 1/2 pid ") != std::string::npos);
  CHECK(o.err.find(" on inproc: ring, float32 x 16 (64 B)") != std::string::npos);
  CHECK(parse_nccl_tests(o.out).rows.size() == 1);  // the table is untouched
  const outcome quiet = chorus_perf(args);
  CHECK(quiet.err.find("chorus: rank") == std::string::npos);  // off by default
  CHECK(bad.status == 1);
  CHECK(bad.err.find("CHORUS_DEBUG='verbose'") != std::string::npos);
}

#if CHORUS_PERF_HAVE_CHORUSRUN
TEST_CASE("under chorusrun the table reaches its stdout without the rank prefix") {
  const outcome o = spawn(with({CHORUSRUN_EXE, "-n", "2", CHORUS_PERF_EXE, "--transport", "shm"},
                               with(small, {"-e", "256"})));
  INFO(o.out << o.err);
  REQUIRE(o.status == 0);
  const nccl_output parsed = parse_nccl_tests(o.out);
  CHECK(parsed.rows.size() == 2);  // 64, 256
  REQUIRE(parsed.out_of_bounds);
  CHECK(*parsed.out_of_bounds == 0);
  CHECK(o.out.find("[0]") == std::string::npos);
  CHECK(o.out.find("# Using 2 ranks over shm (chorusrun)") != std::string::npos);
}
#endif

TEST_CASE("--calibrate writes a profile that --profile and load_cost_profile read") {
  scratch_dir dir;
  const std::string file = dir.file("profile.json");
  const outcome o = chorus_perf({"--transport", "inproc", "--np", "2", "--calibrate", file});
  INFO(o.out << o.err);
  REQUIRE(o.status == 0);
  CHECK(o.out.find("# written to " + file) != std::string::npos);
  const chorus::schedule::cost_profile p = chorus::load_cost_profile(file);
  CHECK(p.source.starts_with("inproc, 2 ranks, "));
  CHECK(p.alpha > 0);
  CHECK(p.beta > 0);
  CHECK(p.reduce > 0);
  CHECK(p.copy > 0);
  CHECK(p.memory_reduce > 0);
  CHECK(p.cache_bytes >= (std::size_t{256} << 10));
  CHECK(p.window < 0);  // inproc has no windows
  const auto measured = nlohmann::json::parse(slurp(file))["measured"];
  CHECK(measured["ranks"] == 2);
  CHECK(measured["ping_pong_half_round_trip_s"].contains("8"));
  CHECK(measured["exchange_s"].contains("262144"));

  // over shared memory the windows are measured too: reading a peer's bytes into a copy
  // (one-sided all-gather) and into a reduction (one-sided reduce-scatter); 3 ranks, whose
  // blocks of 2 MiB are no whole number of floats, and one of which has no partner to
  // exchange with
  const std::string shm_file = dir.file("shm.json");
  const outcome s = chorus_perf({"--transport", "shm", "--np", "3", "--calibrate", shm_file});
  INFO(s.out << s.err);
  REQUIRE(s.status == 0);
  const chorus::schedule::cost_profile q = chorus::load_cost_profile(shm_file);
  CHECK(q.window >= 0);
  CHECK(q.window_reduce >= 0);
  CHECK(s.out.find("#   window_reduce ") != std::string::npos);

  // --explain with the model tuner: the reasons before the table, the table untouched
  const outcome e = chorus_perf({"--transport", "inproc", "--np", "2", "-b", "1M", "-e", "1M", "-n",
                                 "1", "-w", "0", "--explain", "--profile", file});
  INFO(e.out << e.err);
  REQUIRE(e.status == 0);
  CHECK(e.out.find("# all_reduce of 1 MiB on 2 ranks\n#   profile: inproc, 2 ranks, ") !=
        std::string::npos);
  CHECK(e.out.find("<- chosen") != std::string::npos);
  CHECK(e.out.find("chosen by the default rule") == std::string::npos);  // the model chose
  CHECK(parse_nccl_tests(e.out).rows.size() == 1);

  // mistakes are one line each
  const outcome one = chorus_perf({"--transport", "inproc", "--np", "1", "--calibrate", file});
  CHECK(one.status == 2);
  CHECK(one.err.find("--calibrate measures messages between ranks: give --np 2 or more") !=
        std::string::npos);
  const outcome missing =
      chorus_perf({"--transport", "inproc", "--np", "2", "--profile", dir.file("none.json")});
  CHECK(missing.status != 0);
  CHECK(missing.err.find("cannot read") != std::string::npos);
}

TEST_CASE("chorus-sim predicts every candidate at any scale, with crossovers and JSON") {
  scratch_dir dir;
  const std::string json = dir.file("sim.json");
  const outcome o =
      spawn({CHORUS_SIM_EXE, "all_reduce", "--ranks", "16", "--hosts", "4", "--inter-bandwidth",
             "1", "--inter-alpha", "10", "-b", "1K", "-e", "16M", "-f", "16", "--json", json});
  INFO(o.out << o.err);
  REQUIRE(o.status == 0);
  CHECK(o.out.starts_with("# chorus-sim: all_reduce on 16 ranks on 4 hosts (4 or more each)\n"));
  CHECK(o.out.find("# crossovers: ") != std::string::npos);
  CHECK(o.out.find("# at 4 MiB: per algorithm") != std::string::npos);
  const auto j = nlohmann::json::parse(slurp(json));
  REQUIRE(j["rows"].size() == 4);  // 1K, 16K, 256K, 4M (-e 16M, -f 16)
  for (const auto& row : j["rows"]) {
    REQUIRE(!row["predictions"].empty());
    // fastest first, and "fastest" names the first
    CHECK(row["fastest"] == row["predictions"][0]["algorithm"]);
    double last = 0;
    for (const auto& p : row["predictions"]) {
      CHECK(p["seconds"].get<double>() >= last);
      last = p["seconds"].get<double>();
    }
  }
  // slow links between hosts: hierarchical (the only one that is a candidate here only
  // because of them) appears, and sends less between hosts than the flat ring
  const auto& big = j["rows"].back()["predictions"];
  std::optional<double> ring_across, hier_across;
  for (const auto& p : big) {
    if (p["algorithm"] == "ring") ring_across = p["inter_host_bytes"].get<double>();
    if (p["algorithm"] == "hierarchical") hier_across = p["inter_host_bytes"].get<double>();
  }
  REQUIRE(ring_across);
  REQUIRE(hier_across);
  CHECK(*hier_across <= *ring_across);

  const outcome bad = spawn({CHORUS_SIM_EXE, "--ranks", "4", "--hosts", "8"});
  CHECK(bad.status == 2);
  CHECK(bad.err.find("--hosts 8 is more than --ranks 4") != std::string::npos);
  const outcome algo = spawn({CHORUS_SIM_EXE, "all_to_all", "--ranks", "4", "--algo", "ring"});
  CHECK(algo.status == 2);
  CHECK(algo.err.find("--algo: ring cannot run all_to_all") != std::string::npos);
}

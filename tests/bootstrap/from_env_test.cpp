// from_env / detect_world: every launcher's variables through an injected environment, the
// order in which launchers are recognised, the store each one leads to, and the message for
// every missing or malformed variable. End to end: worlds of threads that connect through
// the store from_env sets up (rank 0 serving, or an external server as under chorusrun).
#include <chorus/bootstrap/from_env.hpp>

#include <catch2/catch.hpp>

#include "bootstrap/store_contract.hpp"

#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
namespace bs = chorus::bootstrap;
using vars = std::map<std::string, std::string, std::less<>>;

namespace {

bs::world detect(vars v) { return bs::detect_world(bs::environment_from(std::move(v))); }

/// The message of the invalid_argument error that detecting `v` throws ("" if none).
std::string error_of(vars v) {
  try {
    detect(std::move(v));
  } catch (const chorus::error& e) {
    if (e.value() != chorus::errc::invalid_argument) return "wrong code: " + std::string(e.what());
    return e.what();
  }
  return "";
}

/// What torchrun gives rank `rank` of `n` whose store is on 127.0.0.1:`store_port`.
vars torchrun_vars(int rank, int n, std::uint16_t store_port) {
  return {{"RANK", std::to_string(rank)},
          {"WORLD_SIZE", std::to_string(n)},
          {"MASTER_ADDR", "127.0.0.1"},
          {"MASTER_PORT", std::to_string(store_port - 1)},
          {"CHORUS_TIMEOUT", "20"}};
}

}  // namespace

TEST_CASE("from_env: chorusrun's variables") {
  const auto w = detect({{"CHORUS_RANK", "2"},
                         {"CHORUS_SIZE", "4"},
                         {"CHORUS_LOCAL_RANK", "2"},
                         {"CHORUS_LOCAL_SIZE", "4"},
                         {"CHORUS_STORE", "127.0.0.1:29400"},
                         {"CHORUS_JOB_ID", "0123abcd"},
                         {"CHORUS_TIMEOUT", "2.5"}});
  CHECK(w.detected == bs::launcher::chorusrun);
  CHECK(w.rank == 2);
  CHECK(w.size == 4);
  CHECK(w.local_rank == 2);
  CHECK(w.local_size == 4);
  REQUIRE(w.store_at);
  CHECK(w.store_at->host == "127.0.0.1");
  CHECK(w.store_at->port == 29400);
  CHECK_FALSE(w.store_at->rank0_serves);  // chorusrun serves it
  CHECK(w.job_id == "0123abcd");
  CHECK(w.timeout == std::chrono::milliseconds(2500));
  CHECK_FALSE(static_cast<bool>(w.store));  // detect_world connects nothing
}

TEST_CASE("from_env: chorusrun without local variables is one node; size 1 needs no store") {
  const auto w =
      detect({{"CHORUS_RANK", "1"}, {"CHORUS_SIZE", "3"}, {"CHORUS_STORE", "[::1]:5000"}});
  CHECK(w.local_rank == 1);
  CHECK(w.local_size == 3);
  REQUIRE(w.store_at);
  CHECK(w.store_at->host == "::1");
  CHECK(w.store_at->port == 5000);
  const auto one = detect({{"CHORUS_RANK", "0"}, {"CHORUS_SIZE", "1"}});
  CHECK_FALSE(one.store_at);
  CHECK(one.job_id.empty());
  CHECK(one.timeout == chorus::default_timeout);
}

TEST_CASE("from_env: torchrun's variables; the store is on MASTER_PORT + 1, served by rank 0") {
  const auto w = detect({{"RANK", "5"},
                         {"WORLD_SIZE", "8"},
                         {"LOCAL_RANK", "1"},
                         {"LOCAL_WORLD_SIZE", "4"},
                         {"MASTER_ADDR", "node01"},
                         {"MASTER_PORT", "29500"}});
  CHECK(w.detected == bs::launcher::torchrun);
  CHECK(w.rank == 5);
  CHECK(w.size == 8);
  CHECK(w.local_rank == 1);
  CHECK(w.local_size == 4);
  REQUIRE(w.store_at);
  CHECK(w.store_at->host == "node01");
  CHECK(w.store_at->port == 29501);
  CHECK(w.store_at->rank0_serves);
  // CHORUS_STORE takes precedence over MASTER_*.
  const auto o = detect({{"RANK", "0"},
                         {"WORLD_SIZE", "2"},
                         {"MASTER_ADDR", "node01"},
                         {"MASTER_PORT", "29500"},
                         {"CHORUS_STORE", "10.0.0.1:7000"}});
  CHECK(o.store_at->host == "10.0.0.1");
  CHECK(o.store_at->port == 7000);
  CHECK(o.store_at->rank0_serves);
  // LOCAL_RANK alone, as torchrun accepts it: the local size is unknown.
  const auto l = detect({{"RANK", "3"},
                         {"WORLD_SIZE", "4"},
                         {"LOCAL_RANK", "1"},
                         {"MASTER_ADDR", "node01"},
                         {"MASTER_PORT", "29500"}});
  CHECK(l.local_rank == 1);
  CHECK(l.local_size == -1);
}

TEST_CASE("from_env: Open MPI, MPICH/PMI and Slurm variables") {
  const auto ompi = detect({{"OMPI_COMM_WORLD_RANK", "3"},
                            {"OMPI_COMM_WORLD_SIZE", "6"},
                            {"OMPI_COMM_WORLD_LOCAL_RANK", "0"},
                            {"OMPI_COMM_WORLD_LOCAL_SIZE", "3"},
                            {"CHORUS_STORE", "head:1234"}});
  CHECK(ompi.detected == bs::launcher::open_mpi);
  CHECK((ompi.rank == 3 && ompi.size == 6 && ompi.local_rank == 0 && ompi.local_size == 3));
  CHECK(ompi.store_at->rank0_serves);

  const auto mpich = detect({{"PMI_RANK", "1"},
                             {"PMI_SIZE", "2"},
                             {"MPI_LOCALRANKID", "1"},
                             {"MPI_LOCALNRANKS", "2"},
                             {"MASTER_ADDR", "127.0.0.1"},
                             {"MASTER_PORT", "4000"}});
  CHECK(mpich.detected == bs::launcher::mpich);
  CHECK((mpich.rank == 1 && mpich.size == 2 && mpich.local_rank == 1 && mpich.local_size == 2));
  CHECK(mpich.store_at->port == 4001);

  const auto slurm = detect({{"SLURM_PROCID", "6"},
                             {"SLURM_NTASKS", "7"},
                             {"SLURM_LOCALID", "0"},
                             {"SLURM_NODEID", "3"},
                             {"SLURM_STEP_TASKS_PER_NODE", "2(x3),1"},
                             {"CHORUS_STORE", "head:1234"}});
  CHECK(slurm.detected == bs::launcher::slurm);
  CHECK((slurm.rank == 6 && slurm.size == 7 && slurm.local_rank == 0 && slurm.local_size == 1));
  const auto slurm2 = detect({{"SLURM_PROCID", "3"},
                              {"SLURM_NTASKS", "7"},
                              {"SLURM_LOCALID", "1"},
                              {"SLURM_NODEID", "1"},
                              {"SLURM_TASKS_PER_NODE", "2(x3),1"},
                              {"CHORUS_STORE", "head:1234"}});
  CHECK(slurm2.local_size == 2);
  // Without a task count Slurm's local size is unknown (-1), not guessed; the local rank
  // is known.
  const auto slurm3 =
      detect({{"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "1"}, {"SLURM_LOCALID", "0"}});
  CHECK(slurm3.local_size == -1);
  CHECK(slurm3.local_rank == 0);
  CHECK(bs::detail::env::slurm_tasks_on_node("4", 0) == 4);
  CHECK(bs::detail::env::slurm_tasks_on_node("4", 1) == -1);
  CHECK(bs::detail::env::slurm_tasks_on_node("3(x2", 0) == -1);
}

TEST_CASE(
    "from_env: launchers are recognised in order chorusrun, torchrun, Open MPI, MPICH, Slurm") {
  const vars all{{"CHORUS_RANK", "0"},
                 {"CHORUS_SIZE", "1"},
                 {"RANK", "1"},
                 {"WORLD_SIZE", "2"},
                 {"OMPI_COMM_WORLD_RANK", "2"},
                 {"OMPI_COMM_WORLD_SIZE", "3"},
                 {"PMI_RANK", "3"},
                 {"PMI_SIZE", "4"},
                 {"SLURM_PROCID", "4"},
                 {"SLURM_NTASKS", "5"},
                 {"CHORUS_STORE", "h:1"}};
  vars v = all;
  CHECK(detect(v).detected == bs::launcher::chorusrun);
  v.erase("CHORUS_RANK");
  v.erase("CHORUS_SIZE");
  CHECK(detect(v).detected == bs::launcher::torchrun);
  v.erase("RANK");
  v.erase("WORLD_SIZE");
  CHECK(detect(v).detected == bs::launcher::open_mpi);
  v.erase("OMPI_COMM_WORLD_RANK");
  v.erase("OMPI_COMM_WORLD_SIZE");
  CHECK(detect(v).detected == bs::launcher::mpich);
  v.erase("PMI_RANK");
  v.erase("PMI_SIZE");
  CHECK(detect(v).detected == bs::launcher::slurm);
  CHECK(detect(v).rank == 4);
  // An allocation's SLURM_NTASKS alone (a batch script, not a task) is not a launch.
  CHECK_THAT(error_of({{"SLURM_NTASKS", "4"}}), Catch::Contains("no launcher's variables"));
  // Empty values count as unset.
  CHECK_THAT(error_of({{"RANK", ""}, {"WORLD_SIZE", ""}}), Catch::Contains("no launcher"));
}

TEST_CASE("from_env: every missing or malformed variable is named") {
  using Catch::Contains;
  const auto check = [](vars v, const std::string& expected) {
    const std::string message = error_of(std::move(v));
    INFO(message);
    CHECK_THAT(message, Contains(expected));
    CHECK_THAT(message, Contains("launchers looked for, in order: chorusrun (CHORUS_RANK, "
                                 "CHORUS_SIZE); torchrun (RANK, WORLD_SIZE); Open MPI"));
  };
  check({}, "no launcher's variables are set");
  check({{"RANK", "0"}}, "RANK is set (torchrun) but WORLD_SIZE is not");
  check({{"WORLD_SIZE", "2"}}, "WORLD_SIZE is set (torchrun) but RANK is not");
  check({{"CHORUS_RANK", "0"}}, "CHORUS_RANK is set (chorusrun) but CHORUS_SIZE is not");
  check({{"OMPI_COMM_WORLD_RANK", "0"}},
        "OMPI_COMM_WORLD_RANK is set (Open MPI) but OMPI_COMM_WORLD_SIZE is not");
  check({{"PMI_SIZE", "2"}}, "PMI_SIZE is set (MPICH/PMI) but PMI_RANK is not");
  check({{"SLURM_PROCID", "0"}}, "SLURM_PROCID is set (Slurm) but SLURM_NTASKS is not");
  check({{"RANK", "x"}, {"WORLD_SIZE", "2"}}, "RANK='x' is not an integer (torchrun)");
  check({{"RANK", "1"}, {"WORLD_SIZE", "2.5"}}, "WORLD_SIZE='2.5' is not an integer");
  check({{"RANK", " 1"}, {"WORLD_SIZE", "2"}}, "RANK=' 1' is not an integer");
  check({{"RANK", "-1"}, {"WORLD_SIZE", "2"}}, "RANK='-1' is out of range");
  check({{"RANK", "0"}, {"WORLD_SIZE", "0"}},
        "WORLD_SIZE='0' is out of range: it must be from 1 to 2147483647");
  check({{"RANK", "0"}, {"WORLD_SIZE", "99999999999"}},
        "WORLD_SIZE='99999999999' is out of range: it must be from 1 to 2147483647");
  check({{"RANK", "4"}, {"WORLD_SIZE", "4"}}, "RANK=4 is not below WORLD_SIZE=4 (torchrun)");
  check({{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"LOCAL_WORLD_SIZE", "2"}},
        "LOCAL_WORLD_SIZE is set (torchrun) but LOCAL_RANK is not");
  check({{"RANK", "0"}, {"WORLD_SIZE", "4"}, {"LOCAL_RANK", "2"}, {"LOCAL_WORLD_SIZE", "2"}},
        "LOCAL_RANK=2 is not below LOCAL_WORLD_SIZE=2");
  check({{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"LOCAL_RANK", "0"}, {"LOCAL_WORLD_SIZE", "3"}},
        "LOCAL_WORLD_SIZE=3 is larger than WORLD_SIZE=2");
  check({{"CHORUS_RANK", "0"}, {"CHORUS_SIZE", "2"}},
        "CHORUS_RANK is set (chorusrun) but CHORUS_STORE is not");
  check({{"OMPI_COMM_WORLD_RANK", "1"}, {"OMPI_COMM_WORLD_SIZE", "4"}},
        "Open MPI gives rank 1 of 4 but no store address: set CHORUS_STORE=host:port");
  check({{"SLURM_PROCID", "1"}, {"SLURM_NTASKS", "2"}},
        "Slurm gives rank 1 of 2 but no store address");
  check({{"PMI_RANK", "0"}, {"PMI_SIZE", "2"}, {"MASTER_ADDR", "h"}},
        "MASTER_ADDR is set but MASTER_PORT is not");
  check({{"PMI_RANK", "0"}, {"PMI_SIZE", "2"}, {"MASTER_PORT", "5"}},
        "MASTER_PORT is set but MASTER_ADDR is not");
  check({{"PMI_RANK", "0"}, {"PMI_SIZE", "2"}, {"MASTER_ADDR", "h"}, {"MASTER_PORT", "http"}},
        "MASTER_PORT='http' is not a port from 1 to 65534");
  check({{"PMI_RANK", "0"}, {"PMI_SIZE", "2"}, {"MASTER_ADDR", "h"}, {"MASTER_PORT", "65535"}},
        "MASTER_PORT='65535' is not a port");
  for (const std::string bad : {"localhost", "host:0", "host:65536", ":80", "host:", "host:8x",
                                "[::1", "[::1:80", "::1]:80", "::1:80", "[]:80", "[a]b]:80"}) {
    check({{"CHORUS_RANK", "0"}, {"CHORUS_SIZE", "2"}, {"CHORUS_STORE", bad}},
          "CHORUS_STORE='" + bad + "' is not host:port");
  }
  check({{"CHORUS_RANK", "0"}, {"CHORUS_SIZE", "1"}, {"CHORUS_JOB_ID", "a/b"}},
        "CHORUS_JOB_ID='a/b' must be 1 to 64 letters");
  check({{"CHORUS_RANK", "0"}, {"CHORUS_SIZE", "1"}, {"CHORUS_TIMEOUT", "soon"}},
        "CHORUS_TIMEOUT='soon' is not a positive duration");
  // read later by the communicator, but checked before any store is reached
  check({{"CHORUS_RANK", "0"},
         {"CHORUS_SIZE", "2"},
         {"CHORUS_STORE", "127.0.0.1:1"},
         {"CHORUS_CHECK", "2"}},
        "CHORUS_CHECK='2' is not a switch; use 1 or 0");
  check({{"CHORUS_RANK", "0"},
         {"CHORUS_SIZE", "2"},
         {"CHORUS_STORE", "127.0.0.1:1"},
         {"CHORUS_PROGRESS", "async"}},
        "CHORUS_PROGRESS='async' is not a progress mode; use thread or caller");
}

TEST_CASE("from_env: the real environment is read through process_environment") {
  ::setenv("CHORUS_FROM_ENV_TEST_VARIABLE", "present", 1);
  const auto env = bs::process_environment();
  CHECK(env("CHORUS_FROM_ENV_TEST_VARIABLE") == std::optional<std::string>("present"));
  ::unsetenv("CHORUS_FROM_ENV_TEST_VARIABLE");
  CHECK_FALSE(env("CHORUS_FROM_ENV_TEST_VARIABLE"));
}

TEST_CASE("from_env: a one-rank world gets an in-process store and a random job id") {
  auto w = bs::from_env(bs::environment_from({{"CHORUS_RANK", "0"}, {"CHORUS_SIZE", "1"}}));
  REQUIRE(static_cast<bool>(w.store));
  CHECK(w.job_id.size() == 32);
  CHECK(w.job_id.find_first_not_of("0123456789abcdef") == std::string::npos);
  w.store.set("k", bs::to_bytes("v"));
  CHECK(bs::as_string(w.store.get("k", contract::soon())) == "v");
  auto again = bs::from_env(bs::environment_from({{"CHORUS_RANK", "0"}, {"CHORUS_SIZE", "1"}}));
  CHECK(again.job_id != w.job_id);
}

TEST_CASE("from_env: torchrun-style ranks meet at MASTER_PORT + 1, rank 0 serving") {
  constexpr int n = 3;
  const std::uint16_t store_port = contract::unused_port();
  std::vector<bs::world> worlds(n);
  const auto failures = contract::on_threads(n, [&](int rank) {
    auto w = bs::from_env(bs::environment_from(torchrun_vars(rank, n, store_port)));
    const auto blobs = bs::all_gather_blob(w.store, "t/ag", w.rank, w.size,
                                           bs::to_bytes(std::to_string(w.rank)), contract::soon());
    if (blobs.size() != n) throw std::runtime_error("wrong blob count");
    bs::barrier(w.store, "t/done", w.rank, w.size, contract::soon());
    worlds[static_cast<std::size_t>(rank)] = std::move(w);
  });
  REQUIRE(failures.empty());
  CHECK(worlds[0].job_id.size() == 32);
  for (const auto& w : worlds) CHECK(w.job_id == worlds[0].job_id);
  // Rank 0 serves: the others leave first (its store would wait for them otherwise).
  while (!worlds.empty()) worlds.pop_back();
}

TEST_CASE("from_env: chorusrun-style ranks use an external server and the given job id") {
  bs::tcp_store_server server;
  constexpr int n = 2;
  std::vector<std::string> ids(n);
  const auto failures = contract::on_threads(n, [&](int rank) {
    auto w = bs::from_env(bs::environment_from({{"CHORUS_RANK", std::to_string(rank)},
                                                {"CHORUS_SIZE", std::to_string(n)},
                                                {"CHORUS_STORE", server.address()},
                                                {"CHORUS_JOB_ID", "job42"}}));
    bs::barrier(w.store, "c/done", w.rank, w.size, contract::soon());
    ids[static_cast<std::size_t>(rank)] = w.job_id;
  });
  REQUIRE(failures.empty());
  CHECK(ids == std::vector<std::string>{"job42", "job42"});
}

TEST_CASE("from_env: rank 0 that cannot serve on the store's port says so") {
  bs::tcp_store_server busy;
  try {
    bs::from_env(bs::environment_from({{"RANK", "0"},
                                       {"WORLD_SIZE", "2"},
                                       {"MASTER_ADDR", "127.0.0.1"},
                                       {"MASTER_PORT", std::to_string(busy.port() - 1)}}));
    FAIL("from_env returned");
  } catch (const chorus::error& e) {
    CHECK(e.value() == chorus::errc::transport);
    CHECK_THAT(e.what(), Catch::Contains(std::to_string(busy.port())));
  }
}

TEST_CASE("from_env: the job secret comes from CHORUS_JOB_SECRET or a file only its owner reads") {
  const std::string secret(64, 'c');
  CHECK(detect({{"CHORUS_RANK", "0"}, {"CHORUS_SIZE", "1"}}).secret.empty());
  CHECK(
      detect({{"CHORUS_RANK", "0"}, {"CHORUS_SIZE", "1"}, {"CHORUS_JOB_SECRET", secret}}).secret ==
      secret);
  CHECK_THAT(error_of({{"CHORUS_RANK", "0"}, {"CHORUS_SIZE", "1"}, {"CHORUS_JOB_SECRET", "abc"}}),
             Catch::Contains("CHORUS_JOB_SECRET holds 3 bytes"));
  const auto dir =
      std::filesystem::temp_directory_path() / ("chorus-secret-test-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const auto file = dir / "secret";
  {
    std::ofstream out(file);
    out << secret << "\n";
  }
  const vars with_file{
      {"CHORUS_RANK", "0"}, {"CHORUS_SIZE", "1"}, {"CHORUS_JOB_SECRET_FILE", file.string()}};
  ::chmod(file.c_str(), 0644);
  CHECK_THAT(error_of(with_file), Catch::Contains("has mode 0644") && Catch::Contains("chmod 600"));
  ::chmod(file.c_str(), 0600);
  CHECK(detect(with_file).secret == secret);  // the trailing newline is not part of it
  vars both = with_file;
  both["CHORUS_JOB_SECRET"] = secret;
  CHECK_THAT(error_of(both), Catch::Contains("set one"));
  CHECK_THAT(error_of({{"CHORUS_RANK", "0"},
                       {"CHORUS_SIZE", "1"},
                       {"CHORUS_JOB_SECRET_FILE", (dir / "missing").string()}}),
             Catch::Contains("cannot be opened"));
  std::filesystem::remove_all(dir);
}

TEST_CASE("from_env: the store's limits come from CHORUS_STORE_* variables") {
  const bs::tcp_store_limits defaults;
  const auto w = detect({{"CHORUS_RANK", "0"},
                         {"CHORUS_SIZE", "1"},
                         {"CHORUS_STORE_MAX_CONNECTIONS", "100"},
                         {"CHORUS_STORE_MAX_TOTAL_BYTES", "256m"},
                         {"CHORUS_STORE_MAX_VALUE_BYTES", "64k"},
                         {"CHORUS_STORE_IDLE_TIMEOUT", "0"},
                         {"CHORUS_STORE_HANDSHAKE_TIMEOUT", "3s"}});
  CHECK(w.store_limits.max_connections == 100);
  CHECK(w.store_limits.max_total_bytes == std::size_t{256} << 20);
  CHECK(w.store_limits.max_value_bytes == std::size_t{64} << 10);
  CHECK(w.store_limits.max_key_bytes == defaults.max_key_bytes);
  CHECK(w.store_limits.idle_timeout == chorus::duration::zero());
  CHECK(w.store_limits.handshake_timeout == std::chrono::seconds(3));
  CHECK_THAT(
      error_of(
          {{"CHORUS_RANK", "0"}, {"CHORUS_SIZE", "1"}, {"CHORUS_STORE_MAX_KEY_BYTES", "lots"}}),
      Catch::Contains("CHORUS_STORE_MAX_KEY_BYTES='lots' is not a positive count"));
  CHECK_THAT(
      error_of(
          {{"CHORUS_RANK", "0"}, {"CHORUS_SIZE", "1"}, {"CHORUS_STORE_HANDSHAKE_TIMEOUT", "0"}}),
      Catch::Contains("CHORUS_STORE_HANDSHAKE_TIMEOUT='0' is not a positive duration"));
}

TEST_CASE("from_env: torchrun-style ranks with a shared CHORUS_JOB_SECRET authenticate") {
  constexpr int n = 2;
  const std::uint16_t store_port = contract::unused_port();
  const std::string secret(64, 'd');
  std::vector<bs::world> worlds(n);
  const auto failures = contract::on_threads(n, [&](int rank) {
    vars v = torchrun_vars(rank, n, store_port);
    v["CHORUS_JOB_SECRET"] = secret;
    auto w = bs::from_env(bs::environment_from(std::move(v)));
    bs::barrier(w.store, "s/done", w.rank, w.size, contract::soon());
    worlds[static_cast<std::size_t>(rank)] = std::move(w);
  });
  REQUIRE(failures.empty());
  // A process without the secret learns nothing, not even the job id.
  try {
    bs::tcp_store stranger({.port = store_port, .timeout = 20s});
    FAIL("a client without the secret was served");
  } catch (const chorus::error& e) {
    CHECK_THAT(e.what(), Catch::Contains("requires the job secret"));
  }
  while (!worlds.empty()) worlds.pop_back();
}

namespace {

/// A fresh directory of this test process under the system's temporary directory.
std::filesystem::path scratch_dir(const std::string& what) {
  const auto dir = std::filesystem::temp_directory_path() /
                   ("chorus-" + what + "-" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  return dir;
}

unsigned mode_of(const std::filesystem::path& p) {
  struct stat st {};
  if (::stat(p.c_str(), &st) != 0) return 0;
  return static_cast<unsigned>(st.st_mode & 07777);
}

}  // namespace

TEST_CASE("from_env: under torchrun-style variables rank 0 draws the job secret into a 0600 file") {
  constexpr int n = 3;
  const std::uint16_t store_port = contract::unused_port();
  const auto dir = scratch_dir("secret-dir");
  std::vector<bs::world> worlds(n);
  const auto failures = contract::on_threads(n, [&](int rank) {
    vars v = torchrun_vars(rank, n, store_port);
    v["CHORUS_SECRET_DIR"] = dir.string();
    auto w = bs::from_env(bs::environment_from(std::move(v)));
    bs::barrier(w.store, "f/done", w.rank, w.size, contract::soon());
    worlds[static_cast<std::size_t>(rank)] = std::move(w);
  });
  REQUIRE(failures.empty());
  const std::string file = worlds[0].secret_file;
  CHECK(file.starts_with(dir.string() + "/store-127.0.0.1-" + std::to_string(store_port) + "-on-"));
  for (const auto& w : worlds) CHECK(w.secret_file == file);
  CHECK(mode_of(dir) == 0700);
  CHECK(mode_of(file) == 0600);
  std::string secret;
  std::ifstream(file) >> secret;
  CHECK(secret.size() == 64);
  CHECK(secret.find_first_not_of("0123456789abcdef") == std::string::npos);
  // A process without the secret gets nothing from the store.
  try {
    bs::tcp_store stranger({.port = store_port, .timeout = 20s});
    FAIL("a client without the secret was served");
  } catch (const chorus::error& e) {
    CHECK_THAT(e.what(), Catch::Contains("requires the job secret"));
  }
  {  // One with it (the same user, reading the file) is served.
    bs::tcp_store same_user({.port = store_port, .timeout = 20s, .secret = secret});
    CHECK(bs::as_string(same_user.get("chorus/job_id", contract::soon())) == worlds[0].job_id);
  }
  // The file goes with rank 0's store (the others leave first: rank 0 serves them).
  while (worlds.size() > 1) worlds.pop_back();
  CHECK(std::filesystem::exists(file));
  worlds.clear();
  CHECK_FALSE(std::filesystem::exists(file));
  std::filesystem::remove_all(dir);
}

TEST_CASE("from_env: an earlier job's secret file does not stop the next job on its port") {
  constexpr int n = 2;
  const std::uint16_t store_port = contract::unused_port();
  const auto dir = scratch_dir("stale-secret");
  std::filesystem::create_directory(dir);
  ::chmod(dir.c_str(), 0700);
  vars v1 = torchrun_vars(1, n, store_port);
  v1["CHORUS_SECRET_DIR"] = dir.string();
  const std::string file = bs::detect_world(bs::environment_from(v1)).secret_file;
  {
    std::ofstream out(file);
    out << std::string(64, '7') << "\n";
  }
  ::chmod(file.c_str(), 0600);
  // Rank 1 starts first; the file it may read before rank 0 replaces it is refused, and it
  // reads the file again (the refusal itself is tested in tcp_store_test.cpp).
  std::vector<bs::world> worlds(n);
  const auto failures = contract::on_threads(n, [&](int rank) {
    if (rank == 0) std::this_thread::sleep_for(300ms);
    vars v = torchrun_vars(rank, n, store_port);
    v["CHORUS_SECRET_DIR"] = dir.string();
    auto w = bs::from_env(bs::environment_from(std::move(v)));
    bs::barrier(w.store, "s/done", w.rank, w.size, contract::soon());
    worlds[static_cast<std::size_t>(rank)] = std::move(w);
  });
  REQUIRE(failures.empty());
  CHECK(worlds[0].job_id == worlds[1].job_id);
  while (!worlds.empty()) worlds.pop_back();
  CHECK_FALSE(std::filesystem::exists(file));
  std::filesystem::remove_all(dir);
}

TEST_CASE("from_env: a rank that cannot see rank 0's secret file says where it looked") {
  const std::uint16_t store_port = contract::unused_port();
  const auto dir0 = scratch_dir("secret-node0");
  const auto dir1 = scratch_dir("secret-node1");  // another node's home, say
  vars v0 = torchrun_vars(0, 2, store_port);
  v0["CHORUS_SECRET_DIR"] = dir0.string();
  auto rank0 = bs::from_env(bs::environment_from(std::move(v0)));
  vars v1 = torchrun_vars(1, 2, store_port);
  v1["CHORUS_SECRET_DIR"] = dir1.string();
  v1["CHORUS_TIMEOUT"] = "1";
  try {
    bs::from_env(bs::environment_from(std::move(v1)));
    FAIL("rank 1 connected without the secret");
  } catch (const chorus::error& e) {
    CHECK(e.value() == chorus::errc::timeout);
    CHECK_THAT(e.what(), Catch::Contains(dir1.string() + "/store-127.0.0.1-") &&
                             Catch::Contains("did not exist") &&
                             Catch::Contains("CHORUS_SECRET_DIR") &&
                             Catch::Contains("CHORUS_JOB_SECRET"));
  }
  std::filesystem::remove_all(dir0);
  std::filesystem::remove_all(dir1);
}

TEST_CASE("from_env: where the secret file goes, and CHORUS_JOB_SECRET=none") {
  const std::uint16_t port = 29501;
  auto at = [&](vars extra) {
    vars v = torchrun_vars(1, 2, port);
    for (auto& [k, val] : extra) v[k] = val;
    return detect(std::move(v)).secret_file;
  };
  char host[256] = {};
  ::gethostname(host, sizeof host - 1);
  CHECK(at({{"HOME", "/home/someone"}}) ==
        "/home/someone/.chorus/store-127.0.0.1-29501-on-" + std::string(host) + ".secret");
  CHECK(at({{"HOME", "/home/someone"}, {"CHORUS_SECRET_DIR", "/shared/me/"}})
            .starts_with("/shared/me/store-"));
  CHECK(at({}).starts_with("/tmp/chorus-" + std::to_string(::geteuid()) + "/store-"));
  // An address other nodes reach names the store alone (the same file on every node).
  CHECK(at({{"HOME", "/h"}, {"MASTER_ADDR", "10.1.2.3"}}) ==
        "/h/.chorus/store-10.1.2.3-29501.secret");
  CHECK(at({{"HOME", "/h"}, {"MASTER_ADDR", "fe80::1%eth0"}}) ==
        "/h/.chorus/store-fe80__1_eth0-29501.secret");
  // A secret given, or none on purpose: no file.
  CHECK(at({{"CHORUS_JOB_SECRET", std::string(32, 'a')}}).empty());
  CHECK(at({{"CHORUS_JOB_SECRET", "none"}}).empty());
  CHECK(detect({{"CHORUS_RANK", "0"}, {"CHORUS_SIZE", "2"}, {"CHORUS_STORE", "127.0.0.1:5"}})
            .secret_file.empty());  // chorusrun serves the store and passes the secret

  // CHORUS_JOB_SECRET=none: an unauthenticated store, as before there were secrets.
  const std::uint16_t store_port = contract::unused_port();
  vars none = torchrun_vars(0, 1, store_port);
  none["CHORUS_JOB_SECRET"] = "none";
  auto w = bs::from_env(bs::environment_from(std::move(none)));
  CHECK(w.secret.empty());
  bs::tcp_store anyone({.port = store_port, .timeout = 20s});
  CHECK(bs::as_string(anyone.get("chorus/job_id", contract::soon())) == w.job_id);
}

TEST_CASE("from_env: rank 0 refuses a secret directory that others may use") {
  const auto dir = scratch_dir("open-secret-dir");
  std::filesystem::create_directory(dir);
  ::chmod(dir.c_str(), 0755);
  vars v = torchrun_vars(0, 2, contract::unused_port());
  v["CHORUS_SECRET_DIR"] = dir.string();
  try {
    bs::from_env(bs::environment_from(std::move(v)));
    FAIL("rank 0 wrote its secret into a directory others can list");
  } catch (const chorus::error& e) {
    CHECK(e.value() == chorus::errc::invalid_argument);
    CHECK_THAT(e.what(), Catch::Contains("has mode 0755") && Catch::Contains("chmod 700") &&
                             Catch::Contains("CHORUS_SECRET_DIR"));
  }
  CHECK(std::filesystem::is_empty(dir));
  std::filesystem::remove_all(dir);
}

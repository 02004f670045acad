#pragma once
/// \file
/// `chorus::bootstrap::from_env()`: who am I, how many are we, and where is the store --
/// read from the variables a launcher sets.
///
///     auto world = chorus::bootstrap::from_env();   // chorusrun, torchrun, mpirun, srun
///     // world.rank, world.size, world.local_rank, world.store, world.job_id ...
///
/// Launchers are recognised in this order (the first whose rank or size variable is set
/// wins; Slurm only by SLURM_PROCID, because allocation variables such as SLURM_NTASKS are
/// also visible outside tasks):
///
// clang-format off
/// | launcher  | rank, size                           | local rank, local size                       |
/// |-----------|--------------------------------------|----------------------------------------------|
/// | chorusrun | CHORUS_RANK, CHORUS_SIZE             | CHORUS_LOCAL_RANK, CHORUS_LOCAL_SIZE (1)     |
/// | torchrun  | RANK, WORLD_SIZE                     | LOCAL_RANK, LOCAL_WORLD_SIZE                 |
/// | Open MPI  | OMPI_COMM_WORLD_RANK, ..._SIZE       | OMPI_COMM_WORLD_LOCAL_RANK, ..._LOCAL_SIZE   |
/// | MPICH/PMI | PMI_RANK, PMI_SIZE                   | MPI_LOCALRANKID, MPI_LOCALNRANKS             |
/// | Slurm     | SLURM_PROCID, SLURM_NTASKS           | SLURM_LOCALID; SLURM_STEP_TASKS_PER_NODE (2) |
///
/// (1) default: the rank and size. (2) the local size from SLURM_STEP_TASKS_PER_NODE and
/// SLURM_NODEID. A local rank without its local size is accepted (as torchrun does for
/// LOCAL_RANK): `local_size` is then -1.
// clang-format on
///
/// The store, in this order:
/// 1. `CHORUS_STORE=host:port`: under chorusrun, chorusrun serves it; under any other
///    launcher rank 0 serves it (binding that address) and the others connect.
/// 2. `MASTER_ADDR` + `MASTER_PORT`: rank 0 serves a tcp_store at MASTER_ADDR on port
///    **MASTER_PORT + 1**. Not MASTER_PORT itself: under torchrun (and in any PyTorch
///    program) torch's own store already listens there.
/// 3. Neither, and the world has one rank: an in-process `memory_store`.
/// Otherwise (MPI or Slurm without 1 or 2) `from_env` says which variables to set.
///
/// Also read: `CHORUS_JOB_ID` (the job's unique token; when absent, rank 0 draws a random
/// one and shares it through the store), `CHORUS_TIMEOUT` (how long to wait for the
/// store; see core/deadline.hpp), `CHORUS_JOB_SECRET` or `CHORUS_JOB_SECRET_FILE` (the
/// secret every rank proves to the store; chorusrun sets it; where rank 0 serves the store
/// and none is given, rank 0 draws one into a 0600 file in `CHORUS_SECRET_DIR` or
/// ~/.chorus, and the other ranks read it there; `CHORUS_JOB_SECRET=none` turns this off;
/// see docs/security.md), and on
/// the process that serves the store the `CHORUS_STORE_MAX_*` limits and
/// `CHORUS_STORE_IDLE_TIMEOUT` / `CHORUS_STORE_HANDSHAKE_TIMEOUT` (see `tcp_store_limits`).
#include <chorus/bootstrap/memory_store.hpp>
#include <chorus/bootstrap/posix.hpp>
#include <chorus/bootstrap/store.hpp>
#include <chorus/bootstrap/tcp_store.hpp>
#include <chorus/core/deadline.hpp>
#include <chorus/core/error.hpp>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

namespace chorus::inline v0::bootstrap {

/// The launcher whose variables `detect_world` used.
enum class launcher { none, chorusrun, torchrun, open_mpi, mpich, slurm };

inline constexpr std::string_view name(launcher l) noexcept {
  switch (l) {
    case launcher::none:
      return "none";
    case launcher::chorusrun:
      return "chorusrun";
    case launcher::torchrun:
      return "torchrun";
    case launcher::open_mpi:
      return "Open MPI";
    case launcher::mpich:
      return "MPICH/PMI";
    case launcher::slurm:
      return "Slurm";
  }
  return "unknown";
}

/// Where the job's tcp_store is, and who serves it.
struct store_location {
  std::string host;
  std::uint16_t port = 0;
  bool rank0_serves = false;  ///< rank 0 runs the server; false: the launcher does
  std::string source;         ///< the variables it came from, for messages
};

namespace detail::env {

/// The job secret file rank 0 wrote; removed when the last copy goes, unless another job
/// has replaced it since (same store address, e.g. 127.0.0.1 on a shared home).
class written_secret {
 public:
  written_secret(std::string path, dev_t dev, ino_t ino) noexcept
      : path_(std::move(path)), dev_(dev), ino_(ino) {}
  written_secret(const written_secret&) = delete;
  written_secret& operator=(const written_secret&) = delete;
  ~written_secret() {
    struct stat st {};
    if (::lstat(path_.c_str(), &st) == 0 && st.st_dev == dev_ && st.st_ino == ino_) {
      ::unlink(path_.c_str());
    }
  }
  [[nodiscard]] const std::string& path() const noexcept { return path_; }

 private:
  std::string path_;
  dev_t dev_;
  ino_t ino_;
};

}  // namespace detail::env

/// What a process knows about the job it belongs to.
struct world {
  int rank = 0;
  int size = 1;
  int local_rank = -1;  ///< rank among this node's processes; -1 when the launcher does not say
  int local_size = -1;  ///< processes of the job on this node; -1 when the launcher does not say
  /// Unique token of the job (letters, digits, '-', '_', '.'); names shared-memory segments
  /// and prefixes store keys. Empty after `detect_world` unless CHORUS_JOB_ID is set.
  std::string job_id;
  launcher detected = launcher::none;
  /// The tcp_store of the job; nullopt for a one-rank world that names none.
  std::optional<store_location> store_at;
  duration timeout = default_timeout;  ///< CHORUS_TIMEOUT, or the default
  /// The job secret (CHORUS_JOB_SECRET, or the file CHORUS_JOB_SECRET_FILE names); empty
  /// when neither is set. Never print it.
  std::string secret;
  /// With no secret given and rank 0 serving the store (torchrun, mpirun, srun): the file
  /// in which rank 0 puts the secret it draws, and where the other ranks find it
  /// (CHORUS_SECRET_DIR, else ~/.chorus, else /tmp/chorus-<uid>; see docs/security.md).
  /// Empty when a secret is given, the launcher serves the store, there is no store, or
  /// CHORUS_JOB_SECRET=none (an unauthenticated store).
  std::string secret_file;
  /// The store's limits, from CHORUS_STORE_* (used by the rank that serves the store).
  tcp_store_limits store_limits;
  /// On rank 0: removes `secret_file` once the store (declared after it) is gone.
  std::shared_ptr<const detail::env::written_secret> written_secret;
  any_store store;  ///< connected by `from_env`; empty after `detect_world`
};

/// Looks up an environment variable: its value, or nullopt when unset.
using environment = std::function<std::optional<std::string>(std::string_view name)>;

/// The process's real environment (getenv).
inline environment process_environment() {
  return [](std::string_view name) -> std::optional<std::string> {
    const char* value = std::getenv(std::string(name).c_str());
    if (value == nullptr) return std::nullopt;
    return std::string(value);
  };
}

/// A fixed environment, for tests and for callers that read their configuration elsewhere.
inline environment environment_from(std::map<std::string, std::string, std::less<>> vars) {
  return [vars = std::move(vars)](std::string_view name) -> std::optional<std::string> {
    if (auto it = vars.find(name); it != vars.end()) return it->second;
    return std::nullopt;
  };
}

namespace detail::env {

struct scheme {
  launcher which;
  std::string_view rank, size, local_rank, local_size;  // local_size empty: derived (Slurm)
};

inline constexpr scheme schemes[] = {
    {launcher::chorusrun, "CHORUS_RANK", "CHORUS_SIZE", "CHORUS_LOCAL_RANK", "CHORUS_LOCAL_SIZE"},
    {launcher::torchrun, "RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE"},
    {launcher::open_mpi, "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE",
     "OMPI_COMM_WORLD_LOCAL_RANK", "OMPI_COMM_WORLD_LOCAL_SIZE"},
    {launcher::mpich, "PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID", "MPI_LOCALNRANKS"},
    {launcher::slurm, "SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID", ""},
};

inline std::string looked_for() {
  std::string s = "launchers looked for, in order:";
  bool first = true;
  for (const auto& sc : schemes) {
    s += (first ? " " : "; ") + std::string(name(sc.which)) + " (" + std::string(sc.rank) + ", " +
         std::string(sc.size) + ")";
    first = false;
  }
  return s;
}

[[noreturn]] inline void fail(const std::string& what) {
  throw error(errc::invalid_argument, "chorus: from_env: " + what + "; " + looked_for());
}

/// For a malformed setting, where the launchers looked for are beside the point.
[[noreturn]] inline void fail_setting(const std::string& what) {
  throw error(errc::invalid_argument, "chorus: from_env: " + what);
}

/// The variable's value; an empty value counts as unset.
inline std::optional<std::string> lookup(const environment& env, std::string_view var) {
  auto v = env(var);
  if (v && v->empty()) return std::nullopt;
  return v;
}

inline std::optional<long long> parse_int(std::string_view text) {
  long long v = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc{} || end != text.data() + text.size()) return std::nullopt;
  return v;
}

/// `var`'s value as an integer in [min, 2^31), or throws naming it and the launcher.
inline int parse_count(std::string_view var, const std::string& value, long long min, launcher l) {
  const auto v = parse_int(value);
  if (!v) {
    fail(std::string(var) + "='" + value + "' is not an integer (" + std::string(name(l)) + ")");
  }
  if (*v < min || *v > 0x7FFF'FFFF) {
    fail(std::string(var) + "='" + value + "' is out of range: it must be from " +
         std::to_string(min) + " to 2147483647 (" + std::string(name(l)) + ")");
  }
  return static_cast<int>(*v);
}

/// The number of tasks on node `node` from Slurm's "2(x3),1" notation, or -1.
inline int slurm_tasks_on_node(std::string_view spec, int node) {
  while (!spec.empty() && node >= 0) {
    const auto comma = spec.find(',');
    std::string_view item = spec.substr(0, comma);
    spec = comma == std::string_view::npos ? std::string_view{} : spec.substr(comma + 1);
    long long repeat = 1;
    if (const auto paren = item.find("(x"); paren != std::string_view::npos) {
      if (!item.ends_with(")")) return -1;
      const auto r = parse_int(item.substr(paren + 2, item.size() - paren - 3));
      if (!r || *r < 1) return -1;
      repeat = *r;
      item = item.substr(0, paren);
    }
    const auto tasks = parse_int(item);
    if (!tasks || *tasks < 0 || *tasks > 0x7FFF'FFFF) return -1;
    if (node < repeat) return static_cast<int>(*tasks);
    node -= static_cast<int>(repeat);
  }
  return -1;
}

/// host:port (IPv6 hosts in brackets) from `var`, or throws.
inline std::pair<std::string, std::uint16_t> parse_address(std::string_view var,
                                                           const std::string& value) {
  const auto colon = value.rfind(':');
  std::string host = colon == std::string::npos ? "" : value.substr(0, colon);
  // An IPv6 host is in brackets, both of them; a host without brackets has no ':'.
  bool valid_host = !host.empty();
  if (!host.empty() && (host.front() == '[' || host.back() == ']')) {
    valid_host = host.size() > 2 && host.front() == '[' && host.back() == ']' &&
                 host.find_first_of("[]", 1) == host.size() - 1;
    host = valid_host ? host.substr(1, host.size() - 2) : "";
  } else if (host.find(':') != std::string::npos) {
    valid_host = false;
  }
  const auto port = colon == std::string::npos
                        ? std::nullopt
                        : parse_int(std::string_view(value).substr(colon + 1));
  if (!valid_host || !port || *port < 1 || *port > 65535) {
    fail(std::string(var) + "='" + value + "' is not host:port (e.g. 127.0.0.1:29400 or " +
         "[::1]:29400)");
  }
  return {host, static_cast<std::uint16_t>(*port)};
}

/// A byte count: digits, optionally followed by k, m or g (KiB, MiB, GiB).
inline std::optional<std::size_t> parse_byte_count(std::string_view text) {
  std::size_t shift = 0;
  if (!text.empty()) {
    switch (text.back()) {
      case 'k':
      case 'K':
        shift = 10;
        break;
      case 'm':
      case 'M':
        shift = 20;
        break;
      case 'g':
      case 'G':
        shift = 30;
        break;
      default:
        break;
    }
    if (shift != 0) text.remove_suffix(1);
  }
  const auto v = parse_int(text);
  if (!v || *v < 1 || *v > (std::int64_t{1} << (62 - shift))) return std::nullopt;
  return static_cast<std::size_t>(*v) << shift;
}

/// The store's limits: the defaults, overridden by the CHORUS_STORE_* variables set.
inline tcp_store_limits store_limits_from(const environment& env) {
  tcp_store_limits l;
  const auto bytes_var = [&](std::string_view var, std::size_t& field) {
    if (auto v = lookup(env, var)) {
      const auto n = parse_byte_count(*v);
      if (!n) {
        fail_setting(
            std::string(var) + "='" + *v +
            "' is not a positive count; use a number, optionally with k, m or g (e.g. 4096, "
            "64m)");
      }
      field = *n;
    }
  };
  const auto duration_var = [&](std::string_view var, duration& field, bool zero_ok) {
    if (auto v = lookup(env, var)) {
      if (zero_ok && (*v == "0" || *v == "never")) {
        field = duration::zero();
        return;
      }
      const auto d = parse_duration(*v);
      if (!d) {
        fail_setting(std::string(var) + "='" + *v + "' is not a positive duration (e.g. 30s, 10m" +
                     (zero_ok ? "; 0 for never)" : ")"));
      }
      field = *d;
    }
  };
  bytes_var("CHORUS_STORE_MAX_CONNECTIONS", l.max_connections);
  bytes_var("CHORUS_STORE_MAX_KEY_BYTES", l.max_key_bytes);
  bytes_var("CHORUS_STORE_MAX_VALUE_BYTES", l.max_value_bytes);
  bytes_var("CHORUS_STORE_MAX_TOTAL_BYTES", l.max_total_bytes);
  bytes_var("CHORUS_STORE_MAX_CONNECTION_BYTES", l.max_connection_bytes);
  duration_var("CHORUS_STORE_IDLE_TIMEOUT", l.idle_timeout, true);
  duration_var("CHORUS_STORE_HANDSHAKE_TIMEOUT", l.handshake_timeout, false);
  return l;
}

/// The secret in the file at `path` (`where` names it in messages), which must be a
/// regular file of this user that group and others cannot access (the secret is worth
/// nothing once others can read it); trailing white space is not part of it. nullopt
/// when `missing_ok` and the file does not exist.
inline std::optional<std::string> read_secret_file(const std::string& path,
                                                   const std::string& where, bool missing_ok) {
  unique_fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (!fd) {
    if (missing_ok && errno == ENOENT) return std::nullopt;
    fail_setting(where + " cannot be opened: " + errno_text(errno));
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode)) {
    fail_setting(where + " is not a regular file");
  }
  if (st.st_uid != ::geteuid()) {
    fail_setting(where + " belongs to uid " + std::to_string(st.st_uid) + ", not to this user (" +
                 std::to_string(::geteuid()) + ")");
  }
  if ((st.st_mode & 077) != 0) {
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
    fail_setting(where + " has mode " + mode +
                 ": group or others may access it; make it readable by its owner alone (chmod "
                 "600)");
  }
  std::string secret;
  char buf[1024];
  ssize_t n = 0;
  while ((n = ::read(fd.get(), buf, sizeof buf)) > 0 && secret.size() < 4096) {
    secret.append(buf, static_cast<std::size_t>(n));
  }
  while (!secret.empty() && (secret.back() == '\n' || secret.back() == '\r' ||
                             secret.back() == ' ' || secret.back() == '\t')) {
    secret.pop_back();
  }
  if (secret.size() < 16 || secret.size() > 1024) {
    fail_setting(where + " holds " + std::to_string(secret.size()) +
                 " bytes; a job secret has 16 to 1024 (e.g. 64 hex digits from /dev/urandom)");
  }
  return secret;
}

/// The job secret from CHORUS_JOB_SECRET or CHORUS_JOB_SECRET_FILE; "" for none, and for
/// CHORUS_JOB_SECRET=none (no secret, on purpose).
inline std::string job_secret_from(const environment& env) {
  const auto direct = lookup(env, "CHORUS_JOB_SECRET");
  const auto file = lookup(env, "CHORUS_JOB_SECRET_FILE");
  if (direct && file)
    fail_setting("both CHORUS_JOB_SECRET and CHORUS_JOB_SECRET_FILE are set; set one");
  if (file) return *read_secret_file(*file, "CHORUS_JOB_SECRET_FILE='" + *file + "'", false);
  if (!direct || *direct == "none") return "";
  if (direct->size() < 16 || direct->size() > 1024) {
    fail_setting("CHORUS_JOB_SECRET holds " + std::to_string(direct->size()) +
                 " bytes; a job secret has 16 to 1024 (e.g. 64 hex digits from /dev/urandom), "
                 "or is `none` for an unauthenticated store");
  }
  return *direct;
}

/// Where rank 0 puts the secret it draws for the store at `at`: a file in CHORUS_SECRET_DIR,
/// else ~/.chorus (home directories are shared by a cluster's nodes as a rule), else
/// /tmp/chorus-<uid>; named by the store's address, and for an address only this host can
/// reach (loopback, every interface) by the host's name too, so that jobs on several
/// hosts of a shared home do not meet.
inline std::string secret_file_for(const environment& env, const store_location& at) {
  std::string dir;
  if (auto d = lookup(env, "CHORUS_SECRET_DIR")) {
    dir = *d;
  } else if (auto home = lookup(env, "HOME")) {
    dir = *home + "/.chorus";
  } else {
    dir = "/tmp/chorus-" + std::to_string(::geteuid());
  }
  while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
  const auto safe = [](std::string_view text) {
    std::string out(text);
    for (char& c : out) {
      const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                      c == '-' || c == '.';
      if (!ok) c = '_';
    }
    return out;
  };
  std::string name = "store-" + safe(at.host) + "-" + std::to_string(at.port);
  const std::string_view h = at.host;
  const bool this_host_only = h == "localhost" || h.starts_with("127.") || h == "::1" ||
                              h == "0.0.0.0" || h == "::" || h == "0:0:0:0:0:0:0:1";
  if (this_host_only) {
    char host[256] = {};
    if (::gethostname(host, sizeof host - 1) == 0) name += "-on-" + safe(host);
  }
  return dir + "/" + name + ".secret";
}

/// Creates the directory of `path` (mode 0700) unless it exists, and checks that it is a
/// directory of this user that group and others cannot use.
inline void make_secret_dir(const std::string& path) {
  const std::string dir = path.substr(0, path.rfind('/'));
  const std::string where = "the job secret's directory " + dir;
  const std::string fix =
      "; set CHORUS_SECRET_DIR to a directory of yours that only you can use (and that "
      "every node of the job sees), or give every rank CHORUS_JOB_SECRET";
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
    fail_setting(where + " cannot be created: " + errno_text(errno) + fix);
  }
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    fail_setting(where + " is not a directory" + fix);
  }
  if (st.st_uid != ::geteuid()) {
    fail_setting(where + " belongs to uid " + std::to_string(st.st_uid) + ", not to this user" +
                 fix);
  }
  if ((st.st_mode & 077) != 0) {
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
    fail_setting(where + " has mode " + mode + ": group or others may use it (chmod 700)" + fix);
  }
}

/// Puts `secret` in `path` (a new 0600 file renamed over any earlier job's) and returns
/// the owner that removes it.
inline std::shared_ptr<const written_secret> write_secret_file(const std::string& path,
                                                               const std::string& secret) {
  make_secret_dir(path);
  const std::string temp = path + ".new-" + random_hex(8);
  unique_fd fd(::open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
  if (!fd) {
    fail_setting("the job secret file " + temp + " cannot be created: " + errno_text(errno) +
                 "; set CHORUS_SECRET_DIR to a directory of yours, or give every rank "
                 "CHORUS_JOB_SECRET");
  }
  const std::string text = secret + "\n";
  const bool written =
      ::write(fd.get(), text.data(), text.size()) == static_cast<ssize_t>(text.size());
  struct stat st {};
  const bool ok = written && ::fsync(fd.get()) == 0 && ::fstat(fd.get(), &st) == 0 &&
                  ::rename(temp.c_str(), path.c_str()) == 0;
  if (!ok) {
    const int err = errno;
    ::unlink(temp.c_str());
    fail_setting("the job secret file " + path + " cannot be written: " + errno_text(err));
  }
  return std::make_shared<const written_secret>(path, st.st_dev, st.st_ino);
}

inline bool valid_job_id(std::string_view id) {
  if (id.empty() || id.size() > 64) return false;
  for (const char c : id) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '-' || c == '_' || c == '.';
    if (!ok) return false;
  }
  return true;
}

}  // namespace detail::env

/// Works out the world from `env` without network I/O (the store is not connected:
/// `world::store` is empty; the only file read is CHORUS_JOB_SECRET_FILE's). Throws
/// `errc::invalid_argument` naming the variable that is missing or malformed and the launchers it
/// looked for.
inline world detect_world(const environment& env = process_environment()) {
  using namespace detail::env;
  world w;
  const scheme* found = nullptr;
  for (const auto& sc : schemes) {
    const auto rank = lookup(env, sc.rank);
    const auto size = lookup(env, sc.size);
    if (sc.which == launcher::slurm ? !rank : (!rank && !size)) continue;
    const std::string who = " (" + std::string(name(sc.which)) + ")";
    if (!rank)
      fail(std::string(sc.size) + " is set" + who + " but " + std::string(sc.rank) + " is not");
    if (!size)
      fail(std::string(sc.rank) + " is set" + who + " but " + std::string(sc.size) + " is not");
    w.rank = parse_count(sc.rank, *rank, 0, sc.which);
    w.size = parse_count(sc.size, *size, 1, sc.which);
    if (w.rank >= w.size) {
      fail(std::string(sc.rank) + "=" + *rank + " is not below " + std::string(sc.size) + "=" +
           *size + who + "; ranks run from 0 to size - 1");
    }
    w.detected = sc.which;
    found = &sc;
    break;
  }
  if (found == nullptr) {
    fail(
        "no launcher's variables are set; start the program with a launcher, e.g. "
        "`chorusrun -n 4 program` (or set CHORUS_RANK=0 CHORUS_SIZE=1 for one process)");
  }
  const std::string who = " (" + std::string(name(found->which)) + ")";

  // Local rank and size.
  const auto local_rank = lookup(env, found->local_rank);
  std::optional<std::string> local_size;
  if (!found->local_size.empty()) local_size = lookup(env, found->local_size);
  if (found->which == launcher::slurm) {
    if (local_rank) {
      const auto spec = lookup(env, "SLURM_STEP_TASKS_PER_NODE")
                            ? lookup(env, "SLURM_STEP_TASKS_PER_NODE")
                            : lookup(env, "SLURM_TASKS_PER_NODE");
      const auto node = lookup(env, "SLURM_NODEID");
      const auto node_id = node ? parse_int(*node) : std::nullopt;
      const int n = spec && node_id && *node_id >= 0 && *node_id <= 0x7FFF'FFFF
                        ? slurm_tasks_on_node(*spec, static_cast<int>(*node_id))
                        : -1;
      if (n >= 1) local_size = std::to_string(n);
    }
  } else if (local_size && !local_rank) {
    fail(std::string(found->local_size) + " is set" + who + " but " +
         std::string(found->local_rank) + " is not");
  }
  if (local_rank) {
    w.local_rank = parse_count(found->local_rank, *local_rank, 0, found->which);
  }
  if (local_rank && local_size) {
    const std::string size_var =
        found->local_size.empty() ? "the Slurm tasks on this node" : std::string(found->local_size);
    w.local_size = parse_count(size_var, *local_size, 1, found->which);
    if (w.local_rank >= w.local_size) {
      fail(std::string(found->local_rank) + "=" + *local_rank + " is not below " + size_var + "=" +
           *local_size + who);
    }
    if (w.local_size > w.size) {
      fail(size_var + "=" + *local_size + " is larger than " + std::string(found->size) + "=" +
           std::to_string(w.size) + who);
    }
  } else if (!local_rank && found->which == launcher::chorusrun) {
    // chorusrun starts every rank on one node.
    w.local_rank = w.rank;
    w.local_size = w.size;
  }
  // A local rank without a local size (torchrun accepts LOCAL_RANK alone; Slurm without a
  // usable task count) leaves the size unknown (-1), not guessed.

  // The store.
  if (auto address = lookup(env, "CHORUS_STORE")) {
    auto [host, port] = parse_address("CHORUS_STORE", *address);
    w.store_at = store_location{host, port, found->which != launcher::chorusrun, "CHORUS_STORE"};
  } else if (found->which == launcher::chorusrun && w.size > 1) {
    fail(std::string(found->rank) + " is set" + who +
         " but CHORUS_STORE is not; chorusrun sets it (host:port of its store): start the "
         "program with chorusrun, or set CHORUS_STORE yourself");
  } else if (auto addr = lookup(env, "MASTER_ADDR"), port = lookup(env, "MASTER_PORT");
             addr || port) {
    if (!addr) fail("MASTER_PORT is set but MASTER_ADDR is not");
    if (!port) fail("MASTER_ADDR is set but MASTER_PORT is not");
    const auto p = parse_int(*port);
    if (!p || *p < 1 || *p > 65534) {
      fail("MASTER_PORT='" + *port +
           "' is not a port from 1 to 65534 (chorus serves its store on MASTER_PORT + 1)");
    }
    w.store_at = store_location{*addr, static_cast<std::uint16_t>(*p + 1), true,
                                "MASTER_ADDR:MASTER_PORT+1"};
  } else if (w.size > 1) {
    fail(std::string(name(found->which)) + " gives rank " + std::to_string(w.rank) + " of " +
         std::to_string(w.size) +
         " but no store address: set CHORUS_STORE=host:port (rank 0 serves the store there; "
         "use an address of rank 0's node that the others can reach) or MASTER_ADDR and "
         "MASTER_PORT (the store is then served on MASTER_PORT + 1)");
  }

  if (auto id = lookup(env, "CHORUS_JOB_ID")) {
    if (!valid_job_id(*id)) {
      fail("CHORUS_JOB_ID='" + *id + "' must be 1 to 64 letters, digits, '-', '_' or '.'");
    }
    w.job_id = *id;
  }

  w.secret = job_secret_from(env);
  if (w.secret.empty() && w.store_at && w.store_at->rank0_serves &&
      lookup(env, "CHORUS_JOB_SECRET") != "none") {
    w.secret_file = secret_file_for(env, *w.store_at);
  }
  w.store_limits = store_limits_from(env);

  if (auto t = lookup(env, "CHORUS_TIMEOUT")) {
    const auto d = parse_duration(*t);
    if (!d) {
      fail("CHORUS_TIMEOUT='" + *t +
           "' is not a positive duration; use seconds such as 60 or 2.5, or a unit such as "
           "500ms, 30s or 5m");
    }
    w.timeout = *d;
  }
  // Settings the communicator reads later are checked here too, before any store is
  // reached or transport built, so a typo fails at once on every rank.
  if (auto c = lookup(env, "CHORUS_CHECK")) {
    if (!parse_switch(*c)) fail("CHORUS_CHECK='" + *c + "' is not a switch; use 1 or 0");
  }
  if (auto m = lookup(env, "CHORUS_PROGRESS")) {
    if (*m != "thread" && *m != "caller") {
      fail("CHORUS_PROGRESS='" + *m + "' is not a progress mode; use thread or caller");
    }
  }
  return w;
}

/// Connects `w.store` to (or, on the serving rank, starts and connects to) the store `w`
/// describes. With `w.secret_file`, rank 0 draws the job secret, serves the store with it
/// and then writes it to that file; the other ranks read it from there (and look again
/// until `w.timeout` while it is missing, or while the store refuses an earlier job's).
inline void connect_store(world& w) {
  if (!w.store_at) {
    w.store = any_store(memory_store{});
    return;
  }
  const auto& at = *w.store_at;
  const bool serve = at.rank0_serves && w.rank == 0;
  tcp_store_options options{
      .host = at.host,
      .port = at.port,
      .serve = serve,
      .timeout = w.timeout,
      .max_frame_bytes = default_max_frame_bytes,
      .log = {},
      .secret = w.secret,
      .limits = w.store_limits,
  };
  if (w.secret_file.empty()) {
    w.store = any_store(tcp_store(std::move(options)));
  } else if (serve) {
    // Bound first: a port still held by another job of ours must fail here, before its
    // secret file is replaced.
    options.secret = detail::random_hex(32);
    const std::string secret = options.secret;
    tcp_store store(std::move(options));
    w.written_secret = detail::env::write_secret_file(w.secret_file, secret);
    w.store = any_store(std::move(store));
  } else {
    const std::string path = w.secret_file;
    options.find_secret = [path] {
      return detail::env::read_secret_file(path, "the job secret file " + path, true);
    };
    options.secret_origin = "rank 0's file " + path;
    w.store = any_store(tcp_store(std::move(options)));
  }
}

/// The world of this process: `detect_world(env)`, then the store connected (rank 0
/// serving it where the launcher does not) and a job id agreed through it when the
/// launcher gave none. Throws `invalid_argument` (see `detect_world`), `timeout` when the
/// store cannot be reached within CHORUS_TIMEOUT, or `transport` when rank 0 cannot
/// listen on the store's address.
///
/// Keep the rank-0 world (its store) alive until every rank is done with the store: it is
/// the server. Ending with a `barrier` on the store does that.
inline world from_env(const environment& env = process_environment()) {
  world w = detect_world(env);
  connect_store(w);
  if (w.job_id.empty()) {
    static constexpr std::string_view key = "chorus/job_id";
    if (w.rank == 0) {
      w.job_id = detail::random_hex(16);
      w.store.set(key, to_bytes(w.job_id));
    } else {
      w.job_id = as_string(w.store.get(key, deadline::after(w.timeout)));
    }
  }
  return w;
}

}  // namespace chorus::inline v0::bootstrap

#pragma once
/// \file
/// `chorus::bootstrap::file_store`: a store in a directory of a filesystem every rank sees.
///
/// For clusters without a reachable port but with a shared filesystem (NFS, Lustre, GPFS),
/// or one machine's /tmp. Each key is one file, `k.<key>` with the key percent-encoded.
///
/// - `set` writes a temporary file and renames it over the key's file: readers see the old
///   value or the new one, never half a value (rename is atomic on POSIX filesystems).
/// - `add` holds an exclusive `flock` on `<dir>/.lock` (and, within the process, a mutex,
///   because on NFS `flock` is emulated with POSIX locks, which do not exclude threads of
///   one process) while it reads, increments and republishes the counter; `compare_set`
///   holds the same lock while it reads, compares and republishes.
/// - `get`/`wait` poll for the files, sleeping 1 ms at first and backing off to
///   `poll_interval`, until the deadline.
/// - `clear()` removes every key (and temporary and lock file) from the directory; call it
///   on one rank after the others are done (after a `barrier`).
#include <chorus/bootstrap/posix.hpp>
#include <chorus/bootstrap/store.hpp>
#include <chorus/core/deadline.hpp>
#include <chorus/core/error.hpp>

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <utility>

namespace chorus::inline v0::bootstrap {

/// Settings of a `file_store`.
struct file_store_options {
  /// How long `add` and `compare_set` wait for the lock and how long `set` may take.
  duration timeout = default_timeout;
  /// The longest sleep between two looks at the directory in `get`/`wait`. 10 ms keeps
  /// a waiting rank's cost negligible on a shared filesystem (100 stats per second) while
  /// adding at most 10 ms to a rendezvous that happens once per job.
  duration poll_interval = std::chrono::milliseconds(10);
};

/// A store whose keys are files in one directory. Copies refer to the same directory.
///
/// **Errors**: `errc::timeout` naming the key(s) and the directory; `errc::transport` when
/// a file operation fails (with the path and errno text); `errc::invalid_argument` for an
/// empty key, a key too long for a file name (more than 250 bytes once encoded), or `add`
/// on a non-integer value.
class file_store {
 public:
  /// Uses (and creates, with mode 0700, if missing) the directory `dir`.
  explicit file_store(std::filesystem::path dir, file_store_options options = {})
      : dir_(std::move(dir)), options_(options) {
    std::error_code ec;
    std::filesystem::create_directories(dir_, ec);
    if (ec || !std::filesystem::is_directory(dir_)) {
      throw error(errc::transport, "chorus: file_store: cannot use directory '" + dir_.string() +
                                       "': " + (ec ? ec.message() : "not a directory"));
    }
    // Keys can hold addresses: keep them from other users (a no-op if they are not ours).
    ::chmod(dir_.c_str(), S_IRWXU);
  }

  [[nodiscard]] const std::filesystem::path& directory() const noexcept { return dir_; }

  void set(std::string_view key, std::span<const std::byte> value) { publish(path_of(key), value); }

  bytes get(std::string_view key, deadline d) {
    const auto path = path_of(key);
    backoff wait = polling();
    for (;;) {
      if (auto value = read(path)) return std::move(*value);
      if (d.expired()) {
        throw error(errc::timeout, "chorus: file_store '" + dir_.string() + "': get('" +
                                       std::string(key) +
                                       "') timed out: no rank set the key before the deadline "
                                       "(is the directory shared by every rank?)");
      }
      wait.pause(d);
    }
  }

  void wait(std::span<const std::string> keys, deadline d) {
    std::vector<std::filesystem::path> paths;
    paths.reserve(keys.size());
    for (const auto& k : keys) paths.push_back(path_of(k));
    backoff wait = polling();
    for (;;) {
      std::size_t missing = keys.size();
      for (std::size_t i = 0; i < keys.size(); ++i) {
        if (!exists(paths[i])) {
          missing = i;
          break;
        }
      }
      if (missing == keys.size()) return;
      if (d.expired()) {
        throw error(errc::timeout, "chorus: file_store '" + dir_.string() +
                                       "': wait timed out; key '" + keys[missing] +
                                       "' was never set (is the directory shared by every "
                                       "rank?)");
      }
      wait.pause(d);
    }
  }

  std::int64_t add(std::string_view key, std::int64_t delta) {
    const auto path = path_of(key);
    std::lock_guard in_process(process_mutex());
    const detail::unique_fd lock = lock_directory("add", key);
    const auto current = read(path);
    const std::int64_t before = current ? detail::parse_counter(*current, key, name) : 0;
    const std::int64_t value = detail::add_counter(before, delta, key, name);
    publish(path, to_bytes(std::to_string(value)));
    return value;  // `lock` closes here, releasing the flock
  }

  bytes compare_set(std::string_view key, std::span<const std::byte> expected,
                    std::span<const std::byte> desired) {
    const auto path = path_of(key);
    std::lock_guard in_process(process_mutex());
    const detail::unique_fd lock = lock_directory("compare_set", key);
    const auto current = read(path);
    if (!detail::compare_matches(current ? &*current : nullptr, expected)) {
      return current ? *current : bytes{};
    }
    publish(path, desired);
    return bytes(desired.begin(), desired.end());
  }

  bool check(std::span<const std::string> keys) {
    for (const auto& k : keys) {
      if (!exists(path_of(k))) return false;
    }
    return true;
  }

  /// Removes every key file, temporary file and the lock file from the directory (not the
  /// directory itself, which the caller may share with other things). Other ranks must be
  /// done with the store. Returns how many files were removed.
  std::size_t clear() {
    std::size_t removed = 0;
    std::error_code ec;
    for (const auto& entry : std::filesystem::directory_iterator(dir_, ec)) {
      const std::string file = entry.path().filename().string();
      if (file.starts_with("k.") || file.starts_with(".tmp.") || file == ".lock") {
        if (::unlink(entry.path().c_str()) == 0) ++removed;
      }
    }
    if (ec) {
      throw error(errc::transport,
                  "chorus: file_store: cannot list '" + dir_.string() + "': " + ec.message());
    }
    return removed;
  }

 private:
  static constexpr std::string_view name = "file_store";
  /// A file name is at most 255 bytes; "k." and some room for filesystems that count
  /// differently leave 250 for the encoded key.
  static constexpr std::size_t max_encoded_key = 250;

  /// The file of `key`: letters, digits, '_', '-' and '.' stand for themselves, every other
  /// byte is %XX, so any key maps to one file name and no two keys to the same one.
  std::filesystem::path path_of(std::string_view key) const {
    detail::check_key(key, name);
    std::string encoded = "k.";
    for (const char ch : key) {
      const auto u = static_cast<unsigned char>(ch);
      if ((u >= 'a' && u <= 'z') || (u >= 'A' && u <= 'Z') || (u >= '0' && u <= '9') || u == '_' ||
          u == '-' || u == '.') {
        encoded.push_back(ch);
      } else {
        static constexpr char hex[] = "0123456789ABCDEF";
        encoded.push_back('%');
        encoded.push_back(hex[u >> 4]);
        encoded.push_back(hex[u & 0xF]);
      }
    }
    if (encoded.size() - 2 > max_encoded_key) {
      throw error(errc::invalid_argument,
                  "chorus: file_store: key '" + std::string(key) +
                      "' is too long for a file "
                      "name (" +
                      std::to_string(encoded.size() - 2) + " bytes encoded, at most " +
                      std::to_string(max_encoded_key) + "); use shorter keys");
    }
    return dir_ / encoded;
  }

  [[noreturn]] void fail(std::string_view what, const std::filesystem::path& path, int err) const {
    throw error(errc::transport, "chorus: file_store: " + std::string(what) + " '" + path.string() +
                                     "': " + detail::errno_text(err));
  }

  static bool exists(const std::filesystem::path& path) {
    struct stat st {};
    return ::stat(path.c_str(), &st) == 0;
  }

  /// The whole content of `path`, or nullopt when it does not exist.
  std::optional<bytes> read(const std::filesystem::path& path) const {
    detail::unique_fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) {
      if (errno == ENOENT) return std::nullopt;
      fail("cannot open", path, errno);
    }
    bytes out;
    std::byte buf[8192];
    for (;;) {
      const ssize_t n = ::read(fd.get(), buf, sizeof buf);
      if (n == 0) break;
      if (n < 0) {
        if (errno == EINTR) continue;
        fail("cannot read", path, errno);
      }
      out.insert(out.end(), buf, buf + n);
    }
    return out;
  }

  /// Writes `value` to a temporary file of a unique name and renames it to `path`.
  void publish(const std::filesystem::path& path, std::span<const std::byte> value) const {
    const auto tmp = dir_ / (".tmp." + detail::random_hex(12));
    detail::unique_fd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
    if (!fd) fail("cannot create", tmp, errno);
    std::size_t done = 0;
    while (done < value.size()) {
      const ssize_t n = ::write(fd.get(), value.data() + done, value.size() - done);
      if (n < 0) {
        if (errno == EINTR) continue;
        const int err = errno;
        ::unlink(tmp.c_str());
        fail("cannot write", tmp, err);
      }
      done += static_cast<std::size_t>(n);
    }
    if (::close(fd.release()) != 0) {  // NFS reports write errors at close
      const int err = errno;
      ::unlink(tmp.c_str());
      fail("cannot write", tmp, err);
    }
    if (::rename(tmp.c_str(), path.c_str()) != 0) {
      const int err = errno;
      ::unlink(tmp.c_str());
      fail("cannot rename into", path, err);
    }
  }

  /// An open descriptor of `<dir>/.lock` holding an exclusive flock, taken before
  /// `options_.timeout` passes.
  detail::unique_fd lock_directory(std::string_view operation, std::string_view key) const {
    const auto path = dir_ / ".lock";
    detail::unique_fd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
    if (!fd) fail("cannot open", path, errno);
    const deadline d = deadline::after(options_.timeout);
    backoff wait = polling();
    while (::flock(fd.get(), LOCK_EX | LOCK_NB) != 0) {
      if (errno == EINTR) continue;
      if (errno != EWOULDBLOCK) fail("cannot lock", path, errno);
      if (d.expired()) {
        throw error(errc::timeout, "chorus: file_store '" + dir_.string() +
                                       "': " + std::string(operation) + "('" + std::string(key) +
                                       "') could not lock '" + path.string() +
                                       "' before the deadline (a process holding it is stuck?)");
      }
      wait.pause(d);
    }
    return fd;
  }

  /// Sleeps from 1 ms, doubling up to `poll_interval`.
  [[nodiscard]] backoff polling() const {
    return {std::chrono::milliseconds(1),
            std::chrono::duration_cast<std::chrono::milliseconds>(options_.poll_interval)};
  }

  static std::mutex& process_mutex() {
    static std::mutex m;
    return m;
  }

  std::filesystem::path dir_;
  file_store_options options_;
};

static_assert(store<file_store>);

}  // namespace chorus::inline v0::bootstrap

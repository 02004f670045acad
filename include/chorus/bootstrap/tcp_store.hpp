#pragma once
/// \file
/// `chorus::bootstrap::tcp_store`: a store served over TCP by one process of the job.
///
/// One process serves (rank 0, or `chorusrun`), every rank connects as a client; rank 0 is
/// a client of its own server, which runs on a background thread of rank 0. The server
/// binds 127.0.0.1 unless told another address (the store is for one job; nothing else
/// should reach it), and port 0 asks the kernel for a free port (`port()` says which).
///
///     // rank 0                                   // every other rank
///     tcp_store s({.port = 29500, .serve = true});  tcp_store s({.port = 29500});
///
/// Protocol (little-endian; see docs/bootstrap.md): every message is a frame, a u64 length
/// followed by that many bytes of body. A request body is a command byte and its fields;
/// strings and values are a u32 length and the bytes. The first request on a connection
/// must be `hello` (magic and protocol version). A reply body is a status byte, then the
/// result, or an error code and message. The server never trusts a length: a frame over
/// `max_frame_bytes` (64 MiB by default), a field that runs past its frame, trailing
/// bytes, an unknown command, a missing `hello`, or a request sent while the connection's
/// `get`/`wait` is still pending make it drop THAT connection with one log line; it keeps
/// serving the others, and buffers only the bytes that actually arrived.
///
/// With a job secret (`secret`, CHORUS_JOB_SECRET), a client proves it after `hello` with
/// an HMAC-SHA256 over the server's challenge and its own nonce, and the server proves it
/// back; nothing else is served before. The server enforces `tcp_store_limits`
/// (connections, key, value and total bytes, bytes outstanding per connection, idle and
/// handshake timeouts): a request over one gets an error reply naming the limit and the
/// variable that raises it; unread replies stop the server reading from that connection
/// (back-pressure). See docs/security.md.
///
/// Blocking `get`/`wait` are answered by the server when the key appears (the request is
/// parked, nothing polls); the client enforces its deadline with `poll()`, and on timeout
/// closes that connection, so a late answer can never be mistaken for the next call's.
/// Concurrent calls from several threads each use their own connection (a small pool), so
/// one thread blocked in `get` never delays another's `set`.
#include <chorus/bootstrap/posix.hpp>
#include <chorus/bootstrap/sha256.hpp>
#include <chorus/bootstrap/store.hpp>
#include <chorus/core/bytes.hpp>
#include <chorus/core/deadline.hpp>
#include <chorus/core/error.hpp>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <deque>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

namespace chorus::inline v0::bootstrap {

/// The largest frame a tcp_store server or client accepts by default: 64 MiB, far above
/// anything bootstrap exchanges (addresses, names: bytes to kilobytes), small enough that a
/// bogus length cannot make a process reserve gigabytes.
inline constexpr std::size_t default_max_frame_bytes = std::size_t{64} << 20;

/// Receives the server's log lines (one call per line, without a newline). An empty
/// function means standard error.
using log_function = std::function<void(std::string_view line)>;

namespace detail::wire {

inline constexpr std::uint32_t magic = 0x63687273;  // "chrs" read as a little-endian u32
// 2: the hello reply says whether to authenticate; 3: compare_set
inline constexpr std::uint32_t version = 3;
inline constexpr std::size_t header_bytes = 8;  ///< the u64 body length of every frame

enum class command : std::uint8_t {
  hello = 1,
  set = 2,
  get = 3,
  wait = 4,
  add = 5,
  check = 6,
  auth = 7,
  compare_set = 8
};
enum class status : std::uint8_t { ok = 0, error = 1 };

inline std::string command_name(std::uint8_t c) {
  switch (static_cast<command>(c)) {
    case command::hello:
      return "hello";
    case command::set:
      return "set";
    case command::get:
      return "get";
    case command::wait:
      return "wait";
    case command::add:
      return "add";
    case command::check:
      return "check";
    case command::auth:
      return "auth";
    case command::compare_set:
      return "compare_set";
  }
  return "unknown command " + std::to_string(c);
}

using chorus::detail::load_le;

/// Builds one frame: header placeholder, fields, then `finish()` writes the length.
class writer {
 public:
  writer() {
    // Room for a typical frame up front: fewer reallocations, and it keeps GCC 12's
    // -Warray-bounds from misreading the first growth of an 8-byte vector at -O2.
    w_.bytes.reserve(256);
    w_.bytes.resize(header_bytes);
  }
  writer& u8(std::uint8_t v) { return put(v, 1); }
  writer& u32(std::uint32_t v) { return put(v, 4); }
  writer& u64(std::uint64_t v) { return put(v, 8); }
  writer& i64(std::int64_t v) { return put(static_cast<std::uint64_t>(v), 8); }
  writer& blob(std::span<const std::byte> b) {
    u32(static_cast<std::uint32_t>(b.size()));
    w_.put_bytes(b);
    return *this;
  }
  writer& str(std::string_view s) { return blob(std::as_bytes(std::span(s.data(), s.size()))); }
  [[nodiscard]] std::size_t body_size() const noexcept { return w_.bytes.size() - header_bytes; }
  /// The frame; the writer is left empty.
  bytes finish() {
    chorus::detail::store_le(w_.bytes.data(), body_size(), header_bytes);
    return std::move(w_.bytes);
  }

 private:
  writer& put(std::uint64_t v, int n) {
    w_.put_le(v, n);
    return *this;
  }
  chorus::detail::byte_writer w_;
};

/// Reads the fields of one frame body. A read past the end yields zeros/empty and marks
/// the reader failed; callers check `complete()` once, after reading every field.
class reader {
 public:
  explicit reader(std::span<const std::byte> body) noexcept : r_(body) {}
  std::uint8_t u8() noexcept { return static_cast<std::uint8_t>(r_.take_le(1)); }
  std::uint32_t u32() noexcept { return static_cast<std::uint32_t>(r_.take_le(4)); }
  std::uint64_t u64() noexcept { return r_.take_le(8); }
  std::int64_t i64() noexcept { return static_cast<std::int64_t>(r_.take_le(8)); }
  std::span<const std::byte> blob() noexcept { return r_.take(u32()); }
  std::string_view str() noexcept {
    auto b = blob();
    return {reinterpret_cast<const char*>(b.data()), b.size()};
  }
  [[nodiscard]] std::size_t left() const noexcept { return r_.left(); }
  /// Every field was present and nothing is left over.
  [[nodiscard]] bool complete() const noexcept { return r_.complete(); }
  [[nodiscard]] bool failed() const noexcept { return r_.failed(); }

 private:
  chorus::detail::byte_reader r_;
};

}  // namespace detail::wire

namespace detail::net {

/// "host:port", with IPv6 hosts in brackets.
inline std::string format_address(std::string_view host, std::uint16_t port) {
  std::string h(host.empty() ? "*" : host);
  if (h.find(':') != std::string::npos) h = "[" + h + "]";
  return h + ":" + std::to_string(port);
}

/// The numeric address of a socket address, "10.0.0.1:5000".
inline std::string format_sockaddr(const sockaddr* sa) {
  char host[INET6_ADDRSTRLEN] = "?";
  std::uint16_t port = 0;
  if (sa->sa_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(sa);
    ::inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
    port = ntohs(in->sin_port);
  } else if (sa->sa_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(sa);
    ::inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
    port = ntohs(in6->sin6_port);
  }
  return format_address(host, port);
}

struct addrinfo_list {
  addrinfo* head = nullptr;
  addrinfo_list() = default;
  addrinfo_list(const addrinfo_list&) = delete;
  addrinfo_list& operator=(const addrinfo_list&) = delete;
  ~addrinfo_list() {
    if (head != nullptr) ::freeaddrinfo(head);
  }
};

/// Resolves host:port for TCP. Returns the getaddrinfo error text on failure.
inline std::optional<std::string> resolve(const std::string& host, std::uint16_t port, bool passive,
                                          addrinfo_list& out) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0);
  const std::string service = std::to_string(port);
  const int rc =
      ::getaddrinfo(host.empty() ? nullptr : host.c_str(), service.c_str(), &hints, &out.head);
  if (rc != 0) return std::string(rc == EAI_SYSTEM ? errno_text(errno) : ::gai_strerror(rc));
  return std::nullopt;
}

inline void set_nodelay(int fd) noexcept {
  // Store traffic is small request/reply pairs: Nagle's delay would only add latency.
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

enum class io : int { ok, timeout, closed };

/// Moves `size` bytes with `step(done)` -- one send or recv of the rest, returning what
/// the system call returned -- before `d`, polling for `event` whenever the socket would
/// block. `closed` on end of stream (err 0) or a socket error (err set).
template <class Step>
io move_exact(int fd, std::size_t size, short event, deadline d, int& err, Step step) {
  std::size_t done = 0;
  while (done < size) {
    const ssize_t n = step(done);
    if (n > 0) {
      done += static_cast<std::size_t>(n);
      continue;
    }
    if (n == 0) {
      err = 0;
      return io::closed;
    }
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) {
      err = errno;
      return io::closed;
    }
    pollfd p{fd, event, 0};
    const int r = ::poll(&p, 1, poll_timeout_ms(d));
    if (r == 0) return io::timeout;
    if (r < 0 && errno != EINTR) {
      err = errno;
      return io::closed;
    }
  }
  return io::ok;
}

/// Sends all of `data` before `d`.
inline io send_all(int fd, std::span<const std::byte> data, deadline d, int& err) {
  return move_exact(fd, data.size(), POLLOUT, d, err, [&](std::size_t done) {
    return ::send(fd, data.data() + done, data.size() - done, MSG_NOSIGNAL);
  });
}

/// Receives exactly `out.size()` bytes before `d`.
inline io recv_exact(int fd, std::span<std::byte> out, deadline d, int& err) {
  return move_exact(fd, out.size(), POLLIN, d, err, [&](std::size_t done) {
    return ::recv(fd, out.data() + done, out.size() - done, 0);
  });
}

/// One non-blocking connection attempt to any address of host:port, bounded by `d`.
/// Returns an invalid fd and the reason on failure.
inline unique_fd connect_once(const std::string& host, std::uint16_t port, deadline d,
                              std::string& why) {
  addrinfo_list list;
  if (auto e = resolve(host, port, false, list)) {
    why = "cannot resolve '" + host + "': " + *e;
    return {};
  }
  for (addrinfo* ai = list.head; ai != nullptr; ai = ai->ai_next) {
    unique_fd fd(
        ::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol));
    if (!fd) {
      why = "socket(): " + errno_text(errno);
      continue;
    }
    if (::connect(fd.get(), ai->ai_addr, ai->ai_addrlen) != 0) {
      if (errno != EINPROGRESS) {
        why = errno_text(errno);
        continue;
      }
      pollfd p{fd.get(), POLLOUT, 0};
      int r = 0;
      do {
        r = ::poll(&p, 1, poll_timeout_ms(d));
      } while (r < 0 && errno == EINTR);
      if (r <= 0) {
        why = r == 0 ? "connection attempt timed out" : "poll(): " + errno_text(errno);
        continue;
      }
      int soerr = 0;
      socklen_t len = sizeof soerr;
      ::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &soerr, &len);
      if (soerr != 0) {
        why = errno_text(soerr);
        continue;
      }
    }
    set_nodelay(fd.get());
    return fd;
  }
  return {};
}

}  // namespace detail::net

/// Limits a `tcp_store_server` enforces, so that no client -- buggy or hostile -- can make
/// it hold unbounded memory or descriptors. A request over a limit fails with an error
/// reply to that client alone, naming the limit and the environment variable that raises
/// it (read by `server_options_from_env` in from_env.hpp, on the process that serves: rank
/// 0, or chorusrun). The defaults and their arithmetic for a 4096-rank job are in
/// docs/bootstrap.md.
struct tcp_store_limits {
  /// Open connections, those in their handshake included (CHORUS_STORE_MAX_CONNECTIONS).
  /// One more is answered with an error and closed.
  std::size_t max_connections = 16384;
  /// Bytes of one key (CHORUS_STORE_MAX_KEY_BYTES).
  std::size_t max_key_bytes = 4096;
  /// Bytes of one value (CHORUS_STORE_MAX_VALUE_BYTES).
  std::size_t max_value_bytes = std::size_t{16} << 20;
  /// Bytes the store holds for every client together (CHORUS_STORE_MAX_TOTAL_BYTES): keys
  /// and values stored (each entry counted with 128 bytes of bookkeeping), plus the keys of
  /// parked get/wait requests (192 bytes each, besides the key).
  std::size_t max_total_bytes = std::size_t{32} << 20;
  /// Bytes one connection may have outstanding (CHORUS_STORE_MAX_CONNECTION_BYTES): replies
  /// queued that the client has not read (past this, the server reads no further request
  /// from it until the client catches up: back-pressure, not buffering), and the keys its
  /// parked get/wait pins (a wait over this fails).
  std::size_t max_connection_bytes = std::size_t{4} << 20;
  /// A connection with no request in flight, no parked get/wait and no reply queued is
  /// closed after this long (CHORUS_STORE_IDLE_TIMEOUT); clients reconnect transparently.
  /// Zero: never.
  duration idle_timeout = std::chrono::minutes(10);
  /// A connection must say hello (and prove the job secret, when there is one) within this
  /// long of connecting (CHORUS_STORE_HANDSHAKE_TIMEOUT).
  duration handshake_timeout = std::chrono::seconds(10);
};

/// Settings of a `tcp_store_server`.
struct tcp_server_options {
  /// Address to bind: a numeric address or a host name; empty for every interface.
  std::string host = "127.0.0.1";
  std::uint16_t port = 0;  ///< 0: a free port chosen by the kernel
  /// Frames larger than this are refused (the connection is dropped). At most 4 GiB.
  std::size_t max_frame_bytes = default_max_frame_bytes;
  log_function log = {};  ///< where "dropped connection" lines go; empty: standard error
  /// The job secret (CHORUS_JOB_SECRET). Non-empty: every client must prove it knows it
  /// (HMAC-SHA256 challenge-response, see docs/security.md) before any other request, and
  /// the server proves it back. Empty: no authentication. At least 16 bytes when set.
  std::string secret = {};
  tcp_store_limits limits = {};
};

namespace detail::wire {

/// Frames a client may send before it is authenticated: hello and auth are far smaller.
inline constexpr std::size_t handshake_frame_bytes = 256;
/// Bookkeeping counted per stored entry (hash node, key and value headers, allocator
/// overhead) and per key of a parked request (its copy, its node in the index of waiters),
/// close to what they cost in memory, so that many tiny entries cannot hide behind a byte
/// count.
inline constexpr std::size_t entry_overhead_bytes = 128;
inline constexpr std::size_t parked_key_overhead_bytes = 192;

/// The proof of the job secret for `nonce` (the server's challenge) and `client_nonce`,
/// by the client (`role` "client") or the server ("server").
inline digest proof(std::string_view secret, std::string_view role, std::string_view nonce,
                    std::string_view client_nonce) {
  const auto b = [](std::string_view s) { return std::as_bytes(std::span(s.data(), s.size())); };
  return hmac_sha256(
      b(secret), {b("chorus tcp_store v2 "), b(role), b(" "), b(nonce), b(" "), b(client_nonce)});
}

inline void check_secret(std::string_view secret, std::string_view who) {
  if (!secret.empty() && secret.size() < 16) {
    throw error(errc::invalid_argument,
                "chorus: " + std::string(who) + ": the job secret has " +
                    std::to_string(secret.size()) +
                    " bytes; it must have at least 16 (chorusrun draws 64 hex digits)");
  }
}

}  // namespace detail::wire

/// The server of a tcp_store: one background thread multiplexing every connection with
/// `poll()`. Starts serving in the constructor; the destructor stops the thread (waking
/// it through an eventfd) and joins it, closing every connection. Neither copyable nor
/// movable (the thread refers to it); hold it in a `unique_ptr` to move it around.
class tcp_store_server {
 public:
  explicit tcp_store_server(tcp_server_options options = {}) : options_(std::move(options)) {
    if (options_.max_frame_bytes < 64 || options_.max_frame_bytes > 0xFFFF'FFFFu) {
      throw error(errc::invalid_argument,
                  "chorus: tcp_store server: max_frame_bytes must be between 64 and 4 GiB, not " +
                      std::to_string(options_.max_frame_bytes));
    }
    detail::wire::check_secret(options_.secret, "tcp_store server");
    const auto& l = options_.limits;
    if (l.max_connections < 1 || l.max_key_bytes < 1 || l.max_value_bytes < 1 ||
        l.max_total_bytes < 1 || l.max_connection_bytes < 1 || l.idle_timeout < duration::zero() ||
        l.handshake_timeout <= duration::zero()) {
      throw error(errc::invalid_argument,
                  "chorus: tcp_store server: every limit must be positive (the idle timeout may "
                  "be zero: never)");
    }
    listen_ = open_listener();
    wake_ = detail::unique_fd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (!wake_) {
      throw error(errc::transport,
                  "chorus: tcp_store server: eventfd(): " + detail::errno_text(errno));
    }
    spare_ = detail::unique_fd(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    thread_ = std::thread([this] { run(); });
  }

  tcp_store_server(const tcp_store_server&) = delete;
  tcp_store_server& operator=(const tcp_store_server&) = delete;

  ~tcp_store_server() {
    const std::uint64_t one = 1;
    // An eventfd write of 1 cannot block or fail short of overflow at 2^64 - 1.
    [[maybe_unused]] const auto written = ::write(wake_.get(), &one, sizeof one);
    thread_.join();
  }

  /// The port the server listens on (the kernel's choice when the options said 0).
  [[nodiscard]] std::uint16_t port() const noexcept { return port_; }
  /// The host from the options ("127.0.0.1" by default).
  [[nodiscard]] const std::string& host() const noexcept { return options_.host; }
  /// "host:port", what clients connect to and CHORUS_STORE holds.
  [[nodiscard]] std::string address() const {
    return detail::net::format_address(options_.host, port_);
  }
  /// Waits until no client is connected (every client closed its connection, or its
  /// process ended), or until `d`. Returns whether none is connected.
  bool wait_until_idle(deadline d) {
    std::unique_lock lock(idle_mutex_);
    return idle_changed_.wait_until(lock, d.at, [&] { return connected_ == 0; });
  }

  /// How many connections were dropped for breaking the protocol (for tests and logs).
  [[nodiscard]] std::uint64_t dropped_connections() const noexcept {
    return dropped_.load(std::memory_order_relaxed);
  }
  /// How many connections were refused for the connection limit or a wrong secret.
  [[nodiscard]] std::uint64_t refused_connections() const noexcept {
    return refused_.load(std::memory_order_relaxed);
  }

 private:
  struct connection {
    detail::unique_fd fd;
    std::string peer;
    bytes in;  ///< received bytes; those before `in_pos` are consumed
    std::size_t in_pos = 0;
    /// Replies not yet written, in order; a get's value is shared with the store, not
    /// copied. Of the first, the bytes before `out_pos` are sent.
    std::deque<std::shared_ptr<const bytes>> out;
    std::size_t out_pos = 0;
    std::size_t out_bytes = 0;   ///< bytes in `out` not yet sent
    bool greeted = false;        ///< `hello` was accepted
    bool authenticated = false;  ///< it proved the secret (or the server has none)
    std::string nonce;           ///< the challenge sent with the hello reply
    bool pending = false;        ///< a get/wait is parked until its keys exist
    bool pending_get = false;
    std::vector<std::string> pending_keys;  ///< the keys still missing (distinct)
    std::size_t missing = 0;                ///< how many of them are still missing
    std::size_t parked_bytes = 0;           ///< what they count against the limits
    std::uint64_t discard = 0;              ///< bytes of an oversized request still to skip
    std::string discard_error;              ///< the error to answer once they are skipped
    bool closing = false;                   ///< refused: write the replies, then drain and close
    clock::time_point since;                ///< accepted; for closing ones, when they began closing
    clock::time_point last_active;          ///< the last request handled
    bool dead = false;
  };

  [[nodiscard]] std::size_t queued(const connection& c) const noexcept { return c.out_bytes; }
  /// Whether the server reads requests from `c` now (not while its replies pile up).
  [[nodiscard]] bool reading(const connection& c) const noexcept {
    return !c.dead && !c.closing && queued(c) < options_.limits.max_connection_bytes;
  }
  /// When `c` expires: handshake, idle or closing deadline; max() when it cannot expire now.
  [[nodiscard]] clock::time_point expiry(const connection& c) const noexcept {
    const auto& l = options_.limits;
    if (c.closing) return c.since + std::chrono::seconds(2);
    if (!c.authenticated) return c.since + l.handshake_timeout;
    // A frame that arrives partly does not count: a client sends one in far less time.
    const bool idle = !c.pending && queued(c) == 0 && c.discard == 0;
    if (!idle || l.idle_timeout == duration::zero()) return clock::time_point::max();
    return c.last_active + l.idle_timeout;
  }
  detail::unique_fd open_listener() {
    detail::net::addrinfo_list list;
    const std::string where = detail::net::format_address(options_.host, options_.port);
    if (auto e = detail::net::resolve(options_.host, options_.port, true, list)) {
      throw error(errc::invalid_argument,
                  "chorus: tcp_store server: cannot resolve " + where + ": " + *e);
    }
    std::string why = "no address";
    for (addrinfo* ai = list.head; ai != nullptr; ai = ai->ai_next) {
      detail::unique_fd fd(
          ::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol));
      if (!fd) {
        why = "socket(): " + detail::errno_text(errno);
        continue;
      }
      int one = 1;
      ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
      if (::bind(fd.get(), ai->ai_addr, ai->ai_addrlen) != 0) {
        why = "bind(): " + detail::errno_text(errno);
        continue;
      }
      if (::listen(fd.get(), SOMAXCONN) != 0) {
        why = "listen(): " + detail::errno_text(errno);
        continue;
      }
      sockaddr_storage bound{};
      socklen_t len = sizeof bound;
      ::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&bound), &len);
      port_ = bound.ss_family == AF_INET6
                  ? ntohs(reinterpret_cast<const sockaddr_in6*>(&bound)->sin6_port)
                  : ntohs(reinterpret_cast<const sockaddr_in*>(&bound)->sin_port);
      return fd;
    }
    throw error(errc::transport,
                "chorus: tcp_store server: cannot listen on " + where + ": " + why +
                    (options_.port != 0 ? " (is another job using the port?)" : ""));
  }

  void log(const std::string& line) const {
    if (options_.log) {
      options_.log(line);
      return;
    }
    const std::string text = line + "\n";
    // One write, so that lines of concurrent writers do not mix.
    [[maybe_unused]] const auto n = ::write(STDERR_FILENO, text.data(), text.size());
  }

  void drop(connection& c, const std::string& reason) {
    if (c.dead) return;
    c.dead = true;
    dropped_.fetch_add(1, std::memory_order_relaxed);
    log("chorus: tcp_store server " + address() + ": dropped the connection from " + c.peer + ": " +
        reason);
  }

  /// Answers `c` with an error, then closes it once the reply is written (the client reads
  /// the error instead of a reset).
  void refuse(connection& c, errc code, const std::string& message) {
    refused_.fetch_add(1, std::memory_order_relaxed);
    reply_error(c, code, message);
    c.closing = true;
    c.since = clock::now();
    if (!c.dead && queued(c) == 0) ::shutdown(c.fd.get(), SHUT_WR);
  }

  static std::string limit_name(std::string_view field, std::string_view var) {
    return "(tcp_store_limits::" + std::string(field) + "; raise it with " + std::string(var) +
           " on the process that serves the store)";
  }

  void run() noexcept {
    std::vector<pollfd> fds;
    // Accepting is paused until then after running out of descriptors (min(): never paused).
    clock::time_point accept_resumes = clock::time_point::min();
    for (;;) {
      fds.clear();
      fds.push_back({wake_.get(), POLLIN, 0});
      auto now = clock::now();
      const bool accepting = now >= accept_resumes;
      fds.push_back({accepting ? listen_.get() : -1, POLLIN, 0});
      clock::time_point next = accepting ? clock::time_point::max() : accept_resumes;
      for (const auto& c : conns_) {
        short want = queued(*c) > 0 ? POLLOUT : 0;
        if (reading(*c) || c->closing) want |= POLLIN;
        fds.push_back({c->fd.get(), want, 0});
        next = std::min(next, expiry(*c));
      }
      const int timeout =
          next == clock::time_point::max() ? -1 : detail::poll_timeout_ms(deadline{next}, 60'000);
      if (::poll(fds.data(), fds.size(), timeout) < 0) {
        if (errno == EINTR) continue;
        log("chorus: tcp_store server " + address() +
            ": poll() failed: " + detail::errno_text(errno) + "; the server stops");
        return;
      }
      if (fds[0].revents != 0) return;  // the destructor asked us to stop
      // Connections are only appended below, so indices 2.. still match conns_.
      const std::size_t polled = conns_.size();
      for (std::size_t i = 0; i < polled; ++i) {
        connection& c = *conns_[i];
        const short ev = fds[i + 2].revents;
        try {
          if ((ev & POLLOUT) != 0) {
            flush(c);
            // Replies drained below the limit: the requests it held back are served now.
            if (reading(c) && c.in_pos < c.in.size()) process_frames(c);
          }
          if (c.dead || (ev & (POLLIN | POLLHUP | POLLERR)) == 0) continue;
          if (c.closing) {
            drain(c);
          } else if (reading(c)) {
            on_readable(c);
          } else if ((ev & (POLLHUP | POLLERR)) != 0) {
            c.dead = true;
          }
        } catch (const std::exception& e) {
          drop(c, std::string("internal error: ") + e.what());
        }
      }
      if ((fds[1].revents & POLLIN) != 0 && !accept_all()) {
        accept_resumes = clock::now() + std::chrono::milliseconds(100);
      }
      now = clock::now();
      for (auto& c : conns_) expire(*c, now);
      for (auto& c : conns_) {
        if (c->dead) unpark(*c);
      }
      std::erase_if(conns_, [](const auto& c) { return c->dead; });
      publish_connection_count();
    }
  }

  void expire(connection& c, clock::time_point now) {
    if (c.dead || now < expiry(c)) return;
    if (c.closing) {
      c.dead = true;
    } else if (!c.authenticated) {
      drop(c, std::string(c.greeted ? "it did not prove the job secret" : "it did not say hello") +
                  " within " + chorus::to_string(options_.limits.handshake_timeout) + " " +
                  limit_name("handshake_timeout", "CHORUS_STORE_HANDSHAKE_TIMEOUT"));
    } else {
      c.dead = true;  // idle: an ordinary event, the client reconnects when it needs to
    }
  }

  void publish_connection_count() {
    {
      std::lock_guard lock(idle_mutex_);
      if (connected_ == conns_.size()) return;
      connected_ = conns_.size();
    }
    idle_changed_.notify_all();
  }

  /// Accepts every waiting connection. Returns false when out of descriptors (accepting is
  /// then paused briefly instead of spinning on a listener that stays readable).
  bool accept_all() {
    std::size_t open = 0;
    std::size_t closing = 0;
    for (const auto& c : conns_) ++(c->closing ? closing : open);
    for (;;) {
      sockaddr_storage addr{};
      socklen_t len = sizeof addr;
      detail::unique_fd fd(::accept4(listen_.get(), reinterpret_cast<sockaddr*>(&addr), &len,
                                     SOCK_CLOEXEC | SOCK_NONBLOCK));
      if (!fd) {
        if (errno == EINTR || errno == ECONNABORTED) continue;
        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
          const int err = errno;
          refuse_for_descriptors();
          log("chorus: tcp_store server " + address() + ": accept(): " + detail::errno_text(err) +
              "; not accepting for 100 ms (raise the descriptor limit, ulimit -n, of the process "
              "that serves the store, or lower CHORUS_STORE_MAX_CONNECTIONS)");
          return false;
        }
        return true;  // EAGAIN: nothing more to accept
      }
      detail::net::set_nodelay(fd.get());
      auto c = std::make_unique<connection>();
      c->fd = std::move(fd);
      c->peer = detail::net::format_sockaddr(reinterpret_cast<const sockaddr*>(&addr));
      c->since = c->last_active = clock::now();
      if (open >= options_.limits.max_connections) {
        // Refused connections linger up to 2 s to deliver their error; past 64 of them
        // (a flood), they are closed at once.
        if (closing >= 64) continue;
        ++closing;
        refuse(*c, errc::transport,
               "the store serves at most " + std::to_string(options_.limits.max_connections) +
                   " connections and all are open " +
                   limit_name("max_connections", "CHORUS_STORE_MAX_CONNECTIONS"));
        if (refused_.load(std::memory_order_relaxed) % 64 == 1) {
          log("chorus: tcp_store server " + address() + ": refused the connection from " + c->peer +
              ": " + std::to_string(open) + " connections are open, the most allowed " +
              limit_name("max_connections", "CHORUS_STORE_MAX_CONNECTIONS"));
        }
      } else {
        ++open;
      }
      conns_.push_back(std::move(c));
    }
  }

  /// Out of descriptors: frees the spare one to accept one waiting client, tells it why,
  /// and closes it, so that clients get a reason rather than a hang.
  void refuse_for_descriptors() {
    if (!spare_) return;
    spare_.reset();
    detail::unique_fd fd(::accept4(listen_.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
    if (fd) {
      const bytes frame =
          detail::wire::writer()
              .u8(static_cast<std::uint8_t>(detail::wire::status::error))
              .u8(static_cast<std::uint8_t>(errc::transport))
              .str(
                  "the process serving the store ran out of file descriptors (ulimit -n); raise "
                  "its limit, or lower CHORUS_STORE_MAX_CONNECTIONS")
              .finish();
      [[maybe_unused]] const auto n =
          ::send(fd.get(), frame.data(), frame.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    }
    fd.reset();
    spare_ = detail::unique_fd(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  }

  /// Reads and discards what a closing connection still sends, until it closes.
  void drain(connection& c) {
    for (int round = 0; round < 16; ++round) {
      std::byte buf[4096];
      const ssize_t n = ::recv(c.fd.get(), buf, sizeof buf, 0);
      if (n > 0) continue;
      if (n < 0 && errno == EINTR) continue;
      if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) c.dead = true;
      return;
    }
  }

  void on_readable(connection& c) {
    // A bounded number of reads per wake-up keeps one fast sender from starving the rest;
    // none while its replies pile up (back-pressure: the socket buffers fill, and the
    // client's sends block).
    for (int round = 0; round < 16 && reading(c) && !c.closing; ++round) {
      std::byte buf[16384];
      const ssize_t n = ::recv(c.fd.get(), buf, sizeof buf, 0);
      if (n == 0) {
        const std::size_t partial = c.in.size() - c.in_pos;
        if (partial > 0 || c.discard > 0) {
          drop(c, "the connection closed in the middle of a frame (" +
                      std::to_string(partial + c.discard) + " bytes of it missing or unread)");
        }
        c.dead = true;  // an orderly close between frames is not worth a log line
        return;
      }
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) return;
        c.dead = true;  // reset by the peer (a client process died): nothing to report
        return;
      }
      if (c.pending) {
        drop(c, "it sent a request while its " + std::string(c.pending_get ? "get" : "wait") +
                    " was still pending");
        return;
      }
      c.in.insert(c.in.end(), buf, buf + n);
      process_frames(c);
    }
  }

  /// The largest request a client can need under the limits: a compare_set of two of the
  /// largest values under the largest key, or a wait whose keys fill a connection's
  /// allowance.
  [[nodiscard]] std::size_t largest_request() const noexcept {
    const auto& l = options_.limits;
    return std::max(2 * l.max_value_bytes + l.max_key_bytes + 24, l.max_connection_bytes);
  }

  /// Handles every complete frame in `c.in`. The length is checked as soon as the 8
  /// header bytes are in, before any byte of the body is buffered beyond what arrived.
  void process_frames(connection& c) {
    while (reading(c) && !c.pending) {
      const std::size_t avail = c.in.size() - c.in_pos;
      if (c.discard > 0) {
        // The body of a request over the limits: skipped as it arrives, never buffered.
        const auto skip = static_cast<std::size_t>(std::min<std::uint64_t>(c.discard, avail));
        c.in_pos += skip;
        c.discard -= skip;
        if (c.discard > 0) break;
        reply_error(c, errc::invalid_argument, c.discard_error);
        continue;
      }
      if (avail < detail::wire::header_bytes) break;
      const std::uint64_t len =
          detail::wire::load_le(c.in.data() + c.in_pos, detail::wire::header_bytes);
      const std::size_t limit =
          c.authenticated ? options_.max_frame_bytes : detail::wire::handshake_frame_bytes;
      if (len > limit) {
        drop(c, "a frame of " + std::to_string(len) + " bytes is over the limit of " +
                    std::to_string(limit) +
                    (c.authenticated ? " bytes (tcp_server_options::max_frame_bytes)"
                                     : " bytes for a handshake (hello, auth)"));
        return;
      }
      if (len == 0) {
        drop(c, "an empty frame (no command)");
        return;
      }
      if (len > largest_request()) {
        c.in_pos += detail::wire::header_bytes;
        c.discard = len;
        c.discard_error = "a request of " + std::to_string(len) +
                          " bytes is larger than the limits allow: values up to " +
                          std::to_string(options_.limits.max_value_bytes) + " bytes " +
                          limit_name("max_value_bytes", "CHORUS_STORE_MAX_VALUE_BYTES") +
                          ", waits up to " + std::to_string(options_.limits.max_connection_bytes) +
                          " bytes of keys " +
                          limit_name("max_connection_bytes", "CHORUS_STORE_MAX_CONNECTION_BYTES");
        continue;
      }
      if (avail - detail::wire::header_bytes < len) {
        // A large frame gets room for exactly itself once, not a vector's doublings.
        const std::size_t frame = detail::wire::header_bytes + static_cast<std::size_t>(len);
        if (frame > (std::size_t{1} << 16) && c.in.capacity() < frame) {
          c.in.erase(c.in.begin(), c.in.begin() + static_cast<std::ptrdiff_t>(c.in_pos));
          c.in_pos = 0;
          c.in.reserve(frame);
        }
        break;
      }
      const std::span<const std::byte> body(c.in.data() + c.in_pos + detail::wire::header_bytes,
                                            static_cast<std::size_t>(len));
      c.last_active = clock::now();
      handle(c, body);
      c.in_pos += detail::wire::header_bytes + static_cast<std::size_t>(len);
    }
    if (c.pending && c.in_pos < c.in.size()) {
      drop(c, "it sent a request while its get/wait was still pending");
      return;
    }
    if (c.in_pos == c.in.size()) {
      c.in.clear();
      c.in_pos = 0;
      if (c.in.capacity() > (std::size_t{1} << 16)) bytes().swap(c.in);  // a large frame's
    } else if (c.in_pos > c.in.size() / 2) {
      c.in.erase(c.in.begin(), c.in.begin() + static_cast<std::ptrdiff_t>(c.in_pos));
      c.in_pos = 0;
    }
  }

  /// Checks a key against the key limit; answers the error and returns false when over.
  bool key_fits(connection& c, std::string_view key) {
    if (key.empty()) {
      reply_error(c, errc::invalid_argument, "empty key");
      return false;
    }
    if (key.size() <= options_.limits.max_key_bytes) return true;
    reply_error(c, errc::invalid_argument,
                "a key of " + std::to_string(key.size()) + " bytes is over the limit of " +
                    std::to_string(options_.limits.max_key_bytes) + " bytes " +
                    limit_name("max_key_bytes", "CHORUS_STORE_MAX_KEY_BYTES"));
    return false;
  }

  /// Checks that `more` bytes fit the store's total; answers the error and returns false
  /// when they do not.
  bool total_fits(connection& c, std::size_t more, std::string_view what) {
    const std::size_t held = stored_bytes_ + parked_bytes_;
    if (held + more <= options_.limits.max_total_bytes) return true;
    reply_error(c, errc::transport,
                std::string(what) + " needs " + std::to_string(more) +
                    " bytes and the store holds " + std::to_string(held) + " of its limit of " +
                    std::to_string(options_.limits.max_total_bytes) + " bytes " +
                    limit_name("max_total_bytes", "CHORUS_STORE_MAX_TOTAL_BYTES"));
    return false;
  }

  /// Whether a value of `n` bytes is within the limit; false (error answered) when over.
  bool value_fits(connection& c, std::size_t n) {
    if (n <= options_.limits.max_value_bytes) return true;
    reply_error(c, errc::invalid_argument,
                "a value of " + std::to_string(n) + " bytes is over the limit of " +
                    std::to_string(options_.limits.max_value_bytes) + " bytes " +
                    limit_name("max_value_bytes", "CHORUS_STORE_MAX_VALUE_BYTES"));
    return false;
  }

  /// Stores `value` under `key` within the total limit; false (error answered) when over.
  bool store_value(connection& c, std::string_view key, bytes value) {
    const std::size_t cost = key.size() + value.size() + detail::wire::entry_overhead_bytes;
    const auto it = data_.find(std::string(key));
    const std::size_t freed =
        it == data_.end() ? 0
                          : key.size() + it->second->size() + detail::wire::entry_overhead_bytes;
    if (cost > freed && !total_fits(c, cost - freed, "storing '" + std::string(key) + "'")) {
      return false;
    }
    stored_bytes_ = stored_bytes_ - freed + cost;
    auto shared = std::make_shared<const bytes>(std::move(value));
    if (it != data_.end()) {
      it->second = std::move(shared);
      return true;
    }
    data_.emplace(std::string(key), std::move(shared));
    on_new_key(key);
    return true;
  }

  void handle(connection& c, std::span<const std::byte> body) {
    using detail::wire::command;
    detail::wire::reader r(body);
    const std::uint8_t cmd = r.u8();
    const auto malformed = [&] {
      drop(c, "a malformed " + detail::wire::command_name(cmd) + " request (" +
                  std::to_string(body.size()) + " bytes)");
    };
    if (!c.greeted && cmd != static_cast<std::uint8_t>(command::hello)) {
      drop(c, "the first request was " + detail::wire::command_name(cmd) +
                  ", not hello (is this a chorus tcp_store client?)");
      return;
    }
    if (c.greeted && !c.authenticated && cmd != static_cast<std::uint8_t>(command::auth)) {
      drop(c, "a " + detail::wire::command_name(cmd) +
                  " request before proving the job secret (this store requires it)");
      return;
    }
    switch (static_cast<command>(cmd)) {
      case command::hello: {
        const std::uint32_t m = r.u32();
        const std::uint32_t v = r.u32();
        if (!r.complete() || m != detail::wire::magic) {
          drop(c, "a hello without the chorus magic number (not a chorus tcp_store client?)");
          return;
        }
        if (v != detail::wire::version) {
          reply_error(c, errc::transport,
                      "the client speaks tcp_store protocol " + std::to_string(v) +
                          " and this server speaks " + std::to_string(detail::wire::version) +
                          "; use the same chorus version on every rank");
          return;
        }
        if (c.greeted) return malformed();
        c.greeted = true;
        if (options_.secret.empty()) {
          c.authenticated = true;
          reply_ok(c, detail::wire::writer().u8(0).u8(0));
        } else {
          c.nonce = detail::random_hex(16);
          reply_ok(c, detail::wire::writer().u8(0).u8(1).str(c.nonce));
        }
        return;
      }
      case command::auth: {
        const std::string_view client_nonce = r.str();
        const auto mac = r.blob();
        if (!r.complete() || c.authenticated || client_nonce.size() < 16) return malformed();
        const auto expected = detail::wire::proof(options_.secret, "client", c.nonce, client_nonce);
        if (!detail::equal_in_constant_time(mac, expected)) {
          log("chorus: tcp_store server " + address() + ": refused the connection from " + c.peer +
              ": it does not know the job secret");
          refuse(c, errc::invalid_argument,
                 "authentication failed: this client's job secret is not the store's; every rank "
                 "must get the secret of the process that serves the store (CHORUS_JOB_SECRET or "
                 "CHORUS_JOB_SECRET_FILE, set by chorusrun)");
          return;
        }
        c.authenticated = true;
        const auto answer = detail::wire::proof(options_.secret, "server", c.nonce, client_nonce);
        reply_ok(c, detail::wire::writer().u8(0).blob(answer));
        return;
      }
      case command::set: {
        const std::string_view key = r.str();
        const auto value = r.blob();
        if (!r.complete()) return malformed();
        if (!key_fits(c, key) || !value_fits(c, value.size())) return;
        if (!store_value(c, key, bytes(value.begin(), value.end()))) return;
        reply_ok(c, detail::wire::writer().u8(0));
        return;
      }
      case command::compare_set: {
        const std::string_view key = r.str();
        const auto expected = r.blob();
        const auto desired = r.blob();
        if (!r.complete()) return malformed();
        if (!key_fits(c, key) || !value_fits(c, desired.size())) return;
        const auto it = data_.find(std::string(key));
        if (!detail::compare_matches(it == data_.end() ? nullptr : it->second.get(), expected)) {
          reply_ok(c, detail::wire::writer().u8(0).blob(
                          it == data_.end() ? std::span<const std::byte>{}
                                            : std::span<const std::byte>(*it->second)));
          return;
        }
        if (!store_value(c, key, bytes(desired.begin(), desired.end()))) return;
        reply_ok(c, detail::wire::writer().u8(0).blob(desired));
        return;
      }
      case command::get: {
        const std::string_view key = r.str();
        if (!r.complete()) return malformed();
        if (!key_fits(c, key)) return;
        park(c, {std::string(key)}, true);
        return;
      }
      case command::wait:
      case command::check: {
        const std::uint32_t n = r.u32();
        // Each key takes at least 4 bytes, so a count the frame cannot hold is malformed;
        // checked before reserving anything.
        if (r.failed() || n > r.left() / 4) return malformed();
        // A wait for more keys than a connection may park is refused before they are
        // parsed: parsing alone would cost several times the frame.
        if (static_cast<command>(cmd) == command::wait &&
            !parked_fits(c, std::size_t{n} * detail::wire::parked_key_overhead_bytes,
                         "a wait for " + std::to_string(n) + " keys")) {
          return;
        }
        std::vector<std::string_view> keys;
        keys.reserve(n);
        for (std::uint32_t i = 0; i < n; ++i) keys.push_back(r.str());
        if (!r.complete()) return malformed();
        for (const auto k : keys) {
          if (!key_fits(c, k)) return;
        }
        if (static_cast<command>(cmd) == command::check) {
          const bool all = std::all_of(keys.begin(), keys.end(),
                                       [&](auto k) { return data_.contains(std::string(k)); });
          reply_ok(c, detail::wire::writer().u8(0).u8(all ? 1 : 0));
          return;
        }
        std::vector<std::string> missing;
        for (const auto k : keys) {
          if (!data_.contains(std::string(k))) missing.emplace_back(k);
        }
        park(c, std::move(missing), false);
        return;
      }
      case command::add: {
        const std::string_view key = r.str();
        const std::int64_t delta = r.i64();
        if (!r.complete()) return malformed();
        if (!key_fits(c, key)) return;
        std::int64_t value = 0;
        try {
          auto it = data_.find(std::string(key));
          const std::int64_t current =
              it == data_.end() ? 0 : detail::parse_counter(*it->second, key, "tcp_store");
          value = detail::add_counter(current, delta, key, "tcp_store");
        } catch (const error& e) {
          return reply_error(c, e.value(), e.what());
        }
        if (!store_value(c, key, to_bytes(std::to_string(value)))) return;
        reply_ok(c, detail::wire::writer().u8(0).i64(value));
        return;
      }
    }
    drop(c, "an unknown command " + std::to_string(cmd));
  }

  /// Parks `c`'s get (one key) or wait until `keys` exist; answers at once when they do.
  /// Each missing key is indexed, so a set looks only at the requests waiting for its key.
  void park(connection& c, std::vector<std::string> keys, bool get) {
    if (get) {
      if (const auto it = data_.find(keys.front()); it != data_.end()) {
        return reply_value(c, it->second);
      }
    } else {
      std::sort(keys.begin(), keys.end());
      keys.erase(std::unique(keys.begin(), keys.end()), keys.end());
      std::erase_if(keys, [&](const std::string& k) { return data_.contains(k); });
      if (keys.empty()) return reply_ok(c, detail::wire::writer().u8(0));
    }
    c.pending_get = get;
    std::size_t cost = 0;
    for (const auto& k : keys) cost += k.size() + detail::wire::parked_key_overhead_bytes;
    const std::string what = get ? "get('" + keys.front() + "')"
                                 : "a wait for " + std::to_string(keys.size()) + " missing keys";
    if (!parked_fits(c, cost, what) || !total_fits(c, cost, what)) return;
    for (const auto& k : keys) waiters_[k].push_back(&c);
    c.pending = true;
    c.missing = keys.size();
    c.parked_bytes = cost;
    parked_bytes_ += cost;
    c.pending_keys = std::move(keys);
  }

  /// Checks that a request pinning `cost` bytes while parked fits one connection's
  /// allowance; answers the error and returns false when it does not.
  bool parked_fits(connection& c, std::size_t cost, const std::string& what) {
    if (cost + queued(c) <= options_.limits.max_connection_bytes) return true;
    reply_error(c, errc::transport,
                what + " would pin " + std::to_string(cost) +
                    " bytes while parked, over one connection's limit of " +
                    std::to_string(options_.limits.max_connection_bytes) + " bytes " +
                    limit_name("max_connection_bytes", "CHORUS_STORE_MAX_CONNECTION_BYTES"));
    return false;
  }

  /// Answers `c`'s get or wait, whose keys all exist now.
  void complete(connection& c, bool get) {
    parked_bytes_ -= c.parked_bytes;
    c.parked_bytes = 0;
    c.pending = false;
    c.missing = 0;
    if (get) {
      reply_value(c, data_.at(c.pending_keys.front()));
    } else {
      reply_ok(c, detail::wire::writer().u8(0));
    }
    c.pending_keys.clear();
  }

  /// A key came into existence: answers the requests that waited only for it.
  void on_new_key(std::string_view key) {
    const auto it = waiters_.find(std::string(key));
    if (it == waiters_.end()) return;
    std::vector<connection*> list = std::move(it->second);
    waiters_.erase(it);
    for (connection* w : list) {
      if (!w->dead && w->pending && --w->missing == 0) complete(*w, w->pending_get);
    }
  }

  /// Forgets the parked request of a connection that is going away.
  void unpark(connection& c) {
    if (!c.pending) return;
    for (const auto& k : c.pending_keys) {
      const auto it = waiters_.find(k);
      if (it == waiters_.end()) continue;
      std::erase(it->second, &c);
      if (it->second.empty()) waiters_.erase(it);
    }
    parked_bytes_ -= c.parked_bytes;
    c.parked_bytes = 0;
    c.pending = false;
    c.pending_keys.clear();
  }

  void reply_ok(connection& c, detail::wire::writer& w) { send(c, w.finish()); }
  void reply_error(connection& c, errc code, const std::string& message) {
    send(c, detail::wire::writer()
                .u8(static_cast<std::uint8_t>(detail::wire::status::error))
                .u8(static_cast<std::uint8_t>(code))
                .str(message)
                .finish());
  }

  /// The reply to a get: a small frame head, then the stored value itself (shared).
  void reply_value(connection& c, const std::shared_ptr<const bytes>& value) {
    detail::wire::writer head;
    head.u8(0).u32(static_cast<std::uint32_t>(value->size()));
    bytes frame = head.finish();
    // The frame's length covers the value that follows it.
    chorus::detail::store_le(frame.data(),
                             frame.size() - detail::wire::header_bytes + value->size(),
                             detail::wire::header_bytes);
    enqueue(c, std::make_shared<const bytes>(std::move(frame)));
    if (!value->empty()) enqueue(c, value);
    flush(c);
  }

  void enqueue(connection& c, std::shared_ptr<const bytes> chunk) {
    c.out_bytes += chunk->size();
    c.out.push_back(std::move(chunk));
  }

  void send(connection& c, bytes frame) {
    enqueue(c, std::make_shared<const bytes>(std::move(frame)));
    flush(c);
  }

  void flush(connection& c) {
    while (!c.out.empty()) {
      iovec iov[16];
      int n_iov = 0;
      std::size_t skip = c.out_pos;
      for (const auto& chunk : c.out) {
        if (n_iov == 16) break;
        iov[n_iov].iov_base = const_cast<std::byte*>(chunk->data() + skip);
        iov[n_iov].iov_len = chunk->size() - skip;
        ++n_iov;
        skip = 0;
      }
      msghdr msg{};
      msg.msg_iov = iov;
      msg.msg_iovlen = static_cast<std::size_t>(n_iov);
      const ssize_t n = ::sendmsg(c.fd.get(), &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) c.dead = true;  // the client went away
        return;
      }
      auto sent = static_cast<std::size_t>(n);
      c.out_bytes -= sent;
      while (sent > 0) {
        const std::size_t left = c.out.front()->size() - c.out_pos;
        if (sent < left) {
          c.out_pos += sent;
          break;
        }
        sent -= left;
        c.out.pop_front();
        c.out_pos = 0;
      }
    }
    c.out_pos = 0;
    if (c.closing) ::shutdown(c.fd.get(), SHUT_WR);
  }

  tcp_server_options options_;
  std::uint16_t port_ = 0;
  detail::unique_fd listen_;
  detail::unique_fd wake_;
  detail::unique_fd spare_;  ///< freed to accept (and refuse) a client when out of descriptors
  std::atomic<std::uint64_t> dropped_{0};
  std::atomic<std::uint64_t> refused_{0};
  std::mutex idle_mutex_;                 // guards connected_
  std::condition_variable idle_changed_;  // notified when connected_ changes
  std::size_t connected_ = 0;             // conns_.size() as last published by the thread
  // Owned by the server thread alone after construction: no locks.
  /// Values are shared with the replies that carry them, so unread replies cost no copies.
  std::unordered_map<std::string, std::shared_ptr<const bytes>> data_;
  std::size_t stored_bytes_ = 0;  ///< keys, values and their bookkeeping in data_
  std::size_t parked_bytes_ = 0;  ///< keys of parked requests and their bookkeeping
  /// Parked requests by the key they wait for (each connection once per missing key).
  std::unordered_map<std::string, std::vector<connection*>> waiters_;
  std::vector<std::unique_ptr<connection>> conns_;
  std::thread thread_;  // last: started after every other member exists
};

/// Settings of a `tcp_store` client (and of its server, when it serves).
struct tcp_store_options {
  /// The server's address. With `serve`, the address the server binds.
  std::string host = "127.0.0.1";
  /// The server's port. With `serve`, 0 picks a free port (see `tcp_store::port()`).
  std::uint16_t port = 0;
  /// Run the server in this process (on a background thread) and connect to it.
  bool serve = false;
  /// How long to keep trying to connect (the server may start later than the clients),
  /// and how long `set`, `add` and `check` wait for their reply.
  duration timeout = default_timeout;
  /// With `serve`: how long destroying this store waits for the other clients to
  /// disconnect before stopping the server. The serving rank often finishes first; ranks
  /// still finishing their last call (even a final barrier's) would otherwise lose the
  /// server under them. Zero: stop at once.
  duration linger = std::chrono::seconds(30);
  /// The frame limit of the server (with `serve`) and of this client's replies.
  std::size_t max_frame_bytes = default_max_frame_bytes;
  log_function log = {};  ///< the server's log sink (with `serve`); empty: standard error
  /// The job secret (CHORUS_JOB_SECRET): proved to the server, which must prove it back.
  /// Empty: none, and a server that asks for one is refused with an error saying so
  /// (unless `find_secret` finds one).
  std::string secret = {};
  tcp_store_limits limits = {};  ///< the server's limits (with `serve`)
  /// With `secret` empty, where to look for it when the server asks for one: called at
  /// each connection attempt until the server accepts what it returns, which is then kept
  /// for every later connection. nullopt: not there yet, and the client keeps trying until
  /// its deadline; a secret the server refuses (e.g. an earlier job's) is looked up again
  /// at the next attempt. from_env reads the file rank 0 writes (docs/security.md).
  std::function<std::optional<std::string>()> find_secret = {};
  /// What `find_secret` reads, for messages (e.g. "the file /home/me/.chorus/...").
  std::string secret_origin = {};
};

/// A store client connected to a `tcp_store_server`, which it may also own (`serve`).
/// Thread-safe. Move-only; a moved-from tcp_store may only be destroyed or assigned to.
///
/// A serving store's destructor waits (up to `options.linger`) until every other client has
/// disconnected, so the serving rank may simply finish first: the server stays up until
/// the other ranks' processes exit or destroy their stores.
///
/// **Errors**: `errc::timeout` naming host:port when no server answers before
/// `options.timeout`, and naming the key(s) when a get/wait's deadline passes;
/// `errc::peer_lost` when the server closes the connection during a call (the serving
/// process exited or died), and for every later call; `errc::invalid_argument` for empty
/// keys, values over the frame limit and non-integer counters.
class tcp_store {
 public:
  explicit tcp_store(tcp_store_options options = {})
      : state_(std::make_unique<state>(std::move(options))) {
    auto& s = *state_;
    detail::wire::check_secret(s.options.secret, "tcp_store");
    if (s.options.serve) {
      s.server = std::make_unique<tcp_store_server>(tcp_server_options{
          .host = s.options.host,
          .port = s.options.port,
          .max_frame_bytes = s.options.max_frame_bytes,
          .log = s.options.log,
          .secret = s.options.secret,
          .limits = s.options.limits,
      });
      s.port = s.server->port();
    } else if (s.port == 0) {
      throw error(errc::invalid_argument,
                  "chorus: tcp_store: a client needs the server's port (options.port); only a "
                  "serving store (options.serve) may ask for port 0");
    }
    // Connect now, so that a wrong address fails here rather than in the first call.
    s.idle.push_back(connect(deadline::after(s.options.timeout)));
  }

  tcp_store(tcp_store&&) noexcept = default;
  tcp_store& operator=(tcp_store&&) noexcept = default;
  ~tcp_store() = default;

  void set(std::string_view key, std::span<const std::byte> value) {
    check_key(key);
    check_size(value.size(), key);
    call(detail::wire::writer()
             .u8(static_cast<std::uint8_t>(detail::wire::command::set))
             .str(key)
             .blob(value),
         deadline::after(state_->options.timeout), "set('" + std::string(key) + "')", false);
  }

  bytes get(std::string_view key, deadline d) {
    check_key(key);
    const bytes reply = call(
        detail::wire::writer().u8(static_cast<std::uint8_t>(detail::wire::command::get)).str(key),
        d, "get('" + std::string(key) + "')", true);
    detail::wire::reader r(reply);
    const auto value = r.blob();
    if (!r.complete()) malformed_reply("get");
    return bytes(value.begin(), value.end());
  }

  void wait(std::span<const std::string> keys, deadline d) {
    call(keys_request(detail::wire::command::wait, keys), d, "wait(" + list(keys) + ")", true);
  }

  std::int64_t add(std::string_view key, std::int64_t delta) {
    check_key(key);
    const bytes reply =
        call(detail::wire::writer()
                 .u8(static_cast<std::uint8_t>(detail::wire::command::add))
                 .str(key)
                 .i64(delta),
             deadline::after(state_->options.timeout), "add('" + std::string(key) + "')", false);
    detail::wire::reader r(reply);
    const std::int64_t value = r.i64();
    if (!r.complete()) malformed_reply("add");
    return value;
  }

  bytes compare_set(std::string_view key, std::span<const std::byte> expected,
                    std::span<const std::byte> desired) {
    check_key(key);
    check_size(expected.size(), key);
    check_size(desired.size(), key);
    const bytes reply = call(detail::wire::writer()
                                 .u8(static_cast<std::uint8_t>(detail::wire::command::compare_set))
                                 .str(key)
                                 .blob(expected)
                                 .blob(desired),
                             deadline::after(state_->options.timeout),
                             "compare_set('" + std::string(key) + "')", false);
    detail::wire::reader r(reply);
    const auto value = r.blob();
    if (!r.complete()) malformed_reply("compare_set");
    return bytes(value.begin(), value.end());
  }

  bool check(std::span<const std::string> keys) {
    const bytes reply =
        call(keys_request(detail::wire::command::check, keys),
             deadline::after(state_->options.timeout), "check(" + list(keys) + ")", false);
    detail::wire::reader r(reply);
    const std::uint8_t present = r.u8();
    if (!r.complete()) malformed_reply("check");
    return present != 0;
  }

  /// The server's port (the one chosen when serving on port 0).
  [[nodiscard]] std::uint16_t port() const noexcept { return state_->port; }
  [[nodiscard]] const std::string& host() const noexcept { return state_->options.host; }
  /// "host:port" of the server.
  [[nodiscard]] std::string address() const {
    return detail::net::format_address(state_->options.host, state_->port);
  }
  /// The server this store runs (with `serve`), else null.
  [[nodiscard]] const tcp_store_server* server() const noexcept { return state_->server.get(); }

 private:
  struct state {
    explicit state(tcp_store_options o)
        : options(std::move(o)), port(options.port), secret(options.secret) {}
    state(const state&) = delete;
    state& operator=(const state&) = delete;
    ~state() {
      idle.clear();  // our own connections first, so that they do not count as clients
      if (server && options.linger > duration::zero()) {
        server->wait_until_idle(deadline::after(options.linger));
      }
    }
    tcp_store_options options;
    std::unique_ptr<tcp_store_server> server;  // destroyed after the connections below
    std::uint16_t port = 0;
    std::mutex mutex;                     // guards `idle`, `lost_reason` and `secret`
    std::vector<detail::unique_fd> idle;  // connections not in use by a call
    std::atomic<bool> lost{false};
    std::string lost_reason;
    std::string secret;  // options.secret, or the one `find_secret` found that the server took
  };

  void check_key(std::string_view key) const { detail::check_key(key, "tcp_store"); }

  void check_size(std::size_t n, std::string_view key) const {
    // The frame holds the command, the key and two lengths besides the value.
    if (n > state_->options.max_frame_bytes -
                std::min<std::size_t>(state_->options.max_frame_bytes, key.size() + 16)) {
      throw error(errc::invalid_argument, "chorus: tcp_store: set('" + std::string(key) +
                                              "') with a value of " + std::to_string(n) +
                                              " bytes, over the frame limit of " +
                                              std::to_string(state_->options.max_frame_bytes) +
                                              " bytes (tcp_store_options::max_frame_bytes)");
    }
  }

  static std::string list(std::span<const std::string> keys) {
    std::string out;
    for (std::size_t i = 0; i < keys.size(); ++i) {
      if (i == 4) {
        out += ", ... (" + std::to_string(keys.size()) + " keys)";
        break;
      }
      out += (i == 0 ? "'" : ", '") + keys[i] + "'";
    }
    return out;
  }

  detail::wire::writer keys_request(detail::wire::command cmd,
                                    std::span<const std::string> keys) const {
    detail::wire::writer w;
    w.u8(static_cast<std::uint8_t>(cmd)).u32(static_cast<std::uint32_t>(keys.size()));
    for (const auto& k : keys) {
      check_key(k);
      w.str(k);
    }
    if (w.body_size() > state_->options.max_frame_bytes) {
      throw error(
          errc::invalid_argument,
          "chorus: tcp_store: " + detail::wire::command_name(static_cast<std::uint8_t>(cmd)) +
              " of " + std::to_string(keys.size()) + " keys is over the frame limit");
    }
    return w;
  }

  [[noreturn]] void malformed_reply(std::string_view what) const {
    throw error(errc::transport, "chorus: tcp_store " + address() + ": malformed reply to " +
                                     std::string(what) +
                                     " (is the server a chorus tcp_store of the same version?)");
  }

  [[noreturn]] void throw_lost(const std::string& what, int err) {
    std::string reason = err == 0 ? "closed the connection"
                                  : "reset the connection (" + detail::errno_text(err) + ")";
    {
      std::lock_guard lock(state_->mutex);
      state_->lost_reason = what;
      state_->idle.clear();  // every other connection to the dead server is useless too
    }
    state_->lost.store(true, std::memory_order_release);
    throw error(errc::peer_lost, "chorus: tcp_store: the server at " + address() + " " + reason +
                                     " during " + what +
                                     "; the process serving the store (rank 0, or chorusrun) "
                                     "exited or died");
  }

  /// Opens a connection and says hello, retrying until `d` (the server may not be up yet,
  /// or the secret `find_secret` looks for not written yet).
  detail::unique_fd connect(deadline d) {
    auto delay = std::chrono::milliseconds(5);
    std::string why;
    bool secret_trouble = false;
    for (;;) {
      detail::unique_fd fd = detail::net::connect_once(state_->options.host, state_->port, d, why);
      greeting g = greeting::done;
      if (fd) {
        try {
          g = hello(fd.get(), d, why);
        } catch (const error& e) {
          // The deadline passed in the middle of a later attempt: the secret is the reason.
          if (!secret_trouble || e.value() != errc::timeout) throw;
          break;
        }
        if (g == greeting::done) return fd;
        secret_trouble = true;
      }
      if (d.expired()) break;
      // Back off up to 200 ms: fast when the server is just starting, gentle when not; a
      // refused secret waits longer (the server logs each refusal).
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(d.at - clock::now());
      const auto pause = g == greeting::secret_refused ? std::chrono::milliseconds(500) : delay;
      std::this_thread::sleep_for(std::max(std::chrono::milliseconds(0), std::min(pause, left)));
      delay = std::min(delay * 2, std::chrono::milliseconds(200));
      if (d.expired()) break;
    }
    if (secret_trouble) {
      throw error(errc::timeout,
                  "chorus: tcp_store: the store at " + address() +
                      " requires the job secret, and until the deadline " + why +
                      "; the process that serves the store puts its secret there "
                      "(docs/security.md): give every rank that directory (CHORUS_SECRET_DIR on "
                      "a file system they share), or the same CHORUS_JOB_SECRET");
    }
    throw error(errc::timeout, "chorus: tcp_store: could not connect to " + address() +
                                   " before the deadline (last error: " + why +
                                   "); is the store's server (rank 0, or chorusrun) running "
                                   "there, and is the address right?");
  }

  /// Sends one frame on `fd` and reads the reply, for the handshake; throws on failure.
  bytes exchange(int fd, const bytes& frame, deadline d, std::string_view what) {
    int err = 0;
    bytes reply;
    auto io = detail::net::send_all(fd, frame, d, err);
    if (io == detail::net::io::ok) io = receive(fd, d, err, reply);
    if (io == detail::net::io::timeout) {
      throw error(errc::timeout, "chorus: tcp_store: the server at " + address() +
                                     " accepted the connection but did not answer " +
                                     std::string(what) +
                                     " before the deadline; is it a chorus tcp_store (and not, "
                                     "e.g., torch's store on MASTER_PORT)?");
    }
    if (io == detail::net::io::closed) {
      throw error(errc::peer_lost, "chorus: tcp_store: the server at " + address() +
                                       " closed the connection during " + std::string(what) +
                                       "; is it a chorus tcp_store of the same version?");
    }
    return check_status(reply, what);
  }

  /// Says hello and, when the server asks for it, proves the job secret and checks the
  /// server's proof of it (a server without the secret cannot pose as the job's store).
  /// Not `done`, with `why`, when the secret `find_secret` looks for is not there yet or
  /// the server refused the one it found: try again on a new connection.
  enum class greeting { done, secret_missing, secret_refused };
  greeting hello(int fd, deadline d, std::string& why) {
    const bytes payload = exchange(fd,
                                   detail::wire::writer()
                                       .u8(static_cast<std::uint8_t>(detail::wire::command::hello))
                                       .u32(detail::wire::magic)
                                       .u32(detail::wire::version)
                                       .finish(),
                                   d, "hello");
    detail::wire::reader r(payload);
    const std::uint8_t wants_secret = r.u8();
    const std::string_view nonce = wants_secret != 0 ? r.str() : std::string_view{};
    if (!r.complete() || wants_secret > 1) malformed_reply("hello");
    std::string secret;
    {
      std::lock_guard lock(state_->mutex);
      secret = state_->secret;
    }
    const bool look = wants_secret != 0 && secret.empty() && state_->options.find_secret;
    if (look) {
      auto found = state_->options.find_secret();
      if (!found) {
        why = state_->options.secret_origin + " did not exist";
        return greeting::secret_missing;
      }
      secret = std::move(*found);
      detail::wire::check_secret(secret, "tcp_store");
    }
    if (wants_secret != 0 && secret.empty()) {
      throw error(errc::invalid_argument,
                  "chorus: tcp_store: the store at " + address() +
                      " requires the job secret and this process has none; start every rank "
                      "with the launcher that serves the store (chorusrun passes it), or set "
                      "CHORUS_JOB_SECRET (or CHORUS_JOB_SECRET_FILE) as it has it");
    }
    if (wants_secret == 0 && !secret.empty()) {
      throw error(errc::invalid_argument,
                  "chorus: tcp_store: this process has a job secret but the store at " + address() +
                      " does not ask for one: it is not this job's store (another program on "
                      "the port?) or it was started without the secret");
    }
    if (wants_secret == 0) return greeting::done;
    const std::string client_nonce = detail::random_hex(16);
    const std::string challenge(nonce);
    const auto request = detail::wire::writer()
                             .u8(static_cast<std::uint8_t>(detail::wire::command::auth))
                             .str(client_nonce)
                             .blob(detail::wire::proof(secret, "client", challenge, client_nonce))
                             .finish();
    bytes answer;
    try {
      answer = exchange(fd, request, d, "authentication");
    } catch (const error& e) {
      // A found secret the server refuses may be an earlier job's: look again.
      if (!look || (e.value() != errc::invalid_argument && e.value() != errc::peer_lost)) throw;
      why = "it refused the secret in " + state_->options.secret_origin +
            " (an earlier job's, or another job's on the same port?)";
      return greeting::secret_refused;
    }
    detail::wire::reader a(answer);
    const auto mac = a.blob();
    if (!a.complete() || !detail::equal_in_constant_time(
                             mac, detail::wire::proof(secret, "server", challenge, client_nonce))) {
      throw error(errc::invalid_argument,
                  "chorus: tcp_store: the store at " + address() +
                      " did not prove that it knows the job secret; it is not this job's "
                      "store (another program on the port?)");
    }
    if (look) {
      std::lock_guard lock(state_->mutex);
      state_->secret = secret;
    }
    return greeting::done;
  }

  /// Reads one reply frame (header, limit check, body).
  detail::net::io receive(int fd, deadline d, int& err, bytes& out) const {
    std::byte header[detail::wire::header_bytes];
    auto io = detail::net::recv_exact(fd, header, d, err);
    if (io != detail::net::io::ok) return io;
    const std::uint64_t len = detail::wire::load_le(header, detail::wire::header_bytes);
    // A get reply holds a value of up to max_frame_bytes plus the status and its length.
    if (len == 0 || len > state_->options.max_frame_bytes + 16) malformed_reply("a request");
    out.resize(static_cast<std::size_t>(len));
    return detail::net::recv_exact(fd, out, d, err);
  }

  /// The payload of an ok reply, or throws the error the server reported.
  bytes check_status(const bytes& reply, std::string_view what) const {
    detail::wire::reader r(reply);
    const std::uint8_t st = r.u8();
    if (st == static_cast<std::uint8_t>(detail::wire::status::ok)) {
      return bytes(reply.begin() + 1, reply.end());
    }
    const std::uint8_t code = r.u8();
    const std::string_view message = r.str();
    if (st != static_cast<std::uint8_t>(detail::wire::status::error) || !r.complete() || code < 1 ||
        code > static_cast<std::uint8_t>(errc::transport)) {
      malformed_reply(what);
    }
    throw error(static_cast<errc>(code), "chorus: tcp_store " + address() + ": " +
                                             std::string(what) + ": " + std::string(message));
  }

  /// Sends one request and returns the ok payload of its reply.
  bytes call(detail::wire::writer request, deadline d, const std::string& what, bool blocking) {
    if (state_->lost.load(std::memory_order_acquire)) {
      std::lock_guard lock(state_->mutex);
      throw error(errc::peer_lost, "chorus: tcp_store: the server at " + address() +
                                       " went away earlier (during " + state_->lost_reason + "); " +
                                       what + " cannot be served");
    }
    const auto start = clock::now();
    detail::unique_fd fd;
    {
      std::lock_guard lock(state_->mutex);
      while (!fd && !state_->idle.empty()) {
        fd = std::move(state_->idle.back());
        state_->idle.pop_back();
        // The server closes connections idle for longer than its idle timeout: one with
        // anything to read (the end of the stream) is not reused.
        pollfd p{fd.get(), POLLIN | POLLRDHUP, 0};
        if (::poll(&p, 1, 0) != 0) fd.reset();
      }
    }
    const bool reused = static_cast<bool>(fd);
    if (!fd) fd = connect(d);
    const bytes frame = request.finish();
    int err = 0;
    bytes reply;
    auto io = detail::net::send_all(fd.get(), frame, d, err);
    if (io == detail::net::io::ok) io = receive(fd.get(), d, err, reply);
    if (io == detail::net::io::closed && reused) {
      // Closed for idleness just as this request left: the server closes only connections
      // it has read nothing from, so the request was not served; once more, on a fresh
      // connection (one attempt: a server that is gone must not turn into a timeout).
      std::string why;
      fd = detail::net::connect_once(state_->options.host, state_->port, d, why);
      try {
        if (fd && hello(fd.get(), d, why) == greeting::done) {
          io = detail::net::send_all(fd.get(), frame, d, err);
          if (io == detail::net::io::ok) io = receive(fd.get(), d, err, reply);
        } else {
          io = detail::net::io::closed;
        }
      } catch (const error&) {
        io = detail::net::io::closed;  // reported as the loss it is, below
      }
    }
    if (io == detail::net::io::closed) throw_lost(what, err);
    if (io == detail::net::io::timeout) {
      // `fd` closes here: a reply that arrives late can never answer a later call.
      const std::string waited = chorus::to_string(clock::now() - start);
      if (blocking) {
        throw error(errc::timeout, "chorus: tcp_store " + address() + ": " + what +
                                       " timed out after " + waited +
                                       ": the key was not set in time (did the rank that sets "
                                       "it start, and does it use the same key prefix?)");
      }
      throw error(errc::timeout, "chorus: tcp_store " + address() + ": " + what +
                                     " got no reply within " + waited +
                                     " (tcp_store_options::timeout); the server is stuck or "
                                     "unreachable");
    }
    bytes payload = check_status(reply, what);
    std::lock_guard lock(state_->mutex);
    state_->idle.push_back(std::move(fd));
    return payload;
  }

  std::unique_ptr<state> state_;
};

static_assert(store<tcp_store>);

}  // namespace chorus::inline v0::bootstrap

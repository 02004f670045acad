// tcp_store and tcp_store_server: the store contract over TCP (threads and forked
// processes), connection deadlines, a server that starts late or dies, hostile input on a
// raw socket (each kind drops only that connection, and the server keeps serving), and
// descriptor hygiene (counts flat, everything close-on-exec).
#include <chorus/bootstrap/tcp_store.hpp>

#include <catch2/catch.hpp>

#include "bootstrap/process.hpp"
#include "bootstrap/store_contract.hpp"

#include <fcntl.h>
#include <malloc.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <fstream>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
namespace bs = chorus::bootstrap;
namespace wire = chorus::bootstrap::detail::wire;
using contract::soon;

namespace {

/// The port a forked serving rank wrote into `port_pipe` (waits up to 20 s); closes the pipe.
std::uint16_t read_port(int port_pipe[2]) {
  std::uint16_t port = 0;
  pollfd pf{port_pipe[0], POLLIN, 0};
  REQUIRE(::poll(&pf, 1, 20000) == 1);
  REQUIRE(::read(port_pipe[0], &port, sizeof port) == sizeof port);
  ::close(port_pipe[0]);
  ::close(port_pipe[1]);
  return port;
}

/// Collects a server's log lines (the server calls it from its thread).
struct log_lines {
  std::mutex mutex;
  std::vector<std::string> lines;
  bs::log_function sink() {
    return [this](std::string_view line) {
      std::lock_guard lock(mutex);
      lines.emplace_back(line);
    };
  }
  bool any_contains(std::string_view text) {
    std::lock_guard lock(mutex);
    for (const auto& l : lines) {
      if (l.find(text) != std::string::npos) return true;
    }
    return false;
  }
};

/// A plain blocking TCP connection for speaking (or breaking) the protocol by hand.
class raw_client {
 public:
  explicit raw_client(std::uint16_t port) : fd_(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(port);
    REQUIRE(::connect(fd_.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  }
  void send(const bs::bytes& data) {
    REQUIRE(::send(fd_.get(), data.data(), data.size(), MSG_NOSIGNAL) ==
            static_cast<ssize_t>(data.size()));
  }
  void send(std::string_view text) { send(bs::to_bytes(text)); }
  void shutdown_write() { ::shutdown(fd_.get(), SHUT_WR); }
  [[nodiscard]] int fd() const { return fd_.get(); }
  /// Says hello and reads the reply (status ok).
  void hello() {
    send(wire::writer().u8(1).u32(wire::magic).u32(wire::version).finish());
    const bs::bytes reply = read_frame();
    REQUIRE(!reply.empty());
    CHECK(reply[0] == std::byte{0});
  }
  /// The body of the next frame from the server; empty when none comes within 10 s.
  bs::bytes read_frame() {
    std::byte header[wire::header_bytes];
    if (!read_exact(header, sizeof header)) return {};
    bs::bytes body(static_cast<std::size_t>(wire::load_le(header, wire::header_bytes)));
    if (!read_exact(body.data(), body.size())) return {};
    return body;
  }
  bool read_exact(std::byte* p, std::size_t n) {
    std::size_t done = 0;
    while (done < n) {
      pollfd pf{fd_.get(), POLLIN, 0};
      if (::poll(&pf, 1, 10000) <= 0) return false;
      const ssize_t r = ::recv(fd_.get(), p + done, n - done, 0);
      if (r <= 0) return false;
      done += static_cast<std::size_t>(r);
    }
    return true;
  }
  /// True when the server closes the connection within 10 s (data before that is skipped).
  bool closed_by_server() {
    for (;;) {
      pollfd pf{fd_.get(), POLLIN, 0};
      if (::poll(&pf, 1, 10000) <= 0) return false;
      std::byte buf[256];
      const ssize_t r = ::recv(fd_.get(), buf, sizeof buf, 0);
      if (r == 0) return true;
      if (r < 0) return errno == ECONNRESET;
    }
  }

 private:
  bs::detail::unique_fd fd_;
};

bs::tcp_store client(std::uint16_t port, std::chrono::milliseconds timeout = 20s) {
  return bs::tcp_store({.port = port, .timeout = timeout});
}

}  // namespace

TEST_CASE("tcp_store keeps the store contract (one client per thread-rank)") {
  bs::tcp_store server({.serve = true});
  REQUIRE(server.port() != 0);
  CHECK(server.address() == "127.0.0.1:" + std::to_string(server.port()));
  contract::check_store_contract([&] { return client(server.port()); });
}

TEST_CASE("tcp_store: one store object used from several threads at once") {
  // A thread blocked in get must not hold up another thread's set on the same object.
  bs::tcp_store s({.serve = true});
  std::thread setter([&] {
    std::this_thread::sleep_for(50ms);
    s.set("shared/late", bs::to_bytes("from another thread"));
  });
  CHECK(bs::as_string(s.get("shared/late", soon())) == "from another thread");
  setter.join();
  const auto failures = contract::on_threads(6, [&](int) {
    for (int i = 0; i < 100; ++i) s.add("shared/count", 1);
  });
  CHECK(failures.empty());
  CHECK(s.add("shared/count", 0) == 600);
}

TEST_CASE("tcp_store across forked processes: rank 0 serves, every rank gathers and adds") {
  constexpr int n = 4;
  int port_pipe[2];
  REQUIRE(::pipe2(port_pipe, O_CLOEXEC) == 0);
  const auto rank_main = [](int rank, std::uint16_t port, bs::tcp_store* own) {
    bs::tcp_store mine = own ? std::move(*own) : client(port);
    const auto blobs = bs::all_gather_blob(mine, "mp/addr", rank, n,
                                           bs::to_bytes("addr-of-" + std::to_string(rank)), soon());
    for (int r = 0; r < n; ++r) {
      if (bs::as_string(blobs[static_cast<std::size_t>(r)]) != "addr-of-" + std::to_string(r)) {
        return 10 + r;
      }
    }
    for (int i = 0; i < 250; ++i) mine.add("mp/count", 1);
    bs::barrier(mine, "mp/b0", rank, n, soon());
    if (mine.add("mp/count", 0) != n * 250) return 20;
    // Rank 0 is the server: it must outlive everyone's last call, hence a last barrier.
    bs::barrier(mine, "mp/b1", rank, n, soon());
    return 0;
  };
  std::vector<proc::child> ranks;
  ranks.emplace_back([&] {
    bs::tcp_store serving({.serve = true});
    const std::uint16_t port = serving.port();
    if (::write(port_pipe[1], &port, sizeof port) != sizeof port) return 2;
    return rank_main(0, port, &serving);
  });
  const std::uint16_t port = read_port(port_pipe);
  for (int r = 1; r < n; ++r) {
    ranks.emplace_back([&, r] { return rank_main(r, port, nullptr); });
  }
  for (int r = 0; r < n; ++r) {
    INFO("rank " << r);
    CHECK(ranks[static_cast<std::size_t>(r)].exit_code() == 0);
  }
}

TEST_CASE("tcp_store: connecting where no server listens times out naming host:port") {
  const std::uint16_t port = contract::unused_port();
  try {
    client(port, 300ms);
    FAIL("connected to nothing");
  } catch (const chorus::error& e) {
    CHECK(e.value() == chorus::errc::timeout);
    CHECK_THAT(e.what(), Catch::Contains("127.0.0.1:" + std::to_string(port)));
  }
}

TEST_CASE("tcp_store: clients wait for a server that starts after them") {
  const std::uint16_t port = contract::unused_port();
  std::unique_ptr<bs::tcp_store_server> server;
  std::thread starter([&] {
    std::this_thread::sleep_for(200ms);
    server = std::make_unique<bs::tcp_store_server>(bs::tcp_server_options{.port = port});
  });
  auto c = client(port);  // retries until the server is up
  starter.join();
  c.set("late/server", bs::to_bytes("ok"));
  CHECK(bs::as_string(c.get("late/server", soon())) == "ok");
}

TEST_CASE("tcp_store: a client needs a port; a busy port is reported") {
  CHECK_THROWS_AS(bs::tcp_store({.port = 0}), chorus::error);
  bs::tcp_store_server first;
  try {
    bs::tcp_store_server second({.port = first.port()});
    FAIL("two servers on one port");
  } catch (const chorus::error& e) {
    CHECK(e.value() == chorus::errc::transport);
    CHECK_THAT(e.what(), Catch::Contains(std::to_string(first.port())));
  }
}

TEST_CASE("tcp_store server drops a connection that breaks the protocol and keeps serving") {
  log_lines log;
  bs::tcp_store_server server({.log = log.sink()});
  auto good = client(server.port());
  good.set("before", bs::to_bytes("1"));
  std::string expect_in_log;
  {
    raw_client bad(server.port());
    SECTION("garbage (an HTTP request)") {
      bad.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
      expect_in_log = "over the limit";
    }
    SECTION("a length of 2^40") {
      bad.send(bs::bytes{std::byte{0}, std::byte{0}, std::byte{0}, std::byte{0}, std::byte{0},
                         std::byte{1}, std::byte{0}, std::byte{0}});
      expect_in_log = "1099511627776 bytes is over the limit";
    }
    SECTION("an unknown command") {
      bad.hello();
      bad.send(wire::writer().u8(99).str("x").finish());
      expect_in_log = "unknown command 99";
    }
    SECTION("a request before hello") {
      bad.send(wire::writer().u8(2).str("k").str("v").finish());
      expect_in_log = "not hello";
    }
    SECTION("a hello without the magic number") {
      bad.send(wire::writer().u8(1).u32(12345).u32(wire::version).finish());
      expect_in_log = "magic";
    }
    SECTION("a frame cut short") {
      bs::bytes frame = wire::writer().u8(2).str("key").str("a value").finish();
      frame.resize(frame.size() - 4);
      bad.hello();
      bad.send(frame);
      bad.shutdown_write();
      expect_in_log = "middle of a frame";
    }
    SECTION("a field longer than its frame") {
      bad.hello();
      bad.send(wire::writer().u8(2).u32(1000).finish());  // key length 1000, no bytes
      expect_in_log = "malformed set";
    }
    SECTION("bytes left over after the fields") {
      bad.hello();
      bad.send(wire::writer().u8(3).str("key").u8(7).finish());
      expect_in_log = "malformed get";
    }
    SECTION("a key count the frame cannot hold") {
      bad.hello();
      bad.send(wire::writer().u8(4).u32(0xFFFFFFFF).finish());
      expect_in_log = "malformed wait";
    }
    SECTION("an empty frame") {
      bad.send(bs::bytes(8, std::byte{0}));
      expect_in_log = "empty frame";
    }
    SECTION("a request while a get is pending") {
      bad.hello();
      bad.send(wire::writer().u8(3).str("never").finish());
      std::this_thread::sleep_for(50ms);
      bad.send(wire::writer().u8(5).str("n").i64(1).finish());
      expect_in_log = "still pending";
    }
    CHECK(bad.closed_by_server());
  }
  CHECK(server.dropped_connections() == 1);
  CHECK(log.any_contains(expect_in_log));
  CHECK(log.any_contains("dropped the connection from 127.0.0.1:"));
  // The server still serves: the old client and a new one.
  good.set("after", bs::to_bytes("2"));
  auto fresh = client(server.port());
  CHECK(bs::as_string(fresh.get("before", soon())) == "1");
  CHECK(bs::as_string(fresh.get("after", soon())) == "2");
}

TEST_CASE("tcp_store: the frame limit is configurable and checked on both sides") {
  log_lines log;
  bs::tcp_store s({.serve = true, .max_frame_bytes = 1024, .log = log.sink()});
  s.set("small", bs::bytes(900, std::byte{1}));
  CHECK(s.get("small", soon()).size() == 900);
  try {
    s.set("big", bs::bytes(2000, std::byte{1}));
    FAIL("set of an oversized value returned");
  } catch (const chorus::error& e) {
    CHECK(e.value() == chorus::errc::invalid_argument);
    CHECK_THAT(e.what(), Catch::Contains("frame limit"));
  }
  raw_client bad(s.port());
  bad.hello();
  bad.send(wire::writer().u8(2).str("big").blob(bs::bytes(2000, std::byte{1})).finish());
  CHECK(bad.closed_by_server());
  CHECK(log.any_contains("over the limit of 1024"));
  CHECK(s.check(std::vector<std::string>{"small"}));
}

TEST_CASE("tcp_store: large values travel whole") {
  bs::tcp_store s({.serve = true});
  bs::bytes value(8 << 20);
  for (std::size_t i = 0; i < value.size(); ++i) value[i] = std::byte(i * 131 % 251);
  auto other = client(s.port());
  other.set("large", value);
  CHECK(s.get("large", soon()) == value);
}

TEST_CASE("tcp_store: clients get peer_lost, not a hang, when the serving process dies") {
  int port_pipe[2];
  REQUIRE(::pipe2(port_pipe, O_CLOEXEC) == 0);
  proc::child server_rank([&] {
    bs::tcp_store serving({.serve = true});
    serving.set("hello", bs::to_bytes("world"));
    const std::uint16_t port = serving.port();
    if (::write(port_pipe[1], &port, sizeof port) != sizeof port) return 2;
    std::this_thread::sleep_for(60s);  // killed long before
    return 0;
  });
  const std::uint16_t port = read_port(port_pipe);

  auto c = client(port);
  CHECK(bs::as_string(c.get("hello", soon())) == "world");
  std::thread killer([&] {
    std::this_thread::sleep_for(200ms);
    server_rank.kill(SIGKILL);
  });
  // The deadline is far away: only peer_lost can end this call in time for the test.
  try {
    (void)c.get("never", chorus::deadline::after(120s));
    FAIL("get returned");
  } catch (const chorus::error& e) {
    CHECK(e.value() == chorus::errc::peer_lost);
    CHECK_THAT(e.what(), Catch::Contains("127.0.0.1:" + std::to_string(port)) &&
                             Catch::Contains("get('never')"));
  }
  killer.join();
  CHECK(server_rank.exit_code() == -SIGKILL);
  // Later calls fail at once with peer_lost too.
  try {
    c.set("x", bs::to_bytes("y"));
    FAIL("set returned");
  } catch (const chorus::error& e) {
    CHECK(e.value() == chorus::errc::peer_lost);
  }
}

TEST_CASE("tcp_store: the serving store outlives its last client's calls (linger)") {
  auto serving = std::make_unique<bs::tcp_store>(bs::tcp_store_options{.serve = true});
  auto c = std::make_unique<bs::tcp_store>(client(serving->port()));
  std::atomic<bool> destroyed{false};
  std::thread finisher([&] {
    serving.reset();  // waits for `c` to disconnect
    destroyed = true;
  });
  std::this_thread::sleep_for(100ms);
  CHECK_FALSE(destroyed);
  c->set("still", bs::to_bytes("served"));  // the server is still up for the late rank
  CHECK(bs::as_string(c->get("still", soon())) == "served");
  c.reset();  // the last client leaves: the server stops
  finisher.join();
  CHECK(destroyed);
}

TEST_CASE("tcp_store: once the linger is over, waiting clients get peer_lost") {
  auto serving = std::make_unique<bs::tcp_store>(
      bs::tcp_store_options{.serve = true, .linger = std::chrono::milliseconds(100)});
  auto c = client(serving->port());
  std::thread stopper([&] {
    std::this_thread::sleep_for(100ms);
    serving.reset();  // lingers 100 ms, then stops and closes every connection
  });
  try {
    (void)c.get("never", chorus::deadline::after(120s));
    FAIL("get returned");
  } catch (const chorus::error& e) {
    CHECK(e.value() == chorus::errc::peer_lost);
  }
  stopper.join();
}

TEST_CASE("tcp_store: descriptor counts stay flat, and every descriptor is close-on-exec") {
  const int before = proc::open_fds();
  const std::vector<int> inherited = proc::fd_list();
  {
    bs::tcp_store s({.serve = true});
    auto c = client(s.port());
    for (int i = 0; i < 1000; ++i) {
      const std::string key = "fd/" + std::to_string(i % 10);
      c.set(key, bs::to_bytes(std::to_string(i)));
      (void)s.get(key, soon());
    }
    // A get that times out closes its connection; the next call opens a new one.
    for (int i = 0; i < 20; ++i) {
      CHECK_THROWS_AS(c.get("fd/missing", chorus::deadline::after(5ms)), chorus::error);
    }
    c.set("fd/after", bs::to_bytes("x"));
    for (const int fd : proc::fd_list()) {
      if (std::find(inherited.begin(), inherited.end(), fd) != inherited.end()) continue;
      const int flags = ::fcntl(fd, F_GETFD);
      INFO("descriptor " << fd);
      if (flags >= 0) CHECK((flags & FD_CLOEXEC) != 0);
    }
    const int during = proc::open_fds();
    CHECK(during <= before + 8);  // listener, eventfd, server side and client side of a few
  }
  for (int i = 0; i < 20; ++i) {
    bs::tcp_store s({.serve = true});
    s.set("k", bs::to_bytes("v"));
  }
  CHECK(proc::open_fds() == before);
}

// ---- Limits and authentication: each hostile pattern built by hand, against a server in a
// forked child where its memory is measured alone.

namespace {

/// A tcp_store_server serving in a forked child until the test ends.
struct forked_server {
  proc::child process;
  std::uint16_t port = 0;
  explicit forked_server(bs::tcp_server_options options = {}) {
    int port_pipe[2];
    REQUIRE(::pipe2(port_pipe, O_CLOEXEC) == 0);
    process = proc::child([&] {
      // Free heap memory inherited from the test process (earlier tests' large buffers)
      // would count in this child's RSS: give it back, so that only the server's counts.
      ::malloc_trim(0);
      bs::tcp_store_server server(options);
      const std::uint16_t p = server.port();
      if (::write(port_pipe[1], &p, sizeof p) != sizeof p) return 2;
      for (;;) ::pause();
    });
    port = read_port(port_pipe);
  }
  /// The child's resident set (VmRSS) in MiB.
  [[nodiscard]] double rss_mib() const {
    std::ifstream status("/proc/" + std::to_string(process.pid()) + "/status");
    std::string line;
    while (std::getline(status, line)) {
      if (line.rfind("VmRSS:", 0) == 0) return std::stod(line.substr(6)) / 1024.0;
    }
    FAIL("no VmRSS in /proc/<pid>/status");
    return 0;
  }
};

/// The message of an error reply frame (status 1), or "" for anything else.
std::string error_message(const bs::bytes& reply) {
  wire::reader r(reply);
  if (r.u8() != 1) return "";
  r.u8();
  const std::string message(r.str());
  return r.complete() ? message : "";
}

/// What a call threw ("" when it returned).
template <class F>
std::string thrown(F&& f) {
  try {
    f();
  } catch (const chorus::error& e) {
    return e.what();
  }
  return "";
}

#if defined(__SANITIZE_ADDRESS__)
constexpr bool measuring_rss = false;  // ASan's quarantine and shadow memory dwarf the store's
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
constexpr bool measuring_rss = false;
#else
constexpr bool measuring_rss = true;
#endif
#else
constexpr bool measuring_rss = true;
#endif

/// The server's resident set is under 64 MiB (the bound the limits' defaults promise).
/// Not checked under AddressSanitizer, whose allocator keeps freed memory on purpose.
void check_rss(const forked_server& server, std::string_view after) {
  const double rss = server.rss_mib();
  INFO("server RSS " << rss << " MiB " << after);
  if (measuring_rss) CHECK(rss < 64);
}

}  // namespace

TEST_CASE("tcp_store limits: pipelined gets never read hold one reply, not all of them") {
  forked_server server;
  auto good = client(server.port);
  const bs::bytes big(16 << 20, std::byte{7});  // the largest value the default limits allow
  good.set("big", big);
  raw_client greedy(server.port);
  greedy.hello();
  bs::bytes requests;
  for (int i = 0; i < 40; ++i) {
    const bs::bytes get = wire::writer().u8(3).str("big").finish();
    requests.insert(requests.end(), get.begin(), get.end());
  }
  greedy.send(requests);            // and never reads a reply
  std::this_thread::sleep_for(1s);  // time to serve them, were it not for back-pressure
  good.set("small", bs::to_bytes("still served"));
  CHECK(bs::as_string(good.get("small", soon())) == "still served");
  const bs::bytes got = good.get("big", soon());
  CHECK(got.size() == big.size());
  CHECK(std::count(got.begin(), got.end(), std::byte{7}) ==
        static_cast<std::ptrdiff_t>(big.size()));
  check_rss(server, "after 40 unread gets of a 16 MiB value");
}

TEST_CASE("tcp_store limits: parked waits are bounded per connection and in total") {
  forked_server server;
  auto good = client(server.port);
  good.set("present", bs::to_bytes("1"));
  // A wait for 15000 keys that never appear pins about 3 MB: under one connection's 4 MiB.
  const auto wait_frame = [](int conn, int keys) {
    wire::writer w;
    w.u8(4).u32(static_cast<std::uint32_t>(keys));
    for (int i = 0; i < keys; ++i) w.str("w" + std::to_string(conn) + "-" + std::to_string(i));
    return w.finish();
  };
  std::vector<std::unique_ptr<raw_client>> waiters;
  for (int conn = 0; conn < 20; ++conn) {
    waiters.push_back(std::make_unique<raw_client>(server.port));
    waiters.back()->hello();
    waiters.back()->send(wait_frame(conn, 15000));
  }
  // About 11 such waits fit in the default 32 MiB; the 20th cannot, and is told why
  // (the parked ones get no reply).
  CHECK_THAT(error_message(waiters.back()->read_frame()),
             Catch::Contains("CHORUS_STORE_MAX_TOTAL_BYTES"));
  raw_client huge(server.port);
  huge.hello();
  huge.send(wait_frame(99, 200000));
  CHECK_THAT(error_message(huge.read_frame()),
             Catch::Contains("CHORUS_STORE_MAX_CONNECTION_BYTES"));
  // A wait frame of 60 MB (12 million one-letter keys; the old server held ~7 times that
  // while parsing it) is skipped as it arrives and answered with an error.
  raw_client flood(server.port);
  flood.hello();
  wire::writer w;
  w.u8(4).u32(12'000'000);
  for (int i = 0; i < 12'000'000; ++i) w.str("a");
  const bs::bytes frame = w.finish();
  std::thread sender([&] {  // no Catch2 assertion off the main thread
    for (std::size_t done = 0; done < frame.size();) {
      const ssize_t n = ::send(flood.fd(), frame.data() + done, frame.size() - done, MSG_NOSIGNAL);
      if (n <= 0) return;
      done += static_cast<std::size_t>(n);
    }
  });
  CHECK_THAT(error_message(flood.read_frame()), Catch::Contains("larger than the limits allow"));
  sender.join();
  // Sets are not slowed by the parked keys (they look only at waiters of their own key),
  // and the good client is served throughout.
  for (int i = 0; i < 200; ++i) good.set("k" + std::to_string(i), bs::to_bytes("v"));
  CHECK(bs::as_string(good.get("k199", soon())) == "v");
  CHECK(good.check(std::vector<std::string>{"present"}));
  check_rss(server, "with the parked waits");
}

TEST_CASE("tcp_store limits: one client cannot store beyond the total") {
  forked_server server;
  auto good = client(server.port);
  good.set("mine", bs::to_bytes("kept"));
  auto hog = client(server.port);
  const bs::bytes mib(1 << 20, std::byte{1});
  std::string refusal;
  for (int i = 0; i < 64 && refusal.empty(); ++i) {
    refusal = thrown([&] { hog.set("hog/" + std::to_string(i), mib); });
  }
  CHECK_THAT(refusal, Catch::Contains("CHORUS_STORE_MAX_TOTAL_BYTES"));
  CHECK_THAT(refusal, Catch::Contains("33554432"));
  // The hog's connection still works (an error reply, not a drop), and so does the good one.
  CHECK(hog.check(std::vector<std::string>{"hog/0"}));
  CHECK(bs::as_string(good.get("mine", soon())) == "kept");
  check_rss(server, "with the store full");
}

TEST_CASE("tcp_store limits: keys and values over their limits get an error, not a drop") {
  log_lines log;
  bs::tcp_store s(
      {.serve = true, .log = log.sink(), .limits = {.max_key_bytes = 64, .max_value_bytes = 1000}});
  CHECK_THAT(thrown([&] { s.set(std::string(65, 'k'), bs::to_bytes("v")); }),
             Catch::Contains("CHORUS_STORE_MAX_KEY_BYTES"));
  CHECK_THAT(thrown([&] { s.set("v", bs::bytes(1001)); }),
             Catch::Contains("CHORUS_STORE_MAX_VALUE_BYTES"));
  // Far over every limit: the body is skipped as it arrives, then the error is answered.
  CHECK_THAT(thrown([&] { s.set("v", bs::bytes(10 << 20)); }),
             Catch::Contains("CHORUS_STORE_MAX_VALUE_BYTES"));
  CHECK_THAT(thrown([&] { s.compare_set("v", {}, bs::bytes(1001)); }),
             Catch::Contains("CHORUS_STORE_MAX_VALUE_BYTES"));
  CHECK_FALSE(s.check(std::vector<std::string>{"v"}));
  s.set("v", bs::bytes(1000));
  CHECK(s.get("v", soon()).size() == 1000);
  // compare_set carries two values: both at the limit fit.
  const bs::bytes other(1000, std::byte{1});
  CHECK(s.compare_set("v", bs::bytes(1000), other) == other);
  CHECK(s.server()->dropped_connections() == 0);
}

TEST_CASE(
    "tcp_store limits: connections over the limit are refused; clients already in are served") {
  log_lines log;
  bs::tcp_store_server server({.log = log.sink(), .limits = {.max_connections = 4}});
  auto good = client(server.port());
  good.set("before", bs::to_bytes("1"));
  std::vector<std::unique_ptr<raw_client>> hogs;
  for (int i = 0; i < 3; ++i) {
    hogs.push_back(std::make_unique<raw_client>(server.port()));
    hogs.back()->hello();
  }
  {
    raw_client extra(server.port());
    CHECK_THAT(error_message(extra.read_frame()), Catch::Contains("CHORUS_STORE_MAX_CONNECTIONS"));
    CHECK(extra.closed_by_server());
  }
  CHECK_THAT(thrown([&] { client(server.port()); }), Catch::Contains("at most 4 connections"));
  CHECK(log.any_contains("refused the connection"));
  good.set("during", bs::to_bytes("2"));
  CHECK(bs::as_string(good.get("before", soon())) == "1");
  hogs.clear();
  // Once the hogs leave, new clients get in (hang guard: the client's own timeout).
  std::optional<bs::tcp_store> later;
  for (int attempt = 0; attempt < 100 && !later; ++attempt) {
    try {
      later.emplace(client(server.port()));
    } catch (const chorus::error&) {
      std::this_thread::sleep_for(50ms);  // the server has not seen the hogs close yet
    }
  }
  REQUIRE(later);
  CHECK(bs::as_string(later->get("during", soon())) == "2");
}

TEST_CASE("tcp_store limits: idle connections and silent ones are closed; clients reconnect") {
  log_lines log;
  bs::tcp_store_server server(
      {.log = log.sink(), .limits = {.idle_timeout = 200ms, .handshake_timeout = 200ms}});
  raw_client idle(server.port());
  idle.hello();
  raw_client silent(server.port());
  CHECK(idle.closed_by_server());
  CHECK(silent.closed_by_server());
  CHECK(log.any_contains("did not say hello"));
  auto good = client(server.port());
  good.set("a", bs::to_bytes("1"));
  std::this_thread::sleep_for(600ms);  // its pooled connection is closed meanwhile
  CHECK(bs::as_string(good.get("a", soon())) == "1");
  // A parked get is not idle: it gets its answer however long it waits.
  std::thread setter([&] {
    std::this_thread::sleep_for(600ms);
    client(server.port()).set("late", bs::to_bytes("2"));
  });
  CHECK(bs::as_string(good.get("late", soon())) == "2");
  setter.join();
}

TEST_CASE("tcp_store secret: clients without it get nothing, not even the job id") {
  const std::string secret = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
  log_lines log;
  bs::tcp_store owner({.serve = true, .log = log.sink(), .secret = secret});
  owner.set("chorus/job_id", bs::to_bytes("the-job"));
  // A tcp_store without the secret is told what is missing.
  CHECK_THAT(thrown([&] { client(owner.port()); }),
             Catch::Contains("requires the job secret") && Catch::Contains("CHORUS_JOB_SECRET"));
  // A hand-made client that skips the proof is dropped before any request is served.
  raw_client stranger(owner.port());
  stranger.hello();
  stranger.send(wire::writer().u8(3).str("chorus/job_id").finish());
  const bs::bytes reply = stranger.read_frame();
  CHECK(bs::as_string(reply).find("the-job") == std::string::npos);
  CHECK(stranger.closed_by_server());
  CHECK(log.any_contains("before proving the job secret"));
  // A rank with the secret is served.
  bs::tcp_store rank({.port = owner.port(), .timeout = 20s, .secret = secret});
  CHECK(bs::as_string(rank.get("chorus/job_id", soon())) == "the-job");
  // A rank with a secret refuses a store that asks for none (not the job's store).
  bs::tcp_store_server open_server;
  CHECK_THAT(thrown([&] {
               bs::tcp_store({.port = open_server.port(), .timeout = 20s, .secret = secret});
             }),
             Catch::Contains("does not ask for one"));
}

TEST_CASE("tcp_store secret: find_secret is asked again while missing or refused, then kept") {
  log_lines log;
  const std::string secret(64, 'e');
  bs::tcp_store_server server({.log = log.sink(), .secret = secret});
  // Missing twice, then an earlier job's (refused), then the right one.
  std::vector<std::optional<std::string>> answers{std::nullopt, std::nullopt, std::string(64, 'f'),
                                                  secret};
  std::size_t asked = 0;
  bs::tcp_store rank({.port = server.port(),
                      .timeout = 20s,
                      .find_secret = [&]() -> std::optional<std::string> {
                        return answers[std::min(asked++, answers.size() - 1)];
                      },
                      .secret_origin = "the test's answers"});
  CHECK(asked == 4);
  CHECK(server.refused_connections() == 1);
  rank.set("k", bs::to_bytes("v"));
  // A second connection (two calls at once) uses the secret that was accepted.
  std::thread blocked([&] { CHECK(bs::as_string(rank.get("later", soon())) == "w"); });
  std::this_thread::sleep_for(100ms);
  rank.set("later", bs::to_bytes("w"));
  blocked.join();
  CHECK(asked == 4);
  // Never found: a timeout that names where it looked and what to do.
  const std::string message = thrown([&] {
    bs::tcp_store({.port = server.port(),
                   .timeout = 1s,
                   .find_secret = []() -> std::optional<std::string> { return std::nullopt; },
                   .secret_origin = "the file /nowhere/x.secret"});
  });
  CHECK_THAT(message, Catch::Contains("/nowhere/x.secret did not exist") &&
                          Catch::Contains("CHORUS_SECRET_DIR") &&
                          Catch::Contains("CHORUS_JOB_SECRET"));
}

TEST_CASE("tcp_store secret: a wrong secret is refused with a clear error") {
  log_lines log;
  bs::tcp_store_server server({.log = log.sink(), .secret = std::string(64, 'a')});
  const std::string message = thrown([&] {
    bs::tcp_store({.port = server.port(), .timeout = 20s, .secret = std::string(64, 'b')});
  });
  CHECK_THAT(message,
             Catch::Contains("authentication failed") && Catch::Contains("CHORUS_JOB_SECRET"));
  CHECK(server.refused_connections() == 1);
  CHECK(log.any_contains("does not know the job secret"));
  CHECK_THAT(thrown([&] { bs::tcp_store({.port = server.port(), .secret = "short"}); }),
             Catch::Contains("at least 16"));
}

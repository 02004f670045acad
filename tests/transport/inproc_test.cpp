// inproc_transport against the transport contract: FIFO matching per (source, tag), eager
// and rendezvous paths, size mismatch, deadlines, abort, a peer that leaves, cancel.
#include <chorus/transport/inproc.hpp>

#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <cstring>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using chorus::inproc_transport;

namespace {
std::span<std::byte> bytes(std::vector<int>& v) { return std::as_writable_bytes(std::span(v)); }
chorus::deadline soon() { return chorus::deadline::after(5s); }
}  // namespace

TEST_CASE("inproc satisfies the transport concept") {
  STATIC_REQUIRE(chorus::transport<inproc_transport>);
}

TEST_CASE("messages with one (source, tag) are matched in order; tags are independent") {
  auto g = inproc_transport::create_group(2);
  inproc_transport a(g, 0), b(g, 1);
  std::vector<int> m1{1}, m2{2}, m3{3};
  auto s1 = a.isend(1, 5, bytes(m1));
  auto s2 = a.isend(1, 6, bytes(m2));
  auto s3 = a.isend(1, 5, bytes(m3));
  std::vector<int> r1(1), r2(1), r3(1);
  auto q2 = b.irecv(0, 6, bytes(r2));  // arrived second, matched first: different tag
  auto q1 = b.irecv(0, 5, bytes(r1));
  auto q3 = b.irecv(0, 5, bytes(r3));
  for (auto* q : {&q1, &q2, &q3}) b.wait(*q, soon());
  for (auto* s : {&s1, &s2, &s3}) a.wait(*s, soon());
  CHECK(r1[0] == 1);
  CHECK(r2[0] == 2);
  CHECK(r3[0] == 3);
}

TEST_CASE("small sends complete at once (eager); large ones wait for the receiver") {
  auto g = inproc_transport::create_group(2);
  inproc_transport a(g, 0), b(g, 1);
  std::vector<int> small(16, 7), large(1 << 20, 9);
  auto s_small = a.isend(1, 1, bytes(small));
  CHECK(a.test(s_small));
  small.assign(16, 0);  // the eager copy was taken: changing the buffer now is safe
  auto s_large = a.isend(1, 2, bytes(large));
  CHECK_FALSE(a.test(s_large));
  std::vector<int> r_small(16), r_large(1 << 20);
  auto q_large = b.irecv(0, 2, bytes(r_large));
  auto q_small = b.irecv(0, 1, bytes(r_small));
  b.wait(q_large, soon());
  b.wait(q_small, soon());
  a.wait(s_large, soon());
  CHECK(r_small[0] == 7);
  CHECK(r_large.back() == 9);
}

TEST_CASE("a receive of the wrong size fails with mismatch naming both ranks") {
  auto g = inproc_transport::create_group(2);
  inproc_transport a(g, 0), b(g, 1);
  std::vector<int> m(4), r(5);
  auto s = a.isend(1, 3, bytes(m));
  auto q = b.irecv(0, 3, bytes(r));
  try {
    b.wait(q, soon());
    FAIL("no error");
  } catch (const chorus::error& e) {
    CHECK(e.code() == chorus::errc::mismatch);
    CHECK_THAT(std::string(e.what()), Catch::Contains("receive of 20 bytes from rank 0") &&
                                          Catch::Contains("sent 16 bytes"));
  }
}

TEST_CASE("a wait past its deadline throws timeout, and cancel withdraws the receive") {
  auto g = inproc_transport::create_group(2);
  inproc_transport a(g, 0), b(g, 1);
  std::vector<int> r(1);
  auto q = b.irecv(0, 1, bytes(r));
  const auto start = chorus::clock::now();
  REQUIRE_THROWS_MATCHES(b.wait(q, chorus::deadline::after(50ms)), chorus::error,
                         Catch::Predicate<chorus::error>([](const chorus::error& e) {
                           return e.code() == chorus::errc::timeout;
                         }));
  CHECK(chorus::clock::now() - start >= 50ms);
  b.cancel(q);
  // the withdrawn receive does not swallow the next message
  std::vector<int> m{42}, r2(1);
  auto s = a.isend(1, 1, bytes(m));
  auto q2 = b.irecv(0, 1, bytes(r2));
  b.wait(q2, soon());
  CHECK(r2[0] == 42);
  CHECK(r[0] == 0);
}

TEST_CASE("abort from another thread wakes a waiting rank with the reason") {
  auto g = inproc_transport::create_group(2);
  inproc_transport b(g, 1);
  std::vector<int> r(1);
  auto q = b.irecv(0, 1, bytes(r));
  std::thread t([g] {
    std::this_thread::sleep_for(20ms);
    inproc_transport(g, 0).abort("disk full");
  });
  try {
    b.wait(q, chorus::deadline::after(30s));
    FAIL("no error");
  } catch (const chorus::error& e) {
    CHECK(e.code() == chorus::errc::aborted);
    CHECK_THAT(std::string(e.what()), Catch::Contains("rank 0 aborted the group: disk full"));
  }
  t.join();
  // every later operation fails at once
  CHECK_THROWS_AS(b.isend(0, 1, bytes(r)), chorus::error);
}

TEST_CASE("a peer that has left makes waits fail with peer_lost, after its last message") {
  auto g = inproc_transport::create_group(2);
  inproc_transport a(g, 0), b(g, 1);
  std::vector<int> m{5}, r(1), r2(1);
  auto s = a.isend(1, 1, bytes(m));  // sent before leaving: still delivered
  a.mark_exited();
  auto q = b.irecv(0, 1, bytes(r));
  b.wait(q, soon());
  CHECK(r[0] == 5);
  auto q2 = b.irecv(0, 1, bytes(r2));
  try {
    b.wait(q2, chorus::deadline::after(30s));
    FAIL("no error");
  } catch (const chorus::error& e) {
    CHECK(e.code() == chorus::errc::peer_lost);
  }
}

TEST_CASE("cancel of a large send withdraws it; invalid peers are rejected") {
  auto g = inproc_transport::create_group(3);
  inproc_transport a(g, 0);
  std::vector<int> large(1 << 18);
  auto s = a.isend(2, 1, bytes(large));
  a.cancel(s);
  inproc_transport c(g, 2);
  std::vector<int> r(1 << 18);
  auto q = c.irecv(0, 1, bytes(r));
  CHECK_FALSE(c.test(q));  // the cancelled send is gone
  c.cancel(q);
  CHECK_THROWS_AS(a.isend(0, 1, bytes(large)), chorus::error);
  CHECK_THROWS_AS(a.irecv(3, 1, bytes(r)), chorus::error);
  CHECK_THROWS_AS(inproc_transport::create_group(0), chorus::error);
  CHECK_THROWS_AS(inproc_transport(g, 3), chorus::error);
}

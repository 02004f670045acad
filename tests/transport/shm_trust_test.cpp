// The shared-memory transport's trust boundary, from the side of a hostile or broken peer.
// The test plays rank 1 of a 2-rank job itself: it answers rank 0's start-up exchange with
// segments it made by hand, then writes slots into rank 0's inbox as a peer would.
//   - A segment announced by a peer is used only if it is this user's, mode 0600, of the
//     exact size, and (an inbox) carries the announced pid and the job's geometry.
//   - A slot that does not continue the message streaming in -- wrong offset, size, total,
//     an unasked-for single-copy descriptor, a sequence number ahead of the ring -- is refused
//     before any copy; correct slots written the same way are delivered.
//   - A rank that aborts because a peer did passes the first cause on.
#include <catch2/catch.hpp>

#include <chorus/transport/shm.hpp>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <functional>
#include <new>
#include <string>
#include <vector>

namespace shm = chorus::detail::shm;

namespace {

int counter = 0;

/// A shared-memory object made by the test, unlinked and unmapped at the end.
struct segment {
  std::string name;
  std::byte* base = nullptr;
  std::size_t bytes = 0;

  segment(std::size_t size, mode_t mode) : bytes(size) {
    name = "/chorus-trusttest-" + std::to_string(::getpid()) + "-" + std::to_string(++counter);
    const int fd = ::shm_open(name.c_str(), O_CREAT | O_EXCL | O_RDWR, mode);
    REQUIRE(fd >= 0);
    REQUIRE(::fchmod(fd, mode) == 0);  // past the umask
    REQUIRE(::ftruncate(fd, static_cast<off_t>(size)) == 0);
    void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    ::close(fd);
    REQUIRE(p != MAP_FAILED);
    base = static_cast<std::byte*>(p);
  }
  segment(const segment&) = delete;
  segment& operator=(const segment&) = delete;
  ~segment() {
    ::munmap(base, bytes);
    ::shm_unlink(name.c_str());
  }

  /// Writes the inbox header a rank writes before announcing its inbox.
  void make_inbox(const shm::geometry& g, int pid) {
    auto* h = new (base) shm::inbox_header{};
    h->pid = pid;
    h->ranks = static_cast<std::uint32_t>(g.ranks);
    h->slot_bytes = g.slot_bytes;
    h->slots = static_cast<std::uint32_t>(g.slots);
    for (std::size_t s = 0; s < g.ranks; ++s) {
      new (base + g.header_bytes() + s * g.channel_bytes()) shm::channel_header{};
    }
  }
};

/// Rank 0's view of a 2-rank job whose rank 1 is the test. `peer_name` is what rank 1
/// announces; rank 0's own inbox is mapped here too (`rank0`), so that the test can write
/// into the channel from rank 1 as rank 1 would.
struct job {
  shm::geometry g = shm::geometry::for_ranks(2);
  std::byte* rank0 = nullptr;
  std::unique_ptr<chorus::shm_transport> t;

  int round = 0;

  explicit job(const std::string& peer_name) {
    chorus::blob_exchange exchange = [this, peer_name](const std::string& mine) {
      if (round++ == 0) {
        const std::string own = mine.substr(0, mine.find(' '));
        const int fd = ::shm_open(own.c_str(), O_RDWR, 0600);
        REQUIRE(fd >= 0);
        void* p = ::mmap(nullptr, g.segment_bytes(), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        ::close(fd);
        REQUIRE(p != MAP_FAILED);
        rank0 = static_cast<std::byte*>(p);
        return std::vector<std::string>{mine, peer_name + " " + std::to_string(::getpid()) + " 0"};
      }
      return std::vector<std::string>{mine, "00"};
    };
    try {
      t = std::make_unique<chorus::shm_transport>(0, 2, "trusttest", exchange);
    } catch (...) {
      unmap();
      throw;
    }
  }
  job(const job&) = delete;
  job& operator=(const job&) = delete;
  ~job() {
    t.reset();
    unmap();
  }
  void unmap() {
    if (rank0 != nullptr) ::munmap(rank0, g.segment_bytes());
    rank0 = nullptr;
  }

  shm::channel_header* from_rank1() const {
    return reinterpret_cast<shm::channel_header*>(rank0 + g.header_bytes() + g.channel_bytes());
  }
  std::byte* slot_at(std::uint64_t index) const {
    return reinterpret_cast<std::byte*>(from_rank1()) + sizeof(shm::channel_header) +
           (index % g.slots) * g.slot_bytes;
  }
  /// Writes slot `index` of the channel from rank 1 (not published yet).
  void write_slot(std::uint64_t index, const shm::slot_header& h, std::byte fill = std::byte{7}) {
    std::byte* s = slot_at(index);
    std::memcpy(s, &h, sizeof h);
    const std::size_t n = std::min<std::size_t>(h.bytes, g.payload_bytes());
    std::memset(s + shm::payload_offset(h.bytes), static_cast<int>(fill), n);
  }
  /// Publishes the slots written before index `end` as the producer does: slot i's
  /// sequence number becomes i + 1.
  void publish(std::uint64_t end) {
    for (; published < end; ++published) set_sequence(published, published + 1);
  }
  void set_sequence(std::uint64_t index, std::uint64_t sequence) const {
    std::atomic_ref<std::uint64_t>(reinterpret_cast<shm::slot_header*>(slot_at(index))->sequence)
        .store(sequence, std::memory_order_release);
  }
  std::uint64_t published = 0;

  /// Posts a receive of `bytes` from rank 1 and tests it once (which drains the channel).
  bool receive(std::vector<std::byte>& into) {
    auto req = t->irecv(1, 5, into);
    const bool done = t->test(req);
    if (!done) t->cancel(req);
    return done;
  }
};

shm::slot_header slot(std::uint64_t total, std::uint64_t offset, std::uint64_t bytes) {
  shm::slot_header h{};
  h.tag = 5;
  h.total_bytes = total;
  h.offset = offset;
  h.bytes = static_cast<std::uint32_t>(bytes);
  return h;
}

std::string refusal_of(const std::string& peer_name) {
  try {
    job j(peer_name);
  } catch (const chorus::error& e) {
    CHECK(e.value() == chorus::errc::transport);
    return e.what();
  }
  return "(no error)";
}

}  // namespace

TEST_CASE("shm trust: a peer's segment is used only if it is what a rank of this job makes") {
  const shm::geometry g = shm::geometry::for_ranks(2);
  using Catch::Contains;
  SECTION("readable by others") {
    segment s(g.segment_bytes(), 0644);
    s.make_inbox(g, ::getpid());
    CHECK_THAT(refusal_of(s.name), Contains("has mode 0644 (a rank makes its segments 0600)") &&
                                       Contains("that rank 1 announced"));
  }
  SECTION("shorter than an inbox (the first access past its end would be SIGBUS)") {
    segment s(4096, 0600);
    CHECK_THAT(refusal_of(s.name),
               Contains("has 4096 bytes, not the " + std::to_string(g.segment_bytes())));
  }
  SECTION("another user's") {
    if (::geteuid() != 0) {
      WARN("skipped: needs root to give a segment to another user");
      return;
    }
    segment s(g.segment_bytes(), 0600);
    s.make_inbox(g, ::getpid());
    const int fd = ::shm_open(s.name.c_str(), O_RDWR, 0600);
    REQUIRE(fd >= 0);
    REQUIRE(::fchown(fd, 65534, 65534) == 0);
    ::close(fd);
    CHECK_THAT(refusal_of(s.name), Contains("belongs to uid 65534"));
  }
  SECTION("the right kind of segment, but not rank 1's inbox") {
    segment s(g.segment_bytes(), 0600);
    s.make_inbox(g, ::getpid() + 1);  // another process's
    CHECK_THAT(refusal_of(s.name),
               Contains("the inbox of rank 1 says pid") && Contains("it is not that rank's inbox"));
  }
  SECTION("a name that does not exist") {
    CHECK_THAT(refusal_of("/chorus-trusttest-none"), Contains("shm_open(/chorus-trusttest-none)"));
  }
}

TEST_CASE("shm trust: slots that leave the protocol are refused before any copy") {
  const shm::geometry g = shm::geometry::for_ranks(2);
  segment peer(g.segment_bytes(), 0600);
  peer.make_inbox(g, ::getpid());
  job j(peer.name);
  const std::size_t payload = g.payload_bytes();
  std::vector<std::byte> into(2 * payload);

  SECTION("correct slots written the same way arrive") {
    j.write_slot(0, slot(into.size(), 0, payload), std::byte{1});
    j.write_slot(1, slot(into.size(), payload, payload), std::byte{2});
    j.publish(2);
    REQUIRE(j.receive(into));
    CHECK(into.front() == std::byte{1});
    CHECK(into[payload - 1] == std::byte{1});
    CHECK(into[payload] == std::byte{2});
    CHECK(into.back() == std::byte{2});
    return;
  }
  std::string field;
  // A correct first slot is zeros, like `into`: only a corrupt slot's sevens could show.
  SECTION("an offset that skips part of the message") {
    j.write_slot(0, slot(into.size(), 0, payload), std::byte{0});
    j.write_slot(1, slot(into.size(), payload + 64, payload - 64));
    j.publish(2);
    field = "offset = " + std::to_string(payload + 64);
  }
  SECTION("more bytes than the slot holds") {
    j.write_slot(0, slot(into.size(), 0, payload + 1));
    j.publish(1);
    field = "bytes = " + std::to_string(payload + 1);
  }
  SECTION("more bytes than the message has left") {
    j.write_slot(0, slot(100, 0, 200));
    j.publish(1);
    field = "bytes = 200";
  }
  SECTION("an empty slot in a message that is not empty") {
    j.write_slot(0, slot(100, 0, 0));
    j.publish(1);
    field = "bytes = 0";
  }
  SECTION("a message whose total changes midway") {
    j.write_slot(0, slot(into.size(), 0, payload), std::byte{0});
    j.write_slot(1, slot(into.size() + 1, payload, payload));
    j.publish(2);
    field = "total_bytes = " + std::to_string(into.size() + 1);
  }
  SECTION("a single-copy descriptor this rank never offered to read") {
    auto h = slot(into.size(), 0, 0);
    h.single_copy = 1;
    h.address = 4096;
    j.write_slot(0, h);
    j.publish(1);
    field = "single_copy = 1";
  }
  SECTION("a sequence number ahead of the ring") {
    j.write_slot(0, slot(100, 0, 100));
    j.set_sequence(0, g.slots + 1);  // slot 0's number on the next lap
    field = "sequence = " + std::to_string(g.slots + 1);
  }
  std::vector<std::byte> before = into;
  try {
    j.receive(into);
    FAIL("the corrupt slot was accepted");
  } catch (const chorus::error& e) {
    CHECK(e.value() == chorus::errc::transport);
    CHECK_THAT(e.what(),
               Catch::Contains("a corrupt slot in the channel from rank 1 (" + field + ")") &&
                   Catch::Contains("nothing was copied"));
  }
  CHECK(into == before);  // nothing landed in the receive
}

TEST_CASE("shm trust: a rank that fails because a peer aborted passes the first cause on") {
  const shm::geometry g = shm::geometry::for_ranks(2);
  segment peer(g.segment_bytes(), 0600);
  peer.make_inbox(g, ::getpid());
  job j(peer.name);
  // Rank 1 (the test) aborts the job: its record has reached rank 0's inbox, not yet its own
  // (a rank writes the inboxes in rank order).
  auto* own = reinterpret_cast<shm::inbox_header*>(j.rank0);
  REQUIRE(own->abort.record(1, chorus::errc::peer_lost, "rank 1: all_reduce #3: rank 7 died"));
  // Rank 0 fails because of it and aborts with its own account, as a communicator does.
  j.t->abort(chorus::errc::aborted,
             "rank 0: all_reduce #3: rank 1 aborted the group: rank 1: all_reduce #3: ...");
  // Rank 1's inbox gets the first cause, not rank 0's account of it: at 8 ranks such
  // accounts nested one in another until the record's size cut off the dead rank's name.
  const auto* theirs = reinterpret_cast<const shm::inbox_header*>(peer.base);
  REQUIRE(theirs->abort.raised());
  CHECK(theirs->abort.rank == 1);
  CHECK(theirs->abort.error_code() == chorus::errc::peer_lost);
  CHECK(theirs->abort.text() == "rank 1: all_reduce #3: rank 7 died");
}

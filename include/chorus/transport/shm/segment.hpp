#pragma once
/// \file
/// The shared memory of `chorus::shm_transport`: the layout of a rank's inbox segment (its
/// header, one channel per peer, the slots of a channel), and the segments themselves --
/// created 0600 under unguessable names, checked before they are mapped, unmapped when
/// dropped.
///
/// An inbox is a header (doorbell, abort record, pid, geometry) followed by one channel per
/// sender. A channel is a single-producer/single-consumer ring of `geometry::slots` slots of
/// `geometry::slot_bytes` bytes; each slot starts with a `slot_header` whose sequence number,
/// written last, says that the slot is ready. Every rank computes the same geometry from the
/// job's size, and checks what a peer's inbox says against it.
///
/// A small message costs the receiver one cache line: it polls the sequence number of the
/// next slot, which shares a line with the rest of the header and with a payload of up to
/// `inline_payload_bytes` -- where a ring with a shared head index, slots and a tail index
/// moves three or four lines from core to core per message. The producer reads the
/// consumer's tail only when its last view of it says the ring is full.
#include <chorus/bootstrap/posix.hpp>
#include <chorus/core/error.hpp>
#include <chorus/transport/kit/abort_record.hpp>

#include <atomic>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <random>
#include <string>
#include <string_view>
#include <utility>

#include <fcntl.h>
#include <linux/futex.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace chorus::inline v0::detail::shm {

inline constexpr std::size_t cache_line = 64;

/// Sleeps while `*word == expected`, for at most `timeout`; a FUTEX_WAKE on `word` ends it.
inline int futex_wait(std::atomic<std::uint32_t>* word, std::uint32_t expected,
                      std::chrono::nanoseconds timeout) noexcept {
  timespec ts{};
  ts.tv_sec = static_cast<time_t>(timeout.count() / 1'000'000'000);
  ts.tv_nsec = static_cast<long>(timeout.count() % 1'000'000'000);
  return static_cast<int>(::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(word), FUTEX_WAIT,
                                    expected, &ts, nullptr, 0));
}

inline void futex_wake_all(std::atomic<std::uint32_t>* word) noexcept {
  ::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(word), FUTEX_WAKE, INT32_MAX, nullptr,
            nullptr, 0);
}

/// The header at the start of every rank's inbox segment.
struct inbox_header {
  /// Incremented (seq_cst) by whoever changes something this rank may wait for; the futex
  /// word this rank sleeps on.
  alignas(cache_line) std::atomic<std::uint32_t> doorbell;
  /// How many of this rank's threads are (about to be) asleep: peers only pay for
  /// FUTEX_WAKE when it is not zero.
  std::atomic<std::uint32_t> sleeping;
  /// 1 + the rank this rank's sleeping wait is for; 0 while it is not waiting. Peers read
  /// it to explain a timeout (`endpoint::holdup`); a diagnosis, never used for matching.
  std::atomic<std::int32_t> waiting_for;
  /// The group's abort record as this rank sees it (any rank writes it; zero bytes: none).
  alignas(cache_line) kit::abort_record<480> abort;
  alignas(cache_line) std::int32_t pid;
  std::uint32_t ranks;
  std::uint64_t slot_bytes;
  std::uint32_t slots;
};

/// One direction of one pair: the producer fills slot `i` (counting slots forever, 64-bit:
/// no wrap in practice) and publishes it by its sequence number; the consumer reads the
/// slots in order and advances `tail` past those it is done with.
struct channel_header {
  alignas(cache_line) std::atomic<std::uint64_t> tail;  ///< release-stored by the consumer
};

/// The first bytes of every slot.
struct slot_header {
  /// 1 + the slot's index, release-stored by the producer once the rest of the slot is
  /// written: the slot is ready when this is 1 + the consumer's `tail`. Anything but that
  /// or an earlier lap's number is a corrupt slot.
  std::uint64_t sequence;
  std::uint64_t tag;
  std::uint64_t total_bytes;  ///< the whole message (same in every slot of the message)
  std::uint64_t offset;       ///< where this slot's payload starts within the message
  std::uint64_t address;      ///< single-copy descriptor: the message in the sender's memory
  std::uint32_t bytes;        ///< payload bytes in this slot
  std::uint32_t single_copy;  ///< 1: no payload; the receiver reads `address` itself
};

/// A slot's header takes its first cache line; the payload starts at the second (aligned
/// for the copies), except a payload of up to `inline_payload_bytes`, which fills the rest
/// of the first line: a small message is one line.
inline constexpr std::size_t slot_header_bytes = 64;
inline constexpr std::size_t inline_payload_bytes = slot_header_bytes - sizeof(slot_header);
static_assert(sizeof(slot_header) == 48 && inline_payload_bytes == 16);

/// Where the payload of a slot carrying `bytes` bytes starts, from the slot's start.
[[nodiscard]] constexpr std::size_t payload_offset(std::uint64_t bytes) noexcept {
  return bytes <= inline_payload_bytes ? sizeof(slot_header) : slot_header_bytes;
}

/// Geometry of one inbox, identical on every rank.
struct geometry {
  std::size_t ranks = 1;
  std::size_t slots = 8;
  std::size_t slot_bytes = 64 * 1024;

  [[nodiscard]] std::size_t payload_bytes() const noexcept {
    return slot_bytes - slot_header_bytes;
  }
  [[nodiscard]] std::size_t channel_bytes() const noexcept {
    return sizeof(channel_header) + slots * slot_bytes;
  }
  [[nodiscard]] std::size_t header_bytes() const noexcept {
    return (sizeof(inbox_header) + cache_line - 1) / cache_line * cache_line;
  }
  [[nodiscard]] std::size_t segment_bytes() const noexcept {
    return header_bytes() + ranks * channel_bytes();
  }

  /// The channel of the inbox at `inbox` that carries messages from rank `sender`.
  [[nodiscard]] channel_header* channel(std::byte* inbox, int sender) const noexcept {
    return reinterpret_cast<channel_header*>(inbox + header_bytes() +
                                             static_cast<std::size_t>(sender) * channel_bytes());
  }
  /// Slot `index` of channel `c` (indices count forever; the ring wraps them).
  [[nodiscard]] std::byte* slot(channel_header* c, std::uint64_t index) const noexcept {
    return reinterpret_cast<std::byte*>(c) + sizeof(channel_header) + (index % slots) * slot_bytes;
  }

  /// 8 slots per channel; slots of 64 KiB, shrunk for many ranks so that an inbox stays
  /// near 16 MiB (P inboxes of P channels each: memory grows with P^2).
  static geometry for_ranks(std::size_t ranks) noexcept {
    geometry g;
    g.ranks = ranks;
    const std::size_t budget = std::size_t{16} << 20;
    std::size_t slot = budget / (ranks * g.slots);
    slot = slot > (std::size_t{64} << 10) ? (std::size_t{64} << 10) : slot;
    slot = slot < std::size_t{4096} ? std::size_t{4096} : slot;
    g.slot_bytes = slot / cache_line * cache_line;
    return g;
  }
};

/// A mapped segment; unmapped on destruction.
class mapping {
 public:
  mapping() = default;
  mapping(void* base, std::size_t bytes) noexcept : base_(base), bytes_(bytes) {}
  mapping(mapping&& o) noexcept : base_(std::exchange(o.base_, nullptr)), bytes_(o.bytes_) {}
  mapping& operator=(mapping&& o) noexcept {
    if (this != &o) {
      reset();
      base_ = std::exchange(o.base_, nullptr);
      bytes_ = o.bytes_;
    }
    return *this;
  }
  ~mapping() { reset(); }
  [[nodiscard]] std::byte* data() const noexcept { return static_cast<std::byte*>(base_); }

 private:
  void reset() noexcept {
    if (base_ != nullptr) ::munmap(base_, bytes_);
    base_ = nullptr;
  }
  void* base_ = nullptr;
  std::size_t bytes_ = 0;
};

[[noreturn]] inline void throw_errno(int rank, const std::string& what) {
  throw error(errc::transport, "chorus::shm_transport: rank " + std::to_string(rank) + ": " + what +
                                   ": " + std::strerror(errno));
}

/// Maps `bytes` bytes of the shared-memory object open on `f` (named `name` in errors).
inline mapping map_segment(int f, std::size_t bytes, const std::string& name) {
  void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, f, 0);
  if (p == MAP_FAILED) {
    throw error(errc::transport, "chorus::shm_transport: mmap of " + name + " (" +
                                     std::to_string(bytes) + " bytes): " + std::strerror(errno));
  }
  return {p, bytes};
}

/// Rank `rank` creates segment `name` (0600, exclusive) of `bytes` bytes and maps it; the
/// caller unlinks it once every peer has mapped it. Unlinks it itself if it cannot be mapped.
inline mapping create_segment(int rank, const std::string& name, std::size_t bytes) {
  bootstrap::detail::unique_fd f(
      ::shm_open(name.c_str(), O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0600));
  if (f.get() < 0) throw_errno(rank, "shm_open(" + name + ")");
  try {
    if (::ftruncate(f.get(), static_cast<off_t>(bytes)) != 0) {
      throw_errno(rank, "ftruncate of " + std::to_string(bytes) + " bytes for " + name +
                            " (is /dev/shm large enough?)");
    }
    return map_segment(f.get(), bytes, name);
  } catch (...) {
    ::shm_unlink(name.c_str());
    throw;
  }
}

/// Rank `rank` maps rank `owner`'s segment `name` of `bytes` bytes, after checking that it is
/// what that rank made: a regular object of this user, unreadable to anybody else (0600), of
/// exactly that size. A segment that fails a check was not made by a rank of this job (a
/// name another user forged, or planted under a guessed name) -- or a shorter one, which
/// would make this process die of SIGBUS at the first access beyond its end.
inline mapping open_segment(int rank, const std::string& name, std::size_t bytes, int owner) {
  bootstrap::detail::unique_fd f(::shm_open(name.c_str(), O_RDWR | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (f.get() < 0) throw_errno(rank, "shm_open(" + name + ") of rank " + std::to_string(owner));
  struct stat st {};
  if (::fstat(f.get(), &st) != 0) {
    throw_errno(rank, "fstat of " + name + " of rank " + std::to_string(owner));
  }
  const auto refuse = [&](const std::string& why) {
    throw error(errc::transport,
                "chorus::shm_transport: rank " + std::to_string(rank) + ": the segment " + name +
                    " that rank " + std::to_string(owner) + " announced " + why +
                    "; it was not made by a rank of this job (another user's, or a stale "
                    "or forged name), so it is not used");
  };
  if (!S_ISREG(st.st_mode)) refuse("is not a regular shared-memory object");
  if (st.st_uid != ::geteuid()) {
    refuse("belongs to uid " + std::to_string(st.st_uid) + ", not to this process's uid " +
           std::to_string(::geteuid()));
  }
  if ((st.st_mode & 077) != 0) {
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
    refuse(std::string("has mode ") + mode + " (a rank makes its segments 0600)");
  }
  if (static_cast<std::uint64_t>(st.st_size) != bytes) {
    refuse("has " + std::to_string(st.st_size) + " bytes, not the " + std::to_string(bytes) +
           " expected");
  }
  return map_segment(f.get(), bytes, name);
}

/// "/chorus-<job>-<rank>-<what><32 random hex digits>": a name no other process can guess.
inline std::string segment_name(std::string_view job, int rank, std::string_view what) {
  std::random_device rd;
  const std::uint64_t a = (static_cast<std::uint64_t>(rd()) << 32) | rd();
  const std::uint64_t b = (static_cast<std::uint64_t>(rd()) << 32) | rd();
  char suffix[40];
  std::snprintf(suffix, sizeof suffix, "%016llx%016llx", static_cast<unsigned long long>(a),
                static_cast<unsigned long long>(b));
  std::string clean;
  for (char c : job)
    clean += (std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_') ? c : '_';
  return "/chorus-" + clean + "-" + std::to_string(rank) + "-" + std::string(what) + suffix;
}

}  // namespace chorus::inline v0::detail::shm

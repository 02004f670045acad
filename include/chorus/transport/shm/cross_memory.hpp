#pragma once
/// \file
/// Cross-memory attach for `chorus::shm_transport`: one rank reads or writes another's
/// memory directly (process_vm_readv / process_vm_writev). It carries single-copy messages
/// (`CHORUS_SHM_SINGLE_COPY=1`) and one-sided access to registered windows. The kernel must
/// allow it: same user, and ptrace permission (Yama's ptrace_scope 0, or chorusrun's ranks).
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include <sys/types.h>
#include <sys/uio.h>

namespace chorus::inline v0::detail::shm {

/// Messages at least this large go single-copy (the receiver reads them straight from the
/// sender's memory with process_vm_readv) when the kernel allows it. Below it the two
/// copies through the ring cost less than the system call and page pinning.
inline constexpr std::size_t single_copy_threshold = 128 * 1024;

/// A value at a fixed address in every process, which peers read at start-up to find out
/// whether cross-memory attach works between them (it needs ptrace permission).
inline const std::uint64_t single_copy_probe = 0x63686f7275732121ull;  // "chorus!!"

/// Moves `bytes` bytes between `local` and `remote` in process `pid` with `move`
/// (process_vm_readv or process_vm_writev), looping over partial transfers. False with
/// errno set on failure.
inline bool move_peer_memory(ssize_t (*move)(pid_t, const iovec*, unsigned long, const iovec*,
                                             unsigned long, unsigned long),
                             pid_t pid, std::uint64_t remote, std::byte* local,
                             std::size_t bytes) noexcept {
  std::size_t done = 0;
  while (done < bytes) {
    iovec l{local + done, bytes - done};
    iovec r{reinterpret_cast<void*>(remote + done), bytes - done};
    const ssize_t n = move(pid, &l, 1, &r, 1, 0);
    if (n <= 0) {
      if (n == 0) errno = EFAULT;
      return false;
    }
    done += static_cast<std::size_t>(n);
  }
  return true;
}

/// Reads `bytes` bytes at `remote` in process `pid` into `local`. False with errno set.
inline bool read_peer_memory(pid_t pid, std::uint64_t remote, std::byte* local,
                             std::size_t bytes) noexcept {
  return move_peer_memory(::process_vm_readv, pid, remote, local, bytes);
}

/// Writes `bytes` bytes from `local` to `remote` in process `pid`. False with errno set.
inline bool write_peer_memory(pid_t pid, std::uint64_t remote, const std::byte* local,
                              std::size_t bytes) noexcept {
  // process_vm_writev only reads the local buffer
  return move_peer_memory(::process_vm_writev, pid, remote, const_cast<std::byte*>(local), bytes);
}

/// Single-copy transfers are used only with `CHORUS_SHM_SINGLE_COPY=1`. Measured on the
/// development machine (docs/transports.md), process_vm_readv moves 4.5-10 GB/s where a
/// memcpy moves 7.5-36 GB/s, and the two copies through a cache-resident ring cost about
/// one memcpy of the message: single-copy loses at every size there. It stays available
/// (and tested) for hosts where page pinning is cheap.
inline bool single_copy_enabled() {
  const char* v = std::getenv("CHORUS_SHM_SINGLE_COPY");
  return v != nullptr && std::string_view(v) == "1";
}

}  // namespace chorus::inline v0::detail::shm

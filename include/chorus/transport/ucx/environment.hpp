#pragma once
/// \file
/// What `chorus::ucx_transport` reads of its surroundings: UCX's status strings, the UCX
/// variables a configuration error names, whether UCX may use shared memory, and which
/// processes share a host (and can watch each other's pids).
#include <ucp/api/ucp.h>

#include <cstdlib>
#include <fstream>
#include <string>

#include <unistd.h>

namespace chorus::inline v0::detail::ucx {

inline std::string status_text(ucs_status_t s) { return ucs_status_string(s); }

inline std::string env_or_unset(const char* name) {
  const char* v = std::getenv(name);
  return v == nullptr ? std::string("unset") : "'" + std::string(v) + "'";
}

/// "UCX_TLS='tcp' UCX_NET_DEVICES=unset": the configuration a failure message names.
inline std::string ucx_environment() {
  return "UCX_TLS=" + env_or_unset("UCX_TLS") +
         " UCX_NET_DEVICES=" + env_or_unset("UCX_NET_DEVICES");
}

/// Whether UCX_TLS may select a shared-memory (mm) transport: unset, "all", a negated
/// list, or a list naming sm, shm, mm, posix or sysv. (Setting an mm option that no
/// transport uses makes UCX warn about an invalid configuration.)
inline bool may_use_mm() {
  const char* v = std::getenv("UCX_TLS");
  if (v == nullptr || *v == '\0' || *v == '^') return true;
  const std::string tls = std::string(",") + v + ",";
  for (const char* name : {",all,", ",sm,", ",shm,", ",mm,", ",posix,", ",sysv,"}) {
    if (tls.find(name) != std::string::npos) return true;
  }
  return false;
}

/// Which processes can watch each other's pids: same kernel boot, same pid and network
/// namespace. Ranks in other network namespaces count as remote hosts (their failures are
/// UCX's to report), which is what the namespace tests need.
inline std::string host_identity() {
  std::string id;
  std::ifstream boot("/proc/sys/kernel/random/boot_id");
  std::getline(boot, id);
  char link[128];
  for (const char* ns : {"/proc/self/ns/pid", "/proc/self/ns/net"}) {
    const ssize_t n = ::readlink(ns, link, sizeof link - 1);
    id += "/" + (n > 0 ? std::string(link, static_cast<std::size_t>(n)) : std::string("?"));
  }
  for (char& c : id) {
    if (c == ' ' || c == '\n') c = '_';
  }
  return id;
}

}  // namespace chorus::inline v0::detail::ucx

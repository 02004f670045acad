#pragma once
/// \file
/// What a waiting rank needs to know about the CPUs: how many this process may run on (a
/// rank spins less when ranks outnumber them, since spinning then only burns the time
/// slice of the peer it waits for) and how to spin politely.
#include <sched.h>

namespace chorus::inline v0::kit {

/// The CPUs this process may run on (its affinity mask); 1 if that cannot be read.
inline int usable_cpus() noexcept {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (::sched_getaffinity(0, sizeof set, &set) != 0) return 1;
  return CPU_COUNT(&set);
}

/// A spin-wait hint to the CPU (x86 `pause`, Arm `yield`): the sibling hyper-thread runs,
/// and the loop leaves the pipeline without a memory-order mis-speculation.
inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

}  // namespace chorus::inline v0::kit

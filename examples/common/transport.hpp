#pragma once
/// \file
/// What the parallelism examples share to start: the communicator of the transport named by
/// their `--transport` option, over the job `chorus::bootstrap::from_env()` finds (chorusrun,
/// torchrun, mpirun, srun). Shared memory by default; UCX where the example's CMakeLists
/// found chorus's ucx component and defined CHORUS_EXAMPLE_UCX.
#include <chorus/chorus.hpp>
#if CHORUS_EXAMPLE_UCX
#include <chorus/transport/ucx.hpp>
#endif

#include <cstdio>
#include <string_view>
#include <type_traits>

namespace examples {

/// Calls `body(comm, name)` -- or `body(comm, name, world)` when it takes the job's
/// `bootstrap::world` too -- with a communicator of transport `transport` ("shm" or "ucx")
/// and the transport's name for the report, and returns what it returns; 2 for UCX in a
/// build without it. `program` names the example in that message.
template <class Body>
int with_transport(std::string_view transport, [[maybe_unused]] const char* program, Body body) {
  const chorus::bootstrap::world world = chorus::bootstrap::from_env();
  const auto call = [&](auto& comm, const char* name) {
    if constexpr (std::is_invocable_v<Body&, decltype(comm), const char*,
                                      const chorus::bootstrap::world&>) {
      return body(comm, name, world);
    } else {
      return body(comm, name);
    }
  };
  if (transport == "ucx") {
#if CHORUS_EXAMPLE_UCX
    chorus::communicator<chorus::ucx_transport> comm{chorus::ucx_transport{world}};
    return call(comm, "UCX");
#else
    std::fprintf(stderr,
                 "%s: built without UCX (chorus::ucx was not found at build time); use "
                 "--transport shm\n",
                 program);
    return 2;
#endif
  }
  chorus::communicator<chorus::shm_transport> comm{chorus::shm_transport{world}};
  return call(comm, "shared memory");
}

}  // namespace examples

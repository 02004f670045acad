#pragma once
/// \file
/// chorus: collective communication and sharding, header-only C++20.
///
/// Include this one header for everything that needs no extra dependency: element types and
/// ops, the communicator, the in-process and (on Linux) shared-memory transports, and every
/// collective.
///
///     #include <chorus/chorus.hpp>
///
///     chorus::inproc::run(4, [](chorus::inproc_communicator& comm) {
///       std::vector<float> grads(1 << 20, 1.0f);
///       chorus::all_reduce(comm, grads, chorus::plus{});   // every element is now 4
///     });
///
/// The folders are the layers, each including only those below it (tests/layering checks):
/// core, schedule, bootstrap, transport (contract.hpp and kit/, then the backends),
/// communicator.hpp, exec, dispatch, collectives, then compress, zero and device.
#include <chorus/config.hpp>
#include <chorus/version.hpp>

#include <chorus/core/deadline.hpp>
#include <chorus/core/error.hpp>
#include <chorus/core/hash.hpp>
#include <chorus/core/ops.hpp>
#include <chorus/core/request.hpp>
#include <chorus/core/types.hpp>

#include <chorus/communicator.hpp>
#include <chorus/transport/contract.hpp>
#include <chorus/transport/inproc.hpp>
#if defined(__linux__)
#include <chorus/transport/shm.hpp>
#endif

#include <chorus/collectives/all_gather.hpp>
#include <chorus/collectives/all_reduce.hpp>
#include <chorus/collectives/all_to_all.hpp>
#include <chorus/collectives/barrier.hpp>
#include <chorus/collectives/broadcast.hpp>
#include <chorus/collectives/gather.hpp>
#include <chorus/collectives/nonblocking.hpp>
#include <chorus/collectives/reduce.hpp>
#include <chorus/collectives/reduce_scatter.hpp>
#include <chorus/collectives/scatter.hpp>
#include <chorus/collectives/send_recv.hpp>
#include <chorus/dispatch/algo.hpp>
#include <chorus/dispatch/debug.hpp>
#include <chorus/group/mesh.hpp>
#include <chorus/group/shrink.hpp>
#include <chorus/group/split.hpp>

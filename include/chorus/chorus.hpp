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
#include <chorus/config.hpp>
#include <chorus/version.hpp>

#include <chorus/core/communicator.hpp>
#include <chorus/core/deadline.hpp>
#include <chorus/core/error.hpp>
#include <chorus/core/ops.hpp>
#include <chorus/core/types.hpp>

#include <chorus/transport/inproc.hpp>
#include <chorus/transport/transport.hpp>
#if defined(__linux__)
#include <chorus/transport/shm.hpp>
#endif

#include <chorus/algorithm/algo.hpp>
#include <chorus/algorithm/all_gather.hpp>
#include <chorus/algorithm/all_reduce.hpp>
#include <chorus/algorithm/all_to_all.hpp>
#include <chorus/algorithm/barrier.hpp>
#include <chorus/algorithm/broadcast.hpp>
#include <chorus/algorithm/gather.hpp>
#include <chorus/algorithm/reduce.hpp>
#include <chorus/algorithm/reduce_scatter.hpp>
#include <chorus/algorithm/scatter.hpp>
#include <chorus/algorithm/send_recv.hpp>

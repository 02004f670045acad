#pragma once
/// \file
/// chorus::zero: ZeRO partition geometries, the sharded optimizer driver (stages 0-3),
/// memory accounting, resharding checkpoints and in-memory redundancy. See docs/zero.md.
#include <chorus/zero/buckets.hpp>
#include <chorus/zero/checkpoint.hpp>
#include <chorus/zero/memory.hpp>
#include <chorus/zero/optimizers.hpp>
#include <chorus/zero/partition.hpp>
#include <chorus/zero/redundancy.hpp>
#include <chorus/zero/sharded_optimizer.hpp>

#pragma once
/// \file
/// Compiler and platform switches shared by every chorus header.
///
/// chorus is header-only: host paths need nothing but a C++20 compiler. Device code
/// (`device/*.cuh`, compiled by nvcc) uses `CHORUS_HOST_DEVICE` to mark functions usable on
/// both sides; in host-only translation units it expands to nothing.
#include <chorus/version.hpp>

#if defined(__CUDACC__) || defined(__HIPCC__)
#define CHORUS_HOST_DEVICE __host__ __device__
#else
#define CHORUS_HOST_DEVICE
#endif

#if defined(__GNUC__) || defined(__clang__)
#define CHORUS_LIKELY(x) __builtin_expect(!!(x), 1)
#define CHORUS_UNLIKELY(x) __builtin_expect(!!(x), 0)
#else
#define CHORUS_LIKELY(x) (x)
#define CHORUS_UNLIKELY(x) (x)
#endif

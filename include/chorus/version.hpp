#pragma once
/// \file
/// The library version: the single source of truth.
///
/// The top-level `CMakeLists.txt` reads the three component macros below to set
/// `project(chorus VERSION ...)`, so the installed `chorusConfigVersion.cmake` and the
/// headers can never disagree. Change the version here and nowhere else.
///
/// `CHORUS_VERSION` is one integer, `major * 10000 + minor * 100 + patch`, for
/// preprocessor comparisons: `#if CHORUS_VERSION >= 200` means "0.2.0 or later".

#define CHORUS_VERSION_MAJOR 0
#define CHORUS_VERSION_MINOR 1
#define CHORUS_VERSION_PATCH 0

#define CHORUS_VERSION \
  (CHORUS_VERSION_MAJOR * 10000 + CHORUS_VERSION_MINOR * 100 + CHORUS_VERSION_PATCH)

/// The version as a string literal, e.g. "0.1.0".
#define CHORUS_VERSION_STRING \
  CHORUS_DETAIL_VERSION_STRING(CHORUS_VERSION_MAJOR, CHORUS_VERSION_MINOR, CHORUS_VERSION_PATCH)

// Two levels, so that the macro arguments are expanded before they are stringized.
#define CHORUS_DETAIL_VERSION_STRING(major, minor, patch) \
  CHORUS_DETAIL_VERSION_STRING_IMPL(major, minor, patch)
#define CHORUS_DETAIL_VERSION_STRING_IMPL(major, minor, patch) #major "." #minor "." #patch

# Writes OUTPUT, a header defining CHORUS_PERF_COMMIT (the checkout's `git describe
# --always --dirty`, or "unknown"), only when it changes: run at every build of the perf
# tools, so that their JSON names the commit they were built from, not the one configured.
find_package(Git QUIET)
set(commit "unknown")
if(GIT_FOUND)
  execute_process(
    COMMAND "${GIT_EXECUTABLE}" -C "${SOURCE_DIR}" describe --always --dirty --abbrev=12
    OUTPUT_VARIABLE described
    OUTPUT_STRIP_TRAILING_WHITESPACE
    RESULT_VARIABLE failed
    ERROR_QUIET)
  if(NOT failed AND described)
    set(commit "${described}")
  endif()
endif()
set(text "#pragma once\n// Written by bench/perf/build_info.cmake at build time.\n#define CHORUS_PERF_COMMIT \"${commit}\"\n")
if(EXISTS "${OUTPUT}")
  file(READ "${OUTPUT}" old)
endif()
if(NOT old STREQUAL text)
  file(WRITE "${OUTPUT}" "${text}")
endif()

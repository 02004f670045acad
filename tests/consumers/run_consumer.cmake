# Driver of the consumer tests (see CMakeLists.txt here); run by ctest as
#   cmake -DPARAMS=<parameters file> -DCONFIG=<chorus's build configuration> -P run_consumer.cmake
#
# MODE configure_install: see below.
# MODE install:  wipes INSTALL_PREFIX, then `cmake --install BUILD_DIR --prefix INSTALL_PREFIX`.
# MODE project:  wipes BINARY_DIR, configures SOURCE_DIR into it with the same generator and
#                compiler as chorus's build (plus CACHE_ARGS), builds it in Release, runs its
#                tests with ctest, and requires EXPECT_OUTPUT in their output. With
#                EXPECT_CONFIGURE_FAILURE set, the configure step must instead fail with a
#                message matching that regex.

cmake_minimum_required(VERSION 3.21)

if(NOT PARAMS OR NOT EXISTS "${PARAMS}")
  message(FATAL_ERROR "run_consumer: pass -DPARAMS=<parameters file>")
endif()
include("${PARAMS}")

# Runs a command, echoing it; sets <rc_var> and <out_var> (stdout and stderr together).
function(run rc_var out_var)
  string(JOIN " " shown ${ARGN})
  message(STATUS "run_consumer: ${shown}")
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
  set(${rc_var} "${rc}" PARENT_SCOPE)
  set(${out_var} "${out}" PARENT_SCOPE)
endfunction()

# fail(<summary> <output>): prints the output as it is (message(FATAL_ERROR) would re-wrap
# it), then fails with the summary. Pass both as single quoted strings.
function(fail summary output)
  message(NOTICE "${output}")
  message(FATAL_ERROR "${NAME}: FAILED: ${summary}")
endfunction()

function(require_success what rc out)
  if(NOT rc EQUAL 0)
    fail("${what} exited with ${rc}" "${out}")
  endif()
endfunction()

if(MODE STREQUAL "install")
  set(config_args "")
  if(CONFIG)
    set(config_args --config "${CONFIG}")
  endif()
  file(REMOVE_RECURSE "${INSTALL_PREFIX}")
  run(rc out "${CMAKE_COMMAND}" --install "${BUILD_DIR}" --prefix "${INSTALL_PREFIX}"
      ${config_args})
  require_success("cmake --install" "${rc}" "${out}")
  message(STATUS "${NAME}: installed chorus into ${INSTALL_PREFIX}")
  return()
endif()

# MODE configure_install: configures chorus (SOURCE_DIR) into BINARY_DIR with CACHE_ARGS and
# nothing else, then runs `cmake --install` at once, with no build step: chorusrun and the
# compiled library must be built by the install and land in <BINARY_DIR>/prefix.
if(MODE STREQUAL "configure_install")
  file(REMOVE_RECURSE "${BINARY_DIR}")
  set(prefix "${BINARY_DIR}/prefix")
  run(rc out "${CMAKE_COMMAND}" -S "${SOURCE_DIR}" -B "${BINARY_DIR}/build" -G "${GENERATOR}"
      -DCMAKE_BUILD_TYPE=Release ${CACHE_ARGS})
  require_success("configure" "${rc}" "${out}")
  run(rc out "${CMAKE_COMMAND}" --install "${BINARY_DIR}/build" --prefix "${prefix}" --config
      Release)
  require_success("cmake --install right after the configure" "${rc}" "${out}")
  foreach(file IN ITEMS bin/chorusrun lib/libchorus-compiled.a include/chorus/chorus.hpp
                        lib/cmake/chorus/chorusConfig.cmake)
    if(NOT EXISTS "${prefix}/${file}")
      fail("the install has no ${file}" "${out}")
    endif()
  endforeach()
  run(rc out "${prefix}/bin/chorusrun" -n 2 -- /bin/sh -c "echo rank \$CHORUS_RANK of \$CHORUS_SIZE")
  require_success("the installed chorusrun" "${rc}" "${out}")
  if(NOT out MATCHES "rank 0 of 2" OR NOT out MATCHES "rank 1 of 2")
    fail("the installed chorusrun did not start 2 ranks" "${out}")
  endif()
  message(NOTICE "${out}")
  message(STATUS "${NAME}: ok")
  return()
endif()

if(NOT MODE STREQUAL "project")
  message(FATAL_ERROR "run_consumer: unknown MODE '${MODE}'")
endif()

file(REMOVE_RECURSE "${BINARY_DIR}")
file(MAKE_DIRECTORY "${BINARY_DIR}")

set(configure "${CMAKE_COMMAND}" -S "${SOURCE_DIR}" -B "${BINARY_DIR}" -G "${GENERATOR}")
if(GENERATOR_PLATFORM)
  list(APPEND configure -A "${GENERATOR_PLATFORM}")
endif()
if(GENERATOR_TOOLSET)
  list(APPEND configure -T "${GENERATOR_TOOLSET}")
endif()
# Consumers build in Release, whatever chorus's own build uses: the configuration users ship,
# and quicker to compile than one with debug information.
list(APPEND configure -DCMAKE_BUILD_TYPE=Release)
list(APPEND configure ${CACHE_ARGS})

run(rc out ${configure})
if(DEFINED EXPECT_CONFIGURE_FAILURE)
  if(rc EQUAL 0)
    fail("configure succeeded, but it must fail matching '${EXPECT_CONFIGURE_FAILURE}'"
         "${out}")
  endif()
  if(NOT out MATCHES "${EXPECT_CONFIGURE_FAILURE}")
    fail("configure failed, but without a message matching '${EXPECT_CONFIGURE_FAILURE}'"
         "${out}")
  endif()
  message(NOTICE "${out}")
  message(STATUS "${NAME}: configure failed as expected")
  return()
endif()
require_success("configure" "${rc}" "${out}")

run(rc out "${CMAKE_COMMAND}" --build "${BINARY_DIR}" --config Release)
require_success("build" "${rc}" "${out}")

run(rc out "${CMAKE_CTEST_COMMAND}" --test-dir "${BINARY_DIR}" -C Release -V
    --no-tests=error)
require_success("its tests" "${rc}" "${out}")
if(NOT out MATCHES "${EXPECT_OUTPUT}")
  fail("the consumer's output does not match '${EXPECT_OUTPUT}'" "${out}")
endif()
message(NOTICE "${out}")
message(STATUS "${NAME}: ok")

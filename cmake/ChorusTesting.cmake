# Catch2 test executables for chorus.
#
#   chorus_add_catch_test(NAME <name> SOURCES <file>...
#                         [LABELS <label>...]      # default: unit
#                         [TIMEOUT <seconds>]      # default: 300
#                         [LIBRARIES <target>...]  # extra libraries to link
#                         [ARGS <arg>...]          # extra Catch2 command-line arguments
#                         [PLAIN_ONLY <reason>])   # not built under sanitizers
#
# Creates the executable <name> from SOURCES, linked with chorus::chorus and the shared
# Catch2 main (chorus_catch_main), built with chorus_project_target() settings, and
# registers ONE ctest entry named <name> that runs every test case of the executable in
# declaration order. One entry per executable rather than per test case: listing test cases
# at build time (catch_discover_tests) costs a run of every executable, which is slow under
# sanitizers, and a failing case is named in the output anyway. Sources may include shared
# helpers relative to tests/ ("support/harness.hpp"). To run one case by hand:
#   build/tests/core/<name> "<test case name>"
#
# Sanitizer builds (CHORUS_SANITIZE) run a representative subset: a test that passes
# PLAIN_ONLY, with the reason (what covers its code under the sanitizers), is neither built
# nor registered there; every test runs in the plain build.

include_guard(GLOBAL)
include(ChorusWarnings)

function(chorus_add_catch_test)
  cmake_parse_arguments(PARSE_ARGV 0 arg "" "NAME;TIMEOUT;PLAIN_ONLY"
                        "SOURCES;LABELS;LIBRARIES;ARGS")
  if(arg_UNPARSED_ARGUMENTS)
    message(FATAL_ERROR "chorus_add_catch_test: unexpected arguments: ${arg_UNPARSED_ARGUMENTS}")
  endif()
  if(NOT arg_NAME OR NOT arg_SOURCES)
    message(FATAL_ERROR "chorus_add_catch_test: NAME and SOURCES are required")
  endif()
  if(NOT TARGET chorus_catch_main)
    message(FATAL_ERROR "chorus_add_catch_test: chorus_catch_main is not defined; "
                        "call it from a directory below tests/")
  endif()
  if("PLAIN_ONLY" IN_LIST arg_KEYWORDS_MISSING_VALUES)
    message(FATAL_ERROR "chorus_add_catch_test(${arg_NAME}): PLAIN_ONLY needs its reason")
  endif()
  if(DEFINED arg_PLAIN_ONLY AND CHORUS_SANITIZE)
    return()
  endif()
  if(NOT arg_LABELS)
    set(arg_LABELS unit)
  endif()
  if(NOT arg_TIMEOUT)
    set(arg_TIMEOUT 300)
  endif()

  add_executable("${arg_NAME}" ${arg_SOURCES})
  target_link_libraries("${arg_NAME}" PRIVATE chorus::chorus chorus_catch_main ${arg_LIBRARIES})
  # Shared test helpers resolve from tests/: #include "support/harness.hpp".
  target_include_directories("${arg_NAME}" PRIVATE "${chorus_SOURCE_DIR}/tests")
  chorus_project_target("${arg_NAME}")

  # -r console: the plain reporter; -d no: no per-case timings, so two runs of a passing
  # test print the same thing.
  add_test(NAME "${arg_NAME}" COMMAND "${arg_NAME}" -r console -d no ${arg_ARGS})
  set_tests_properties("${arg_NAME}" PROPERTIES LABELS "${arg_LABELS}" TIMEOUT "${arg_TIMEOUT}")
endfunction()

# Catch2 test executables for chorus.
#
#   chorus_add_catch_test(NAME <name> SOURCES <file>...
#                         [SUITE <executable>]     # share one executable (below)
#                         [LABELS <label>...]      # default: unit
#                         [TIMEOUT <seconds>]      # default: 300
#                         [LIBRARIES <target>...]  # extra libraries to link
#                         [ARGS <arg>...]          # extra Catch2 command-line arguments
#                         [ENVIRONMENT <var=value>...]  # set for the test's run
#                         [PLAIN_ONLY <reason>])   # not built under sanitizers
#
# Registers ONE ctest entry named <name> that runs the test cases of SOURCES in declaration
# order. One entry per test rather than per test case: listing test cases at build time
# (catch_discover_tests) costs a run of every executable, which is slow under sanitizers,
# and a failing case is named in the output anyway. Executables link chorus::chorus and
# the shared Catch2 main (chorus_catch_main) and are built with chorus_project_target()
# settings. Sources may include shared helpers relative to tests/ ("support/harness.hpp").
#
# Without SUITE the executable is <name>. With SUITE, the tests of one directory that name
# the same suite share the executable <executable>, and their files are compiled together,
# up to CHORUS_TEST_BATCH (default 8) files per translation unit: every file pays for
# parsing chorus and Catch2 and for generating the code of the collectives it runs, which
# is most of its compile time, and a batch pays for it once (three collective tests: 61
# CPU-seconds apart, 34 together). The ctest entry then runs the executable with Catch2's
# filename tags (--filenames-as-tags), limited to its own files' test cases ("[#all_reduce_test]"), hidden
# ones ("[.]") left out as in a plain run; "--warn NoTests" makes a filter that matches nothing
# fail. So the files of a suite are one program and, in batches, one translation unit: a
# name outside an anonymous namespace, or two anonymous-namespace names alike in two files
# of a batch, clash -- share such helpers through a header instead. File names (without
# the extension) must be unique within a suite; several tests may run the same file (under
# different ENVIRONMENTs, say). To run one test's cases by hand:
#   build/tests/collectives/collectives_tests --filenames-as-tags "[#all_reduce_test]"
#   build/tests/collectives/collectives_tests "<test case name>"
#
# Sanitizer builds (CHORUS_SANITIZE) run a representative subset: a test that passes
# PLAIN_ONLY, with the reason (what covers its code under the sanitizers), is neither built
# nor registered there; every test runs in the plain build.

include_guard(GLOBAL)
include(ChorusWarnings)

set(CHORUS_TEST_BATCH 8 CACHE STRING
    "Test files of a suite compiled per translation unit (cmake/ChorusTesting.cmake)")

function(chorus_add_catch_test)
  cmake_parse_arguments(PARSE_ARGV 0 arg "" "NAME;TIMEOUT;PLAIN_ONLY;SUITE"
                        "SOURCES;LABELS;LIBRARIES;ARGS;ENVIRONMENT")
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

  # -r console: the plain reporter; -d no: no per-case timings, so two runs of a passing
  # test print the same thing.
  if(arg_SUITE)
    _chorus_suite_add("${arg_SUITE}" "${arg_NAME}" ${arg_SOURCES})
    set(filters)
    foreach(source IN LISTS arg_SOURCES)
      get_filename_component(stem "${source}" NAME_WE)
      list(APPEND filters "[#${stem}]~[.]")
    endforeach()
    list(JOIN filters "," filter)
    set(executable "${arg_SUITE}")
    set(selection --filenames-as-tags --warn NoTests "${filter}")
  else()
    add_executable("${arg_NAME}" ${arg_SOURCES})
    _chorus_test_executable("${arg_NAME}")
    set(executable "${arg_NAME}")
    set(selection)
  endif()
  target_link_libraries("${executable}" PRIVATE ${arg_LIBRARIES})
  add_test(NAME "${arg_NAME}" COMMAND "${executable}" -r console -d no ${selection} ${arg_ARGS})
  set_tests_properties("${arg_NAME}" PROPERTIES LABELS "${arg_LABELS}" TIMEOUT "${arg_TIMEOUT}")
  if(arg_ENVIRONMENT)
    set_tests_properties("${arg_NAME}" PROPERTIES ENVIRONMENT "${arg_ENVIRONMENT}")
  endif()
endfunction()

# What every test executable gets.
function(_chorus_test_executable target)
  target_link_libraries("${target}" PRIVATE chorus::chorus chorus_catch_main)
  target_include_directories("${target}" PRIVATE "${chorus_SOURCE_DIR}/tests")
  chorus_project_target("${target}")
endfunction()

# Adds the files of test <name> to suite <suite> (made on first use); the suite's batches
# are written once the directory is read (_chorus_suite_write).
function(_chorus_suite_add suite name)
  if(NOT TARGET "${suite}")
    add_executable("${suite}")
    _chorus_test_executable("${suite}")
    set_target_properties("${suite}" PROPERTIES CHORUS_SUITE_DIR "${CMAKE_CURRENT_SOURCE_DIR}"
                                                CHORUS_SUITE_FILES "" CHORUS_SUITE_STEMS "")
    # EVAL: the deferred call's arguments would otherwise be read when it runs.
    cmake_language(EVAL CODE "cmake_language(DEFER CALL _chorus_suite_write [[${suite}]])")
  else()
    get_target_property(dir "${suite}" CHORUS_SUITE_DIR)
    if(NOT dir STREQUAL CMAKE_CURRENT_SOURCE_DIR)
      message(FATAL_ERROR "chorus_add_catch_test(${name}): suite ${suite} belongs to ${dir}; "
                          "a suite's tests are registered in one directory")
    endif()
  endif()
  get_target_property(files "${suite}" CHORUS_SUITE_FILES)
  get_target_property(stems "${suite}" CHORUS_SUITE_STEMS)
  foreach(source IN LISTS ARGN)
    get_filename_component(path "${source}" ABSOLUTE)
    get_filename_component(stem "${source}" NAME_WE)
    file(RELATIVE_PATH relative "${chorus_SOURCE_DIR}/tests" "${path}")
    if(relative IN_LIST files)
      continue()  # another test of the suite runs this file too
    endif()
    if(stem IN_LIST stems)
      message(FATAL_ERROR "chorus_add_catch_test(${name}): suite ${suite} already has a file "
                          "named ${stem}; the test filter ([#${stem}]) could not tell them apart")
    endif()
    if(relative MATCHES "^\\.\\.")
      message(FATAL_ERROR "chorus_add_catch_test(${name}): ${source} is not under tests/")
    endif()
    list(APPEND files "${relative}")
    list(APPEND stems "${stem}")
    # Listed with the target (IDEs show it), compiled through its batch.
    target_sources("${suite}" PRIVATE "${path}")
    set_source_files_properties("${path}" PROPERTIES HEADER_FILE_ONLY ON)
  endforeach()
  set_target_properties("${suite}" PROPERTIES CHORUS_SUITE_FILES "${files}"
                                              CHORUS_SUITE_STEMS "${stems}")
endfunction()

# Writes suite <suite>'s batches, as even as CHORUS_TEST_BATCH allows, and compiles them.
# A batch names its files relative to tests/ (found through the target's include path), so
# its text is the same in every checkout and ccache shares its compilation across clones;
# file(CONFIGURE) leaves a batch whose text did not change untouched.
function(_chorus_suite_write suite)
  get_target_property(files "${suite}" CHORUS_SUITE_FILES)
  list(LENGTH files count)
  math(EXPR batches "(${count} + ${CHORUS_TEST_BATCH} - 1) / ${CHORUS_TEST_BATCH}")
  math(EXPR last "${batches} - 1")
  set(start 0)
  foreach(batch RANGE ${last})
    # Batch b holds files [count*b/batches, count*(b+1)/batches).
    math(EXPR stop "${count} * (${batch} + 1) / ${batches}")
    set(content "// Generated by cmake/ChorusTesting.cmake: test files of ${suite}, compiled together.\n")
    math(EXPR end "${stop} - 1")
    foreach(i RANGE ${start} ${end})
      list(GET files ${i} file)
      string(APPEND content "#include \"${file}\"\n")
    endforeach()
    set(output "${CMAKE_CURRENT_BINARY_DIR}/${suite}.batch${batch}.cpp")
    file(CONFIGURE OUTPUT "${output}" CONTENT "${content}" @ONLY)
    target_sources("${suite}" PRIVATE "${output}")
    set(start ${stop})
  endforeach()
endfunction()

# Driver of chorus_add_compile_fail_test (see ChorusCompileFail.cmake); run by ctest as
#   cmake -DCF_CONFIG=<generated parameters file> -P check_compile_fail.cmake
# The parameters file sets CF_NAME, CF_MODE, CF_COMPILER, CF_COMPILER_ID, CF_USER_FLAGS (the
# project's CMAKE_CXX_FLAGS), CF_INCLUDE_DIR, CF_SOURCE and CF_EXPECT. CF_MODE:
#   reject              the source must fail to compile with a message matching CF_EXPECT
#   reject_and_control  that, and then compile with CHORUS_COMPILE_FAIL_CONTROL defined
#   compile             the source must compile (the shared positive controls)

cmake_minimum_required(VERSION 3.21)

if(NOT CF_CONFIG OR NOT EXISTS "${CF_CONFIG}")
  message(FATAL_ERROR "check_compile_fail: pass -DCF_CONFIG=<parameters file>")
endif()
include("${CF_CONFIG}")

separate_arguments(user_flags NATIVE_COMMAND "${CF_USER_FLAGS}")
if(CF_COMPILER_ID STREQUAL "MSVC")
  set(base_flags ${user_flags} /nologo /std:c++20 /Zs /EHsc "/I${CF_INCLUDE_DIR}")
  set(control_flag /DCHORUS_COMPILE_FAIL_CONTROL)
else()
  set(base_flags ${user_flags} -std=c++20 -fsyntax-only "-I${CF_INCLUDE_DIR}")
  set(control_flag -DCHORUS_COMPILE_FAIL_CONTROL)
endif()

# Runs the compiler with the given extra flags; sets <rc_var> and <out_var>.
function(compile rc_var out_var)
  execute_process(
    COMMAND "${CF_COMPILER}" ${base_flags} ${ARGN} "${CF_SOURCE}"
    RESULT_VARIABLE rc
    OUTPUT_VARIABLE out
    ERROR_VARIABLE out)
  set(${rc_var} "${rc}" PARENT_SCOPE)
  set(${out_var} "${out}" PARENT_SCOPE)
endfunction()

string(JOIN " " shown_command "${CF_COMPILER}" ${base_flags} "${CF_SOURCE}")

# fail(<summary> <details>): prints the details as they are (message(FATAL_ERROR) would
# re-wrap the compiler's output), then fails with the one-sentence summary. Both arguments
# are single quoted strings, so that semicolons in compiler output survive.
function(fail summary details)
  message(NOTICE "${details}")
  message(FATAL_ERROR "${CF_NAME}: FAILED: ${summary}")
endfunction()

if(CF_MODE STREQUAL "compile")
  compile(rc output)
  if(NOT rc EQUAL 0)
    string(CONCAT summary "the positive controls do not compile (the file named in the first "
                  "error is the one whose control fails), so its expected error may come from "
                  "something other than the code under test")
    fail("${summary}" "command: ${shown_command}\n--- compiler output ---\n${output}--- end ---\n")
  endif()
  message(STATUS "${CF_NAME}: compiles")
  return()
elseif(NOT CF_MODE MATCHES "^reject(_and_control)?$")
  message(FATAL_ERROR "check_compile_fail: unknown CF_MODE '${CF_MODE}'")
endif()

# Pass 1: the file as written must be rejected, with the expected diagnostic.
compile(rc output)
if(rc EQUAL 0)
  fail("the source compiled, but it must not"
       "command: ${shown_command}\nexpected an error matching: ${CF_EXPECT}\n")
endif()
if(NOT output MATCHES "${CF_EXPECT}")
  fail("the source was rejected, but no compiler message matches '${CF_EXPECT}'"
       "command: ${shown_command}\n--- compiler output ---\n${output}--- end ---\n")
endif()

if(CF_MODE STREQUAL "reject")
  message(STATUS "${CF_NAME}: rejected as expected (matched '${CF_EXPECT}'); "
                 "its control is compiled by compile_fail.controls")
  return()
endif()

# Pass 2 (positive control): with CHORUS_COMPILE_FAIL_CONTROL the file must compile.
compile(rc control_output ${control_flag})
if(NOT rc EQUAL 0)
  string(CONCAT summary "the positive control (${control_flag}) does not compile, so the "
                "expected error may come from something other than the code under test")
  fail("${summary}" "command: ${shown_command} ${control_flag}\n--- compiler output ---\n${control_output}--- end ---\n")
endif()

message(STATUS "${CF_NAME}: rejected as expected (matched '${CF_EXPECT}'); control compiles")

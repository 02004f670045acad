# Tests that a piece of code does NOT compile, for the right reason.
#
#   chorus_add_compile_fail_test(NAME <name> SOURCE <file.cpp> EXPECT <regex>
#                                [TIMEOUT <seconds>])   # default: 120
#
# Registers a ctest entry <name> (label compile_fail) that runs check_compile_fail.cmake,
# which checks the compiler, invoked directly with C++20 and chorus's include directory
# (GCC/Clang: -std=c++20 -fsyntax-only -I<chorus>/include, plus CMAKE_CXX_FLAGS so that,
# e.g., -stdlib=libc++ is honoured), in two passes:
#   1. <file.cpp> as it is must FAIL to compile, and the compiler's output must match
#      <regex> (a CMake regular expression, matched against stdout and stderr together);
#   2. <file.cpp> with -DCHORUS_COMPILE_FAIL_CONTROL must COMPILE: the positive control,
#      proving the file fails only because of the code the macro guards.
# The test fails, saying which, if either pass does not hold. A source file looks like:
#
#   #include <chorus/chorus.hpp>
#   int main() {
#   #ifdef CHORUS_COMPILE_FAIL_CONTROL
#     ... the same call with an argument that is allowed ...
#   #else
#     ... the call that must be rejected ...
#   #endif
#   }
#
# The EXPECT regex usually names the sentence of the library's static_assert, so that a
# file failing for any other reason (a typo, a missing include) is caught.
#
# In a sanitizer build (CHORUS_SANITIZE set) the function registers nothing: these tests
# involve no sanitizer, and the plain build runs them already.

include_guard(GLOBAL)

function(chorus_add_compile_fail_test)
  cmake_parse_arguments(PARSE_ARGV 0 arg "" "NAME;SOURCE;EXPECT;TIMEOUT" "")
  if(arg_UNPARSED_ARGUMENTS)
    message(FATAL_ERROR
            "chorus_add_compile_fail_test: unexpected arguments: ${arg_UNPARSED_ARGUMENTS}")
  endif()
  if(NOT arg_NAME OR NOT arg_SOURCE OR "${arg_EXPECT}" STREQUAL "")
    message(FATAL_ERROR "chorus_add_compile_fail_test: NAME, SOURCE and EXPECT are required")
  endif()
  if(NOT arg_TIMEOUT)
    set(arg_TIMEOUT 120)
  endif()
  get_filename_component(source "${arg_SOURCE}" ABSOLUTE BASE_DIR "${CMAKE_CURRENT_SOURCE_DIR}")
  if(NOT EXISTS "${source}")
    message(FATAL_ERROR "chorus_add_compile_fail_test(${arg_NAME}): no such file: ${source}")
  endif()
  if(CHORUS_SANITIZE)
    return()
  endif()

  # chorus_SOURCE_DIR, not PROJECT_SOURCE_DIR: the caller may sit below another project().
  set(include_dir "${chorus_SOURCE_DIR}/include")

  # The parameters go to the script through a generated file rather than -D arguments, so
  # that a regex may hold any character (semicolons included) without quoting trouble.
  set(config "${CMAKE_CURRENT_BINARY_DIR}/compile_fail/${arg_NAME}.cmake")
  set(content "")
  string(APPEND content "set(CF_NAME [==[${arg_NAME}]==])\n"
         "set(CF_COMPILER [==[${CMAKE_CXX_COMPILER}]==])\n"
         "set(CF_COMPILER_ID [==[${CMAKE_CXX_COMPILER_ID}]==])\n"
         "set(CF_USER_FLAGS [==[${CMAKE_CXX_FLAGS}]==])\n"
         "set(CF_INCLUDE_DIR [==[${include_dir}]==])\n"
         "set(CF_SOURCE [==[${source}]==])\n"
         "set(CF_EXPECT [==[${arg_EXPECT}]==])\n")
  file(WRITE "${config}" "${content}")

  set(script "${CMAKE_CURRENT_FUNCTION_LIST_DIR}/check_compile_fail.cmake")
  add_test(NAME "${arg_NAME}" COMMAND "${CMAKE_COMMAND}" "-DCF_CONFIG=${config}" -P "${script}")
  set_tests_properties("${arg_NAME}" PROPERTIES LABELS compile_fail TIMEOUT "${arg_TIMEOUT}")
endfunction()

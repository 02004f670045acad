# Tests that a piece of code does NOT compile, for the right reason.
#
#   chorus_add_compile_fail_test(NAME <name> SOURCE <file.cpp> EXPECT <regex>
#                                [CONTROL_ALONE] [TIMEOUT <seconds>])   # default: 120
#
# Registers a ctest entry <name> (label compile_fail) that runs check_compile_fail.cmake,
# which invokes the compiler directly with C++20 and chorus's include directory
# (GCC/Clang: -std=c++20 -fsyntax-only -I<chorus>/include, plus CMAKE_CXX_FLAGS so that,
# e.g., -stdlib=libc++ is honoured): <file.cpp> as it is must FAIL to compile, and the
# compiler's output must match <regex> (a CMake regular expression, matched against stdout
# and stderr together).
#
# The positive control: <file.cpp> with CHORUS_COMPILE_FAIL_CONTROL defined must COMPILE,
# proving the file fails only because of the code the macro guards. The controls of all
# files are compiled together, in one generated translation unit (test
# compile_fail.controls), each file inside a namespace of its own after every file's
# #include lines: one compile instead of one per file, which was half the time of these
# tests. A file whose headers depend on a macro it defines before including them cannot
# share that translation unit: CONTROL_ALONE gives it a second pass of its own test instead.
# A source file looks like:
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

# Writes the parameters file of one check and registers its ctest entry. MODE is reject
# (the file must fail), reject_and_control (and then compile with the control macro) or
# compile (the file must compile as it is).
function(_chorus_compile_fail_check name source expect mode timeout)
  # chorus_SOURCE_DIR, not PROJECT_SOURCE_DIR: the caller may sit below another project().
  set(include_dir "${chorus_SOURCE_DIR}/include")
  # The parameters go to the script through a generated file rather than -D arguments, so
  # that a regex may hold any character (semicolons included) without quoting trouble.
  set(config "${chorus_BINARY_DIR}/compile_fail/${name}.cmake")
  set(content "")
  string(APPEND content "set(CF_NAME [==[${name}]==])\n"
         "set(CF_MODE [==[${mode}]==])\n"
         "set(CF_COMPILER [==[${CMAKE_CXX_COMPILER}]==])\n"
         "set(CF_COMPILER_ID [==[${CMAKE_CXX_COMPILER_ID}]==])\n"
         "set(CF_USER_FLAGS [==[${CMAKE_CXX_FLAGS}]==])\n"
         "set(CF_INCLUDE_DIR [==[${include_dir}]==])\n"
         "set(CF_SOURCE [==[${source}]==])\n"
         "set(CF_EXPECT [==[${expect}]==])\n")
  file(WRITE "${config}" "${content}")

  set(script "${CMAKE_CURRENT_FUNCTION_LIST_DIR}/check_compile_fail.cmake")
  add_test(NAME "${name}" COMMAND "${CMAKE_COMMAND}" "-DCF_CONFIG=${config}" -P "${script}")
  set_tests_properties("${name}" PROPERTIES LABELS compile_fail TIMEOUT "${timeout}")
endfunction()

function(chorus_add_compile_fail_test)
  cmake_parse_arguments(PARSE_ARGV 0 arg "CONTROL_ALONE" "NAME;SOURCE;EXPECT;TIMEOUT" "")
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

  if(arg_CONTROL_ALONE)
    _chorus_compile_fail_check("${arg_NAME}" "${source}" "${arg_EXPECT}" reject_and_control
                               "${arg_TIMEOUT}")
    return()
  endif()
  _chorus_compile_fail_check("${arg_NAME}" "${source}" "${arg_EXPECT}" reject "${arg_TIMEOUT}")
  get_property(sources GLOBAL PROPERTY CHORUS_COMPILE_FAIL_CONTROLS)
  if(NOT sources)
    # The shared control is written once every test is registered: at the end of chorus's
    # top-level directory.
    cmake_language(DEFER DIRECTORY "${chorus_SOURCE_DIR}" CALL _chorus_compile_fail_controls)
  endif()
  set_property(GLOBAL APPEND PROPERTY CHORUS_COMPILE_FAIL_CONTROLS "${source}")
endfunction()

# Writes <build>/compile_fail/controls.cpp, every registered file's positive control in one
# translation unit, and registers compile_fail.controls, which must compile it.
function(_chorus_compile_fail_controls)
  get_property(sources GLOBAL PROPERTY CHORUS_COMPILE_FAIL_CONTROLS)
  set(includes "")
  set(bodies "")
  set(index 0)
  foreach(source IN LISTS sources)
    # Every file's headers first, at global scope, so that the same lines inside the
    # namespaces below include nothing again (every header has an include guard).
    get_filename_component(dir "${source}" DIRECTORY)
    file(STRINGS "${source}" lines REGEX "^[ \t]*#[ \t]*include")
    foreach(line IN LISTS lines)
      if(line MATCHES "^[ \t]*#[ \t]*include[ \t]*\"([^\"]+)\"")
        list(APPEND includes "#include \"${dir}/${CMAKE_MATCH_1}\"")
      else()
        string(STRIP "${line}" line)
        list(APPEND includes "${line}")
      endif()
    endforeach()
    list(APPEND bodies "namespace chorus_compile_fail_control_${index} {\n"
                         "#include \"${source}\"\n}\n")
    math(EXPR index "${index} + 1")
  endforeach()
  list(REMOVE_DUPLICATES includes)
  list(JOIN includes "\n" includes)
  string(JOIN "" bodies ${bodies})
  string(CONCAT text
         "// Generated by cmake/ChorusCompileFail.cmake: the positive controls of the\n"
         "// compile-fail tests, which must compile. Each file sits in a namespace of its own.\n"
         "#define CHORUS_COMPILE_FAIL_CONTROL\n" "${includes}\n" "${bodies}")
  file(CONFIGURE OUTPUT "${chorus_BINARY_DIR}/compile_fail/controls.cpp" CONTENT "${text}"
       @ONLY)
  list(LENGTH sources count)
  _chorus_compile_fail_check(compile_fail.controls
                             "${chorus_BINARY_DIR}/compile_fail/controls.cpp" "" compile 300)
  message(VERBOSE "chorus: compile_fail.controls compiles ${count} positive controls")
endfunction()

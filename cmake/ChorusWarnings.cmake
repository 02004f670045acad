# Build settings for chorus's OWN targets (tests, examples, benchmarks).
#
#   chorus_project_target(<target>)
#
# Applies, to <target> only and never through the `chorus` interface target:
#   - standard C++ (CXX_EXTENSIONS OFF: -std=c++20, not -std=gnu++20), so that the code
#     chorus ships is checked without GNU extensions;
#   - warnings: -Wall -Wextra -Wpedantic (GCC, Clang) or /W4 /permissive- (MSVC), always;
#   - -Werror (/WX) when CHORUS_WERROR is ON;
#   - sanitizers from CHORUS_SANITIZE (e.g. "address,undefined" or "thread"), at compile and
#     link time, with frame pointers kept for readable reports and UBSan made fatal
#     (-fno-sanitize-recover=all), so that undefined behaviour fails a test instead of
#     printing a line nobody reads.
# Consumers of chorus::chorus never inherit any of this: every option is PRIVATE.

include_guard(GLOBAL)

function(chorus_project_target target)
  if(NOT TARGET "${target}")
    message(FATAL_ERROR "chorus_project_target: '${target}' is not a target")
  endif()

  set_target_properties("${target}" PROPERTIES CXX_EXTENSIONS OFF)

  if(MSVC)
    target_compile_options("${target}" PRIVATE /W4 /permissive- $<$<BOOL:${CHORUS_WERROR}>:/WX>)
  else()
    target_compile_options("${target}" PRIVATE -Wall -Wextra -Wpedantic
                                               $<$<BOOL:${CHORUS_WERROR}>:-Werror>)
  endif()

  if(CHORUS_SANITIZE)
    if(MSVC)
      # MSVC knows only AddressSanitizer, and spells it differently.
      if(NOT CHORUS_SANITIZE STREQUAL "address")
        message(FATAL_ERROR "chorus: MSVC supports only CHORUS_SANITIZE=address, "
                            "got '${CHORUS_SANITIZE}'")
      endif()
      target_compile_options("${target}" PRIVATE /fsanitize=address)
    else()
      set(flags "-fsanitize=${CHORUS_SANITIZE}" -fno-omit-frame-pointer)
      if(CHORUS_SANITIZE MATCHES "undefined")
        list(APPEND flags -fno-sanitize-recover=all)
      endif()
      target_compile_options("${target}" PRIVATE ${flags})
      target_link_options("${target}" PRIVATE ${flags})
      # GCC's sanitizer instrumentation confuses its flow analysis: GCC 12 reports
      # -Wmaybe-uninitialized inside libstdc++'s <regex> (reached through Catch2) with
      # -fsanitize=address,undefined, and nowhere without. The unsanitized build keeps the
      # warning, so nothing is lost by silencing it here.
      if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
        target_compile_options("${target}" PRIVATE -Wno-maybe-uninitialized)
      endif()
    endif()
  endif()
endfunction()

# Checks of a C++-only consumer that adds chorus as a subproject (add_subdirectory,
# FetchContent); included after chorus was added, before common.cmake:
#  - chorus enabled no CUDA and wrote nothing CUDA into the consumer's cache (the cuda and
#    nccl components are off unless a subproject consumer asks for them);
#  - chorus::chorusrun is defined when CLI11 is installed (CHORUS_CONSUMER_EXPECT_CHORUSRUN),
#    and the consumer's test `chorusrun` builds it on demand and launches the consumer's
#    program under it (registered by consumer_test_chorusrun, after common.cmake).

get_property(languages GLOBAL PROPERTY ENABLED_LANGUAGES)
if("CUDA" IN_LIST languages)
  message(FATAL_ERROR "consumer: chorus enabled the CUDA language in a C++-only consumer")
endif()
get_cmake_property(cache_entries CACHE_VARIABLES)
foreach(entry IN LISTS cache_entries)
  # chorus's own switches (CHORUS_WITH_CUDA, CHORUS_WITH_NCCL: OFF here) are the only ones
  # allowed.
  if(entry MATCHES "CUDA|NVCC|NCCL" AND NOT entry MATCHES "^CHORUS_WITH_(CUDA|NCCL)$")
    message(FATAL_ERROR "consumer: chorus wrote the CUDA cache entry '${entry}' into a "
                        "C++-only consumer's cache")
  endif()
endforeach()

if(CHORUS_CONSUMER_EXPECT_CHORUSRUN AND NOT TARGET chorus::chorusrun)
  message(FATAL_ERROR "consumer: chorus::chorusrun is not defined for a subproject consumer")
endif()

# consumer_test_chorusrun(): the test `chorusrun`: chorusrun -n 2 runs `consumer` twice.
function(consumer_test_chorusrun)
  if(NOT TARGET chorus::chorusrun)
    return()
  endif()
  add_dependencies(consumer chorus::chorusrun)
  add_test(NAME chorusrun COMMAND chorus::chorusrun -n 2 $<TARGET_FILE:consumer>)
  set_tests_properties(chorusrun PROPERTIES PASS_REGULAR_EXPRESSION "consumer: ok.*consumer: ok")
endfunction()

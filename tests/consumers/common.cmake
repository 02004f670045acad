# Shared tail of every consumer project: checks what the consumer sees of chorus, then
# builds consumer.cpp and registers it as the consumer's own test. Included after the
# consumer obtained chorus (add_subdirectory, FetchContent or find_package).

if(NOT TARGET chorus::chorus)
  message(FATAL_ERROR "consumer: chorus::chorus is not defined")
endif()

# A consumer must never build chorus's tests, examples or benchmarks: their options
# default to OFF when chorus is not the top-level project.
foreach(target IN ITEMS chorus_catch_main custom_reduction hello_all_reduce)
  if(TARGET ${target})
    message(FATAL_ERROR "consumer: chorus defined its own target '${target}' inside a "
                        "consumer build; CHORUS_BUILD_* must default to OFF for subprojects")
  endif()
endforeach()
foreach(option IN ITEMS CHORUS_BUILD_TESTS CHORUS_BUILD_EXAMPLES CHORUS_BUILD_BENCH)
  if(${option})
    message(FATAL_ERROR "consumer: ${option} is ON in a consumer build")
  endif()
endforeach()

add_executable(consumer "${CMAKE_CURRENT_LIST_DIR}/consumer.cpp")
target_link_libraries(consumer PRIVATE chorus::chorus)

enable_testing()
add_test(NAME consumer COMMAND consumer)

# chorus::compiled: the optional compiled library (include/chorus/compiled.hpp,
# src/compiled/). A program that includes only <chorus/compiled.hpp> and links it compiles
# its collectives' calls in well under a second of its own; the library compiles the
# header-only collectives once, over shm_transport and, when the ucx component is
# available, ucx_transport. Header-only stays the default: nothing else needs this target.
#
#   CHORUS_COMPILED   build (and install, as the `compiled` component) chorus::compiled;
#                     default ON when chorus is the top-level project, OFF as a subproject
#                     (set it ON before add_subdirectory / FetchContent to use it)
include_guard(GLOBAL)

option(CHORUS_COMPILED "Build the chorus::compiled library (compiled mode)"
       ${PROJECT_IS_TOP_LEVEL})
if(NOT CHORUS_COMPILED)
  return()
endif()

set(_chorus_compiled_sources "${PROJECT_SOURCE_DIR}/src/compiled/communicator.cpp"
                             "${PROJECT_SOURCE_DIR}/src/compiled/shm.cpp")
if(TARGET chorus_ucx)
  list(APPEND _chorus_compiled_sources "${PROJECT_SOURCE_DIR}/src/compiled/ucx.cpp")
else()
  list(APPEND _chorus_compiled_sources "${PROJECT_SOURCE_DIR}/src/compiled/no_ucx.cpp")
endif()

add_library(chorus_compiled STATIC ${_chorus_compiled_sources})
add_library(chorus::compiled ALIAS chorus_compiled)
set_target_properties(chorus_compiled PROPERTIES EXPORT_NAME compiled OUTPUT_NAME chorus-compiled
                                                 POSITION_INDEPENDENT_CODE ON)
target_link_libraries(chorus_compiled PUBLIC chorus)
if(TARGET chorus_ucx)
  # PRIVATE: a program of compiled mode never includes UCX's headers; the static library
  # still carries UCX's link libraries along (as $<LINK_ONLY:...>).
  target_link_libraries(chorus_compiled PRIVATE chorus_ucx)
endif()
if(COMMAND chorus_project_target)
  chorus_project_target(chorus_compiled)
endif()
list(APPEND CHORUS_AVAILABLE_COMPONENTS compiled)
unset(_chorus_compiled_sources)

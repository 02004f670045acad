# The compiled component of the installed chorus package (loaded by chorusConfig.cmake when
# `find_package(chorus CONFIG COMPONENTS compiled)` asks for it): defines chorus::compiled,
# the static library of compiled mode. A library built with UCX needs UCX's libraries at
# link time: the ucx component installed beside it is loaded first. Sets
# chorus_compiled_FOUND.
set(chorus_compiled_FOUND FALSE)
if(EXISTS "${CMAKE_CURRENT_LIST_DIR}/chorus-ucx.cmake")
  include("${CMAKE_CURRENT_LIST_DIR}/chorus-ucx.cmake")
  if(NOT chorus_ucx_FOUND)
    return()
  endif()
endif()
if(NOT TARGET chorus::compiled)
  include("${CMAKE_CURRENT_LIST_DIR}/chorus-compiled-targets.cmake")
endif()
set(chorus_compiled_FOUND TRUE)

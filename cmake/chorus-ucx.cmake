# The ucx component of the installed chorus package (loaded by chorusConfig.cmake when
# `find_package(chorus CONFIG COMPONENTS ucx)` asks for it): finds UCX's own CMake package
# and defines chorus::ucx. Sets chorus_ucx_FOUND.
set(chorus_ucx_FOUND FALSE)
if(NOT TARGET ucx::ucp)
  find_package(ucx CONFIG QUIET)
endif()
if(TARGET ucx::ucp)
  if(NOT TARGET chorus::ucx)
    include("${CMAKE_CURRENT_LIST_DIR}/chorus-ucx-targets.cmake")
  endif()
  set(chorus_ucx_FOUND TRUE)
endif()

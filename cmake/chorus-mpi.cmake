# The mpi component of the installed chorus package (loaded by chorusConfig.cmake when
# `find_package(chorus CONFIG COMPONENTS mpi)` asks for it): finds MPI (its C API, through
# FindMPI's CXX component) and defines chorus::mpi (bootstrap/mpi.hpp). Sets chorus_mpi_FOUND.
set(chorus_mpi_FOUND FALSE)
if(NOT TARGET MPI::MPI_CXX)
  find_package(MPI COMPONENTS CXX QUIET)
endif()
if(TARGET MPI::MPI_CXX)
  if(NOT TARGET chorus::mpi)
    include("${CMAKE_CURRENT_LIST_DIR}/chorus-mpi-targets.cmake")
  endif()
  set(chorus_mpi_FOUND TRUE)
endif()

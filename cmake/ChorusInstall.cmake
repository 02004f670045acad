# Install rules and the CMake package for chorus (included by the top-level CMakeLists.txt
# when CHORUS_INSTALL is ON).
#
# Installed layout, under the install prefix:
#   include/chorus/...                      the headers (CMAKE_INSTALL_INCLUDEDIR)
#   lib/cmake/chorus/chorusConfig.cmake     entry point of find_package(chorus CONFIG)
#   lib/cmake/chorus/chorusConfigVersion.cmake
#   lib/cmake/chorus/chorusTargets.cmake    the imported target chorus::chorus
#   lib/cmake/chorus/chorus-ucx.cmake       the ucx component (when built): finds UCX and
#   lib/cmake/chorus/chorus-ucx-targets.cmake   loads chorus::ucx
#   lib/cmake/chorus/chorus-mpi.cmake       the mpi component (when built): finds MPI (C)
#   lib/cmake/chorus/chorus-mpi-targets.cmake   and loads chorus::mpi
#   lib/cmake/chorus/chorus-cuda.cmake      the cuda component (when built): finds the CUDA
#   lib/cmake/chorus/chorus-cuda-targets.cmake  toolkit and loads chorus::cuda
#   lib/cmake/chorus/chorus-nccl.cmake      the nccl component (when built): finds the CUDA
#   lib/cmake/chorus/chorus-nccl-targets.cmake  toolkit and NCCL (its own package, else
#   lib/cmake/chorus/FindNCCL.cmake             FindNCCL.cmake) and loads chorus::nccl
#   lib/cmake/chorus/chorus-compiled.cmake  the compiled component (CHORUS_COMPILED): loads
#   lib/cmake/chorus/chorus-compiled-targets.cmake  chorus::compiled (and ucx's, if built
#   lib/libchorus-compiled.a                        with it) and its static library

include_guard(GLOBAL)
include(CMakePackageConfigHelpers)

set(CHORUS_INSTALL_CMAKEDIR
    "${CMAKE_INSTALL_LIBDIR}/cmake/chorus"
    CACHE STRING "Where chorus's CMake package files are installed, relative to the prefix")
mark_as_advanced(CHORUS_INSTALL_CMAKEDIR)

install(TARGETS chorus EXPORT chorusTargets)
install(DIRECTORY "${PROJECT_SOURCE_DIR}/include/" DESTINATION "${CMAKE_INSTALL_INCLUDEDIR}")
install(
  EXPORT chorusTargets
  NAMESPACE chorus::
  DESTINATION "${CHORUS_INSTALL_CMAKEDIR}")

configure_package_config_file(
  "${PROJECT_SOURCE_DIR}/cmake/chorusConfig.cmake.in"
  "${PROJECT_BINARY_DIR}/chorusConfig.cmake"
  INSTALL_DESTINATION "${CHORUS_INSTALL_CMAKEDIR}"
  NO_SET_AND_CHECK_MACRO)

# Headers only: the package fits any architecture, so no pointer-size check. 0.x releases
# are compatible within the same major version as far as CMake is concerned; the library
# itself marks breaking changes with its inline namespace (chorus::v0).
write_basic_package_version_file(
  "${PROJECT_BINARY_DIR}/chorusConfigVersion.cmake"
  VERSION "${PROJECT_VERSION}"
  COMPATIBILITY SameMajorVersion
  ARCH_INDEPENDENT)

install(FILES "${PROJECT_BINARY_DIR}/chorusConfig.cmake"
              "${PROJECT_BINARY_DIR}/chorusConfigVersion.cmake"
        DESTINATION "${CHORUS_INSTALL_CMAKEDIR}")

# Each optional component: its target in an export set of its own
# (chorus-<name>-targets.cmake) and the file chorusConfig.cmake loads only when the
# component is asked for (cmake/chorus-<name>.cmake), plus any helper modules it needs.
function(chorus_install_component name)
  if(NOT TARGET chorus_${name})
    return()
  endif()
  chorus_install_binary(chorus_${name} EXPORT chorus_${name}_targets)
  install(
    EXPORT chorus_${name}_targets
    NAMESPACE chorus::
    FILE chorus-${name}-targets.cmake
    DESTINATION "${CHORUS_INSTALL_CMAKEDIR}")
  list(TRANSFORM ARGN PREPEND "${PROJECT_SOURCE_DIR}/cmake/")
  install(FILES "${PROJECT_SOURCE_DIR}/cmake/chorus-${name}.cmake" ${ARGN}
          DESTINATION "${CHORUS_INSTALL_CMAKEDIR}")
endfunction()

chorus_install_component(ucx)
chorus_install_component(mpi)
chorus_install_component(cuda)
# NCCL has no CMake package of its own in the CUDA toolkit: FindNCCL.cmake travels along.
chorus_install_component(nccl FindNCCL.cmake)
chorus_install_component(compiled)

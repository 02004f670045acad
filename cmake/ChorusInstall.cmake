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
#   lib/cmake/chorus/chorus-cuda.cmake      the cuda component (when built): finds the CUDA
#   lib/cmake/chorus/chorus-cuda-targets.cmake  toolkit and loads chorus::cuda

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

# The ucx component: its own export set, loaded by chorusConfig.cmake only when asked for.
if(TARGET chorus_ucx)
  install(TARGETS chorus_ucx EXPORT chorusUcxTargets)
  install(
    EXPORT chorusUcxTargets
    NAMESPACE chorus::
    FILE chorus-ucx-targets.cmake
    DESTINATION "${CHORUS_INSTALL_CMAKEDIR}")
  install(FILES "${PROJECT_SOURCE_DIR}/cmake/chorus-ucx.cmake"
          DESTINATION "${CHORUS_INSTALL_CMAKEDIR}")
endif()

# The cuda component, likewise.
if(TARGET chorus_cuda)
  install(TARGETS chorus_cuda EXPORT chorusCudaTargets)
  install(
    EXPORT chorusCudaTargets
    NAMESPACE chorus::
    FILE chorus-cuda-targets.cmake
    DESTINATION "${CHORUS_INSTALL_CMAKEDIR}")
  install(FILES "${PROJECT_SOURCE_DIR}/cmake/chorus-cuda.cmake"
          DESTINATION "${CHORUS_INSTALL_CMAKEDIR}")
endif()

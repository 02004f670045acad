# chorus::nccl: the NCCL transport (transport/nccl.hpp), host code linked with NCCL and the
# CUDA runtime -- nvcc is needed only for chorus's own reducing algorithms on device
# buffers (device/collectives.cuh), which tests/nccl builds when CUDA is enabled. NCCL is
# found through its own CMake package where it has one, else cmake/FindNCCL.cmake (the CUDA
# toolkit's copy, NCCL_ROOT). Without the CUDA toolkit or NCCL the component is skipped.
# Default ON only when chorus is the top-level project (see CHORUS_WITH_CUDA).
option(CHORUS_WITH_NCCL "Build the nccl component when NCCL and the CUDA toolkit are found"
       ${PROJECT_IS_TOP_LEVEL})
if(CHORUS_WITH_NCCL)
  if(NOT CUDAToolkit_FOUND)
    find_package(CUDAToolkit QUIET)
  endif()
  if(CUDAToolkit_FOUND AND NOT TARGET NCCL::NCCL)
    find_package(NCCL CONFIG QUIET)
    if(NOT TARGET NCCL::NCCL)
      find_package(NCCL MODULE QUIET)
    endif()
  endif()
  if(CUDAToolkit_FOUND AND TARGET NCCL::NCCL)
    add_library(chorus_nccl INTERFACE)
    add_library(chorus::nccl ALIAS chorus_nccl)
    set_target_properties(chorus_nccl PROPERTIES EXPORT_NAME nccl)
    target_link_libraries(chorus_nccl INTERFACE chorus CUDA::cudart NCCL::NCCL)
    list(APPEND CHORUS_AVAILABLE_COMPONENTS nccl)
    message(STATUS "chorus: NCCL ${NCCL_VERSION} found: the nccl component is available")
  else()
    message(STATUS "chorus: NCCL or the CUDA toolkit not found; the nccl component, its tests "
                   "and chorus-perf --transport nccl are skipped (set NCCL_ROOT or "
                   "CUDAToolkit_ROOT)")
  endif()
endif()

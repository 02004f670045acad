# The cuda component of the installed chorus package (loaded by chorusConfig.cmake when
# `find_package(chorus CONFIG COMPONENTS cuda)` asks for it): finds the CUDA toolkit
# (CUDA::cudart) and defines chorus::cuda. Sets chorus_cuda_FOUND. The consumer enables the
# CUDA language itself (`enable_language(CUDA)`) for the targets that include the kernels
# (include/chorus/device/*.cuh); host-only targets using device/runtime.hpp need nothing
# more than linking chorus::cuda.
set(chorus_cuda_FOUND FALSE)
if(NOT TARGET CUDA::cudart)
  find_package(CUDAToolkit QUIET)
endif()
if(TARGET CUDA::cudart)
  if(NOT TARGET chorus::cuda)
    include("${CMAKE_CURRENT_LIST_DIR}/chorus-cuda-targets.cmake")
  endif()
  set(chorus_cuda_FOUND TRUE)
endif()

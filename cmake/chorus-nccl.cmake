# The nccl component of the installed chorus package (loaded by chorusConfig.cmake when
# `find_package(chorus CONFIG COMPONENTS nccl)` asks for it): finds the CUDA toolkit and
# NCCL (its own package, else the FindNCCL.cmake installed beside this file) and defines
# chorus::nccl. Sets chorus_nccl_FOUND.
set(chorus_nccl_FOUND FALSE)
if(NOT TARGET CUDA::cudart)
  find_package(CUDAToolkit QUIET)
endif()
if(NOT TARGET NCCL::NCCL)
  find_package(NCCL CONFIG QUIET)
endif()
if(NOT TARGET NCCL::NCCL)
  list(PREPEND CMAKE_MODULE_PATH "${CMAKE_CURRENT_LIST_DIR}")
  find_package(NCCL MODULE QUIET)
  list(POP_FRONT CMAKE_MODULE_PATH)
endif()
if(TARGET CUDA::cudart AND TARGET NCCL::NCCL)
  if(NOT TARGET chorus::nccl)
    include("${CMAKE_CURRENT_LIST_DIR}/chorus-nccl-targets.cmake")
  endif()
  set(chorus_nccl_FOUND TRUE)
endif()

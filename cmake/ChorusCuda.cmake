# The cuda component (included by the top-level CMakeLists.txt when CHORUS_WITH_CUDA is ON):
# finds nvcc and the CUDA toolkit, enables the CUDA language, and defines
#
#   chorus::cuda (target chorus_cuda)  INTERFACE: chorus + CUDA::cudart; kernels in
#                                      include/chorus/device/*.cuh need nvcc, the host side
#                                      (device/runtime.hpp) any C++ compiler
#   chorus_cuda_target(<target>)       settings for chorus's OWN CUDA targets (tests, bench)
#
# Without a CUDA compiler or toolkit nothing is defined and one STATUS line says so.

include_guard(GLOBAL)

# nvcc is usually not on PATH (/usr/local/cuda/bin). Look in the usual places when the user
# named no compiler, so that a plain configure finds the toolkit.
if(NOT DEFINED CMAKE_CUDA_COMPILER AND NOT DEFINED ENV{CUDACXX})
  find_program(
    CHORUS_NVCC nvcc
    HINTS "$ENV{CUDA_PATH}/bin" "$ENV{CUDA_HOME}/bin"
    PATHS /usr/local/cuda/bin)
  mark_as_advanced(CHORUS_NVCC)
  if(CHORUS_NVCC)
    set(CMAKE_CUDA_COMPILER "${CHORUS_NVCC}")
  endif()
endif()

# sm_90 machine code plus compute_90 PTX (the driver compiles the PTX for newer GPUs). Set
# CMAKE_CUDA_ARCHITECTURES to override, e.g. "80-real;90-real;90-virtual" or "native".
if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
  set(CMAKE_CUDA_ARCHITECTURES
      "90-real;90-virtual"
      CACHE STRING "CUDA architectures for chorus's kernels (default: sm_90 + PTX)")
endif()

include(CheckLanguage)
check_language(CUDA)
if(CMAKE_CUDA_COMPILER)
  # The same launcher as C++ (ccache knows nvcc): the tests' kernels compile once per cache.
  if(PROJECT_IS_TOP_LEVEL
     AND CHORUS_CCACHE_PROGRAM
     AND NOT DEFINED CMAKE_CUDA_COMPILER_LAUNCHER
     AND NOT DEFINED ENV{CMAKE_CUDA_COMPILER_LAUNCHER})
    set(CMAKE_CUDA_COMPILER_LAUNCHER "${CHORUS_CCACHE_PROGRAM}")
  endif()
  enable_language(CUDA)
  find_package(CUDAToolkit QUIET)
endif()

if(NOT CMAKE_CUDA_COMPILER OR NOT TARGET CUDA::cudart)
  message(STATUS "chorus: no CUDA toolkit found (nvcc: set CMAKE_CUDA_COMPILER or CUDACXX); "
                 "the cuda component, its tests and bench/micro/device_reduce are skipped")
  return()
endif()

add_library(chorus_cuda INTERFACE)
add_library(chorus::cuda ALIAS chorus_cuda)
set_target_properties(chorus_cuda PROPERTIES EXPORT_NAME cuda)
target_link_libraries(chorus_cuda INTERFACE chorus CUDA::cudart)
list(APPEND CHORUS_AVAILABLE_COMPONENTS cuda)
message(STATUS "chorus: CUDA ${CUDAToolkit_VERSION} found (nvcc ${CMAKE_CUDA_COMPILER}, "
               "architectures ${CMAKE_CUDA_ARCHITECTURES}): the cuda component is available")

# chorus_cuda_target(<target>): for chorus's own targets made of .cu sources only (keep
# host C++ in separate targets: chorus_project_target's flags are for C++ compilers, and
# nvcc rejects -Wpedantic and friends). C++20 for nvcc, the host compiler's -Wall -Wextra
# through -Xcompiler, and with CHORUS_WERROR every warning (nvcc's own included) an error.
#
# Warning 550 ("variable set but never used") is silenced: nvcc's front end reports it for
# core/float16.hpp's cpuid helper, whose asm output is written and ignored on
# purpose; the host compiler still checks unused variables in host code.
function(chorus_cuda_target target)
  if(DEFINED CMAKE_CUDA20_STANDARD_COMPILE_OPTION)
    set_target_properties("${target}" PROPERTIES CUDA_STANDARD 20 CUDA_STANDARD_REQUIRED ON
                                                 CUDA_EXTENSIONS OFF)
  else()
    # CMake before 3.26 knows no C++20 flag for nvcc (CUDA_STANDARD 20 fails to generate).
    target_compile_options("${target}" PRIVATE $<$<COMPILE_LANGUAGE:CUDA>:-std=c++20>)
  endif()
  target_link_libraries("${target}" PRIVATE chorus::cuda)
  target_compile_options(
    "${target}" PRIVATE $<$<COMPILE_LANGUAGE:CUDA>:-Xcompiler=-Wall,-Wextra -diag-suppress=550>
                        $<$<AND:$<COMPILE_LANGUAGE:CUDA>,$<BOOL:${CHORUS_WERROR}>>:-Werror=all-warnings>)
endfunction()

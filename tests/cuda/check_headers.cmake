# cmake -DINCLUDE_DIR=<repo>/include -P check_headers.cmake
# Fails when a host header (*.hpp) includes a .cuh or defines a kernel (__global__): host
# code compiled by a C++ compiler must never reach device code (docs/gpu.md).
file(GLOB_RECURSE headers "${INCLUDE_DIR}/chorus/*.hpp")
set(bad "")
foreach(header IN LISTS headers)
  file(STRINGS "${header}" lines REGEX "#[ \t]*include[ \t]*[<\"][^>\"]*\\.cuh[>\"]|__global__")
  if(lines)
    file(RELATIVE_PATH name "${INCLUDE_DIR}" "${header}")
    string(APPEND bad "  ${name}: ${lines}\n")
  endif()
endforeach()
list(LENGTH headers count)
if(bad)
  message(FATAL_ERROR "host headers that reach device code:\n${bad}")
endif()
message(STATUS "${count} host headers checked: none includes a .cuh or defines a kernel")

# Checks that no header of include/chorus includes a header of a higher layer.
#
#   cmake -DINCLUDE_DIR=<repo>/include -P cmake/check_layering.cmake
#
# The layers, lowest first. A header may include its own layer's headers and any lower
# layer's; layers on the same rank (compress, zero, group) may not include each other.
# Fails naming every offending file, line and include, with both layers.
cmake_minimum_required(VERSION 3.20)

if(NOT INCLUDE_DIR)
  message(FATAL_ERROR "check_layering: pass -DINCLUDE_DIR=<repo>/include")
endif()

# <layer name>|<rank>|<path prefixes relative to include/chorus, comma-separated>
set(layers
  "base|0|config.hpp,version.hpp"
  "core|1|core/"
  "schedule|2|schedule/"
  "bootstrap|3|bootstrap/"
  "transport contract and kit|4|transport/contract.hpp,transport/kit/"
  "communicator|5|communicator.hpp"
  "transport backends|6|transport/"
  "exec|7|exec/"
  "dispatch|8|dispatch/"
  "collectives|9|collectives/"
  "compress|10|compress/"
  "zero|10|zero/"
  "group|10|group/"
  "tuning|10|tuning/"
  "device|11|device/"
  "umbrella headers|12|chorus.hpp,compress/compress.hpp,zero/zero.hpp"
  "compiled mode|12|compiled.hpp")

# layer_of(<path> <out name> <out rank>): the layer whose longest prefix matches <path>.
function(layer_of path out_name out_rank)
  set(best_len -1)
  set(best_name "")
  set(best_rank "")
  foreach(entry IN LISTS layers)
    string(REPLACE "|" ";" parts "${entry}")
    list(GET parts 0 name)
    list(GET parts 1 rank)
    list(GET parts 2 prefixes)
    string(REPLACE "," ";" prefixes "${prefixes}")
    foreach(prefix IN LISTS prefixes)
      string(LENGTH "${prefix}" len)
      string(SUBSTRING "${path}" 0 ${len} head)
      if(head STREQUAL prefix AND len GREATER best_len)
        set(best_len ${len})
        set(best_name "${name}")
        set(best_rank ${rank})
      endif()
    endforeach()
  endforeach()
  set(${out_name} "${best_name}" PARENT_SCOPE)
  set(${out_rank} "${best_rank}" PARENT_SCOPE)
endfunction()

file(GLOB_RECURSE headers RELATIVE "${INCLUDE_DIR}/chorus" "${INCLUDE_DIR}/chorus/*.hpp"
     "${INCLUDE_DIR}/chorus/*.cuh")
list(SORT headers)
set(problems "")
set(checked 0)
foreach(header IN LISTS headers)
  layer_of("${header}" from_name from_rank)
  if(from_name STREQUAL "")
    string(APPEND problems "  include/chorus/${header}: in no layer; add its folder to "
                           "cmake/check_layering.cmake\n")
    continue()
  endif()
  file(STRINGS "${INCLUDE_DIR}/chorus/${header}" lines)
  set(number 0)
  foreach(line IN LISTS lines)
    math(EXPR number "${number} + 1")
    if(NOT line MATCHES "^[ \t]*#[ \t]*include[ \t]*<chorus/([^>]+)>")
      continue()
    endif()
    set(target "${CMAKE_MATCH_1}")
    math(EXPR checked "${checked} + 1")
    layer_of("${target}" to_name to_rank)
    if(to_name STREQUAL "")
      string(APPEND problems "  include/chorus/${header}:${number}: includes <chorus/${target}>, "
                             "which is in no layer\n")
    elseif(to_rank GREATER from_rank OR
           (to_rank EQUAL from_rank AND NOT to_name STREQUAL from_name))
      string(APPEND problems
             "  include/chorus/${header}:${number}: includes <chorus/${target}>: layer "
             "'${from_name}' (${from_rank}) must not include layer '${to_name}' (${to_rank})\n")
    endif()
  endforeach()
endforeach()

list(LENGTH headers count)
if(NOT problems STREQUAL "")
  message(FATAL_ERROR "check_layering: headers include higher layers:\n${problems}"
                      "A header may include only its own layer and lower ones (docs/design.md).")
endif()
message(STATUS "check_layering: ${count} headers, ${checked} chorus includes, all downward")

# Reads the library version out of include/chorus/version.hpp, the one place it is written.
#
#   chorus_read_version(<header> <out-var>)
#
# Sets <out-var> to "MAJOR.MINOR.PATCH" in the caller's scope. Fails the configure step with
# a message naming the header when one of the three macros is missing, rather than letting
# project() run with an empty or partial version.

function(chorus_read_version header out_var)
  file(STRINGS "${header}" lines REGEX "^#define CHORUS_VERSION_(MAJOR|MINOR|PATCH) +[0-9]+")
  set(version "")
  foreach(part IN ITEMS MAJOR MINOR PATCH)
    set(value "")
    foreach(line IN LISTS lines)
      if(line MATCHES "^#define CHORUS_VERSION_${part} +([0-9]+)")
        set(value "${CMAKE_MATCH_1}")
      endif()
    endforeach()
    if(value STREQUAL "")
      message(FATAL_ERROR "chorus: ${header} does not define CHORUS_VERSION_${part} "
                          "as a plain integer; cannot determine the project version.")
    endif()
    list(APPEND version "${value}")
  endforeach()
  list(JOIN version "." version)
  set(${out_var} "${version}" PARENT_SCOPE)
endfunction()

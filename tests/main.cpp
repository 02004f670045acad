// The one Catch2 main shared by every test executable (target chorus_catch_main), compiled
// once: catch.hpp's runner is the slowest translation unit of the test suite.
#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>

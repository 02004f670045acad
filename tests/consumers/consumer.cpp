// The program every consumer test builds (add_subdirectory, FetchContent, find_package):
// the smallest real use of the public API. It must compile with nothing but
// `target_link_libraries(... chorus::chorus)`, and print "chorus <version> consumer: ok".
#include <atomic>
#include <chorus/chorus.hpp>
#include <cstdio>
#include <span>
#include <vector>

int main() {
  std::atomic<int> bad = 0;  // ranks are threads; each adds its own mismatches
  chorus::inproc::run(3, [&](chorus::inproc_communicator& comm) {
    std::vector<int> v(5, comm.rank() + 1);
    chorus::all_reduce(comm, std::span{v}, chorus::plus{});
    for (int x : v) {
      if (x != 6) ++bad;  // 1 + 2 + 3
    }
  });
  std::printf("chorus %s consumer: %s\n", CHORUS_VERSION_STRING, bad ? "FAILED" : "ok");
  return bad ? 1 : 0;
}

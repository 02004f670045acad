// Reducing with chorus's algorithms on a stream needs the stream's reduction kernels
// (for CUDA streams: chorus/device/collectives.cuh, compiled by nvcc); without them the
// error says what to include. Collectives that only move data need none (the control).
#define FAKE_STREAM_NO_KERNELS
#include "../stream/fake_stream.hpp"

#include <chorus/chorus.hpp>

void call(chorus::communicator<fake::transport>& comm, fake::stream* s) {
  std::vector<float> v(8), all(16);
#ifdef CHORUS_COMPILE_FAIL_CONTROL
  chorus::all_gather(comm, std::span<const float>(v), all, s, chorus::algo::ring{});
#else
  chorus::all_reduce(comm, v, chorus::plus{}, s, chorus::algo::ring{});
#endif
}

int main() {}

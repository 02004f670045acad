// A compute type other than float, half or bfloat16 is a compile error with a sentence.
#include <chorus/chorus.hpp>
#include <chorus/zero/zero.hpp>

namespace zero = chorus::zero;
#ifdef CHORUS_COMPILE_FAIL_CONTROL
using compute = chorus::half;
#else
using compute = int;
#endif
using driver = zero::sharded_optimizer<chorus::inproc_transport, zero::stage<2>, zero::flat,
                                       zero::adamw, compute>;

void call(chorus::inproc_communicator& comm) { driver d(comm, {4, 5}); }

int main() {}

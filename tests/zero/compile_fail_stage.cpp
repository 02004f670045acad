// A ZeRO stage other than 0..3 is a compile error with a sentence.
#include <chorus/chorus.hpp>
#include <chorus/zero/zero.hpp>

#ifdef CHORUS_COMPILE_FAIL_CONTROL
using driver = chorus::zero::sharded_optimizer<chorus::inproc_transport, chorus::zero::stage<3>>;
#else
using driver = chorus::zero::sharded_optimizer<chorus::inproc_transport, chorus::zero::stage<4>>;
#endif

void call(chorus::inproc_communicator& comm) { driver d(comm, {4, 5}); }

int main() {}

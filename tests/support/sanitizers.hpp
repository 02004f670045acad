#pragma once
// Whether the test build runs under AddressSanitizer (tools/test --sanitize=address,...):
// the tests that sweep large matrices run a representative part of them there, and the
// plain build runs them whole.
#if defined(__SANITIZE_ADDRESS__)
#define CHORUS_TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CHORUS_TEST_ASAN 1
#endif
#endif
#ifndef CHORUS_TEST_ASAN
#define CHORUS_TEST_ASAN 0
#endif

namespace harness {

/// Whether this build runs under AddressSanitizer.
inline constexpr bool address_sanitizer = CHORUS_TEST_ASAN != 0;

}  // namespace harness

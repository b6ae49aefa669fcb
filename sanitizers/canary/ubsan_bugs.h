// SPDX-License-Identifier: GPL-2.0-only
// Deliberate bugs for the UBSan canaries. They live in a cc_library of their own, apart from the
// canary binaries that call them: a configuration that instruments a binary's own sources but not
// its dependencies does not catch them, and the canary turns red.
#ifndef ZFUZZ_SANITIZERS_CANARY_UBSAN_BUGS_H_
#define ZFUZZ_SANITIZERS_CANARY_UBSAN_BUGS_H_

#include <cstddef>

namespace zfuzz_canary {

// UBSan: a + b in int arithmetic (signed integer overflow for a = INT_MAX, b = 1).
int AddInts(int a, int b);

// UBSan: loads an int from `offset` bytes into an int-aligned buffer (misaligned for offset 1).
int LoadIntAt(std::size_t offset);

}  // namespace zfuzz_canary

#endif  // ZFUZZ_SANITIZERS_CANARY_UBSAN_BUGS_H_

// SPDX-License-Identifier: GPL-2.0-only
// Deliberate bugs for the TSan canaries. They live in a cc_library of their own, apart from the
// canary binaries that call them: a configuration that instruments a binary's own sources but not
// its dependencies does not catch them, and the canary turns red.
#ifndef ZFUZZ_SANITIZERS_CANARY_TSAN_BUGS_H_
#define ZFUZZ_SANITIZERS_CANARY_TSAN_BUGS_H_

#include <cstddef>

namespace zfuzz_canary {

// TSan: two threads increment a plain (non-atomic) counter `iterations` times each.
long RaceOnCounter(long iterations);

}  // namespace zfuzz_canary

#endif  // ZFUZZ_SANITIZERS_CANARY_TSAN_BUGS_H_

// SPDX-License-Identifier: GPL-2.0-only
// Deliberate bugs for the MSan canaries. They live in a cc_library of their own, apart from the
// canary binaries that call them: a configuration that instruments a binary's own sources but not
// its dependencies does not catch them, and the canary turns red.
#ifndef ZFUZZ_SANITIZERS_CANARY_MSAN_BUGS_H_
#define ZFUZZ_SANITIZERS_CANARY_MSAN_BUGS_H_

#include <cstddef>

namespace zfuzz_canary {

// MSan: stores `size` uninitialised bytes in a std::string inside a std::map<std::string,
// std::string>, reads them back and branches on one of them (use-of-uninitialized-value).
int BranchOnUninitialisedString(std::size_t size);

}  // namespace zfuzz_canary

#endif  // ZFUZZ_SANITIZERS_CANARY_MSAN_BUGS_H_

// SPDX-License-Identifier: GPL-2.0-only
// Canary: MSan must stop this program with "WARNING: MemorySanitizer: use-of-uninitialized-value".
// Usage: msan_uninit_canary [SIZE]
#include <cstdio>

#include "sanitizers/canary/msan_bugs.h"
#include "sanitizers/canary/canary_input.h"

int main(int argc, char** argv) {
  long size = zfuzz_canary::Arg(argc, argv, 1, 40);
  zfuzz_canary::BranchOnUninitialisedString(static_cast<std::size_t>(size));
  std::printf("canary: branched on uninitialised bytes of a %ld-byte string and nothing stopped "
              "it\n", size);
  return 0;
}

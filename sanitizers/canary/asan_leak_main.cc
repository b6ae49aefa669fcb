// SPDX-License-Identifier: GPL-2.0-only
// Canary: LeakSanitizer (part of ASan) must report "ERROR: LeakSanitizer: detected memory leaks"
// at exit and make the process exit non-zero.
// Usage: asan_leak_canary [SIZE] [COUNT]
#include <cstdio>

#include "sanitizers/canary/asan_bugs.h"
#include "sanitizers/canary/canary_input.h"

int main(int argc, char** argv) {
  long size = zfuzz_canary::Arg(argc, argv, 1, 37);
  long count = zfuzz_canary::Arg(argc, argv, 2, 4);
  zfuzz_canary::LeakMemory(static_cast<std::size_t>(size), static_cast<int>(count));
  std::printf("canary: leaked %ld blocks of %ld bytes; a leak report must follow at exit\n", count,
              size);
  return 0;
}

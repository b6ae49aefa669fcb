// SPDX-License-Identifier: GPL-2.0-only
// Canary: ASan must stop this program with "ERROR: AddressSanitizer: alloc-dealloc-mismatch".
// Usage: asan_alloc_dealloc_mismatch_canary [SIZE]
#include <cstdio>

#include "sanitizers/canary/asan_bugs.h"
#include "sanitizers/canary/canary_input.h"

int main(int argc, char** argv) {
  long size = zfuzz_canary::Arg(argc, argv, 1, 21);
  zfuzz_canary::NewArrayThenFree(static_cast<std::size_t>(size));
  std::printf("canary: released a %ld-byte new[] block with free() and nothing stopped it\n",
              size);
  return 0;
}

// SPDX-License-Identifier: GPL-2.0-only
// Canary: ASan must stop this program with "ERROR: AddressSanitizer: heap-buffer-overflow".
// Usage: asan_heap_overflow_canary [SIZE]
#include <cstdio>

#include "sanitizers/canary/asan_bugs.h"
#include "sanitizers/canary/canary_input.h"

int main(int argc, char** argv) {
  long size = zfuzz_canary::Arg(argc, argv, 1, 13);
  int value = zfuzz_canary::HeapOverflowRead(static_cast<std::size_t>(size));
  std::printf("canary: read %d past a %ld-byte heap block and nothing stopped it\n", value, size);
  return 0;
}

// SPDX-License-Identifier: GPL-2.0-only
// Canary: UBSan must stop this program with "runtime error: load of misaligned address".
// Usage: ubsan_misaligned_load_canary [OFFSET]   (default 1)
#include <cstdio>

#include "sanitizers/canary/ubsan_bugs.h"
#include "sanitizers/canary/canary_input.h"

int main(int argc, char** argv) {
  long offset = zfuzz_canary::Arg(argc, argv, 1, 1);
  int value = zfuzz_canary::LoadIntAt(static_cast<std::size_t>(offset));
  std::printf("canary: loaded %d from offset %ld of an int buffer and nothing stopped it\n", value,
              offset);
  return 0;
}

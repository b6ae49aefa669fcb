// SPDX-License-Identifier: GPL-2.0-only
// Canary: UBSan must stop this program with "runtime error: signed integer overflow".
// Usage: ubsan_signed_overflow_canary [A] [B]   (default INT_MAX + 1)
#include <climits>
#include <cstdio>

#include "sanitizers/canary/ubsan_bugs.h"
#include "sanitizers/canary/canary_input.h"

int main(int argc, char** argv) {
  int a = static_cast<int>(zfuzz_canary::Arg(argc, argv, 1, INT_MAX));
  int b = static_cast<int>(zfuzz_canary::Arg(argc, argv, 2, 1));
  int sum = zfuzz_canary::AddInts(a, b);
  std::printf("canary: %d + %d = %d and nothing stopped it\n", a, b, sum);
  return 0;
}

// SPDX-License-Identifier: GPL-2.0-only
#include <cstring>

#include "sanitizers/canary/ubsan_bugs.h"

namespace zfuzz_canary {

int AddInts(int a, int b) {
  return a + b;  // BUG: signed integer overflow for a = INT_MAX, b > 0.
}

int LoadIntAt(std::size_t offset) {
  alignas(int) char buffer[4 * sizeof(int)];
  std::memset(buffer, 1, sizeof(buffer));
  const int* p = reinterpret_cast<const int*>(buffer + offset);
  return *p;  // BUG: misaligned load when offset % alignof(int) != 0.
}

}  // namespace zfuzz_canary

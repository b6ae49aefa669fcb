// SPDX-License-Identifier: GPL-2.0-only
#include <cstdlib>
#include <cstring>

#include "sanitizers/canary/asan_bugs.h"

namespace zfuzz_canary {

// Where LeakMemory parks each pointer before dropping it: a volatile store keeps the allocation
// observable, so the compiler cannot delete the new/delete pair as unused.
void* volatile g_leak_sink;

int HeapOverflowRead(std::size_t size) {
  char* block = new char[size];
  std::memset(block, 'a', size);
  const volatile char* p = block;
  int value = p[size];  // BUG: one byte past the end of the block.
  delete[] block;
  return value;
}

void LeakMemory(std::size_t size, int count) {
  for (int i = 0; i < count; ++i) {
    char* block = new char[size];
    std::memset(block, i, size);
    g_leak_sink = block;  // BUG: overwritten next iteration; nothing ever frees the block.
  }
  g_leak_sink = nullptr;
}

void NewArrayThenFree(std::size_t size) {
  char* block = new char[size];
  std::memset(block, 'b', size);
  void* volatile opaque = block;
  std::free(opaque);  // BUG: new[] must be released with delete[].
}

}  // namespace zfuzz_canary

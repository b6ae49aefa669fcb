// SPDX-License-Identifier: GPL-2.0-only
#include <thread>

#include "sanitizers/canary/tsan_bugs.h"

namespace zfuzz_canary {

// BUG: shared by two threads without atomics or a lock.
long g_racy_counter;

namespace {

void Bump(long iterations) {
  for (long i = 0; i < iterations; ++i) g_racy_counter++;
}

}  // namespace

long RaceOnCounter(long iterations) {
  std::thread a(Bump, iterations);
  std::thread b(Bump, iterations);
  a.join();
  b.join();
  return g_racy_counter;
}

}  // namespace zfuzz_canary

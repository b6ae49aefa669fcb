// SPDX-License-Identifier: GPL-2.0-only
// Canary: TSan must stop this program with "WARNING: ThreadSanitizer: data race".
// Usage: tsan_data_race_canary [ITERATIONS]
#include <cstdio>

#include "sanitizers/canary/tsan_bugs.h"
#include "sanitizers/canary/canary_input.h"

int main(int argc, char** argv) {
  long iterations = zfuzz_canary::Arg(argc, argv, 1, 1000);
  long total = zfuzz_canary::RaceOnCounter(iterations);
  std::printf("canary: two threads raced on a counter (final value %ld) and nothing stopped it\n",
              total);
  return 0;
}

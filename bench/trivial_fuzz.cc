// SPDX-License-Identifier: GPL-2.0-only
// The ceiling for fuzzing throughput: a target that does (almost) nothing, built and run exactly
// like the real fuzz targets (same engines, same configs), so that `tools/zfuzz bench` can show
// each target's execs/s beside the most the engine can do on this machine.
#include <stddef.h>
#include <stdint.h>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  // One branch on the input, so that the engine sees some coverage and keeps going.
  volatile int sink = 0;
  if (size > 0 && data[0] == 'z') sink = 1;
  (void)sink;
  return 0;
}

// SPDX-License-Identifier: GPL-2.0-only
// zbud_api_fuzz: legal zbud API sequences (create/destroy, alloc of every size class of interest,
// free, map with write/verify, reclaim with evict callbacks that free, refuse or free some,
// page counts, CPU changes, fault injection) against the shadow model of fuzz/api/program.h,
// under the abort warning policy: any WARN, lost byte, wrong error code or leak is a finding.
#include "fuzz/api/program.h"

extern "C" int LLVMFuzzerInitialize(int *, char ***) {
  zfuzz::InitializeHarness(KC_WARN_ABORT);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static const zfuzz::ProgramOptions options = {.kinds = {zfuzz::Kind::kZbud}};
  zfuzz::RunProgram(data, size, options);
  return 0;
}

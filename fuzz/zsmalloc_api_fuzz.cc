// SPDX-License-Identifier: GPL-2.0-only
// zsmalloc_api_fuzz: legal zsmalloc API sequences (create/destroy, malloc biased to class
// boundaries, spanning sizes, huge classes and the maxima, free, map in RW/RO/WO with
// write/verify, compaction with exact page accounting, CPU changes, fault injection) against the
// shadow model of fuzz/api/program.h, under the abort warning policy.
#include "fuzz/api/program.h"

extern "C" int LLVMFuzzerInitialize(int *, char ***) {
  zfuzz::InitializeHarness(KC_WARN_ABORT);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static const zfuzz::ProgramOptions options = {.kinds = {zfuzz::Kind::kZsmalloc}};
  zfuzz::RunProgram(data, size, options);
  return 0;
}

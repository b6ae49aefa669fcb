// SPDX-License-Identifier: GPL-2.0-only
// zpool_api_fuzz: the same legal sequence through zpool on zbud and on zsmalloc side by side
// (differential): each call goes to both pools; each must answer as the contract says for its
// backend (the same where the contract is the same: size 0, oversize, success; zbud's smaller
// maximum and __GFP_HIGHMEM refusal, zsmalloc's -EINVAL shrink where it differs), contents must
// be identical, and the pools' properties (type, evictable, can_sleep_mapped,
// malloc_support_movable) must match the contract. No fault injection here: the two backends
// allocate differently, so one injected failure cannot mean the same thing to both.
#include "fuzz/api/program.h"

extern "C" int LLVMFuzzerInitialize(int *, char ***) {
  zfuzz::InitializeHarness(KC_WARN_ABORT);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static const zfuzz::ProgramOptions options = {
      .kinds = {zfuzz::Kind::kZpoolZbud, zfuzz::Kind::kZpoolZsmalloc},
      .fault_injection = false,
  };
  zfuzz::RunProgram(data, size, options);
  return 0;
}

// SPDX-License-Identifier: GPL-2.0-only
// upstream_diff_fuzz: one legal program on the project's model and on the kernel's own code side
// by side, compared exactly (ProgramOptions::exact): zsmalloc against Linux 6.12's
// mm/zsmalloc.c, or zpool over zbud or zsmalloc against 6.12's mm/zpool.c over its zbud.c or
// zsmalloc.c (the input's last byte picks the pair). After every operation both hold the same
// number of pages; every malloc succeeds or fails on both; every mapping lands at the same
// offset in a page (or is a copy on both); compaction frees the same pages and pages_compacted
// agrees; every zsmalloc class has the same geometry and statistics; and the contents are
// checked on each. Upstream pages migrate under the program (invisible to every observable).
// At start-up the class tables are compared for every size. What 6.12 lacks by design (zbud's
// LRU and reclaim, zpool's ops and shrink) is not exercised: docs/upstream.md.
#include <stdio.h>
#include <stdlib.h>

#include <string>

#include "fuzz/api/program.h"
#include "fuzz/api/upstream_subjects.h"
#include "zpool/upstream/bridge.h"

namespace {
struct Pair {
  zfuzz::Kind model, upstream;
};
constexpr Pair kPairs[] = {
    {zfuzz::Kind::kZsmalloc, zfuzz::Kind::kUpstreamZsmalloc},
    {zfuzz::Kind::kZpoolZbud, zfuzz::Kind::kUpstreamZpoolZbud},
    {zfuzz::Kind::kZpoolZsmalloc, zfuzz::Kind::kUpstreamZpoolZsmalloc},
};
constexpr size_t kNumPairs = sizeof(kPairs) / sizeof(kPairs[0]);
}  // namespace

extern "C" int LLVMFuzzerInitialize(int *, char ***) {
  zfuzz::InitializeHarness(KC_WARN_ABORT);  // first: the virtual CPUs the files will see
  zfuzz::UseUpstreamSubjects();
  std::string why = zfuzz::CompareClassTables(zfuzz::Kind::kZsmalloc,
                                              zfuzz::Kind::kUpstreamZsmalloc);
  if (!why.empty()) {
    fprintf(stderr, "upstream_diff_fuzz: the model's class table is not the kernel's: %s\n",
            why.c_str());
    abort();
  }
  zfuzz::ResetKernelState();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size == 0) return 0;
  const Pair &pair = kPairs[data[size - 1] % kNumPairs];
  zfuzz::ProgramOptions options = {
      .kinds = {pair.model, pair.upstream},
      .fault_injection = false,
      .exact = true,
      .migration = true,
  };
  zfuzz::RunProgram(data, size - 1, options);
  return 0;
}

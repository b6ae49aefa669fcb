// SPDX-License-Identifier: GPL-2.0-only
// upstream_api_fuzz: legal API sequences on the kernel's own allocators, Linux 6.12's
// mm/zsmalloc.c, and mm/zpool.c over zsmalloc, zbud and z3fold (//zpool/upstream), with page
// migration run by mm/migrate.c's protocol (isolate, migrate or put back) and fault injection,
// under the abort warning policy: the kernel's own BUG/WARN/VM_BUG_ON, the shims' checks (bad
// page state at free, page type, __SetPageMovable under the page lock, sleeping in atomic
// context, lock order) and the shadow model's (contents, results, page bounds, leaks at
// teardown) are the oracle. The input's last byte picks the backend.
//
// The open upstream findings (docs/upstream-findings.md) would end every input that reaches
// them, so by default the target steps around them: z3fold's pages are not migrated (Z1: its
// migration strands the new page's handle slots), and empty z3fold handle slots left at a pool's
// destroy (Z2: a compaction target's slots) are counted, not reported. ZFUZZ_UPSTREAM_KNOWN=1
// reports both.
#include <stdlib.h>
#include <string.h>

#include "fuzz/api/program.h"
#include "fuzz/api/upstream_subjects.h"
#include "zpool/upstream/bridge.h"

namespace {
constexpr zfuzz::Kind kKinds[] = {zfuzz::Kind::kUpstreamZsmalloc,
                                  zfuzz::Kind::kUpstreamZpoolZsmalloc,
                                  zfuzz::Kind::kUpstreamZpoolZbud,
                                  zfuzz::Kind::kUpstreamZpoolZ3fold};
}  // namespace

extern "C" int LLVMFuzzerInitialize(int *, char ***) {
  const char *known = getenv("ZFUZZ_UPSTREAM_KNOWN");
  const bool report_known = known != nullptr && strcmp(known, "1") == 0;
  upstream_set_migration("z3fold", report_known);
  upstream_report_known_findings(report_known);
  zfuzz::InitializeHarness(KC_WARN_ABORT);  // first: the virtual CPUs the files will see
  zfuzz::UseUpstreamSubjects();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size == 0) return 0;
  // FuzzedDataProvider takes integers from the end: the last byte is the first choice.
  zfuzz::ProgramOptions options = {
      .kinds = {kKinds[data[size - 1] % 4]},
      .migration = true,
  };
  zfuzz::RunProgram(data, size - 1, options);
  return 0;
}

// SPDX-License-Identifier: GPL-2.0-only
// The operation language: bytes -> a sequence of typed API operations, executed against one or
// two Subjects and checked against a shadow model.
//
// One decoder serves every API target and `tools/zfuzz explain`/`repro` (which run a target with
// ZFUZZ_EXPLAIN=1 and show its call lines), so the program a finding prints is the program that
// ran. Decoding uses FuzzedDataProvider: an operation byte, then its arguments.
//
// The shadow model: every live object has an id, a size and a generation; its bytes are a pattern
// derived from (input seed, id, generation), written through a WO or RW mapping and verified on
// every RO/RW mapping and before every free. Sizes, error codes, fault-injection outcomes, page
// counts (bounds and exact deltas for compaction and reclaim) and the live set are checked after
// every operation; the backend's validator runs every few operations and at the end; after
// teardown kc_pages_in_use() and kc_meta_in_use() are back where they started. Legal targets run
// under the abort warning policy, so any WARN is a finding too.
#ifndef FUZZ_API_PROGRAM_H_
#define FUZZ_API_PROGRAM_H_

#include <fuzzer/FuzzedDataProvider.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "fuzz/api/subject.h"

namespace zfuzz {

// A finding: print the reason and crash in the caller's frame (so crash deduplication by stack
// sees where the oracle failed).
void ReportFinding(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
#define ZFUZZ_CHECK(cond, fmt, ...)                                               \
  do {                                                                            \
    if (__builtin_expect(!(cond), 0)) {                                           \
      ::zfuzz::ReportFinding(__FILE__, __LINE__, fmt __VA_OPT__(, ) __VA_ARGS__); \
      __builtin_trap();                                                           \
    }                                                                             \
  } while (0)

// ---- The language -------------------------------------------------------------------------------
// Each operation is Pick(0, kOpCount - 1), then its arguments in this order (slot = pool slot,
// index = a live object of that slot, modulo the live count):
enum ProgramOp : int {
  kCreate,      // slot, with_evict (bool: Pick(0,255) & 1). No-op if the slot is live.
  kDestroy,     // slot. Frees every object (verified) then destroys the pool.
  kMalloc,      // slot, size (see SizeKind), gfp (index into kProgramGfps). Then WO-fills.
  kFree,        // slot, index. Verified through an RO map first.
  kMapAccess,   // slot, mode (0 RW, 1 RO, 2 WO), index. RO/RW verify; RW/WO rewrite.
  kCompact,     // slot (zsmalloc subjects; others ignore it)
  kReclaim,     // slot, arg (0..4: zbud retries / zpool pages), evict policy (0 free, 1 refuse,
                // 2 free even ids only)
  kStats,       // slot: page-count bounds
  kSetCpu,      // cpu (0..kc_nr_cpus()-1)
  kFailNth,     // nth (1..6): kc_fail_nth_alloc
  kValidate,    // (no argument): every live pool's validator
  kMallocMany,  // slot, count (2..48), size, gfp
  kFreeMany,    // slot, stride (2..4): frees objects at indexes divisible by stride
  kProperties,  // slot: zpool property queries
  kMigrate,     // page (0..1023), action (0 migrate, 1 putback, 2 no new page): upstream
                // subjects' page migration (only where ProgramOptions::migration is on)
  kOpCount
};

// A size argument: Pick(0, kSizeKinds - 1), then:
enum SizeKind : int {
  kSizeAny,            // size (1..max)
  kSizeClassBoundary,  // k (3..256), adjust (Pick(0,2) - 1): k * (PAGE_SIZE >> 8) - 8 + adjust
  kSizeChunkBoundary,  // n (1..62), adjust: n * (PAGE_SIZE >> 6) + adjust
  kSizeSpan,           // denominator (2..7), numerator (1..denominator-1), adjust (x 8)
  kSizeMaxima,         // which (0..5): max, max-1, zbud max, PAGE_SIZE, 7/8 page + 32, ...
  kSizeZero,           // 0 (-EINVAL)
  kSizeTooBig,         // extra (1..100): max + extra (-ENOSPC)
  kSizeSmall,          // size (1..128)
  kSizeKinds
};

inline constexpr gfp_t kProgramGfps[] = {GFP_KERNEL, GFP_NOIO, GFP_NOWAIT, GFP_ATOMIC,
                                         GFP_KERNEL | __GFP_MOVABLE, GFP_KERNEL | __GFP_HIGHMEM};
inline constexpr size_t kProgramGfpCount = sizeof(kProgramGfps) / sizeof(kProgramGfps[0]);

inline constexpr int kMaxSubjects = 4;

struct ProgramOptions {
  // The backends: one Subject of each kind per pool slot (at most kMaxSubjects). Several kinds =
  // differential mode: the same operations run on all, which must agree wherever the contract
  // says they must.
  std::vector<Kind> kinds;
  int pool_slots = 2;
  int max_ops = 160;
  bool fault_injection = true;
  int validate_every = 8;
  // Exact differential (the model beside the kernel's own code): kinds pair up, (0, 1) and
  // (2, 3), and each pair must agree exactly: total pages after every operation, every malloc's
  // result, the in-page offset of every mapping (or both a copy), compaction's return and
  // pages_compacted, and, for zsmalloc, the class table and every class's statistics. Needs
  // fault_injection off (the two allocate differently); the reclaim operation is skipped (6.12
  // has no eviction).
  bool exact = false;
  // The kMigrate operation (upstream subjects); off, the language ends at kProperties, so the
  // inputs of the targets without it keep their meaning.
  bool migration = false;
};

// The per-input state every harness resets (see the file comment of each target): warning count
// and once-sites, lock-order graph, misuse counters, fault injection, this thread's CPU.
void ResetKernelState();
// Process set-up for a harness: 4 virtual CPUs, warning policy, console level, full hardening,
// prewarmed pages and slabs.
inline constexpr int kHarnessCpus = 4;
void InitializeHarness(kc_warn_policy policy);

// Where the program's choices come from. The decoder asks for every operation and argument as
// Pick(min, max); FdpChoices answers from a fuzz input (exactly as FuzzedDataProvider's
// ConsumeIntegralInRange), ScriptChoices from a list of values and records the input bytes that
// would make FdpChoices answer the same: that is how the seed generator writes inputs that
// decode to the programs it describes, with the decoder itself as the only definition of the
// language.
class Choices {
 public:
  virtual ~Choices() = default;
  virtual uint64_t Pick(uint64_t min, uint64_t max) = 0;
  virtual bool Exhausted() const = 0;
};

class FdpChoices : public Choices {
 public:
  FdpChoices(const uint8_t *data, size_t size) : in_(data, size) {}
  uint64_t Pick(uint64_t min, uint64_t max) override;
  bool Exhausted() const override;

 private:
  mutable FuzzedDataProvider in_;
};

class ScriptChoices : public Choices {
 public:
  explicit ScriptChoices(std::vector<uint64_t> script) : script_(std::move(script)) {}
  uint64_t Pick(uint64_t min, uint64_t max) override;  // aborts on a value outside [min, max]
  bool Exhausted() const override;
  // The fuzz input that replays the choices made so far.
  std::vector<uint8_t> Bytes() const;

 private:
  std::vector<uint64_t> script_;
  size_t next_ = 0;
  std::vector<uint8_t> read_order_;
};

// The pattern seed of an input (the generator must use the same for the bytes it writes).
uint64_t SeedOf(const uint8_t *data, size_t size);

// The exact differential's process-wide check, run once at start-up: two zsmalloc subjects'
// zs_huge_class_size() and the class that serves every size from 1 to PAGE_SIZE (index, object
// size, pages and objects per zspage). "" when they agree, else the first difference.
std::string CompareClassTables(Kind a, Kind b);

// Decodes and runs one input. Returns the number of operations executed.
int RunProgram(const uint8_t *data, size_t size, const ProgramOptions &options);
// Runs a program from any choice source (the seed generator's).
int RunChoices(Choices &choices, uint64_t seed, const ProgramOptions &options);

}  // namespace zfuzz

#endif  // FUZZ_API_PROGRAM_H_

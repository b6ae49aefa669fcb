// SPDX-License-Identifier: GPL-2.0-only
// Interleaving coverage for the scheduled fuzz modes (the idea of Krace's alias coverage and
// SegFuzz's interleaving segments): every switch of a DeterministicScheduler run, named by the
// pair (site the running thread was switched out at, site the next thread resumes at) and
// whether it was a preemption, lands on one of kInterleavingBuckets distinct functions. Their
// entry is instrumented like any other code, so the engine's own coverage (libFuzzer's inline
// 8-bit counters, AFL++'s edge map) counts interleavings as well, and an input that reaches a new
// pair of sites is kept even when it covers no new line.
//
// With tracing on (tools/zfuzz explain and repro), each switch is also a trace line of the thread
// switched out: "~~ preempted at zsmalloc.cc:1402 (Free lock-acquire); t1 runs ~~".
#ifndef FUZZ_API_INTERLEAVING_H_
#define FUZZ_API_INTERLEAVING_H_

#include <cstddef>
#include <cstdint>

namespace zfuzz {

inline constexpr size_t kInterleavingBuckets = 1024;

// Installs the switch observer (process-wide; once, from LLVMFuzzerInitialize).
void InstallInterleavingCoverage();

// The bucket a switch lands on (for tests): stable for a pair of sites.
size_t InterleavingBucket(unsigned from_line, const char *from_file, unsigned to_line,
                          const char *to_file, bool preempted);
// Switches observed since start (for tests).
uint64_t InterleavingSwitches();

}  // namespace zfuzz

#endif  // FUZZ_API_INTERLEAVING_H_

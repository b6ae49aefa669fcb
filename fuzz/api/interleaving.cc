// SPDX-License-Identifier: GPL-2.0-only
// Interleaving coverage: switch site pairs as distinct instrumented functions.
#include "fuzz/api/interleaving.h"

#include <array>
#include <atomic>
#include <utility>

#include "fuzz/api/subject.h"
#include "zpool/kernel/sched.h"
#include "zpool/kernel/scheduler.h"

namespace zfuzz {

namespace {

std::atomic<uint64_t> g_switches{0};
volatile size_t g_sink;  // gives every bucket a body of its own

template <size_t N>
[[gnu::noinline]] void Bucket() {
  g_sink = N;
}

using BucketFn = void (*)();
template <size_t... N>
constexpr std::array<BucketFn, sizeof...(N)> MakeBuckets(std::index_sequence<N...>) {
  return {&Bucket<N>...};
}
constexpr std::array<BucketFn, kInterleavingBuckets> kBuckets =
    MakeBuckets(std::make_index_sequence<kInterleavingBuckets>{});

uint64_t Mix(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ULL;
  return x ^ (x >> 33);
}

// A file's identity: its name's hash (the pointer differs between a binary's builds).
uint64_t FileHash(const char *file) {
  uint64_t h = 1469598103934665603ULL;
  for (const char *p = file; p && *p; p++) h = (h ^ static_cast<unsigned char>(*p)) * 1099511628211ULL;
  return h;
}

void OnSwitch(int, const kc::SchedPoint &at, int to, const kc::SchedPoint &resume,
              bool preempted) {
  g_switches.fetch_add(1, std::memory_order_relaxed);
  kBuckets[InterleavingBucket(at.site.line(), at.site.file_name(), resume.site.line(),
                              resume.site.file_name(), preempted)]();
  if (Tracing()) {
    if (at.site.line() == 0)
      TraceLine("~~ finished; t%d runs ~~", to);
    else
      TraceLine("~~ %s at %s (%s); t%d runs ~~", preempted ? "preempted" : "switch",
                kc::SiteBaseName(at.site), kc::SchedEventName(at.event), to);
  }
}

}  // namespace

size_t InterleavingBucket(unsigned from_line, const char *from_file, unsigned to_line,
                          const char *to_file, bool preempted) {
  uint64_t h = Mix(FileHash(from_file) ^ (uint64_t{from_line} << 1) ^ preempted);
  h = Mix(h ^ FileHash(to_file) ^ (uint64_t{to_line} << 20));
  return static_cast<size_t>(h % kInterleavingBuckets);
}

uint64_t InterleavingSwitches() { return g_switches.load(std::memory_order_relaxed); }

void InstallInterleavingCoverage() { kc::DeterministicScheduler::SetSwitchObserver(&OnSwitch); }

}  // namespace zfuzz

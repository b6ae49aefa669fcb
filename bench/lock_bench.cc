// SPDX-License-Identifier: GPL-2.0-only
// The cost of the kernel layer's lock-order checker (zpool/kernel/lock.h): uncontended
// acquire+release with kc::lockdep::SetEnabled(true) and (false), in ns per acquire+release;
// and the cost of a scheduling point (zpool/kernel/sched.h) when no scheduler is installed, the
// state of every run outside the scheduled fuzz modes: ns per point, over an empty loop.
//
//   lock_bench [--iters N] [--reps R]
//
// Prints one JSON object: {"iters":..., "reps":..., "cases": {"<case>": {"on_ns":..,
// "off_ns":.., "overhead_ns":.., "ratio":.., "on_median_ns":.., "off_median_ns":..}}}: on and
// off alternate R times (so drift hits both); on_ns/off_ns are the fastest of the R timings (the
// least disturbed by the rest of the machine), the medians are kept beside them.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <string>
#include <vector>

#include "zpool/kernel/kernel.h"
#include "zpool/kernel/lock.h"
#include "zpool/kernel/sched.h"

namespace {

constinit kc::LockClass kOuterClass("bench_outer");
constinit kc::LockClass kInnerClass("bench_inner");
constinit kc::LockClass kRwClass("bench_rw");
constinit kc::LockClass kMutexClass("bench_mutex");

spinlock_t g_outer(kOuterClass);
spinlock_t g_inner(kInnerClass);
rwlock_t g_rw(kRwClass);
struct mutex g_mutex(kMutexClass);

double Min(const std::vector<double> &v) { return *std::min_element(v.begin(), v.end()); }

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

void SpinPair(long iters) {
  for (long i = 0; i < iters; i++) {
    spin_lock(&g_inner);
    spin_unlock(&g_inner);
  }
}

// Inner lock taken while the outer one is held: the checker looks at the held-lock pair.
void NestedSpin(long iters) {
  spin_lock(&g_outer);
  for (long i = 0; i < iters; i++) {
    spin_lock(&g_inner);
    spin_unlock(&g_inner);
  }
  spin_unlock(&g_outer);
}

void ReadLock(long iters) {
  for (long i = 0; i < iters; i++) {
    read_lock(&g_rw);
    read_unlock(&g_rw);
  }
}

void WriteLock(long iters) {
  for (long i = 0; i < iters; i++) {
    write_lock(&g_rw);
    write_unlock(&g_rw);
  }
}

void Mutex(long iters) {
  for (long i = 0; i < iters; i++) {
    mutex_lock(&g_mutex);
    mutex_unlock(&g_mutex);
  }
}

long g_word;

// Eight scheduling points per iteration (a protocol atomic's point, as the allocators make them).
[[gnu::noinline]] void Points(long iters) {
  for (long i = 0; i < iters; i++) {
    for (int k = 0; k < 8; k++) {
      kc::sched_atomic(&g_word);
      asm volatile("" ::: "memory");
    }
  }
}

// The same loop without the points.
[[gnu::noinline]] void NoPoints(long iters) {
  for (long i = 0; i < iters; i++) {
    for (int k = 0; k < 8; k++) asm volatile("" ::: "memory");
  }
}

double TimeNs(void (*body)(long), long iters) {
  auto t0 = std::chrono::steady_clock::now();
  body(iters);
  auto t1 = std::chrono::steady_clock::now();
  return std::chrono::duration<double, std::nano>(t1 - t0).count() / iters;
}

}  // namespace

int main(int argc, char **argv) {
  long iters = 1000000;
  int reps = 7;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--iters") == 0 && i + 1 < argc) {
      iters = strtol(argv[++i], nullptr, 10);
    } else if (strcmp(argv[i], "--reps") == 0 && i + 1 < argc) {
      reps = static_cast<int>(strtol(argv[++i], nullptr, 10));
    } else {
      fprintf(stderr, "lock_bench: unknown argument %s\nusage: lock_bench [--iters N] [--reps R]\n",
              argv[i]);
      return 2;
    }
  }
  if (iters < 1 || reps < 1) {
    fprintf(stderr, "lock_bench: --iters and --reps must be positive\n");
    return 2;
  }
  kc_set_cpu(0);
  struct Case {
    const char *name;
    void (*body)(long);
  };
  const Case cases[] = {
      {"spin_lock+unlock", SpinPair},       {"spin_lock nested (1 held)", NestedSpin},
      {"read_lock+unlock", ReadLock},       {"write_lock+unlock", WriteLock},
      {"mutex_lock+unlock", Mutex},
  };
  // Warm-up (also records the outer->inner order once, as a real program would).
  for (const Case &c : cases) c.body(iters / 10 + 1);

  printf("{\"iters\": %ld, \"reps\": %d, \"cases\": {", iters, reps);
  bool first = true;
  for (const Case &c : cases) {
    std::vector<double> on, off;
    for (int r = 0; r < reps; r++) {
      kc::lockdep::SetEnabled(true);
      on.push_back(TimeNs(c.body, iters));
      kc::lockdep::SetEnabled(false);
      off.push_back(TimeNs(c.body, iters));
    }
    kc::lockdep::SetEnabled(true);
    double b_on = Min(on), b_off = Min(off);
    printf("%s\"%s\": {\"on_ns\": %.2f, \"off_ns\": %.2f, \"overhead_ns\": %.2f, "
           "\"ratio\": %.3f, \"on_median_ns\": %.2f, \"off_median_ns\": %.2f}",
           first ? "" : ", ", c.name, b_on, b_off, b_on - b_off, b_off > 0 ? b_on / b_off : 0.0,
           Median(on), Median(off));
    first = false;
  }
  std::vector<double> with, without;
  for (int r = 0; r < reps; r++) {
    with.push_back(TimeNs(Points, iters) / 8);
    without.push_back(TimeNs(NoPoints, iters) / 8);
  }
  printf("}, \"sched_point\": {\"point_ns\": %.3f, \"empty_ns\": %.3f, \"cost_ns\": %.3f, "
         "\"point_median_ns\": %.3f}",
         Min(with), Min(without), Min(with) - Min(without), Median(with));
  printf(", \"warnings\": %lu}\n", kc_warn_count());
  return kc_warn_count() == 0 ? 0 : 1;
}

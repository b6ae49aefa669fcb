// SPDX-License-Identifier: GPL-2.0-only
// Scheduling points: where another thread can observe this one's state, and where a test may
// decide which thread runs next.
//
// The kernel layer and the allocators call a scheduling point
//   - at every lock acquire and release (spin, rw, mutex, local lock, page lock), before the
//     acquire and after the release;
//   - at every atomic read-modify-write or flag read a protocol relies on (handle pins, calls in
//     flight, isolation and under-reclaim flags, driver refcounts): sched_atomic(&word);
//   - at every preemption change, every page or metadata allocation, cond_resched();
//   - between two critical sections that follow each other (a lock dropped and another, or the
//     same, taken again): sched_gap(). A check made in the first and acted on in the second is
//     the classic logic race, and the gap is where another thread must be able to run;
//   - on every spin of a contended wait (kWait), naming what it waits for.
// Each point carries its object (the lock or word; nullptr when there is none) and its site, the
// source location of the call that reached it (kc::Site, no macro), so a schedule
// can be printed as call sites and switches can be counted as site pairs (interleaving
// coverage). With no hook installed a point is one relaxed load and a not-taken branch
// (bench/lock_bench.cc prints the figure).
//
// Rules for the hook: it is called from any thread, with kernel locks possibly held by the caller
// (that is the point: another thread may run while this one holds a lock). A waiter that cannot
// make progress calls it with kWait, which must eventually run another thread; that is how a
// controlled interleaving avoids spinning forever on a lock held by a thread the hook has parked.
#ifndef ZPOOL_KERNEL_SCHED_H_
#define ZPOOL_KERNEL_SCHED_H_

#include <atomic>

#include "zpool/kernel/site.h"

namespace kc {

enum class SchedEvent : unsigned char {
  kLockAcquire,     // about to take a lock (obj: the lock)
  kLockRelease,     // a lock was just released (obj: the lock)
  kPreemptDisable,  // preempt_disable() or local_lock() is about to run
  kPreemptEnable,   // preempt_enable() or local_unlock() just ran
  kAlloc,           // a page or metadata allocation is about to run
  kWait,            // a contended wait spins: the caller cannot progress until another runs
  kYield,           // cond_resched() or an explicit yield point
  kAtomic,          // an atomic read-modify-write or a flag read a protocol relies on (obj: it)
  kGap,             // between two critical sections that together make one decision
};
inline constexpr int kSchedEvents = 9;

const char *SchedEventName(SchedEvent event);

struct SchedPoint {
  SchedEvent event;
  const void *obj;
  Site site;  // pointers to static strings: valid for the whole run
};

using SchedHook = void (*)(const SchedPoint &point);

// Installs (or with nullptr removes) the process-wide hook. Returns the previous one.
SchedHook SetSchedHook(SchedHook hook);

namespace internal {
extern std::atomic<SchedHook> g_sched_hook;
}

inline bool SchedHookInstalled() {
  return internal::g_sched_hook.load(std::memory_order_relaxed) != nullptr;
}

inline void sched_point(SchedEvent event, const void *obj = nullptr,
                        const Site &site = Site::current()) {
  SchedHook hook = internal::g_sched_hook.load(std::memory_order_relaxed);
  if (__builtin_expect(hook != nullptr, 0)) hook(SchedPoint{event, obj, site});
}

// An atomic operation or flag read another thread's protocol depends on (obj: the word).
inline void sched_atomic(const void *obj, const Site &site = Site::current()) {
  sched_point(SchedEvent::kAtomic, obj, site);
}

// The place between two critical sections that must be read as one decision.
inline void sched_gap(const void *obj = nullptr, const Site &site = Site::current()) {
  sched_point(SchedEvent::kGap, obj, site);
}

// One iteration of a wait loop for `obj`: hands control to the hook when one is installed,
// otherwise backs off (pause, then yield the OS thread after a while). `spins` counts iterations.
void WaitSpin(unsigned &spins, const void *obj, const Site &site = Site::current());

// "file:line" of a site with the directories dropped, for traces ("zsmalloc.cc:1234").
const char *SiteBaseName(const Site &site);

// A fatal report (BUG, an abort-policy WARN, a harness finding) calls the fatal hook, if one is
// installed, right before aborting: the deterministic scheduler prints the schedule that led
// there. Returns the previous hook.
using FatalHook = void (*)();
FatalHook SetFatalHook(FatalHook hook);
void RunFatalHook();

}  // namespace kc

#endif  // ZPOOL_KERNEL_SCHED_H_

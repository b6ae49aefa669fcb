// SPDX-License-Identifier: GPL-2.0-only
// Scheduling points: where a test may decide which thread runs next.
//
// The kernel layer calls sched_point() at every lock acquire and release, at every preemption
// change, at every page or metadata allocation, and on every spin of a contended wait. With no
// hook installed this is one relaxed load and a not-taken branch. A test (the concurrency fuzzer's
// DeterministicScheduler, zpool/kernel/scheduler.h) installs a hook that runs one thread at a time
// and picks the next one from its input, so one input gives one interleaving.
//
// Rules for the hook: it is called from any thread, with kernel locks possibly held by the caller
// (that is the point: another thread may run while this one holds a lock). A waiter that cannot
// make progress calls it with SchedEvent::kWait, which must eventually run another thread;
// that is how a controlled interleaving avoids spinning forever on a lock held by a thread the
// hook has parked.
#ifndef ZPOOL_KERNEL_SCHED_H_
#define ZPOOL_KERNEL_SCHED_H_

#include <atomic>

namespace kc {

enum class SchedEvent : unsigned char {
  kLockAcquire,     // about to take a lock (obj: the lock)
  kLockRelease,     // a lock was just released (obj: the lock)
  kPreemptDisable,  // preempt_disable() or local_lock() is about to run
  kPreemptEnable,   // preempt_enable() or local_unlock() just ran
  kAlloc,           // a page or metadata allocation is about to run
  kWait,            // a contended wait spins: the caller cannot progress until another runs
  kYield,           // cond_resched() or an explicit yield point
};

const char *SchedEventName(SchedEvent event);

using SchedHook = void (*)(SchedEvent event, const void *obj);

// Installs (or with nullptr removes) the process-wide hook. Returns the previous one.
SchedHook SetSchedHook(SchedHook hook);

namespace internal {
extern std::atomic<SchedHook> g_sched_hook;
}

inline bool SchedHookInstalled() {
  return internal::g_sched_hook.load(std::memory_order_relaxed) != nullptr;
}

inline void sched_point(SchedEvent event, const void *obj = nullptr) {
  SchedHook hook = internal::g_sched_hook.load(std::memory_order_relaxed);
  if (__builtin_expect(hook != nullptr, 0)) hook(event, obj);
}

// One iteration of a wait loop: hands control to the hook when one is installed, otherwise
// backs off (pause, then yield the OS thread after a while). `spins` counts iterations.
void WaitSpin(unsigned &spins, const void *obj);

}  // namespace kc

#endif  // ZPOOL_KERNEL_SCHED_H_

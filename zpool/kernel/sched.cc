// SPDX-License-Identifier: GPL-2.0-only
// Scheduling points and the wait loop.
#include "zpool/kernel/sched.h"

#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

namespace kc {

namespace internal {
std::atomic<SchedHook> g_sched_hook{nullptr};
}

const char *SchedEventName(SchedEvent event) {
  switch (event) {
    case SchedEvent::kLockAcquire:
      return "lock-acquire";
    case SchedEvent::kLockRelease:
      return "lock-release";
    case SchedEvent::kPreemptDisable:
      return "preempt-disable";
    case SchedEvent::kPreemptEnable:
      return "preempt-enable";
    case SchedEvent::kAlloc:
      return "alloc";
    case SchedEvent::kWait:
      return "wait";
    case SchedEvent::kYield:
      return "yield";
    case SchedEvent::kAtomic:
      return "atomic";
    case SchedEvent::kGap:
      return "gap";
  }
  return "?";
}

SchedHook SetSchedHook(SchedHook hook) {
  return internal::g_sched_hook.exchange(hook, std::memory_order_acq_rel);
}

void WaitSpin(unsigned &spins, const void *obj, const Site &site) {
  if (SchedHook hook = internal::g_sched_hook.load(std::memory_order_acquire)) {
    hook(SchedPoint{SchedEvent::kWait, obj, site});
    return;
  }
  ++spins;
  if (spins < 64) {
    __builtin_ia32_pause();
  } else if (spins < 2048) {
    sched_yield();
  } else {
    // A long wait (e.g. a mapping held across a slow operation): stop burning the CPU.
    struct timespec ts = {0, 50 * 1000};
    nanosleep(&ts, nullptr);
  }
}

const char *SiteBaseName(const Site &site) {
  static thread_local char buf[160];
  const char *file = site.file_name();
  const char *slash = strrchr(file, '/');
  snprintf(buf, sizeof(buf), "%s:%u", slash ? slash + 1 : file,
           static_cast<unsigned>(site.line()));
  return buf;
}

namespace {
std::atomic<FatalHook> g_fatal_hook{nullptr};
}

FatalHook SetFatalHook(FatalHook hook) {
  return g_fatal_hook.exchange(hook, std::memory_order_acq_rel);
}

void RunFatalHook() {
  // Once: the hook may itself fail, and a second report must not recurse.
  FatalHook hook = g_fatal_hook.exchange(nullptr, std::memory_order_acq_rel);
  if (hook != nullptr) hook();
}

}  // namespace kc

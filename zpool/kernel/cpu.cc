// SPDX-License-Identifier: GPL-2.0-only
// Virtual CPUs, preemption count, might_sleep and the per-CPU local lock.
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>

#include "zpool/kernel/kernel.h"
#include "zpool/kernel/lock.h"
#include "zpool/kernel/percpu.h"
#include "zpool/kernel/sched.h"

namespace {

std::atomic<int> g_nr_cpus{0};  // 0: not yet initialised
std::atomic<unsigned> g_next_cpu{0};
std::atomic<long> g_percpu_live{0};

thread_local int t_cpu = -1;
using kc::internal::t_preempt_count;
thread_local pid_t t_tid = 0;

int InitialNrCpus() {
  long n = 0;
  if (const char *env = getenv("ZPOOL_NR_CPUS"); env != nullptr && *env != '\0') {
    char *end = nullptr;
    n = strtol(env, &end, 10);
    if (end == env || *end != '\0' || n < 1 || n > kc::kMaxCpus) {
      pr_err("zpool: ZPOOL_NR_CPUS=\"%s\" is not a number in 1..%d; using the online CPUs\n",
             env, kc::kMaxCpus);
      n = 0;
    }
  }
  if (n == 0) n = sysconf(_SC_NPROCESSORS_ONLN);
  if (n < 1) n = 1;
  if (n > kc::kMaxCpus) n = kc::kMaxCpus;
  return static_cast<int>(n);
}

}  // namespace

namespace kc {

pid_t CurrentTid() {
  if (t_tid == 0) t_tid = static_cast<pid_t>(syscall(SYS_gettid));
  return t_tid;
}

namespace internal {
void PerCpuCreated() { g_percpu_live.fetch_add(1, std::memory_order_acq_rel); }
void PerCpuDestroyed() { g_percpu_live.fetch_sub(1, std::memory_order_acq_rel); }
void PreemptCountInc() { ++t_preempt_count; }
void PreemptCountDec() {
  if (WARN_ONCE(t_preempt_count <= 0, "preempt count underflow (unbalanced enable)")) return;
  --t_preempt_count;
}
}  // namespace internal

}  // namespace kc

int kc_nr_cpus(void) {
  int n = g_nr_cpus.load(std::memory_order_acquire);
  if (n == 0) {
    int initial = InitialNrCpus();
    if (g_nr_cpus.compare_exchange_strong(n, initial, std::memory_order_acq_rel)) n = initial;
  }
  return n;
}

void kc_set_nr_cpus(int n) {
  if (WARN(n < 1 || n > kc::kMaxCpus, "kc_set_nr_cpus(%d): must be in 1..%d; ignored", n,
           kc::kMaxCpus))
    return;
  long live = g_percpu_live.load(std::memory_order_acquire);
  if (WARN(live != 0,
           "kc_set_nr_cpus(%d) while %ld per-CPU structures exist (a pool is alive); ignored", n,
           live))
    return;
  g_nr_cpus.store(n, std::memory_order_release);
}

int kc_current_cpu(void) {
  int nr = kc_nr_cpus();
  if (t_cpu < 0 || t_cpu >= nr)
    t_cpu = static_cast<int>(g_next_cpu.fetch_add(1, std::memory_order_relaxed) %
                             static_cast<unsigned>(nr));
  return t_cpu;
}

void kc_set_cpu(int cpu) {
  int nr = kc_nr_cpus();
  if (WARN(cpu < 0 || cpu >= nr, "kc_set_cpu(%d): no such virtual CPU (0..%d); ignored", cpu,
           nr - 1))
    return;
  if (WARN(t_preempt_count > 0,
           "kc_set_cpu(%d): thread in atomic context on cpu %d (preempt_count %d) cannot migrate; "
           "ignored",
           cpu, t_cpu, t_preempt_count))
    return;
  t_cpu = cpu;
}

int preempt_count(void) { return t_preempt_count; }

void preempt_disable(void) {
  kc::sched_point(kc::SchedEvent::kPreemptDisable);
  ++t_preempt_count;
}

void preempt_enable(void) {
  kc::internal::PreemptCountDec();
  kc::sched_point(kc::SchedEvent::kPreemptEnable);
}

void (might_sleep)(void) {
  // The function form (for &might_sleep); code calls the macro, which reports at its caller.
  if (kc_in_atomic() && kc_warn_report(__FILE__, __LINE__, "might_sleep",
                                       "might_sleep()", "%s", kc_might_sleep_message()))
    abort();
}

const char *kc_might_sleep_message(void) {
  static thread_local char buf[160];
  snprintf(buf, sizeof(buf),
           "BUG: sleeping function called from invalid context: in_atomic(): 1, "
           "preempt_count: %d, pid: %d",
           t_preempt_count, static_cast<int>(kc::CurrentTid()));
  return buf;
}

void cond_resched(const kc::Site &site) {
  might_sleep();
  kc::sched_point(kc::SchedEvent::kYield, nullptr, site);
}

// ---- LocalLock --------------------------------------------------------------------------------
namespace kc {

int LocalLock::lock(const Site &site) {
  sched_point(SchedEvent::kPreemptDisable, this, site);
  internal::PreemptCountInc();
  lockdep::Acquire(*cls_, this, lockdep::Mode::kExclusive);
  int cpu = kc_current_cpu();
  Slot &slot = slots_[cpu];
  pid_t me = CurrentTid();
  pid_t holder = 0;
  if (!slot.owner.compare_exchange_strong(holder, me, std::memory_order_acquire)) {
    BUG_ON(holder == me);  // the same thread twice: a self-deadlock
    WARN(true,
         "two threads inside local_lock %s of cpu %d: tid %d holds it, tid %d entered; its "
         "per-CPU data would be shared (two threads bound to one virtual CPU?). Waiting.",
         cls_->name(), cpu, static_cast<int>(holder), static_cast<int>(me));
    unsigned spins = 0;
    do {
      WaitSpin(spins, this, site);
      holder = 0;
    } while (!slot.owner.compare_exchange_weak(holder, me, std::memory_order_acquire));
  }
  return cpu;
}

void LocalLock::unlock(const Site &site) {
  int cpu = held_cpu();
  if (WARN(cpu < 0, "local_unlock of %s: this thread (tid %d) holds it on no cpu",
           cls_->name(), static_cast<int>(CurrentTid())))
    return;
  slots_[cpu].owner.store(0, std::memory_order_release);
  lockdep::Release(this);
  internal::PreemptCountDec();
  sched_point(SchedEvent::kPreemptEnable, this, site);
}

int LocalLock::held_cpu() const {
  pid_t me = CurrentTid();
  int cpu = t_cpu;
  if (cpu >= 0 && cpu < slots_.size() &&
      slots_[cpu].owner.load(std::memory_order_relaxed) == me)
    return cpu;
  for (int i = 0; i < slots_.size(); i++)
    if (slots_[i].owner.load(std::memory_order_relaxed) == me) return i;
  return -1;
}

}  // namespace kc

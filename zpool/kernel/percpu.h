// SPDX-License-Identifier: GPL-2.0-only
// Virtual CPUs: per-CPU data and the local_lock that guards it.
//
// Each thread runs on a virtual CPU: assigned round-robin on its first use, or bound with
// kc_set_cpu(). Per-CPU data is indexed by the virtual CPU, so two threads bound to one CPU share
// it: exactly the situation the kernel rules out by disabling preemption, and the one the fuzzers
// provoke. LocalLock detects it: a second thread entering the same CPU's local_lock WARNs, naming
// the CPU and both threads, and then waits for the first to leave instead of sharing the data.
#ifndef ZPOOL_KERNEL_PERCPU_H_
#define ZPOOL_KERNEL_PERCPU_H_

#include <sys/types.h>

#include <atomic>
#include <memory>

#include "zpool/kernel/kernel.h"
#include "zpool/kernel/lock.h"
#include "zpool/kernel/thread_annotations.h"

namespace kc {

inline constexpr int kMaxCpus = 256;

// The calling thread's OS thread id (cached).
pid_t CurrentTid();

namespace internal {
// Number of PerCpu objects alive: kc_set_nr_cpus() is refused while any exists.
void PerCpuCreated();
void PerCpuDestroyed();
}  // namespace internal

// One T per virtual CPU (kc_nr_cpus() at construction), each on its own cache line.
template <class T>
class PerCpu {
 public:
  PerCpu() : nr_(kc_nr_cpus()), slots_(new Slot[static_cast<size_t>(nr_)]) {
    internal::PerCpuCreated();
  }
  ~PerCpu() { internal::PerCpuDestroyed(); }
  PerCpu(const PerCpu &) = delete;
  PerCpu &operator=(const PerCpu &) = delete;

  int size() const { return nr_; }
  T &operator[](int cpu) {
    BUG_ON(cpu < 0 || cpu >= nr_);
    return slots_[static_cast<size_t>(cpu)].value;
  }
  const T &operator[](int cpu) const {
    BUG_ON(cpu < 0 || cpu >= nr_);
    return slots_[static_cast<size_t>(cpu)].value;
  }
  // The slot of the calling thread's CPU.
  T &this_cpu() { return (*this)[kc_current_cpu()]; }

 private:
  struct alignas(64) Slot {
    T value{};
  };
  int nr_;
  std::unique_ptr<Slot[]> slots_;
};

// The kernel's local_lock_t for one per-CPU structure: taking it disables preemption on this
// CPU, so nothing else on this CPU can touch the data until it is released.
class KC_CAPABILITY("local_lock") LocalLock {
 public:
  explicit LocalLock(const LockClass &cls) : cls_(&cls) {}

  // Takes this CPU's lock; returns the CPU. If another thread holds this CPU's lock (two
  // threads bound to one virtual CPU), WARNs and waits for it. Taking it twice from one thread
  // is a self-deadlock: BUG.
  int lock(const Site &site = Site::current()) KC_ACQUIRE();
  // Releases the lock this thread holds. WARNs (and does nothing) if it holds none.
  void unlock(const Site &site = Site::current()) KC_RELEASE();
  // The CPU whose lock the calling thread holds, or -1.
  int held_cpu() const;
  int size() const { return slots_.size(); }

 private:
  struct Slot {
    std::atomic<pid_t> owner{0};
  };
  const LockClass *cls_;
  PerCpu<Slot> slots_;
};

inline int local_lock(LocalLock *lock, const Site &site = Site::current()) KC_ACQUIRE(*lock) {
  return lock->lock(site);
}
inline void local_unlock(LocalLock *lock, const Site &site = Site::current()) KC_RELEASE(*lock) {
  lock->unlock(site);
}

// RAII preempt_disable()/preempt_enable().
class PreemptGuard {
 public:
  PreemptGuard() { preempt_disable(); }
  ~PreemptGuard() { preempt_enable(); }
  PreemptGuard(const PreemptGuard &) = delete;
  PreemptGuard &operator=(const PreemptGuard &) = delete;
};

// Called by spinning locks: preemption changes that are part of a lock operation, without a
// separate scheduling point (the lock's own acquire/release point covers them).
namespace internal {
void PreemptCountInc();
void PreemptCountDec();
}  // namespace internal

}  // namespace kc

#endif  // ZPOOL_KERNEL_PERCPU_H_

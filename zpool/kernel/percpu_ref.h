// SPDX-License-Identifier: GPL-2.0-only
// PercpuRef: "calls in flight" on an object (the percpu_ref pattern), so that the object's
// destroyer can learn whether anything is still running inside it, at the price of two plain
// stores per call.
//
//   if (!ref.enter()) return -EINVAL;   // destruction has begun: refuse the call
//   ... the call ...
//   ref.exit();
//
//   if (long busy = ref.begin_destroy()) { ref.abort_destroy(); WARN...; return; }  // refuse
//
// The counters are per thread slot, not per virtual CPU: two threads bound to one virtual CPU
// run at the same time here (the kernel's this_cpu_inc() relies on preemption being off), so a
// per-CPU counter would need a locked instruction, which on x86 waits for every store the call
// made to cold memory. Each thread owns one slot exclusively (kc::internal::RefSlot()), so enter
// and exit are a load and a store of its own counter; threads beyond the exclusive slots share
// the last one with atomic read-modify-writes. A call may exit on another thread than the one
// it entered on: only the sum matters.
//
// enter() and begin_destroy() pair as in Dekker's algorithm: the call stores its count, then
// loads the flag; the destroyer stores the flag, then sums the counts. The store-load ordering
// on the call's side is the asymmetric kind (as the kernel's RCU and liburcu's membarrier
// flavour do it): only a compiler barrier there, and on the destroyer's side membarrier(2), which
// runs a full barrier on every CPU running one of our threads. Either the call sees the flag and
// backs out, or the destroyer sees the call's count. Never neither. Without membarrier (an old
// kernel), the calls use a sequentially consistent fence instead.
#ifndef ZPOOL_KERNEL_PERCPU_REF_H_
#define ZPOOL_KERNEL_PERCPU_REF_H_

#include <atomic>
#include <memory>

#include "zpool/kernel/sched.h"

namespace kc {

namespace internal {

inline constexpr int kRefSlots = 32;                // counters per PercpuRef
inline constexpr int kSharedRefSlot = kRefSlots - 1;  // shared by threads beyond the others

// The calling thread's slot (-1: not assigned yet).
inline thread_local int t_ref_slot = -1;
// Assigns the calling thread a slot (released when the thread exits) and returns it.
int AcquireRefSlot();
inline int RefSlot() {
  int slot = t_ref_slot;
  return __builtin_expect(slot >= 0, 1) ? slot : AcquireRefSlot();
}

// True once membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED) is registered for the process (set
// before the first slot is handed out, never cleared).
inline std::atomic<bool> g_ref_asymmetric{false};
// The destroyer's side: a full barrier on every CPU running a thread of this process (or
// nothing, when the calls use a full fence themselves).
void RefHeavyBarrier();

}  // namespace internal

class PercpuRef {
 public:
  PercpuRef() : counters_(new Counter[internal::kRefSlots]) {}
  PercpuRef(const PercpuRef &) = delete;
  PercpuRef &operator=(const PercpuRef &) = delete;

  // Registers a call in flight. False (nothing registered) once destruction began.
  bool enter() {
    sched_atomic(this);  // the destroyer's flag is what another thread can change here
    const int slot = internal::RefSlot();
    Add(slot, 1);
    if (slot == internal::kSharedRefSlot ||
        !internal::g_ref_asymmetric.load(std::memory_order_relaxed))
      std::atomic_thread_fence(std::memory_order_seq_cst);
    else
      std::atomic_signal_fence(std::memory_order_seq_cst);
    if (__builtin_expect(dying_.load(std::memory_order_relaxed), 0)) {
      Add(slot, -1);
      return false;
    }
    return true;
  }

  // Ends a call registered by enter() (on any thread: the sum is what matters).
  void exit() {
    Add(internal::RefSlot(), -1);
    sched_atomic(this);  // a destroyer may now see the object idle
  }

  // Marks the object as being destroyed; returns the calls still in flight (0: safe to destroy).
  // The caller itself must not be inside enter()/exit().
  long begin_destroy() {
    sched_atomic(this);
    dying_.store(true, std::memory_order_seq_cst);
    internal::RefHeavyBarrier();
    return in_flight();
  }
  // Undoes begin_destroy(): the object is usable again.
  void abort_destroy() {
    dying_.store(false, std::memory_order_seq_cst);
    sched_atomic(this);
  }
  bool dying() const { return dying_.load(std::memory_order_acquire); }

  long in_flight() const {
    long sum = 0;
    for (int slot = 0; slot < internal::kRefSlots; slot++)
      sum += counters_[slot].count.load(std::memory_order_seq_cst);
    return sum;
  }

 private:
  struct alignas(64) Counter {
    std::atomic<long> count{0};
  };

  // Exclusive slots: only their owner writes them, so a load and a release store suffice.
  void Add(int slot, long delta) {
    std::atomic<long> &count = counters_[slot].count;
    if (slot == internal::kSharedRefSlot)
      count.fetch_add(delta, std::memory_order_seq_cst);
    else
      count.store(count.load(std::memory_order_relaxed) + delta, std::memory_order_release);
  }

  std::unique_ptr<Counter[]> counters_;
  std::atomic<bool> dying_{false};
};

// RAII enter()/exit(); check ok() before using the object.
class PercpuRefCall {
 public:
  explicit PercpuRefCall(PercpuRef &ref) : ref_(ref), ok_(ref.enter()) {}
  ~PercpuRefCall() {
    if (ok_) ref_.exit();
  }
  PercpuRefCall(const PercpuRefCall &) = delete;
  PercpuRefCall &operator=(const PercpuRefCall &) = delete;
  bool ok() const { return ok_; }

 private:
  PercpuRef &ref_;
  bool ok_;
};

}  // namespace kc

#endif  // ZPOOL_KERNEL_PERCPU_REF_H_

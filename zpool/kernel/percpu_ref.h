// PercpuRef: "calls in flight" on an object, counted per virtual CPU (the percpu_ref pattern),
// so that concurrent calls on different CPUs never share a cache line, and the object's
// destroyer can learn whether anything is still running inside it.
//
//   if (!ref.enter()) return -EINVAL;   // destruction has begun: refuse the call
//   ... the call ...
//   ref.exit();
//
//   if (long busy = ref.begin_destroy()) { ref.abort_destroy(); WARN...; return; }  // refuse
//
// enter() and begin_destroy() pair as in Dekker's algorithm (sequentially consistent increment
// then check, store then sum): either the call sees the destroyer's flag and backs out, or the
// destroyer sees the call's count. Never neither.
#ifndef ZPOOL_KERNEL_PERCPU_REF_H_
#define ZPOOL_KERNEL_PERCPU_REF_H_

#include <atomic>

#include "zpool/kernel/percpu.h"

namespace kc {

class PercpuRef {
 public:
  PercpuRef() = default;
  PercpuRef(const PercpuRef &) = delete;
  PercpuRef &operator=(const PercpuRef &) = delete;

  // Registers a call in flight on this CPU. False (nothing registered) once destruction began.
  bool enter() {
    Counter &c = counters_.this_cpu();
    c.count.fetch_add(1, std::memory_order_seq_cst);
    if (__builtin_expect(dying_.load(std::memory_order_seq_cst), 0)) {
      c.count.fetch_sub(1, std::memory_order_seq_cst);
      return false;
    }
    return true;
  }

  // Ends a call registered by enter() (on any CPU: the sum is what matters).
  void exit() { counters_.this_cpu().count.fetch_sub(1, std::memory_order_release); }

  // Marks the object as being destroyed; returns the calls still in flight (0: safe to destroy).
  // The caller itself must not be inside enter()/exit().
  long begin_destroy() {
    dying_.store(true, std::memory_order_seq_cst);
    return in_flight();
  }
  // Undoes begin_destroy(): the object is usable again.
  void abort_destroy() { dying_.store(false, std::memory_order_seq_cst); }
  bool dying() const { return dying_.load(std::memory_order_acquire); }

  long in_flight() const {
    long sum = 0;
    for (int cpu = 0; cpu < counters_.size(); cpu++)
      sum += counters_[cpu].count.load(std::memory_order_seq_cst);
    return sum;
  }

 private:
  struct Counter {
    std::atomic<long> count{0};
  };
  PerCpu<Counter> counters_;
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

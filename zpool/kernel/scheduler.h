// SPDX-License-Identifier: GPL-2.0-only
// DeterministicScheduler: runs N thread bodies one at a time, switching between them at the
// kernel layer's scheduling points as a byte string decides. One byte string gives one
// interleaving, every time: the concurrency fuzzer's scheduled mode and the lock tests use it.
//
// Protocol: exactly one registered thread runs at any moment (it holds the baton). At each
// scheduling point the running thread reads the next decision byte:
//   byte < kStayThreshold              -> keep running;
//   otherwise                          -> hand the baton to runnable thread (byte % runnable).
// A kWait point (the thread cannot progress: a contended lock) always hands the baton to another
// thread, chosen by the next byte (or the next one in index order when the bytes are used up)
// among the threads
// that are not waiting themselves, or among all others when every one of them waits. When the
// bytes run out, threads keep running until they wait or finish (run-to-completion), which is
// also deterministic. A thread finishing hands the baton on the same way.
//
// Deadlock detection: if every live thread has been waiting for more than kMaxWaitRounds
// consecutive hand-offs without any of them making progress, the schedule is a deadlock: BUG
// with the threads' states (a real finding for a fuzzer).
//
// Only one DeterministicScheduler may run at a time (it installs the process-wide hook). Threads
// not started by it (the caller of Run) are not affected by the hook.
#ifndef ZPOOL_KERNEL_SCHEDULER_H_
#define ZPOOL_KERNEL_SCHEDULER_H_

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <mutex>
#include <span>
#include <vector>

#include "zpool/kernel/sched.h"

namespace kc {

class DeterministicScheduler {
 public:
  static constexpr uint8_t kStayThreshold = 128;
  static constexpr int kMaxWaitRounds = 10000;

  explicit DeterministicScheduler(std::span<const uint8_t> decisions);
  ~DeterministicScheduler();
  DeterministicScheduler(const DeterministicScheduler &) = delete;
  DeterministicScheduler &operator=(const DeterministicScheduler &) = delete;

  // Runs each body on its own thread under the schedule; returns when all have returned.
  // Thread i runs first. May be called once.
  void Run(std::vector<std::function<void()>> bodies);

  // The order in which threads held the baton: one entry per hand-off (thread index).
  const std::vector<int> &trace() const { return trace_; }
  // Scheduling points seen, and decision bytes consumed.
  uint64_t points() const { return points_; }
  size_t decisions_used() const { return next_decision_; }

 private:
  static void Hook(SchedEvent event, const void *obj);
  void OnPoint(int self, SchedEvent event);
  void ThreadMain(int self, const std::function<void()> &body);
  // REQUIRES: mu_ held, self holds the baton. Picks the next thread and waits for the baton.
  void SwitchLocked(std::unique_lock<std::mutex> &lock, int self, bool must_leave);
  int PickLocked(int self, bool must_leave);
  bool NextByte(uint8_t *byte);

  std::vector<uint8_t> decisions_;
  size_t next_decision_ = 0;
  std::mutex mu_;  // a plain std::mutex: the scheduler's own state, never a scheduling point
  std::condition_variable cv_;
  int running_ = -1;            // index of the thread holding the baton
  std::vector<bool> alive_;
  std::vector<bool> waiting_;   // last point of that thread was kWait
  int wait_rounds_ = 0;         // consecutive hand-offs where the giver was waiting
  std::vector<int> trace_;
  uint64_t points_ = 0;
};

}  // namespace kc

#endif  // ZPOOL_KERNEL_SCHEDULER_H_

// SPDX-License-Identifier: GPL-2.0-only
// DeterministicScheduler: runs N thread bodies one at a time and lets a strategy decide, at every
// kernel-layer scheduling point (sched.h), which thread runs next. One strategy state gives one
// interleaving, every time: the concurrency fuzzer's scheduled modes, the systematic explorer
// (explore.h) and the lock tests use it.
//
// Protocol: exactly one registered thread runs at any moment (it holds the baton). At each point
// the running thread records the point as its pending step and asks the strategy for the next
// thread (itself: keep running). A thread at a kWait point (it cannot progress: a contended lock)
// is "waiting" on the point's object until another thread passes a point on that same object (a
// release, an atomic) or finishes; waiting threads are not enabled, and the waiter itself must
// leave. When every live thread waits, all of them are enabled again (each re-checks). A switch
// away from a thread that could have gone on is a preemption; one from a waiting or finished
// thread is not (CHESS's distinction, which the preemption bound counts).
//
// Three strategies ship here, behind one interface:
//   InputStrategy   decision bytes from the fuzzer's input (coverage-guided search);
//   PctStrategy     probabilistic concurrency testing (Burckhardt et al., ASPLOS 2010): random
//                   distinct thread priorities, d-1 priority change points; the highest-priority
//                   enabled thread runs. A bug of depth d among n threads and k steps is hit with
//                   probability >= 1/(n*k^(d-1)) per run;
//   ReplayStrategy  a recorded schedule (one thread per step), e.g. a systematic finding.
// The systematic explorer's depth-first strategy lives in explore.h.
//
// Deadlock detection: if every live thread has been waiting for more than kMaxWaitRounds
// consecutive hand-offs without any of them making progress, the schedule is a deadlock: BUG
// with the threads' states (a real finding for a fuzzer). A run longer than Options::max_steps
// points is reported the same way (a livelock, or a scenario that does not end).
//
// Only one DeterministicScheduler may run at a time (it installs the process-wide hook). Threads
// not started by it (the caller of Run) are not affected by the hook. While it runs, a BUG or an
// abort-policy WARN prints the schedule so far (its steps and its replay string) before aborting.
#ifndef ZPOOL_KERNEL_SCHEDULER_H_
#define ZPOOL_KERNEL_SCHEDULER_H_

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "zpool/kernel/sched.h"

namespace kc {

inline constexpr int kMaxScheduledThreads = 32;

// A thread as the strategy sees it at a decision.
struct ThreadView {
  bool alive = false;
  bool waiting = false;  // parked at a kWait point whose object nobody has touched since
  SchedPoint pending{SchedEvent::kYield, nullptr, Site{}};  // what it does when it runs next
};

// One decision: the running thread is at a point (or has finished) and one thread must run next.
struct Decision {
  int current = -1;        // the thread at the point
  bool must_leave = false;  // current cannot go on: it waits, or it finished
  uint64_t step = 0;        // decisions made before this one in this run
  std::span<const ThreadView> threads;
  // Alive, not waiting, ascending; current is included unless it must leave. Never empty while a
  // thread is alive (when all wait, all are enabled again).
  std::span<const int> enabled;
  bool IsEnabled(int t) const;
};

class ScheduleStrategy {
 public:
  virtual ~ScheduleStrategy() = default;
  // The thread to run next. Normally one of d.enabled (current: keep running); any alive thread
  // is accepted (a waiting one re-checks and waits again); anything else means enabled[0].
  virtual int Pick(const Decision &d) = 0;
  virtual const char *name() const = 0;
};

// The fuzzer's decision bytes. At an ordinary point: a byte < kStayThreshold keeps the thread
// running, any other byte switches to alive thread (byte % alive), itself included. When the
// thread must leave, the next byte picks among the enabled others. Out of bytes: keep running;
// a thread that must leave hands over to the next enabled one in index order (round-robin).
class InputStrategy final : public ScheduleStrategy {
 public:
  static constexpr uint8_t kStayThreshold = 128;
  explicit InputStrategy(std::span<const uint8_t> bytes) : bytes_(bytes.begin(), bytes.end()) {}
  int Pick(const Decision &d) override;
  const char *name() const override { return "input"; }
  size_t used() const { return next_; }

 private:
  bool Next(uint8_t *byte);
  std::vector<uint8_t> bytes_;
  size_t next_ = 0;
};

// PCT with depth d: thread priorities are a permutation of d .. d+n-1 (higher runs first); at
// the i-th change point (a step number, 1-based i < d) the running thread's priority drops to
// d-i, below every initial one. FromSeed draws the permutation and the d-1 change points
// uniformly in [1, max_steps] from a SplitMix64 stream, as the paper's algorithm does.
class PctStrategy final : public ScheduleStrategy {
 public:
  PctStrategy(std::vector<int> priorities, std::vector<uint64_t> change_points);
  static PctStrategy FromSeed(uint64_t seed, int nthreads, int depth, uint64_t max_steps);
  int Pick(const Decision &d) override;
  const char *name() const override { return "pct"; }
  int depth() const { return static_cast<int>(change_points_.size()) + 1; }
  std::string Describe() const;  // "d=3 priorities 4,3,5 change points 17,40" (as constructed)

 private:
  std::vector<int> initial_;
  std::vector<int> priorities_;
  std::vector<uint64_t> change_points_;
};

// A recorded schedule: the thread to run at each step (see FormatSchedule). Past its end, or
// where its thread cannot run, it keeps the current thread (or the first enabled one) and
// counts a divergence.
class ReplayStrategy final : public ScheduleStrategy {
 public:
  explicit ReplayStrategy(std::vector<uint8_t> choices) : choices_(std::move(choices)) {}
  int Pick(const Decision &d) override;
  const char *name() const override { return "replay"; }
  uint64_t divergences() const { return divergences_; }

 private:
  std::vector<uint8_t> choices_;
  uint64_t divergences_ = 0;
};

// A schedule as text: run-length thread choices, "0x14.1x6.0x3" (thread 0 for 14 steps, ...).
std::string FormatSchedule(std::span<const uint8_t> choices);
// Parses FormatSchedule's text; false (and *error set) on anything else.
bool ParseSchedule(const std::string &text, std::vector<uint8_t> *choices, std::string *error);

class DeterministicScheduler {
 public:
  static constexpr int kMaxWaitRounds = 10000;

  struct Step {
    int thread;        // who was at the point
    SchedPoint point;  // the point
    int next;          // who ran after it (the same thread, or the one switched to)
    bool preempted;    // a switch away from a thread that could have gone on
  };
  struct Options {
    uint64_t max_steps = 0;       // 0: no limit; else a longer run is a BUG (livelock?)
    size_t record_steps = 1 << 20;  // steps kept for traces (the latest ones beyond this)
    // Runs every thread to its first scheduling point, in index order, before the first
    // decision, so that the strategy knows each thread's next step from the start. Loses no
    // behaviour of a data-race-free program: code before a thread's first point touches only its
    // own data. (The systematic explorer's: an unknown next step conflicts with everything.)
    bool run_to_first_point = false;
  };
  // Called at every switch: from thread `from` at point `at` to thread `to`, which resumes at
  // its pending point `resume` (interleaving coverage; the fuzzers' call-line traces).
  using SwitchObserver = void (*)(int from, const SchedPoint &at, int to,
                                  const SchedPoint &resume, bool preempted);

  // The fuzzer's bytes (an InputStrategy of its own).
  explicit DeterministicScheduler(std::span<const uint8_t> decisions);
  DeterministicScheduler(ScheduleStrategy &strategy, Options options);
  ~DeterministicScheduler();
  DeterministicScheduler(const DeterministicScheduler &) = delete;
  DeterministicScheduler &operator=(const DeterministicScheduler &) = delete;

  // Runs each body on its own thread under the schedule; returns when all have returned.
  // Thread 0 runs first. May be called once.
  void Run(std::vector<std::function<void()>> bodies);

  // Process-wide: the switch observer (nullptr: none). Returns the previous one.
  static SwitchObserver SetSwitchObserver(SwitchObserver observer);

  // The order in which threads held the baton: one entry per hand-off (thread index).
  const std::vector<int> &trace() const { return trace_; }
  // Scheduling points seen (decisions made), preemptions, and the decision bytes consumed (an
  // InputStrategy's).
  uint64_t points() const { return points_; }
  uint64_t preemptions() const { return preemptions_; }
  size_t decisions_used() const { return own_ ? own_->used() : 0; }
  // The thread that ran after each decision: replays this run exactly (ReplayStrategy).
  const std::vector<uint8_t> &choices() const { return choices_; }
  const std::vector<Step> &steps() const { return steps_; }
  // The steps as one column per thread: each stretch a thread ran, from the site where it began
  // to the site where it was switched out, marking preemptions. At most max_lines stretches (the
  // last ones).
  std::string FormatInterleaving(size_t max_lines = 60) const;

 private:
  static void Hook(const SchedPoint &point);
  static void OnFatal();
  void OnPoint(int self, const SchedPoint &point);
  void ThreadMain(int self, const std::function<void()> &body);
  // REQUIRES: mu_ held, self holds the baton. Asks the strategy, hands the baton on, and waits
  // for it to come back.
  void DecideLocked(std::unique_lock<std::mutex> &lock, int self, const SchedPoint *point,
                    bool must_leave);
  void WakeWaitersLocked(int self, const void *obj);
  void EndPrologueStepLocked(std::unique_lock<std::mutex> &lock, int self);

  std::unique_ptr<InputStrategy> own_;
  ScheduleStrategy &strategy_;
  Options options_;
  std::mutex mu_;  // a plain std::mutex: the scheduler's own state, never a scheduling point
  std::condition_variable cv_;
  int running_ = -1;  // index of the thread holding the baton
  std::vector<ThreadView> threads_;
  std::vector<const void *> waiting_on_;
  int wait_rounds_ = 0;  // consecutive hand-offs where the giver was waiting
  std::vector<int> trace_;
  std::vector<uint8_t> choices_;
  std::vector<Step> steps_;
  uint64_t steps_dropped_ = 0;
  uint64_t points_ = 0;
  uint64_t preemptions_ = 0;
  int prologue_ = -1;  // run_to_first_point: the thread still running to its first point
  int first_decision_ = -1;  // ... and the one to make the first decision once all have
  FatalHook previous_fatal_ = nullptr;
};

}  // namespace kc

#endif  // ZPOOL_KERNEL_SCHEDULER_H_

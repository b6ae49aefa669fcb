// SPDX-License-Identifier: GPL-2.0-only
// Systematic exploration of a small concurrent scenario: every interleaving up to a preemption
// bound, in the manner of CHESS (iterative context bounding, Musuvathi and Qadeer, PLDI 2007 /
// OSDI 2008) and loom (LOOM_MAX_PREEMPTIONS), stateless: each execution runs the scenario again
// from the start under a DeterministicScheduler whose strategy replays a prefix of decisions and
// then extends it, depth first.
//
// - The scenario must be deterministic given the schedule (pools created fresh, no wall clock, no
//   unseeded randomness); a replayed prefix that meets another set of enabled threads than it
//   recorded stops the exploration with a "not deterministic" failure.
// - Preemptions are counted as the scheduler counts them (a switch away from a thread that could
//   have gone on). Bounds are explored in increasing order (0, 1, ... bound), so the first
//   failure found is one with the fewest preemptions.
// - Sleep sets (Godefroid 1996) prune schedules that only reorder independent steps. A step is
//   named by its scheduling point; two steps are independent when both name an object and the
//   objects differ. Every thread first runs to its first point (Options::run_to_first_point), so
//   each one's next step is known from the first decision on. (Pruning preemptions where the
//   next two steps do not conflict is NOT sound: the preempting thread's later steps may; that is
//   what dynamic partial-order reduction computes, and this explorer does not.) That is sound for programs whose shared accesses are all ordered by the
//   points (locks, the atomics sched_atomic() names): data races are TSan's to find, and a step
//   with no object (a yield, a gap without one, an allocation) depends on every other step.
// - Each execution's own checks are the caller's (run returns a failure message, or aborts with
//   a BUG that the scheduler's fatal hook annotates with the schedule); a failure names the
//   schedule (FormatSchedule) so ReplayStrategy can run it again.
#ifndef ZPOOL_KERNEL_EXPLORE_H_
#define ZPOOL_KERNEL_EXPLORE_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "zpool/kernel/scheduler.h"

namespace kc {

struct ExploreOptions {
  int preemption_bound = 2;
  int first_bound = 0;  // bounds first_bound .. preemption_bound, in order (each includes less)
  bool reduce = true;  // sleep sets (off: every schedule within the bound)
  uint64_t max_executions = 0;  // 0: no limit (the exploration then ends when complete)
  double max_seconds = 0;       // 0: no limit
  uint64_t max_steps = 200000;  // per execution: longer is a livelock (a BUG)
  // Called after every execution (progress lines of long runs).
  std::function<void(uint64_t executions, int bound)> progress;
};

struct ExploreResult {
  uint64_t executions = 0;
  uint64_t sleep_blocked = 0;  // executions whose tail only reordered explored steps
  uint64_t max_points = 0;     // the longest execution, in scheduling points
  int bound_reached = -1;      // the highest bound explored completely
  bool complete = false;       // every schedule within the bound explored
  bool failed = false;
  std::string failure;         // the run's message
  std::string schedule;        // FormatSchedule of the failing execution
  uint64_t failure_preemptions = 0;
  std::string interleaving;    // the failing execution's FormatInterleaving
  double seconds = 0;
};

// What one execution reports: its failure ("" when its checks passed) and, from its scheduler,
// the decisions it made, its points and preemptions, and (on failure) its interleaving.
struct ExecutionReport {
  std::string failure;
  std::vector<uint8_t> choices;
  uint64_t points = 0;
  uint64_t preemptions = 0;
  std::string interleaving;
};

// One execution of the scenario under `strategy`: set up, run the threads with a
// DeterministicScheduler(strategy, options), check, and report.
using ExploreRun = std::function<ExecutionReport(ScheduleStrategy &strategy,
                                                 const DeterministicScheduler::Options &options)>;

ExploreResult Explore(const ExploreRun &run, const ExploreOptions &options);

// The scheduler options Explore runs executions with (replay a schedule it printed with these).
DeterministicScheduler::Options ExploreSchedulerOptions(uint64_t max_steps = 200000);

// The strategy behind Explore (exposed for tests): depth first over decisions, replaying the
// stack's prefix, with a preemption bound and sleep sets.
class DfsStrategy final : public ScheduleStrategy {
 public:
  DfsStrategy(int bound, bool reduce) : bound_(bound), reduce_(reduce) {}
  int Pick(const Decision &d) override;
  const char *name() const override { return "systematic"; }
  // Before each execution after the first: moves to the next unexplored schedule. False when
  // every schedule within the bound has been run.
  bool Advance();
  // Set when a replayed prefix did not meet what it recorded.
  const std::string &nondeterminism() const { return nondeterminism_; }
  bool sleep_blocked() const { return blocked_; }
  void BeginExecution();

 private:
  struct Node {
    int current;
    bool must_leave;
    uint32_t enabled;  // bit t: thread t was enabled
    uint32_t sleep;
    uint32_t done;
    int choice;
    int preemptions;  // before this decision
    std::vector<SchedPoint> pending;  // each thread's next step, for independence
  };
  static bool Independent(const SchedPoint &a, const SchedPoint &b);
  int Cost(const Node &n, int choice) const;

  int bound_;
  bool reduce_;
  std::vector<Node> stack_;
  size_t depth_ = 0;      // decisions made in this execution
  bool blocked_ = false;  // the sleep set covered every choice: no more nodes this execution
  std::string nondeterminism_;
};

}  // namespace kc

#endif  // ZPOOL_KERNEL_EXPLORE_H_

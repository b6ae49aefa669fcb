// SPDX-License-Identifier: GPL-2.0-only
// Systematic exploration: depth first over scheduling decisions, bounded preemptions, sleep sets.
#include "zpool/kernel/explore.h"

#include <chrono>
#include <string>

namespace kc {

namespace {

uint32_t Bit(int t) { return 1u << static_cast<unsigned>(t); }

uint32_t Mask(std::span<const int> threads) {
  uint32_t m = 0;
  for (int t : threads) m |= Bit(t);
  return m;
}

std::string MaskText(uint32_t m) {
  std::string out = "{";
  for (int t = 0; t < kMaxScheduledThreads; t++)
    if (m & Bit(t)) out += (out.size() > 1 ? "," : "") + std::to_string(t);
  return out + "}";
}

}  // namespace

bool DfsStrategy::Independent(const SchedPoint &a, const SchedPoint &b) {
  return a.obj != nullptr && b.obj != nullptr && a.obj != b.obj;
}

int DfsStrategy::Cost(const Node &n, int choice) const {
  return !n.must_leave && choice != n.current ? 1 : 0;
}

void DfsStrategy::BeginExecution() {
  depth_ = 0;
  blocked_ = false;
}

int DfsStrategy::Pick(const Decision &d) {
  const size_t i = depth_++;
  const uint32_t enabled = Mask(d.enabled);
  auto fallback = [&] { return !d.must_leave ? d.current : d.enabled.front(); };
  if (i < stack_.size()) {
    const Node &n = stack_[i];
    if ((n.current != d.current || n.enabled != enabled || n.must_leave != d.must_leave) &&
        nondeterminism_.empty()) {
      nondeterminism_ = "decision " + std::to_string(i) + ": recorded thread " +
                        std::to_string(n.current) + " with " + MaskText(n.enabled) +
                        " enabled, now thread " + std::to_string(d.current) + " with " +
                        MaskText(enabled);
    }
    return (enabled & Bit(n.choice)) ? n.choice : fallback();
  }
  if (blocked_) return fallback();
  Node n{d.current, d.must_leave, enabled, 0, 0, -1, 0, {}};
  n.pending.reserve(d.threads.size());
  for (const ThreadView &t : d.threads) n.pending.push_back(t.pending);
  if (i > 0) {
    const Node &p = stack_[i - 1];
    n.preemptions = p.preemptions + Cost(p, p.choice);
    if (reduce_) {
      // Godefroid's rule: a thread asleep before the step, or explored before it from the same
      // state, stays asleep while the steps taken are independent of its own.
      uint32_t carried = p.sleep | (p.done & ~Bit(p.choice));
      for (int t = 0; t < static_cast<int>(p.pending.size()); t++) {
        if ((carried & Bit(t)) &&
            Independent(p.pending[static_cast<size_t>(t)],
                        p.pending[static_cast<size_t>(p.choice)]))
          n.sleep |= Bit(t);
      }
    }
  }
  const uint32_t candidates = enabled & ~n.sleep;
  int choice = -1;
  if (!d.must_leave && (candidates & Bit(d.current))) {
    choice = d.current;
  } else {
    for (int t : d.enabled) {
      if ((candidates & Bit(t)) && n.preemptions + Cost(n, t) <= bound_) {
        choice = t;
        break;
      }
    }
  }
  if (choice < 0) {  // every choice within the bound is asleep: the tail repeats explored ones
    blocked_ = true;
    return fallback();
  }
  n.choice = choice;
  n.done = Bit(choice);
  stack_.push_back(std::move(n));
  return choice;
}

bool DfsStrategy::Advance() {
  while (!stack_.empty()) {
    Node &n = stack_.back();
    for (int t = 0; t < kMaxScheduledThreads; t++) {
      if (!(n.enabled & Bit(t)) || (n.done & Bit(t)) || (n.sleep & Bit(t))) continue;
      if (n.preemptions + Cost(n, t) > bound_) continue;
      n.done |= Bit(t);
      n.choice = t;
      return true;
    }
    stack_.pop_back();
  }
  return false;
}

DeterministicScheduler::Options ExploreSchedulerOptions(uint64_t max_steps) {
  DeterministicScheduler::Options o;
  o.max_steps = max_steps;
  o.run_to_first_point = true;
  return o;
}

ExploreResult Explore(const ExploreRun &run, const ExploreOptions &options) {
  using Clock = std::chrono::steady_clock;
  const Clock::time_point start = Clock::now();
  auto elapsed = [&] { return std::chrono::duration<double>(Clock::now() - start).count(); };
  ExploreResult result;
  const DeterministicScheduler::Options sched_options = ExploreSchedulerOptions(options.max_steps);
  for (int bound = options.first_bound; bound <= options.preemption_bound; bound++) {
    DfsStrategy dfs(bound, options.reduce);
    bool more = true;
    while (more) {
      dfs.BeginExecution();
      ExecutionReport report = run(dfs, sched_options);
      result.executions++;
      if (dfs.sleep_blocked()) result.sleep_blocked++;
      if (report.points > result.max_points) result.max_points = report.points;
      if (!dfs.nondeterminism().empty() && report.failure.empty())
        report.failure = "the scenario is not deterministic under a fixed schedule (" +
                         dfs.nondeterminism() + ")";
      if (!report.failure.empty()) {
        result.failed = true;
        result.failure = report.failure;
        result.schedule = FormatSchedule(report.choices);
        result.failure_preemptions = report.preemptions;
        result.interleaving = report.interleaving;
        result.seconds = elapsed();
        return result;
      }
      if (options.progress) options.progress(result.executions, bound);
      if ((options.max_executions && result.executions >= options.max_executions) ||
          (options.max_seconds > 0 && elapsed() >= options.max_seconds)) {
        result.seconds = elapsed();
        return result;  // not complete
      }
      more = dfs.Advance();
    }
    result.bound_reached = bound;
  }
  result.complete = true;
  result.seconds = elapsed();
  return result;
}

}  // namespace kc

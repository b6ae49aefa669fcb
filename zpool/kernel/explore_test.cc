// SPDX-License-Identifier: GPL-2.0-only
// Tests of the systematic explorer (explore.h) and the PCT and replay strategies: toy programs
// whose interleavings can be counted by hand.
#include "zpool/kernel/explore.h"

#include <gtest/gtest.h>

#include <set>
#include <string>
#include <vector>

#include "zpool/kernel/kernel.h"
#include "zpool/kernel/lock.h"
#include "zpool/kernel/sched.h"
#include "zpool/kernel/scheduler.h"

namespace {

constinit kc::LockClass toy_class("explore_test.toy");
constinit kc::LockClass other_class("explore_test.other");

kc::ExecutionReport Report(const kc::DeterministicScheduler &s, std::string failure) {
  kc::ExecutionReport r;
  r.failure = std::move(failure);
  r.choices = s.choices();
  r.points = s.points();
  r.preemptions = s.preemptions();
  if (!r.failure.empty()) r.interleaving = s.FormatInterleaving();
  return r;
}

// Check-then-act over two critical sections: each thread reads the counter under the lock, drops
// it, and writes the value it read plus one under the lock again. Sequentially the result is 2;
// one preemption in the gap loses an update. Every access is locked: TSan sees nothing.
struct LostUpdate {
  spinlock_t lock{toy_class};
  long counter = 0;
  void Body() {
    spin_lock(&lock);
    long seen = counter;
    spin_unlock(&lock);
    kc::sched_gap(&counter);
    spin_lock(&lock);
    counter = seen + 1;
    spin_unlock(&lock);
  }
};

kc::ExecutionReport RunLostUpdate(kc::ScheduleStrategy &strategy,
                                  const kc::DeterministicScheduler::Options &options) {
  LostUpdate s;
  kc::DeterministicScheduler scheduler(strategy, options);
  scheduler.Run({[&] { s.Body(); }, [&] { s.Body(); }});
  return Report(scheduler, s.counter == 2 ? "" : "lost update: counter " + std::to_string(s.counter));
}

TEST(Explore, NoPreemptionMeansSequential) {
  kc::ExploreOptions options;
  options.preemption_bound = 0;
  kc::ExploreResult r = kc::Explore(RunLostUpdate, options);
  EXPECT_FALSE(r.failed) << r.failure;
  EXPECT_TRUE(r.complete);
  EXPECT_EQ(r.executions, 1u);  // with no preemption there is one schedule: t0 then t1
}

TEST(Explore, FindsTheLostUpdateWithOnePreemptionAndReplaysIt) {
  kc::ExploreOptions options;
  options.preemption_bound = 2;
  kc::ExploreResult r = kc::Explore(RunLostUpdate, options);
  ASSERT_TRUE(r.failed);
  EXPECT_EQ(r.failure, "lost update: counter 1");
  EXPECT_EQ(r.failure_preemptions, 1u);  // bounds are explored in increasing order
  EXPECT_NE(r.interleaving.find("preempted here"), std::string::npos) << r.interleaving;
  EXPECT_NE(r.interleaving.find("explore_test.cc"), std::string::npos) << r.interleaving;
  std::vector<uint8_t> choices;
  std::string error;
  ASSERT_TRUE(kc::ParseSchedule(r.schedule, &choices, &error)) << error;
  for (int i = 0; i < 20; i++) {
    kc::ReplayStrategy replay(choices);
    kc::ExecutionReport again = RunLostUpdate(replay, kc::ExploreSchedulerOptions());
    EXPECT_EQ(again.failure, r.failure) << "replay " << i;
    EXPECT_EQ(replay.divergences(), 0u);
    EXPECT_EQ(kc::FormatSchedule(again.choices), r.schedule);
  }
}

// Two threads, two critical sections each on one lock: which orders of the four sections each
// preemption bound reaches, counted by hand. Thread 0 runs first.
//   AABB 0 preemptions   ABBA 1   BBAA 1   ABAB 2   BAAB 2   BABA 3
std::set<std::string> OrdersWithin(int bound, bool reduce, uint64_t *executions) {
  std::set<std::string> orders;
  auto run = [&](kc::ScheduleStrategy &strategy, const kc::DeterministicScheduler::Options &o) {
    spinlock_t lock(toy_class);
    std::string order;
    kc::DeterministicScheduler scheduler(strategy, o);
    auto body = [&](char name) {
      for (int i = 0; i < 2; i++) {
        spin_lock(&lock);
        order += name;
        spin_unlock(&lock);
      }
    };
    scheduler.Run({[&] { body('A'); }, [&] { body('B'); }});
    orders.insert(order);
    return Report(scheduler, "");
  };
  kc::ExploreOptions options;
  options.preemption_bound = bound;
  options.reduce = reduce;
  kc::ExploreResult r = kc::Explore(run, options);
  EXPECT_TRUE(r.complete);
  EXPECT_FALSE(r.failed);
  *executions = r.executions;
  return orders;
}

TEST(Explore, PreemptionBoundsReachExactlyTheOrdersCountedByHand) {
  uint64_t runs = 0;
  EXPECT_EQ(OrdersWithin(0, true, &runs), (std::set<std::string>{"AABB"}));
  EXPECT_EQ(OrdersWithin(1, true, &runs), (std::set<std::string>{"AABB", "ABBA", "BBAA"}));
  EXPECT_EQ(OrdersWithin(2, true, &runs),
            (std::set<std::string>{"AABB", "ABBA", "BBAA", "ABAB", "BAAB"}));
  EXPECT_EQ(OrdersWithin(3, true, &runs),
            (std::set<std::string>{"AABB", "ABBA", "BBAA", "ABAB", "BAAB", "BABA"}));
}

TEST(Explore, ReductionPrunesOnlyIndependentReorderings) {
  // Same program without reduction: the same orders (the sections all use one lock, so no two
  // of them are independent), in at least as many executions.
  uint64_t with = 0, without = 0;
  EXPECT_EQ(OrdersWithin(3, true, &with), OrdersWithin(3, false, &without));
  EXPECT_LE(with, without);

  // Two threads on two different locks: every order of their steps is equivalent, so the
  // reduction leaves one execution, and the final states stay the same.
  auto count = [](bool reduce, std::set<std::string> *finals) {
    auto run = [&](kc::ScheduleStrategy &strategy, const kc::DeterministicScheduler::Options &o) {
      spinlock_t a(toy_class), b(other_class);
      int x = 0, y = 0;
      kc::DeterministicScheduler scheduler(strategy, o);
      scheduler.Run({[&] {
                       for (int i = 0; i < 3; i++) {
                         spin_lock(&a);
                         x++;
                         spin_unlock(&a);
                       }
                     },
                     [&] {
                       for (int i = 0; i < 3; i++) {
                         spin_lock(&b);
                         y++;
                         spin_unlock(&b);
                       }
                     }});
      finals->insert(std::to_string(x) + "," + std::to_string(y));
      return Report(scheduler, "");
    };
    kc::ExploreOptions options;
    options.preemption_bound = 2;
    options.reduce = reduce;
    return kc::Explore(run, options);
  };
  std::set<std::string> f1, f2;
  kc::ExploreResult pruned = count(true, &f1);
  kc::ExploreResult full = count(false, &f2);
  EXPECT_TRUE(pruned.complete && full.complete);
  EXPECT_EQ(f1, (std::set<std::string>{"3,3"}));
  EXPECT_EQ(f1, f2);
  // Sleep sets still start each alternative once (it is pruned after its first step).
  EXPECT_LT(pruned.executions - pruned.sleep_blocked, full.executions)
      << pruned.executions << " with the reduction, " << full.executions << " without";
}

TEST(Explore, ANondeterministicScenarioIsRefused) {
  static int calls = 0;
  auto run = [&](kc::ScheduleStrategy &strategy, const kc::DeterministicScheduler::Options &o) {
    spinlock_t lock(toy_class);
    int extra = calls++ % 2;  // a different number of points on every other execution
    kc::DeterministicScheduler scheduler(strategy, o);
    scheduler.Run({[&] {
                     for (int i = 0; i < 2 + extra; i++) {
                       spin_lock(&lock);
                       spin_unlock(&lock);
                     }
                   },
                   [&] {
                     spin_lock(&lock);
                     spin_unlock(&lock);
                   }});
    return Report(scheduler, "");
  };
  kc::ExploreOptions options;
  options.preemption_bound = 1;
  kc::ExploreResult r = kc::Explore(run, options);
  ASSERT_TRUE(r.failed);
  EXPECT_NE(r.failure.find("not deterministic"), std::string::npos) << r.failure;
}

TEST(Explore, LimitsStopAnIncompleteExploration) {
  kc::ExploreOptions options;
  options.preemption_bound = 3;
  options.max_executions = 2;
  uint64_t progress_calls = 0;
  options.progress = [&](uint64_t, int) { progress_calls++; };
  auto run = [](kc::ScheduleStrategy &strategy, const kc::DeterministicScheduler::Options &o) {
    spinlock_t lock(toy_class);
    kc::DeterministicScheduler scheduler(strategy, o);
    auto body = [&] {
      for (int i = 0; i < 4; i++) {
        spin_lock(&lock);
        spin_unlock(&lock);
      }
    };
    scheduler.Run({body, body});
    return Report(scheduler, "");
  };
  kc::ExploreResult r = kc::Explore(run, options);
  EXPECT_FALSE(r.complete);
  EXPECT_EQ(r.executions, 2u);
  EXPECT_EQ(progress_calls, 2u);
}

void ExploreAbba() {
  kc_set_warn_policy(KC_WARN_RECORD);  // the lock-order report is not the point here
  auto run = [](kc::ScheduleStrategy &strategy, const kc::DeterministicScheduler::Options &o) {
    spinlock_t a(toy_class), b(other_class);
    kc::DeterministicScheduler scheduler(strategy, o);
    scheduler.Run({[&] {
                     spin_lock(&a);
                     spin_lock(&b);
                     spin_unlock(&b);
                     spin_unlock(&a);
                   },
                   [&] {
                     spin_lock(&b);
                     spin_lock(&a);
                     spin_unlock(&a);
                     spin_unlock(&b);
                   }});
    return Report(scheduler, "");
  };
  kc::ExploreOptions options;
  options.preemption_bound = 1;
  kc::Explore(run, options);
}

TEST(Explore, ADeadlockDiesWithItsSchedule) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(ExploreAbba(), "deadlock(.|\n)*schedule: [0-9]+x");
}

// ---- PCT -------------------------------------------------------------------------------------

TEST(Pct, SameSeedSameScheduleAndDepthTwoBugsAreFoundAtTheGuaranteedRate) {
  // The lost update has depth 2 (one ordering constraint beyond the start): PCT guarantees
  // probability >= 1/(n*k) per run, n = 2 threads, k = the steps of a run.
  kc::ExecutionReport probe;
  {
    kc::PctStrategy pct = kc::PctStrategy::FromSeed(1, 2, 2, 100);
    probe = RunLostUpdate(pct, {});
  }
  const uint64_t k = probe.points;
  ASSERT_GT(k, 4u);
  int hits = 0;
  const int runs = 400;
  for (int seed = 0; seed < runs; seed++) {
    kc::PctStrategy a = kc::PctStrategy::FromSeed(static_cast<uint64_t>(seed), 2, 2, k);
    kc::PctStrategy b = kc::PctStrategy::FromSeed(static_cast<uint64_t>(seed), 2, 2, k);
    kc::ExecutionReport ra = RunLostUpdate(a, {});
    kc::ExecutionReport rb = RunLostUpdate(b, {});
    EXPECT_EQ(ra.choices, rb.choices) << "seed " << seed;
    hits += !ra.failure.empty();
  }
  EXPECT_GE(static_cast<double>(hits) / runs, 1.0 / (2.0 * static_cast<double>(k)))
      << hits << " of " << runs << " runs, k = " << k;
  // Depth 1 (no change point) never preempts: the bug needs one.
  for (int seed = 0; seed < 20; seed++) {
    kc::PctStrategy d1 = kc::PctStrategy::FromSeed(static_cast<uint64_t>(seed), 2, 1, k);
    EXPECT_EQ(RunLostUpdate(d1, {}).failure, "") << "seed " << seed;
  }
}

TEST(Pct, HighestPriorityRunsAndChangePointsDemote) {
  // Thread 1 has the higher priority: it runs first, to completion, unless a change point at its
  // first step demotes it.
  std::string order;
  auto run = [&](kc::ScheduleStrategy &strategy) {
    spinlock_t lock(toy_class);
    order.clear();
    kc::DeterministicScheduler scheduler(strategy, {});
    auto body = [&](char c) {
      for (int i = 0; i < 2; i++) {
        spin_lock(&lock);
        order += c;
        spin_unlock(&lock);
      }
    };
    scheduler.Run({[&] { body('A'); }, [&] { body('B'); }});
  };
  kc::PctStrategy plain({2, 3}, {});
  run(plain);
  EXPECT_EQ(order, "BBAA");
  kc::PctStrategy demoted({2, 3}, {3});
  run(demoted);
  EXPECT_NE(order, "BBAA");
  EXPECT_EQ(demoted.Describe(), "d=2 priorities 2,3 change points 3");
}

// ---- schedules as text ------------------------------------------------------------------------

TEST(Schedule, RoundTripAndClearErrors) {
  std::vector<uint8_t> choices = {0, 0, 0, 1, 1, 0, 2};
  EXPECT_EQ(kc::FormatSchedule(choices), "0x3.1x2.0x1.2x1");
  std::vector<uint8_t> back;
  std::string error;
  ASSERT_TRUE(kc::ParseSchedule("0x3.1x2.0x1.2x1", &back, &error));
  EXPECT_EQ(back, choices);
  EXPECT_EQ(kc::FormatSchedule({}), "-");
  ASSERT_TRUE(kc::ParseSchedule("-", &back, &error));
  EXPECT_TRUE(back.empty());
  for (const char *bad : {"0x", "x3", "0x3.", "1y2", "99x1", "0x0", "0x3.1x-2", "a"}) {
    EXPECT_FALSE(kc::ParseSchedule(bad, &back, &error)) << bad;
    EXPECT_NE(error.find("bad schedule run"), std::string::npos) << bad;
  }
}

// ---- the switch observer (interleaving coverage) ----------------------------------------------

struct Seen {
  int switches = 0;
  int preempted = 0;
  std::set<std::pair<unsigned, unsigned>> lines;
};
Seen g_seen;

void Observe(int, const kc::SchedPoint &at, int, const kc::SchedPoint &resume, bool preempted) {
  g_seen.switches++;
  g_seen.preempted += preempted;
  g_seen.lines.insert({at.site.line(), resume.site.line()});
}

TEST(SwitchObserver, SeesEverySwitchWithBothSites) {
  g_seen = Seen{};
  auto previous = kc::DeterministicScheduler::SetSwitchObserver(&Observe);
  std::vector<uint8_t> bytes(64, 0xff);  // switch wherever possible
  LostUpdate s;
  kc::DeterministicScheduler scheduler(bytes);
  scheduler.Run({[&] { s.Body(); }, [&] { s.Body(); }});
  kc::DeterministicScheduler::SetSwitchObserver(previous);
  EXPECT_EQ(static_cast<size_t>(g_seen.switches), scheduler.trace().size() - 1);
  EXPECT_EQ(static_cast<uint64_t>(g_seen.preempted), scheduler.preemptions());
  EXPECT_GT(g_seen.preempted, 0);
  EXPECT_GT(g_seen.lines.size(), 1u);  // the pairs name real source lines of this file
  for (auto [at, resume] : g_seen.lines) EXPECT_TRUE(at > 0 || resume > 0);
}

}  // namespace

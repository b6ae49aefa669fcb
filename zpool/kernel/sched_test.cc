// SPDX-License-Identifier: GPL-2.0-only
// Tests of the scheduling hook and the DeterministicScheduler.
#include <gtest/gtest.h>

#include <atomic>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "zpool/kernel/kernel.h"
#include "zpool/kernel/lock.h"
#include "zpool/kernel/sched.h"
#include "zpool/kernel/scheduler.h"

namespace {

constinit kc::LockClass counter_class("sched_test.counter");

std::atomic<int> g_points{0};
void CountingHook(const kc::SchedPoint &) { g_points++; }

TEST(SchedHook, CalledAtLockAcquireReleaseAndAllocation) {
  spinlock_t lock(counter_class);
  g_points = 0;
  kc::SchedHook previous = kc::SetSchedHook(&CountingHook);
  spin_lock(&lock);
  spin_unlock(&lock);
  int after_lock = g_points.load();
  void *p = kmalloc(16, GFP_KERNEL);
  kfree(p);
  struct page *page = alloc_page(GFP_KERNEL);
  __free_page(page);
  preempt_disable();
  preempt_enable();
  kc::SetSchedHook(previous);
  EXPECT_EQ(after_lock, 2);
  EXPECT_EQ(g_points.load(), 6);
}

// Two threads each add to a lock-protected counter, recording the order of their critical
// sections. The schedule decides that order.
struct CounterRun {
  std::vector<int> order;
  std::vector<int> trace;
  long counter = 0;
};

CounterRun RunCounter(const std::vector<uint8_t> &bytes, int rounds = 6) {
  CounterRun run;
  spinlock_t lock(counter_class);
  kc::DeterministicScheduler scheduler(bytes);
  auto body = [&](int id) {
    for (int i = 0; i < rounds; i++) {
      spin_lock(&lock);
      run.counter++;
      run.order.push_back(id);
      spin_unlock(&lock);
    }
  };
  scheduler.Run({[&] { body(0); }, [&] { body(1); }});
  run.trace = scheduler.trace();
  return run;
}

TEST(DeterministicScheduler, SameBytesSameInterleavingEveryTime) {
  std::vector<uint8_t> bytes = {200, 3, 129, 255, 7, 130, 131, 0, 250, 251, 140, 141, 142};
  CounterRun first = RunCounter(bytes);
  EXPECT_EQ(first.counter, 12);
  for (int i = 0; i < 20; i++) {
    CounterRun again = RunCounter(bytes);
    EXPECT_EQ(again.order, first.order) << "run " << i;
    EXPECT_EQ(again.trace, first.trace) << "run " << i;
    EXPECT_EQ(again.counter, 12);
  }
}

TEST(DeterministicScheduler, DifferentBytesGiveDifferentInterleavings) {
  // No decisions: thread 0 runs to completion, then thread 1.
  CounterRun sequential = RunCounter({});
  EXPECT_EQ(sequential.order, (std::vector<int>{0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1}));
  // Switch at every point: the critical sections alternate.
  std::vector<uint8_t> alternate(200, 0xff);
  CounterRun alternating = RunCounter(alternate);
  EXPECT_NE(alternating.order, sequential.order);
  std::set<std::vector<int>> seen;
  for (int seed = 0; seed < 16; seed++) {
    std::vector<uint8_t> bytes;
    uint32_t x = 2463534242u + static_cast<uint32_t>(seed);
    for (int i = 0; i < 100; i++) {
      x ^= x << 13, x ^= x >> 17, x ^= x << 5;
      bytes.push_back(static_cast<uint8_t>(x));
    }
    CounterRun run = RunCounter(bytes);
    EXPECT_EQ(run.counter, 12);
    seen.insert(run.order);
  }
  EXPECT_GE(seen.size(), 4u) << "random schedules should explore several interleavings";
}

TEST(DeterministicScheduler, ContendedLockHandsTheBatonToTheHolder) {
  // Thread 0 takes the lock and is switched out while holding it; thread 1 then waits on the lock
  // and must hand control back instead of spinning forever.
  spinlock_t lock(counter_class);
  std::vector<int> order;
  // Byte 0xff at thread 0's first scheduling point after taking the lock: switch to thread 1.
  std::vector<uint8_t> bytes = {0, 0xff, 0, 0, 0, 0, 0, 0};
  kc::DeterministicScheduler scheduler(bytes);
  scheduler.Run({[&] {
                   spin_lock(&lock);
                   kc::sched_point(kc::SchedEvent::kYield);
                   order.push_back(0);
                   spin_unlock(&lock);
                 },
                 [&] {
                   spin_lock(&lock);
                   order.push_back(1);
                   spin_unlock(&lock);
                 }});
  EXPECT_EQ(order, (std::vector<int>{0, 1}));
  EXPECT_GT(scheduler.points(), 4u);
}

TEST(DeterministicScheduler, WaitersDoNotStarveTheHolder) {
  // Three threads take one lock and yield while holding it, under many schedules. When a
  // waiter hands over the baton it must eventually reach the holder, never only the other
  // waiter (before the fix, some of these schedules passed it between two waiters forever).
  for (uint32_t seed = 1; seed <= 2000; seed++) {
    spinlock_t lock(counter_class);
    std::vector<uint8_t> bytes;
    uint32_t x = seed * 2654435761u;
    for (int i = 0; i < static_cast<int>(seed % 24); i++) {
      x ^= x << 13, x ^= x >> 17, x ^= x << 5;
      bytes.push_back(static_cast<uint8_t>(x));
    }
    kc::DeterministicScheduler scheduler(bytes);
    std::atomic<int> done{0};
    auto body = [&] {
      spin_lock(&lock);
      for (int i = 0; i < 3; i++) kc::sched_point(kc::SchedEvent::kYield);
      spin_unlock(&lock);
      done++;
    };
    scheduler.Run({body, body, body, body});
    ASSERT_EQ(done.load(), 4) << "seed " << seed;
  }
}

// T0 takes A and is switched out at B's acquire point; T1 takes B and then waits for A; T0 then
// waits for B: an ABBA deadlock that the scheduler must report instead of spinning forever.
void RunAbbaDeadlock() {
  static constinit kc::LockClass a_class("sched_test.A");
  static constinit kc::LockClass b_class("sched_test.B");
  spinlock_t a(a_class);
  spinlock_t b(b_class);
  kc_set_warn_policy(KC_WARN_RECORD);  // the lock-order report is not the point here
  std::vector<uint8_t> bytes = {0, 0xff, 0, 0};
  kc::DeterministicScheduler scheduler(bytes);
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
}

TEST(DeterministicScheduler, DeadlockIsReported) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(RunAbbaDeadlock(), "DeterministicScheduler: deadlock");
}

}  // namespace

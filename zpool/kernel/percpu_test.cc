// SPDX-License-Identifier: GPL-2.0-only
// Tests of virtual CPUs, per-CPU data, the local lock and PercpuRef.
#include <gtest/gtest.h>

#include <atomic>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "zpool/kernel/kernel.h"
#include "zpool/kernel/percpu.h"
#include "zpool/kernel/percpu_ref.h"

namespace {

std::string LastWarning() {
  char buf[2048];
  kc_last_warning(buf, sizeof(buf));
  return buf;
}

class PerCpuTest : public ::testing::Test {
 protected:
  void SetUp() override {
    kc_set_warn_policy(KC_WARN_RECORD);
    kc_warn_reset();
  }
  void TearDown() override {
    EXPECT_EQ(preempt_count(), 0);
    kc_set_warn_policy(KC_WARN_LOG);
    kc_warn_reset();
  }
};

TEST_F(PerCpuTest, NrCpusComesFromTheEnvironment) {
  // .bazelrc runs tests with ZPOOL_NR_CPUS=4.
  const char *env = getenv("ZPOOL_NR_CPUS");
  if (env == nullptr) GTEST_SKIP() << "ZPOOL_NR_CPUS not set";
  EXPECT_EQ(kc_nr_cpus(), atoi(env));
}

TEST_F(PerCpuTest, ThreadsGetCpusRoundRobinAndCanBind) {
  int n = kc_nr_cpus();
  std::vector<int> cpus(static_cast<size_t>(n) * 2, -1);
  std::vector<std::thread> threads;
  for (size_t i = 0; i < cpus.size(); i++) {
    threads.emplace_back([&, i] { cpus[i] = kc_current_cpu(); });
    threads.back().join();  // one at a time: consecutive assignments
  }
  for (size_t i = 1; i < cpus.size(); i++) EXPECT_EQ(cpus[i], (cpus[i - 1] + 1) % n);
  std::thread bound([&] {
    kc_set_cpu(n - 1);
    EXPECT_EQ(kc_current_cpu(), n - 1);
    kc_set_cpu(0);
    EXPECT_EQ(kc_current_cpu(), 0);
  });
  bound.join();
  EXPECT_EQ(kc_warn_count(), 0u);
}

TEST_F(PerCpuTest, BadCpuAndMigrationInAtomicContextWarn) {
  std::thread t([] {
    kc_set_cpu(1);
    kc_set_cpu(-1);
    kc_set_cpu(kc_nr_cpus());
    EXPECT_EQ(kc_current_cpu(), 1);
    preempt_disable();
    kc_set_cpu(0);  // a thread in atomic context cannot migrate
    EXPECT_EQ(kc_current_cpu(), 1);
    preempt_enable();
  });
  t.join();
  EXPECT_EQ(kc_warn_count(), 3u);
}

TEST_F(PerCpuTest, PerCpuSlotsAreIsolated) {
  kc::PerCpu<long> counters;
  ASSERT_EQ(counters.size(), kc_nr_cpus());
  std::vector<std::thread> threads;
  for (int cpu = 0; cpu < counters.size(); cpu++)
    threads.emplace_back([&, cpu] {
      kc_set_cpu(cpu);
      for (int i = 0; i <= cpu * 100; i++) counters.this_cpu()++;
    });
  for (auto &t : threads) t.join();
  for (int cpu = 0; cpu < counters.size(); cpu++) EXPECT_EQ(counters[cpu], cpu * 100 + 1);
}

TEST_F(PerCpuTest, SetNrCpusRefusedWhilePerCpuDataExists) {
  int n = kc_nr_cpus();
  {
    kc::PerCpu<int> data;
    kc_set_nr_cpus(n + 1);
    EXPECT_EQ(kc_nr_cpus(), n);
    EXPECT_EQ(kc_warn_count(), 1u);
    EXPECT_NE(LastWarning().find("per-CPU structures exist"), std::string::npos);
  }
  kc_set_nr_cpus(n + 1);
  EXPECT_EQ(kc_nr_cpus(), n + 1);
  kc_set_nr_cpus(0);
  EXPECT_EQ(kc_warn_count(), 2u);
  kc_set_nr_cpus(n);
  EXPECT_EQ(kc_nr_cpus(), n);
}

constinit kc::LockClass area_class("test.map_area");

TEST_F(PerCpuTest, LocalLockDisablesPreemptionOnThisCpu) {
  kc::LocalLock lock(area_class);
  std::thread t([&] {
    kc_set_cpu(2 % kc_nr_cpus());
    int cpu = local_lock(&lock);
    EXPECT_EQ(cpu, 2 % kc_nr_cpus());
    EXPECT_TRUE(kc_in_atomic());
    EXPECT_EQ(lock.held_cpu(), cpu);
    local_unlock(&lock);
    EXPECT_FALSE(kc_in_atomic());
    EXPECT_EQ(lock.held_cpu(), -1);
  });
  t.join();
  EXPECT_EQ(kc_warn_count(), 0u);
}

TEST_F(PerCpuTest, ThreadsOnDifferentCpusDoNotContend) {
  kc::LocalLock lock(area_class);
  std::atomic<int> inside{0};
  std::atomic<bool> both{false};
  std::vector<std::thread> threads;
  for (int cpu = 0; cpu < 2; cpu++)
    threads.emplace_back([&, cpu] {
      kc_set_cpu(cpu);
      local_lock(&lock);
      inside++;
      while (inside.load() < 2 && !both.load()) std::this_thread::yield();
      both = true;
      local_unlock(&lock);
    });
  for (auto &t : threads) t.join();
  EXPECT_TRUE(both.load());
  EXPECT_EQ(kc_warn_count(), 0u);
}

TEST_F(PerCpuTest, TwoThreadsOnOneCpuWarnAndTheSecondWaits) {
  kc::LocalLock lock(area_class);
  long shared = 0;  // per-CPU data guarded by the local lock (TSan checks the hand-over)
  std::atomic<bool> first_in{false}, release{false};
  std::thread first([&] {
    kc_set_cpu(1);
    local_lock(&lock);
    shared = 1;
    first_in = true;
    while (!release.load()) std::this_thread::yield();
    shared = 2;
    local_unlock(&lock);
  });
  while (!first_in.load()) std::this_thread::yield();
  std::atomic<bool> second_in{false};
  std::thread second([&] {
    kc_set_cpu(1);
    local_lock(&lock);
    second_in = true;
    EXPECT_EQ(shared, 2) << "the second thread must not enter before the first left";
    shared = 3;
    local_unlock(&lock);
  });
  // The second thread reports the misuse before it waits.
  while (kc_warn_count() == 0) std::this_thread::yield();
  EXPECT_FALSE(second_in.load());
  std::string text = LastWarning();
  EXPECT_NE(text.find("two threads inside local_lock test.map_area of cpu 1"), std::string::npos)
      << text;
  release = true;
  first.join();
  second.join();
  EXPECT_EQ(shared, 3);
  EXPECT_EQ(kc_warn_count(), 1u);
}

TEST_F(PerCpuTest, UnlockWithoutLockWarns) {
  kc::LocalLock lock(area_class);
  local_unlock(&lock);
  EXPECT_EQ(kc_warn_count(), 1u);
  EXPECT_EQ(preempt_count(), 0);
}

TEST_F(PerCpuTest, LocalLockRecursionIsABug) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        kc::LocalLock lock(area_class);
        local_lock(&lock);
        local_lock(&lock);
      },
      "kernel BUG at");
}

TEST_F(PerCpuTest, PercpuRefCountsCallsAndRefusesAfterDestroyBegins) {
  kc::PercpuRef ref;
  EXPECT_EQ(ref.in_flight(), 0);
  ASSERT_TRUE(ref.enter());
  ASSERT_TRUE(ref.enter());
  EXPECT_EQ(ref.in_flight(), 2);
  EXPECT_EQ(ref.begin_destroy(), 2) << "calls in flight: the destroy must be refused";
  EXPECT_FALSE(ref.enter());
  ref.abort_destroy();
  ref.exit();
  ref.exit();
  EXPECT_EQ(ref.begin_destroy(), 0);
  EXPECT_TRUE(ref.dying());
  {
    kc::PercpuRefCall call(ref);
    EXPECT_FALSE(call.ok());
  }
  EXPECT_EQ(ref.in_flight(), 0);
}

TEST_F(PerCpuTest, PercpuRefEnterOnOneCpuExitOnAnother) {
  kc::PercpuRef ref;
  std::thread a([&] {
    kc_set_cpu(0);
    ASSERT_TRUE(ref.enter());
  });
  a.join();
  std::thread b([&] {
    kc_set_cpu(1);
    ref.exit();
  });
  b.join();
  EXPECT_EQ(ref.in_flight(), 0);
}

TEST_F(PerCpuTest, PercpuRefCountsMoreThreadsThanSlotsAndOutlivesThem) {
  // More threads than exclusive slots, all inside at once: the overflow shares the last slot
  // (atomic read-modify-writes) and the sum stays exact. Then they exit on other threads than the
  // ones they entered on, after the entering threads are gone (their slots reused).
  constexpr int kThreads = kc::internal::kRefSlots + 8;
  kc::PercpuRef ref;
  std::atomic<int> inside{0};
  std::atomic<bool> release{false};
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; i++) {
    threads.emplace_back([&] {
      ASSERT_TRUE(ref.enter());
      inside.fetch_add(1);
      while (!release.load()) std::this_thread::yield();
    });
  }
  while (inside.load() != kThreads) std::this_thread::yield();
  EXPECT_EQ(ref.in_flight(), kThreads);
  EXPECT_EQ(ref.begin_destroy(), kThreads) << "every call in flight must be seen";
  ref.abort_destroy();
  release = true;
  for (auto &t : threads) t.join();
  threads.clear();
  for (int i = 0; i < kThreads; i++) threads.emplace_back([&] { ref.exit(); });
  for (auto &t : threads) t.join();
  EXPECT_EQ(ref.in_flight(), 0);
  EXPECT_EQ(ref.begin_destroy(), 0);
}

TEST_F(PerCpuTest, PercpuRefNeverLetsACallAndADestroyBothProceed) {
  // Dekker property: for each round, either the call entered (and the destroyer saw it), or the
  // call was refused. Never a call inside an object whose destroyer saw zero calls.
  for (int round = 0; round < 300; round++) {
    kc::PercpuRef ref;
    std::atomic<bool> go{false};
    bool entered = false;
    long seen = -1;
    std::thread caller([&] {
      kc_set_cpu(0);
      while (!go.load()) {
      }
      entered = ref.enter();
    });
    std::thread destroyer([&] {
      kc_set_cpu(1);
      while (!go.load()) {
      }
      seen = ref.begin_destroy();
    });
    go = true;
    caller.join();
    destroyer.join();
    ASSERT_FALSE(entered && seen == 0) << "round " << round;
    if (entered) ref.exit();
  }
}

}  // namespace

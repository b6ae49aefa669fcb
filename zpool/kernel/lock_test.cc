// SPDX-License-Identifier: GPL-2.0-only
// Tests of spinlock_t, rwlock_t, struct mutex, atomic context and the lock-order checker.
#include <gtest/gtest.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "zpool/kernel/kernel.h"
#include "zpool/kernel/lock.h"

namespace {

std::string LastWarning() {
  char buf[4096];
  kc_last_warning(buf, sizeof(buf));
  return buf;
}

class LockTest : public ::testing::Test {
 protected:
  void SetUp() override {
    GTEST_FLAG_SET(death_test_style, "threadsafe");
    kc_set_warn_policy(KC_WARN_RECORD);
    kc_warn_reset();
    kc::lockdep::ResetForTest();
  }
  void TearDown() override {
    EXPECT_EQ(kc::lockdep::HeldCount(), 0) << "a test left a lock held";
    EXPECT_EQ(preempt_count(), 0);
    kc::lockdep::ResetForTest();
    kc_set_warn_policy(KC_WARN_LOG);
    kc_warn_reset();
  }
};

constinit kc::LockClass counter_class("test.counter_lock");

TEST_F(LockTest, SpinlockMutualExclusion) {
  spinlock_t lock(counter_class);
  long counter = 0;  // deliberately not atomic: the lock must protect it (TSan checks)
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; t++)
    threads.emplace_back([&] {
      for (int i = 0; i < 20000; i++) {
        spin_lock(&lock);
        counter++;
        spin_unlock(&lock);
      }
    });
  for (auto &t : threads) t.join();
  EXPECT_EQ(counter, 80000);
  EXPECT_EQ(kc_warn_count(), 0u);
}

TEST_F(LockTest, SpinlockPutsTheThreadInAtomicContext) {
  spinlock_t lock(counter_class);
  EXPECT_FALSE(kc_in_atomic());
  {
    kc::SpinLockGuard guard(lock);
    EXPECT_TRUE(kc_in_atomic());
    EXPECT_TRUE(lock.held_by_me());
    EXPECT_EQ(kc::lockdep::HeldCount(), 1);
    might_sleep();
  }
  EXPECT_FALSE(kc_in_atomic());
  EXPECT_FALSE(lock.held_by_me());
  EXPECT_EQ(kc_warn_count(), 1u) << "might_sleep under a spinlock must WARN";
  EXPECT_NE(LastWarning().find("sleeping function called from invalid context"),
            std::string::npos);
}

TEST_F(LockTest, TrylockFailsWhileHeldElsewhere) {
  spinlock_t lock(counter_class);
  spin_lock(&lock);
  bool got = true;
  std::thread other([&] { got = spin_trylock(&lock); });
  other.join();
  EXPECT_FALSE(got);
  spin_unlock(&lock);
  ASSERT_TRUE(spin_trylock(&lock));
  EXPECT_TRUE(kc_in_atomic());
  spin_unlock(&lock);
}

TEST_F(LockTest, UnlockByANonHolderWarnsAndDoesNothing) {
  spinlock_t lock(counter_class);
  spin_unlock(&lock);  // never taken
  EXPECT_EQ(kc_warn_count(), 1u);
  EXPECT_NE(LastWarning().find("does not hold it"), std::string::npos) << LastWarning();
  spin_lock(&lock);
  std::thread other([&] { spin_unlock(&lock); });  // held by us, released by another thread
  other.join();
  EXPECT_EQ(kc_warn_count(), 2u);
  EXPECT_TRUE(lock.is_locked()) << "a bad unlock must not release the lock";
  spin_unlock(&lock);
  EXPECT_FALSE(lock.is_locked());
}

TEST_F(LockTest, SpinlockRecursionIsABug) {
  EXPECT_DEATH(
      {
        spinlock_t lock(counter_class);
        spin_lock(&lock);
        spin_lock(&lock);
      },
      "kernel BUG at .*lock.cc");
}

TEST_F(LockTest, LockdepAssertHeld) {
  spinlock_t lock(counter_class);
  lockdep_assert_held(&lock);
  EXPECT_EQ(kc_warn_count(), 1u);
  spin_lock(&lock);
  lockdep_assert_held(&lock);
  spin_unlock(&lock);
  EXPECT_EQ(kc_warn_count(), 1u);
}

constinit kc::LockClass rw_class("test.rwlock");

TEST_F(LockTest, RwlockReadersShareWritersExclude) {
  rwlock_t lock(rw_class);
  read_lock(&lock);
  bool reader_got = false, writer_got = true;
  std::thread reader([&] {
    reader_got = read_trylock(&lock);
    if (reader_got) read_unlock(&lock);
  });
  reader.join();
  std::thread writer([&] { writer_got = write_trylock(&lock); });
  writer.join();
  EXPECT_TRUE(reader_got);
  EXPECT_FALSE(writer_got);
  EXPECT_EQ(lock.readers(), 1);
  read_unlock(&lock);
  write_lock(&lock);
  EXPECT_TRUE(lock.is_write_locked());
  EXPECT_TRUE(kc_in_atomic());
  std::thread reader2([&] { reader_got = read_trylock(&lock); });
  reader2.join();
  EXPECT_FALSE(reader_got);
  write_unlock(&lock);
  EXPECT_FALSE(kc_in_atomic());
}

TEST_F(LockTest, RwlockProtectsData) {
  rwlock_t lock(rw_class);
  long a = 0, b = 0;  // invariant a == b, written under the write lock
  std::atomic<bool> stop{false};
  std::atomic<long> bad{0};
  std::vector<std::thread> threads;
  for (int r = 0; r < 2; r++)
    threads.emplace_back([&] {
      while (!stop.load()) {
        kc::ReadLockGuard guard(lock);
        if (a != b) bad++;
      }
    });
  threads.emplace_back([&] {
    for (int i = 0; i < 5000; i++) {
      kc::WriteLockGuard guard(lock);
      a++;
      b++;
    }
    stop = true;
  });
  for (auto &t : threads) t.join();
  EXPECT_EQ(bad.load(), 0);
  EXPECT_EQ(a, 5000);
}

TEST_F(LockTest, WaitingWriterBlocksNewReadersAndReportsContention) {
  rwlock_t lock(rw_class);
  read_lock(&lock);
  std::atomic<bool> writer_in{false};
  std::thread writer([&] {
    write_lock(&lock);
    writer_in = true;
    write_unlock(&lock);
  });
  while (!rwlock_is_contended(&lock)) std::this_thread::yield();
  bool reader_got = true;
  std::thread reader([&] {
    reader_got = read_trylock(&lock);
    if (reader_got) read_unlock(&lock);
  });
  reader.join();
  EXPECT_FALSE(reader_got) << "a waiting writer must keep new readers out";
  EXPECT_FALSE(writer_in.load());
  read_unlock(&lock);
  writer.join();
  EXPECT_TRUE(writer_in.load());
}

constinit kc::LockClass mutex_class("test.mutex");

TEST_F(LockTest, MutexSleepsAndIsExclusive) {
  struct mutex m(mutex_class);
  long counter = 0;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; t++)
    threads.emplace_back([&] {
      for (int i = 0; i < 5000; i++) {
        kc::MutexGuard guard(m);
        EXPECT_FALSE(kc_in_atomic()) << "a mutex does not disable preemption";
        counter++;
      }
    });
  for (auto &t : threads) t.join();
  EXPECT_EQ(counter, 20000);
  EXPECT_EQ(kc_warn_count(), 0u);
}

TEST_F(LockTest, MutexUnderSpinlockWarns) {
  spinlock_t spin(counter_class);
  struct mutex m(mutex_class);
  spin_lock(&spin);
  mutex_lock(&m);  // may sleep: not allowed in atomic context
  mutex_unlock(&m);
  spin_unlock(&spin);
  EXPECT_EQ(kc_warn_count(), 1u);
  EXPECT_NE(LastWarning().find("sleeping function called from invalid context"),
            std::string::npos);
}

// ---- lock-order checker ----------------------------------------------------------------------

constinit kc::LockClass class_a("test.A");
constinit kc::LockClass class_b("test.B");
constinit kc::LockClass class_c("test.C");

TEST_F(LockTest, ConsistentOrderIsNotReported) {
  spinlock_t a(class_a), b(class_b), c(class_c);
  for (int i = 0; i < 10; i++) {
    spin_lock(&a);
    spin_lock(&b);
    spin_lock(&c);
    spin_unlock(&c);
    spin_unlock(&b);
    spin_unlock(&a);
    spin_lock(&b);
    spin_lock(&c);
    spin_unlock(&c);
    spin_unlock(&b);
  }
  EXPECT_EQ(kc_warn_count(), 0u);
}

TEST_F(LockTest, InversionWarnsOnceWithBothStacksWithoutADeadlock) {
  spinlock_t a(class_a), b(class_b);
  // Thread 1 takes A then B; later (no overlap, so no deadlock) thread 2 takes B then A.
  std::thread first([&] {
    spin_lock(&a);
    spin_lock(&b);
    spin_unlock(&b);
    spin_unlock(&a);
  });
  first.join();
  EXPECT_EQ(kc_warn_count(), 0u);
  std::thread second([&] {
    for (int i = 0; i < 3; i++) {
      spin_lock(&b);
      spin_lock(&a);
      spin_unlock(&a);
      spin_unlock(&b);
    }
  });
  second.join();
  EXPECT_EQ(kc_warn_count(), 1u) << "reported once per pair, not per acquisition";
  std::string text = LastWarning();
  EXPECT_NE(text.find("circular locking dependency"), std::string::npos) << text;
  EXPECT_NE(text.find("acquiring test.A while holding test.B"), std::string::npos) << text;
  EXPECT_NE(text.find("test.A -> test.B"), std::string::npos) << text;
  EXPECT_NE(text.find("this acquisition:"), std::string::npos) << text;
  EXPECT_NE(text.find("the earlier order, first seen at:"), std::string::npos) << text;
  // Both stacks are symbolized frames.
  size_t first_frame = text.find("#0 ");
  ASSERT_NE(first_frame, std::string::npos) << text;
  EXPECT_NE(text.find("#0 ", first_frame + 1), std::string::npos) << text;
}

TEST_F(LockTest, ThreeClassCycleIsFound) {
  spinlock_t a(class_a), b(class_b), c(class_c);
  spin_lock(&a);
  spin_lock(&b);
  spin_unlock(&b);
  spin_unlock(&a);
  spin_lock(&b);
  spin_lock(&c);
  spin_unlock(&c);
  spin_unlock(&b);
  EXPECT_EQ(kc_warn_count(), 0u);
  spin_lock(&c);
  spin_lock(&a);  // closes A -> B -> C -> A
  spin_unlock(&a);
  spin_unlock(&c);
  EXPECT_EQ(kc_warn_count(), 1u);
  EXPECT_NE(LastWarning().find("test.A -> test.B -> test.C"), std::string::npos)
      << LastWarning();
}

TEST_F(LockTest, InversionAcrossLockKinds) {
  spinlock_t a(class_a);
  rwlock_t b(class_b);
  read_lock(&b);
  spin_lock(&a);
  spin_unlock(&a);
  read_unlock(&b);
  spin_lock(&a);
  write_lock(&b);
  write_unlock(&b);
  spin_unlock(&a);
  EXPECT_EQ(kc_warn_count(), 1u);
}

TEST_F(LockTest, InversionAbortsUnderAbortPolicy) {
  EXPECT_DEATH(
      {
        kc_set_warn_policy(KC_WARN_ABORT);
        spinlock_t a(class_a);
        spinlock_t b(class_b);
        spin_lock(&a);
        spin_lock(&b);
        spin_unlock(&b);
        spin_unlock(&a);
        spin_lock(&b);
        spin_lock(&a);
      },
      "possible circular locking dependency detected");
}

TEST_F(LockTest, TrylockRecordsNoOrderButLaterLocksOrderAfterIt) {
  spinlock_t a(class_a), b(class_b), c(class_c);
  spin_lock(&b);
  ASSERT_TRUE(spin_trylock(&a));  // B then A, but a trylock never waits: no edge
  spin_unlock(&a);
  spin_unlock(&b);
  spin_lock(&a);
  spin_lock(&b);  // A then B: no inversion with the trylock above
  spin_unlock(&b);
  spin_unlock(&a);
  EXPECT_EQ(kc_warn_count(), 0u);
  // A lock taken while a trylocked one is held does record its order.
  ASSERT_TRUE(spin_trylock(&c));
  spin_lock(&a);  // C then A
  spin_unlock(&a);
  spin_unlock(&c);
  spin_lock(&a);
  spin_lock(&c);  // A then C: inversion
  spin_unlock(&c);
  spin_unlock(&a);
  EXPECT_EQ(kc_warn_count(), 1u);
}

TEST_F(LockTest, OrderIsForgottenByResetForTest) {
  spinlock_t a(class_a), b(class_b);
  spin_lock(&a);
  spin_lock(&b);
  spin_unlock(&b);
  spin_unlock(&a);
  kc::lockdep::ResetForTest();
  spin_lock(&b);
  spin_lock(&a);
  spin_unlock(&a);
  spin_unlock(&b);
  EXPECT_EQ(kc_warn_count(), 0u);
}

TEST_F(LockTest, DisabledCheckerRecordsNothing) {
  kc::lockdep::SetEnabled(false);
  spinlock_t a(class_a), b(class_b);
  spin_lock(&a);
  spin_lock(&b);
  spin_unlock(&b);
  spin_unlock(&a);
  spin_lock(&b);
  spin_lock(&a);
  spin_unlock(&a);
  spin_unlock(&b);
  kc::lockdep::SetEnabled(true);
  EXPECT_EQ(kc_warn_count(), 0u);
}

}  // namespace

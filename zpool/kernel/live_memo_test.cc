// SPDX-License-Identifier: GPL-2.0-only
// kc::LiveMemo answers as kmem_cache_owns() would, including after a free on another thread and
// for an object reallocated at the address of a freed one.
#include "zpool/kernel/live_memo.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

namespace {

class LiveMemoTest : public ::testing::Test {
 protected:
  void SetUp() override {
    cache_ = kmem_cache_create("live_memo_test", 96, 0);
    ASSERT_NE(cache_, nullptr);
  }
  void TearDown() override { kmem_cache_destroy(cache_); }

  void *Alloc() {
    void *obj = kmem_cache_alloc(cache_, GFP_KERNEL);
    EXPECT_NE(obj, nullptr);
    return obj;
  }

  struct kmem_cache *cache_ = nullptr;
  kc::FreeCount frees_;
};

TEST_F(LiveMemoTest, AFreshMemoAsksTheCache) {
  kc::LiveMemo memo;
  EXPECT_FALSE(memo.Owns(cache_, frees_, nullptr));
  int on_stack = 0;
  EXPECT_FALSE(memo.Owns(cache_, frees_, &on_stack));
  void *obj = Alloc();
  EXPECT_TRUE(memo.Owns(cache_, frees_, obj));
  EXPECT_TRUE(memo.Owns(cache_, frees_, obj));  // from the memo
  EXPECT_FALSE(memo.Owns(cache_, frees_, static_cast<char *>(obj) + 8)) << "inside an object";
  EXPECT_FALSE(memo.Owns(cache_, frees_, nullptr)) << "after a proof, NULL is still not live";
  frees_.Free(cache_, obj);
}

TEST_F(LiveMemoTest, AFreeEndsTheMemo) {
  kc::LiveMemo memo;
  void *obj = Alloc();
  ASSERT_TRUE(memo.Owns(cache_, frees_, obj));
  frees_.Free(cache_, obj);
  EXPECT_FALSE(memo.Owns(cache_, frees_, obj));
  EXPECT_FALSE(kmem_cache_owns(cache_, obj));
  // The slot is reused: a new object at the same address is live again.
  void *again = Alloc();
  ASSERT_EQ(again, obj) << "the cache reuses the freed slot first";
  EXPECT_TRUE(memo.Owns(cache_, frees_, again));
  frees_.Free(cache_, again);
}

TEST_F(LiveMemoTest, AFreeOfAnotherObjectAlsoEndsIt) {
  kc::LiveMemo memo;
  void *a = Alloc(), *b = Alloc();
  ASSERT_TRUE(memo.Owns(cache_, frees_, a));
  frees_.Free(cache_, b);
  EXPECT_TRUE(memo.Owns(cache_, frees_, a)) << "asked the cache again: a is still live";
  frees_.Free(cache_, a);
  EXPECT_FALSE(memo.Owns(cache_, frees_, a));
}

// Each thread has its own memo (a thread_local in the allocators); a free on one thread ends the
// memo of every other.
TEST_F(LiveMemoTest, AFreeOnAnotherThreadEndsEveryMemo) {
  static constinit thread_local kc::LiveMemo memo;
  void *obj = Alloc();
  ASSERT_TRUE(memo.Owns(cache_, frees_, obj));
  std::vector<bool> seen;
  std::thread other([&] {
    seen.push_back(memo.Owns(cache_, frees_, obj));  // this thread's memo: proves it anew
    frees_.Free(cache_, obj);
    seen.push_back(memo.Owns(cache_, frees_, obj));
  });
  other.join();
  EXPECT_EQ(seen, (std::vector<bool>{true, false}));
  EXPECT_FALSE(memo.Owns(cache_, frees_, obj)) << "the main thread's memo outlived the free";
}

// While another thread allocates and frees other objects of the cache (each free ending every
// memo), a thread's object that stays live is never reported dead, and each freed object is
// dead to the thread that freed it. Under TSan this also checks the memo's accesses.
TEST_F(LiveMemoTest, ChurnOnAnotherThreadNeverMakesALiveObjectDead) {
  void *kept = Alloc();
  std::atomic<bool> done{false};
  std::atomic<long> wrong_dead{0}, checks{0};
  std::thread user([&] {
    static constinit thread_local kc::LiveMemo memo;
    while (!done.load(std::memory_order_acquire)) {
      if (!memo.Owns(cache_, frees_, kept)) wrong_dead.fetch_add(1, std::memory_order_relaxed);
      checks.fetch_add(1, std::memory_order_relaxed);
    }
  });
  kc::LiveMemo memo;
  long wrong_live = 0;
  for (int i = 0; i < 2000; i++) {
    void *obj = Alloc();
    if (!memo.Owns(cache_, frees_, obj)) wrong_live++;
    frees_.Free(cache_, obj);
    if (memo.Owns(cache_, frees_, obj)) wrong_live++;  // no other thread allocates: it is dead
  }
  while (checks.load(std::memory_order_relaxed) < 1000) std::this_thread::yield();
  done.store(true, std::memory_order_release);
  user.join();
  EXPECT_EQ(wrong_dead.load(), 0) << "a live object was reported dead";
  EXPECT_EQ(wrong_live, 0) << "a freed object was reported live (or a new one dead)";
  frees_.Free(cache_, kept);
}

}  // namespace

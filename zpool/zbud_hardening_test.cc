// SPDX-License-Identifier: GPL-2.0-only
// zbud's part of the hardening catalogue (issue 7, docs/hardening.md).
//
// For each misuse that can happen in zbud's own API, under the "record" policy: the call WARNs
// exactly once with that misuse's kind, returns what the catalogue says, every other object keeps
// its contents and the validator passes; under "abort", a death test pins the message.
// Entries that cannot happen in zbud's own API: nested-map (4; nested maps are legal in zbud),
// concurrent-map (5; zbud has no per-CPU mapping area), write-ro (12; zbud_map has no mode),
// driver-refcount (14; zpool's). Sleep-while-mapped (7) applies to zbud only when the caller is in
// atomic context for another reason (a zsmalloc mapping, a spinlock): zbud's own maps may sleep.
//
// Then the sanitizer-aware memory (only under their own sanitizer) and a misuse-free stress run
// under "abort". Concurrent misuse (destroy while a call is in flight on another thread) is in
// zbud_threads_test.cc.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "zpool/kernel/kernel.h"
#include "zpool/kernel/page.h"
#include "zpool/kernel/sanitizer.h"
#include "zpool/misuse.h"
#include "zpool/zbud.h"

namespace {

constexpr unsigned long kChunk = PAGE_SIZE >> 6;
constexpr size_t kMax = PAGE_SIZE - 2 * kChunk;

std::function<int(zbud_pool *, unsigned long)> g_evict;
int EvictThunk(zbud_pool *pool, unsigned long handle) {
  return g_evict ? g_evict(pool, handle) : -ENOENT;
}
const zbud_ops kOps = {EvictThunk};

unsigned long PageOf(unsigned long handle) { return handle & PAGE_MASK; }
size_t Chunks(unsigned n) { return static_cast<size_t>(n) * kChunk; }
u8 PatternByte(unsigned seed, size_t i) { return static_cast<u8>(seed * 151u + i * 11u + 3u); }

// Writes that ASan does not see: an overflow "from uninstrumented code", so that the
// always-on redzone check is what catches it, in every build.
__attribute__((no_sanitize("address"))) void RawWrite(unsigned long addr, u8 value) {
  *reinterpret_cast<volatile u8 *>(addr) = value;
}

__attribute__((no_sanitize("address", "memory"))) u8 RawRead(unsigned long addr) {
  return *reinterpret_cast<volatile const u8 *>(addr);
}

std::string LastWarning() {
  char buf[1024] = "";
  kc_last_warning(buf, sizeof(buf));
  return buf;
}

class ZbudHardeningTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!ZPOOL_CHECKS) GTEST_SKIP() << "misuse checks compiled out (ZPOOL_UNCHECKED=1)";
    // Death tests fork (gtest's "fast" style): the process is single-threaded whenever one runs
    // (the helper threads of the evict tests are joined), and a re-exec per death test would
    // cost seconds under the sanitizers.
    GTEST_FLAG_SET(death_test_style, "fast");
    kc_fail_nth_alloc(0);
    kc_set_warn_policy(KC_WARN_RECORD);
    kc_warn_reset();
    zpool_misuse_reset();
    g_evict = nullptr;
    start_pages_ = kc_pages_in_use();
    start_meta_ = kc_meta_in_use();
    pool_ = zbud_create_pool(GFP_KERNEL, &kOps);
    ASSERT_NE(pool_, nullptr);
    // Bystanders, checked after every misuse: page A holds two 25-chunk objects, page B one of
    // 50 chunks (13 chunks free: too few for the 15- and 20-chunk objects of the tests).
    for (unsigned i = 0; i < 3; i++) {
      size_t size = i < 2 ? Chunks(25) - 3 : Chunks(50) - 7;
      unsigned long handle = 0;
      ASSERT_EQ(zbud_alloc(pool_, size, GFP_KERNEL, &handle), 0);
      Fill(handle, size, 100 + i);
      bystanders_.push_back({handle, size, 100 + i});
    }
    ASSERT_EQ(zbud_get_pool_size(pool_), 2u);
  }

  void TearDown() override {
    g_evict = nullptr;
    if (pool_ != nullptr) {
      ExpectIntact();
      for (const Obj &obj : bystanders_) zbud_free(pool_, obj.handle);
      zbud_destroy_pool(pool_);
    }
    EXPECT_EQ(zpool_misuse_total(), expected_misuses_) << LastWarning();
    EXPECT_EQ(kc_warn_count(), expected_misuses_) << LastWarning();
    EXPECT_EQ(kc_pages_in_use(), start_pages_) << "pages leaked";
    EXPECT_EQ(kc_meta_in_use(), start_meta_) << "metadata leaked";
    kc_fail_nth_alloc(0);
    kc_set_warn_policy(KC_WARN_LOG);
  }

  struct Obj {
    unsigned long handle;
    size_t size;
    unsigned seed;
  };

  void Fill(unsigned long handle, size_t size, unsigned seed) {
    auto *p = static_cast<u8 *>(zbud_map(pool_, handle));
    ASSERT_NE(p, nullptr);
    for (size_t i = 0; i < size; i++) p[i] = PatternByte(seed, i);
    zbud_unmap(pool_, handle);
  }
  bool Holds(unsigned long handle, size_t size, unsigned seed) {
    auto *p = static_cast<const u8 *>(zbud_map(pool_, handle));
    if (p == nullptr) return false;
    bool same = true;
    for (size_t i = 0; i < size && same; i++) same = p[i] == PatternByte(seed, i);
    zbud_unmap(pool_, handle);
    return same;
  }
  unsigned long Alloc(size_t size, unsigned seed) {
    unsigned long handle = 0;
    EXPECT_EQ(zbud_alloc(pool_, size, GFP_KERNEL, &handle), 0);
    Fill(handle, size, seed);
    return handle;
  }

  // The bystanders keep their contents and the pool is valid. Adds no WARN of its own.
  void ExpectIntact() {
    unsigned long warns = kc_warn_count();
    for (const Obj &obj : bystanders_)
      EXPECT_TRUE(Holds(obj.handle, obj.size, obj.seed)) << "bystander " << obj.handle;
    char why[256] = "";
    EXPECT_EQ(zbud_validate_TestOnly(pool_, why, sizeof(why)), 0) << why;
    EXPECT_EQ(kc_warn_count(), warns);
  }

  // Runs `misuse`, which must WARN exactly once, with `kind`, its name leading the message.
  template <class Fn>
  void ExpectMisuse(zpool_misuse kind, Fn &&misuse, const char *message_part = nullptr) {
    const unsigned long warns = kc_warn_count();
    const unsigned long of_kind = zpool_misuse_count(kind);
    const unsigned long total = zpool_misuse_total();
    misuse();
    EXPECT_EQ(kc_warn_count(), warns + 1) << LastWarning();
    EXPECT_EQ(zpool_misuse_count(kind), of_kind + 1) << LastWarning();
    EXPECT_EQ(zpool_misuse_total(), total + 1) << LastWarning();
    const std::string text = LastWarning();
    EXPECT_NE(text.find(std::string(zpool_misuse_name(kind)) + ": "), std::string::npos) << text;
    if (message_part != nullptr) EXPECT_NE(text.find(message_part), std::string::npos) << text;
    expected_misuses_++;
    if (pool_ != nullptr) ExpectIntact();
  }

  zbud_pool *pool_ = nullptr;
  std::vector<Obj> bystanders_;
  unsigned long expected_misuses_ = 0;
  unsigned long start_pages_ = 0;
  unsigned long start_meta_ = 0;
};

// ---- 1. destroy-nonempty ---------------------------------------------------------------------

TEST_F(ZbudHardeningTest, DestroyNonEmptyWarnsWithCountsAndFreesEverything) {
  zbud_pool *pool = pool_;
  pool_ = nullptr;  // destroyed here, with its bystanders: 3 objects in 2 pages
  ExpectMisuse(ZPOOL_MISUSE_DESTROY_NONEMPTY, [&] { zbud_destroy_pool(pool); },
               "3 object(s) in 2 page(s)");
  EXPECT_EQ(kc_pages_in_use(), start_pages_);
  EXPECT_EQ(kc_meta_in_use(), start_meta_);
}

TEST_F(ZbudHardeningTest, DestroyNonEmptyAborts) {
  EXPECT_DEATH(
      {
        kc_set_warn_policy(KC_WARN_ABORT);
        zbud_destroy_pool(pool_);
      },
      "destroy-nonempty: zbud_destroy_pool\\(0x[0-9a-f]+\\): the pool still holds 3 object\\(s\\) "
      "in 2 page\\(s\\); freeing them");
}

// ---- 2. destroy-busy -----------------------------------------------------------------------------

TEST_F(ZbudHardeningTest, DestroyWhileMappedIsRefused) {
  unsigned long h = Alloc(500, 7);
  void *p = zbud_map(pool_, h);
  ASSERT_NE(p, nullptr);
  ExpectMisuse(ZPOOL_MISUSE_DESTROY_BUSY, [&] { zbud_destroy_pool(pool_); },
               "1 mapping(s) outstanding");
  // Still a live, usable pool: the mapping still works, allocation works.
  EXPECT_EQ(static_cast<u8 *>(p)[499], PatternByte(7, 499));
  unsigned long other = Alloc(100, 8);
  zbud_unmap(pool_, h);
  EXPECT_TRUE(Holds(h, 500, 7));
  zbud_free(pool_, h);
  zbud_free(pool_, other);
}

TEST_F(ZbudHardeningTest, DestroyFromAnEvictCallbackIsRefused) {
  // The victim's page is the LRU head: the callback refuses the bystanders (legal failures)
  // until the reclaim reaches it, then destroys the pool from inside the reclaim call.
  unsigned long victim = Alloc(kMax, 9);
  std::vector<unsigned long> given;
  g_evict = [&](zbud_pool *p, unsigned long handle) {
    given.push_back(handle);
    if (handle != victim) return -EBUSY;
    zbud_destroy_pool(p);  // the reclaim call is in flight
    zbud_free(p, handle);
    return 0;
  };
  int ret = -1;
  ExpectMisuse(ZPOOL_MISUSE_DESTROY_BUSY, [&] { ret = zbud_reclaim_page(pool_, 4); },
               "call(s) in flight");
  EXPECT_EQ(ret, 0) << "the victim's page is reclaimed after the refused destroy";
  EXPECT_EQ(given, (std::vector<unsigned long>{bystanders_[0].handle, bystanders_[2].handle,
                                               victim}));
  EXPECT_EQ(zbud_get_pool_size(pool_), 2u);
}

TEST_F(ZbudHardeningTest, DestroyWhileMappedAborts) {
  unsigned long h = Alloc(500, 7);
  ASSERT_NE(zbud_map(pool_, h), nullptr);
  EXPECT_DEATH(
      {
        kc_set_warn_policy(KC_WARN_ABORT);
        zbud_destroy_pool(pool_);
      },
      "destroy-busy: zbud_destroy_pool\\(0x[0-9a-f]+\\): 1 mapping\\(s\\) outstanding; not "
      "destroyed \\(missing zbud_unmap\\(\\)\\?\\)");
  zbud_unmap(pool_, h);
  zbud_free(pool_, h);
}

// ---- 3. use-after-destroy -----------------------------------------------------------------------

TEST_F(ZbudHardeningTest, EveryCallAfterDestroyWarnsAndFails) {
  zbud_pool *dead = zbud_create_pool(GFP_KERNEL, &kOps);
  ASSERT_NE(dead, nullptr);
  unsigned long h = 0;
  ASSERT_EQ(zbud_alloc(dead, 100, GFP_KERNEL, &h), 0);
  zbud_free(dead, h);
  zbud_destroy_pool(dead);
  ASSERT_EQ(kc_warn_count(), 0u);

  unsigned long handle = 0x77;
  int ret = 0;
  ExpectMisuse(ZPOOL_MISUSE_USE_AFTER_DESTROY,
               [&] { ret = zbud_alloc(dead, 100, GFP_KERNEL, &handle); }, "zbud_alloc(");
  EXPECT_EQ(ret, -EINVAL);
  EXPECT_EQ(handle, 0x77u);
  ExpectMisuse(ZPOOL_MISUSE_USE_AFTER_DESTROY, [&] { zbud_free(dead, h); }, "zbud_free(");
  void *p = reinterpret_cast<void *>(1);
  ExpectMisuse(ZPOOL_MISUSE_USE_AFTER_DESTROY, [&] { p = zbud_map(dead, h); }, "zbud_map(");
  EXPECT_EQ(p, nullptr);
  ExpectMisuse(ZPOOL_MISUSE_USE_AFTER_DESTROY, [&] { zbud_unmap(dead, h); }, "zbud_unmap(");
  ExpectMisuse(ZPOOL_MISUSE_USE_AFTER_DESTROY, [&] { ret = zbud_reclaim_page(dead, 8); },
               "zbud_reclaim_page(");
  EXPECT_EQ(ret, -EINVAL);
  u64 size = 1;
  ExpectMisuse(ZPOOL_MISUSE_USE_AFTER_DESTROY, [&] { size = zbud_get_pool_size(dead); },
               "zbud_get_pool_size(");
  EXPECT_EQ(size, 0u);
  ExpectMisuse(ZPOOL_MISUSE_USE_AFTER_DESTROY, [&] { zbud_destroy_pool(dead); },
               "zbud_destroy_pool(");
  // Not a pool at all: the same answer, without a dereference.
  ExpectMisuse(ZPOOL_MISUSE_USE_AFTER_DESTROY,
               [&] { ret = zbud_alloc(nullptr, 100, GFP_KERNEL, &handle); });
  EXPECT_EQ(ret, -EINVAL);
  int on_stack = 0;
  ExpectMisuse(ZPOOL_MISUSE_USE_AFTER_DESTROY,
               [&] { zbud_free(reinterpret_cast<zbud_pool *>(&on_stack), h); });
  // The validator reports, without a WARN.
  char why[128];
  EXPECT_EQ(zbud_validate_TestOnly(dead, why, sizeof(why)), -EINVAL);
}

TEST_F(ZbudHardeningTest, UseAfterDestroyAborts) {
  zbud_pool *dead = zbud_create_pool(GFP_KERNEL, &kOps);
  ASSERT_NE(dead, nullptr);
  zbud_destroy_pool(dead);
  EXPECT_DEATH(
      {
        kc_set_warn_policy(KC_WARN_ABORT);
        unsigned long h;
        zbud_alloc(dead, 10, GFP_KERNEL, &h);
      },
      "use-after-destroy: zbud_alloc\\(0x[0-9a-f]+, 10\\): the pool is destroyed or being "
      "destroyed");
}

// ---- 6. bad-unmap ---------------------------------------------------------------------------------

TEST_F(ZbudHardeningTest, UnmapOfAnUnmappedHandleIsANoOp) {
  unsigned long h = Alloc(300, 5);
  ExpectMisuse(ZPOOL_MISUSE_BAD_UNMAP, [&] { zbud_unmap(pool_, h); }, "is not mapped");
  void *p1 = zbud_map(pool_, h);
  void *p2 = zbud_map(pool_, h);  // nested: legal
  ASSERT_EQ(p1, p2);
  zbud_unmap(pool_, h);
  zbud_unmap(pool_, h);
  ExpectMisuse(ZPOOL_MISUSE_BAD_UNMAP, [&] { zbud_unmap(pool_, h); });
  // Unmapping the other buddy than the one mapped.
  unsigned long other = bystanders_[0].handle;
  void *p = zbud_map(pool_, h);
  ASSERT_NE(p, nullptr);
  ExpectMisuse(ZPOOL_MISUSE_BAD_UNMAP, [&] { zbud_unmap(pool_, other); });
  EXPECT_EQ(static_cast<u8 *>(p)[0], PatternByte(5, 0)) << "h is still mapped";
  zbud_unmap(pool_, h);
  EXPECT_TRUE(Holds(h, 300, 5));
  zbud_free(pool_, h);
}

TEST_F(ZbudHardeningTest, BadUnmapAborts) {
  unsigned long h = Alloc(300, 5);
  EXPECT_DEATH(
      {
        kc_set_warn_policy(KC_WARN_ABORT);
        zbud_unmap(pool_, h);
      },
      "bad-unmap: zbud_unmap\\(0x[0-9a-f]+, 0x[0-9a-f]+\\): the (first|last) buddy is not "
      "mapped \\(unbalanced zbud_unmap\\(\\)");
  zbud_free(pool_, h);
}

// ---- 7. sleep-while-mapped (atomic context from elsewhere) ---------------------------------

TEST_F(ZbudHardeningTest, MaySleepCallsInAtomicContextWarnOnceAndDoNotSleep) {
  unsigned long h = 0;
  int ret = -1;
  preempt_disable();  // as if this thread held a zsmalloc mapping
  ExpectMisuse(ZPOOL_MISUSE_SLEEP_WHILE_MAPPED,
               [&] { ret = zbud_alloc(pool_, kMax, GFP_KERNEL, &h); }, "zbud_alloc(");
  EXPECT_EQ(ret, 0) << "allocated without direct reclaim, and no might_sleep() WARN";
  // Non-blocking flags are fine in atomic context.
  unsigned long h2 = 0;
  EXPECT_EQ(zbud_alloc(pool_, kMax, GFP_ATOMIC, &h2), 0);
  g_evict = [](zbud_pool *p, unsigned long handle) {
    zbud_free(p, handle);
    return 0;
  };
  ExpectMisuse(ZPOOL_MISUSE_SLEEP_WHILE_MAPPED, [&] { ret = zbud_reclaim_page(pool_, 8); },
               "zbud_reclaim_page(");
  EXPECT_EQ(ret, -EAGAIN);
  zbud_pool *other = nullptr;
  ExpectMisuse(ZPOOL_MISUSE_SLEEP_WHILE_MAPPED,
               [&] { other = zbud_create_pool(GFP_KERNEL, &kOps); }, "zbud_create_pool(");
  preempt_enable();
  ASSERT_NE(other, nullptr);
  zbud_destroy_pool(other);
  EXPECT_EQ(zbud_get_pool_size(pool_), 4u) << "nothing was reclaimed";
  zbud_free(pool_, h);
  zbud_free(pool_, h2);
}

// ---- 8. double-free ------------------------------------------------------------------------------

TEST_F(ZbudHardeningTest, DoubleFreeOfAFirstBuddyIsANoOp) {
  unsigned long first = Alloc(Chunks(20), 1);
  unsigned long last = Alloc(Chunks(20), 2);
  ASSERT_EQ(PageOf(first), PageOf(last));
  zbud_free(pool_, first);
  ExpectMisuse(ZPOOL_MISUSE_DOUBLE_FREE, [&] { zbud_free(pool_, first); },
               "the first buddy is free");
  EXPECT_TRUE(Holds(last, Chunks(20), 2));
  EXPECT_EQ(zbud_get_pool_size(pool_), 3u);
  zbud_free(pool_, last);
}

TEST_F(ZbudHardeningTest, DoubleFreeOfALastBuddyIsANoOp) {
  unsigned long first = Alloc(Chunks(20), 1);
  unsigned long last = Alloc(Chunks(30) - 1, 2);
  ASSERT_EQ(PageOf(first), PageOf(last));
  zbud_free(pool_, last);
  ExpectMisuse(ZPOOL_MISUSE_DOUBLE_FREE, [&] { zbud_free(pool_, last); },
               "the last buddy is free");
  EXPECT_TRUE(Holds(first, Chunks(20), 1));
  zbud_free(pool_, first);
}

TEST_F(ZbudHardeningTest, DoubleFreeAfterThePageWasFreedIsANoOp) {
  unsigned long alone = Alloc(kMax, 3);
  zbud_free(pool_, alone);  // its page goes back to the page allocator
  ExpectMisuse(ZPOOL_MISUSE_DOUBLE_FREE, [&] { zbud_free(pool_, alone); },
               "its page has been freed already");
  EXPECT_EQ(zbud_get_pool_size(pool_), 2u);
}

TEST_F(ZbudHardeningTest, MapOrUnmapOfAFreedHandleIsReported) {
  unsigned long first = Alloc(Chunks(20), 1);
  unsigned long last = Alloc(Chunks(20), 2);
  zbud_free(pool_, last);
  void *p = reinterpret_cast<void *>(1);
  ExpectMisuse(ZPOOL_MISUSE_DOUBLE_FREE, [&] { p = zbud_map(pool_, last); },
               "use after zbud_free()");
  EXPECT_EQ(p, nullptr);
  ExpectMisuse(ZPOOL_MISUSE_DOUBLE_FREE, [&] { zbud_unmap(pool_, last); });
  zbud_free(pool_, first);
}

TEST_F(ZbudHardeningTest, DoubleFreeAborts) {
  unsigned long first = Alloc(Chunks(20), 1);
  unsigned long last = Alloc(Chunks(20), 2);
  zbud_free(pool_, first);
  EXPECT_DEATH(
      {
        kc_set_warn_policy(KC_WARN_ABORT);
        zbud_free(pool_, first);
      },
      "double-free: zbud_free\\(0x[0-9a-f]+, 0x[0-9a-f]+\\): already free: the first buddy is "
      "free \\(double free\\?\\)");
  zbud_free(pool_, last);
}

// ---- 9. invalid-handle ---------------------------------------------------------------------------

TEST_F(ZbudHardeningTest, HandlesThisPoolNeverReturnedAreRejected) {
  unsigned long first = Alloc(Chunks(20), 1);
  unsigned long last = Alloc(Chunks(15), 2);
  ASSERT_EQ(PageOf(first), PageOf(last));
  zbud_pool *other = zbud_create_pool(GFP_KERNEL, &kOps);
  ASSERT_NE(other, nullptr);
  unsigned long foreign = 0;
  ASSERT_EQ(zbud_alloc(other, 100, GFP_KERNEL, &foreign), 0);
  struct page *raw_page = alloc_page(GFP_KERNEL);
  ASSERT_NE(raw_page, nullptr);
  const unsigned long raw = reinterpret_cast<unsigned long>(page_address(raw_page)) + kChunk;
  int on_stack = 0;
  void *heap = malloc(64);

  const std::vector<std::pair<unsigned long, const char *>> bad = {
      {0, "not an address in any page"},
      {1, "not an address in any page"},
      {0xdeadbeef, "not an address in any page"},
      {~0UL, "not an address in any page"},
      {reinterpret_cast<unsigned long>(&on_stack), "not an address in any page"},
      {reinterpret_cast<unsigned long>(heap), "not an address in any page"},
      {reinterpret_cast<unsigned long>(pool_), "not an address in any page"},
      {first + 1, "not the start of a buddy"},
      {first + 8, "not the start of a buddy"},
      {PageOf(first), "points into the page header"},
      {PageOf(first) + 8, "points into the page header"},
      {first + kChunk, "not the start of a buddy"},  // inside the first buddy
      {last + kChunk, "not the start of a buddy"},   // inside the last buddy
      {last - kChunk, "not the start of a buddy"},   // in the free chunks
      {foreign, "belongs to another pool"},
      {raw, "belongs to another pool"},
  };
  for (const auto &[handle, why] : bad) {
    SCOPED_TRACE(handle);
    ExpectMisuse(ZPOOL_MISUSE_INVALID_HANDLE, [&] { zbud_free(pool_, handle); }, why);
    void *p = reinterpret_cast<void *>(1);
    ExpectMisuse(ZPOOL_MISUSE_INVALID_HANDLE, [&] { p = zbud_map(pool_, handle); }, why);
    EXPECT_EQ(p, nullptr);
    ExpectMisuse(ZPOOL_MISUSE_INVALID_HANDLE, [&] { zbud_unmap(pool_, handle); }, why);
  }
  EXPECT_TRUE(Holds(first, Chunks(20), 1));
  EXPECT_TRUE(Holds(last, Chunks(15), 2));
  free(heap);
  __free_page(raw_page);
  zbud_free(other, foreign);
  zbud_destroy_pool(other);
  zbud_free(pool_, first);
  zbud_free(pool_, last);
}

TEST_F(ZbudHardeningTest, InvalidHandleAborts) {
  unsigned long h = Alloc(Chunks(20), 1);
  EXPECT_DEATH(
      {
        kc_set_warn_policy(KC_WARN_ABORT);
        zbud_map(pool_, h + 8);
      },
      "invalid-handle: zbud_map\\(0x[0-9a-f]+, 0x[0-9a-f]+\\): not a handle of this pool: it "
      "is not the start of a buddy");
  zbud_free(pool_, h);
}

// ---- 10. free-mapped ----------------------------------------------------------------------------

TEST_F(ZbudHardeningTest, FreeOfAMappedHandleIsRefused) {
  unsigned long h = Alloc(700, 4);
  auto *p = static_cast<u8 *>(zbud_map(pool_, h));
  ASSERT_NE(p, nullptr);
  ExpectMisuse(ZPOOL_MISUSE_FREE_MAPPED, [&] { zbud_free(pool_, h); }, "missing zbud_unmap()");
  // Still allocated and mapped.
  EXPECT_EQ(p[699], PatternByte(4, 699));
  p[0] = 0x42;
  zbud_unmap(pool_, h);
  auto *q = static_cast<u8 *>(zbud_map(pool_, h));
  EXPECT_EQ(q[0], 0x42);
  zbud_unmap(pool_, h);
  zbud_free(pool_, h);  // now fine
}

TEST_F(ZbudHardeningTest, FreeMappedAborts) {
  unsigned long h = Alloc(700, 4);
  ASSERT_NE(zbud_map(pool_, h), nullptr);
  EXPECT_DEATH(
      {
        kc_set_warn_policy(KC_WARN_ABORT);
        zbud_free(pool_, h);
      },
      "free-mapped: zbud_free\\(0x[0-9a-f]+, 0x[0-9a-f]+\\): the (first|last) buddy is mapped "
      "\\(1 map\\(s\\) outstanding\\); not freed");
  zbud_unmap(pool_, h);
  zbud_free(pool_, h);
}

// ---- 11. overflow ----------------------------------------------------------------------------------

TEST_F(ZbudHardeningTest, WritePastTheRequestedSizeIsCaughtAtUnmap) {
  const size_t size = Chunks(3) - 20;  // 20 bytes of slack
  unsigned long h = Alloc(size, 6);
  ASSERT_NE(zbud_map(pool_, h), nullptr);
  RawWrite(h + size, 0x00);
  char expect[64];
  snprintf(expect, sizeof(expect), "overwritten at offset %zu", size);
  ExpectMisuse(ZPOOL_MISUSE_OVERFLOW, [&] { zbud_unmap(pool_, h); }, expect);
  // The pattern is restored: the next unmap and the free are quiet.
  EXPECT_TRUE(Holds(h, size, 6));
  // A nested map reports once, at the last unmap.
  ASSERT_NE(zbud_map(pool_, h), nullptr);
  ASSERT_NE(zbud_map(pool_, h), nullptr);
  RawWrite(h + size + 19, 0x11);
  zbud_unmap(pool_, h);
  EXPECT_EQ(zpool_misuse_count(ZPOOL_MISUSE_OVERFLOW), 1u);
  ExpectMisuse(ZPOOL_MISUSE_OVERFLOW, [&] { zbud_unmap(pool_, h); });
  zbud_free(pool_, h);
}

// The unmap finds a write to any byte of the redzone, at every length: 16-byte blocks (the later
// ones overlapping the end) from 16 bytes up, two overlapping words from 8, bytes below that.
TEST_F(ZbudHardeningTest, EveryRedzoneByteIsChecked) {
  for (size_t slack : {size_t{63}, size_t{48}, size_t{33}, size_t{20}, size_t{16}, size_t{15},
                       size_t{9}, size_t{8}, size_t{4}, size_t{1}}) {
    const size_t size = Chunks(3) - slack;
    unsigned long h = Alloc(size, 6);
    for (size_t k = 0; k < slack; k++) {
      ASSERT_NE(zbud_map(pool_, h), nullptr);
      RawWrite(h + size + k, static_cast<u8>(~RawRead(h + size + k)));
      char expect[64];
      snprintf(expect, sizeof(expect), "overwritten at offset %zu", size + k);
      ExpectMisuse(ZPOOL_MISUSE_OVERFLOW, [&] { zbud_unmap(pool_, h); }, expect);
    }
    EXPECT_TRUE(Holds(h, size, 6));
    zbud_free(pool_, h);  // quiet: every unmap restored the pattern
  }
}

TEST_F(ZbudHardeningTest, WritePastTheRequestedSizeAfterUnmapIsCaughtAtFree) {
  const size_t size = Chunks(2) + 1;  // one byte into the third chunk
  unsigned long h = Alloc(size, 6);
  RawWrite(h + size + 10, 0x00);
  ExpectMisuse(ZPOOL_MISUSE_OVERFLOW, [&] { zbud_free(pool_, h); }, "freed anyway");
  EXPECT_EQ(zbud_get_pool_size(pool_), 2u) << "the object was freed";
}

TEST_F(ZbudHardeningTest, TheValidatorSeesADamagedRedzone) {
  const size_t size = 100;
  unsigned long h = Alloc(size, 6);
  RawWrite(h + size + 1, 0xff);
  char why[256] = "";
  EXPECT_EQ(zbud_validate_TestOnly(pool_, why, sizeof(why)), -EUCLEAN);
  EXPECT_NE(std::string(why).find("redzone overwritten"), std::string::npos) << why;
  ExpectMisuse(ZPOOL_MISUSE_OVERFLOW, [&] { zbud_free(pool_, h); });
}

TEST_F(ZbudHardeningTest, ASlotWithoutSlackHasNoRedzone) {
  unsigned long h = Alloc(Chunks(4), 6);  // exactly four chunks
  ASSERT_NE(zbud_map(pool_, h), nullptr);
  zbud_unmap(pool_, h);  // quiet: nothing to check
  zbud_free(pool_, h);
}

TEST_F(ZbudHardeningTest, OverflowAborts) {
  const size_t size = 100;
  unsigned long h = Alloc(size, 6);
  ASSERT_NE(zbud_map(pool_, h), nullptr);
  RawWrite(h + size + 3, 0);
  EXPECT_DEATH(
      {
        kc_set_warn_policy(KC_WARN_ABORT);
        zbud_unmap(pool_, h);
      },
      "overflow: zbud_unmap\\(0x[0-9a-f]+, 0x[0-9a-f]+\\): redzone after the 100-byte object "
      "overwritten at offset 103 \\(a write past the requested size\\?\\)");
  zbud_unmap(pool_, h);  // (record policy here: the child aborted, not us)
  expected_misuses_++;
  zbud_free(pool_, h);
}

// ---- 13. bad-evict -------------------------------------------------------------------------------

class ZbudEvictTest : public ZbudHardeningTest {
 protected:
  // The victim page V (first_, last_) at the LRU tail: the bystanders' pages are moved to the
  // head by allocating into them (a filler into B, and a bystander of A freed and reallocated).
  void SetUp() override {
    ZbudHardeningTest::SetUp();
    if (IsSkipped()) return;
    first_ = Alloc(Chunks(20), 1);
    last_ = Alloc(Chunks(20), 2);
    ASSERT_EQ(PageOf(first_), PageOf(last_));
    ASSERT_NE(PageOf(first_), PageOf(bystanders_[2].handle));
    filler_ = Alloc(Chunks(10), 3);  // into B's 13 free chunks: B to the LRU head
    ASSERT_EQ(PageOf(filler_), PageOf(bystanders_[2].handle));
    zbud_free(pool_, bystanders_[1].handle);  // then A
    bystanders_[1].handle = Alloc(bystanders_[1].size, bystanders_[1].seed);
    ASSERT_EQ(PageOf(bystanders_[1].handle), PageOf(bystanders_[0].handle));
  }
  void TearDown() override {
    g_evict = nullptr;
    if (pool_ != nullptr) zbud_free(pool_, filler_);
    ZbudHardeningTest::TearDown();
  }
  unsigned long first_ = 0, last_ = 0, filler_ = 0;
};

TEST_F(ZbudEvictTest, EvictReturningZeroWithoutFreeingIsReportedAndThePageKept) {
  std::vector<unsigned long> given;
  g_evict = [&](zbud_pool *, unsigned long handle) {
    given.push_back(handle);
    return 0;  // lies
  };
  int ret = 0;
  ExpectMisuse(ZPOOL_MISUSE_BAD_EVICT, [&] { ret = zbud_reclaim_page(pool_, 8); },
               "returned 0 but the handle is still allocated");
  EXPECT_EQ(ret, -EAGAIN);
  EXPECT_EQ(given, std::vector<unsigned long>{first_}) << "not retried, last not evicted";
  EXPECT_TRUE(Holds(first_, Chunks(20), 1));
  EXPECT_TRUE(Holds(last_, Chunks(20), 2));
  EXPECT_EQ(zbud_get_pool_size(pool_), 3u);
  // An honest callback reclaims the page afterwards: it went back to the LRU head, so first
  // the others are refused.
  given.clear();
  g_evict = [&](zbud_pool *p, unsigned long handle) {
    given.push_back(handle);
    if (PageOf(handle) != PageOf(first_)) return -EBUSY;
    zbud_free(p, handle);
    return 0;
  };
  EXPECT_EQ(zbud_reclaim_page(pool_, 8), 0);
  EXPECT_EQ(given.back(), last_);
  EXPECT_EQ(zbud_get_pool_size(pool_), 2u);
}

TEST_F(ZbudEvictTest, EvictFreeingTheOtherBuddyIsReportedAndNotEvictedAgain) {
  std::vector<unsigned long> given;
  g_evict = [&](zbud_pool *p, unsigned long handle) {
    given.push_back(handle);
    zbud_free(p, handle);
    if (handle == first_) zbud_free(p, last_);  // not its handle
    return 0;
  };
  int ret = -1;
  ExpectMisuse(ZPOOL_MISUSE_BAD_EVICT, [&] { ret = zbud_reclaim_page(pool_, 1); },
               "frees the last buddy it was not given");
  EXPECT_EQ(ret, 0) << "both buddies are free: the page is reclaimed";
  EXPECT_EQ(given, std::vector<unsigned long>{first_}) << "a freed handle is not evicted";
  EXPECT_EQ(zbud_get_pool_size(pool_), 2u);
}

TEST_F(ZbudEvictTest, EvictFreeingOnlyTheOtherBuddyLeavesAConsistentPage) {
  g_evict = [&](zbud_pool *p, unsigned long handle) {
    if (handle == first_) zbud_free(p, last_);
    return -EBUSY;
  };
  int ret = 0;
  ExpectMisuse(ZPOOL_MISUSE_BAD_EVICT, [&] { ret = zbud_reclaim_page(pool_, 1); });
  EXPECT_EQ(ret, -EAGAIN);
  EXPECT_TRUE(Holds(first_, Chunks(20), 1));
  EXPECT_EQ(zbud_get_pool_size(pool_), 3u);
  last_ = Alloc(Chunks(20), 2);  // the page is unbuddied again: TearDown frees this one
  EXPECT_EQ(PageOf(last_), PageOf(first_));
  zbud_free(pool_, first_);
  zbud_free(pool_, last_);
}

TEST_F(ZbudEvictTest, AnEvictedHandleFreedByAnotherThreadMayStillBeMapped) {
  // zswap's writeback race: the entry is invalidated (freed) by another thread while its evict
  // runs; the callback maps the handle to find that out. The page is under reclaim, so the
  // memory is still there: no misuse, contents readable.
  std::vector<unsigned long> given;
  g_evict = [&](zbud_pool *p, unsigned long handle) {
    given.push_back(handle);
    std::thread([&] { zbud_free(p, handle); }).join();
    auto *obj = static_cast<const u8 *>(zbud_map(p, handle));
    EXPECT_NE(obj, nullptr);
    if (obj != nullptr) {
      const unsigned seed = handle == first_ ? 1 : 2;
      for (size_t i = 0; i < Chunks(20); i++) EXPECT_EQ(obj[i], PatternByte(seed, i));
      zbud_unmap(p, handle);
    }
    return 0;  // the entry was gone
  };
  EXPECT_EQ(zbud_reclaim_page(pool_, 1), 0);
  EXPECT_EQ(given, (std::vector<unsigned long>{first_, last_}));
  EXPECT_EQ(zbud_get_pool_size(pool_), 2u);
  EXPECT_EQ(kc_warn_count(), 0u) << LastWarning();
  ExpectIntact();
}

TEST_F(ZbudEvictTest, ACallbackThatFreesItsHandleThenMapsItIsAUseAfterFree) {
  g_evict = [&](zbud_pool *p, unsigned long handle) {
    zbud_free(p, handle);
    EXPECT_EQ(zbud_map(p, handle), nullptr);
    return 0;
  };
  const unsigned long before = zpool_misuse_count(ZPOOL_MISUSE_DOUBLE_FREE);
  EXPECT_EQ(zbud_reclaim_page(pool_, 1), 0);
  EXPECT_EQ(zpool_misuse_count(ZPOOL_MISUSE_DOUBLE_FREE), before + 2) << "one per buddy";
  EXPECT_EQ(kc_warn_count(), 2u);
  expected_misuses_ += 2;
}

TEST_F(ZbudEvictTest, AGraceMappingLeftBehindIsDroppedAndReported) {
  g_evict = [&](zbud_pool *p, unsigned long handle) {
    std::thread([&] { zbud_free(p, handle); }).join();
    EXPECT_NE(zbud_map(p, handle), nullptr);  // and never unmapped
    return 0;
  };
  int ret = -1;
  ExpectMisuse(ZPOOL_MISUSE_BAD_EVICT, [&] { ret = zbud_reclaim_page(pool_, 1); },
               "map(s) of a freed handle outstanding");
  EXPECT_EQ(ret, 0);
  EXPECT_EQ(zbud_get_pool_size(pool_), 2u);
}

TEST_F(ZbudEvictTest, BadEvictAborts) {
  g_evict = [](zbud_pool *, unsigned long) { return 0; };
  EXPECT_DEATH(
      {
        kc_set_warn_policy(KC_WARN_ABORT);
        zbud_reclaim_page(pool_, 8);
      },
      "bad-evict: zbud_reclaim_page\\(0x[0-9a-f]+\\): evict\\(0x[0-9a-f]+\\) returned 0 but the "
      "handle is still allocated");
  zbud_free(pool_, first_);
  zbud_free(pool_, last_);
}

// ---- 15. documented errors are not misuses -----------------------------------------------------

TEST_F(ZbudHardeningTest, DocumentedErrorsDoNotWarn) {
  unsigned long h = 0;
  EXPECT_EQ(zbud_alloc(pool_, 0, GFP_KERNEL, &h), -EINVAL);
  EXPECT_EQ(zbud_alloc(pool_, 10, GFP_KERNEL | __GFP_HIGHMEM, &h), -EINVAL);
  EXPECT_EQ(zbud_alloc(pool_, kMax + 1, GFP_KERNEL, &h), -ENOSPC);
  zbud_pool *no_ops = zbud_create_pool(GFP_KERNEL, nullptr);
  ASSERT_NE(no_ops, nullptr);
  EXPECT_EQ(zbud_reclaim_page(no_ops, 8), -EINVAL);
  EXPECT_EQ(zbud_reclaim_page(pool_, 0), -EINVAL);
  zbud_destroy_pool(no_ops);
  EXPECT_EQ(kc_warn_count(), 0u);
  EXPECT_EQ(zpool_misuse_total(), 0u);
}

// ---- No false positives ----------------------------------------------------------------------------

TEST_F(ZbudHardeningTest, MisuseFreeStressUnderAbortHasNoWarn) {
  kc_set_warn_policy(KC_WARN_ABORT);
  std::map<unsigned long, std::pair<size_t, unsigned>> live;
  std::map<unsigned long, int> maps;
  std::mt19937 rng(777);
  g_evict = [&](zbud_pool *p, unsigned long handle) {
    auto it = live.find(handle);
    if (it == live.end() || maps[handle] != 0) return -EBUSY;  // bystanders, mapped objects
    zbud_free(p, handle);
    live.erase(it);
    return 0;
  };
  const int kSteps = PAGE_SHIFT == 12 ? 4000 : 1000;
  for (int step = 0; step < kSteps; step++) {
    const unsigned op = rng() % 100;
    if (op < 40 || live.empty()) {
      size_t size = 1 + rng() % (rng() % 2 ? kMax : kMax / 3);
      unsigned long h = Alloc(size, static_cast<unsigned>(step));
      live[h] = {size, static_cast<unsigned>(step)};
    } else if (op < 70) {
      auto it = live.begin();
      std::advance(it, rng() % live.size());
      if (maps[it->first] != 0) continue;
      ASSERT_TRUE(Holds(it->first, it->second.first, it->second.second));
      zbud_free(pool_, it->first);
      maps.erase(it->first);
      live.erase(it);
    } else if (op < 85) {
      auto it = live.begin();
      std::advance(it, rng() % live.size());
      if (maps[it->first] < 3 && rng() % 2) {
        ASSERT_NE(zbud_map(pool_, it->first), nullptr);
        maps[it->first]++;
      } else if (maps[it->first] > 0) {
        zbud_unmap(pool_, it->first);
        maps[it->first]--;
      }
    } else {
      int ret = zbud_reclaim_page(pool_, 1 + rng() % 4);
      ASSERT_TRUE(ret == 0 || ret == -EAGAIN) << ret;
    }
  }
  for (auto &[h, n] : maps)
    while (n-- > 0) zbud_unmap(pool_, h);
  for (auto &[h, obj] : live) {
    ASSERT_TRUE(Holds(h, obj.first, obj.second));
    zbud_free(pool_, h);
  }
  EXPECT_EQ(kc_warn_count(), 0u);
  kc_set_warn_policy(KC_WARN_RECORD);
}

// ---- Sanitizer-aware memory ------------------------------------------------------------------------

#if defined(KC_ASAN)

TEST_F(ZbudHardeningTest, AsanWritePastTheRequestedSizeIsReportedAtTheWrite) {
  const size_t size = 100;  // slot of 128 bytes on 4 KiB pages
  unsigned long h = Alloc(size, 1);
  auto *p = static_cast<volatile u8 *>(zbud_map(pool_, h));
  p[size - 1] = 1;  // the last byte is fine
  EXPECT_DEATH(p[size] = 1, "AddressSanitizer: use-after-poison");
  EXPECT_DEATH(p[kChunk * 2 - 1] = 1, "AddressSanitizer: use-after-poison");
  zbud_unmap(pool_, h);
  zbud_free(pool_, h);
}

TEST_F(ZbudHardeningTest, AsanOverflowOfASlotWithoutSlackIsReportedAtTheWrite) {
  unsigned long h = Alloc(Chunks(3), 1);  // no slack, no redzone: free chunks follow
  auto *p = static_cast<volatile u8 *>(zbud_map(pool_, h));
  EXPECT_DEATH(p[Chunks(3)] = 1, "AddressSanitizer: use-after-poison");
  zbud_unmap(pool_, h);
  zbud_free(pool_, h);
}

TEST_F(ZbudHardeningTest, AsanAccessAfterUnmapOrFreeIsReported) {
  unsigned long h = Alloc(200, 1);
  unsigned long keep = Alloc(200, 2);  // keeps the page
  auto *p = static_cast<volatile u8 *>(zbud_map(pool_, h));
  zbud_unmap(pool_, h);
  EXPECT_DEATH(p[0] = 1, "AddressSanitizer: use-after-poison");
  EXPECT_DEATH((void)p[10], "AddressSanitizer: use-after-poison");
  zbud_free(pool_, h);
  EXPECT_DEATH((void)p[0], "AddressSanitizer: use-after-poison");
  zbud_free(pool_, keep);
}

TEST_F(ZbudHardeningTest, AsanTheHeaderAndTheNeighbourArePoisoned) {
  unsigned long first = Alloc(Chunks(20), 1);
  unsigned long last = Alloc(Chunks(20), 2);
  auto *p = static_cast<volatile u8 *>(zbud_map(pool_, first));
  auto *header = reinterpret_cast<volatile u8 *>(PageOf(first));
  EXPECT_DEATH((void)header[0], "AddressSanitizer: use-after-poison");  // the header itself
  EXPECT_DEATH(p[-1] = 1, "AddressSanitizer: use-after-poison");        // header chunk padding
  EXPECT_DEATH(reinterpret_cast<volatile u8 *>(last)[0] = 1,
               "AddressSanitizer: use-after-poison");  // the unmapped neighbour
  zbud_unmap(pool_, first);
  char why[256] = "";
  EXPECT_EQ(zbud_validate_TestOnly(pool_, why, sizeof(why)), 0) << why;
  zbud_free(pool_, first);
  zbud_free(pool_, last);
}

#endif  // KC_ASAN

#if defined(KC_MSAN)

TEST_F(ZbudHardeningTest, MsanReadingAnUnwrittenObjectIsReported) {
  unsigned long h = 0;
  ASSERT_EQ(zbud_alloc(pool_, 300, GFP_KERNEL, &h), 0);
  auto *p = static_cast<volatile u8 *>(zbud_map(pool_, h));
  p[0] = 1;
  EXPECT_EQ(p[0], 1) << "written bytes are initialised";
  EXPECT_DEATH(
      {
        if (p[299] == 42) fprintf(stderr, "never\n");
      },
      "MemorySanitizer: use-of-uninitialized-value");
  zbud_unmap(pool_, h);
  zbud_free(pool_, h);
}

TEST_F(ZbudHardeningTest, MsanAReusedSlotIsUninitialisedAgain) {
  const size_t size = Chunks(15) - 100;  // 15 chunks: too big for the bystanders' page B
  unsigned long h = Alloc(size, 2);  // a new page; written in full by Alloc
  unsigned long keep = Alloc(Chunks(20), 1);  // keeps that page
  ASSERT_EQ(PageOf(keep), PageOf(h));
  zbud_free(pool_, h);
  unsigned long again = 0;
  ASSERT_EQ(zbud_alloc(pool_, size, GFP_KERNEL, &again), 0);
  ASSERT_EQ(again, h) << "same slot";
  auto *p = static_cast<volatile u8 *>(zbud_map(pool_, again));
  EXPECT_DEATH(
      {
        if (p[5] == 42) fprintf(stderr, "never\n");
      },
      "MemorySanitizer: use-of-uninitialized-value");
  zbud_unmap(pool_, again);
  unsigned long zeroed = 0;
  zbud_free(pool_, again);
  ASSERT_EQ(zbud_alloc(pool_, size, GFP_KERNEL | __GFP_ZERO, &zeroed), 0);
  p = static_cast<volatile u8 *>(zbud_map(pool_, zeroed));
  EXPECT_EQ(p[5], 0) << "__GFP_ZERO: initialised zeros";
  zbud_unmap(pool_, zeroed);
  zbud_free(pool_, zeroed);
  zbud_free(pool_, keep);
}

#endif  // KC_MSAN

}  // namespace

// SPDX-License-Identifier: GPL-2.0-only
// Tests of zbud's contract (issue 4): sizes and errors, placement (FIRST then LAST, sharing
// exactly when the chunks fit, first fit, reuse), page counts, the LRU and reclaim, contents
// across every operation, and fault injection. Misuse is in zbud_hardening_test.cc, threads in
// zbud_threads_test.cc.
//
// Every test runs under the "record" warning policy and ends with no WARN at all, no page and no
// metadata leaked (the fixture checks), so any diagnostic on a legal sequence fails the test.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <functional>
#include <map>
#include <random>
#include <set>
#include <vector>

#include "zpool/kernel/kernel.h"
#include "zpool/kernel/sanitizer.h"
#include "zpool/misuse.h"
#include "zpool/zbud.h"

namespace {

constexpr unsigned long kChunk = PAGE_SIZE >> 6;  // CHUNK_SIZE: 64 chunks a page
constexpr unsigned kNChunks = 64;
constexpr size_t kMax = PAGE_SIZE - 2 * kChunk;  // header chunk + one chunk kept free

// The evict callback of the pools below: whatever the current test installs.
std::function<int(zbud_pool *, unsigned long)> g_evict;
int EvictThunk(zbud_pool *pool, unsigned long handle) {
  return g_evict ? g_evict(pool, handle) : -ENOENT;
}
const zbud_ops kOps = {EvictThunk};

unsigned long PageOf(unsigned long handle) { return handle & PAGE_MASK; }
unsigned long OffsetOf(unsigned long handle) { return handle & ~PAGE_MASK; }
size_t Chunks(unsigned n) { return static_cast<size_t>(n) * kChunk; }

u8 PatternByte(unsigned seed, size_t i) {
  return static_cast<u8>(seed * 131u + i * 7u + (i >> 8) * 13u + 1u);
}

class ZbudTest : public ::testing::Test {
 protected:
  void SetUp() override {
    kc_fail_nth_alloc(0);
    kc_set_warn_policy(KC_WARN_RECORD);
    kc_warn_reset();
    zpool_misuse_reset();
    g_evict = nullptr;
    start_pages_ = kc_pages_in_use();
    start_meta_ = kc_meta_in_use();
  }

  void TearDown() override {
    for (zbud_pool *pool : pools_) zbud_destroy_pool(pool);
    kc_fail_nth_alloc(0);
    g_evict = nullptr;
    char last[512] = "";
    kc_last_warning(last, sizeof(last));
    EXPECT_EQ(kc_warn_count(), 0u) << "a legal sequence WARNed: " << last;
    EXPECT_EQ(zpool_misuse_total(), 0u);
    EXPECT_EQ(kc_pages_in_use(), start_pages_) << "pages leaked";
    EXPECT_EQ(kc_meta_in_use(), start_meta_) << "metadata leaked";
    kc_set_warn_policy(KC_WARN_LOG);
  }

  // A pool destroyed by TearDown (empty by then, or the test fails on the WARN).
  zbud_pool *NewPool(const zbud_ops *ops = &kOps) {
    zbud_pool *pool = zbud_create_pool(GFP_KERNEL, ops);
    EXPECT_NE(pool, nullptr);
    if (pool != nullptr) pools_.push_back(pool);
    return pool;
  }

  static void ExpectValid(zbud_pool *pool) {
    char why[256] = "";
    EXPECT_EQ(zbud_validate_TestOnly(pool, why, sizeof(why)), 0) << why;
  }

  static unsigned long Alloc(zbud_pool *pool, size_t size) {
    unsigned long handle = 0;
    EXPECT_EQ(zbud_alloc(pool, size, GFP_KERNEL, &handle), 0) << "size " << size;
    return handle;
  }

  // Writes the pattern of `seed` over the whole object.
  static void Fill(zbud_pool *pool, unsigned long handle, size_t size, unsigned seed) {
    auto *p = static_cast<u8 *>(zbud_map(pool, handle));
    ASSERT_EQ(reinterpret_cast<unsigned long>(p), handle) << "zbud_map returns the handle";
    for (size_t i = 0; i < size; i++) p[i] = PatternByte(seed, i);
    zbud_unmap(pool, handle);
  }

  static bool Holds(zbud_pool *pool, unsigned long handle, size_t size, unsigned seed) {
    auto *p = static_cast<const u8 *>(zbud_map(pool, handle));
    if (p == nullptr) return false;
    bool same = true;
    for (size_t i = 0; i < size && same; i++) same = p[i] == PatternByte(seed, i);
    zbud_unmap(pool, handle);
    return same;
  }

  std::vector<zbud_pool *> pools_;
  unsigned long start_pages_ = 0;
  unsigned long start_meta_ = 0;
};

// ---- Sizes and errors ----------------------------------------------------------------------

TEST_F(ZbudTest, GeometryFollowsPageSize) {
  EXPECT_EQ(zbud_max_alloc_size(), kMax);
  if (PAGE_SHIFT == 12) EXPECT_EQ(zbud_max_alloc_size(), 3968u);
  if (PAGE_SHIFT == 16) EXPECT_EQ(zbud_max_alloc_size(), 63488u);
}

TEST_F(ZbudTest, EverySizeFromOneToTheMaximum) {
  zbud_pool *pool = NewPool();
  for (size_t size = 1; size <= kMax; size++) {
    unsigned long handle = 0;
    ASSERT_EQ(zbud_alloc(pool, size, GFP_KERNEL, &handle), 0) << "size " << size;
    // Alone in an empty pool: the first buddy of a new page, right after the header chunk.
    ASSERT_EQ(OffsetOf(handle), kChunk) << "size " << size;
    ASSERT_EQ(zbud_get_pool_size(pool), 1u);
    auto *p = static_cast<u8 *>(zbud_map(pool, handle));
    ASSERT_EQ(reinterpret_cast<unsigned long>(p), handle);
    // The whole object on 4 KiB pages; its first and last 256 bytes on larger ones.
    const size_t edge = PAGE_SHIFT == 12 ? size : std::min<size_t>(size, 256);
    for (size_t i = 0; i < edge; i++) p[i] = PatternByte(static_cast<unsigned>(size), i);
    for (size_t i = size - edge; i < size; i++) p[i] = PatternByte(static_cast<unsigned>(size), i);
    for (size_t i = 0; i < edge; i++)
      ASSERT_EQ(p[size - 1 - i], PatternByte(static_cast<unsigned>(size), size - 1 - i));
    zbud_unmap(pool, handle);
    if (size % 97 == 0 || size == kMax) ExpectValid(pool);
    zbud_free(pool, handle);
    ASSERT_EQ(zbud_get_pool_size(pool), 0u);
  }
  ExpectValid(pool);
}

TEST_F(ZbudTest, DocumentedErrorsAndNoWarn) {
  zbud_pool *pool = NewPool();
  unsigned long handle = 0x5a5a;
  EXPECT_EQ(zbud_alloc(pool, 0, GFP_KERNEL, &handle), -EINVAL);
  EXPECT_EQ(zbud_alloc(pool, 100, GFP_KERNEL | __GFP_HIGHMEM, &handle), -EINVAL);
  EXPECT_EQ(zbud_alloc(pool, 0, GFP_KERNEL | __GFP_HIGHMEM, &handle), -EINVAL);
  EXPECT_EQ(zbud_alloc(pool, kMax + 1, GFP_KERNEL, &handle), -ENOSPC);
  EXPECT_EQ(zbud_alloc(pool, PAGE_SIZE, GFP_KERNEL, &handle), -ENOSPC);
  EXPECT_EQ(zbud_alloc(pool, SIZE_MAX, GFP_KERNEL, &handle), -ENOSPC);
  EXPECT_EQ(handle, 0x5a5au) << "a failed allocation leaves *handle alone";
  EXPECT_EQ(zbud_get_pool_size(pool), 0u);
  // The maximum itself is fine, with every kind of gfp the kernel passes.
  for (gfp_t gfp : {GFP_KERNEL, GFP_NOIO, GFP_NOWAIT, GFP_ATOMIC, GFP_KERNEL | __GFP_NOWARN}) {
    ASSERT_EQ(zbud_alloc(pool, kMax, gfp, &handle), 0);
    zbud_free(pool, handle);
  }
  ExpectValid(pool);
}

TEST_F(ZbudTest, GfpZeroGivesAZeroedObjectEvenInAReusedSlot) {
  zbud_pool *pool = NewPool();
  unsigned long keep = Alloc(pool, 100);  // keeps the page alive
  unsigned long first = Alloc(pool, 1000);
  Fill(pool, first, 1000, 7);
  zbud_free(pool, first);
  unsigned long handle = 0;
  ASSERT_EQ(zbud_alloc(pool, 1000, GFP_KERNEL | __GFP_ZERO, &handle), 0);
  EXPECT_EQ(handle, first) << "the freed last buddy's space is reused";
  auto *p = static_cast<const u8 *>(zbud_map(pool, handle));
  for (size_t i = 0; i < 1000; i++) ASSERT_EQ(p[i], 0) << i;
  zbud_unmap(pool, handle);
  zbud_free(pool, handle);
  zbud_free(pool, keep);
}

// ---- Placement ---------------------------------------------------------------------------------

TEST_F(ZbudTest, TwoObjectsShareAPageExactlyWhenTheirChunksFit) {
  zbud_pool *pool = NewPool();
  const unsigned counts[] = {1, 2, 10, 31, 32, 33, 53, 61, 62};
  for (unsigned a : counts) {
    for (unsigned b : counts) {
      // Sizes one byte short of whole chunks use the same number of chunks.
      const size_t size_a = Chunks(a) - (a > 1 ? 1 : 0);
      const size_t size_b = Chunks(b);
      unsigned long ha = Alloc(pool, size_a);
      unsigned long hb = Alloc(pool, size_b);
      ASSERT_EQ(OffsetOf(ha), kChunk);
      if (a + b <= kNChunks - 1) {
        EXPECT_EQ(zbud_get_pool_size(pool), 1u) << a << "+" << b << " chunks fit one page";
        EXPECT_EQ(PageOf(hb), PageOf(ha));
        EXPECT_EQ(OffsetOf(hb), PAGE_SIZE - Chunks(b)) << "the last buddy is right-justified";
      } else {
        EXPECT_EQ(zbud_get_pool_size(pool), 2u) << a << "+" << b << " chunks do not fit";
        EXPECT_NE(PageOf(hb), PageOf(ha));
        EXPECT_EQ(OffsetOf(hb), kChunk);
      }
      Fill(pool, ha, size_a, a);
      Fill(pool, hb, size_b, b + 100);
      EXPECT_TRUE(Holds(pool, ha, size_a, a));
      EXPECT_TRUE(Holds(pool, hb, size_b, b + 100));
      ExpectValid(pool);
      zbud_free(pool, ha);
      zbud_free(pool, hb);
      ASSERT_EQ(zbud_get_pool_size(pool), 0u);
    }
  }
}

TEST_F(ZbudTest, FirstThenLastThenANewPageAtMostTwoObjectsAPage) {
  zbud_pool *pool = NewPool();
  unsigned long a = Alloc(pool, Chunks(20));
  unsigned long b = Alloc(pool, Chunks(20));
  unsigned long c = Alloc(pool, Chunks(20));
  EXPECT_EQ(OffsetOf(a), kChunk);
  EXPECT_EQ(PageOf(b), PageOf(a));
  EXPECT_EQ(OffsetOf(b), PAGE_SIZE - Chunks(20));
  // 23 chunks are still free in a's page, but it holds two buddies already.
  EXPECT_NE(PageOf(c), PageOf(a));
  EXPECT_EQ(OffsetOf(c), kChunk);
  EXPECT_EQ(zbud_get_pool_size(pool), 2u);
  ExpectValid(pool);
  for (unsigned long h : {a, b, c}) zbud_free(pool, h);
}

TEST_F(ZbudTest, AFreedBuddysSpaceIsReusedByTheNextFittingAllocation) {
  zbud_pool *pool = NewPool();
  unsigned long a = Alloc(pool, Chunks(10));
  unsigned long b = Alloc(pool, Chunks(10));
  Fill(pool, b, Chunks(10), 2);
  zbud_free(pool, a);  // first buddy free: 53 chunks free
  unsigned long c = Alloc(pool, Chunks(40));
  EXPECT_EQ(c, a) << "placed as the first buddy, where a was";
  Fill(pool, c, Chunks(40), 3);
  zbud_free(pool, b);  // last buddy free: 23 chunks free
  unsigned long d = Alloc(pool, Chunks(20));
  EXPECT_EQ(PageOf(d), PageOf(c));
  EXPECT_EQ(OffsetOf(d), PAGE_SIZE - Chunks(20)) << "placed as the last buddy";
  EXPECT_EQ(zbud_get_pool_size(pool), 1u);
  zbud_free(pool, c);  // 43 chunks free: 44 does not fit, 43 does
  unsigned long e = Alloc(pool, Chunks(44));
  EXPECT_NE(PageOf(e), PageOf(d));
  unsigned long f = Alloc(pool, Chunks(43));
  EXPECT_EQ(f, c);
  EXPECT_EQ(zbud_get_pool_size(pool), 2u);
  ExpectValid(pool);
  for (unsigned long h : {d, e, f}) zbud_free(pool, h);
}

TEST_F(ZbudTest, FirstFitTakesTheSmallestFreeChunkCountThatFits) {
  zbud_pool *pool = NewPool();
  unsigned long p1 = Alloc(pool, Chunks(52));  // 11 free chunks
  unsigned long p2 = Alloc(pool, Chunks(30));  // then 33 (p1 cannot take it)
  unsigned long p3 = Alloc(pool, Chunks(56));  // 7 free in its own page
  ASSERT_EQ(zbud_get_pool_size(pool), 3u);
  // Lists are scanned from `chunks` up: 11 chunks -> p1 (exact), 12 -> p2 (33), 7 -> p3 (7).
  unsigned long x = Alloc(pool, Chunks(11));
  EXPECT_EQ(PageOf(x), PageOf(p1));
  unsigned long y = Alloc(pool, Chunks(12));
  EXPECT_EQ(PageOf(y), PageOf(p2));
  unsigned long z = Alloc(pool, Chunks(7));
  EXPECT_EQ(PageOf(z), PageOf(p3));
  EXPECT_EQ(zbud_get_pool_size(pool), 3u);
  ExpectValid(pool);
  for (unsigned long h : {p1, p2, p3, x, y, z}) zbud_free(pool, h);
}

TEST_F(ZbudTest, PageCountsAfterKnownSequences) {
  zbud_pool *pool = NewPool();
  std::vector<unsigned long> halves, bigs, smalls;
  for (int i = 0; i < 10; i++) halves.push_back(Alloc(pool, Chunks(31)));
  EXPECT_EQ(zbud_get_pool_size(pool), 5u) << "31 + 31 chunks pair up";
  for (int i = 0; i < 10; i++) bigs.push_back(Alloc(pool, Chunks(32)));
  EXPECT_EQ(zbud_get_pool_size(pool), 15u) << "32 + 32 chunks do not";
  for (int i = 0; i < 10; i++) smalls.push_back(Alloc(pool, Chunks(31)));
  EXPECT_EQ(zbud_get_pool_size(pool), 15u) << "31 chunks fill each 32-chunk page";
  ExpectValid(pool);
  for (unsigned long h : bigs) zbud_free(pool, h);
  EXPECT_EQ(zbud_get_pool_size(pool), 15u) << "each page keeps one 31-chunk buddy";
  for (unsigned long h : smalls) zbud_free(pool, h);
  EXPECT_EQ(zbud_get_pool_size(pool), 5u);
  for (size_t i = 0; i < halves.size(); i += 2) zbud_free(pool, halves[i]);
  EXPECT_EQ(zbud_get_pool_size(pool), 5u);
  for (size_t i = 1; i < halves.size(); i += 2) zbud_free(pool, halves[i]);
  EXPECT_EQ(zbud_get_pool_size(pool), 0u);
  ExpectValid(pool);
}

TEST_F(ZbudTest, NestedMapsFromOneThreadAreLegal) {
  zbud_pool *pool = NewPool();
  unsigned long a = Alloc(pool, 300);
  unsigned long b = Alloc(pool, 500);
  void *pa = zbud_map(pool, a);
  void *pb = zbud_map(pool, b);
  void *pa2 = zbud_map(pool, a);
  EXPECT_EQ(pa, pa2);
  memset(pa, 1, 300);
  memset(pb, 2, 500);
  zbud_unmap(pool, a);
  EXPECT_EQ(static_cast<u8 *>(pa)[299], 1) << "still mapped once";
  ExpectValid(pool);
  zbud_unmap(pool, b);
  zbud_unmap(pool, a);
  ExpectValid(pool);
  zbud_free(pool, a);
  zbud_free(pool, b);
}

// ---- LRU and reclaim ----------------------------------------------------------------------------

// An evict callback that records the handles it is given and frees them.
struct Recorder {
  std::vector<unsigned long> evicted;
  std::function<int(unsigned long)> answer;  // default: free and return 0
  void Install() {
    g_evict = [this](zbud_pool *pool, unsigned long handle) {
      evicted.push_back(handle);
      if (answer) return answer(handle);
      zbud_free(pool, handle);
      return 0;
    };
  }
};

TEST_F(ZbudTest, ReclaimEvictsTheLruTailFirst) {
  zbud_pool *pool = NewPool();
  unsigned long a = Alloc(pool, kMax);
  unsigned long b = Alloc(pool, kMax);
  unsigned long c = Alloc(pool, kMax);
  Fill(pool, c, kMax, 3);
  Recorder rec;
  rec.Install();
  EXPECT_EQ(zbud_reclaim_page(pool, 1), 0);
  EXPECT_EQ(rec.evicted, std::vector<unsigned long>{a});
  EXPECT_EQ(zbud_get_pool_size(pool), 2u);
  EXPECT_EQ(zbud_reclaim_page(pool, 8), 0) << "one page per call, however many retries";
  EXPECT_EQ(rec.evicted, (std::vector<unsigned long>{a, b}));
  EXPECT_EQ(zbud_get_pool_size(pool), 1u);
  EXPECT_TRUE(Holds(pool, c, kMax, 3));
  ExpectValid(pool);
  zbud_free(pool, c);
}

TEST_F(ZbudTest, AllocatingIntoAPageMovesItToTheLruHead) {
  zbud_pool *pool = NewPool();
  unsigned long a = Alloc(pool, Chunks(30));  // page 1 (older)
  unsigned long b = Alloc(pool, Chunks(50));  // page 2 (13 chunks free: too few for a2)
  unsigned long a2 = Alloc(pool, Chunks(20));  // into page 1: now the most recent
  ASSERT_EQ(PageOf(a2), PageOf(a));
  Recorder rec;
  rec.Install();
  EXPECT_EQ(zbud_reclaim_page(pool, 1), 0);
  EXPECT_EQ(rec.evicted, std::vector<unsigned long>{b});
  EXPECT_EQ(zbud_reclaim_page(pool, 1), 0);
  EXPECT_EQ(rec.evicted, (std::vector<unsigned long>{b, a, a2})) << "first, then last buddy";
  EXPECT_EQ(zbud_get_pool_size(pool), 0u);
  EXPECT_EQ(zbud_reclaim_page(pool, 1), -EINVAL) << "empty LRU";
}

TEST_F(ZbudTest, FreeingDuringEvictionDefersThePageFreeToReclaim) {
  zbud_pool *pool = NewPool();
  unsigned long a = Alloc(pool, 1000);
  unsigned long b = Alloc(pool, 1000);
  int calls = 0;
  g_evict = [&](zbud_pool *p, unsigned long handle) {
    calls++;
    zbud_free(p, handle);
    // The page is under reclaim: still counted, off the lists, and the pool is consistent.
    EXPECT_EQ(zbud_get_pool_size(p), 1u);
    ExpectValid(p);
    // An allocation now cannot use the page under reclaim.
    unsigned long other = Alloc(p, 100);
    EXPECT_NE(PageOf(other), PageOf(handle));
    zbud_free(p, other);
    return 0;
  };
  EXPECT_EQ(zbud_reclaim_page(pool, 1), 0);
  EXPECT_EQ(calls, 2);
  EXPECT_EQ(zbud_get_pool_size(pool), 0u);
  (void)a, (void)b;
}

TEST_F(ZbudTest, FailingEvictPutsThePageBackAtTheHeadAndGivesEagain) {
  zbud_pool *pool = NewPool();
  unsigned long a1 = Alloc(pool, Chunks(30));  // page 1: a1 first, a2 last
  unsigned long a2 = Alloc(pool, Chunks(30));
  unsigned long b = Alloc(pool, Chunks(40));  // page 2
  ASSERT_EQ(zbud_get_pool_size(pool), 2u);
  Fill(pool, a1, Chunks(30), 1);
  Fill(pool, a2, Chunks(30), 2);
  Fill(pool, b, Chunks(40), 3);
  Recorder rec;
  rec.answer = [](unsigned long) { return -EBUSY; };
  rec.Install();
  EXPECT_EQ(zbud_reclaim_page(pool, 3), -EAGAIN);
  // Page 1 is the tail; a failed first buddy skips the last; the page goes back to the head, so
  // page 2 is tried next, then page 1 again.
  EXPECT_EQ(rec.evicted, (std::vector<unsigned long>{a1, b, a1}));
  EXPECT_EQ(zbud_get_pool_size(pool), 2u);
  EXPECT_TRUE(Holds(pool, a1, Chunks(30), 1));
  EXPECT_TRUE(Holds(pool, a2, Chunks(30), 2));
  EXPECT_TRUE(Holds(pool, b, Chunks(40), 3));
  ExpectValid(pool);
  // The page is still usable: a failed page keeps its place on the buddy lists.
  unsigned long c = Alloc(pool, Chunks(23));
  EXPECT_EQ(PageOf(c), PageOf(b));
  for (unsigned long h : {a1, a2, b, c}) zbud_free(pool, h);
}

TEST_F(ZbudTest, EvictThatFreesOnlyOneBuddyLeavesAnUnbuddiedPage) {
  zbud_pool *pool = NewPool();
  unsigned long a = Alloc(pool, Chunks(20));
  unsigned long b = Alloc(pool, Chunks(30));
  Fill(pool, b, Chunks(30), 9);
  Recorder rec;
  rec.answer = [&](unsigned long handle) {
    if (handle != a) return -EIO;
    zbud_free(pool, handle);
    return 0;
  };
  rec.Install();
  EXPECT_EQ(zbud_reclaim_page(pool, 1), -EAGAIN);
  EXPECT_EQ(rec.evicted, (std::vector<unsigned long>{a, b}));
  EXPECT_EQ(zbud_get_pool_size(pool), 1u);
  EXPECT_TRUE(Holds(pool, b, Chunks(30), 9));
  ExpectValid(pool);
  // The page is unbuddied with 33 free chunks: the next fitting object takes the first buddy.
  unsigned long c = Alloc(pool, Chunks(33));
  EXPECT_EQ(c, a);
  // Now a callback that frees everything reclaims the page.
  rec.answer = nullptr;
  rec.evicted.clear();
  EXPECT_EQ(zbud_reclaim_page(pool, 1), 0);
  EXPECT_EQ(rec.evicted, (std::vector<unsigned long>{c, b}));
  EXPECT_EQ(zbud_get_pool_size(pool), 0u);
}

TEST_F(ZbudTest, ReclaimOfAPageWithOnlyALastBuddyEvictsJustThat) {
  zbud_pool *pool = NewPool();
  unsigned long a = Alloc(pool, Chunks(20));
  unsigned long b = Alloc(pool, Chunks(20));
  zbud_free(pool, a);
  Recorder rec;
  rec.Install();
  EXPECT_EQ(zbud_reclaim_page(pool, 1), 0);
  EXPECT_EQ(rec.evicted, std::vector<unsigned long>{b});
  EXPECT_EQ(zbud_get_pool_size(pool), 0u);
}

TEST_F(ZbudTest, ReclaimWithoutOpsEvictOrPagesOrRetriesIsEinval) {
  zbud_pool *no_ops = NewPool(nullptr);
  const zbud_ops no_evict = {nullptr};
  zbud_pool *no_callback = NewPool(&no_evict);
  zbud_pool *pool = NewPool();
  unsigned long h1 = Alloc(no_ops, 100);
  unsigned long h2 = Alloc(no_callback, 100);
  EXPECT_EQ(zbud_reclaim_page(no_ops, 8), -EINVAL);
  EXPECT_EQ(zbud_reclaim_page(no_callback, 8), -EINVAL);
  EXPECT_EQ(zbud_reclaim_page(pool, 8), -EINVAL) << "empty LRU";
  unsigned long h3 = Alloc(pool, 100);
  Recorder rec;
  rec.Install();
  EXPECT_EQ(zbud_reclaim_page(pool, 0), -EINVAL) << "zero retries";
  EXPECT_TRUE(rec.evicted.empty());
  EXPECT_EQ(zbud_get_pool_size(no_ops), 1u);
  EXPECT_EQ(zbud_get_pool_size(no_callback), 1u);
  EXPECT_EQ(zbud_get_pool_size(pool), 1u);
  zbud_free(no_ops, h1);
  zbud_free(no_callback, h2);
  zbud_free(pool, h3);
}

TEST_F(ZbudTest, EvictCallbackMayReenterThePool) {
  zbud_pool *pool = NewPool();
  unsigned long a = Alloc(pool, 2000 * kChunk / 64);
  unsigned long b = Alloc(pool, kMax);
  std::vector<unsigned long> moved;
  g_evict = [&](zbud_pool *p, unsigned long handle) {
    // Write back by copying into a new object (zswap-style): map, allocate, copy, free.
    const size_t size = handle == a ? 2000 * kChunk / 64 : kMax;
    void *src = zbud_map(p, handle);
    unsigned long copy = Alloc(p, size);
    void *dst = zbud_map(p, copy);
    memcpy(dst, src, size);
    zbud_unmap(p, copy);
    zbud_unmap(p, handle);
    zbud_free(p, handle);
    moved.push_back(copy);
    return 0;
  };
  Fill(pool, a, 2000 * kChunk / 64, 4);
  EXPECT_EQ(zbud_reclaim_page(pool, 1), 0);
  ASSERT_EQ(moved.size(), 1u);
  EXPECT_TRUE(Holds(pool, moved[0], 2000 * kChunk / 64, 4));
  ExpectValid(pool);
  zbud_free(pool, moved[0]);
  zbud_free(pool, b);
}

// ---- Contents survive every operation ---------------------------------------------------------

TEST_F(ZbudTest, ContentsSurviveEveryOperation) {
  zbud_pool *pool = NewPool();
  struct Obj {
    size_t size;
    unsigned seed;
  };
  std::map<unsigned long, Obj> live;
  std::mt19937 rng(12345);
  bool refuse = false;
  g_evict = [&](zbud_pool *p, unsigned long handle) {
    auto it = live.find(handle);
    EXPECT_NE(it, live.end()) << "evict of a handle that is not live";
    if (it == live.end()) return -ENOENT;
    EXPECT_TRUE(Holds(p, handle, it->second.size, it->second.seed));
    if (refuse) return -EBUSY;
    zbud_free(p, handle);
    live.erase(it);
    return 0;
  };
  auto check_all = [&] {
    for (const auto &[handle, obj] : live)
      ASSERT_TRUE(Holds(pool, handle, obj.size, obj.seed)) << "handle " << handle;
    ExpectValid(pool);
  };
  const int kSteps = PAGE_SHIFT == 12 ? 3000 : 600;
  for (int step = 0; step < kSteps; step++) {
    const unsigned op = rng() % 100;
    if (op < 45 || live.size() < 4) {
      // Small and large objects, so that both sharing and not sharing happen.
      size_t size = rng() % 2 ? 1 + rng() % (kMax / 2) : 1 + rng() % kMax;
      unsigned long handle = 0;
      ASSERT_EQ(zbud_alloc(pool, size, GFP_KERNEL, &handle), 0);
      ASSERT_EQ(live.count(handle), 0u) << "a live handle was handed out again";
      unsigned seed = static_cast<unsigned>(step);
      Fill(pool, handle, size, seed);
      live[handle] = {size, seed};
    } else if (op < 80) {
      auto it = live.begin();
      std::advance(it, rng() % live.size());
      ASSERT_TRUE(Holds(pool, it->first, it->second.size, it->second.seed));
      zbud_free(pool, it->first);
      live.erase(it);
    } else if (op < 90) {
      refuse = rng() % 4 == 0;
      size_t before = live.size();
      int ret = zbud_reclaim_page(pool, 1 + rng() % 3);
      if (refuse) {
        ASSERT_EQ(ret, -EAGAIN);
        ASSERT_EQ(live.size(), before);
      } else {
        ASSERT_EQ(ret, 0);
        ASSERT_LT(live.size(), before);
      }
    } else {
      // Rewrite an object in place through a nested map.
      auto it = live.begin();
      std::advance(it, rng() % live.size());
      void *outer = zbud_map(pool, it->first);
      it->second.seed += 1000;
      Fill(pool, it->first, it->second.size, it->second.seed);
      zbud_unmap(pool, it->first);
      (void)outer;
    }
    if (step % 50 == 0) check_all();
  }
  check_all();
  EXPECT_LE(zbud_get_pool_size(pool), live.size());
  EXPECT_GE(zbud_get_pool_size(pool), (live.size() + 1) / 2);
  for (const auto &[handle, obj] : live) zbud_free(pool, handle);
  EXPECT_EQ(zbud_get_pool_size(pool), 0u);
}

// ---- Fault injection ----------------------------------------------------------------------------

TEST_F(ZbudTest, FailedPageAllocationIsEnomemAndLeavesThePoolValid) {
  zbud_pool *pool = NewPool();
  unsigned long keep = Alloc(pool, Chunks(40));
  Fill(pool, keep, Chunks(40), 5);
  const unsigned long pages = kc_pages_in_use();
  kc_fail_nth_alloc(1);
  unsigned long handle = 0xabc;
  EXPECT_EQ(zbud_alloc(pool, Chunks(30), GFP_KERNEL | __GFP_NOWARN, &handle), -ENOMEM)
      << "30 chunks do not fit beside 40: a page is needed, and it fails";
  EXPECT_EQ(handle, 0xabcu);
  EXPECT_EQ(kc_pages_in_use(), pages);
  EXPECT_EQ(zbud_get_pool_size(pool), 1u);
  ExpectValid(pool);
  EXPECT_TRUE(Holds(pool, keep, Chunks(40), 5));
  // An allocation that fits an existing page allocates nothing: the armed failure stays armed.
  kc_fail_nth_alloc(1);
  unsigned long fits = Alloc(pool, Chunks(23));
  EXPECT_EQ(kc_fail_nth_pending(), 1u);
  kc_fail_nth_alloc(0);
  unsigned long later = Alloc(pool, Chunks(30));
  EXPECT_EQ(zbud_get_pool_size(pool), 2u);
  for (unsigned long h : {keep, fits, later}) zbud_free(pool, h);
}

TEST_F(ZbudTest, FailedPoolAllocationIsNullAndLeaksNothing) {
  kc_fail_nth_alloc(1);
  EXPECT_EQ(zbud_create_pool(GFP_KERNEL | __GFP_NOWARN, &kOps), nullptr);
  kc_fail_nth_alloc(0);
}

TEST_F(ZbudTest, EveryInjectedFailureInASequenceIsHandled) {
  // For n = 1, 2, ...: build objects until the nth allocation fails, check, clean up.
  for (unsigned long nth = 1; nth <= 12; nth++) {
    zbud_pool *pool = zbud_create_pool(GFP_KERNEL, &kOps);
    ASSERT_NE(pool, nullptr);
    std::vector<std::pair<unsigned long, size_t>> objs;
    kc_fail_nth_alloc(nth);
    int ret = 0;
    for (int i = 0; i < 40 && ret == 0; i++) {
      const size_t size = Chunks(static_cast<unsigned>(5 + (i * 17) % 50));
      unsigned long handle = 0;
      ret = zbud_alloc(pool, size, GFP_KERNEL | __GFP_NOWARN, &handle);
      if (ret == 0) {
        Fill(pool, handle, size, static_cast<unsigned>(i));
        objs.push_back({handle, size});
      }
    }
    kc_fail_nth_alloc(0);
    EXPECT_EQ(ret, -ENOMEM) << "nth " << nth;
    ExpectValid(pool);
    EXPECT_EQ(zbud_get_pool_size(pool), nth - 1) << "one page per successful page allocation";
    for (size_t i = 0; i < objs.size(); i++) {
      EXPECT_TRUE(Holds(pool, objs[i].first, objs[i].second, static_cast<unsigned>(i)));
      zbud_free(pool, objs[i].first);
    }
    zbud_destroy_pool(pool);
  }
}

}  // namespace

// ---- The validator's own test ----------------------------------------------------------------

// Every corruption the validator's self-test applies is caught, named, and undone.
TEST_F(ZbudTest, ValidatorCatchesEveryCorruptionAndTheStateIsRestored) {
  if (!ZPOOL_CHECKS) GTEST_SKIP() << "misuse checks compiled out (ZPOOL_UNCHECKED=1)";
  zbud_pool *pool = NewPool();
  const unsigned long h = Alloc(pool, 100);  // a first buddy with slack; the last buddy free
  Fill(pool, h, 100, 7);
  const char *const expected[ZBUD_CORRUPTIONS] = {
      "not this pool", "under reclaim", "eviction state", "no buddy", "exceed",
      "without kAllocated", "chunks for size", "redzone", "pages_nr", "objects counted",
      "free last buddy with size"};
  for (int kind = 0; kind < ZBUD_CORRUPTIONS; kind++) {
    char why[256] = "";
    int err = zbud_validate_corrupted_TestOnly(pool, h, kind, why, sizeof(why));
    if (kind == 7 && (kc::kAsan || kc::kMsan)) {
      EXPECT_EQ(err, -EINVAL) << "the redzone is unaddressable under ASan/MSan";
    } else {
      EXPECT_EQ(err, -EUCLEAN) << "corruption " << kind << " missed";
      EXPECT_NE(strstr(why, expected[kind]), nullptr) << kind << ": " << why;
    }
    ExpectValid(pool);
    EXPECT_TRUE(Holds(pool, h, 100, 7));
  }
  EXPECT_EQ(zbud_validate_corrupted_TestOnly(pool, h, ZBUD_CORRUPTIONS, nullptr, 0), -EINVAL);
  EXPECT_EQ(zbud_validate_corrupted_TestOnly(pool, h + 1, 0, nullptr, 0), -EINVAL);
  // With both buddies allocated there is no free buddy to corrupt.
  const unsigned long h2 = Alloc(pool, 100);
  EXPECT_EQ(zbud_validate_corrupted_TestOnly(pool, h, 10, nullptr, 0), -EINVAL);
  zbud_free(pool, h2);
  zbud_free(pool, h);
}

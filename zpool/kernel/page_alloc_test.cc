// SPDX-License-Identifier: GPL-2.0-only
// Tests of the page allocator, the slab caches and fault injection.
#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
#include <set>
#include <thread>
#include <vector>

#include "zpool/kernel/kernel.h"
#include "zpool/kernel/page.h"
#include "zpool/kernel/page_ext.h"
#include "zpool/kernel/sanitizer.h"

namespace {

class PageAllocTest : public ::testing::Test {
 protected:
  void SetUp() override {
    kc_fail_nth_alloc(0);
    kc_set_warn_policy(KC_WARN_RECORD);
    kc_warn_reset();
    start_pages_ = kc_pages_in_use();
    start_meta_ = kc_meta_in_use();
  }
  void TearDown() override {
    kc_fail_nth_alloc(0);
    EXPECT_EQ(kc_pages_in_use(), start_pages_) << "pages leaked by the test";
    EXPECT_EQ(kc_meta_in_use(), start_meta_) << "metadata leaked by the test";
    kc_set_warn_policy(KC_WARN_LOG);
  }
  unsigned long start_pages_ = 0;
  unsigned long start_meta_ = 0;
};

TEST_F(PageAllocTest, PageIsAlignedAndRoundTrips) {
  struct page *page = alloc_page(GFP_KERNEL);
  ASSERT_NE(page, nullptr);
  void *addr = page_address(page);
  ASSERT_NE(addr, nullptr);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(addr) & (PAGE_SIZE - 1), 0u);
  // Every byte of the page maps back to the same descriptor.
  for (unsigned long off = 0; off < PAGE_SIZE; off += 97)
    EXPECT_EQ(virt_to_page(static_cast<char *>(addr) + off), page);
  EXPECT_EQ(virt_to_page(static_cast<char *>(addr) + PAGE_SIZE - 1), page);
  memset(addr, 0xa5, PAGE_SIZE);
  EXPECT_EQ(kc_pages_in_use(), start_pages_ + 1);
  __free_page(page);
  EXPECT_EQ(kc_pages_in_use(), start_pages_);
}

TEST_F(PageAllocTest, VirtToPageRejectsForeignAddresses) {
  int on_stack = 0;
  EXPECT_EQ(virt_to_page(&on_stack), nullptr);
  std::vector<char> heap(100);
  EXPECT_EQ(virt_to_page(heap.data()), nullptr);
  EXPECT_EQ(virt_to_page(nullptr), nullptr);
  EXPECT_EQ(virt_to_page(reinterpret_cast<void *>(0x1234)), nullptr);
  EXPECT_EQ(virt_to_page(reinterpret_cast<void *>(~0UL)), nullptr);
  // A descriptor is not a data address.
  struct page *page = alloc_page(GFP_KERNEL);
  ASSERT_NE(page, nullptr);
  EXPECT_EQ(virt_to_page(page), nullptr);
  __free_page(page);
}

TEST_F(PageAllocTest, DistinctPagesAndReuse) {
  std::vector<struct page *> pages;
  std::set<void *> addrs;
  for (int i = 0; i < 100; i++) {
    struct page *page = alloc_page(GFP_KERNEL);
    ASSERT_NE(page, nullptr);
    pages.push_back(page);
    addrs.insert(page_address(page));
  }
  EXPECT_EQ(addrs.size(), 100u);
  struct page *last = pages.back();
  pages.pop_back();
  __free_page(last);
  struct page *again = alloc_page(GFP_KERNEL);
  EXPECT_EQ(again, last) << "the most recently freed page is reused first";
  pages.push_back(again);
  for (struct page *page : pages) __free_page(page);
}

TEST_F(PageAllocTest, ZeroFlagZeroesAndOwnerFieldsStartClear) {
  struct page *page = alloc_page(GFP_KERNEL);
  ASSERT_NE(page, nullptr);
  memset(page_address(page), 0xff, PAGE_SIZE);
  page->private_ = 42;
  page->owner = this;
  __free_page(page);
  struct page *zeroed = alloc_page(GFP_KERNEL | __GFP_ZERO);
  ASSERT_EQ(zeroed, page);
  EXPECT_EQ(zeroed->private_, 0u);
  EXPECT_EQ(zeroed->owner, nullptr);
  auto *bytes = static_cast<unsigned char *>(page_address(zeroed));
  for (unsigned long i = 0; i < PAGE_SIZE; i++) ASSERT_EQ(bytes[i], 0) << "byte " << i;
  __free_page(zeroed);
}

TEST_F(PageAllocTest, PageExtIsPerPageDenseAndResetByAllocAndFree) {
  struct page *a = alloc_page(GFP_KERNEL);
  struct page *b = alloc_page(GFP_KERNEL);
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  char *addr = static_cast<char *>(page_address(a));
  struct page_ext *ext = page_ext_of(addr);
  ASSERT_NE(ext, nullptr);
  // Every byte of the page has the same extension; another page has another one.
  for (unsigned long off = 0; off < PAGE_SIZE; off += 61) EXPECT_EQ(page_ext_of(addr + off), ext);
  EXPECT_EQ(page_ext_of(addr + PAGE_SIZE - 1), ext);
  EXPECT_NE(page_ext_of(page_address(b)), ext);
  EXPECT_EQ(ext->owner.load(), nullptr);
  for (const std::atomic<uint32_t> &word : ext->word) EXPECT_EQ(word.load(), 0u);
  // It is not in the page: writing it leaves the data alone, and the data leaves it alone.
  memset(addr, 0x5a, PAGE_SIZE);
  ext->owner.store(this);
  for (std::atomic<uint32_t> &word : ext->word) word.store(0xdeadbeef);
  EXPECT_EQ(static_cast<unsigned char>(addr[0]), 0x5a);
  EXPECT_EQ(static_cast<unsigned char>(addr[PAGE_SIZE - 1]), 0x5a);
  EXPECT_EQ(page_ext_of(page_address(b))->owner.load(), nullptr);
  // __free_page() resets it, and so does the next alloc_page() of the same page.
  __free_page(a);
  EXPECT_EQ(ext->owner.load(), nullptr);
  for (const std::atomic<uint32_t> &word : ext->word) EXPECT_EQ(word.load(), 0u);
  ext->word[3].store(7);  // (a stray write to a free page's extension)
  struct page *again = alloc_page(GFP_KERNEL);
  ASSERT_EQ(again, a);
  EXPECT_EQ(page_ext_of(page_address(again)), ext);
  EXPECT_EQ(ext->word[3].load(), 0u);
  __free_page(again);
  __free_page(b);
}

TEST_F(PageAllocTest, PageExtRejectsForeignAddresses) {
  int on_stack = 0;
  EXPECT_EQ(page_ext_of(&on_stack), nullptr);
  std::vector<char> heap(100);
  EXPECT_EQ(page_ext_of(heap.data()), nullptr);
  EXPECT_EQ(page_ext_of(nullptr), nullptr);
  EXPECT_EQ(page_ext_of(reinterpret_cast<void *>(~0UL)), nullptr);
  struct page *page = alloc_page(GFP_KERNEL);
  ASSERT_NE(page, nullptr);
  // Neither a descriptor nor an extension is a data address; nor is a slab object.
  EXPECT_EQ(page_ext_of(page), nullptr);
  EXPECT_EQ(page_ext_of(page_ext_of(page_address(page))), nullptr);
  struct kmem_cache *cache = kmem_cache_create("ext_test", 64, 0);
  ASSERT_NE(cache, nullptr);
  void *obj = kmem_cache_alloc(cache, GFP_KERNEL);
  ASSERT_NE(obj, nullptr);
  EXPECT_EQ(page_ext_of(obj), nullptr);
  kmem_cache_free(cache, obj);
  kmem_cache_destroy(cache);
  __free_page(page);
}

TEST_F(PageAllocTest, DoubleFreeWarnsAndChangesNothing) {
  struct page *page = alloc_page(GFP_KERNEL);
  ASSERT_NE(page, nullptr);
  __free_page(page);
  unsigned long in_use = kc_pages_in_use();
  __free_page(page);
  EXPECT_EQ(kc_warn_count(), 1u);
  EXPECT_EQ(kc_pages_in_use(), in_use);
  char text[256];
  kc_last_warning(text, sizeof(text));
  EXPECT_NE(strstr(text, "double free"), nullptr) << text;
  // The page is handed out once, not twice.
  struct page *a = alloc_page(GFP_KERNEL);
  struct page *b = alloc_page(GFP_KERNEL);
  EXPECT_NE(a, b);
  __free_page(a);
  __free_page(b);
}

TEST_F(PageAllocTest, FreeOfForeignPointerWarns) {
  struct page fake{};
  __free_page(&fake);
  __free_page(nullptr);
  EXPECT_EQ(kc_warn_count(), 2u);
}

TEST_F(PageAllocTest, FaultInjectionHitsExactlyTheNthAllocation) {
  for (unsigned long nth = 1; nth <= 5; nth++) {
    kc_fail_nth_alloc(nth);
    std::vector<struct page *> got;
    for (unsigned long i = 1; i <= 6; i++) {
      struct page *page = alloc_page(GFP_KERNEL | __GFP_NOWARN);
      if (i == nth) {
        EXPECT_EQ(page, nullptr) << "allocation " << i << " with nth=" << nth;
      } else {
        EXPECT_NE(page, nullptr) << "allocation " << i << " with nth=" << nth;
      }
      if (page) got.push_back(page);
    }
    EXPECT_EQ(kc_fail_nth_pending(), 0u);
    for (struct page *page : got) __free_page(page);
  }
}

TEST_F(PageAllocTest, FaultInjectionCountsMetadataToo) {
  kc_fail_nth_alloc(2);
  void *first = kmalloc(32, GFP_KERNEL | __GFP_NOWARN);
  struct page *second = alloc_page(GFP_KERNEL | __GFP_NOWARN);
  void *third = kmalloc(32, GFP_KERNEL | __GFP_NOWARN);
  EXPECT_NE(first, nullptr);
  EXPECT_EQ(second, nullptr);
  EXPECT_NE(third, nullptr);
  kfree(first);
  kfree(third);
}

TEST_F(PageAllocTest, FaultInjectionIsExactAcrossThreads) {
  // With many threads allocating, exactly one allocation fails.
  constexpr int kThreads = 4, kPerThread = 200;
  kc_fail_nth_alloc(377);
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; t++) {
    threads.emplace_back([&] {
      std::vector<struct page *> mine;
      for (int i = 0; i < kPerThread; i++) {
        struct page *page = alloc_page(GFP_KERNEL | __GFP_NOWARN);
        if (page == nullptr) {
          failures++;
        } else {
          mine.push_back(page);
        }
      }
      for (struct page *page : mine) __free_page(page);
    });
  }
  for (auto &t : threads) t.join();
  EXPECT_EQ(failures.load(), 1);
}

TEST_F(PageAllocTest, ManyThreadsAllocateAndFree) {
  constexpr int kThreads = 4, kRounds = 300;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; t++) {
    threads.emplace_back([t] {
      std::vector<struct page *> mine;
      for (int r = 0; r < kRounds; r++) {
        struct page *page = alloc_page(GFP_KERNEL);
        ASSERT_NE(page, nullptr);
        auto *bytes = static_cast<unsigned char *>(page_address(page));
        memset(bytes, t + 1, PAGE_SIZE);
        mine.push_back(page);
        if (r % 3 == 2) {
          struct page *old = mine.front();
          mine.erase(mine.begin());
          auto *old_bytes = static_cast<unsigned char *>(page_address(old));
          for (unsigned long i = 0; i < PAGE_SIZE; i += 64) ASSERT_EQ(old_bytes[i], t + 1);
          __free_page(old);
        }
      }
      for (struct page *page : mine) __free_page(page);
    });
  }
  for (auto &t : threads) t.join();
}

TEST_F(PageAllocTest, PagesBeyondTheCacheAreReturnedToTheOs) {
  std::vector<struct page *> pages;
  for (unsigned long i = 0; i < kc::kPageCacheMax + kc::kReleaseBatch + 64; i++) {
    struct page *page = alloc_page(GFP_KERNEL);
    ASSERT_NE(page, nullptr);
    pages.push_back(page);
  }
  for (struct page *page : pages) __free_page(page);
  kc::PageAllocatorStats stats = kc::GetPageAllocatorStats();
  EXPECT_LT(stats.pages_cached, kc::kPageCacheMax + kc::kReleaseBatch);
  EXPECT_GE(stats.pages_released, kc::kReleaseBatch);
  // The coldest pages went back to the OS: the first ones freed, not the last.
  EXPECT_FALSE(pages.back()->kc_released);
  EXPECT_TRUE(pages.front()->kc_released);
  // Released pages come back usable, and zeroed when asked (whether or not the OS took them).
  pages.clear();
  for (unsigned long i = 0; i < kc::kPageCacheMax + kc::kReleaseBatch + 8; i++)
    pages.push_back(alloc_page(GFP_KERNEL | __GFP_ZERO));
  for (struct page *page : pages) {
    ASSERT_NE(page, nullptr);
    auto *bytes = static_cast<unsigned char *>(page_address(page));
    for (unsigned long i = 0; i < PAGE_SIZE; i += 61) ASSERT_EQ(bytes[i], 0);
    memset(bytes, 1, PAGE_SIZE);
    __free_page(page);
  }
}

#if defined(KC_ASAN)
TEST_F(PageAllocTest, FreedPageIsPoisonedUnderAsan) {
  struct page *page = alloc_page(GFP_KERNEL);
  ASSERT_NE(page, nullptr);
  char *addr = static_cast<char *>(page_address(page));
  EXPECT_FALSE(kc::asan_region_poisoned(addr, PAGE_SIZE));
  __free_page(page);
  EXPECT_TRUE(kc::asan_region_poisoned(addr, 1));
  EXPECT_DEATH(addr[10] = 1, "use-after-poison");
}
#endif

// ---- slab caches --------------------------------------------------------------------------

TEST_F(PageAllocTest, SlabAllocFreeOwns) {
  struct kmem_cache *cache = kmem_cache_create("test_handles", 8, 8);
  ASSERT_NE(cache, nullptr);
  std::vector<void *> objs;
  for (int i = 0; i < 20000; i++) {  // more than two slabs
    void *obj = kmem_cache_alloc(cache, GFP_KERNEL);
    ASSERT_NE(obj, nullptr);
    *static_cast<unsigned long *>(obj) = static_cast<unsigned long>(i);
    objs.push_back(obj);
  }
  std::set<void *> unique(objs.begin(), objs.end());
  EXPECT_EQ(unique.size(), objs.size());
  EXPECT_EQ(kmem_cache_objects_in_use(cache), 20000u);
  for (size_t i = 0; i < objs.size(); i++) {
    EXPECT_TRUE(kmem_cache_owns(cache, objs[i]));
    EXPECT_EQ(*static_cast<unsigned long *>(objs[i]), i);
  }
  // Misaligned, foreign and stack pointers are not owned; nothing is dereferenced.
  EXPECT_FALSE(kmem_cache_owns(cache, static_cast<char *>(objs[0]) + 1));
  int local = 0;
  EXPECT_FALSE(kmem_cache_owns(cache, &local));
  EXPECT_FALSE(kmem_cache_owns(cache, reinterpret_cast<void *>(0x10)));
  struct kmem_cache *other = kmem_cache_create("other", 8, 8);
  EXPECT_FALSE(kmem_cache_owns(other, objs[0]));
  for (size_t i = 0; i < objs.size(); i += 2) kmem_cache_free(cache, objs[i]);
  for (size_t i = 0; i < objs.size(); i++)
    EXPECT_EQ(kmem_cache_owns(cache, objs[i]), i % 2 == 1) << i;
  for (size_t i = 1; i < objs.size(); i += 2) kmem_cache_free(cache, objs[i]);
  EXPECT_EQ(kmem_cache_objects_in_use(cache), 0u);
  EXPECT_EQ(kc_warn_count(), 0u);
  kmem_cache_destroy(other);
  kmem_cache_destroy(cache);
}

TEST_F(PageAllocTest, SlabDoubleAndForeignFreeWarn) {
  struct kmem_cache *cache = kmem_cache_create("test", 24, 8);
  void *obj = kmem_cache_alloc(cache, GFP_KERNEL);
  kmem_cache_free(cache, obj);
  kmem_cache_free(cache, obj);  // double free
  int local;
  kmem_cache_free(cache, &local);  // foreign
  EXPECT_EQ(kc_warn_count(), 2u);
  EXPECT_EQ(kmem_cache_objects_in_use(cache), 0u);
  kmem_cache_destroy(cache);
}

TEST_F(PageAllocTest, SlabDestroyWithObjectsWarnsAndFreesThem) {
  struct kmem_cache *cache = kmem_cache_create("leaky", 64, 64);
  for (int i = 0; i < 3000; i++) ASSERT_NE(kmem_cache_alloc(cache, GFP_KERNEL), nullptr);
  kmem_cache_destroy(cache);
  EXPECT_EQ(kc_warn_count(), 1u);
  char text[256];
  kc_last_warning(text, sizeof(text));
  EXPECT_NE(strstr(text, "3000 in use"), nullptr) << text;
}

TEST_F(PageAllocTest, SlabThreads) {
  struct kmem_cache *cache = kmem_cache_create("threads", 16, 8);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; t++) {
    threads.emplace_back([cache, t] {
      std::vector<unsigned long *> mine;
      for (int i = 0; i < 5000; i++) {
        auto *obj = static_cast<unsigned long *>(kmem_cache_alloc(cache, GFP_KERNEL));
        ASSERT_NE(obj, nullptr);
        *obj = static_cast<unsigned long>(t * 100000 + i);
        mine.push_back(obj);
        if (i % 2) {
          unsigned long *old = mine.front();
          mine.erase(mine.begin());
          ASSERT_TRUE(kmem_cache_owns(cache, old));
          ASSERT_EQ(*old / 100000, static_cast<unsigned long>(t));
          kmem_cache_free(cache, old);
        }
      }
      for (auto *obj : mine) kmem_cache_free(cache, obj);
    });
  }
  for (auto &t : threads) t.join();
  EXPECT_EQ(kmem_cache_objects_in_use(cache), 0u);
  EXPECT_EQ(kc_warn_count(), 0u);
  kmem_cache_destroy(cache);
}

TEST_F(PageAllocTest, FaultInjectionInSlabAndKmalloc) {
  struct kmem_cache *cache = kmem_cache_create("fail", 8, 8);
  kc_fail_nth_alloc(1);
  EXPECT_EQ(kmem_cache_alloc(cache, GFP_KERNEL | __GFP_NOWARN), nullptr);
  kc_fail_nth_alloc(1);
  EXPECT_EQ(kmalloc(10, GFP_KERNEL | __GFP_NOWARN), nullptr);
  void *ok = kzalloc(10, GFP_KERNEL);
  ASSERT_NE(ok, nullptr);
  EXPECT_EQ(static_cast<char *>(ok)[9], 0);
  kfree(ok);
  kmem_cache_destroy(cache);
}

}  // namespace

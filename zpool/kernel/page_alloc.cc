// SPDX-License-Identifier: GPL-2.0-only
// The page allocator: alloc_page, __free_page, virt_to_page, page_address.
//
// Region layout: internal::PageRegion (region.h). virt_to_page() and page_ext_of() (page_ext.h)
// of an address inside a region's header return NULL.
#include <sys/mman.h>

#include <algorithm>
#include <cstring>
#include <vector>
#include <mutex>
#include <new>

#include "zpool/kernel/kernel.h"
#include "zpool/kernel/page.h"
#include "zpool/kernel/region.h"
#include "zpool/kernel/sanitizer.h"
#include "zpool/kernel/sched.h"

namespace kc {

namespace {

using internal::DataPageOf;
using internal::kHeaderPages;
using internal::PageRegion;
using internal::RegionKind;

constexpr uint64_t kPageRegionMagic = 0x7a706f6f6c706731ULL;  // "zpoolpg1"

struct PageAllocator {
  std::mutex mu;
  // Free pages with their data resident: the most recently freed at the front (reused first),
  // the coldest at the back (returned to the OS first). The list node is the owner's while the
  // page is allocated, and the allocator's while it is free.
  IntrusiveList<struct page, PageLru> cached;
  struct page *released = nullptr;  // free, data returned to the OS (LIFO)
  PageRegion *carving = nullptr;    // region with never-used pages left
  unsigned long next_fresh = 0;     // next never-used index in `carving`
  unsigned long nr_cached = 0;
  unsigned long nr_released = 0;
  unsigned long regions = 0;
};

PageAllocator &allocator() {
  static PageAllocator *a = new PageAllocator();  // never destroyed
  return *a;
}

std::atomic<unsigned long> g_in_use{0};
std::atomic<unsigned long> g_allocs{0};
std::atomic<unsigned long> g_frees{0};
std::atomic<unsigned long> g_failed{0};

PageRegion *RegionOfDescriptor(const struct page *page) {
  if (internal::RegionKindOf(page) != RegionKind::kPages) return nullptr;
  auto *region = reinterpret_cast<PageRegion *>(internal::RegionBase(page));
  auto offset = reinterpret_cast<uintptr_t>(page) - reinterpret_cast<uintptr_t>(region->descs);
  if (reinterpret_cast<uintptr_t>(page) < reinterpret_cast<uintptr_t>(region->descs) ||
      offset % sizeof(struct page) != 0 || offset / sizeof(struct page) < kHeaderPages ||
      offset / sizeof(struct page) >= kPagesPerRegion)
    return nullptr;
  return region;
}

void *AddressOf(PageRegion *region, const struct page *page) {
  auto index = static_cast<unsigned long>(page - region->descs);
  return reinterpret_cast<char *>(region) + (index << PAGE_SHIFT);
}

// Returns the data of a list of free pages (linked by kc_free_next, held by the caller) to the
// OS, then puts them on the released list. Adjacent pages are released with one call.
void ReleaseToOs(struct page *list) {
  std::vector<struct page *> pages;
  for (struct page *p = list; p != nullptr; p = p->kc_free_next) pages.push_back(p);
  std::sort(pages.begin(), pages.end());
  for (size_t i = 0; i < pages.size();) {
    size_t j = i + 1;
    while (j < pages.size() && pages[j] == pages[j - 1] + 1 &&
           RegionOfDescriptor(pages[j]) == RegionOfDescriptor(pages[i]))
      j++;
    madvise(AddressOf(RegionOfDescriptor(pages[i]), pages[i]), (j - i) * PAGE_SIZE,
            MADV_FREE);
    i = j;
  }
  PageAllocator &a = allocator();
  std::lock_guard<std::mutex> guard(a.mu);
  for (struct page *p : pages) {
    p->kc_released = true;
    p->kc_free_next = a.released;
    a.released = p;
    a.nr_released++;
  }
}

PageRegion *NewRegion() {
  void *mem = internal::MapRegion(RegionKind::kPages);
  auto *region = static_cast<PageRegion *>(mem);
  region->magic = kPageRegionMagic;
  for (unsigned long i = 0; i < kPagesPerRegion; i++) {
    new (&region->descs[i]) struct page();
    new (&region->exts[i]) struct page_ext();
  }
  // Data pages are untouched until handed out; under ASan they start poisoned.
  asan_poison(reinterpret_cast<char *>(mem) + kHeaderPages * PAGE_SIZE,
              (kPagesPerRegion - kHeaderPages) * PAGE_SIZE);
  return region;
}

void ResetOwnerFields(PageRegion *region, struct page *page) {
  struct page_ext &ext = region->exts[page - region->descs];
  ext.owner.store(nullptr, std::memory_order_relaxed);
  for (std::atomic<uint32_t> &word : ext.word) word.store(0, std::memory_order_relaxed);
  page->flags = 0;
  page->private_ = 0;
  page->owner = nullptr;
  page->zspage = nullptr;
  page->next = nullptr;
  page->first_obj_offset = 0;
  page->index = 0;
}

// Takes a free page (cached first, then released, then never used). Sets *zeroed when the
// page's data is known to be zero. REQUIRES: a.mu held.
struct page *TakeFreePage(PageAllocator &a, bool *zeroed) {
  if (struct page *page = a.cached.pop_front()) {
    a.nr_cached--;
    *zeroed = false;
    return page;
  }
  if (a.released != nullptr) {
    struct page *page = a.released;
    a.released = page->kc_free_next;
    a.nr_released--;
    *zeroed = false;  // MADV_FREE: the OS may or may not have taken the page back yet
    return page;
  }
  if (a.carving == nullptr || a.next_fresh == kPagesPerRegion) {
    a.carving = NewRegion();
    a.next_fresh = kHeaderPages;
    a.regions++;
  }
  *zeroed = true;
  return &a.carving->descs[a.next_fresh++];
}

}  // namespace

PageAllocatorStats GetPageAllocatorStats() {
  PageAllocator &a = allocator();
  std::lock_guard<std::mutex> guard(a.mu);
  return PageAllocatorStats{a.regions,
                            g_in_use.load(),
                            a.nr_cached,
                            a.nr_released,
                            g_allocs.load(),
                            g_frees.load(),
                            g_failed.load()};
}

namespace internal {
void PrewarmSlabs(unsigned long slabs);  // slab.cc
}

void PrewarmForFuzzing(unsigned long pages, unsigned long slabs) {
  PageAllocator &a = allocator();
  {
    std::lock_guard<std::mutex> guard(a.mu);
    while (a.nr_cached < pages && a.nr_cached < kPageCacheMax) {
      bool zeroed;
      struct page *page;
      if (a.released != nullptr) {
        page = TakeFreePage(a, &zeroed);
      } else {
        // Never-used pages only: cached pages are already where they should be.
        if (a.carving == nullptr || a.next_fresh == kPagesPerRegion) {
          a.carving = NewRegion();
          a.next_fresh = kHeaderPages;
          a.regions++;
        }
        page = &a.carving->descs[a.next_fresh++];
      }
      a.cached.push_back(page);
      a.nr_cached++;
    }
  }
  internal::PrewarmSlabs(slabs);
}

bool PageIsAllocated(const struct page *page) {
  return RegionOfDescriptor(page) != nullptr &&
         page->kc_state.load(std::memory_order_acquire) == kPageAllocated;
}

}  // namespace kc

using kc::allocator;

struct page *alloc_page(gfp_t gfp) {
  // Named by the page allocator: allocations of different kinds do not order one another (only
  // fault injection's count would, and an exploration does not inject).
  static const char page_allocator_token = 0;
  kc::sched_point(kc::SchedEvent::kAlloc, &page_allocator_token);
  might_sleep_if(gfpflags_allow_blocking(gfp));
  if (kc::internal::ShouldFailAlloc()) {
    kc::g_failed.fetch_add(1, std::memory_order_relaxed);
    if (!(gfp & __GFP_NOWARN)) pr_warn("alloc_page: page allocation failure (injected)\n");
    return nullptr;
  }
  kc::PageAllocator &a = allocator();
  struct page *page;
  bool zeroed;
  {
    std::lock_guard<std::mutex> guard(a.mu);
    page = kc::TakeFreePage(a, &zeroed);
  }
  kc::PageRegion *const region = kc::RegionOfDescriptor(page);
  kc::ResetOwnerFields(region, page);
  page->kc_free_next = nullptr;
  page->kc_released = false;
  page->kc_state.store(kc::kPageAllocated, std::memory_order_release);
  kc::g_in_use.fetch_add(1, std::memory_order_relaxed);
  kc::g_allocs.fetch_add(1, std::memory_order_relaxed);

  void *addr = kc::AddressOf(region, page);
  kc::asan_unpoison(addr, PAGE_SIZE);
  if (gfp & __GFP_ZERO) {
    if (!zeroed) memset(addr, 0, PAGE_SIZE);
    kc::msan_mark_initialized(addr, PAGE_SIZE);
  } else {
    kc::msan_mark_uninitialized(addr, PAGE_SIZE);
  }
  return page;
}

void __free_page(struct page *page) {
  if (WARN(page == nullptr, "__free_page(NULL)")) return;
  kc::PageRegion *region = kc::RegionOfDescriptor(page);
  if (WARN(region == nullptr, "__free_page(%p): not a page descriptor of this allocator",
           static_cast<void *>(page)))
    return;
  unsigned char expected = kc::kPageAllocated;
  if (WARN(!page->kc_state.compare_exchange_strong(expected, kc::kPageFree,
                                                   std::memory_order_acq_rel),
           "__free_page(%p): page at %p is already free (double free)", static_cast<void *>(page),
           kc::AddressOf(region, page)))
    return;
  WARN_ONCE(page->linked(), "__free_page(%p): page is still on a list of its owner",
            static_cast<void *>(page));
  kc::ResetOwnerFields(region, page);
  void *addr = kc::AddressOf(region, page);
  kc::asan_poison(addr, PAGE_SIZE);
  kc::g_in_use.fetch_sub(1, std::memory_order_relaxed);
  kc::g_frees.fetch_add(1, std::memory_order_relaxed);

  kc::PageAllocator &a = allocator();
  struct page *batch = nullptr;
  {
    std::lock_guard<std::mutex> guard(a.mu);
    a.cached.push_front(page);
    a.nr_cached++;
    // Past the cache threshold, give the coldest pages back to the OS in batches: one madvise()
    // per run of adjacent pages instead of one per page (each call costs a TLB shootdown).
    if (a.nr_cached < kc::kPageCacheMax + kc::kReleaseBatch) return;
    for (unsigned long i = 0; i < kc::kReleaseBatch; i++) {
      struct page *p = a.cached.pop_back();
      a.nr_cached--;
      p->kc_free_next = batch;
      batch = p;
    }
  }
  kc::ReleaseToOs(batch);
}

void *page_address(const struct page *page) {
  kc::PageRegion *region = kc::RegionOfDescriptor(page);
  if (WARN(region == nullptr, "page_address(%p): not a page descriptor",
           static_cast<const void *>(page)))
    return nullptr;
  return kc::AddressOf(region, page);
}

struct page *virt_to_page(const void *addr) {
  unsigned long index;
  kc::PageRegion *region = kc::DataPageOf(addr, &index);
  return region != nullptr ? &region->descs[index] : nullptr;
}

unsigned long kc_pages_in_use(void) { return kc::g_in_use.load(std::memory_order_relaxed); }

// SPDX-License-Identifier: GPL-2.0-only
// kernel_api_fuzz: the page allocator and slab caches of //zpool/kernel against a shadow model.
//
// Operations (one byte each, then arguments): allocate a page (optionally zeroed), free a page,
// write/verify a page's pattern, allocate/free slab objects of two caches, kmalloc/kfree, arm a
// fault injection. The model knows every live page and object and its pattern; after each
// operation the accounting (kc_pages_in_use, kc_meta_in_use, kmem_cache_owns) must match, and no
// WARN may fire (the abort policy turns any WARN into a crash). Everything is freed at the end of
// each input: no state survives to the next.
#include <fuzzer/FuzzedDataProvider.h>

#include <cstdint>
#include <cstring>
#include <vector>

#include "zpool/kernel/kernel.h"
#include "zpool/kernel/page.h"

namespace {

struct LivePage {
  struct page *page;
  uint8_t pattern;
};

struct LiveObject {
  void *ptr;
  size_t size;
  uint8_t pattern;
  int cache;  // 0, 1: kmem caches; 2: kmalloc
};

void Fill(void *p, size_t n, uint8_t pattern) { memset(p, pattern, n); }

void Verify(const void *p, size_t n, uint8_t pattern) {
  const auto *bytes = static_cast<const uint8_t *>(p);
  for (size_t i = 0; i < n; i++)
    if (bytes[i] != pattern) __builtin_trap();  // contents lost: a finding
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int *, char ***) {
  kc_set_warn_policy(KC_WARN_ABORT);
  kc_set_console_loglevel(KC_LOG_ERR);  // injected allocation failures are not news
  kc::PrewarmForFuzzing(/*pages=*/512, /*slabs=*/8);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  FuzzedDataProvider in(data, size);
  kc_warn_reset();
  const unsigned long pages_before = kc_pages_in_use();
  const unsigned long meta_before = kc_meta_in_use();
  struct kmem_cache *caches[2] = {kmem_cache_create("fuzz_small", 8, 8),
                                  kmem_cache_create("fuzz_large", 200, 16)};
  std::vector<LivePage> pages;
  std::vector<LiveObject> objects;
  unsigned long injected_pending = 0;

  for (int steps = 0; steps < 256 && in.remaining_bytes() > 0; steps++) {
    switch (in.ConsumeIntegralInRange<int>(0, 7)) {
      case 0: {  // alloc_page
        bool zero = in.ConsumeBool();
        struct page *page = alloc_page(GFP_KERNEL | __GFP_NOWARN | (zero ? __GFP_ZERO : 0));
        if (page == nullptr) break;  // only when a failure was injected (checked below)
        if (zero) Verify(page_address(page), PAGE_SIZE, 0);
        uint8_t pattern = in.ConsumeIntegral<uint8_t>();
        Fill(page_address(page), PAGE_SIZE, pattern);
        if (virt_to_page(static_cast<char *>(page_address(page)) + PAGE_SIZE - 1) != page)
          __builtin_trap();
        pages.push_back({page, pattern});
        break;
      }
      case 1: {  // __free_page
        if (pages.empty()) break;
        size_t i = in.ConsumeIntegralInRange<size_t>(0, pages.size() - 1);
        Verify(page_address(pages[i].page), PAGE_SIZE, pages[i].pattern);
        __free_page(pages[i].page);
        pages[i] = pages.back();
        pages.pop_back();
        break;
      }
      case 2: {  // rewrite a page
        if (pages.empty()) break;
        size_t i = in.ConsumeIntegralInRange<size_t>(0, pages.size() - 1);
        Verify(page_address(pages[i].page), PAGE_SIZE, pages[i].pattern);
        pages[i].pattern = in.ConsumeIntegral<uint8_t>();
        Fill(page_address(pages[i].page), PAGE_SIZE, pages[i].pattern);
        break;
      }
      case 3:    // kmem_cache_alloc
      case 4: {  // kmalloc
        int cache = in.ConsumeIntegralInRange<int>(0, 2);
        size_t n = cache < 2 ? kmem_cache_size(caches[cache])
                             : in.ConsumeIntegralInRange<size_t>(1, 3000);
        void *ptr = cache < 2 ? kmem_cache_alloc(caches[cache], GFP_KERNEL | __GFP_NOWARN)
                              : kmalloc(n, GFP_KERNEL | __GFP_NOWARN);
        if (ptr == nullptr) break;
        uint8_t pattern = in.ConsumeIntegral<uint8_t>();
        Fill(ptr, n, pattern);
        objects.push_back({ptr, n, pattern, cache});
        break;
      }
      case 5: {  // free an object
        if (objects.empty()) break;
        size_t i = in.ConsumeIntegralInRange<size_t>(0, objects.size() - 1);
        LiveObject obj = objects[i];
        Verify(obj.ptr, obj.size, obj.pattern);
        if (obj.cache < 2) {
          if (!kmem_cache_owns(caches[obj.cache], obj.ptr)) __builtin_trap();
          if (kmem_cache_owns(caches[1 - obj.cache], obj.ptr)) __builtin_trap();
          kmem_cache_free(caches[obj.cache], obj.ptr);
          if (kmem_cache_owns(caches[obj.cache], obj.ptr)) __builtin_trap();
        } else {
          kfree(obj.ptr);
        }
        objects[i] = objects.back();
        objects.pop_back();
        break;
      }
      case 6: {  // fault injection: fail the nth allocation from now
        injected_pending = in.ConsumeIntegralInRange<unsigned long>(1, 8);
        kc_fail_nth_alloc(injected_pending);
        break;
      }
      case 7: {  // a foreign pointer is never a page or a slab object
        uint64_t garbage = in.ConsumeIntegral<uint64_t>();
        const void *p = reinterpret_cast<const void *>(garbage);
        struct page *page = virt_to_page(p);
        if (page != nullptr) {
          // Only our own data addresses map to a page; it must round-trip.
          auto base = reinterpret_cast<uintptr_t>(page_address(page));
          if (garbage < base || garbage >= base + PAGE_SIZE) __builtin_trap();
        }
        break;
      }
    }
    // The model and the accounting agree after every operation.
    size_t slab_objects = 0;
    for (const LiveObject &obj : objects) slab_objects += obj.cache < 2;
    if (kc_pages_in_use() != pages_before + pages.size()) __builtin_trap();
    if (kc_meta_in_use() != meta_before + objects.size()) __builtin_trap();
    if (kmem_cache_objects_in_use(caches[0]) + kmem_cache_objects_in_use(caches[1]) !=
        slab_objects)
      __builtin_trap();
  }
  kc_fail_nth_alloc(0);
  for (const LivePage &p : pages) {
    Verify(page_address(p.page), PAGE_SIZE, p.pattern);
    __free_page(p.page);
  }
  for (const LiveObject &obj : objects) {
    Verify(obj.ptr, obj.size, obj.pattern);
    if (obj.cache < 2) {
      kmem_cache_free(caches[obj.cache], obj.ptr);
    } else {
      kfree(obj.ptr);
    }
  }
  kmem_cache_destroy(caches[0]);
  kmem_cache_destroy(caches[1]);
  if (kc_pages_in_use() != pages_before || kc_meta_in_use() != meta_before) __builtin_trap();
  if (kc_warn_count() != 0) __builtin_trap();
  (void)injected_pending;
  return 0;
}

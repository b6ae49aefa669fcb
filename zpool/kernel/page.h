// SPDX-License-Identifier: GPL-2.0-only
// Pages and their descriptors; the slab caches for metadata.
//
// Page allocator: pages are carved from 16 MiB regions mmap'd on demand and aligned to their
// size. Every region has an array of descriptors (struct page), and a two-level table indexed by
// the address's region number finds a region from any address in O(1) without touching the
// address itself: virt_to_page() of a garbage value returns NULL instead of faulting, which is
// what lets the allocators prove that a handle is theirs. page_address() is the inverse.
// Freed pages go to a LIFO cache for reuse; once kReleaseBatch pages more than kPageCacheMax are
// cached, the coldest kReleaseBatch go back to the OS (madvise(MADV_FREE): the OS takes them when
// it needs memory, and the call is far cheaper than MADV_DONTNEED; one call per run of adjacent
// pages) and are reused later (their old contents may or may not still be there).
// Regions are never unmapped, so a descriptor stays valid for the life of the process.
//
// Under ASan a free page is poisoned; under MSan a new page is uninitialised unless __GFP_ZERO.
//
// Slab caches (kmem_cache): fixed-size objects carved from 64 KiB slabs in separate regions of
// the same table, so kmem_cache_owns() can say in O(1), without dereferencing, whether a value is
// a live object of a given cache (zsmalloc proves a handle is live this way). Free objects are
// poisoned under ASan; new objects are uninitialised under MSan.
//
// Both count every allocation against the kc_fail_nth_alloc() fault injection and call
// might_sleep() for blocking GFP flags.
#ifndef ZPOOL_KERNEL_PAGE_H_
#define ZPOOL_KERNEL_PAGE_H_

#include <atomic>
#include <cstdint>

#include "zpool/kernel/kernel.h"
#include "zpool/kernel/list.h"

namespace kc {
struct PageLru;  // tag of the list node in struct page
}

// Page flags (page->flags). The owner of a page may set any of the PG_owner bits.
inline constexpr unsigned long PG_private = 1UL << 0;
inline constexpr unsigned long PG_owner_priv_1 = 1UL << 1;
inline constexpr unsigned long PG_owner_priv_2 = 1UL << 2;
inline constexpr unsigned long PG_movable = 1UL << 3;

// The page descriptor. Fields marked "owner" belong to whoever allocated the page, between
// alloc_page() and __free_page(); both zero them. The allocator-private tail is not for users.
struct page : kc::ListNode<kc::PageLru> {
  unsigned long flags;          // owner: PG_* bits
  unsigned long private_;       // owner: the private word (zsmalloc: a huge object's handle)
  const void *owner;            // owner: the pool this page belongs to
  void *zspage;                 // owner: zsmalloc's zspage metadata
  struct page *next;            // owner: next page of a chain (zsmalloc's zspage)
  unsigned int first_obj_offset;// owner: offset of the first object that starts in this page
  unsigned int index;           // owner: position in its chain

  // Page allocator only.
  std::atomic<unsigned char> kc_state;  // kPageFree / kPageAllocated
  bool kc_released;                     // data returned to the OS (madvise) while free
  struct page *kc_free_next;
};

// The page extension (after the kernel's page_ext): 32 bytes a page, in a dense array beside the
// descriptors, for the metadata an owner's lock-free checks read on every call. A struct page is
// 88 bytes and touched only on slow paths; checks on random pages would miss the cache on it (and
// on an object's header at the far end of its page), while 32-byte entries of the pages in use
// stay cache resident far longer. The fields are the owner's between alloc_page() and
// __free_page(), which both reset them (relaxed atomic stores: a misusing caller racing with a
// free reads stale values, never a data race).
struct page_ext {
  std::atomic<const void *> owner;  // owner: who the page belongs to (nullptr: not recorded)
  std::atomic<uint32_t> word[6];    // owner: whatever it defines
};
static_assert(sizeof(page_ext) == 32, "page_ext entries are 32 bytes");

// page_ext_of(addr), the extension of the page holding addr: zpool/kernel/page_ext.h.

namespace kc {

inline constexpr unsigned char kPageFree = 0;
inline constexpr unsigned char kPageAllocated = 1;

inline constexpr unsigned long kRegionShift = 24;  // 16 MiB
inline constexpr unsigned long kRegionSize = 1UL << kRegionShift;
inline constexpr unsigned long kPagesPerRegion = kRegionSize >> PAGE_SHIFT;
inline constexpr unsigned long kPageCacheMax = 4096;  // free pages kept before release to OS
inline constexpr unsigned long kReleaseBatch = 512;  // pages returned to the OS at a time

struct PageAllocatorStats {
  unsigned long regions;         // 16 MiB regions mapped for pages
  unsigned long pages_in_use;    // == kc_pages_in_use()
  unsigned long pages_cached;    // free, data still resident
  unsigned long pages_released;  // free, data returned to the OS
  unsigned long allocs;          // successful alloc_page() calls
  unsigned long frees;           // __free_page() calls that freed a page
  unsigned long failed;          // alloc_page() calls that returned NULL
};
PageAllocatorStats GetPageAllocatorStats();

// Fills the page cache with `pages` free pages and the slab supply with `slabs` free slabs, so a
// fuzz harness's first input takes the same code paths as every later one (a fresh region would
// otherwise be carved only on the first run of an input: AFL++ counts that as instability).
// Not counted against fault injection.
void PrewarmForFuzzing(unsigned long pages, unsigned long slabs);

// True if `page` is one of our descriptors and is allocated (for hardening checks).
bool PageIsAllocated(const struct page *page);

// Slab caches ----------------------------------------------------------------------------------
class KmemCache;

}  // namespace kc

struct kmem_cache;
// size: object size (rounded up to align, at least 8). align: power of two <= 4096 (0: 8).
struct kmem_cache *kmem_cache_create(const char *name, size_t size, size_t align);
// WARNs with the count if objects are still allocated, then frees the cache and every slab.
void kmem_cache_destroy(struct kmem_cache *cache);
void *kmem_cache_alloc(struct kmem_cache *cache, gfp_t gfp);  // NULL on failure
void *kmem_cache_zalloc(struct kmem_cache *cache, gfp_t gfp);
// Freeing something that is not a live object of this cache WARNs and does nothing.
void kmem_cache_free(struct kmem_cache *cache, void *obj);
// O(1), no dereference of obj: is obj a live (allocated) object of this cache?
bool kmem_cache_owns(const struct kmem_cache *cache, const void *obj);
unsigned long kmem_cache_objects_in_use(const struct kmem_cache *cache);
size_t kmem_cache_size(const struct kmem_cache *cache);

namespace kc {

class PercpuRef;

// A type-stable cache (the kernel's SLAB_TYPESAFE_BY_RCU, for the allocators' pool objects): its
// slabs stay its own for as long as it exists, and each object slot has a calls-in-flight count
// that outlives the object in it (kmem_cache_slot_ref). A call racing the destroy of its pool
// can then learn that the pool is dying from the count, after the pool's memory is freed, instead
// of touching that memory: the proof "the pool is live" and "count my call" are two steps, and a
// destroy may fall between them.
struct kmem_cache *kmem_cache_create_typesafe(const char *name, size_t size, size_t align);
// The count of obj's slot: nullptr unless obj is the start of a slot (live or free) of the
// type-stable cache. O(1), no dereference of obj. A freed pool leaves its count dying (until a
// new pool in the slot revives it with abort_destroy()).
PercpuRef *kmem_cache_slot_ref(const struct kmem_cache *cache, const void *obj);

}  // namespace kc

#endif  // ZPOOL_KERNEL_PAGE_H_

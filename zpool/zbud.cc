// SPDX-License-Identifier: GPL-2.0-only
// zbud: the 3.17 buddy allocator for compressed pages, on the //zpool/kernel layer.
//
// CONCEPT
// zbud stores compressed pages ("zpages") two to a page: the first buddy is left-justified after
// the page header, the last buddy is right-justified against the end of the page. It is not a
// buddy allocator in the binary-buddy sense: the two objects are "buddies" sharing one page.
// Density is therefore at most 2:1 (never more than two objects in a page, however small), in
// exchange for simple, deterministic reclaim: freeing a page needs at most two evictions.
//
// CHUNKS
// A page is NCHUNKS = 2^NCHUNKS_ORDER = 64 chunks of CHUNK_SIZE = PAGE_SIZE >> 6 bytes (64 bytes
// on 4 KiB pages, 1 KiB on 64 KiB pages). Objects occupy whole chunks:
// size_to_chunks(size) = DIV_ROUND_UP(size, CHUNK_SIZE). The first chunk holds the header
// (ZHDR_SIZE_ALIGNED == CHUNK_SIZE), so a page has NCHUNKS - 1 chunks for objects and
// num_free_chunks = NCHUNKS - first_chunks - last_chunks - 1. The largest object is
// PAGE_SIZE - ZHDR_SIZE_ALIGNED - CHUNK_SIZE (62 chunks, 3968 bytes on 4 KiB pages); two objects
// share a page exactly when their chunks add up to at most NCHUNKS - 1.
//
// PAGE LAYOUT
//   | zbud_header ...pad | first buddy ->      free chunks      <- last buddy |
//   0                   CHUNK_SIZE                        PAGE_SIZE - last_chunks*CHUNK_SIZE
// zbud_header (below; static_assert: it fits the first chunk) holds the buddy-list node, the LRU
// node, first_chunks/last_chunks (0: that buddy is free), under_reclaim, and the hardening
// fields: the reclaiming thread and the buddy being evicted, and the chunks of the last buddy
// freed most recently. What every map and unmap checks lives outside the page, in its page_ext
// (zpool/kernel/page.h: dense, so cache resident): the owner (the pool) and, per buddy, the
// requested size and a map state word (kAllocated | maps outstanding).
//
// POOL
// unbuddied[i] lists the pages with exactly one buddy and i free chunks; buddied lists full
// pages; lru lists every page not under reclaim, most recently allocated into at the head.
// Allocation is first fit over unbuddied[chunks .. NCHUNKS-1]; the page found gets the new object
// as FIRST if its first buddy is free, else as LAST. With no fit, the lock is dropped, a page is
// allocated (alloc_page(gfp)), the lock retaken and the object placed FIRST. Either way the page
// is re-listed (unbuddied[free] or buddied) and moved to the LRU head. pages_nr counts pages.
//
// HANDLES
// A handle is the object's address: FIRST = page + ZHDR_SIZE_ALIGNED, LAST = page + PAGE_SIZE -
// (last_chunks << CHUNK_SHIFT). The header is at handle & PAGE_MASK; free tells the buddies
// apart by (handle - ZHDR_SIZE_ALIGNED) & ~PAGE_MASK (0 only for FIRST: a LAST buddy starts at
// chunk 2 or later). zbud_map() returns the handle; zbud can sleep while mapped.
//
// LOCKING
// One spinlock per pool (class "zbud_pool.lock") guards the lists, pages_nr's updates, the pool
// counters, every header field and the page_ext fields except the map count; no other lock is
// taken while it is held (page allocation happens with it dropped; __free_page() under it takes
// only the page allocator's internal mutex). Evict callbacks run without it. pages_nr is an
// atomic, read without the lock by zbud_get_pool_size(). zbud_map/zbud_unmap of a live handle
// take no lock and register no call in flight (as in the kernel, nothing but the handle) outside
// ASan builds: they read the page_ext and move the buddy's map count with a CAS that requires
// kAllocated; zbud_free and zbud_destroy_pool clear kAllocated (under the lock) with a CAS that
// requires no maps, so a map racing with either counts first (the free or destroy is refused)
// or finds the buddy free and takes the locked path. Reports, the evict grace and ASan builds
// (where poisoning must be ordered with the count) take the lock.
//
// RECLAIM (zbud_reclaim_page(pool, retries))
// -EINVAL without ops or evict, with an empty LRU, or with retries == 0. Each try takes the LRU
// tail, unlinks it from the LRU and its buddy list, sets under_reclaim and computes both handles
// while still holding the lock, drops the lock and calls evict(first), then evict(last) unless
// the first failed. zbud_free() of a buddy on a page under reclaim only clears its chunk count,
// so the page cannot be freed or reused under the callbacks. Then, with the lock retaken: both
// buddies free -> free the page, return 0; otherwise put the page back on its buddy list and at
// the LRU head and try again. After `retries` tries: -EAGAIN.
//
// HARDENING (docs/hardening.md; ZPOOL_UNCHECKED=1 compiles the checks out)
// - Pools come from a kmem_cache; each entry point checks kmem_cache_owns() (no dereference;
//   memoized per thread for the last pool proven live, kernel/live_memo.h) and enters a
//   PercpuRef ("calls in flight"): a destroyed pool is reported as use-after-destroy (-EINVAL /
//   NULL / no-op / 0), and destroy refuses while calls are in flight or handles are mapped
//   (destroy-busy). Destroying a pool with objects reports destroy-nonempty and frees every
//   page. zpool's driver calls zbud_alloc_pinned() and zbud_free_pinned() (zbud_pinned.h),
//   which skip both: its zpool call holds the pool. The lock-free map and unmap skip both too: a page_ext owned by the pool with an allocated
//   buddy proves the pool live, since destroy first seals every buddy (clears kAllocated
//   unless mapped; if any is mapped it restores them all and refuses), then frees the pages,
//   whose page_ext __free_page() resets. An unmap of a held map (ASan builds take the locked
//   path for it) registers nothing either: the map pins the pool.
// - A handle is proven in O(1) without dereferencing it: page_ext_of(handle) must be the
//   extension of a page whose owner is this pool, the offset must be FIRST's (CHUNK_SIZE) or
//   the current LAST start (PAGE_SIZE - last_chunks * CHUNK_SIZE), and that buddy must be
//   allocated. Otherwise:
//   double-free (it is the FIRST offset of a page of ours whose first buddy is free, the start
//   of the LAST buddy freed most recently in that page, or a buddy offset in a page that has
//   gone back to the page allocator) or invalid-handle (everything else). A stale handle whose
//   slot has been reallocated is indistinguishable from the new object (handles are addresses).
// - Maps are counted per buddy (nested maps are legal, from any thread): unmap of an unmapped
//   buddy is bad-unmap (no-op), free of a mapped one is free-mapped (refused), destroy with any
//   map outstanding is destroy-busy (counted over the pages: no call is in flight by then).
// - The requested size is kept per buddy; at most 64 bytes of the slot's slack right after the
//   object are a redzone pattern, written at alloc, checked at the last unmap (overflow; the
//   pattern is restored) and at free (overflow; freed anyway). A slot without slack has no
//   redzone.
// - Evict misuse (bad-evict): a callback that returns 0 while its handle is still allocated
//   (reclaim stops: page re-listed, -EAGAIN), or that frees the page's other buddy before it
//   was given that handle (reported by that zbud_free(), which proceeds; reclaim then does not
//   evict the freed buddy: with checks on, the lock is retaken between the two evictions to
//   check the first and to see whether the last is still allocated). Evict grace: a handle
//   being evicted that another thread freed meanwhile may still be mapped by the evicting thread
//   (zswap's writeback reads it to find the entry gone; not a handle it freed itself); its
//   memory stays put while the page is under reclaim. Maps of it left at the end of the try are
//   dropped and reported (bad-evict).
// - A may-sleep call (blocking gfp in create or alloc, reclaim) from atomic context (a zsmalloc
//   mapping or a spinlock held; zbud's own maps may sleep) is sleep-while-mapped: create and
//   alloc proceed without direct reclaim, reclaim fails with -EAGAIN.
// - Each call checks in the order of docs/hardening.md and reports at most one misuse.
// - ASan: object bytes are poisoned except between the first map and the last unmap, and then
//   only the requested size; free chunks, slack and the header are poisoned at rest. Header
//   accesses (HeaderAccess, NodeAccess below) unpoison what they touch while holding the lock.
//   MSan: a new object's bytes are uninitialised (unless __GFP_ZERO).
// - The limits: a destroyed pool's slot reused by a new pool makes the stale pointer valid
//   again; a stale handle whose buddy was reallocated is the new object; a redzone covers at
//   most 64 bytes of slack; an overflow from a slot without slack is caught only by ASan.
#include "zpool/zbud.h"
#include "zpool/zbud_pinned.h"

#include <sys/types.h>

#include <algorithm>
#include <atomic>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <new>
#include <vector>

#include "zpool/kernel/kernel.h"
#include "zpool/kernel/list.h"
#include "zpool/kernel/live_memo.h"
#include "zpool/kernel/lock.h"
#include "zpool/kernel/page.h"
#include "zpool/kernel/page_ext.h"
#include "zpool/kernel/percpu.h"
#include "zpool/kernel/percpu_ref.h"
#include "zpool/kernel/sanitizer.h"
#include "zpool/kernel/small_bytes.h"
#include "zpool/kernel/thread_annotations.h"
#include "zpool/inject.h"
#include "zpool/misuse.h"

namespace {

// ---- Geometry --------------------------------------------------------------------------------
constexpr unsigned int NCHUNKS_ORDER = 6;
constexpr unsigned int CHUNK_SHIFT = PAGE_SHIFT - NCHUNKS_ORDER;
constexpr unsigned long CHUNK_SIZE = 1UL << CHUNK_SHIFT;
constexpr unsigned int NCHUNKS = PAGE_SIZE >> CHUNK_SHIFT;
constexpr unsigned long ZHDR_SIZE_ALIGNED = CHUNK_SIZE;
constexpr size_t kMaxAllocSize = PAGE_SIZE - ZHDR_SIZE_ALIGNED - CHUNK_SIZE;
static_assert(NCHUNKS == 64 && NCHUNKS < 256, "chunk counts are stored in a u8");

// Redzone: at most this many bytes of slack right after the object.
constexpr size_t kRedzoneMax = 64;
static_assert(kRedzoneMax <= kc::kSmallBytesMax, "kc::SmallCopy/SmallEqual take the redzone");

// Maps are tracked (under the lock) when checks are on, and under ASan for the poisoning.
constexpr bool kTrackMaps = ZPOOL_CHECKS || kc::kAsan;

enum Buddy : u8 { FIRST = 0, LAST = 1, NO_BUDDY = 2 };
const char *BuddyName(Buddy bud) { return bud == FIRST ? "first" : "last"; }

unsigned int size_to_chunks(size_t size) {
  return static_cast<unsigned int>((size + CHUNK_SIZE - 1) >> CHUNK_SHIFT);
}
size_t SlotBytes(size_t size) { return static_cast<size_t>(size_to_chunks(size)) << CHUNK_SHIFT; }

// ---- Page header ------------------------------------------------------------------------------
struct BuddyList;  // tag: unbuddied[i] or buddied
struct LruList;    // tag: the pool's LRU

struct zbud_header : kc::ListNode<BuddyList>, kc::ListNode<LruList> {
  u8 first_chunks = 0;  // 0: the first buddy is free
  u8 last_chunks = 0;   // 0: the last buddy is free
  bool under_reclaim = false;
  // Hardening (all under the pool lock).
  Buddy evicting = NO_BUDDY;  // the buddy whose evict callback runs (while under_reclaim)
  u8 last_freed_chunks = 0;   // chunks of the last buddy freed most recently (double-free)
  pid_t reclaimer = 0;        // thread running zbud_reclaim_page() on this page
};
static_assert(sizeof(zbud_header) <= ZHDR_SIZE_ALIGNED, "the zbud header must fit one chunk");
static_assert(sizeof(zbud_header) % 8 == 0, "ASan poisons the header in whole granules");

// ---- Page extension -------------------------------------------------------------------------
// What map and unmap check on every call lives in the page's page_ext, not in the header: the
// entries are dense, so they stay in the cache, where the header of a last buddy (at the other
// end of the page) and the struct page would each be a miss. zbud's use of it:
//   owner           the pool (set when the page joins it; reset by __free_page())
//   word[FIRST], word[LAST]
//                   the buddy's map state: kAllocated | maps outstanding. kAllocated is set and
//                   cleared under the lock (alloc; free and destroy clear it with a CAS that
//                   requires no maps); the map count changes without it (outside ASan builds)
//   word[kSizeWord + FIRST], word[kSizeWord + LAST]
//                   the requested size; 0: free (kept while under reclaim). Written under the
//                   lock, read without it only by the holder of a map (which pins it)
constexpr u32 kAllocated = 1u << 31;
constexpr u32 kMapsMask = kAllocated - 1;
constexpr unsigned int kSizeWord = 2;
static_assert(std::atomic<u32>::is_always_lock_free);

// The fields, from the extension (the lock-free paths have only that) or from the header.
const void *OwnerOf(const struct page_ext *ext) {
  return ext->owner.load(std::memory_order_relaxed);
}
std::atomic<u32> &MapState(struct page_ext *ext, Buddy bud) { return ext->word[bud]; }
u32 Size(const struct page_ext *ext, Buddy bud) {
  return ext->word[kSizeWord + bud].load(std::memory_order_relaxed);
}

struct page_ext *ExtOf(const zbud_header *zhdr) { return page_ext_of(zhdr); }
const void *OwnerOf(const zbud_header *zhdr) { return OwnerOf(ExtOf(zhdr)); }
void SetOwner(const zbud_header *zhdr, const void *pool) {
  ExtOf(zhdr)->owner.store(pool, std::memory_order_relaxed);
}
std::atomic<u32> &MapState(const zbud_header *zhdr, Buddy bud) {
  return MapState(ExtOf(zhdr), bud);
}
u32 Size(const zbud_header *zhdr, Buddy bud) { return Size(ExtOf(zhdr), bud); }
void SetSize(const zbud_header *zhdr, Buddy bud, u32 size) {
  ExtOf(zhdr)->word[kSizeWord + bud].store(size, std::memory_order_relaxed);
}

using BuddyListT = kc::IntrusiveList<zbud_header, BuddyList>;
using LruListT = kc::IntrusiveList<zbud_header, LruList>;

u32 Maps(const zbud_header *zhdr, Buddy bud) {
  return MapState(zhdr, bud).load(std::memory_order_acquire) & kMapsMask;
}

u8 Chunks(const zbud_header *zhdr, Buddy bud) {
  return bud == FIRST ? zhdr->first_chunks : zhdr->last_chunks;
}
void SetChunks(zbud_header *zhdr, Buddy bud, unsigned int chunks) {
  (bud == FIRST ? zhdr->first_chunks : zhdr->last_chunks) = static_cast<u8>(chunks);
}

int num_free_chunks(const zbud_header *zhdr) {
  // Free buddies count 0 chunks; the -1 is the header's chunk.
  return static_cast<int>(NCHUNKS) - zhdr->first_chunks - zhdr->last_chunks - 1;
}

unsigned long encode_handle(const zbud_header *zhdr, Buddy bud) {
  unsigned long handle = reinterpret_cast<unsigned long>(zhdr);
  if (bud == FIRST)
    handle += ZHDR_SIZE_ALIGNED;
  else
    handle += PAGE_SIZE - (static_cast<unsigned long>(zhdr->last_chunks) << CHUNK_SHIFT);
  return handle;
}

zbud_header *handle_to_zbud_header(unsigned long handle) {
  return reinterpret_cast<zbud_header *>(handle & PAGE_MASK);
}

// ---- ASan views of the header -------------------------------------------------------------------
// The header is poisoned at rest. HeaderAccess unpoisons one whole header for the scope (at most
// one per header at a time, and only while the pool lock is held: two threads never race on one
// header's shadow). NodeAccess unpoisons just one list node of a neighbouring page, around a list
// operation that writes it; a node inside the pool struct (a list head) is never poisoned.
class HeaderAccess {
 public:
  explicit HeaderAccess(zbud_header *zhdr) : zhdr_(zhdr) { kc::asan_unpoison(zhdr_, sizeof *zhdr_); }
  ~HeaderAccess() { release(); }
  HeaderAccess(const HeaderAccess &) = delete;
  HeaderAccess &operator=(const HeaderAccess &) = delete;
  // Ends the access early (before the page is freed).
  void release() {
    if (zhdr_ != nullptr) kc::asan_poison(zhdr_, sizeof *zhdr_);
    zhdr_ = nullptr;
  }

 private:
  zbud_header *zhdr_;
};

}  // namespace

// ---- The pool ---------------------------------------------------------------------------------
namespace {
constinit kc::LockClass zbud_pool_lock_class("zbud_pool.lock");
}  // namespace

struct zbud_pool {
  explicit zbud_pool(const struct zbud_ops *pool_ops) : ops(pool_ops) {}

  spinlock_t lock{zbud_pool_lock_class};
  BuddyListT unbuddied[NCHUNKS] KC_GUARDED_BY(lock);
  BuddyListT buddied KC_GUARDED_BY(lock);
  LruListT lru KC_GUARDED_BY(lock);
  std::atomic<u64> pages_nr{0};  // written under lock
  const struct zbud_ops *ops;

  // Hardening.
  // Calls in flight: in the pool cache's slot (PoolRef()), which outlives the pool.
  std::atomic<bool> destroying{false};        // a zbud_destroy_pool() is running
  unsigned long objects KC_GUARDED_BY(lock) = 0;     // allocated buddies
  unsigned long reclaiming KC_GUARDED_BY(lock) = 0;  // pages under reclaim
};

namespace {

kmem_cache *PoolCache() {
  static kmem_cache *const cache = kc::kmem_cache_create_typesafe(
      "zbud_pool", sizeof(struct zbud_pool), alignof(struct zbud_pool));
  return cache;
}
// The calls in flight on a pool. REQUIRES: pool is a slot of PoolCache() (live or freed).
kc::PercpuRef &PoolRef(const zbud_pool *pool) {
  return *kc::kmem_cache_slot_ref(PoolCache(), pool);
}
// Pools are freed through this count: a thread's memo of the pool it proved live last
// (kc::LiveMemo) then answers PoolCall's check without the cache lookup until some pool is freed.
constinit kc::FreeCount g_pools_freed;
constinit thread_local kc::LiveMemo t_live_pool;

bool InPool(const zbud_pool *pool, const void *p) {
  auto a = reinterpret_cast<uintptr_t>(p);
  return a >= reinterpret_cast<uintptr_t>(pool) && a < reinterpret_cast<uintptr_t>(pool + 1);
}

template <class Tag>
class NodeAccess {
 public:
  NodeAccess(const zbud_pool *pool, kc::ListNode<Tag> *node)
      : node_(kc::kAsan && node != nullptr && !InPool(pool, node) ? node : nullptr) {
    if (node_ != nullptr) kc::asan_unpoison(node_, sizeof *node_);
  }
  ~NodeAccess() {
    if (node_ != nullptr) kc::asan_poison(node_, sizeof *node_);
  }
  NodeAccess(const NodeAccess &) = delete;
  NodeAccess &operator=(const NodeAccess &) = delete;

 private:
  kc::ListNode<Tag> *node_;
};

// List operations on headers. REQUIRES: the pool lock, and a HeaderAccess on zhdr.
template <class Tag>
void ListRemove(zbud_pool *pool, kc::IntrusiveList<zbud_header, Tag> &list, zbud_header *zhdr) {
  kc::ListNode<Tag> *node = zhdr;
  NodeAccess<Tag> prev(pool, node->prev_);
  NodeAccess<Tag> next(pool, node->next_);
  list.remove(zhdr);
}

template <class Tag>
void ListPushFront(zbud_pool *pool, kc::IntrusiveList<zbud_header, Tag> &list,
                   zbud_header *zhdr) {
  zbud_header *old = list.front();
  NodeAccess<Tag> front(pool, old);
  list.push_front(zhdr);
}

// The buddy list a listed page is on. REQUIRES: HeaderAccess on zhdr, the page not under
// reclaim, at least one buddy allocated.
BuddyListT &BuddyListOf(zbud_pool *pool, const zbud_header *zhdr) KC_REQUIRES(pool->lock) {
  if (zhdr->first_chunks != 0 && zhdr->last_chunks != 0) return pool->buddied;
  return pool->unbuddied[num_free_chunks(zhdr)];
}

// Puts a page with at least one buddy on its buddy list. REQUIRES: HeaderAccess on zhdr.
void ListByFreeChunks(zbud_pool *pool, zbud_header *zhdr) KC_REQUIRES(pool->lock) {
  ListPushFront(pool, BuddyListOf(pool, zhdr), zhdr);
}

// Calls fn(zhdr) for each page of a list, front to back, with a HeaderAccess on it. Returns
// false if the list is malformed (more nodes than its size, or a node outside any page).
template <class Tag, class Fn>
bool WalkList(zbud_pool *pool, const kc::IntrusiveList<zbud_header, Tag> &list, Fn &&fn)
    KC_REQUIRES(pool->lock) {
  zbud_header *zhdr = list.front();
  size_t seen = 0;
  while (zhdr != nullptr) {
    if (++seen > list.size() || virt_to_page(zhdr) == nullptr) return false;
    kc::ListNode<Tag> *next;
    {
      HeaderAccess access(zhdr);
      fn(zhdr);
      next = static_cast<kc::ListNode<Tag> *>(zhdr)->next_;
    }
    zhdr = (next == nullptr || InPool(pool, next)) ? nullptr : static_cast<zbud_header *>(next);
  }
  return seen == list.size();
}

// ---- Object memory: redzone, sanitizer state ---------------------------------------------------
constexpr u8 RedzoneByte(size_t i) {
  return static_cast<u8>(0xa5u ^ static_cast<unsigned>(i * 0x3du));
}

// The whole pattern, for the plain builds' memcpy/memcmp.
struct RedzonePattern {
  u8 bytes[kRedzoneMax];
  constexpr RedzonePattern() : bytes() {
    for (size_t i = 0; i < kRedzoneMax; i++) bytes[i] = RedzoneByte(i);
  }
};
constexpr RedzonePattern kRedzonePattern;

size_t RedzoneLen(size_t size) { return std::min(SlotBytes(size) - size, kRedzoneMax); }

// The redzone is poisoned under ASan: these helpers are not instrumented by it, and in sanitizer
// builds use volatile accesses, which the compiler cannot turn into an intercepted memset/memcmp.
// Plain builds write and compare it with kc::SmallCopy / kc::SmallEqual, inline.
constexpr bool kPlainBuild = !kc::kAsan && !kc::kMsan && !kc::kTsan;

__attribute__((no_sanitize("address"))) void WriteRedzone(char *obj, size_t size) {
  const size_t n = RedzoneLen(size);
  if constexpr (kPlainBuild) {
    kc::SmallCopy(obj + size, kRedzonePattern.bytes, n);
    return;
  }
  volatile u8 *rz = reinterpret_cast<volatile u8 *>(obj + size);
  for (size_t i = 0; i < n; i++) rz[i] = RedzoneByte(i);
}

// Plain builds only: does the redzone hold the pattern? Inline, with no branch on the length
// (kc::SmallEqual): the lock-free unmap runs it on every last unmap.
[[maybe_unused]] bool PatternIntact(const char *obj, size_t size) {
  return kc::SmallEqual(obj + size, kRedzonePattern.bytes, RedzoneLen(size));
}

// Offset (from the object's start) of the first redzone byte overwritten, or 0 if intact.
__attribute__((no_sanitize("address", "memory"))) size_t RedzoneDamage(const char *obj,
                                                                       size_t size) {
  if constexpr (kPlainBuild) {
    if (PatternIntact(obj, size)) return 0;
  }
  const size_t n = RedzoneLen(size);
  const volatile u8 *rz = reinterpret_cast<const volatile u8 *>(obj + size);
  for (size_t i = 0; i < n; i++)
    if (rz[i] != RedzoneByte(i)) return size + i;
  return 0;
}

bool RedzoneIntact(const char *obj, size_t size) {
  if constexpr (kPlainBuild) return PatternIntact(obj, size);
  return RedzoneDamage(obj, size) == 0;
}

char *BuddyAddress(const zbud_header *zhdr, Buddy bud) {
  return reinterpret_cast<char *>(encode_handle(zhdr, bud));
}

// A new object: uninitialised for MSan (or zeroed), redzone written, poisoned for ASan.
void InitObject(char *obj, size_t size, gfp_t gfp) {
  size_t slot = SlotBytes(size);
  if (gfp & __GFP_ZERO) {
    kc::asan_unpoison(obj, size);
    memset(obj, 0, size);
  } else {
    kc::msan_mark_uninitialized(obj, size);
  }
  if (ZPOOL_CHECKS) WriteRedzone(obj, size);
  kc::asan_poison(obj, slot);
}

// ---- Handle lookup --------------------------------------------------------------------------------
enum class HandleState {
  kLive,     // an allocated buddy of this pool
  kGrace,    // freed, but being evicted by this thread: may still be mapped (see the top)
  kFree,     // returned by this pool, free now
  kInvalid,  // never returned by this pool
};

struct HandleInfo {
  HandleState state;
  zbud_header *zhdr;
  Buddy bud;
  const char *why;  // for kFree / kInvalid reports
};

bool HandleShaped(unsigned long offset) {
  return offset == ZHDR_SIZE_ALIGNED ||
         (offset % CHUNK_SIZE == 0 && offset >= ZHDR_SIZE_ALIGNED + CHUNK_SIZE);
}

// Classifies a handle in O(1) without touching memory that is not a header of this pool.
// REQUIRES: the pool lock.
HandleInfo LookupHandle(zbud_pool *pool, unsigned long handle) KC_REQUIRES(pool->lock) {
  zbud_header *zhdr = handle_to_zbud_header(handle);
  Buddy bud = ((handle - ZHDR_SIZE_ALIGNED) & ~PAGE_MASK) ? LAST : FIRST;
  if (!ZPOOL_CHECKS) return {HandleState::kLive, zhdr, bud, nullptr};

  const struct page *page = virt_to_page(reinterpret_cast<const void *>(handle));
  unsigned long offset = handle & ~PAGE_MASK;
  if (page == nullptr) return {HandleState::kInvalid, nullptr, bud, "not an address in any page"};
  if (OwnerOf(zhdr) != pool) {
    if (!kc::PageIsAllocated(page) && HandleShaped(offset))
      return {HandleState::kFree, nullptr, bud,
              "its page has been freed already (double free, or a stale handle?)"};
    return {HandleState::kInvalid, nullptr, bud,
            "its page belongs to another pool or allocator (garbage, or another pool's handle?)"};
  }
  if (!HandleShaped(offset))
    return {HandleState::kInvalid, nullptr, bud,
            offset < ZHDR_SIZE_ALIGNED ? "it points into the page header"
                                       : "it is not the start of a buddy"};
  HeaderAccess access(zhdr);
  if (bud == FIRST) {
    if (zhdr->first_chunks != 0) return {HandleState::kLive, zhdr, bud, nullptr};
  } else {
    if (zhdr->last_chunks != 0) {
      if (handle == encode_handle(zhdr, LAST)) return {HandleState::kLive, zhdr, bud, nullptr};
      return {HandleState::kInvalid, nullptr, bud, "it is not the start of a buddy"};
    }
    if (offset != PAGE_SIZE - (static_cast<unsigned long>(zhdr->last_freed_chunks) << CHUNK_SHIFT))
      return {HandleState::kInvalid, nullptr, bud, "it is not the start of a buddy"};
  }
  // The buddy is free. The evicting thread may still map the handle it was given.
  if (zhdr->under_reclaim && zhdr->evicting == bud && Size(zhdr, bud) != 0 &&
      zhdr->reclaimer == kc::CurrentTid() &&
      (bud == FIRST || offset == PAGE_SIZE - SlotBytes(Size(zhdr, bud))))
    return {HandleState::kGrace, zhdr, bud, nullptr};
  return {HandleState::kFree, zhdr, bud,
          bud == FIRST ? "the first buddy is free" : "the last buddy is free"};
}

void FreeZbudPage(zbud_pool *pool, zbud_header *zhdr) KC_REQUIRES(pool->lock) {
  __free_page(virt_to_page(zhdr));
  pool->pages_nr.fetch_sub(1, std::memory_order_relaxed);
}

// At the end of a reclaim try: forget the sizes of buddies freed meanwhile and drop maps of
// them the evict callback left behind. Returns the maps dropped. REQUIRES: HeaderAccess.
unsigned long EndReclaimOfFreedBuddies(zbud_pool *pool, zbud_header *zhdr)
    KC_REQUIRES(pool->lock) {
  unsigned long dropped = 0;
  for (Buddy bud : {FIRST, LAST}) {
    if (Chunks(zhdr, bud) != 0 || Size(zhdr, bud) == 0) continue;
    if (u32 maps = Maps(zhdr, bud)) {
      char *obj = bud == FIRST ? reinterpret_cast<char *>(zhdr) + ZHDR_SIZE_ALIGNED
                               : reinterpret_cast<char *>(zhdr) + PAGE_SIZE -
                                     SlotBytes(Size(zhdr, bud));
      kc::asan_poison(obj, SlotBytes(Size(zhdr, bud)));
      dropped += maps;
    }
    MapState(zhdr, bud).store(0, std::memory_order_release);
    SetSize(zhdr, bud, 0);
  }
  return dropped;
}

// Frees every page of the pool (destroy). REQUIRES: no page under reclaim.
void FreeAllPages(zbud_pool *pool) KC_REQUIRES(pool->lock) {
  while (zbud_header *zhdr = pool->lru.back()) {
    HeaderAccess access(zhdr);
    ListRemove(pool, pool->lru, zhdr);
    ListRemove(pool, BuddyListOf(pool, zhdr), zhdr);
    access.release();
    FreeZbudPage(pool, zhdr);
  }
  pool->objects = 0;
}

// Destroy's guard against maps: clears kAllocated of every allocated buddy with a CAS that
// requires no maps, so that no lock-free map can start after it (it takes the locked path and
// finds the pool dying). Returns the maps outstanding; if there are any, nothing is sealed.
// REQUIRES: no call in flight (so no page under reclaim).
unsigned long SealBuddies(zbud_pool *pool) KC_REQUIRES(pool->lock) {
  unsigned long maps = 0;
  WalkList(pool, pool->lru, [&](const zbud_header *zhdr) {
    for (Buddy bud : {FIRST, LAST}) {
      u32 state = kAllocated;
      if (Chunks(zhdr, bud) != 0 &&
          !MapState(zhdr, bud).compare_exchange_strong(state, 0, std::memory_order_acq_rel))
        maps += state & kMapsMask;
    }
  });
  if (maps != 0) {
    WalkList(pool, pool->lru, [&](const zbud_header *zhdr) {
      for (Buddy bud : {FIRST, LAST}) {
        u32 state = 0;
        if (Chunks(zhdr, bud) != 0)
          MapState(zhdr, bud).compare_exchange_strong(state, kAllocated,
                                                      std::memory_order_acq_rel);
      }
    });
  }
  return maps;
}

// ---- Lock-free map and unmap (builds without ASan) ------------------------------------------
// Neither takes the lock nor registers a call in flight: they read only the page extension
// (cache resident, see above) and the object itself. A buddy whose map state holds kAllocated is
// an allocated buddy of the page's owner, and the pool cannot be destroyed under a map: free and
// destroy clear kAllocated only with a CAS that requires no maps. So a map that counts itself in
// with a CAS requiring kAllocated either came first (free is refused: free-mapped; destroy is
// refused: destroy-busy) or fails and takes the locked path, which reports whatever is wrong
// (a destroyed pool, a free buddy, a garbage handle). Everything else about the handle is
// checked once the count pins the buddy.

// The extension and buddy of a handle-shaped address in a page of this pool, or nullptr.
struct page_ext *BuddyExtFast(const zbud_pool *pool, unsigned long handle, Buddy *bud) {
  struct page_ext *ext = page_ext_of(reinterpret_cast<const void *>(handle));
  if (ext == nullptr || OwnerOf(ext) != pool) return nullptr;
  const unsigned long offset = handle & ~PAGE_MASK;
  if (offset == ZHDR_SIZE_ALIGNED) {
    *bud = FIRST;
    return ext;
  }
  if (offset % CHUNK_SIZE != 0 || offset < ZHDR_SIZE_ALIGNED + CHUNK_SIZE) return nullptr;
  *bud = LAST;
  return ext;
}

// With a map held, the buddy's size is stable: is `handle` where that buddy starts? (A last
// buddy's start moves with its size; the first buddy's never does.)
bool AtBuddyStart(const struct page_ext *ext, unsigned long handle, Buddy bud) {
  return bud == FIRST || (handle & ~PAGE_MASK) == PAGE_SIZE - SlotBytes(Size(ext, LAST));
}

// One more map of a live buddy. False: take the locked path (nothing changed).
bool MapFast(const zbud_pool *pool, unsigned long handle) {
  Buddy bud;
  struct page_ext *ext = BuddyExtFast(pool, handle, &bud);
  if (ext == nullptr) return false;
  // Checked before counting too, so that a map of a garbage offset inside a last buddy does not
  // hold off a legitimate free of that buddy, even briefly.
  if (!AtBuddyStart(ext, handle, bud)) return false;
  std::atomic<u32> &state = MapState(ext, bud);
  kc::sched_atomic(&state);  // the map count that holds off a free
  u32 s = state.load(std::memory_order_relaxed);
  do {
    if (!(s & kAllocated) || (s & kMapsMask) == kMapsMask) return false;
  } while (!state.compare_exchange_weak(s, s + 1, std::memory_order_acq_rel,
                                        std::memory_order_relaxed));
  // The map pins the buddy. A racing free and reuse of the buddy or the page may have changed
  // its size or owner since the checks (only a misusing caller races with a free of its handle).
  if (!AtBuddyStart(ext, handle, bud) || OwnerOf(ext) != pool) {
    state.fetch_sub(1, std::memory_order_acq_rel);  // not this buddy's map after all
    return false;
  }
  return true;
}

// Is `handle` a mapped buddy of this pool (allocated, or in its evict grace)? Such a map pins
// the pool: destroy refuses while any map is outstanding. No lock; a stale answer is possible
// only for a handle that the caller does not hold mapped (a misuse racing with its own unmap).
bool MapHeld(const zbud_pool *pool, unsigned long handle) {
  Buddy bud;
  struct page_ext *ext = BuddyExtFast(pool, handle, &bud);
  return ext != nullptr && (MapState(ext, bud).load(std::memory_order_acquire) & kMapsMask) != 0 &&
         AtBuddyStart(ext, handle, bud);
}

// One map fewer of a live, mapped buddy whose redzone is intact if this is its last map. False:
// take the locked path, nothing changed (it also reports and repairs a damaged redzone).
// Everything is read BEFORE the count drops: once it has, a free of the object or a destroy of
// the pool may proceed, and neither the page nor the pool may be touched again.
bool UnmapFast(const zbud_pool *pool, unsigned long handle) {
  Buddy bud;
  struct page_ext *ext = BuddyExtFast(pool, handle, &bud);
  if (ext == nullptr) return false;
  std::atomic<u32> &state = MapState(ext, bud);
  kc::sched_atomic(&state);
  u32 s = state.load(std::memory_order_acquire);
  // A mapped buddy (ours: the count pins it) at this handle's offset, or the locked path.
  if (!(s & kAllocated) || (s & kMapsMask) == 0 || !AtBuddyStart(ext, handle, bud)) return false;
  const u32 size = Size(ext, bud);
  do {
    if (!(s & kAllocated) || (s & kMapsMask) == 0) return false;
    if (ZPOOL_CHECKS && (s & kMapsMask) == 1 &&
        !RedzoneIntact(reinterpret_cast<char *>(handle), size))
      return false;
  } while (!state.compare_exchange_weak(s, s - 1, std::memory_order_acq_rel,
                                        std::memory_order_acquire));
  return true;
}

const char *const kUseAfterDestroy =
    "the pool is destroyed or being destroyed (a call after or during zbud_destroy_pool()?)";

// Entry of every call: is the pool live? Registers the call as in flight for the scope.
class PoolCall {
 public:
  // pinned: the caller holds a map of the pool (MapHeld()), or is zpool's driver inside a zpool
  // call (zbud_pinned.h); either proves the pool live and holds off its destruction: nothing to
  // check or register.
  explicit PoolCall(zbud_pool *pool, bool pinned = false) : pool_(pool) {
    if (!ZPOOL_CHECKS || pinned) return;
    live_ = t_live_pool.Owns(PoolCache(), g_pools_freed, pool) && PoolRef(pool).enter();
    entered_ = live_;
  }
  ~PoolCall() {
    if (entered_) PoolRef(pool_).exit();
  }
  PoolCall(const PoolCall &) = delete;
  PoolCall &operator=(const PoolCall &) = delete;
  bool live() const { return live_; }

 private:
  zbud_pool *pool_;
  bool live_ = true;
  bool entered_ = false;
};

}  // namespace

// ---- API --------------------------------------------------------------------------------------

struct zbud_pool *zbud_create_pool(gfp_t gfp, const struct zbud_ops *ops) {
  if (ZPOOL_CHECKS && gfpflags_allow_blocking(gfp) && kc_in_atomic()) {
    ZPOOL_MISUSE(ZPOOL_MISUSE_SLEEP_WHILE_MAPPED,
                 "zbud_create_pool(%#x): may sleep, but this thread is in atomic context "
                 "(preempt_count %d: holding a mapping or a spinlock?); allocating without "
                 "direct reclaim",
                 gfp, preempt_count());
    gfp &= ~__GFP_DIRECT_RECLAIM;
  }
  kmem_cache *cache = PoolCache();
  if (cache == nullptr) return nullptr;
  void *mem = kmem_cache_alloc(cache, gfp & ~__GFP_ZERO);
  if (mem == nullptr) return nullptr;
  auto *pool = new (mem) zbud_pool(ops);
  PoolRef(pool).abort_destroy();  // the slot's count was left dying by the pool freed from it
  return pool;
}

void zbud_destroy_pool(struct zbud_pool *pool) {
  if (ZPOOL_CHECKS) {
    if (!kmem_cache_owns(PoolCache(), pool)) {
      ZPOOL_MISUSE(ZPOOL_MISUSE_USE_AFTER_DESTROY, "zbud_destroy_pool(%p): %s",
                   static_cast<void *>(pool), kUseAfterDestroy);
      return;
    }
    if (pool->destroying.exchange(true, std::memory_order_acq_rel)) {
      ZPOOL_MISUSE(ZPOOL_MISUSE_USE_AFTER_DESTROY,
                   "zbud_destroy_pool(%p): another zbud_destroy_pool() of this pool is running "
                   "(destroyed twice?)",
                   static_cast<void *>(pool));
      return;
    }
    if (long busy = PoolRef(pool).begin_destroy()) {
      PoolRef(pool).abort_destroy();
      pool->destroying.store(false, std::memory_order_release);
      ZPOOL_MISUSE(ZPOOL_MISUSE_DESTROY_BUSY,
                   "zbud_destroy_pool(%p): %ld call(s) in flight on this pool; not destroyed "
                   "(destroy racing with a call, or called from an evict callback?)",
                   static_cast<void *>(pool), busy);
      return;
    }
    // No call is in flight now and none can start; the seal stops new lock-free maps.
    spin_lock(&pool->lock);
    unsigned long mapped = SealBuddies(pool);
    spin_unlock(&pool->lock);
    if (mapped != 0) {
      PoolRef(pool).abort_destroy();
      pool->destroying.store(false, std::memory_order_release);
      ZPOOL_MISUSE(ZPOOL_MISUSE_DESTROY_BUSY,
                   "zbud_destroy_pool(%p): %lu mapping(s) outstanding; not destroyed "
                   "(missing zbud_unmap()?)",
                   static_cast<void *>(pool), mapped);
      return;
    }
  }
  spin_lock(&pool->lock);
  unsigned long objects = pool->objects;
  unsigned long long pages = pool->pages_nr.load(std::memory_order_relaxed);
  if (objects != 0 || pages != 0) {
    if (ZPOOL_CHECKS)
      ZPOOL_MISUSE(ZPOOL_MISUSE_DESTROY_NONEMPTY,
                   "zbud_destroy_pool(%p): the pool still holds %lu object(s) in %llu page(s); "
                   "freeing them (missing zbud_free()?)",
                   static_cast<void *>(pool), objects, pages);
    FreeAllPages(pool);
  }
  spin_unlock(&pool->lock);
  pool->~zbud_pool();
  g_pools_freed.Free(PoolCache(), pool);
}

namespace {

int Alloc(struct zbud_pool *pool, size_t size, gfp_t gfp, unsigned long *handle, bool pinned) {
  PoolCall call(pool, pinned);
  if (ZPOOL_CHECKS && !call.live()) {
    ZPOOL_MISUSE(ZPOOL_MISUSE_USE_AFTER_DESTROY, "zbud_alloc(%p, %zu): %s",
                 static_cast<void *>(pool), size, kUseAfterDestroy);
    return -EINVAL;
  }
  if (size == 0 || (gfp & __GFP_HIGHMEM)) return -EINVAL;
  if (size > kMaxAllocSize) return -ENOSPC;
  if (ZPOOL_CHECKS && gfpflags_allow_blocking(gfp) && kc_in_atomic()) {
    ZPOOL_MISUSE(ZPOOL_MISUSE_SLEEP_WHILE_MAPPED,
                 "zbud_alloc(%p, %zu, %#x): may sleep, but this thread is in atomic context "
                 "(preempt_count %d: holding a mapping or a spinlock?); allocating without "
                 "direct reclaim",
                 static_cast<void *>(pool), size, gfp, preempt_count());
    gfp &= ~__GFP_DIRECT_RECLAIM;
  }
  const unsigned int chunks = size_to_chunks(size);

  spin_lock(&pool->lock);
  zbud_header *zhdr = nullptr;
  Buddy bud = FIRST;
  // First fit: the first non-empty unbuddied list with at least `chunks` free chunks.
  for (unsigned int i = chunks; i < NCHUNKS; i++) {
    if (pool->unbuddied[i].empty()) continue;
    zhdr = pool->unbuddied[i].front();
    HeaderAccess access(zhdr);
    ListRemove(pool, pool->unbuddied[i], zhdr);
    bud = zhdr->first_chunks == 0 ? FIRST : LAST;
    break;
  }
  if (zhdr == nullptr) {
    // No page fits: allocate one without the lock.
    spin_unlock(&pool->lock);
    struct page *page = alloc_page(gfp);
    if (page == nullptr) return -ENOMEM;
    spin_lock(&pool->lock);
    pool->pages_nr.fetch_add(1, std::memory_order_relaxed);
    zhdr = new (page_address(page)) zbud_header();
    SetOwner(zhdr, pool);
    // All but the header is free space now; the header is poisoned by HeaderAccess below.
    kc::asan_poison(reinterpret_cast<char *>(zhdr) + sizeof(zbud_header),
                    PAGE_SIZE - sizeof(zbud_header));
    bud = FIRST;
  }

  {
    HeaderAccess access(zhdr);
    SetChunks(zhdr, bud, chunks);
    SetSize(zhdr, bud, static_cast<u32>(size));
    MapState(zhdr, bud).store(kAllocated, std::memory_order_release);
    pool->objects++;
    ListByFreeChunks(pool, zhdr);
    // Move the page to the head of the LRU.
    if (LruListT::is_linked(zhdr)) ListRemove(pool, pool->lru, zhdr);
    ListPushFront(pool, pool->lru, zhdr);
    *handle = encode_handle(zhdr, bud);
    InitObject(BuddyAddress(zhdr, bud), size, gfp);
  }
  spin_unlock(&pool->lock);
  return 0;
}

}  // namespace

int zbud_alloc(struct zbud_pool *pool, size_t size, gfp_t gfp, unsigned long *handle) {
  return Alloc(pool, size, gfp, handle, false);
}

int zbud_alloc_pinned(struct zbud_pool *pool, size_t size, gfp_t gfp, unsigned long *handle) {
  return Alloc(pool, size, gfp, handle, true);
}

namespace {

void Free(struct zbud_pool *pool, unsigned long handle, bool pinned) {
  PoolCall call(pool, pinned);
  if (ZPOOL_CHECKS && !call.live()) {
    ZPOOL_MISUSE(ZPOOL_MISUSE_USE_AFTER_DESTROY, "zbud_free(%p, %#lx): %s",
                 static_cast<void *>(pool), handle, kUseAfterDestroy);
    return;
  }
  spin_lock(&pool->lock);
  const HandleInfo h = LookupHandle(pool, handle);
  if (h.state == HandleState::kInvalid) {
    spin_unlock(&pool->lock);
    ZPOOL_MISUSE(ZPOOL_MISUSE_INVALID_HANDLE, "zbud_free(%p, %#lx): not a handle of this pool: %s",
                 static_cast<void *>(pool), handle, h.why);
    return;
  }
  if (h.state != HandleState::kLive) {
    spin_unlock(&pool->lock);
    ZPOOL_MISUSE(ZPOOL_MISUSE_DOUBLE_FREE, "zbud_free(%p, %#lx): already free: %s (double free?)",
                 static_cast<void *>(pool), handle, h.why);
    return;
  }
  zbud_header *const zhdr = h.zhdr;
  const Buddy bud = h.bud;
  {
    HeaderAccess access(zhdr);
    // Clears kAllocated only if no map is outstanding: a concurrent zbud_map() either counted
    // first (the free is refused) or finds the buddy free.
    u32 state = kAllocated;
    kc::sched_atomic(&MapState(zhdr, bud));
    if (!MapState(zhdr, bud).compare_exchange_strong(state, 0, std::memory_order_acq_rel) &&
        ZPOOL_CHECKS) {
      ZPOOL_MISUSE(ZPOOL_MISUSE_FREE_MAPPED,
                   "zbud_free(%p, %#lx): the %s buddy is mapped (%u map(s) outstanding); not "
                   "freed (missing zbud_unmap()?)",
                   static_cast<void *>(pool), handle, BuddyName(bud), state & kMapsMask);
    } else {
      MapState(zhdr, bud).store(0, std::memory_order_release);  // (unchecked: freed anyway)
      if (ZPOOL_CHECKS) {
        if (zhdr->under_reclaim && zhdr->evicting != NO_BUDDY && zhdr->evicting != bud &&
            zhdr->reclaimer == kc::CurrentTid()) {
          ZPOOL_MISUSE(ZPOOL_MISUSE_BAD_EVICT,
                       "zbud_free(%p, %#lx): called from the evict callback of the %s buddy, "
                       "frees the %s buddy it was not given (an evict callback may free only "
                       "its own handle); freed, it will not be evicted",
                       static_cast<void *>(pool), handle, BuddyName(zhdr->evicting),
                       BuddyName(bud));
        } else if (size_t at = RedzoneDamage(BuddyAddress(zhdr, bud), Size(zhdr, bud))) {
          ZPOOL_MISUSE(ZPOOL_MISUSE_OVERFLOW,
                       "zbud_free(%p, %#lx): redzone after the %u-byte object overwritten at "
                       "offset %zu (a write past the requested size?); freed anyway",
                       static_cast<void *>(pool), handle, Size(zhdr, bud), at);
        }
      }
      // The buddy list the page is on depends on the chunk counts: find it before they change.
      BuddyListT *listed = zhdr->under_reclaim ? nullptr : &BuddyListOf(pool, zhdr);
      if (bud == LAST) zhdr->last_freed_chunks = zhdr->last_chunks;
      SetChunks(zhdr, bud, 0);
      pool->objects--;
      // Under reclaim, zbud_reclaim_page() re-lists or frees the page, and the size stays for
      // the evicting thread's grace map, unless that thread freed the handle itself.
      if (zhdr->under_reclaim && zhdr->evicting == bud && zhdr->reclaimer == kc::CurrentTid())
        SetSize(zhdr, bud, 0);
      if (!zhdr->under_reclaim || kBugUnderReclaim) {  // (injected bug: zpool/inject.h)
        SetSize(zhdr, bud, 0);
        if (listed == nullptr) listed = &BuddyListOf(pool, zhdr);
        ListRemove(pool, *listed, zhdr);
        if (zhdr->first_chunks == 0 && zhdr->last_chunks == 0) {
          ListRemove(pool, pool->lru, zhdr);
          access.release();
          FreeZbudPage(pool, zhdr);
        } else {
          ListByFreeChunks(pool, zhdr);
        }
      }
    }
  }
  spin_unlock(&pool->lock);
}

}  // namespace

void zbud_free(struct zbud_pool *pool, unsigned long handle) { Free(pool, handle, false); }

void zbud_free_pinned(struct zbud_pool *pool, unsigned long handle) { Free(pool, handle, true); }

namespace {

// The locked paths of zbud_map() and zbud_unmap(): every call under ASan, and otherwise the calls
// the lock-free paths decline, which are the misuse to report (and the evict grace). Out of line,
// so that the lock-free paths need no stack frame.
[[gnu::noinline]] void *MapLocked(struct zbud_pool *pool, unsigned long handle) {
  PoolCall call(pool);
  if (ZPOOL_CHECKS && !call.live()) {
    ZPOOL_MISUSE(ZPOOL_MISUSE_USE_AFTER_DESTROY, "zbud_map(%p, %#lx): %s",
                 static_cast<void *>(pool), handle, kUseAfterDestroy);
    return nullptr;
  }
  spin_lock(&pool->lock);
  const HandleInfo h = LookupHandle(pool, handle);
  if (h.state == HandleState::kInvalid) {
    spin_unlock(&pool->lock);
    ZPOOL_MISUSE(ZPOOL_MISUSE_INVALID_HANDLE, "zbud_map(%p, %#lx): not a handle of this pool: %s",
                 static_cast<void *>(pool), handle, h.why);
    return nullptr;
  }
  if (h.state == HandleState::kFree) {
    spin_unlock(&pool->lock);
    ZPOOL_MISUSE(ZPOOL_MISUSE_DOUBLE_FREE,
                 "zbud_map(%p, %#lx): the handle is free: %s (use after zbud_free()?)",
                 static_cast<void *>(pool), handle, h.why);
    return nullptr;
  }
  {
    // Live (kAllocated cannot change under the lock) or evict grace (freed: no kAllocated).
    HeaderAccess access(h.zhdr);
    std::atomic<u32> &state = MapState(h.zhdr, h.bud);
    BUG_ON((state.load(std::memory_order_relaxed) & kMapsMask) == kMapsMask);
    // The first map opens the object (its requested size only) to ASan.
    if ((state.fetch_add(1, std::memory_order_acq_rel) & kMapsMask) == 0)
      kc::asan_unpoison(reinterpret_cast<void *>(handle), Size(h.zhdr, h.bud));
  }
  spin_unlock(&pool->lock);
  return reinterpret_cast<void *>(handle);
}

[[gnu::noinline]] void UnmapLocked(struct zbud_pool *pool, unsigned long handle) {
  // Under ASan every unmap takes the locked path; one of a held map still needs no call
  // registration (a destroy attempt meanwhile is refused by the map; the unmap is not).
  PoolCall call(pool, kc::kAsan && MapHeld(pool, handle));
  if (ZPOOL_CHECKS && !call.live()) {
    ZPOOL_MISUSE(ZPOOL_MISUSE_USE_AFTER_DESTROY, "zbud_unmap(%p, %#lx): %s",
                 static_cast<void *>(pool), handle, kUseAfterDestroy);
    return;
  }

  spin_lock(&pool->lock);
  const HandleInfo h = LookupHandle(pool, handle);
  if (h.state == HandleState::kInvalid) {
    spin_unlock(&pool->lock);
    ZPOOL_MISUSE(ZPOOL_MISUSE_INVALID_HANDLE,
                 "zbud_unmap(%p, %#lx): not a handle of this pool: %s",
                 static_cast<void *>(pool), handle, h.why);
    return;
  }
  if (h.state == HandleState::kFree) {
    spin_unlock(&pool->lock);
    ZPOOL_MISUSE(ZPOOL_MISUSE_DOUBLE_FREE,
                 "zbud_unmap(%p, %#lx): the handle is free: %s (use after zbud_free()?)",
                 static_cast<void *>(pool), handle, h.why);
    return;
  }
  {
    HeaderAccess access(h.zhdr);
    std::atomic<u32> &state = MapState(h.zhdr, h.bud);
    // Lock-free maps may change the count meanwhile: decrement with a CAS that keeps it >= 0.
    u32 s = state.load(std::memory_order_relaxed);
    while ((s & kMapsMask) != 0 &&
           !state.compare_exchange_weak(s, s - 1, std::memory_order_acq_rel,
                                        std::memory_order_relaxed)) {
    }
    if ((s & kMapsMask) == 0) {
      if (ZPOOL_CHECKS)
        ZPOOL_MISUSE(ZPOOL_MISUSE_BAD_UNMAP,
                     "zbud_unmap(%p, %#lx): the %s buddy is not mapped (unbalanced "
                     "zbud_unmap(), or an unmap of another handle than the one mapped?)",
                     static_cast<void *>(pool), handle, BuddyName(h.bud));
    } else if ((s & kMapsMask) == 1) {
      // The last map ended: check the redzone, close the object to ASan.
      char *obj = reinterpret_cast<char *>(handle);
      const u32 size = Size(h.zhdr, h.bud);
      if (ZPOOL_CHECKS && h.state == HandleState::kLive) {
        if (size_t at = RedzoneDamage(obj, size)) {
          ZPOOL_MISUSE(ZPOOL_MISUSE_OVERFLOW,
                       "zbud_unmap(%p, %#lx): redzone after the %u-byte object overwritten at "
                       "offset %zu (a write past the requested size?)",
                       static_cast<void *>(pool), handle, size, at);
          WriteRedzone(obj, size);
        }
      }
      kc::asan_poison(obj, SlotBytes(size));
    }
  }
  spin_unlock(&pool->lock);
}

}  // namespace

void *zbud_map(struct zbud_pool *pool, unsigned long handle) {
  if (!kTrackMaps) return reinterpret_cast<void *>(handle);
  // Without ASan, a live handle is mapped without the lock (see MapFast). Under ASan the first
  // map unpoisons the object, which must be ordered with the count: the lock does it.
  if (!kc::kAsan && MapFast(pool, handle)) return reinterpret_cast<void *>(handle);
  return MapLocked(pool, handle);
}

void zbud_unmap(struct zbud_pool *pool, unsigned long handle) {
  if (!kTrackMaps) return;
  // A mapped handle of a live pool: the fast path (see UnmapFast: the mapping pins the pool).
  if (!kc::kAsan && UnmapFast(pool, handle)) return;
  UnmapLocked(pool, handle);
}

int zbud_reclaim_page(struct zbud_pool *pool, unsigned int retries) {
  PoolCall call(pool);
  if (ZPOOL_CHECKS && !call.live()) {
    ZPOOL_MISUSE(ZPOOL_MISUSE_USE_AFTER_DESTROY, "zbud_reclaim_page(%p, %u): %s",
                 static_cast<void *>(pool), retries, kUseAfterDestroy);
    return -EINVAL;
  }
  const bool atomic = kc_in_atomic();  // before our own lock makes it so
  spin_lock(&pool->lock);
  if (pool->ops == nullptr || pool->ops->evict == nullptr || pool->lru.empty() || retries == 0) {
    spin_unlock(&pool->lock);
    return -EINVAL;
  }
  if (ZPOOL_CHECKS && atomic) {
    spin_unlock(&pool->lock);
    ZPOOL_MISUSE(ZPOOL_MISUSE_SLEEP_WHILE_MAPPED,
                 "zbud_reclaim_page(%p, %u): evict callbacks may sleep, but this thread is in "
                 "atomic context (preempt_count %d: holding a mapping or a spinlock?); not "
                 "reclaiming",
                 static_cast<void *>(pool), retries, preempt_count());
    return -EAGAIN;
  }
  const pid_t me = ZPOOL_CHECKS ? kc::CurrentTid() : 0;
  for (unsigned int i = 0; i < retries; i++) {
    zbud_header *const zhdr = pool->lru.back();
    unsigned long first_handle = 0, last_handle = 0;
    {
      HeaderAccess access(zhdr);
      ListRemove(pool, pool->lru, zhdr);
      ListRemove(pool, BuddyListOf(pool, zhdr), zhdr);
      zhdr->under_reclaim = true;
      pool->reclaiming++;
      // Protect the handles: computed while the lock still pins the chunk counts.
      if (zhdr->first_chunks) first_handle = encode_handle(zhdr, FIRST);
      if (zhdr->last_chunks) last_handle = encode_handle(zhdr, LAST);
      zhdr->reclaimer = me;
      zhdr->evicting = first_handle ? FIRST : LAST;
    }
    spin_unlock(&pool->lock);

    int ret = 0;
    unsigned long unfreed = 0;  // a handle whose evict returned 0 but is still allocated
    bool evicted_last = false;
    if (first_handle) {
      ret = pool->ops->evict(pool, first_handle);
      if (ZPOOL_CHECKS) {
        spin_lock(&pool->lock);
        {
          HeaderAccess access(zhdr);
          if (ret == 0 && zhdr->first_chunks != 0) unfreed = first_handle;
          // Freed meanwhile (by another thread, or by the callback: reported by zbud_free()):
          // there is nothing left to evict.
          if (zhdr->last_chunks == 0) last_handle = 0;
          zhdr->evicting = LAST;
        }
        spin_unlock(&pool->lock);
      }
    }
    if (ret == 0 && unfreed == 0 && last_handle) {
      ret = pool->ops->evict(pool, last_handle);
      evicted_last = true;
    }

    spin_lock(&pool->lock);
    bool page_freed = false;
    unsigned long maps_dropped = 0;
    {
      HeaderAccess access(zhdr);
      if (ZPOOL_CHECKS && evicted_last && ret == 0 && zhdr->last_chunks != 0)
        unfreed = last_handle;
      maps_dropped = EndReclaimOfFreedBuddies(pool, zhdr);
      zhdr->under_reclaim = false;
      zhdr->evicting = NO_BUDDY;
      zhdr->reclaimer = 0;
      pool->reclaiming--;
      bool both_free = zhdr->first_chunks == 0 && zhdr->last_chunks == 0;
      if (kBugReclaimRecheck) {  // injected bug (zpool/inject.h): decided, then acted on later
        spin_unlock(&pool->lock);
        kc::sched_gap(&pool->lock);
        spin_lock(&pool->lock);
      }
      if (both_free) {
        access.release();
        FreeZbudPage(pool, zhdr);
        page_freed = true;
      } else {
        // Not reclaimed: back on its buddy list, and at the LRU head.
        ListByFreeChunks(pool, zhdr);
        ListPushFront(pool, pool->lru, zhdr);
      }
    }
    if (ZPOOL_CHECKS && unfreed != 0) {
      // One misuse per call: a broken callback is not retried.
      spin_unlock(&pool->lock);
      ZPOOL_MISUSE(ZPOOL_MISUSE_BAD_EVICT,
                   "zbud_reclaim_page(%p): evict(%#lx) returned 0 but the handle is still "
                   "allocated (an evict callback must zbud_free() its handle before returning "
                   "0); page kept",
                   static_cast<void *>(pool), unfreed);
      return -EAGAIN;
    }
    if (ZPOOL_CHECKS && maps_dropped != 0) {
      spin_unlock(&pool->lock);
      ZPOOL_MISUSE(ZPOOL_MISUSE_BAD_EVICT,
                   "zbud_reclaim_page(%p): the evict callback returned with %lu map(s) of a "
                   "freed handle outstanding (missing zbud_unmap()?); dropped",
                   static_cast<void *>(pool), maps_dropped);
      return page_freed ? 0 : -EAGAIN;
    }
    if (page_freed) {
      spin_unlock(&pool->lock);
      return 0;
    }
  }
  spin_unlock(&pool->lock);
  return -EAGAIN;
}

u64 zbud_get_pool_size(struct zbud_pool *pool) {
  PoolCall call(pool);
  if (ZPOOL_CHECKS && !call.live()) {
    ZPOOL_MISUSE(ZPOOL_MISUSE_USE_AFTER_DESTROY, "zbud_get_pool_size(%p): %s",
                 static_cast<void *>(pool), kUseAfterDestroy);
    return 0;
  }
  return pool->pages_nr.load(std::memory_order_relaxed);
}

size_t zbud_max_alloc_size(void) { return kMaxAllocSize; }

// ---- Validator --------------------------------------------------------------------------------
namespace {

class Validator {
 public:
  explicit Validator(zbud_pool *pool) : pool_(pool) {}

  bool ok() const { return error_[0] == '\0'; }
  const char *error() const { return error_; }

  __attribute__((format(printf, 2, 3))) void Fail(const char *fmt, ...) {
    if (!ok()) return;  // keep the first violation
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(error_, sizeof(error_), fmt, ap);
    va_end(ap);
    if (error_[0] == '\0') snprintf(error_, sizeof(error_), "violation");
  }

  // Checks one listed page. REQUIRES: HeaderAccess on zhdr.
  void CheckPage(const zbud_header *zhdr) {
    const struct page *page = virt_to_page(zhdr);
    if (page == nullptr || !kc::PageIsAllocated(page))
      return Fail("page %p: not an allocated page", static_cast<const void *>(zhdr));
    if (OwnerOf(zhdr) != pool_)
      return Fail("page %p: owner %p, not this pool", static_cast<const void *>(zhdr),
                  OwnerOf(zhdr));
    if (zhdr->under_reclaim)
      return Fail("page %p: listed while under reclaim", static_cast<const void *>(zhdr));
    if (zhdr->evicting != NO_BUDDY || zhdr->reclaimer != 0)
      return Fail("page %p: eviction state left behind", static_cast<const void *>(zhdr));
    if (zhdr->first_chunks == 0 && zhdr->last_chunks == 0)
      return Fail("page %p: listed with no buddy", static_cast<const void *>(zhdr));
    if (zhdr->first_chunks + zhdr->last_chunks > NCHUNKS - 1)
      return Fail("page %p: first_chunks %u + last_chunks %u exceed %u",
                  static_cast<const void *>(zhdr), zhdr->first_chunks, zhdr->last_chunks,
                  NCHUNKS - 1);
    if (!LruListT::is_linked(zhdr))
      return Fail("page %p: not on the LRU", static_cast<const void *>(zhdr));
    const char *base = reinterpret_cast<const char *>(zhdr);
    for (Buddy bud : {FIRST, LAST}) {
      const unsigned int chunks = Chunks(zhdr, bud);
      const u32 size = Size(zhdr, bud);
      const u32 state = MapState(zhdr, bud).load(std::memory_order_acquire);
      const u32 maps = state & kMapsMask;
      if (chunks == 0) {
        if (size != 0 || state != 0)
          return Fail("page %p: free %s buddy with size %u, map state %#x",
                      static_cast<const void *>(zhdr), BuddyName(bud), size, state);
        continue;
      }
      if (!(state & kAllocated))
        return Fail("page %p: allocated %s buddy without kAllocated (map state %#x)",
                    static_cast<const void *>(zhdr), BuddyName(bud), state);
      if (chunks > NCHUNKS - 2 || size == 0 || size > kMaxAllocSize ||
          size_to_chunks(size) != chunks)
        return Fail("page %p: %s buddy has %u chunks for size %u",
                    static_cast<const void *>(zhdr), BuddyName(bud), chunks, size);
      const char *obj = BuddyAddress(zhdr, bud);
      objects_++;
      if (ZPOOL_CHECKS) {
        if (size_t at = RedzoneDamage(obj, size))
          return Fail("page %p: %s buddy (size %u): redzone overwritten at offset %zu",
                      static_cast<const void *>(zhdr), BuddyName(bud), size, at);
      }
      if (kc::kAsan) {
        if (maps == 0 && (!kc::asan_region_poisoned(obj, 1) ||
                          !kc::asan_region_poisoned(obj + size - 1, 1)))
          return Fail("page %p: unmapped %s buddy is not poisoned",
                      static_cast<const void *>(zhdr), BuddyName(bud));
        if (maps != 0 && kc::asan_region_poisoned(obj, size))
          return Fail("page %p: mapped %s buddy is poisoned", static_cast<const void *>(zhdr),
                      BuddyName(bud));
      }
    }
    if (kc::kAsan) {
      // Header padding and free chunks are poisoned.
      if (sizeof(zbud_header) < ZHDR_SIZE_ALIGNED &&
          !kc::asan_region_poisoned(base + sizeof(zbud_header), 1))
        return Fail("page %p: header padding is not poisoned", static_cast<const void *>(zhdr));
      const size_t free_start = (1 + static_cast<size_t>(zhdr->first_chunks)) << CHUNK_SHIFT;
      const size_t free_end = PAGE_SIZE - (static_cast<size_t>(zhdr->last_chunks) << CHUNK_SHIFT);
      if (free_start < free_end && (!kc::asan_region_poisoned(base + free_start, 1) ||
                                    !kc::asan_region_poisoned(base + free_end - 1, 1)))
        return Fail("page %p: free chunks are not poisoned", static_cast<const void *>(zhdr));
    }
  }

  // REQUIRES: pool is the pool given to the constructor.
  void Run(zbud_pool *pool) KC_REQUIRES(pool->lock) {
    std::vector<const zbud_header *> listed, on_lru;
    for (unsigned int i = 0; i < NCHUNKS; i++) {
      bool well_formed = WalkList(pool, pool->unbuddied[i], [&](const zbud_header *zhdr) {
        listed.push_back(zhdr);
        CheckPage(zhdr);
        if ((zhdr->first_chunks == 0) == (zhdr->last_chunks == 0))
          Fail("page %p on unbuddied[%u]: first_chunks %u, last_chunks %u: not one buddy",
               static_cast<const void *>(zhdr), i, zhdr->first_chunks, zhdr->last_chunks);
        else if (num_free_chunks(zhdr) != static_cast<int>(i))
          Fail("page %p on unbuddied[%u] has %d free chunks", static_cast<const void *>(zhdr),
               i, num_free_chunks(zhdr));
      });
      if (!well_formed) Fail("unbuddied[%u] is malformed", i);
    }
    bool well_formed = WalkList(pool, pool->buddied, [&](const zbud_header *zhdr) {
      listed.push_back(zhdr);
      CheckPage(zhdr);
      if (zhdr->first_chunks == 0 || zhdr->last_chunks == 0)
        Fail("page %p on buddied: first_chunks %u, last_chunks %u",
             static_cast<const void *>(zhdr), zhdr->first_chunks, zhdr->last_chunks);
    });
    if (!well_formed) Fail("buddied is malformed");
    well_formed = WalkList(pool, pool->lru, [&](const zbud_header *zhdr) {
      on_lru.push_back(zhdr);
      if (!BuddyListT::is_linked(zhdr))
        Fail("page %p is on the LRU but on no buddy list", static_cast<const void *>(zhdr));
    });
    if (!well_formed) Fail("the LRU is malformed");

    std::sort(listed.begin(), listed.end());
    std::sort(on_lru.begin(), on_lru.end());
    if (std::adjacent_find(listed.begin(), listed.end()) != listed.end())
      Fail("a page is on two buddy lists");
    if (listed != on_lru)
      Fail("the LRU holds %zu pages, the buddy lists %zu: not the same pages", on_lru.size(),
           listed.size());
    const u64 pages = pool->pages_nr.load(std::memory_order_relaxed);
    if (pages != listed.size() + pool->reclaiming)
      Fail("pages_nr %llu, but %zu pages listed and %lu under reclaim",
           static_cast<unsigned long long>(pages), listed.size(), pool->reclaiming);
    if (pool->reclaiming == 0 ? pool->objects != objects_ : pool->objects < objects_)
      Fail("%lu objects counted, %lu found on listed pages (%lu pages under reclaim)",
           pool->objects, objects_, pool->reclaiming);
  }

 private:
  zbud_pool *pool_;
  unsigned long objects_ = 0;
  char error_[256] = "";
};

}  // namespace

int zbud_validate_TestOnly(struct zbud_pool *pool, char *why, size_t len) {
  PoolCall call(pool);
  if (!call.live() || pool == nullptr) {
    if (why != nullptr && len != 0)
      snprintf(why, len, "pool %p is not live", static_cast<void *>(pool));
    return -EINVAL;
  }
  Validator validator(pool);
  spin_lock(&pool->lock);
  validator.Run(pool);
  spin_unlock(&pool->lock);
  if (validator.ok()) {
    if (why != nullptr && len != 0) why[0] = '\0';
    return 0;
  }
  if (why != nullptr && len != 0) snprintf(why, len, "%s", validator.error());
  return -EUCLEAN;
}

// The validator's own test: each corruption below breaks one invariant the validator checks,
// which it must then name; the state is restored exactly before the lock is dropped.
int zbud_validate_corrupted_TestOnly(struct zbud_pool *pool, unsigned long handle, int kind,
                                     char *why, size_t len) {
  PoolCall call(pool);
  if (!call.live() || pool == nullptr || kind < 0 || kind >= ZBUD_CORRUPTIONS) return -EINVAL;
  spin_lock(&pool->lock);
  const HandleInfo h = LookupHandle(pool, handle);
  if (h.state != HandleState::kLive) {
    spin_unlock(&pool->lock);
    return -EINVAL;
  }
  zbud_header *const zhdr = h.zhdr;
  const Buddy bud = h.bud, other = bud == FIRST ? LAST : FIRST;
  char *obj = nullptr;
  const u64 pages_nr = pool->pages_nr.load(std::memory_order_relaxed);
  struct {
    u8 first_chunks, last_chunks;
    bool under_reclaim;
    Buddy evicting;
    u32 size[2];
  } saved;  // the header's plain fields (the list links are never touched)
  u32 saved_state = 0;
  char saved_byte = 0;
  bool applies = true;
  {
    HeaderAccess access(zhdr);
    obj = BuddyAddress(zhdr, bud);
    saved.first_chunks = zhdr->first_chunks;
    saved.last_chunks = zhdr->last_chunks;
    saved.under_reclaim = zhdr->under_reclaim;
    saved.evicting = zhdr->evicting;
    saved.size[0] = Size(zhdr, FIRST);
    saved.size[1] = Size(zhdr, LAST);
    saved_state = MapState(zhdr, bud).load(std::memory_order_relaxed);
    if (zhdr->under_reclaim) kind = -1;  // an evict callback's call: leave that page alone
    switch (kind) {
      case 0:
        SetOwner(zhdr, nullptr);
        break;
      case 1:
        zhdr->under_reclaim = true;
        break;
      case 2:
        zhdr->evicting = bud;
        break;
      case 3:
        zhdr->first_chunks = zhdr->last_chunks = 0;
        break;
      case 4:
        zhdr->first_chunks = NCHUNKS;
        break;
      case 5:
        MapState(zhdr, bud).store(saved_state & ~kAllocated, std::memory_order_relaxed);
        break;
      case 6:
        SetSize(zhdr, bud, 0);
        break;
      case 7:  // a byte of the redzone (object memory is poisoned or unaddressable in ASan/MSan)
        applies = ZPOOL_CHECKS && !kc::kAsan && !kc::kMsan &&
                  SlotBytes(Size(zhdr, bud)) > Size(zhdr, bud);
        if (applies) {
          saved_byte = obj[Size(zhdr, bud)];
          obj[Size(zhdr, bud)] = static_cast<char>(~saved_byte);
        }
        break;
      case 8:
        pool->pages_nr.store(pages_nr + 1, std::memory_order_relaxed);
        break;
      case 9:
        pool->objects++;
        break;
      case 10:  // a free buddy that remembers a size
        applies = Chunks(zhdr, other) == 0;
        if (applies) SetSize(zhdr, other, 1);
        break;
      default:
        applies = false;
        break;
    }
  }
  int result = -EINVAL;
  if (applies) {
    Validator validator(pool);
    validator.Run(pool);
    result = validator.ok() ? 0 : -EUCLEAN;
    if (why != nullptr && len != 0) snprintf(why, len, "%s", validator.error());
  }
  {
    HeaderAccess access(zhdr);
    SetOwner(zhdr, pool);
    zhdr->first_chunks = saved.first_chunks;
    zhdr->last_chunks = saved.last_chunks;
    zhdr->under_reclaim = saved.under_reclaim;
    zhdr->evicting = saved.evicting;
    SetSize(zhdr, FIRST, saved.size[0]);
    SetSize(zhdr, LAST, saved.size[1]);
    MapState(zhdr, bud).store(saved_state, std::memory_order_relaxed);
    if (kind == 7 && applies) obj[Size(zhdr, bud)] = saved_byte;
  }
  pool->pages_nr.store(pages_nr, std::memory_order_relaxed);
  if (kind == 9) pool->objects--;
  spin_unlock(&pool->lock);
  return result;
}

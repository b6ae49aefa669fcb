// SPDX-License-Identifier: GPL-2.0-only
// zsmalloc: the dense allocator for compressed pages, after Linux ~6.10 (mm/zsmalloc.c), in
// userspace on //zpool/kernel.
//
// ---- Size classes ------------------------------------------------------------------------------
// Sizes are served by ZS_SIZE_CLASSES classes, ZS_SIZE_CLASS_DELTA (PAGE_SIZE >> CLASS_BITS)
// apart, from ZS_MIN_ALLOC_SIZE to ZS_MAX_ALLOC_SIZE (PAGE_SIZE); a size maps to class
// DIV_ROUND_UP(size - ZS_MIN_ALLOC_SIZE, DELTA), clamped to the last class. zs_malloc() adds
// ZS_HANDLE_SIZE before the lookup: every non-huge object starts with its handle.
// A class's zspage is a chain of 1..ZS_MAX_PAGES_PER_ZSPAGE (the chain size: 8 by default,
// ZS_CONFIG_CHAIN_SIZE at build time) order-0 pages; the chain length is the one that wastes the
// fewest bytes ((pages * PAGE_SIZE) % size, the shortest on a tie, 1 for a power of two: 6.10's
// calculate_zspage_chain_size()). Walking from the largest class down, a class with the same
// pages-per-zspage and objects-per-zspage as the one above it is merged into it (both indices
// point at the larger one). A class with one object in one page is "huge": its objects have no
// handle header, the handle lives in the page descriptor. The first non-huge class from the top
// sets zs_huge_class_size() = its size - (ZS_HANDLE_SIZE - 1).
//
// ---- zspage ------------------------------------------------------------------------------------
// struct zspage (from the pool's "zspage" kmem_cache) holds the class index, the fullness group,
// the huge bit, ZSPAGE_MAGIC, inuse, the head of the free-object list, the first page, the class
// list node and the zspage rwlock. Fields of struct page used (page.h's "owner" fields):
//   page->zspage            the zspage (the kernel's page->private)
//   page->next              next page of the chain (the kernel's page->index)
//   page->index             position of the page in the chain
//   page->first_obj_offset  offset of the first object that starts in this page (page_type)
//   page->private_          huge zspage: the handle | OBJ_ALLOCATED_TAG (the kernel's index)
//   page->owner             the pool
//   page->flags             PG_private on the first page, PG_owner_priv_1 on a huge page
// Objects are laid out back to back over the chain, so an object may span two pages. A free
// object's first word links to the next free object (index << OBJ_TAG_BITS, tag clear; the last
// holds ~0 << OBJ_TAG_BITS); an allocated object's first word is its handle | OBJ_ALLOCATED_TAG,
// which is how compaction finds the live objects of a zspage. The list holds exactly the free
// whole objects (the kernel also links the partial slot at the end of a chain that cannot hold an
// object; here that slot only gets an end marker). A zspage sits on one of its class's 12
// fullness lists, by inuse / objs_per_zspage: ZS_INUSE_RATIO_0 (empty), _10 (> 0 and <= 10%),
// _20 .. _99 (above 90%, not full), _100 (full). Allocation takes the first zspage of the fullest
// non-full group (ZS_INUSE_RATIO_99 down to _0); an empty zspage is freed at once.
//
// ---- Handles and object locations -----------------------------------------------------------------
// A handle is the address of a 16-byte object of the pool's "zs_handle" kmem_cache:
//   obj    the object's location: ((pfn << OBJ_INDEX_BITS | index) << OBJ_TAG_BITS), with
//          OBJ_ALLOCATED_TAG set while the object is allocated (0 once freed)
//   state  the requested size (bits 0-31), the number of CPUs that have it mapped (32-47), how
//          many of those map it in place (48-61: the last one re-poisons it under ASan), a bit
//          lock (62) under which every change of the word is made, and the freed bit (63)
// There are no pfns in userspace: a page's pfn here is page_address(page) >> PAGE_SHIFT and
// pfn_to_page(pfn) is virt_to_page(pfn << PAGE_SHIFT), both O(1). OBJ_INDEX_BITS is derived as
// the kernel derives it for 64-bit (MAX_POSSIBLE_PHYSMEM_BITS 52: _PFN_BITS = 52 - PAGE_SHIFT),
// less the tag bit the location is shifted by (OBJ_INDEX_BITS = BITS_PER_LONG - _PFN_BITS -
// OBJ_TAG_BITS, as before 6.x dropped the shift): 23 bits on 4 KiB pages, 27 on 64 KiB; user
// addresses fit in 47 bits, so every pfn fits _PFN_BITS (checked when a page is taken).
// Compaction moves objects and rewrites handle->obj; the handle never changes.
//
// ---- Locking ---------------------------------------------------------------------------------------
//   pool->lock (rwlock)   handle -> obj: map and free look up under it for reading; compaction
//                         holds it for writing while it moves objects and rewrites handles.
//   class->lock (spin)    the class's fullness lists, stats, and every zspage's inuse, freeobj and
//                         fullness; objects are allocated, freed and moved under it.
//   zspage->lock (rwlock) a mapping holds it for reading from zs_map_object() to
//                         zs_unmap_object(), so compaction does not move objects under a user.
//   zs_map_area (local_lock) the per-CPU mapping area, held from map to unmap.
// Blocking order, checked by the kernel layer's lock-order checker:
//   zspage->lock -> zs_map_area -> pool->lock -> class->lock
// zspage->lock is only ever taken with a trylock, nested as in the kernel (map: read, under
// pool->lock held for reading; compaction: write, under pool->lock for writing and class->lock).
// A reader's trylock cannot fail (the only writer holds pool->lock for writing), and compaction
// skips a source zspage whose trylock fails (it is mapped) where the kernel would wait: so no one
// ever waits for zspage->lock, and a thread that holds a mapping may still call zs_malloc()
// (class->lock) and zs_free() (pool->lock) without a deadlock against compaction. A trylock adds
// no order edge (as in the kernel's lockdep), which is what puts zspage->lock first above.
//
// ---- Mapping ------------------------------------------------------------------------------------------
// One mapping area per virtual CPU, shared by all pools (the kernel's per-CPU zs_map_area), behind
// a kc::LocalLock: vm_buf (ZS_MAX_ALLOC_SIZE bytes) and the mapping's record (pool, handle, mode,
// location, requested size, RO checksum). zs_map_object() looks the handle up under pool->lock,
// takes the zspage read lock, drops pool->lock, claims this CPU's area and local_lock. An object
// inside one page is mapped in place; one that spans two pages is copied into vm_buf for RO and
// RW (WO does not copy in) and copied back on unmap for WO and RW (RO does not copy back). The
// pointer skips the handle header. The thread stays in atomic context until zs_unmap_object().
// The handle's map count (taken under pool->lock at map) makes zs_free() refuse the handle until
// zs_unmap_object() has released the zspage lock: unmap copies back and re-poisons while holding
// both, releases the area and the zspage lock, and drops the map count last (dropped earlier, a
// free could empty and free the zspage whose lock the unmap still holds).
//
// ---- Compaction -----------------------------------------------------------------------------------------
// zs_compact() (one at a time: compaction_in_progress) walks the classes from the largest down;
// per class, under pool->lock (write) and class->lock, it takes destination zspages from the
// fullest groups (_99 down to _10) and sources from the emptiest (_10 up to _99), moves every
// live object of the source into the destination (copy, rewrite the handle, free the old slot),
// frees emptied sources, and drops and retakes both locks (cond_resched()) whenever the
// destination is full or someone waits for either lock. pages_compacted accumulates.
//
// ---- Hardening (docs/hardening.md) --------------------------------------------------------------------
// Pools come from the "zs_pool" kmem_cache; every call proves its pool live with kmem_cache_owns()
// (memoized per thread for the last pool proven live, kernel/live_memo.h) and enters its slot count;
// every handle is proven an allocated zs_handle of this pool with kmem_cache_owns() before it is
// dereferenced. (zpool's driver calls the _pinned malloc, free and map of zsmalloc_pinned.h, which
// skip the pool's check and PercpuRef: its zpool call holds the pool.) zs_unmap_object() is the
// exception that proves the rule: when this thread's area records exactly (pool, handle), the
// mapping itself proves both live; only a call that does not match runs the checks, to name its
// misuse. A freed handle is marked freed and kept in a per-pool quarantine ring of kQuarantineSize
// handles before its slot goes back to the cache, so a second free (or a map) of it is told apart
// from a handle that was never ours: it is reported as double-free while quarantined, as
// invalid-handle once released, and (the accepted limit) not at all once its slot is reused by a
// new handle, which it then names. Following the check order of docs/hardening.md (invalid, then
// freed, then state), any call on a quarantined handle (zs_free, zs_map_object, zs_unmap_object) is
// the double-free misuse, and 0 or an ERR_PTR value is an invalid handle (the kernel's zs_free()
// ignores those silently). Outcomes: use-after-destroy -> ERR_PTR(-EINVAL) / NULL / 0 / no-op;
// invalid-handle and double-free -> no-op / NULL; nested-map -> NULL; concurrent-map -> WARN, then
// the second thread waits for the area; bad-unmap -> no-op; free-mapped -> refused;
// sleep-while-mapped -> zs_malloc and zs_create_pool proceed without __GFP_DIRECT_RECLAIM,
// zs_compact returns 0, zs_destroy_pool proceeds when the mapping is another pool's; destroy-busy
// (a mapping of this pool, by this thread or another, or calls in flight) -> refused;
// destroy-nonempty -> everything freed; overflow (redzone: up to 64 bytes of the slot's slack after
// the requested size, filled at malloc, checked at unmap) and write-ro (checksum of an RO mapping
// when kc_hardening_full()) -> WARN at unmap, spanning objects are not copied past the requested
// size, an overwritten redzone is restored.
// Sanitizers: object bytes are ASan-poisoned except the requested size between map and unmap
// (in place; in vm_buf for a spanning copy); free slots and vm_buf stay poisoned. The allocator's
// own accesses to headers, links, redzones and object bytes go through accessors built without
// ASan instrumentation, so they change no shadow at all and cannot disturb a neighbour mapped on
// another CPU. MSan: malloc marks the object uninitialised; copies (spanning map, unmap,
// compaction) carry the initialisation state with the bytes; a WO spanning map starts from an
// uninitialised buffer.
#include "zpool/zsmalloc.h"
#include "zpool/zsmalloc_pinned.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <atomic>
#include <new>
#include <vector>

#include "zpool/kernel/kernel.h"
#include "zpool/kernel/list.h"
#include "zpool/kernel/live_memo.h"
#include "zpool/kernel/lock.h"
#include "zpool/kernel/page.h"
#include "zpool/kernel/percpu.h"
#include "zpool/kernel/percpu_ref.h"
#include "zpool/kernel/sanitizer.h"
#include "zpool/kernel/sched.h"
#include "zpool/kernel/small_bytes.h"
#include "zpool/kernel/thread_annotations.h"
#include "zpool/inject.h"
#include "zpool/misuse.h"

#ifndef ZS_CONFIG_CHAIN_SIZE
#define ZS_CONFIG_CHAIN_SIZE 8
#endif

namespace {

// ---- Constants ---------------------------------------------------------------------------------

constexpr unsigned long DIV_ROUND_UP(unsigned long n, unsigned long d) { return (n + d - 1) / d; }

constexpr unsigned long BITS_PER_LONG = 64;
constexpr unsigned long ZS_ALIGN = 8;
constexpr unsigned long ZS_HANDLE_SIZE = sizeof(unsigned long);

constexpr unsigned long MAX_POSSIBLE_PHYSMEM_BITS = 52;
constexpr unsigned long PFN_BITS = MAX_POSSIBLE_PHYSMEM_BITS - PAGE_SHIFT;
constexpr unsigned long OBJ_ALLOCATED_TAG = 1;
constexpr unsigned long OBJ_TAG_BITS = 1;
constexpr unsigned long OBJ_TAG_MASK = OBJ_ALLOCATED_TAG;
constexpr unsigned long OBJ_INDEX_BITS = BITS_PER_LONG - PFN_BITS - OBJ_TAG_BITS;
constexpr unsigned long OBJ_INDEX_MASK = (1UL << OBJ_INDEX_BITS) - 1;
constexpr unsigned long FREE_LIST_END = ~0UL << OBJ_TAG_BITS;

constexpr unsigned int HUGE_BITS = 1;
constexpr unsigned int FULLNESS_BITS = 4;
constexpr unsigned int CLASS_BITS = 8;
constexpr unsigned int MAGIC_VAL_BITS = 8;
constexpr unsigned int ZSPAGE_MAGIC = 0x58;

constexpr int ZS_MAX_PAGES_PER_ZSPAGE = ZS_CONFIG_CHAIN_SIZE;
constexpr unsigned long ZS_MIN_ALLOC_SIZE =
    32 > ((static_cast<unsigned long>(ZS_MAX_PAGES_PER_ZSPAGE) << PAGE_SHIFT) >> OBJ_INDEX_BITS)
        ? 32
        : ((static_cast<unsigned long>(ZS_MAX_PAGES_PER_ZSPAGE) << PAGE_SHIFT) >> OBJ_INDEX_BITS);
constexpr unsigned long ZS_MAX_ALLOC_SIZE = PAGE_SIZE;
constexpr unsigned long ZS_SIZE_CLASS_DELTA = PAGE_SIZE >> CLASS_BITS;
constexpr int ZS_SIZE_CLASSES =
    static_cast<int>(DIV_ROUND_UP(ZS_MAX_ALLOC_SIZE - ZS_MIN_ALLOC_SIZE, ZS_SIZE_CLASS_DELTA) + 1);

static_assert(ZS_CONFIG_CHAIN_SIZE >= 1 && ZS_CONFIG_CHAIN_SIZE <= 16,
              "ZS_CONFIG_CHAIN_SIZE must be 1..16 (the kernel's CONFIG_ZSMALLOC_CHAIN_SIZE range)");
static_assert(ZS_MIN_ALLOC_SIZE % ZS_ALIGN == 0 && ZS_SIZE_CLASS_DELTA % ZS_ALIGN == 0,
              "class sizes must be multiples of ZS_ALIGN, so that a link never spans two pages");
static_assert((ZS_MAX_PAGES_PER_ZSPAGE * PAGE_SIZE / ZS_MIN_ALLOC_SIZE) <= OBJ_INDEX_MASK,
              "OBJ_INDEX_BITS cannot index every object of a zspage");
static_assert(ZS_SIZE_CLASSES <= (1 << (CLASS_BITS + 1)), "class index does not fit its field");

// Fullness groups: by inuse / objs_per_zspage; _10 is (0%, 10%], ..., _99 is (90%, 100%).
enum fullness_group : int {
  ZS_INUSE_RATIO_0,
  ZS_INUSE_RATIO_10,
  // 8 more groups here: _20 .. _90
  ZS_INUSE_RATIO_99 = 10,
  ZS_INUSE_RATIO_100,
  NR_FULLNESS_GROUPS,
};

static_assert(NR_FULLNESS_GROUPS <= (1 << FULLNESS_BITS), "the kernel keeps fullness in 4 bits");

enum class_stat_type : int {
  // 0 .. NR_FULLNESS_GROUPS - 1: zspages in each fullness group
  ZS_OBJS_ALLOCATED = NR_FULLNESS_GROUPS,
  ZS_OBJS_INUSE,
  NR_CLASS_STAT_TYPES,
};

// Handle state word (zs_handle::state).
constexpr unsigned long kStateSizeMask = 0xffffffffUL;
constexpr unsigned long kStateMapOne = 1UL << 32;      // CPUs that have the handle mapped
constexpr unsigned long kStateMapMask = 0xffffUL << 32;
constexpr unsigned long kStateViewOne = 1UL << 48;     // of those, mapped in place (ASan)
constexpr unsigned long kStateViewMask = 0x3fffUL << 48;
constexpr unsigned long kStateLocked = 1UL << 62;
constexpr unsigned long kStateFreed = 1UL << 63;

constexpr unsigned kQuarantineSize = 128;  // freed handles kept before their slot is reused
constexpr unsigned long kRedzoneMax = 64;
constexpr unsigned char kRedzoneByte = 0xb5;

// ---- Lock classes ------------------------------------------------------------------------------
constinit kc::LockClass g_pool_lock_class("zs_pool.lock");
constinit kc::LockClass g_class_lock_class("zs_size_class.lock");
constinit kc::LockClass g_zspage_lock_class("zs_zspage.lock");
constinit kc::LockClass g_map_area_lock_class("zs_map_area");

// ---- Structures ----------------------------------------------------------------------------------

struct FullnessList;  // tag of the zspage's node on its class's fullness lists

struct zs_handle {
  std::atomic<unsigned long> obj;
  std::atomic<unsigned long> state;
};
static_assert(sizeof(zs_handle) == 2 * sizeof(unsigned long), "a handle is two words");

struct zspage : kc::ListNode<FullnessList> {
  explicit zspage(struct zs_pool *owner_pool)
      : huge(0), class_idx(0), magic(ZSPAGE_MAGIC), pool(owner_pool), lock(g_zspage_lock_class) {}

  // Set when the zspage is created, read without locks: kept apart from the fields below,
  // which change under class->lock (a bitfield write rewrites its whole word).
  unsigned int huge : HUGE_BITS;
  unsigned int class_idx : CLASS_BITS + 1;
  unsigned int magic : MAGIC_VAL_BITS;
  unsigned int fullness = ZS_INUSE_RATIO_0;  // fullness group (class->lock)
  unsigned int inuse = 0;    // allocated objects (class->lock)
  unsigned int freeobj = 0;  // index of the first free object (class->lock)
  struct page *first_page = nullptr;
  struct zs_pool *pool;
  rwlock_t lock;
};

struct size_class {
  size_class(int class_size, int pages, int objs, unsigned int idx)
      : lock(g_class_lock_class), size(class_size), objs_per_zspage(objs),
        pages_per_zspage(pages), index(idx) {}

  spinlock_t lock;
  kc::IntrusiveList<zspage, FullnessList> fullness_list[NR_FULLNESS_GROUPS] KC_GUARDED_BY(lock);
  unsigned long stats[NR_CLASS_STAT_TYPES] KC_GUARDED_BY(lock) = {};
  // Immutable after creation.
  const int size;
  const int objs_per_zspage;
  const int pages_per_zspage;
  const unsigned int index;
};

// This CPU's mapping: the area and what is mapped in it (written only by the owner thread).
struct MapArea {
  std::atomic<pid_t> owner{0};  // thread holding this CPU's area (0: free)
  char *vm_buf = nullptr;       // ZS_MAX_ALLOC_SIZE bytes: copies of objects that span pages
  struct zs_pool *pool = nullptr;
  unsigned long handle = 0;
  enum zs_mapmode mm = ZS_MM_RW;
  zspage *zspage_ = nullptr;
  struct page *page = nullptr;  // page where the object starts
  unsigned int off = 0;         // offset of the object in that page
  unsigned int slot = 0;        // class size
  unsigned int hdr = 0;         // ZS_HANDLE_SIZE, or 0 for a huge object
  unsigned int req = 0;         // requested size
  bool spanning = false;
  bool checksummed = false;
  u64 checksum = 0;
  char *ptr = nullptr;  // what zs_map_object() returned
};

struct MapAreas {
  MapAreas() : lock(g_map_area_lock_class) {}
  kc::LocalLock lock;
  kc::PerCpu<MapArea> areas;
};

}  // namespace

struct zs_pool {
  zs_pool() : lock(g_pool_lock_class) {}

  char *name = nullptr;
  size_class *size_class_of[ZS_SIZE_CLASSES] = {};
  struct kmem_cache *handle_cachep = nullptr;
  struct kmem_cache *zspage_cachep = nullptr;
  std::atomic<unsigned long> pages_allocated{0};
  std::atomic<unsigned long> pages_compacted{0};
  std::atomic<int> compaction_in_progress{0};
  size_t huge_class_size = 0;
  MapAreas *map = nullptr;

  rwlock_t lock;  // handle -> obj; compaction
  // Calls in flight: in the pool cache's slot, not here (PoolRef()), so that a call racing the
  // destroy finds it dying instead of touching the freed pool.
  std::atomic<long> nr_mapped{0};  // mappings held on this pool, all CPUs
  std::atomic<bool> destroy_started{false};

  // Recently freed handles, oldest overwritten first: a slot is claimed by a fetch_add and filled
  // by an exchange, which hands back the handle it evicts.
  std::atomic<zs_handle *> quarantine[kQuarantineSize] = {};
  std::atomic<unsigned long> q_next{0};
};

namespace {

// ---- Globals ---------------------------------------------------------------------------------------

struct kmem_cache *PoolCache() {
  static struct kmem_cache *cache =
      kc::kmem_cache_create_typesafe("zs_pool", sizeof(zs_pool), alignof(zs_pool));
  return cache;
}
// The calls in flight on a pool. REQUIRES: pool is a slot of PoolCache() (live or freed).
kc::PercpuRef &PoolRef(const zs_pool *pool) { return *kc::kmem_cache_slot_ref(PoolCache(), pool); }
// Pools are freed through this count: a thread's memo of the pool it proved live last
// (kc::LiveMemo) then answers pool_enter() without the cache lookup until some pool is freed.
constinit kc::FreeCount g_pools_freed;
constinit thread_local kc::LiveMemo t_live_pool;

// The per-CPU mapping areas exist while any pool does (the kernel sets them up at CPU hotplug).
struct MapAreaRegistry {
  std::atomic_flag busy = ATOMIC_FLAG_INIT;  // a tiny lock: create/destroy of pools only
  MapAreas *areas = nullptr;
  long users = 0;
};
MapAreaRegistry g_registry;
// g_registry.areas, readable without the registry lock (zs_unmap_object's fast path).
std::atomic<MapAreas *> g_registry_areas{nullptr};

void RegistryLock() {
  unsigned spins = 0;
  while (g_registry.busy.test_and_set(std::memory_order_acquire)) kc::WaitSpin(spins, &g_registry);
}
void RegistryUnlock() { g_registry.busy.clear(std::memory_order_release); }

void FreeMapAreas(MapAreas *m) {
  for (int cpu = 0; cpu < m->areas.size(); cpu++) {
    MapArea &a = m->areas[cpu];
    if (a.vm_buf == nullptr) continue;
    kc::asan_unpoison(a.vm_buf, ZS_MAX_ALLOC_SIZE);
    kfree(a.vm_buf);
  }
  delete m;
}

MapAreas *GetMapAreas(gfp_t gfp) {
  RegistryLock();
  if (g_registry.areas == nullptr) {
    auto *m = new MapAreas();
    for (int cpu = 0; cpu < m->areas.size(); cpu++) {
      char *buf = static_cast<char *>(kmalloc(ZS_MAX_ALLOC_SIZE, gfp));
      if (buf == nullptr) {
        FreeMapAreas(m);
        RegistryUnlock();
        return nullptr;
      }
      kc::asan_poison(buf, ZS_MAX_ALLOC_SIZE);
      m->areas[cpu].vm_buf = buf;
    }
    g_registry.areas = m;
    g_registry_areas.store(m, std::memory_order_release);
  }
  g_registry.users++;
  MapAreas *m = g_registry.areas;
  RegistryUnlock();
  return m;
}

void PutMapAreas() {
  RegistryLock();
  MapAreas *to_free = nullptr;
  if (--g_registry.users == 0) {
    to_free = g_registry.areas;
    g_registry.areas = nullptr;
    g_registry_areas.store(nullptr, std::memory_order_release);
  }
  RegistryUnlock();
  if (to_free != nullptr) FreeMapAreas(to_free);
}

// The mapping this thread holds (at most one: a second one is the nested-map misuse).
thread_local int t_maps = 0;
thread_local struct zs_pool *t_map_pool = nullptr;

// Why this thread may not sleep, for the sleep-while-mapped reports: it holds a mapping (the
// usual mistake: a missing zs_unmap_object()) or is in atomic context for another reason (a
// spinlock held around the call, as in the kernel's "sleeping function called from invalid
// context"). Empty when it may sleep.
struct AtomicWhy {
  char text[160];
};
AtomicWhy WhyAtomic() {
  AtomicWhy why = {""};
  if (t_maps > 0)
    snprintf(why.text, sizeof(why.text),
             "this thread holds a mapping of pool %p on cpu %d (missing zs_unmap_object()?)",
             static_cast<void *>(t_map_pool), kc_current_cpu());
  else if (kc_in_atomic())
    snprintf(why.text, sizeof(why.text),
             "this thread is in atomic context (preempt_count %d: holding a spinlock?)",
             preempt_count());
  return why;
}

// ---- Raw memory accessors --------------------------------------------------------------------
// The allocator's own reads and writes of object memory: built without ASan instrumentation (and
// without turning loops into calls to the checked memcpy/memset), so they neither trip on the
// poisoned bytes around them nor change any shadow. MSan still sees them: copies carry the
// initialisation state along.
#define ZS_RAW __attribute__((no_sanitize("address"), no_builtin("memcpy"), no_builtin("memset")))

typedef unsigned long __attribute__((may_alias)) raw_word;

ZS_RAW unsigned long raw_read_word(const void *p) { return *static_cast<const raw_word *>(p); }
ZS_RAW void raw_write_word(void *p, unsigned long v) { *static_cast<raw_word *>(p) = v; }

ZS_RAW void raw_copy(void *dst, const void *src, size_t n) {
  if constexpr (!kc::kAsan) {
    memcpy(dst, src, n);  // no shadow to keep out of the way: the library's memcpy is fastest
    return;
  }
  auto *d = static_cast<unsigned char *>(dst);
  auto *s = static_cast<const unsigned char *>(src);
  if (((reinterpret_cast<uintptr_t>(d) | reinterpret_cast<uintptr_t>(s)) & 7) == 0) {
    for (; n >= 8; n -= 8, d += 8, s += 8)
      *reinterpret_cast<raw_word *>(d) = *reinterpret_cast<const raw_word *>(s);
  }
  for (; n > 0; n--) *d++ = *s++;
}

// Redzones (at most kRedzoneMax bytes, at any alignment) are written and checked by
// kc::SmallCopy / kc::SmallEqual (no branch on the length, not instrumented by ASan).
struct RedzonePattern {
  unsigned char bytes[kRedzoneMax];
  constexpr RedzonePattern() : bytes() {
    for (unsigned char &b : bytes) b = kRedzoneByte;
  }
};
constexpr RedzonePattern kRedzonePattern;
static_assert(kRedzoneMax <= kc::kSmallBytesMax, "kc::SmallCopy/SmallEqual take the redzone");

ZS_RAW void redzone_fill(void *dst, size_t n) { kc::SmallCopy(dst, kRedzonePattern.bytes, n); }

// Index of the first byte of the n-byte redzone at p that does not hold the pattern, or n. The
// common answer (intact) comes from kc::SmallEqual; only a damaged redzone is searched.
ZS_RAW size_t redzone_damage(const void *p, size_t n) {
  if (__builtin_expect(kc::SmallEqual(p, kRedzonePattern.bytes, n), 1)) return n;
  auto *s = static_cast<const unsigned char *>(p);
  size_t i = 0;
  while (i < n && s[i] == kRedzoneByte) i++;
  return i;
}

// A word at a time (multiply and fold, as fast hashes do): any change of a byte changes it with
// overwhelming probability, at a fraction of a byte-wise FNV's cost.
ZS_RAW u64 raw_checksum(const void *p, size_t n) {
  auto *s = static_cast<const unsigned char *>(p);
  u64 h = 0xcbf29ce484222325ULL ^ n;
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    u64 w;
    __builtin_memcpy(&w, s + i, 8);
    h = (h ^ w) * 0x9e3779b97f4a7c15ULL;
    h ^= h >> 29;
  }
  for (; i < n; i++) h = (h ^ s[i]) * 0x100000001b3ULL;
  // A checksum of bytes the user has not written yet is still a checksum: MSan must not see it
  // as uninitialised (it checks return values).
  kc::msan_mark_initialized(&h, sizeof(h));
  return h;
}

// ---- Pages and object locations --------------------------------------------------------------------

char *page_addr(const struct page *page) { return static_cast<char *>(page_address(page)); }

unsigned long zs_page_to_pfn(const struct page *page) {
  return reinterpret_cast<uintptr_t>(page_address(page)) >> PAGE_SHIFT;
}

struct page *zs_pfn_to_page(unsigned long pfn) {
  return virt_to_page(reinterpret_cast<const void *>(pfn << PAGE_SHIFT));
}

unsigned long location_to_obj(const struct page *page, unsigned int obj_idx) {
  unsigned long obj = zs_page_to_pfn(page) << OBJ_INDEX_BITS;
  obj |= obj_idx & OBJ_INDEX_MASK;
  return obj << OBJ_TAG_BITS;
}

void obj_to_location(unsigned long obj, struct page **page, unsigned int *obj_idx) {
  obj >>= OBJ_TAG_BITS;
  *page = zs_pfn_to_page(obj >> OBJ_INDEX_BITS);
  *obj_idx = static_cast<unsigned int>(obj & OBJ_INDEX_MASK);
}

zs_handle *to_handle(unsigned long handle) { return reinterpret_cast<zs_handle *>(handle); }

unsigned long handle_to_obj(unsigned long handle) {
  return to_handle(handle)->obj.load(std::memory_order_relaxed) & ~OBJ_TAG_MASK;
}

// REQUIRES: pool->lock for writing, or class->lock for a handle not yet published.
void record_obj(unsigned long handle, unsigned long obj) {
  to_handle(handle)->obj.store(obj | OBJ_ALLOCATED_TAG, std::memory_order_relaxed);
}

zspage *get_zspage(const struct page *page) {
  auto *z = static_cast<zspage *>(page->zspage);
  BUG_ON(z == nullptr || z->magic != ZSPAGE_MAGIC);
  return z;
}

struct page *get_next_page(const struct page *page) {
  if (get_zspage(page)->huge) return nullptr;
  return page->next;
}

// The page in which object obj_idx of the zspage starts, and the object's offset in it.
struct page *slot_location(const size_class *cls, const zspage *z, unsigned int obj_idx,
                           unsigned int *off) {
  unsigned long offset = static_cast<unsigned long>(cls->size) * obj_idx;
  struct page *page = z->first_page;
  for (unsigned long i = 0; i < (offset >> PAGE_SHIFT); i++) page = get_next_page(page);
  *off = static_cast<unsigned int>(offset & ~PAGE_MASK);
  return page;
}

// Up to two pieces of a byte range that starts at (page, off) and may continue on the next page.
struct Span {
  char *addr[2] = {nullptr, nullptr};
  size_t len[2] = {0, 0};
};

Span make_span(struct page *page, size_t off, size_t len) {
  Span s;
  if (off >= PAGE_SIZE) {  // the range starts on the next page
    page = get_next_page(page);
    off -= PAGE_SIZE;
  }
  s.addr[0] = page_addr(page) + off;
  s.len[0] = len <= PAGE_SIZE - off ? len : PAGE_SIZE - off;
  if (s.len[0] < len) {
    struct page *next = get_next_page(page);
    BUG_ON(next == nullptr);
    s.addr[1] = page_addr(next);
    s.len[1] = len - s.len[0];
  }
  return s;
}

void span_copy_out(void *dst, const Span &s) {
  raw_copy(dst, s.addr[0], s.len[0]);
  if (s.len[1]) raw_copy(static_cast<char *>(dst) + s.len[0], s.addr[1], s.len[1]);
}

void span_copy_in(const Span &s, const void *src) {
  raw_copy(s.addr[0], src, s.len[0]);
  if (s.len[1]) raw_copy(s.addr[1], static_cast<const char *>(src) + s.len[0], s.len[1]);
}

void span_redzone_fill(const Span &s) {
  redzone_fill(s.addr[0], s.len[0]);
  if (s.len[1]) redzone_fill(s.addr[1], s.len[1]);
}

size_t span_redzone_damage(const Span &s) {
  size_t i = redzone_damage(s.addr[0], s.len[0]);
  if (i < s.len[0] || !s.len[1]) return i;
  return s.len[0] + redzone_damage(s.addr[1], s.len[1]);
}

void span_msan_uninit(const Span &s) {
  kc::msan_mark_uninitialized(s.addr[0], s.len[0]);
  if (s.len[1]) kc::msan_mark_uninitialized(s.addr[1], s.len[1]);
}

// Span-to-span copy (compaction: both objects may span pages).
void span_copy(const Span &d, const Span &s) {
  int di = 0, si = 0;
  size_t doff = 0, soff = 0;
  while (di < 2 && si < 2 && d.len[di] && s.len[si]) {
    size_t n = d.len[di] - doff < s.len[si] - soff ? d.len[di] - doff : s.len[si] - soff;
    raw_copy(d.addr[di] + doff, s.addr[si] + soff, n);
    doff += n;
    soff += n;
    if (doff == d.len[di]) di++, doff = 0;
    if (soff == s.len[si]) si++, soff = 0;
  }
}

// Bytes of the slot after the requested size that carry the redzone pattern.
size_t redzone_len(unsigned int slot, unsigned int hdr, unsigned int req) {
  size_t slack = slot - hdr - req;
  return slack < kRedzoneMax ? slack : kRedzoneMax;
}

// ---- Handle state ------------------------------------------------------------------------------------

// Takes the handle's bit lock; returns the state (with the lock bit clear). A lock to the
// scheduler too: its acquire and release are scheduling points at the caller's site.
unsigned long lock_state(zs_handle *h, const kc::Site &site = kc::Site::current()) {
  kc::sched_point(kc::SchedEvent::kLockAcquire, h, site);
  unsigned spins = 0;
  for (;;) {
    unsigned long s = h->state.load(std::memory_order_relaxed);
    if (!(s & kStateLocked) &&
        h->state.compare_exchange_weak(s, s | kStateLocked, std::memory_order_acquire))
      return s;
    kc::WaitSpin(spins, h, site);
  }
}

void unlock_state(zs_handle *h, unsigned long s, const kc::Site &site = kc::Site::current()) {
  h->state.store(s & ~kStateLocked, std::memory_order_release);
  kc::sched_point(kc::SchedEvent::kLockRelease, h, site);
}

// ---- Size classes ----------------------------------------------------------------------------------

int get_size_class_index(size_t size) {
  unsigned long idx = 0;
  if (size > ZS_MIN_ALLOC_SIZE) idx = DIV_ROUND_UP(size - ZS_MIN_ALLOC_SIZE, ZS_SIZE_CLASS_DELTA);
  if (kBugClassIndex && idx > 0) idx--;  // injected bug (zpool/inject.h): one class too small
  return static_cast<int>(idx < static_cast<unsigned long>(ZS_SIZE_CLASSES - 1)
                              ? idx
                              : static_cast<unsigned long>(ZS_SIZE_CLASSES - 1));
}

int calculate_zspage_chain_size(int class_size) {
  int chain_size = 1;
  if ((class_size & (class_size - 1)) == 0) return chain_size;
  unsigned long min_waste = ~0UL;
  for (int i = 1; i <= ZS_MAX_PAGES_PER_ZSPAGE; i++) {
    unsigned long waste = (i * PAGE_SIZE) % static_cast<unsigned long>(class_size);
    if (waste < min_waste) {
      min_waste = waste;
      chain_size = i;
    }
  }
  return chain_size;
}

bool can_merge(const size_class *prev, int pages_per_zspage, int objs_per_zspage) {
  return prev->pages_per_zspage == pages_per_zspage && prev->objs_per_zspage == objs_per_zspage;
}

size_class *class_of(const zs_pool *pool, const zspage *z) { return pool->size_class_of[z->class_idx]; }

int get_fullness_group(const size_class *cls, const zspage *z) {
  int inuse = static_cast<int>(z->inuse);
  if (inuse == 0) return ZS_INUSE_RATIO_0;
  if (inuse == cls->objs_per_zspage) return ZS_INUSE_RATIO_100;
  // One object out of 127 is a 0% ratio in integer arithmetic; it belongs to _10.
  int ratio = 100 * inuse / cls->objs_per_zspage;
  if (kBugFullnessRatio)  // injected (zpool/inject.h): rounds the ratio up
    ratio = (100 * inuse + cls->objs_per_zspage - 1) / cls->objs_per_zspage;
  return std::min(ratio / 10 + 1, static_cast<int>(ZS_INUSE_RATIO_99));
}

void insert_zspage(size_class *cls, zspage *z, int fullness) KC_REQUIRES(cls->lock) {
  cls->stats[fullness]++;
  cls->fullness_list[fullness].push_front(z);
  z->fullness = static_cast<unsigned>(fullness);
}

void remove_zspage(size_class *cls, zspage *z) KC_REQUIRES(cls->lock) {
  int fullness = static_cast<int>(z->fullness);
  cls->fullness_list[fullness].remove(z);
  cls->stats[fullness]--;
}

int fix_fullness_group(size_class *cls, zspage *z) KC_REQUIRES(cls->lock) {
  int newfg = get_fullness_group(cls, z);
  if (newfg != static_cast<int>(z->fullness)) {
    remove_zspage(cls, z);
    insert_zspage(cls, z, newfg);
  }
  return newfg;
}

int putback_zspage(size_class *cls, zspage *z) KC_REQUIRES(cls->lock) {
  int fullness = get_fullness_group(cls, z);
  insert_zspage(cls, z, fullness);
  return fullness;
}

zspage *find_get_zspage(size_class *cls) KC_REQUIRES(cls->lock) {
  for (int fg = ZS_INUSE_RATIO_99; fg >= ZS_INUSE_RATIO_0; fg--)
    if (zspage *z = cls->fullness_list[fg].front()) return z;
  return nullptr;
}

zspage *isolate_src_zspage(size_class *cls) KC_REQUIRES(cls->lock) {
  for (int fg = ZS_INUSE_RATIO_10; fg <= ZS_INUSE_RATIO_99; fg++) {
    if (zspage *z = cls->fullness_list[fg].front()) {
      remove_zspage(cls, z);
      return z;
    }
  }
  return nullptr;
}

zspage *isolate_dst_zspage(size_class *cls) KC_REQUIRES(cls->lock) {
  if (kBugCompactDstOrder) return isolate_src_zspage(cls);  // injected (zpool/inject.h)
  for (int fg = ZS_INUSE_RATIO_99; fg >= ZS_INUSE_RATIO_10; fg--) {
    if (zspage *z = cls->fullness_list[fg].front()) {
      remove_zspage(cls, z);
      return z;
    }
  }
  return nullptr;
}

unsigned long zs_can_compact(size_class *cls) KC_REQUIRES(cls->lock) {
  unsigned long allocated = cls->stats[ZS_OBJS_ALLOCATED];
  unsigned long used = cls->stats[ZS_OBJS_INUSE];
  if (allocated <= used) return 0;
  unsigned long wasted = (allocated - used) / static_cast<unsigned long>(cls->objs_per_zspage);
  return wasted * static_cast<unsigned long>(cls->pages_per_zspage);
}

// ---- zspage life cycle -------------------------------------------------------------------------------

void create_page_chain(const size_class *cls, zspage *z, struct page *pages[], zs_pool *pool) {
  struct page *prev = nullptr;
  for (int i = 0; i < cls->pages_per_zspage; i++) {
    struct page *page = pages[i];
    page->zspage = z;
    page->owner = pool;
    page->index = static_cast<unsigned int>(i);
    page->next = nullptr;
    page->private_ = 0;
    page->flags = 0;
    if (i == 0) {
      z->first_page = page;
      page->flags |= PG_private;
      if (cls->objs_per_zspage == 1 && cls->pages_per_zspage == 1) {
        z->huge = 1;
        page->flags |= PG_owner_priv_1;
      }
    } else {
      prev->next = page;
    }
    prev = page;
  }
}

// Threads the free list through the zspage's objects and poisons every byte of it.
void init_zspage(const size_class *cls, zspage *z) {
  unsigned int freeobj = 1;
  unsigned long off = 0;
  const unsigned int nr_objs = static_cast<unsigned int>(cls->objs_per_zspage);
  struct page *page = z->first_page;
  while (page != nullptr) {
    page->first_obj_offset = static_cast<unsigned int>(off);
    char *vaddr = page_addr(page);
    char *link = vaddr + off;
    while ((off += static_cast<unsigned long>(cls->size)) < PAGE_SIZE) {
      raw_write_word(link, freeobj < nr_objs ? static_cast<unsigned long>(freeobj) << OBJ_TAG_BITS
                                             : FREE_LIST_END);
      freeobj++;
      link += cls->size;
    }
    // The last object that starts in this page: it links to the first one of the next page,
    // or ends the list.
    struct page *next = get_next_page(page);
    raw_write_word(link, next != nullptr && freeobj < nr_objs
                             ? static_cast<unsigned long>(freeobj) << OBJ_TAG_BITS
                             : FREE_LIST_END);
    freeobj++;
    kc::asan_poison(vaddr, PAGE_SIZE);
    page = next;
    off %= PAGE_SIZE;
  }
  z->freeobj = 0;
  if (kBugFirstObject && nr_objs > 1) {
    // Injected (zpool/inject.h): the list runs 1, 2, .., n - 1, 0.
    const unsigned long last = static_cast<unsigned long>(nr_objs - 1) *
                               static_cast<unsigned long>(cls->size);
    struct page *p = z->first_page;
    for (unsigned long i = 0; i < last / PAGE_SIZE; i++) p = get_next_page(p);
    raw_write_word(page_addr(p) + last % PAGE_SIZE, 0);
    raw_write_word(page_addr(z->first_page), FREE_LIST_END);
    z->freeobj = 1;
  }
}

zspage *alloc_zspage(zs_pool *pool, const size_class *cls, gfp_t gfp) {
  void *mem = kmem_cache_alloc(pool->zspage_cachep, gfp & ~(__GFP_HIGHMEM | __GFP_MOVABLE));
  if (mem == nullptr) return nullptr;
  auto *z = new (mem) zspage(pool);
  struct page *pages[ZS_MAX_PAGES_PER_ZSPAGE];
  for (int i = 0; i < cls->pages_per_zspage; i++) {
    struct page *page = alloc_page(gfp);
    if (page == nullptr) {
      while (--i >= 0) __free_page(pages[i]);
      z->~zspage();
      kmem_cache_free(pool->zspage_cachep, z);
      return nullptr;
    }
    BUG_ON((zs_page_to_pfn(page) >> PFN_BITS) != 0);  // the pfn must fit its bits in obj
    pages[i] = page;
  }
  create_page_chain(cls, z, pages, pool);
  init_zspage(cls, z);
  z->class_idx = cls->index;
  return z;
}

// REQUIRES: cls->lock (or the pool being destroyed); the zspage is off the lists and unmapped.
void __free_zspage(zs_pool *pool, size_class *cls, zspage *z) KC_REQUIRES(cls->lock) {
  struct page *page = z->first_page;
  while (page != nullptr) {
    struct page *next = get_next_page(page);
    __free_page(page);
    page = next;
  }
  z->magic = 0;
  z->~zspage();
  kmem_cache_free(pool->zspage_cachep, z);
  cls->stats[ZS_OBJS_ALLOCATED] -= static_cast<unsigned long>(cls->objs_per_zspage);
  pool->pages_allocated.fetch_sub(static_cast<unsigned long>(cls->pages_per_zspage),
                                  std::memory_order_relaxed);
}

void free_zspage(zs_pool *pool, size_class *cls, zspage *z) KC_REQUIRES(cls->lock) {
  BUG_ON(z->inuse != 0);
  remove_zspage(cls, z);
  __free_zspage(pool, cls, z);
}

// ---- Objects --------------------------------------------------------------------------------------

// Where a slot starts: its page, its offset in that page, and its address.
struct SlotAt {
  struct page *page = nullptr;
  unsigned int off = 0;
  char *addr = nullptr;
};

// Takes the first free object of the zspage for `handle`; returns its obj (and, if `at`, where
// the slot starts).
unsigned long obj_malloc(size_class *cls, zspage *z, unsigned long handle, SlotAt *at = nullptr)
    KC_REQUIRES(cls->lock) {
  unsigned int obj_idx = z->freeobj;
  BUG_ON(obj_idx >= static_cast<unsigned int>(cls->objs_per_zspage));
  unsigned int off;
  struct page *m_page = slot_location(cls, z, obj_idx, &off);
  char *link = page_addr(m_page) + off;
  z->freeobj = static_cast<unsigned int>(raw_read_word(link) >> OBJ_TAG_BITS);
  if (!z->huge)
    raw_write_word(link, handle | OBJ_ALLOCATED_TAG);  // the object's header
  else
    z->first_page->private_ = handle | OBJ_ALLOCATED_TAG;
  z->inuse++;
  if (at != nullptr) *at = {m_page, off, link};
  return location_to_obj(m_page, obj_idx);
}

// A new object in the slot at `at` of z: its bytes are uninitialised (MSan), the redzone after
// the requested size is set. The redzone is written in place when it lies in the slot's first
// page (the slot's address is known already), through a span only when it reaches the next one.
void prepare_new_object(const size_class *cls, const zspage *z, const SlotAt &at, size_t req) {
  const unsigned int hdr = z->huge ? 0 : static_cast<unsigned int>(ZS_HANDLE_SIZE);
  const unsigned int slot = static_cast<unsigned int>(cls->size);
  if (kc::kMsan) span_msan_uninit(make_span(at.page, at.off + hdr, slot - hdr));
  if constexpr (!ZPOOL_CHECKS) return;
  const size_t rz = redzone_len(slot, hdr, static_cast<unsigned int>(req));
  if (rz == 0) return;
  const size_t start = at.off + hdr + req;
  if (start + rz <= PAGE_SIZE)
    redzone_fill(at.addr + hdr + req, rz);
  else
    span_redzone_fill(make_span(at.page, start, rz));
}

void obj_free(int class_size, unsigned long obj) {
  struct page *f_page;
  unsigned int f_objidx;
  obj_to_location(obj, &f_page, &f_objidx);
  size_t f_offset = (static_cast<unsigned long>(class_size) * f_objidx) & ~PAGE_MASK;
  zspage *z = get_zspage(f_page);
  if (!z->huge)
    raw_write_word(page_addr(f_page) + f_offset, static_cast<unsigned long>(z->freeobj)
                                                     << OBJ_TAG_BITS);
  else
    f_page->private_ = 0;
  z->freeobj = f_objidx;
  z->inuse--;
}

// Is the object at addr in page allocated? Then *phandle is its handle.
bool obj_allocated(const struct page *page, const char *addr, unsigned long *phandle) {
  unsigned long handle;
  if (get_zspage(page)->huge)
    handle = page->private_;
  else
    handle = raw_read_word(addr);
  if (!(handle & OBJ_ALLOCATED_TAG)) return false;
  *phandle = handle & ~OBJ_TAG_MASK;
  return true;
}

// The next allocated object starting in page at or after page-local index *obj_idx; 0 if none.
unsigned long find_alloced_obj(const size_class *cls, const zspage *z, const struct page *page,
                               int *obj_idx) {
  unsigned long offset = page->first_obj_offset + static_cast<unsigned long>(cls->size) * *obj_idx;
  unsigned long base = static_cast<unsigned long>(page->index) << PAGE_SHIFT;
  unsigned long end = static_cast<unsigned long>(cls->objs_per_zspage) * cls->size;
  unsigned long handle = 0;
  (void)z;
  while (offset < PAGE_SIZE && base + offset < end) {
    if (obj_allocated(page, page_addr(page) + offset, &handle)) break;
    handle = 0;
    offset += static_cast<unsigned long>(cls->size);
    (*obj_idx)++;
  }
  return handle;
}

// Copies a whole slot (header included) from src to dst: both may span pages.
void zs_object_copy(const size_class *cls, unsigned long dst, unsigned long src) {
  struct page *s_page, *d_page;
  unsigned int s_idx, d_idx;
  obj_to_location(src, &s_page, &s_idx);
  obj_to_location(dst, &d_page, &d_idx);
  size_t s_off = (static_cast<unsigned long>(cls->size) * s_idx) & ~PAGE_MASK;
  size_t d_off = (static_cast<unsigned long>(cls->size) * d_idx) & ~PAGE_MASK;
  span_copy(make_span(d_page, d_off, static_cast<size_t>(cls->size)),
            make_span(s_page, s_off, static_cast<size_t>(cls->size)));
}

// Moves the live objects of src into dst until dst is full or src is empty.
// REQUIRES: pool->lock for writing, cls->lock, src->lock for writing.
// (With the injected compact_unlocked bug, the new locations go to *unrecorded instead.)
void migrate_zspage(size_class *cls, zspage *src, zspage *dst,
                    std::vector<std::pair<unsigned long, unsigned long>> *unrecorded)
    KC_REQUIRES(cls->lock) {
  int obj_idx = 0;
  struct page *s_page = src->first_page;
  for (;;) {
    unsigned long handle = find_alloced_obj(cls, src, s_page, &obj_idx);
    if (!handle) {
      s_page = get_next_page(s_page);
      if (s_page == nullptr) break;
      obj_idx = 0;
      continue;
    }
    unsigned long used_obj = handle_to_obj(handle);
    unsigned long free_obj = obj_malloc(cls, dst, handle);
    zs_object_copy(cls, free_obj, used_obj);
    obj_idx++;
    if (kBugCompactUnlocked) {
      unrecorded->push_back({handle, free_obj});  // injected bug: recorded after unlocking
    } else {
      record_obj(handle, free_obj);
    }
    obj_free(cls->size, used_obj);
    if (dst->inuse == static_cast<unsigned int>(cls->objs_per_zspage)) break;
    if (src->inuse == 0) break;
  }
}

// ---- Quarantine -------------------------------------------------------------------------------------

void quarantine_handle(zs_pool *pool, zs_handle *h) {
  unsigned long slot = pool->q_next.fetch_add(1, std::memory_order_relaxed) % kQuarantineSize;
  zs_handle *evicted = pool->quarantine[slot].exchange(h, std::memory_order_acq_rel);
  if (evicted != nullptr) kmem_cache_free(pool->handle_cachep, evicted);
}

unsigned long quarantined(const zs_pool *pool) {
  unsigned long n = 0;
  for (const auto &slot : pool->quarantine) n += slot.load(std::memory_order_acquire) != nullptr;
  return n;
}

// ---- Pool entry ----------------------------------------------------------------------------------

enum class Entry { kOk, kNotPool, kDying };

Entry pool_enter(zs_pool *pool) {
  if (!t_live_pool.Owns(PoolCache(), g_pools_freed, pool)) return Entry::kNotPool;
  if (!PoolRef(pool).enter()) return Entry::kDying;
  return Entry::kOk;
}

const char *entry_problem(Entry e) {
  return e == Entry::kNotPool
             ? "not a live zsmalloc pool (destroyed, or never created?)"
             : "the pool is being destroyed (call racing zs_destroy_pool()?)";
}

// Exits the PercpuRef entered by ZS_ENTER_POOL.
class PoolExit {
 public:
  explicit PoolExit(zs_pool *pool) : pool_(pool) {}
  ~PoolExit() {
    if (pool_ != nullptr) PoolRef(pool_).exit();
  }
  PoolExit(const PoolExit &) = delete;
  PoolExit &operator=(const PoolExit &) = delete;

 private:
  zs_pool *pool_;
};

// Proves the pool live and enters it (left at scope exit); else reports and returns `ret`.
// A macro so that the report names the API function. ZS_ENTER_POOL_UNLESS(pinned, ...) skips
// both for a pinned call (zsmalloc_pinned.h: the caller's own reference keeps the pool alive).
#define ZS_ENTER_POOL_UNLESS(pinned, pool, ret, fmt, ...)                                      \
  const bool zs_enter_ = ZPOOL_CHECKS && !(pinned);                                          \
  if (zs_enter_) {                                                                           \
    Entry zs_entry_ = pool_enter(pool);                                                      \
    if (zs_entry_ != Entry::kOk) {                                                           \
      ZPOOL_MISUSE(ZPOOL_MISUSE_USE_AFTER_DESTROY, fmt ": %s", __VA_ARGS__,                  \
                   entry_problem(zs_entry_));                                                \
      return ret;                                                                            \
    }                                                                                        \
  }                                                                                          \
  PoolExit zs_pool_exit_(zs_enter_ ? (pool) : nullptr)
#define ZS_ENTER_POOL(pool, ret, fmt, ...) ZS_ENTER_POOL_UNLESS(false, pool, ret, fmt, __VA_ARGS__)

bool handle_owned(const zs_pool *pool, unsigned long handle) {
  return kmem_cache_owns(pool->handle_cachep, reinterpret_cast<const void *>(handle));
}

// ---- Pool teardown ----------------------------------------------------------------------------------

// Frees the handles of the live objects of z (destroy only).
void free_zspage_handles(zs_pool *pool, const size_class *cls, const zspage *z) {
  for (struct page *page = z->first_page; page != nullptr; page = get_next_page(page)) {
    int obj_idx = 0;
    for (;;) {
      unsigned long handle = find_alloced_obj(cls, z, page, &obj_idx);
      if (!handle) break;
      kmem_cache_free(pool->handle_cachep, to_handle(handle));
      obj_idx++;
    }
  }
}

// Frees everything the pool holds and the pool itself. No other thread may use the pool.
void free_pool(zs_pool *pool, bool report_nonempty) KC_NO_THREAD_SAFETY_ANALYSIS {
  for (int i = 0; i < ZS_SIZE_CLASSES; i++) {
    size_class *cls = pool->size_class_of[i];
    if (cls == nullptr || cls->index != static_cast<unsigned int>(i)) continue;
    for (int fg = ZS_INUSE_RATIO_0; fg < NR_FULLNESS_GROUPS; fg++) {
      if (cls->fullness_list[fg].empty()) continue;
      if (report_nonempty) pr_err("Class-%d fullness group %d is not empty\n", cls->size, fg);
      while (zspage *z = cls->fullness_list[fg].front()) {
        free_zspage_handles(pool, cls, z);
        remove_zspage(cls, z);
        __free_zspage(pool, cls, z);
      }
    }
  }
  for (auto &slot : pool->quarantine)
    if (zs_handle *h = slot.exchange(nullptr, std::memory_order_acq_rel))
      kmem_cache_free(pool->handle_cachep, h);
  for (int i = 0; i < ZS_SIZE_CLASSES; i++) {
    size_class *cls = pool->size_class_of[i];
    if (cls == nullptr || cls->index != static_cast<unsigned int>(i)) continue;
    cls->~size_class();
    kfree(cls);
  }
  if (pool->handle_cachep != nullptr) kmem_cache_destroy(pool->handle_cachep);
  if (pool->zspage_cachep != nullptr) kmem_cache_destroy(pool->zspage_cachep);
  if (pool->map != nullptr) PutMapAreas();
  kfree(pool->name);
  pool->~zs_pool();
  g_pools_freed.Free(PoolCache(), pool);
}

// ---- Compaction ---------------------------------------------------------------------------------

unsigned long __zs_compact(zs_pool *pool, size_class *cls) {
  zspage *src = nullptr;
  zspage *dst = nullptr;
  unsigned long pages_freed = 0;
  // Sources found mapped (their trylock failed): isolated until the locks are dropped.
  kc::IntrusiveList<zspage, FullnessList> busy;

  write_lock(&pool->lock);
  spin_lock(&cls->lock);
  while (zs_can_compact(cls)) {
    if (dst == nullptr) {
      dst = isolate_dst_zspage(cls);
      if (dst == nullptr) break;
    }
    src = isolate_src_zspage(cls);
    if (src == nullptr) break;
    if (!write_trylock(&src->lock)) {  // mapped: the kernel waits, we skip it
      busy.push_back(src);
      src = nullptr;
      continue;
    }
    std::vector<std::pair<unsigned long, unsigned long>> unrecorded;
    migrate_zspage(cls, src, dst, &unrecorded);
    write_unlock(&src->lock);
    if (kBugCompactUnlocked && !unrecorded.empty()) {
      // Injected bug (zpool/inject.h): the handles are rewritten with pool->lock dropped, so a
      // map in between finds the old, freed slot.
      spin_unlock(&cls->lock);
      write_unlock(&pool->lock);
      kc::sched_gap(&pool->lock);
      for (auto [handle, obj] : unrecorded) record_obj(handle, obj);
      write_lock(&pool->lock);
      spin_lock(&cls->lock);
    }

    int fg = putback_zspage(cls, src);
    if (fg == ZS_INUSE_RATIO_0) {
      free_zspage(pool, cls, src);
      pages_freed += static_cast<unsigned long>(cls->pages_per_zspage);
    }
    src = nullptr;

    if (get_fullness_group(cls, dst) == ZS_INUSE_RATIO_100 || rwlock_is_contended(&pool->lock) ||
        spin_is_contended(&cls->lock)) {
      putback_zspage(cls, dst);
      dst = nullptr;
      while (zspage *z = busy.pop_front()) putback_zspage(cls, z);
      spin_unlock(&cls->lock);
      write_unlock(&pool->lock);
      cond_resched();
      write_lock(&pool->lock);
      spin_lock(&cls->lock);
    }
  }
  if (src != nullptr) putback_zspage(cls, src);
  if (dst != nullptr) putback_zspage(cls, dst);
  while (zspage *z = busy.pop_front()) putback_zspage(cls, z);
  spin_unlock(&cls->lock);
  write_unlock(&pool->lock);
  return pages_freed;
}

// ---- Validation helpers -----------------------------------------------------------------------------

__attribute__((format(printf, 3, 4))) int fail(char *why, size_t len, const char *fmt, ...) {
  if (why != nullptr && len > 0) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, len, fmt, ap);
    va_end(ap);
  }
  return -EUCLEAN;
}

}  // namespace

// =====================================================================================================
// The API
// =====================================================================================================

struct zs_pool *zs_create_pool(const char *name) {
  gfp_t gfp = GFP_KERNEL;
  if (ZPOOL_CHECKS && kc_in_atomic()) {
    ZPOOL_MISUSE(ZPOOL_MISUSE_SLEEP_WHILE_MAPPED,
                 "zs_create_pool(\"%s\") may sleep, but %s; allocating without direct reclaim",
                 name ? name : "", WhyAtomic().text);
    gfp = GFP_NOWAIT;
  }
  struct kmem_cache *pool_cache = PoolCache();
  if (pool_cache == nullptr) return nullptr;
  void *mem = kmem_cache_alloc(pool_cache, gfp);
  if (mem == nullptr) return nullptr;
  auto *pool = new (mem) zs_pool();
  PoolRef(pool).abort_destroy();  // the slot's count was left dying by the pool freed from it

  size_t name_len = name ? strlen(name) : 0;
  pool->name = static_cast<char *>(kmalloc(name_len + 1, gfp));
  if (pool->name == nullptr) goto err;
  memcpy(pool->name, name ? name : "", name_len + 1);

  pool->map = GetMapAreas(gfp);
  if (pool->map == nullptr) goto err;
  pool->handle_cachep = kmem_cache_create("zs_handle", sizeof(zs_handle), alignof(zs_handle));
  pool->zspage_cachep = kmem_cache_create("zspage", sizeof(zspage), alignof(zspage));
  if (pool->handle_cachep == nullptr || pool->zspage_cachep == nullptr) goto err;

  {
    // From the largest class down: a class like the one above it is merged into it.
    size_class *prev_class = nullptr;
    for (int i = ZS_SIZE_CLASSES - 1; i >= 0; i--) {
      unsigned long size = ZS_MIN_ALLOC_SIZE + static_cast<unsigned long>(i) * ZS_SIZE_CLASS_DELTA;
      if (size > ZS_MAX_ALLOC_SIZE) size = ZS_MAX_ALLOC_SIZE;
      int pages_per_zspage = calculate_zspage_chain_size(static_cast<int>(size));
      int objs_per_zspage = static_cast<int>(pages_per_zspage * PAGE_SIZE / size);

      // The first class from the top that is not huge: objects of this size or more (less the
      // header zs_malloc adds) land in a huge class.
      if (pages_per_zspage != 1 && objs_per_zspage != 1 && !pool->huge_class_size)
        pool->huge_class_size = size - (ZS_HANDLE_SIZE - 1);

      if (prev_class != nullptr && can_merge(prev_class, pages_per_zspage, objs_per_zspage)) {
        pool->size_class_of[i] = prev_class;
        continue;
      }
      void *cmem = kmalloc(sizeof(size_class), gfp);
      if (cmem == nullptr) goto err;
      auto *cls = new (cmem) size_class(static_cast<int>(size), pages_per_zspage,
                                        objs_per_zspage, static_cast<unsigned int>(i));
      pool->size_class_of[i] = cls;
      prev_class = cls;
    }
  }
  return pool;

err:
  free_pool(pool, false);
  return nullptr;
}

void zs_destroy_pool(struct zs_pool *pool) {
  if (ZPOOL_CHECKS && !kmem_cache_owns(PoolCache(), pool)) {
    ZPOOL_MISUSE(ZPOOL_MISUSE_USE_AFTER_DESTROY,
                 "zs_destroy_pool(%p): not a live zsmalloc pool (destroyed twice?)",
                 static_cast<void *>(pool));
    return;
  }
  bool expected = false;
  if (ZPOOL_CHECKS) kc::sched_atomic(&pool->destroy_started);
  if (ZPOOL_CHECKS && !pool->destroy_started.compare_exchange_strong(expected, true)) {
    ZPOOL_MISUSE(ZPOOL_MISUSE_USE_AFTER_DESTROY,
                 "zs_destroy_pool(%p \"%s\"): its destruction has already begun (destroyed "
                 "twice, or from two threads?)",
                 static_cast<void *>(pool), pool->name);
    return;
  }
  if (ZPOOL_CHECKS && t_maps > 0) {
    // The destroyer maps a handle of this very pool: destroy-busy (as zpool and zbud report
    // it). A mapping of another pool only makes the destroy a may-sleep call in atomic context.
    if (t_map_pool == pool) {
      pool->destroy_started.store(false);
      ZPOOL_MISUSE(ZPOOL_MISUSE_DESTROY_BUSY,
                   "zs_destroy_pool(%p \"%s\"): this thread maps one of its handles on cpu %d "
                   "(missing zs_unmap_object()?); refused, the pool stays usable",
                   static_cast<void *>(pool), pool->name, kc_current_cpu());
      return;
    }
    ZPOOL_MISUSE(ZPOOL_MISUSE_SLEEP_WHILE_MAPPED,
                 "zs_destroy_pool(%p \"%s\") may sleep, but this thread holds a mapping of "
                 "pool %p on cpu %d (missing zs_unmap_object()?); destroying without sleeping",
                 static_cast<void *>(pool), pool->name, static_cast<void *>(t_map_pool),
                 kc_current_cpu());
  }
  if (ZPOOL_CHECKS) {
    long in_flight = PoolRef(pool).begin_destroy();
    kc::sched_atomic(&pool->nr_mapped);
    long mapped = pool->nr_mapped.load(std::memory_order_seq_cst);
    if (in_flight != 0 || mapped != 0) {
      PoolRef(pool).abort_destroy();
      pool->destroy_started.store(false);
      ZPOOL_MISUSE(ZPOOL_MISUSE_DESTROY_BUSY,
                   "zs_destroy_pool(%p \"%s\"): %ld calls in flight and %ld handles mapped; "
                   "refused, the pool stays usable (destroy racing other calls, or missing "
                   "zs_unmap_object()?)",
                   static_cast<void *>(pool), pool->name, in_flight, mapped);
      return;
    }
  }
  unsigned long objects = 0;
  for (int i = 0; i < ZS_SIZE_CLASSES; i++) {
    size_class *cls = pool->size_class_of[i];
    if (cls->index != static_cast<unsigned int>(i)) continue;
    kc::SpinLockGuard guard(cls->lock);
    objects += cls->stats[ZS_OBJS_INUSE];
  }
  if (ZPOOL_CHECKS && objects != 0) {
    ZPOOL_MISUSE(ZPOOL_MISUSE_DESTROY_NONEMPTY,
                 "zs_destroy_pool(%p \"%s\"): %lu objects in %lu pages still allocated; freeing "
                 "them (missing zs_free()?)",
                 static_cast<void *>(pool), pool->name, objects,
                 pool->pages_allocated.load(std::memory_order_relaxed));
  }
  free_pool(pool, true);
}

namespace {

unsigned long Malloc(struct zs_pool *pool, size_t size, gfp_t gfp, bool pinned) {
  ZS_ENTER_POOL_UNLESS(pinned, pool, reinterpret_cast<unsigned long>(ERR_PTR(-EINVAL)),
                       "zs_malloc(%p, %zu, %#x)", static_cast<void *>(pool), size, gfp);
  if (__builtin_expect(size == 0, 0)) return reinterpret_cast<unsigned long>(ERR_PTR(-EINVAL));
  if (__builtin_expect(size > ZS_MAX_ALLOC_SIZE, 0))
    return reinterpret_cast<unsigned long>(ERR_PTR(-ENOSPC));
  if (ZPOOL_CHECKS && gfpflags_allow_blocking(gfp) && __builtin_expect(kc_in_atomic(), 0)) {
    ZPOOL_MISUSE(ZPOOL_MISUSE_SLEEP_WHILE_MAPPED,
                 "zs_malloc(%p, %zu, %#x) may sleep, but %s; allocating without direct reclaim",
                 static_cast<void *>(pool), size, gfp, WhyAtomic().text);
    gfp &= ~__GFP_DIRECT_RECLAIM;
  }

  void *hmem = kmem_cache_alloc(pool->handle_cachep, gfp & ~(__GFP_HIGHMEM | __GFP_MOVABLE));
  if (hmem == nullptr) return reinterpret_cast<unsigned long>(ERR_PTR(-ENOMEM));
  auto *h = static_cast<zs_handle *>(hmem);
  h->obj.store(0, std::memory_order_relaxed);
  h->state.store(size, std::memory_order_relaxed);
  unsigned long handle = reinterpret_cast<unsigned long>(h);

  // Extra space in the object for its handle.
  size_class *cls = pool->size_class_of[get_size_class_index(size + ZS_HANDLE_SIZE)];

  spin_lock(&cls->lock);
  if (zspage *z = find_get_zspage(cls)) {
    SlotAt at;
    unsigned long obj = obj_malloc(cls, z, handle, &at);
    prepare_new_object(cls, z, at, size);
    fix_fullness_group(cls, z);
    record_obj(handle, obj);
    cls->stats[ZS_OBJS_INUSE]++;
    spin_unlock(&cls->lock);
    return handle;
  }
  spin_unlock(&cls->lock);

  zspage *z = alloc_zspage(pool, cls, gfp);
  if (z == nullptr) {
    kmem_cache_free(pool->handle_cachep, h);
    return reinterpret_cast<unsigned long>(ERR_PTR(-ENOMEM));
  }

  spin_lock(&cls->lock);
  SlotAt at;
  unsigned long obj = obj_malloc(cls, z, handle, &at);
  prepare_new_object(cls, z, at, size);
  insert_zspage(cls, z, get_fullness_group(cls, z));
  record_obj(handle, obj);
  pool->pages_allocated.fetch_add(static_cast<unsigned long>(cls->pages_per_zspage),
                                  std::memory_order_relaxed);
  cls->stats[ZS_OBJS_ALLOCATED] += static_cast<unsigned long>(cls->objs_per_zspage);
  cls->stats[ZS_OBJS_INUSE]++;
  spin_unlock(&cls->lock);
  return handle;
}

}  // namespace

unsigned long zs_malloc(struct zs_pool *pool, size_t size, gfp_t gfp) {
  return Malloc(pool, size, gfp, false);
}

unsigned long zs_malloc_pinned(struct zs_pool *pool, size_t size, gfp_t gfp) {
  return Malloc(pool, size, gfp, true);
}

namespace {

void Free(struct zs_pool *pool, unsigned long handle, bool pinned) {
  ZS_ENTER_POOL_UNLESS(pinned, pool, , "zs_free(%p, %#lx)", static_cast<void *>(pool), handle);
  if (ZPOOL_CHECKS && !handle_owned(pool, handle)) {
    ZPOOL_MISUSE(ZPOOL_MISUSE_INVALID_HANDLE,
                 "zs_free(%p \"%s\", %#lx): not a handle of this pool (garbage, 0, another "
                 "pool's, or freed long ago?); ignored",
                 static_cast<void *>(pool), pool->name, handle);
    return;
  }
  zs_handle *h = to_handle(handle);

  read_lock(&pool->lock);
  unsigned long st = lock_state(h);
  if (ZPOOL_CHECKS && (st & (kStateFreed | kStateMapMask))) {
    unlock_state(h, st);
    read_unlock(&pool->lock);
    if (st & kStateFreed)
      ZPOOL_MISUSE(ZPOOL_MISUSE_DOUBLE_FREE,
                   "zs_free(%p \"%s\", %#lx): handle is already free (double free); ignored",
                   static_cast<void *>(pool), pool->name, handle);
    else
      ZPOOL_MISUSE(ZPOOL_MISUSE_FREE_MAPPED,
                   "zs_free(%p \"%s\", %#lx): handle is mapped on %lu CPU(s) (missing "
                   "zs_unmap_object()?); refused, the object stays allocated",
                   static_cast<void *>(pool), pool->name, handle,
                   (st & kStateMapMask) / kStateMapOne);
    return;
  }
  unlock_state(h, (st & kStateSizeMask) | kStateFreed);

  unsigned long obj = handle_to_obj(handle);
  struct page *f_page;
  unsigned int f_idx;
  obj_to_location(obj, &f_page, &f_idx);
  zspage *z = get_zspage(f_page);
  size_class *cls = class_of(pool, z);

  if (kBugFreeLockGap) {  // injected bug (zpool/inject.h): class->lock after pool->lock is gone
    read_unlock(&pool->lock);
    kc::sched_gap(&pool->lock);
    spin_lock(&cls->lock);
  } else {
    spin_lock(&cls->lock);
    read_unlock(&pool->lock);
  }
  cls->stats[ZS_OBJS_INUSE]--;
  obj_free(cls->size, obj);
  h->obj.store(0, std::memory_order_relaxed);
  if (fix_fullness_group(cls, z) == ZS_INUSE_RATIO_0) free_zspage(pool, cls, z);
  spin_unlock(&cls->lock);

  quarantine_handle(pool, h);
}

}  // namespace

void zs_free(struct zs_pool *pool, unsigned long handle) { Free(pool, handle, false); }

void zs_free_pinned(struct zs_pool *pool, unsigned long handle) { Free(pool, handle, true); }

size_t zs_huge_class_size(struct zs_pool *pool) {
  ZS_ENTER_POOL(pool, 0, "zs_huge_class_size(%p)", static_cast<void *>(pool));
  return pool->huge_class_size;
}

// Returns with pool-independent state held until zs_unmap_object(): the zspage read lock, this
// CPU's map area and its local_lock (the analysis cannot follow a lock across two calls).
namespace {

void *MapObject(struct zs_pool *pool, unsigned long handle, enum zs_mapmode mm, bool pinned)
    KC_NO_THREAD_SAFETY_ANALYSIS {
  ZS_ENTER_POOL_UNLESS(pinned, pool, nullptr, "zs_map_object(%p, %#lx, %d)",
                       static_cast<void *>(pool), handle, static_cast<int>(mm));
  if (ZPOOL_CHECKS && !handle_owned(pool, handle)) {
    ZPOOL_MISUSE(ZPOOL_MISUSE_INVALID_HANDLE,
                 "zs_map_object(%p \"%s\", %#lx): not a handle of this pool (garbage, 0, "
                 "another pool's, or freed long ago?); returning NULL",
                 static_cast<void *>(pool), pool->name, handle);
    return nullptr;
  }
  zs_handle *h = to_handle(handle);
  // A freed handle is reported below, under the state lock; only a nested map must first rule it
  // out (docs/hardening.md's order: double-free before nested-map).
  if (ZPOOL_CHECKS && t_maps > 0 && (h->state.load(std::memory_order_acquire) & kStateFreed)) {
    ZPOOL_MISUSE(ZPOOL_MISUSE_DOUBLE_FREE,
                 "zs_map_object(%p \"%s\", %#lx): handle was freed (use after zs_free()); "
                 "returning NULL",
                 static_cast<void *>(pool), pool->name, handle);
    return nullptr;
  }
  if (ZPOOL_CHECKS && t_maps > 0) {
    ZPOOL_MISUSE(ZPOOL_MISUSE_NESTED_MAP,
                 "zs_map_object(%p \"%s\", %#lx) on cpu %d: this thread already holds a mapping "
                 "of pool %p (only one object may be mapped per CPU; missing "
                 "zs_unmap_object()?); returning NULL",
                 static_cast<void *>(pool), pool->name, handle, kc_current_cpu(),
                 static_cast<void *>(t_map_pool));
    return nullptr;
  }
  if (mm != ZS_MM_RO && mm != ZS_MM_WO) mm = ZS_MM_RW;

  // The pool lock guarantees that the handle -> zspage lookup is stable.
  read_lock(&pool->lock);
  unsigned long st = lock_state(h);
  if (ZPOOL_CHECKS && (st & kStateFreed)) {
    unlock_state(h, st);
    read_unlock(&pool->lock);
    ZPOOL_MISUSE(ZPOOL_MISUSE_DOUBLE_FREE,
                 "zs_map_object(%p \"%s\", %#lx): handle was freed (use after zs_free()); "
                 "returning NULL",
                 static_cast<void *>(pool), pool->name, handle);
    return nullptr;
  }
  unlock_state(h, st + kStateMapOne);
  unsigned long obj = handle_to_obj(handle);
  struct page *page;
  unsigned int obj_idx;
  obj_to_location(obj, &page, &obj_idx);
  zspage *z = get_zspage(page);
  // Compaction cannot move the zspage's objects while we hold this. No writer can hold it (its
  // only writer holds pool->lock for writing), so the trylock cannot fail; the loop only keeps
  // the thread-safety analysis simple.
  if (kBugMapLockGap) {  // injected bug (zpool/inject.h): the zspage lock after pool->lock
    read_unlock(&pool->lock);
    kc::sched_gap(&pool->lock);
  }
  unsigned spins = 0;
  while (!read_trylock(&z->lock)) kc::WaitSpin(spins, &z->lock);
  if (!kBugMapLockGap) read_unlock(&pool->lock);

  size_class *cls = class_of(pool, z);
  unsigned int off = static_cast<unsigned int>((static_cast<unsigned long>(cls->size) * obj_idx) &
                                               ~PAGE_MASK);

  // This CPU's area. A second thread on this CPU is the concurrent-map misuse: it waits here for
  // the area instead of sharing it (local_lock would WARN about the same thing; this reports it
  // as the misuse and keeps local_lock uncontended).
  MapAreas *m = pool->map;
  int cpu = kc_current_cpu();
  MapArea &area = m->areas[cpu];
  pid_t me = kc::CurrentTid();
  pid_t holder = 0;
  kc::sched_atomic(&area);
  if (!area.owner.compare_exchange_strong(holder, me, std::memory_order_acquire)) {
    if (ZPOOL_CHECKS)
      ZPOOL_MISUSE(ZPOOL_MISUSE_CONCURRENT_MAP,
                   "zs_map_object(%p \"%s\", %#lx) on cpu %d: tid %d holds this CPU's mapping "
                   "area, tid %d entered (two threads bound to one virtual CPU?); waiting for it",
                   static_cast<void *>(pool), pool->name, handle, cpu, static_cast<int>(holder),
                   static_cast<int>(me));
    spins = 0;
    do {
      kc::WaitSpin(spins, &area);
      holder = 0;
    } while (!area.owner.compare_exchange_weak(holder, me, std::memory_order_acquire));
  }
  m->lock.lock();

  area.pool = pool;
  area.handle = handle;
  area.mm = mm;
  area.zspage_ = z;
  area.page = page;
  area.off = off;
  area.slot = static_cast<unsigned int>(cls->size);
  area.hdr = z->huge ? 0 : static_cast<unsigned int>(ZS_HANDLE_SIZE);
  area.req = static_cast<unsigned int>(st & kStateSizeMask);
  char *ret;
  if (off + static_cast<unsigned long>(cls->size) <= PAGE_SIZE) {
    // The object is inside one page: mapped in place.
    area.spanning = false;
    ret = page_addr(page) + off + area.hdr;
    if (kc::kAsan) {  // shared with other CPUs mapping the same object: under its bit lock
      unsigned long s = lock_state(h);
      kc::asan_unpoison(ret, area.req);
      unlock_state(h, s + kStateViewOne);
    }
  } else {
    // The object spans two pages: work on a copy in this CPU's buffer.
    area.spanning = true;
    char *buf = area.vm_buf;
    if (mm != ZS_MM_WO) {
      span_copy_out(buf, make_span(page, off, area.slot));
    } else {
      kc::msan_mark_uninitialized(buf + area.hdr, area.req);
      if (ZPOOL_CHECKS)
        redzone_fill(buf + area.hdr + area.req, redzone_len(area.slot, area.hdr, area.req));
    }
    ret = buf + area.hdr;
    kc::asan_unpoison(ret, area.req);
  }
  area.checksummed = ZPOOL_CHECKS && mm == ZS_MM_RO && kc_hardening_full();
  if (area.checksummed) {
    area.checksum = raw_checksum(ret, area.req);
  }
  area.ptr = ret;

  t_maps++;
  t_map_pool = pool;
  kc::sched_atomic(&pool->nr_mapped);
  pool->nr_mapped.fetch_add(1, std::memory_order_seq_cst);
  return ret;
}

}  // namespace

void *zs_map_object(struct zs_pool *pool, unsigned long handle, enum zs_mapmode mm) {
  return MapObject(pool, handle, mm, false);
}

void *zs_map_object_pinned(struct zs_pool *pool, unsigned long handle, enum zs_mapmode mm) {
  return MapObject(pool, handle, mm, true);
}

void zs_unmap_object(struct zs_pool *pool, unsigned long handle) KC_NO_THREAD_SAFETY_ANALYSIS {
  int cpu = kc_current_cpu();
  pid_t me = kc::CurrentTid();
  // The common case: this thread's area records exactly this pool and handle. The mapping proves
  // both live (zs_destroy_pool() refuses while it exists, zs_free() refuses the handle), so only
  // a call that does not match needs the checks, to name its misuse. pool is not dereferenced
  // until it matched (the area's pool is compared by value).
  MapArea *area_p = nullptr;
  if (MapAreas *m = g_registry_areas.load(std::memory_order_acquire)) {
    MapArea &a = m->areas[cpu];
    if (a.owner.load(std::memory_order_acquire) == me && a.pool == pool && a.handle == handle)
      area_p = &a;
  }
  if (ZPOOL_CHECKS && area_p == nullptr) {
    // Name the misuse, in docs/hardening.md's order.
    if (!kmem_cache_owns(PoolCache(), pool)) {
      ZPOOL_MISUSE(ZPOOL_MISUSE_USE_AFTER_DESTROY,
                   "zs_unmap_object(%p, %#lx): not a live zsmalloc pool (destroyed, or never "
                   "created?)",
                   static_cast<void *>(pool), handle);
    } else if (!handle_owned(pool, handle)) {
      ZPOOL_MISUSE(ZPOOL_MISUSE_INVALID_HANDLE,
                   "zs_unmap_object(%p \"%s\", %#lx): not a handle of this pool (garbage, 0, "
                   "another pool's, or freed long ago?); ignored",
                   static_cast<void *>(pool), pool->name, handle);
    } else if (to_handle(handle)->state.load(std::memory_order_acquire) & kStateFreed) {
      ZPOOL_MISUSE(ZPOOL_MISUSE_DOUBLE_FREE,
                   "zs_unmap_object(%p \"%s\", %#lx): handle was freed (use after zs_free()); "
                   "ignored",
                   static_cast<void *>(pool), pool->name, handle);
    } else {
      bool mine = pool->map->areas[cpu].owner.load(std::memory_order_acquire) == me;
      ZPOOL_MISUSE(ZPOOL_MISUSE_BAD_UNMAP,
                   "zs_unmap_object(%p \"%s\", %#lx) on cpu %d: %s (unbalanced unmap, or unmap "
                   "on another CPU or thread than the map?); ignored",
                   static_cast<void *>(pool), pool->name, handle, cpu,
                   mine ? "this CPU has another handle mapped" : "not mapped by this thread");
    }
    return;
  }
  if (area_p == nullptr) area_p = &pool->map->areas[cpu];  // unchecked build: trust the caller
  MapArea &area = *area_p;
  zs_handle *h = to_handle(handle);

  // Detect misuse before the bytes move; report after the mapping is released.
  enum zpool_misuse verdict = ZPOOL_MISUSE_NONE;
  size_t bad_at = 0;
  char *ret = area.ptr;
  size_t rz = redzone_len(area.slot, area.hdr, area.req);
  if (ZPOOL_CHECKS && rz) {
    size_t i = redzone_damage(ret + area.req, rz);
    if (i < rz) {
      verdict = ZPOOL_MISUSE_OVERFLOW;
      bad_at = i;
      if (!area.spanning) redzone_fill(ret + area.req, rz);  // restore it
    }
  }
  if (ZPOOL_CHECKS && verdict == ZPOOL_MISUSE_NONE && area.checksummed) {
    u64 now = raw_checksum(ret, area.req);
    if (now != area.checksum) verdict = ZPOOL_MISUSE_WRITE_RO;
  }

  // Every change of the state word is made under its bit lock (a free that refuses writes back
  // the state it read). The order below matters: the object and its zspage stay pinned by the
  // zspage read lock (against compaction) and by the map count (against zs_free, which would
  // free an emptied zspage with its lock): poison while both are held, release the zspage lock,
  // and drop the map count last, touching nothing after it.
  if (area.spanning) {
    // Copy back only what the user owns: the redzone stays intact. (Injected bug: not for RW.)
    if (kBugSpanCopyback ? area.mm == ZS_MM_WO : area.mm != ZS_MM_RO)
      span_copy_in(make_span(area.page, area.off + area.hdr, area.req), ret);
    kc::asan_poison(ret, area.req);
  } else if (kc::kAsan) {
    unsigned long s = lock_state(h);
    if ((s & kStateViewMask) == kStateViewOne)
      kc::asan_poison(ret, area.req);  // the last CPU that had it mapped in place
    unlock_state(h, s - kStateViewOne);
  }

  zspage *z = area.zspage_;
  unsigned int req = area.req;
  enum zs_mapmode mm = area.mm;
  area.pool = nullptr;
  area.handle = 0;
  area.ptr = nullptr;
  pool->map->lock.unlock();
  area.owner.store(0, std::memory_order_release);
  kc::sched_atomic(&area);  // a second thread of this CPU waits for the area
  read_unlock(&z->lock);
  unsigned long st = lock_state(h);
  unlock_state(h, st - kStateMapOne);
  t_maps--;
  if (t_maps == 0) t_map_pool = nullptr;

  if (verdict == ZPOOL_MISUSE_OVERFLOW)
    ZPOOL_MISUSE(ZPOOL_MISUSE_OVERFLOW,
                 "zs_unmap_object(%p \"%s\", %#lx): write past the requested %u bytes (redzone "
                 "byte %zu overwritten) while mapped %s on cpu %d (buffer overflow?)",
                 static_cast<void *>(pool), pool->name, handle, req, bad_at,
                 mm == ZS_MM_RO ? "RO" : mm == ZS_MM_WO ? "WO" : "RW", cpu);
  else if (verdict == ZPOOL_MISUSE_WRITE_RO)
    ZPOOL_MISUSE(ZPOOL_MISUSE_WRITE_RO,
                 "zs_unmap_object(%p \"%s\", %#lx): the object (%u bytes) changed while mapped "
                 "ZS_MM_RO on cpu %d (write through a read-only mapping? map it RW)",
                 static_cast<void *>(pool), pool->name, handle, req, cpu);
  // Last: until now the mapping keeps zs_destroy_pool() from freeing the pool (and its name).
  kc::sched_atomic(&pool->nr_mapped);
  pool->nr_mapped.fetch_sub(1, std::memory_order_seq_cst);
}

unsigned long zs_get_total_pages(struct zs_pool *pool) {
  ZS_ENTER_POOL(pool, 0, "zs_get_total_pages(%p)", static_cast<void *>(pool));
  return pool->pages_allocated.load(std::memory_order_relaxed);
}

unsigned long zs_compact(struct zs_pool *pool) {
  ZS_ENTER_POOL(pool, 0, "zs_compact(%p)", static_cast<void *>(pool));
  if (ZPOOL_CHECKS && kc_in_atomic()) {
    ZPOOL_MISUSE(ZPOOL_MISUSE_SLEEP_WHILE_MAPPED,
                 "zs_compact(%p \"%s\") may sleep, but %s; refused, nothing compacted",
                 static_cast<void *>(pool), pool->name, WhyAtomic().text);
    return 0;
  }
  // Compaction runs under pool->lock: a second one at the same time would only contend.
  kc::sched_atomic(&pool->compaction_in_progress);
  if (pool->compaction_in_progress.exchange(1, std::memory_order_acq_rel)) return 0;
  unsigned long pages_freed = 0;
  for (int i = ZS_SIZE_CLASSES - 1; i >= 0; i--) {
    size_class *cls = pool->size_class_of[i];
    if (cls->index != static_cast<unsigned int>(i)) continue;
    pages_freed += __zs_compact(pool, cls);
  }
  pool->pages_compacted.fetch_add(pages_freed, std::memory_order_relaxed);
  pool->compaction_in_progress.store(0, std::memory_order_release);
  kc::sched_atomic(&pool->compaction_in_progress);
  return pages_freed;
}

void zs_pool_stats(struct zs_pool *pool, struct zs_pool_stats *stats) {
  ZS_ENTER_POOL(pool, , "zs_pool_stats(%p)", static_cast<void *>(pool));
  stats->pages_compacted = pool->pages_compacted.load(std::memory_order_relaxed);
}

// ---- Beyond the contract ----------------------------------------------------------------------

int zs_chain_size(void) { return ZS_MAX_PAGES_PER_ZSPAGE; }

int zs_lookup_class(struct zs_pool *pool, size_t size, struct zs_class_info *info) {
  ZS_ENTER_POOL(pool, -EINVAL, "zs_lookup_class(%p, %zu)", static_cast<void *>(pool), size);
  if (size == 0) return -EINVAL;
  if (size > ZS_MAX_ALLOC_SIZE) return -ENOSPC;
  const size_class *cls = pool->size_class_of[get_size_class_index(size + ZS_HANDLE_SIZE)];
  info->index = static_cast<int>(cls->index);
  info->size = static_cast<unsigned int>(cls->size);
  info->pages_per_zspage = cls->pages_per_zspage;
  info->objs_per_zspage = cls->objs_per_zspage;
  info->huge = cls->objs_per_zspage == 1 && cls->pages_per_zspage == 1;
  return 0;
}

int zs_class_stats(struct zs_pool *pool, int index, struct zs_class_stats *stats) {
  ZS_ENTER_POOL(pool, -EINVAL, "zs_class_stats(%p, %d)", static_cast<void *>(pool), index);
  if (index < 0 || index >= ZS_SIZE_CLASSES) return -EINVAL;
  size_class *cls = pool->size_class_of[index];
  static_assert(int{ZS_FULLNESS_GROUPS} == int{NR_FULLNESS_GROUPS}, "the header's group count");
  kc::SpinLockGuard guard(cls->lock);
  stats->index = static_cast<int>(cls->index);
  stats->size = static_cast<unsigned int>(cls->size);
  stats->pages_per_zspage = cls->pages_per_zspage;
  stats->objs_per_zspage = cls->objs_per_zspage;
  for (int fg = 0; fg < NR_FULLNESS_GROUPS; fg++) stats->zspages[fg] = cls->stats[fg];
  stats->objs_allocated = cls->stats[ZS_OBJS_ALLOCATED];
  stats->objs_inuse = cls->stats[ZS_OBJS_INUSE];
  return 0;
}

// Checks, under pool->lock (write) and each class->lock in turn: every zspage's magic, class,
// huge bit, page chain and page fields; inuse equals the objects whose header (or page) carries
// the allocated tag; the free list holds exactly objs_per_zspage - inuse distinct free objects;
// the zspage sits on the fullness list its ratio names and the class stats agree; each live
// object's handle is a live handle of this pool whose obj points back at the object and whose
// requested size belongs to the class; unmapped objects' redzones are intact. Pool-wide: pages
// counted == zs_get_total_pages(), zspage structs == zspages counted, and handle objects in use
// == live objects + quarantined handles (this last one needs no zs_malloc()/zs_free() in flight).
int zs_validate_TestOnly(struct zs_pool *pool, char *why, size_t len)
    KC_NO_THREAD_SAFETY_ANALYSIS {
  ZS_ENTER_POOL(pool, -EINVAL, "zs_validate_TestOnly(%p)", static_cast<void *>(pool));
  kc::WriteLockGuard pool_guard(pool->lock);
  unsigned long pages = 0, zspages = 0, live = 0;
  for (int i = 0; i < ZS_SIZE_CLASSES; i++) {
    size_class *cls = pool->size_class_of[i];
    if (cls == nullptr) return fail(why, len, "class %d missing", i);
    if (cls->index != static_cast<unsigned int>(i)) {
      if (cls->index < static_cast<unsigned int>(i) || pool->size_class_of[cls->index] != cls)
        return fail(why, len, "class %d merged into a bad class %u", i, cls->index);
      continue;
    }
    kc::SpinLockGuard guard(cls->lock);
    const bool huge_class = cls->objs_per_zspage == 1 && cls->pages_per_zspage == 1;
    const unsigned int nobjs = static_cast<unsigned int>(cls->objs_per_zspage);
    unsigned long class_zspages = 0, class_inuse = 0;
    if (!cls->fullness_list[ZS_INUSE_RATIO_0].empty())
      return fail(why, len, "class %d: an empty zspage was not freed", cls->size);
    for (int fg = ZS_INUSE_RATIO_0; fg < NR_FULLNESS_GROUPS; fg++) {
      if (cls->stats[fg] != cls->fullness_list[fg].size())
        return fail(why, len, "class %d: stats say %lu zspages in group %d, list has %zu",
                    cls->size, cls->stats[fg], fg, cls->fullness_list[fg].size());
      int err = 0;
      cls->fullness_list[fg].for_each([&](zspage *z) {
        if (err) return;
        if (z->magic != ZSPAGE_MAGIC || z->pool != pool || z->class_idx != cls->index ||
            z->huge != (huge_class ? 1u : 0u) || static_cast<int>(z->fullness) != fg) {
          err = fail(why, len, "class %d: zspage %p has bad metadata (magic %#x class %u huge "
                     "%u fullness %u, on list %d)", cls->size, static_cast<void *>(z),
                     z->magic, z->class_idx, z->huge, z->fullness, fg);
          return;
        }
        if (get_fullness_group(cls, z) != fg) {
          err = fail(why, len, "class %d: zspage %p with %u/%d in use is on list %d", cls->size,
                     static_cast<void *>(z), z->inuse, cls->objs_per_zspage, fg);
          return;
        }
        // The page chain.
        int n = 0;
        for (struct page *page = z->first_page; page != nullptr; page = page->next, n++) {
          // The first object that starts in page n starts at the first multiple of the class
          // size at or after n * PAGE_SIZE.
          unsigned long start = static_cast<unsigned long>(n) << PAGE_SHIFT;
          unsigned long expect_off =
              DIV_ROUND_UP(start, static_cast<unsigned long>(cls->size)) *
                  static_cast<unsigned long>(cls->size) - start;
          if (n >= cls->pages_per_zspage || !kc::PageIsAllocated(page) || page->zspage != z ||
              page->owner != pool || page->index != static_cast<unsigned int>(n) ||
              page->first_obj_offset != expect_off ||
              ((page->flags & PG_private) != 0) != (n == 0) ||
              ((page->flags & PG_owner_priv_1) != 0) != (huge_class && n == 0)) {
            err = fail(why, len, "class %d: zspage %p page %d has bad fields", cls->size,
                       static_cast<void *>(z), n);
            return;
          }
        }
        if (n != cls->pages_per_zspage) {
          err = fail(why, len, "class %d: zspage %p has %d pages, not %d", cls->size,
                     static_cast<void *>(z), n, cls->pages_per_zspage);
          return;
        }
        // Objects: allocated ones and the free list.
        std::vector<unsigned char> state(nobjs, 0);  // 1 allocated, 2 on the free list
        unsigned int allocated = 0;
        for (unsigned int idx = 0; idx < nobjs; idx++) {
          unsigned int off;
          struct page *page = slot_location(cls, z, idx, &off);
          unsigned long handle;
          if (!obj_allocated(page, page_addr(page) + off, &handle)) continue;
          state[idx] = 1;
          allocated++;
          if (!kmem_cache_owns(pool->handle_cachep, reinterpret_cast<void *>(handle))) {
            err = fail(why, len, "class %d: object %u of zspage %p has handle %#lx, not a live "
                       "handle of this pool", cls->size, idx, static_cast<void *>(z), handle);
            return;
          }
          zs_handle *h = to_handle(handle);
          unsigned long st = h->state.load(std::memory_order_acquire);
          unsigned long obj = h->obj.load(std::memory_order_relaxed);
          unsigned long req = st & kStateSizeMask;
          unsigned int hdr = huge_class ? 0 : static_cast<unsigned int>(ZS_HANDLE_SIZE);
          if ((st & kStateFreed) || obj != (location_to_obj(page, idx) | OBJ_ALLOCATED_TAG)) {
            err = fail(why, len, "class %d: handle %#lx of object %u of zspage %p does not "
                       "point back (state %#lx obj %#lx)", cls->size, handle, idx,
                       static_cast<void *>(z), st, obj);
            return;
          }
          if (req == 0 || req > ZS_MAX_ALLOC_SIZE || req + hdr > static_cast<unsigned>(cls->size) ||
              pool->size_class_of[get_size_class_index(req + ZS_HANDLE_SIZE)] != cls) {
            err = fail(why, len, "class %d: handle %#lx records size %lu, not of this class",
                       cls->size, handle, req);
            return;
          }
          size_t rz = redzone_len(static_cast<unsigned int>(cls->size), hdr,
                                  static_cast<unsigned int>(req));
          if (ZPOOL_CHECKS && rz && !(st & kStateMapMask)) {
            Span s = make_span(page, off + hdr + req, rz);
            size_t bad = span_redzone_damage(s);
            if (bad < rz) {
              err = fail(why, len, "class %d: handle %#lx (%lu bytes): redzone byte %zu "
                         "overwritten", cls->size, handle, req, bad);
              return;
            }
          }
        }
        if (allocated != z->inuse) {
          err = fail(why, len, "class %d: zspage %p has inuse %u but %u allocated objects",
                     cls->size, static_cast<void *>(z), z->inuse, allocated);
          return;
        }
        unsigned int free_count = 0;
        unsigned int idx = z->freeobj;
        for (unsigned int k = 0; k < nobjs - z->inuse; k++) {
          if (idx >= nobjs || state[idx] != 0) {
            err = fail(why, len, "class %d: zspage %p free list: entry %u is object %u (%s)",
                       cls->size, static_cast<void *>(z), k, idx,
                       idx >= nobjs ? "out of range" : state[idx] == 1 ? "allocated" : "repeated");
            return;
          }
          state[idx] = 2;
          free_count++;
          unsigned int off;
          struct page *page = slot_location(cls, z, idx, &off);
          unsigned long link = raw_read_word(page_addr(page) + off);
          if (link & OBJ_TAG_MASK) {
            err = fail(why, len, "class %d: zspage %p free object %u carries the allocated tag",
                       cls->size, static_cast<void *>(z), idx);
            return;
          }
          idx = static_cast<unsigned int>(link >> OBJ_TAG_BITS);
        }
        if (free_count != nobjs - z->inuse ||
            (z->inuse < nobjs && idx != static_cast<unsigned int>(FREE_LIST_END >> OBJ_TAG_BITS))) {
          err = fail(why, len, "class %d: zspage %p free list does not end after %u objects",
                     cls->size, static_cast<void *>(z), nobjs - z->inuse);
          return;
        }
        class_zspages++;
        class_inuse += z->inuse;
      });
      if (err) return err;
    }
    if (cls->stats[ZS_OBJS_ALLOCATED] != class_zspages * nobjs ||
        cls->stats[ZS_OBJS_INUSE] != class_inuse)
      return fail(why, len, "class %d: stats say %lu allocated / %lu in use, counted %lu / %lu",
                  cls->size, cls->stats[ZS_OBJS_ALLOCATED], cls->stats[ZS_OBJS_INUSE],
                  class_zspages * nobjs, class_inuse);
    zspages += class_zspages;
    pages += class_zspages * static_cast<unsigned long>(cls->pages_per_zspage);
    live += class_inuse;
  }
  if (pages != pool->pages_allocated.load(std::memory_order_relaxed))
    return fail(why, len, "zspages hold %lu pages, zs_get_total_pages() says %lu", pages,
                pool->pages_allocated.load(std::memory_order_relaxed));
  if (kmem_cache_objects_in_use(pool->zspage_cachep) != zspages)
    return fail(why, len, "%lu zspage structs allocated, %lu zspages listed",
                kmem_cache_objects_in_use(pool->zspage_cachep), zspages);
  const unsigned long in_quarantine = quarantined(pool);
  if (kmem_cache_objects_in_use(pool->handle_cachep) != live + in_quarantine)
    return fail(why, len, "%lu handle objects allocated, %lu live objects + %lu quarantined",
                kmem_cache_objects_in_use(pool->handle_cachep), live, in_quarantine);
  if (why != nullptr && len > 0) why[0] = '\0';
  return 0;
}

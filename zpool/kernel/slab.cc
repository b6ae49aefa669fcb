// SPDX-License-Identifier: GPL-2.0-only
// Metadata allocation: kmem_cache (fixed-size objects in 64 KiB slabs) and kmalloc.
//
// Slab region layout (kRegionSize bytes, aligned to it):
//   [SlabRegion header: magic, one SlabDesc per slab][slab][slab]...
// The header takes the first kHeaderSlabs slabs. A SlabDesc holds the owning cache and an
// allocation bitmap, both atomics, so kmem_cache_owns() can answer from the descriptor alone,
// without a lock and without touching the object.
#include <sys/mman.h>

#include <cstdlib>
#include <cstring>
#include <mutex>
#include <new>
#include <vector>

#include "zpool/kernel/kernel.h"
#include "zpool/kernel/list.h"
#include "zpool/kernel/page.h"
#include "zpool/kernel/percpu_ref.h"
#include "zpool/kernel/region.h"
#include "zpool/kernel/sanitizer.h"
#include "zpool/kernel/sched.h"

namespace kc {
namespace {

using internal::RegionKind;

constexpr unsigned long kSlabShift = 16;  // 64 KiB
constexpr unsigned long kSlabSize = 1UL << kSlabShift;
constexpr unsigned long kSlabsPerRegion = kRegionSize / kSlabSize;
static_assert(kRegionSize % kSlabSize == 0, "slabs are kSlabSize-aligned (ObjectIndex relies on it)");
constexpr unsigned long kMinObject = 8;
constexpr unsigned long kBitmapWords = kSlabSize / kMinObject / 64;
constexpr uint64_t kSlabRegionMagic = 0x7a706f6f6c736c31ULL;  // "zpoolsl1"

struct PartialSlabs;  // tag: the cache's slabs with a free object
struct CacheSlabs;    // tag: every slab of the cache

struct SlabDesc : ListNode<PartialSlabs>, ListNode<CacheSlabs> {
  std::atomic<struct kmem_cache *> cache{nullptr};
  unsigned objects = 0;     // objects in this slab
  unsigned inuse = 0;       // allocated objects (cache mutex)
  unsigned hint = 0;        // first bitmap word that may have a free bit
  SlabDesc *free_next = nullptr;  // on the global free-slab stack
  PercpuRef *refs = nullptr;      // a type-stable cache's per-slot counts (set before `cache`)
  std::atomic<uint64_t> bitmap[kBitmapWords];
};

struct SlabRegion {
  uint64_t magic;
  SlabDesc slabs[kSlabsPerRegion];
};

constexpr unsigned long kHeaderSlabs = (sizeof(SlabRegion) + kSlabSize - 1) / kSlabSize;
static_assert(kHeaderSlabs < kSlabsPerRegion / 4, "slab descriptors too large for a region");

char *SlabBase(const SlabDesc *desc) {
  uintptr_t region = internal::RegionBase(desc);
  auto *r = reinterpret_cast<SlabRegion *>(region);
  return reinterpret_cast<char *>(region) + (static_cast<unsigned long>(desc - r->slabs) << kSlabShift);
}

// The global supply of empty slabs.
struct SlabSupply {
  std::mutex mu;
  SlabDesc *free = nullptr;
  SlabRegion *carving = nullptr;
  unsigned long next_fresh = 0;
};
SlabSupply &supply() {
  static SlabSupply *s = new SlabSupply();  // never destroyed
  return *s;
}

SlabDesc *GetSlab() {
  SlabSupply &s = supply();
  std::lock_guard<std::mutex> guard(s.mu);
  if (s.free != nullptr) {
    SlabDesc *desc = s.free;
    s.free = desc->free_next;
    desc->free_next = nullptr;
    return desc;
  }
  if (s.carving == nullptr || s.next_fresh == kSlabsPerRegion) {
    auto *region = static_cast<SlabRegion *>(internal::MapRegion(RegionKind::kSlabs));
    region->magic = kSlabRegionMagic;
    for (unsigned long i = 0; i < kSlabsPerRegion; i++) new (&region->slabs[i]) SlabDesc();
    asan_poison(reinterpret_cast<char *>(region) + kHeaderSlabs * kSlabSize,
                (kSlabsPerRegion - kHeaderSlabs) * kSlabSize);
    s.carving = region;
    s.next_fresh = kHeaderSlabs;
  }
  return &s.carving->slabs[s.next_fresh++];
}

void PutSlab(SlabDesc *desc) {
  char *base = SlabBase(desc);
  madvise(base, kSlabSize, MADV_DONTNEED);
  asan_poison(base, kSlabSize);
  desc->cache.store(nullptr, std::memory_order_release);
  SlabSupply &s = supply();
  std::lock_guard<std::mutex> guard(s.mu);
  desc->free_next = s.free;
  s.free = desc;
}

// The descriptor of the slab holding obj, or nullptr. O(1), no dereference of obj.
SlabDesc *SlabOf(const void *obj) {
  if (internal::RegionKindOf(obj) != RegionKind::kSlabs) return nullptr;
  auto *region = reinterpret_cast<SlabRegion *>(internal::RegionBase(obj));
  unsigned long index =
      (reinterpret_cast<uintptr_t>(obj) - reinterpret_cast<uintptr_t>(region)) >> kSlabShift;
  if (index < kHeaderSlabs) return nullptr;
  return &region->slabs[index];
}

}  // namespace

namespace internal {
void PrewarmSlabs(unsigned long slabs) {
  std::vector<SlabDesc *> taken;
  {
    SlabSupply &s = supply();
    std::lock_guard<std::mutex> guard(s.mu);
    unsigned long have = 0;
    for (SlabDesc *d = s.free; d != nullptr; d = d->free_next) have++;
    if (have >= slabs) return;
  }
  for (unsigned long i = 0; i < slabs; i++) taken.push_back(GetSlab());
  for (SlabDesc *desc : taken) PutSlab(desc);
}
}  // namespace internal

}  // namespace kc

struct kmem_cache {
  const char *name;
  size_t size;  // stride: object size rounded up to the alignment
  // ceil(2^32 / size): offset / size == (offset * reciprocal) >> 32 exactly for every offset in
  // a slab (both below 2^16), a multiply instead of a divide on every kmem_cache_owns().
  uint64_t reciprocal;
  unsigned objects_per_slab;
  std::mutex mu;
  kc::IntrusiveList<kc::SlabDesc, kc::PartialSlabs> partial;  // slabs with a free object
  kc::IntrusiveList<kc::SlabDesc, kc::CacheSlabs> all;        // every slab of the cache
  unsigned long empty_slabs = 0;  // slabs on `partial` with no object in use
  std::atomic<unsigned long> inuse{0};
  bool typesafe = false;  // kmem_cache_create_typesafe: slabs are never released, slots counted
};

namespace {

// Index of the object at obj in desc's slab, or -1 if obj is not an object boundary.
// REQUIRES: desc == SlabOf(obj). Slabs are kSlabSize-aligned, so obj's offset in its slab is its
// low bits (kmem_cache_owns() runs this on every zpool and zsmalloc call).
long ObjectIndex(const struct kmem_cache *cache, const kc::SlabDesc *desc, const void *obj) {
  const uintptr_t offset = reinterpret_cast<uintptr_t>(obj) & (kc::kSlabSize - 1);
  unsigned long index = static_cast<unsigned long>((offset * cache->reciprocal) >> 32);
  if (index * cache->size != offset || index >= desc->objects) return -1;
  return static_cast<long>(index);
}

bool BitIsSet(const kc::SlabDesc *desc, unsigned long index) {
  return (desc->bitmap[index / 64].load(std::memory_order_acquire) >> (index % 64)) & 1;
}

// REQUIRES: cache->mu. desc has a free object.
void *TakeObject(struct kmem_cache *cache, kc::SlabDesc *desc) {
  unsigned words = (desc->objects + 63) / 64;
  for (unsigned w = desc->hint; w < words; w++) {
    uint64_t bits = desc->bitmap[w].load(std::memory_order_relaxed);
    uint64_t valid = (w + 1 == words && desc->objects % 64) ? ((1ULL << (desc->objects % 64)) - 1)
                                                            : ~0ULL;
    uint64_t free_bits = ~bits & valid;
    if (free_bits == 0) continue;
    unsigned bit = static_cast<unsigned>(__builtin_ctzll(free_bits));
    desc->bitmap[w].fetch_or(1ULL << bit, std::memory_order_release);
    desc->hint = w;
    desc->inuse++;
    return kc::SlabBase(desc) + (static_cast<unsigned long>(w) * 64 + bit) * cache->size;
  }
  BUG();  // a partial slab without a free bit: the bookkeeping is corrupt
}

}  // namespace

struct kmem_cache *kmem_cache_create(const char *name, size_t size, size_t align) {
  if (align == 0) align = kc::kMinObject;
  if (WARN((align & (align - 1)) != 0 || align > 4096,
           "kmem_cache_create(%s): alignment %zu is not a power of two <= 4096", name, align))
    return nullptr;
  if (size < kc::kMinObject) size = kc::kMinObject;
  size = (size + align - 1) & ~(align - 1);
  if (WARN(size > kc::kSlabSize / 4, "kmem_cache_create(%s): object size %zu too large", name,
           size))
    return nullptr;
  auto *cache = new struct kmem_cache;
  cache->name = name;
  cache->size = size;
  cache->objects_per_slab = static_cast<unsigned>(kc::kSlabSize / size);
  cache->reciprocal = ((uint64_t{1} << 32) + size - 1) / size;
  static_assert(kc::kSlabSize <= (1u << 16), "the reciprocal division needs offsets < 2^16");
  return cache;
}

void kmem_cache_destroy(struct kmem_cache *cache) {
  if (cache == nullptr) return;
  unsigned long inuse = cache->inuse.load();
  WARN(inuse != 0, "kmem_cache_destroy %s: Slab cache still has objects (%lu in use); freeing them",
       cache->name, inuse);
  {
    std::lock_guard<std::mutex> guard(cache->mu);
    while (kc::SlabDesc *desc = cache->all.pop_front()) {
      if (kc::IntrusiveList<kc::SlabDesc, kc::PartialSlabs>::is_linked(desc))
        cache->partial.remove(desc);
      for (auto &word : desc->bitmap) word.store(0, std::memory_order_relaxed);
      desc->inuse = 0;
      desc->hint = 0;
      delete[] desc->refs;  // no call can race the cache's own destruction
      desc->refs = nullptr;
      kc::PutSlab(desc);
    }
  }
  for (unsigned long i = 0; i < inuse; i++) kc::internal::MetaFreed();
  delete cache;
}

void *kmem_cache_alloc(struct kmem_cache *cache, gfp_t gfp) {
  kc::sched_point(kc::SchedEvent::kAlloc, cache);
  might_sleep_if(gfpflags_allow_blocking(gfp));
  if (kc::internal::ShouldFailAlloc()) {
    if (!(gfp & __GFP_NOWARN)) pr_warn("kmem_cache_alloc(%s): allocation failure (injected)\n",
                                       cache->name);
    return nullptr;
  }
  void *obj;
  {
    std::lock_guard<std::mutex> guard(cache->mu);
    kc::SlabDesc *desc = cache->partial.front();
    if (desc == nullptr) {
      desc = kc::GetSlab();
      desc->objects = cache->objects_per_slab;
      desc->inuse = 0;
      desc->hint = 0;
      for (auto &word : desc->bitmap) word.store(0, std::memory_order_relaxed);
      if (cache->typesafe) desc->refs = new kc::PercpuRef[cache->objects_per_slab];
      desc->cache.store(cache, std::memory_order_release);
      cache->all.push_back(desc);
      cache->partial.push_front(desc);
      cache->empty_slabs++;
    }
    if (desc->inuse == 0) cache->empty_slabs--;
    obj = TakeObject(cache, desc);
    if (desc->inuse == desc->objects) cache->partial.remove(desc);
  }
  cache->inuse.fetch_add(1, std::memory_order_relaxed);
  kc::internal::MetaAllocated();
  kc::asan_unpoison(obj, cache->size);
  if (gfp & __GFP_ZERO) {
    memset(obj, 0, cache->size);
  } else {
    kc::msan_mark_uninitialized(obj, cache->size);
  }
  return obj;
}

void *kmem_cache_zalloc(struct kmem_cache *cache, gfp_t gfp) {
  return kmem_cache_alloc(cache, gfp | __GFP_ZERO);
}

void kmem_cache_free(struct kmem_cache *cache, void *obj) {
  if (obj == nullptr) return;
  kc::SlabDesc *desc = kc::SlabOf(obj);
  if (WARN(desc == nullptr || desc->cache.load(std::memory_order_acquire) != cache,
           "kmem_cache_free(%s, %p): not an object of this cache", cache->name, obj))
    return;
  kc::SlabDesc *to_release = nullptr;
  {
    std::lock_guard<std::mutex> guard(cache->mu);
    long index = ObjectIndex(cache, desc, obj);
    if (WARN(index < 0, "kmem_cache_free(%s, %p): not the start of an object", cache->name, obj))
      return;
    auto bit = 1ULL << (index % 64);
    uint64_t old = desc->bitmap[index / 64].fetch_and(~bit, std::memory_order_acq_rel);
    if (WARN(!(old & bit), "kmem_cache_free(%s, %p): object is already free (double free)",
             cache->name, obj))
      return;
    kc::asan_poison(obj, cache->size);
    if (desc->inuse == desc->objects) cache->partial.push_front(desc);
    desc->inuse--;
    if (static_cast<unsigned>(index / 64) < desc->hint) desc->hint = static_cast<unsigned>(index / 64);
    if (desc->inuse == 0) {
      // Keep one empty slab for reuse; return further ones to the supply (never a type-stable
      // cache's: its slots must keep naming the same counts).
      if (cache->empty_slabs >= 1 && !cache->typesafe) {
        cache->partial.remove(desc);
        cache->all.remove(desc);
        to_release = desc;
      } else {
        cache->empty_slabs++;
        cache->partial.remove(desc);  // used last, so partial slabs fill up first
        cache->partial.push_back(desc);
      }
    }
  }
  cache->inuse.fetch_sub(1, std::memory_order_relaxed);
  kc::internal::MetaFreed();
  if (to_release != nullptr) kc::PutSlab(to_release);
}

namespace kc {

struct kmem_cache *kmem_cache_create_typesafe(const char *name, size_t size, size_t align) {
  struct kmem_cache *cache = kmem_cache_create(name, size, align);
  if (cache != nullptr) cache->typesafe = true;
  return cache;
}

PercpuRef *kmem_cache_slot_ref(const struct kmem_cache *cache, const void *obj) {
  const SlabDesc *desc = SlabOf(obj);
  if (desc == nullptr || desc->cache.load(std::memory_order_acquire) != cache || !cache->typesafe)
    return nullptr;
  long index = ObjectIndex(cache, desc, obj);
  return index < 0 ? nullptr : &desc->refs[index];
}

}  // namespace kc

bool kmem_cache_owns(const struct kmem_cache *cache, const void *obj) {
  const kc::SlabDesc *desc = kc::SlabOf(obj);
  if (desc == nullptr || desc->cache.load(std::memory_order_acquire) != cache) return false;
  long index = ObjectIndex(cache, desc, obj);
  return index >= 0 && BitIsSet(desc, static_cast<unsigned long>(index));
}

unsigned long kmem_cache_objects_in_use(const struct kmem_cache *cache) {
  return cache->inuse.load(std::memory_order_relaxed);
}

size_t kmem_cache_size(const struct kmem_cache *cache) { return cache->size; }

// ---- kmalloc ----------------------------------------------------------------------------------

void *kmalloc(size_t size, gfp_t gfp) {
  static const char kmalloc_token = 0;
  kc::sched_point(kc::SchedEvent::kAlloc, &kmalloc_token);
  might_sleep_if(gfpflags_allow_blocking(gfp));
  if (kc::internal::ShouldFailAlloc()) {
    if (!(gfp & __GFP_NOWARN)) pr_warn("kmalloc(%zu): allocation failure (injected)\n", size);
    return nullptr;
  }
  void *ptr = (gfp & __GFP_ZERO) ? calloc(1, size ? size : 1) : malloc(size ? size : 1);
  if (ptr != nullptr) kc::internal::MetaAllocated();
  return ptr;
}

void *kzalloc(size_t size, gfp_t gfp) { return kmalloc(size, gfp | __GFP_ZERO); }

void kfree(const void *ptr) {
  if (ptr == nullptr) return;
  kc::internal::MetaFreed();
  free(const_cast<void *>(ptr));
}

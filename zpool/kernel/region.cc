// SPDX-License-Identifier: GPL-2.0-only
// Regions, the region table and fault injection.
#include "zpool/kernel/region.h"

#include "zpool/kernel/sanitizer.h"
#if defined(KC_ASAN)
#include <sanitizer/lsan_interface.h>
#endif

#include <sys/mman.h>

#include <cerrno>
#include <cstring>
#include <new>

namespace kc::internal {

namespace {

// Region number = address >> kRegionShift, over a 48-bit address space: 24 bits, split 12/12.
std::atomic<unsigned long> g_fail_countdown{0};
std::atomic<unsigned long> g_meta_in_use{0};

void SetKind(uintptr_t base, RegionKind kind) {
  uintptr_t index = base >> kRegionShift;
  BUG_ON(index >> kIndexBits);
  std::atomic<RegionLeaf *> &slot = g_region_root[index >> kLeafBits];
  RegionLeaf *leaf = slot.load(std::memory_order_acquire);
  if (leaf == nullptr) {
    void *mem = mmap(nullptr, sizeof(RegionLeaf), PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    BUG_ON(mem == MAP_FAILED);
    RegionLeaf *fresh = new (mem) RegionLeaf();
    if (slot.compare_exchange_strong(leaf, fresh, std::memory_order_acq_rel)) {
      leaf = fresh;
    } else {
      munmap(mem, sizeof(RegionLeaf));
    }
  }
  leaf->kind[index & ((1u << kLeafBits) - 1)].store(kind, std::memory_order_release);
}

}  // namespace

void *MapRegion(RegionKind kind) {
  // Over-map by one region and trim, so the region is aligned to its size.
  size_t span = 2 * kRegionSize;
  void *raw = mmap(nullptr, span, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (raw == MAP_FAILED) {
    pr_err("zpool: mmap of a %lu MiB region failed: %s\n", kRegionSize >> 20, strerror(errno));
    BUG();
  }
  uintptr_t start = reinterpret_cast<uintptr_t>(raw);
  uintptr_t base = (start + kRegionSize - 1) & ~(kRegionSize - 1);
  if (base > start) munmap(raw, base - start);
  uintptr_t end = start + span;
  if (end > base + kRegionSize) munmap(reinterpret_cast<void *>(base + kRegionSize),
                                       end - (base + kRegionSize));
  SetKind(base, kind);
#if defined(KC_ASAN)
  // Slab objects (pool structs, zspages, handles) point to malloc'd memory; LeakSanitizer does
  // not scan mmap'd memory unless told to, and would report everything a live pool owns.
  if (kind == RegionKind::kSlabs)
    __lsan_register_root_region(reinterpret_cast<void *>(base), kRegionSize);
#endif
  return reinterpret_cast<void *>(base);
}

bool ShouldFailAlloc() {
  unsigned long left = g_fail_countdown.load(std::memory_order_relaxed);
  while (left != 0) {
    if (g_fail_countdown.compare_exchange_weak(left, left - 1, std::memory_order_acq_rel))
      return left == 1;
  }
  return false;
}

void MetaAllocated() { g_meta_in_use.fetch_add(1, std::memory_order_relaxed); }
void MetaFreed() { g_meta_in_use.fetch_sub(1, std::memory_order_relaxed); }

}  // namespace kc::internal

void kc_fail_nth_alloc(unsigned long nth) {
  kc::internal::g_fail_countdown.store(nth, std::memory_order_release);
}

unsigned long kc_fail_nth_pending(void) {
  return kc::internal::g_fail_countdown.load(std::memory_order_acquire);
}

unsigned long kc_meta_in_use(void) {
  return kc::internal::g_meta_in_use.load(std::memory_order_relaxed);
}

// SPDX-License-Identifier: GPL-2.0-only
// Internal to //zpool/kernel: the 16 MiB regions behind pages and slabs, the O(1) address ->
// region table, and the shared allocation fault injection. Exported only for page_ext.h's inline
// page_ext_of(); code outside the kernel layer includes page_ext.h, never this file.
#ifndef ZPOOL_KERNEL_REGION_H_
#define ZPOOL_KERNEL_REGION_H_

#include <atomic>
#include <cstdint>

#include "zpool/kernel/page.h"

namespace kc::internal {

enum class RegionKind : uint8_t { kNone = 0, kPages = 1, kSlabs = 2 };

// Maps a new kRegionSize-aligned region of zeroed memory and records its kind. BUG on failure
// (the process is out of address space).
void *MapRegion(RegionKind kind);

// The address -> region table: a root of leaves, each leaf the kinds of 2^kLeafBits regions.
inline constexpr unsigned kAddressBits = 48;
inline constexpr unsigned kIndexBits = kAddressBits - kRegionShift;
inline constexpr unsigned kLeafBits = 12;
inline constexpr unsigned kRootBits = kIndexBits - kLeafBits;
struct RegionLeaf {
  std::atomic<RegionKind> kind[1u << kLeafBits];
};
inline std::atomic<RegionLeaf *> g_region_root[1u << kRootBits];

// O(1), never dereferences addr: which kind of region holds addr (kNone: not ours). Inline: every
// handle check of the allocators starts here.
inline RegionKind RegionKindOf(const void *addr) {
  const uintptr_t index = reinterpret_cast<uintptr_t>(addr) >> kRegionShift;
  if (index >> kIndexBits) return RegionKind::kNone;
  const RegionLeaf *leaf = g_region_root[index >> kLeafBits].load(std::memory_order_acquire);
  if (leaf == nullptr) return RegionKind::kNone;
  return leaf->kind[index & ((1u << kLeafBits) - 1)].load(std::memory_order_acquire);
}

inline uintptr_t RegionBase(const void *addr) {
  return reinterpret_cast<uintptr_t>(addr) & ~(kRegionSize - 1);
}

// A page region (page_alloc.cc), kRegionSize bytes aligned to it:
//   [PageRegion: magic, descriptor array, page_ext array][data page][data page]...
// The header occupies the first kHeaderPages pages; their descriptors and extensions exist but
// are never handed out.
struct PageRegion {
  uint64_t magic;
  struct page descs[kPagesPerRegion];
  alignas(32) struct page_ext exts[kPagesPerRegion];  // dense: see page.h
};
inline constexpr unsigned long kHeaderPages = (sizeof(PageRegion) + PAGE_SIZE - 1) / PAGE_SIZE;
static_assert(kHeaderPages < kPagesPerRegion / 2, "descriptor array too large for a region");

// The region and page index of a data address (not in a region header), or nullptr. Never
// dereferences addr. Inline: page_ext_of() (page_ext.h) is on every lock-free handle check.
inline PageRegion *DataPageOf(const void *addr, unsigned long *index) {
  if (RegionKindOf(addr) != RegionKind::kPages) return nullptr;
  auto *region = reinterpret_cast<PageRegion *>(RegionBase(addr));
  *index = (reinterpret_cast<uintptr_t>(addr) - reinterpret_cast<uintptr_t>(region)) >> PAGE_SHIFT;
  return *index < kHeaderPages ? nullptr : region;
}

// Counts one page or metadata allocation against kc_fail_nth_alloc(); true if it must fail.
bool ShouldFailAlloc();

// Metadata accounting shared by kmalloc and the slab caches.
void MetaAllocated();
void MetaFreed();

}  // namespace kc::internal

#endif  // ZPOOL_KERNEL_REGION_H_

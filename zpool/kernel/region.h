// Internal to //zpool/kernel: the 16 MiB regions behind pages and slabs, the O(1) address ->
// region table, and the shared allocation fault injection.
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

// O(1), never dereferences addr: which kind of region holds addr (kNone: not ours).
RegionKind RegionKindOf(const void *addr);

inline uintptr_t RegionBase(const void *addr) {
  return reinterpret_cast<uintptr_t>(addr) & ~(kRegionSize - 1);
}

// Counts one page or metadata allocation against kc_fail_nth_alloc(); true if it must fail.
bool ShouldFailAlloc();

// Metadata accounting shared by kmalloc and the slab caches.
void MetaAllocated();
void MetaFreed();

}  // namespace kc::internal

#endif  // ZPOOL_KERNEL_REGION_H_

// SPDX-License-Identifier: GPL-2.0-only
// page_ext_of(): the page extension (struct page_ext, page.h) of the page holding an address.
// Inline, because the allocators' lock-free map and unmap start every handle check here: it is
// two loads of the region table (hot) and some arithmetic, and a call would double its cost.
#ifndef ZPOOL_KERNEL_PAGE_EXT_H_
#define ZPOOL_KERNEL_PAGE_EXT_H_

#include "zpool/kernel/page.h"
#include "zpool/kernel/region.h"

// O(1) and, like virt_to_page(), never dereferences addr: the extension of the page holding addr,
// or NULL for an address that is not in one of our data pages.
inline struct page_ext *page_ext_of(const void *addr) {
  unsigned long index;
  kc::internal::PageRegion *region = kc::internal::DataPageOf(addr, &index);
  return region != nullptr ? &region->exts[index] : nullptr;
}

#endif  // ZPOOL_KERNEL_PAGE_EXT_H_

// SPDX-License-Identifier: GPL-2.0-only
// zsmalloc entry points for zpool's driver only (zpool_drivers.cc), not for users.
//
// Each is its zs_* counterpart without the pool check and the "in flight" count of the entry
// (kmem_cache_owns() and the pool's PercpuRef: about 85 instructions a call), which the zpool
// call making it already provides: that call holds the zpool's reference, and
// zpool_destroy_pool() destroys the backend pool only once no call is in flight. Everything
// about the handle, the mapping and the caller's context is checked as in zs_*.
#ifndef ZPOOL_ZSMALLOC_PINNED_H_
#define ZPOOL_ZSMALLOC_PINNED_H_

#include "zpool/zsmalloc.h"

unsigned long zs_malloc_pinned(struct zs_pool *pool, size_t size, gfp_t gfp);
void zs_free_pinned(struct zs_pool *pool, unsigned long handle);
void *zs_map_object_pinned(struct zs_pool *pool, unsigned long handle, enum zs_mapmode mm);

#endif  // ZPOOL_ZSMALLOC_PINNED_H_

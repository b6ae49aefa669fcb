// SPDX-License-Identifier: GPL-2.0-only
// zbud entry points for zpool's driver only (zpool_drivers.cc), not for users.
//
// Each is its zbud_* counterpart without the pool check and the "in flight" count of the entry
// (kmem_cache_owns() and the pool's PercpuRef), which the zpool call making it already provides:
// that call holds the zpool's reference, and zpool_destroy_pool() destroys the backend pool only
// once no call is in flight. Everything about the handle and the caller's context is checked as
// in zbud_*. (zbud_map() needs none: its lock-free path does not check the pool either.)
#ifndef ZPOOL_ZBUD_PINNED_H_
#define ZPOOL_ZBUD_PINNED_H_

#include "zpool/zbud.h"

int zbud_alloc_pinned(struct zbud_pool *pool, size_t size, gfp_t gfp, unsigned long *handle);
void zbud_free_pinned(struct zbud_pool *pool, unsigned long handle);

#endif  // ZPOOL_ZBUD_PINNED_H_

// SPDX-License-Identifier: GPL-2.0-only
// zbud: the 3.17 buddy allocator for compressed pages. At most two objects ("buddies") per page,
// with an LRU of pages and reclaim through a user eviction callback.
// Contract: the //zpool:zbud section of spec/API.md. Design: the comment at the top of zbud.cc.
#ifndef ZPOOL_ZBUD_H_
#define ZPOOL_ZBUD_H_

#include <stddef.h>

#include "zpool/kernel/kernel.h"

struct zbud_pool;

struct zbud_ops {
  // Called by zbud_reclaim_page() for each buddy of the page being reclaimed. Must free the
  // handle (zbud_free) before returning 0; any other return value fails the reclaim of the page.
  int (*evict)(struct zbud_pool *pool, unsigned long handle);
};

struct zbud_pool *zbud_create_pool(gfp_t gfp, const struct zbud_ops *ops);
void zbud_destroy_pool(struct zbud_pool *pool);
// 0, or -EINVAL (size 0, or __GFP_HIGHMEM in gfp), -ENOSPC (size above the largest object,
// PAGE_SIZE - 2 * CHUNK_SIZE: 3968 on 4 KiB pages), -ENOMEM.
int zbud_alloc(struct zbud_pool *pool, size_t size, gfp_t gfp, unsigned long *handle);
void zbud_free(struct zbud_pool *pool, unsigned long handle);
int zbud_reclaim_page(struct zbud_pool *pool, unsigned int retries);
void *zbud_map(struct zbud_pool *pool, unsigned long handle);
void zbud_unmap(struct zbud_pool *pool, unsigned long handle);
u64 zbud_get_pool_size(struct zbud_pool *pool);  // in pages

// ---- Beyond the contract: for tests, fuzzers and benchmarks --------------------------------
// The largest size zbud_alloc() accepts (PAGE_SIZE - 2 * CHUNK_SIZE).
size_t zbud_max_alloc_size(void);
// Checks every invariant of the pool (see zbud.cc). Returns 0, or -EUCLEAN with the first
// violation described in `why` (NUL-terminated, may be NULL).
int zbud_validate_TestOnly(struct zbud_pool *pool, char *why, size_t len);
// The validator's own test (fuzzers run it): breaks invariant `kind` (0 .. ZBUD_CORRUPTIONS - 1:
// page owner, under_reclaim, eviction state, no buddy, chunk overflow, allocated bit, size,
// redzone, pages_nr, object count, size of a free buddy) on the page of a live `handle`, runs the
// validator, restores the exact state. -EUCLEAN with the violation in `why` when the validator
// caught it, 0 when it missed it (a validator bug), -EINVAL when the corruption does not apply.
// REQUIRES: no other call on the pool meanwhile (maps are lock-free).
enum { ZBUD_CORRUPTIONS = 11 };
int zbud_validate_corrupted_TestOnly(struct zbud_pool *pool, unsigned long handle, int kind,
                                     char *why, size_t len);

#endif  // ZPOOL_ZBUD_H_

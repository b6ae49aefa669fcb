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

#endif  // ZPOOL_ZBUD_H_

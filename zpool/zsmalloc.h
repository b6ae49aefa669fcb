// SPDX-License-Identifier: GPL-2.0-only
// zsmalloc: the dense allocator for compressed pages (about Linux 6.10: handle indirection,
// chain sizes, fullness groups, per-class locks, map/unmap through a per-CPU area, compaction).
// Contract: the //zpool:zsmalloc section of spec/API.md. Design: the comment at the top of
// zsmalloc.cc.
#ifndef ZPOOL_ZSMALLOC_H_
#define ZPOOL_ZSMALLOC_H_

#include <stddef.h>

#include "zpool/kernel/kernel.h"

enum zs_mapmode { ZS_MM_RW, ZS_MM_RO, ZS_MM_WO };

struct zs_pool_stats {
  unsigned long pages_compacted;  // pages freed by compaction, accumulated
};

struct zs_pool;

struct zs_pool *zs_create_pool(const char *name);
void zs_destroy_pool(struct zs_pool *pool);
// A handle, or (unsigned long)ERR_PTR(-EINVAL) for size 0, ERR_PTR(-ENOSPC) above
// ZS_MAX_ALLOC_SIZE (PAGE_SIZE), ERR_PTR(-ENOMEM). Test with IS_ERR_VALUE.
unsigned long zs_malloc(struct zs_pool *pool, size_t size, gfp_t gfp);
void zs_free(struct zs_pool *pool, unsigned long handle);
size_t zs_huge_class_size(struct zs_pool *pool);
// Only one object may be mapped per CPU at a time.
void *zs_map_object(struct zs_pool *pool, unsigned long handle, enum zs_mapmode mm);
void zs_unmap_object(struct zs_pool *pool, unsigned long handle);
unsigned long zs_get_total_pages(struct zs_pool *pool);
unsigned long zs_compact(struct zs_pool *pool);  // pages freed by this call
void zs_pool_stats(struct zs_pool *pool, struct zs_pool_stats *stats);

// ---- Beyond the contract: for tests, fuzzers and benchmarks --------------------------------
// The chain size this build uses (ZS_MAX_PAGES_PER_ZSPAGE: 8 by default, 4 or 16 selectable).
int zs_chain_size(void);
// The size class that serves an allocation of `size` bytes (size as passed to zs_malloc; the
// handle header is added inside): the class's object size, pages per zspage and objects per
// zspage. -ENOSPC / -EINVAL as zs_malloc would.
struct zs_class_info {
  int index;                 // class index after merging (the class actually used)
  unsigned int size;         // object size of the class
  int pages_per_zspage;
  int objs_per_zspage;
  bool huge;
};
int zs_lookup_class(struct zs_pool *pool, size_t size, struct zs_class_info *info);
// A class's geometry and statistics as the kernel counts them (its debugfs "classes" file): zspages in each
// fullness group (ZS_INUSE_RATIO_0, _10 .. _90, _99, _100), objects allocated and in use.
// `index` is a class index (0 .. the last); a merged index reports the class that serves it.
// 0, or -EINVAL past the last class.
enum { ZS_FULLNESS_GROUPS = 12 };
struct zs_class_stats {
  int index;  // the class that serves `index` (itself unless merged), and its geometry
  unsigned int size;
  int pages_per_zspage;
  int objs_per_zspage;
  unsigned long zspages[ZS_FULLNESS_GROUPS];
  unsigned long objs_allocated;
  unsigned long objs_inuse;
};
int zs_class_stats(struct zs_pool *pool, int index, struct zs_class_stats *stats);
// Checks every invariant of the pool (see zsmalloc.cc). Returns 0, or -EUCLEAN with the first
// violation described in `why` (NUL-terminated, may be NULL).
int zs_validate_TestOnly(struct zs_pool *pool, char *why, size_t len);

#endif  // ZPOOL_ZSMALLOC_H_

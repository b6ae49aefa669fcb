// SPDX-License-Identifier: GPL-2.0-only
// The built-in zpool drivers: adapters from struct zpool_driver's operations to zbud_* and zs_*.
//
// The driver structs are constinit (no dynamic initialisation, so no static-initialisation
// order to get wrong); the registry puts them on its list when it is created by the first zpool
// call (zpool.cc). Backend differences kept as in the kernel (3.17 zbud, 5.x zpool):
//   zbud      shrink = zbud_reclaim_page(pool, 8) until `pages` pages are reclaimed; evict routed
//             through zpool_evict(); the zbud pool gets evict ops only when the user gave an
//             evict callback (so a pool without one answers shrink with -EINVAL); map ignores
//             the mode; can sleep mapped; not movable.
//   zsmalloc  no shrink (zpool_shrink() is -EINVAL, the pool is never evictable); map modes
//             passed to zs_map_object(); cannot sleep mapped (per-CPU area, preemption off);
//             supports movable allocations.
// total_size is in bytes for both (the backends count pages).
// malloc, free and map call the backends' _pinned entry points (zbud_pinned.h,
// zsmalloc_pinned.h): the zpool call that makes them already checked the pool and holds it.
#include "zpool/zbud.h"
#include "zpool/zbud_pinned.h"
#include "zpool/zpool.h"
#include "zpool/zsmalloc.h"
#include "zpool/zsmalloc_pinned.h"

namespace {

// ---- zbud --------------------------------------------------------------------------------------

int zbud_zpool_evict(struct zbud_pool *pool, unsigned long handle) {
  return zpool_evict(pool, handle);
}

constinit const struct zbud_ops kZbudZpoolOps = {.evict = zbud_zpool_evict};

void *zbud_zpool_create(const char *name, gfp_t gfp, const struct zpool_ops *zpool_ops,
                        struct zpool *zpool) {
  const bool evict = zpool_ops != nullptr && zpool_ops->evict != nullptr;
  return zbud_create_pool(gfp, evict ? &kZbudZpoolOps : nullptr);
}

void zbud_zpool_destroy(void *pool) { zbud_destroy_pool(static_cast<struct zbud_pool *>(pool)); }

int zbud_zpool_malloc(void *pool, size_t size, gfp_t gfp, unsigned long *handle) {
  return zbud_alloc_pinned(static_cast<struct zbud_pool *>(pool), size, gfp, handle);
}

void zbud_zpool_free(void *pool, unsigned long handle) {
  zbud_free_pinned(static_cast<struct zbud_pool *>(pool), handle);
}

// As the kernel's: 0 once `pages` pages were reclaimed, else the first failure (-EINVAL when
// asked for 0 pages, since nothing was attempted).
int zbud_zpool_shrink(void *pool, unsigned int pages, unsigned int *reclaimed) {
  unsigned int total = 0;
  int ret = -EINVAL;
  while (total < pages) {
    ret = zbud_reclaim_page(static_cast<struct zbud_pool *>(pool), 8);
    if (ret < 0) break;
    total++;
  }
  if (reclaimed != nullptr) *reclaimed = total;
  return ret;
}

void *zbud_zpool_map(void *pool, unsigned long handle, enum zpool_mapmode mm) {
  return zbud_map(static_cast<struct zbud_pool *>(pool), handle);
}

void zbud_zpool_unmap(void *pool, unsigned long handle) {
  zbud_unmap(static_cast<struct zbud_pool *>(pool), handle);
}

u64 zbud_zpool_total_size(void *pool) {
  return zbud_get_pool_size(static_cast<struct zbud_pool *>(pool)) * PAGE_SIZE;
}

int zbud_zpool_validate(void *pool, char *why, size_t len) {
  return zbud_validate_TestOnly(static_cast<struct zbud_pool *>(pool), why, len);
}

constinit struct zpool_driver zbud_zpool_driver = {
    .type = "zbud",
    .owner = nullptr,
    .create = zbud_zpool_create,
    .destroy = zbud_zpool_destroy,
    .malloc = zbud_zpool_malloc,
    .free = zbud_zpool_free,
    .shrink = zbud_zpool_shrink,
    .map = zbud_zpool_map,
    .unmap = zbud_zpool_unmap,
    .total_size = zbud_zpool_total_size,
    .sleep_mapped = true,
    .malloc_support_movable = false,
    .validate = zbud_zpool_validate,
};

// ---- zsmalloc ----------------------------------------------------------------------------------

void *zs_zpool_create(const char *name, gfp_t gfp, const struct zpool_ops *zpool_ops,
                      struct zpool *zpool) {
  // zsmalloc allocates with its own flags; the name is only a label.
  return zs_create_pool(name != nullptr ? name : "zsmalloc");
}

void zs_zpool_destroy(void *pool) { zs_destroy_pool(static_cast<struct zs_pool *>(pool)); }

int zs_zpool_malloc(void *pool, size_t size, gfp_t gfp, unsigned long *handle) {
  unsigned long h = zs_malloc_pinned(static_cast<struct zs_pool *>(pool), size, gfp);
  if (IS_ERR_VALUE(h)) return static_cast<int>(PTR_ERR(reinterpret_cast<void *>(h)));
  *handle = h;
  return 0;
}

void zs_zpool_free(void *pool, unsigned long handle) {
  zs_free_pinned(static_cast<struct zs_pool *>(pool), handle);
}

enum zs_mapmode ToZsMapmode(enum zpool_mapmode mm) {
  switch (mm) {
    case ZPOOL_MM_RO:
      return ZS_MM_RO;
    case ZPOOL_MM_WO:
      return ZS_MM_WO;
    case ZPOOL_MM_RW:
      break;
  }
  return ZS_MM_RW;  // ZPOOL_MM_RW, and the kernel's default for anything else
}

void *zs_zpool_map(void *pool, unsigned long handle, enum zpool_mapmode mm) {
  return zs_map_object_pinned(static_cast<struct zs_pool *>(pool), handle, ToZsMapmode(mm));
}

void zs_zpool_unmap(void *pool, unsigned long handle) {
  zs_unmap_object(static_cast<struct zs_pool *>(pool), handle);
}

u64 zs_zpool_total_size(void *pool) {
  return static_cast<u64>(zs_get_total_pages(static_cast<struct zs_pool *>(pool))) << PAGE_SHIFT;
}

int zs_zpool_validate(void *pool, char *why, size_t len) {
  return zs_validate_TestOnly(static_cast<struct zs_pool *>(pool), why, len);
}

constinit struct zpool_driver zs_zpool_driver = {
    .type = "zsmalloc",
    .owner = nullptr,
    .create = zs_zpool_create,
    .destroy = zs_zpool_destroy,
    .malloc = zs_zpool_malloc,
    .free = zs_zpool_free,
    .shrink = nullptr,
    .map = zs_zpool_map,
    .unmap = zs_zpool_unmap,
    .total_size = zs_zpool_total_size,
    .sleep_mapped = false,
    .malloc_support_movable = true,
    .validate = zs_zpool_validate,
};

constinit zpool_driver *const kBuiltinDrivers[] = {&zbud_zpool_driver, &zs_zpool_driver};

}  // namespace

std::span<zpool_driver *const> zpool_internal::builtin_drivers() { return kBuiltinDrivers; }

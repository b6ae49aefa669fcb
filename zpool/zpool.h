// zpool: one API over every compressed-memory backend, chosen by name (the 2014 zpool API with
// the refcounted driver registry). Contract: the //zpool:zpool section of spec/API.md.
//
// LIFECYCLE AND THREAD-SAFETY RULES (checked in code; see zpool.cc):
// (filled in by the implementation: who may destroy a pool and when, what is thread-safe)
#ifndef ZPOOL_ZPOOL_H_
#define ZPOOL_ZPOOL_H_

#include <stddef.h>

#include <atomic>

#include "zpool/kernel/kernel.h"
#include "zpool/kernel/list.h"

enum zpool_mapmode { ZPOOL_MM_RW, ZPOOL_MM_RO, ZPOOL_MM_WO, ZPOOL_MM_DEFAULT = ZPOOL_MM_RW };

struct zpool;

struct zpool_ops {
  int (*evict)(struct zpool *pool, unsigned long handle);
};

namespace zpool_internal {
struct DriverList;  // tag of the registry's list
}

struct zpool_driver : kc::ListNode<zpool_internal::DriverList> {
  const char *type = nullptr;
  struct module *owner = nullptr;  // may be NULL (built in)
  // Pools using the driver, managed by zpool under the registry lock.
  std::atomic<int> refcount{0};

  void *(*create)(const char *name, gfp_t gfp, const struct zpool_ops *ops,
                  struct zpool *zpool) = nullptr;
  void (*destroy)(void *pool) = nullptr;
  int (*malloc)(void *pool, size_t size, gfp_t gfp, unsigned long *handle) = nullptr;
  void (*free)(void *pool, unsigned long handle) = nullptr;
  int (*shrink)(void *pool, unsigned int pages, unsigned int *reclaimed) = nullptr;
  void *(*map)(void *pool, unsigned long handle, enum zpool_mapmode mm) = nullptr;
  void (*unmap)(void *pool, unsigned long handle) = nullptr;
  u64 (*total_size)(void *pool) = nullptr;
  bool sleep_mapped = false;
  bool malloc_support_movable = false;
};

void zpool_register_driver(struct zpool_driver *driver);
int zpool_unregister_driver(struct zpool_driver *driver);  // -EBUSY while in use
bool zpool_has_pool(const char *type);
struct zpool *zpool_create_pool(const char *type, const char *name, gfp_t gfp,
                                const struct zpool_ops *ops);  // NULL on failure
const char *zpool_get_type(struct zpool *pool);
void zpool_destroy_pool(struct zpool *pool);
int zpool_malloc(struct zpool *pool, size_t size, gfp_t gfp, unsigned long *handle);
void zpool_free(struct zpool *pool, unsigned long handle);
int zpool_shrink(struct zpool *pool, unsigned int pages, unsigned int *reclaimed);
void *zpool_map_handle(struct zpool *pool, unsigned long handle, enum zpool_mapmode mm);
void zpool_unmap_handle(struct zpool *pool, unsigned long handle);
u64 zpool_get_total_size(struct zpool *pool);  // bytes
bool zpool_evictable(struct zpool *pool);
bool zpool_can_sleep_mapped(struct zpool *pool);
bool zpool_malloc_support_movable(struct zpool *pool);

// Backends call this from their evict path: routes the eviction of `handle` to the user's
// zpool_ops->evict. -EINVAL without ops or callback; -ENOENT if zpool is not a live pool.
int zpool_evict(void *zpool, unsigned long handle);

#endif  // ZPOOL_ZPOOL_H_

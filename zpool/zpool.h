// SPDX-License-Identifier: GPL-2.0-only
// zpool: one API over every compressed-memory backend, chosen by name (the 2014 zpool API with
// the refcounted driver registry). Contract: the //zpool:zpool section of spec/API.md.
//
// LIFECYCLE AND THREAD-SAFETY RULES (checked in code; see zpool.cc):
//
// Drivers
// - "zbud" and "zsmalloc" are built in (zpool_drivers.cc). The registry is created, with the
//   built-in drivers on it, by the first zpool call of the process, whichever it is and from
//   whichever thread (a function-local static: no set-up call, no static-initialisation order;
//   the driver structs themselves are constant-initialised). They are never unregistered.
// - zpool_register_driver(d): d stays valid, and its members unchanged, until
//   zpool_unregister_driver(d) has returned 0. Registering a driver that is registered, or a
//   second driver for a type that is registered, WARNs and changes nothing; so does a driver
//   without a type or without one of the operations zpool calls unconditionally (create, destroy,
//   malloc, free, map, unmap, total_size; shrink may be NULL: the pool is then not evictable).
// - A pool pins its driver: zpool_create_pool() takes, under the registry lock, a reference on
//   d->owner (try_module_get(): refused once the owner is going away, kc_module_unload_begin())
//   and d->refcount; zpool_destroy_pool() drops both. zpool_unregister_driver() returns -EBUSY
//   while d->refcount > 0 (the documented answer: no WARN), WARNs (driver-refcount) and returns
//   -EBUSY if it is negative, and otherwise unlinks d (a driver that is not registered: WARN,
//   -EINVAL). A create racing with unregister either took its reference first (unregister
//   returns -EBUSY) or does not find the type (NULL, pr_err).
//   zpool_has_pool() takes and drops the same references (false while the owner is going away).
// - register, unregister, has_pool and create/destroy may run concurrently on any threads.
//
// Pools
// - Any thread may create a pool. Its creator destroys it, once, when it is unused: no handle
//   mapped on any thread and no zpool call on it in flight (the creator may hand the pool, and
//   that duty, to another thread). zpool checks this: a destroy while a handle is mapped or a
//   call is in flight WARNs (destroy-busy) and refuses; the pool stays valid and usable. Objects
//   still allocated at destroy are the backend's report (destroy-nonempty); they are freed.
// - A call on a pool that was destroyed, or whose destruction has begun, WARNs
//   (use-after-destroy) and fails: -EINVAL, NULL, 0, false or nothing. The check needs no
//   dereference of the pool (kmem_cache_owns). Its limits: once a new pool reuses the destroyed
//   pool's memory the stale pointer names the new pool; and a call that starts while another
//   thread is inside zpool_destroy_pool() of that same pool (calls racing their pool's destroy)
//   is reported when it can be (destroy refuses, or the call fails) but is not made safe.
// - On one pool, from any threads and virtual CPUs at once: zpool_malloc; zpool_free of
//   different handles (each handle is freed once); zpool_map_handle/zpool_unmap_handle, each
//   thread its own mapping (below); zpool_shrink; zpool_get_total_size and the queries. On
//   different pools everything, create and destroy included, is independent.
//
// Mappings ("multiple handles should not be mapped concurrently on any cpu")
// - A thread holds at most one mapping at a time, over all pools, and unmaps it itself before
//   mapping again; "unmap as soon as possible". zpool records per thread what it mapped:
//   a second map WARNs (nested-map) and returns NULL; unmapping a handle this thread has not
//   mapped WARNs (bad-unmap) and does nothing; freeing the handle this thread maps WARNs
//   (free-mapped) and does nothing; destroying the pool this thread maps WARNs (destroy-busy) and
//   refuses. A mapping holds the pool like a call in flight, so no thread can destroy it.
// - While a thread holds a mapping of a pool that cannot sleep mapped
//   (zpool_can_sleep_mapped() false: zsmalloc maps with preemption off), it must not call
//   anything that may sleep. zpool_malloc() with a gfp that allows blocking WARNs
//   (sleep-while-mapped) and proceeds without __GFP_DIRECT_RECLAIM; zpool_shrink() WARNs and
//   returns -EBUSY; zpool_create_pool() WARNs and returns NULL; zpool_destroy_pool() WARNs and
//   refuses. Holding a zbud mapping (can sleep mapped) restricts nothing but nesting.
// - Two threads bound to one virtual CPU mapping at once share a per-CPU area: that is the
//   backend's check (zsmalloc's local_lock WARNs and makes the second wait).
//
// Eviction
// - zpool_evictable(): the driver can shrink and ops->evict was given. zpool_shrink() on a pool
//   that is not evictable returns -EINVAL (zsmalloc always; zbud without ops or callback).
// - The backend evicts by calling zpool_evict(its own pool, handle), which calls the user's
//   ops->evict(zpool, handle) on the same thread. The callback must zpool_free() the handle (on
//   any thread) before it returns 0; it may map and unmap handles of the pool (the usual
//   write-back), but not destroy the pool (destroy-busy: the shrink is a call in flight).
//   Returning 0 without freeing WARNs (bad-evict, at most once per zpool_shrink()) and is turned
//   into a failed eviction (-EBUSY) for the backend: the object stays allocated and valid.
//
// Checks, in order (docs/hardening.md), each call stopping at the first misuse:
//   1. use-after-destroy;
//   2. zpool's per-thread state checks: nested-map, bad-unmap, free-mapped, destroy-busy of a
//      pool this thread maps;
//   3. sleep-while-mapped;
//   4. destroy-busy (calls in flight or mappings on other threads);
//   5. the backend's own checks (invalid-handle, double-free, redzone, RO checksum, ...).
// A misuse zpool reports never reaches the backend, so a call gives at most one misuse WARN.
// zpool cannot prove a handle valid without the backend: a nested map or bad unmap of a handle
// that is also invalid is reported as nested-map or bad-unmap. Documented error answers do not
// WARN: unknown type or failed create (NULL, pr_err), size 0 / oversize / __GFP_HIGHMEM for zbud
// (the backend's codes), shrink of a pool that is not evictable (-EINVAL), unregister of a
// driver in use (-EBUSY).
//
// Cost: a call checks kmem_cache_owns() (O(1), no dereference) and counts itself in flight on
// its thread's counter (kc::PercpuRef: a plain load and store, no locked instruction, no shared
// cache line between threads); destroy sums the counters. With ZPOOL_UNCHECKED=1 the checks
// compile out and the rules above are the caller's.
#ifndef ZPOOL_ZPOOL_H_
#define ZPOOL_ZPOOL_H_

#include <stddef.h>

#include <atomic>
#include <span>

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
  // NULL: the driver cannot shrink (zsmalloc); zpool_shrink() then returns -EINVAL.
  int (*shrink)(void *pool, unsigned int pages, unsigned int *reclaimed) = nullptr;
  void *(*map)(void *pool, unsigned long handle, enum zpool_mapmode mm) = nullptr;
  void (*unmap)(void *pool, unsigned long handle) = nullptr;
  u64 (*total_size)(void *pool) = nullptr;  // bytes
  bool sleep_mapped = false;
  bool malloc_support_movable = false;
  // Optional: the backend's validator (0, or -EUCLEAN with the first violation in `why`), for
  // zpool_validate_TestOnly().
  int (*validate)(void *pool, char *why, size_t len) = nullptr;
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

// Backends call this from their evict path with their own pool (the `void *` their create
// returned): routes the eviction of `handle` to the user's zpool_ops->evict of the zpool that
// owns that backend pool. -EINVAL without ops or callback; -ENOENT if no live zpool owns `pool`;
// -EBUSY if the callback returned 0 without freeing the handle (bad-evict); else the callback's
// value.
int zpool_evict(void *pool, unsigned long handle);

// ---- Beyond the contract: for tests, fuzzers and benchmarks --------------------------------
// Pools created and not yet destroyed, all types.
unsigned long zpool_live_pools_TestOnly(void);
// The backend's validator through the driver (0 if the driver has none); -EINVAL if `pool` is
// not live (no WARN: validators are also called on purpose after a misuse).
int zpool_validate_TestOnly(struct zpool *pool, char *why, size_t len);

namespace zpool_internal {
// The drivers compiled into //zpool:zpool (zpool_drivers.cc), put on the registry when it is
// created. A binary that links zpool.cc without zpool_drivers.cc defines its own (empty) list.
std::span<zpool_driver *const> builtin_drivers();
}  // namespace zpool_internal

#endif  // ZPOOL_ZPOOL_H_

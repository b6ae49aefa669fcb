// SPDX-License-Identifier: GPL-2.0-only
// The upstream allocators as C++ sees them: Linux 6.12's zsmalloc and zpool (over zsmalloc,
// zbud and z3fold) with their exported functions renamed upstream_* (renames.h), and the hooks a
// harness needs around them: module init, pending work, shrinkers, debugfs, accounting.
#ifndef ZPOOL_UPSTREAM_BRIDGE_H_
#define ZPOOL_UPSTREAM_BRIDGE_H_

#include <stddef.h>
#include <stdint.h>

#include "zpool/upstream/include/zfuzz_abi.h"

extern "C" {

// ---- mm/zsmalloc.c (6.12) ----------------------------------------------------------------------
struct upstream_zs_pool;
enum upstream_zs_mapmode { UPSTREAM_ZS_MM_RW, UPSTREAM_ZS_MM_RO, UPSTREAM_ZS_MM_WO };
struct upstream_zs_pool_stats {
  struct {
    long counter;
  } pages_compacted;  // atomic_long_t
};
upstream_zs_pool *upstream_zs_create_pool(const char *name);
void upstream_zs_destroy_pool(upstream_zs_pool *pool);
unsigned long upstream_zs_malloc(upstream_zs_pool *pool, size_t size, unsigned int gfp);
void upstream_zs_free(upstream_zs_pool *pool, unsigned long handle);
size_t upstream_zs_huge_class_size(upstream_zs_pool *pool);
void *upstream_zs_map_object(upstream_zs_pool *pool, unsigned long handle,
                             enum upstream_zs_mapmode mm);
void upstream_zs_unmap_object(upstream_zs_pool *pool, unsigned long handle);
unsigned long upstream_zs_get_total_pages(upstream_zs_pool *pool);
unsigned long upstream_zs_compact(upstream_zs_pool *pool);
unsigned int upstream_zs_lookup_class_index(upstream_zs_pool *pool, unsigned int size);
void upstream_zs_pool_stats(upstream_zs_pool *pool, struct upstream_zs_pool_stats *stats);

// ---- mm/zpool.c (6.12): no ops, no evict, no shrink; totals in pages ---------------------------
struct upstream_zpool;
enum upstream_zpool_mapmode { UPSTREAM_ZPOOL_MM_RW, UPSTREAM_ZPOOL_MM_RO, UPSTREAM_ZPOOL_MM_WO };
bool upstream_zpool_has_pool(char *type);
upstream_zpool *upstream_zpool_create_pool(const char *type, const char *name, unsigned int gfp);
const char *upstream_zpool_get_type(upstream_zpool *pool);
void upstream_zpool_destroy_pool(upstream_zpool *pool);
bool upstream_zpool_malloc_support_movable(upstream_zpool *pool);
int upstream_zpool_malloc(upstream_zpool *pool, size_t size, unsigned int gfp,
                          unsigned long *handle);
void upstream_zpool_free(upstream_zpool *pool, unsigned long handle);
void *upstream_zpool_map_handle(upstream_zpool *pool, unsigned long handle,
                                enum upstream_zpool_mapmode mm);
void upstream_zpool_unmap_handle(upstream_zpool *pool, unsigned long handle);
uint64_t upstream_zpool_get_total_pages(upstream_zpool *pool);
bool upstream_zpool_can_sleep_mapped(upstream_zpool *pool);

// ---- harness hooks (bridge.cc) ---------------------------------------------------------------
// Runs the four files' module_init (zpool, zsmalloc, zbud, z3fold), once; 0 or their error.
int upstream_init(void);
// Runs every queued work item (zsmalloc's deferred zspage free, z3fold's compaction) on the
// calling thread; returns how many ran.
int upstream_run_pending_work(void);
// Counts then scans every registered shrinker whose name starts with prefix (NULL: all).
unsigned long upstream_shrink(const char *prefix, unsigned long nr_to_scan);
// Runs a debugfs file's show() into buf ("zsmalloc/<pool>/classes"), NUL-terminated; returns
// the length of the whole text (as snprintf: a result >= len means it was cut), 0 if no file.
size_t upstream_debugfs_read(const char *path, char *buf, size_t len);
// Runs mm/migrate.c's protocol for a movable page (bridge.cc) on the n-th live page of the
// upstream files (n modulo their number): isolate, then migrate to a new page, or put back
// (PUTBACK), or fail for want of a new page and put back (NO_MEMORY). 0: migrated; -EAGAIN or
// -ENOMEM: isolated and put back; -EBUSY: not isolated (not movable, locked, already isolated,
// or the owner refused); -ENOENT: no live page.
enum upstream_migrate_action {
  UPSTREAM_MIGRATE,
  UPSTREAM_MIGRATE_PUTBACK,
  UPSTREAM_MIGRATE_NO_MEMORY,
};
int upstream_migrate_nth_page(unsigned long n, enum upstream_migrate_action action);
// Whether the driver may pick the pages of one file ("zsmalloc", "z3fold"...): all may, unless
// switched off (the fuzz targets leave z3fold's alone while its migration finding is open,
// docs/upstream-findings.md).
void upstream_set_migration(const char *unit, bool on);
long upstream_live_pages(void);
// A size class of upstream zsmalloc (zsmalloc_probe.c): 0, or -EINVAL past the last index.
int upstream_zs_class_probe(upstream_zs_pool *pool, unsigned int index, upstream_zs_class *out);
// Known upstream findings (docs/upstream-findings.md) whose signature the bridge recognises:
// reported like any other (the default) or, switched off, counted and cleaned up so a campaign
// goes on to look for new ones. Counted either way.
void upstream_report_known_findings(bool report);
unsigned long upstream_known_findings_seen(void);
// Pages the upstream files hold (allocated and not put), and NR_ZSPAGES.
long upstream_pages_in_use(void);
long upstream_zone_zspages(void);

}  // extern "C"

#endif  // ZPOOL_UPSTREAM_BRIDGE_H_

// SPDX-License-Identifier: GPL-2.0-only
// The user's zpool driver: zpool over zsmalloc.
#include "fuzz/api/user_driver.h"

#include "zpool/kernel/kernel.h"
#include "zpool/kernel/module.h"
#include "zpool/zsmalloc.h"

namespace zfuzz {

namespace {

struct module g_user_module("zfuzz_user_mod");

void *Create(const char *name, gfp_t, const struct zpool_ops *, struct zpool *) {
  return zs_create_pool(name);
}
void Destroy(void *pool) { zs_destroy_pool(static_cast<zs_pool *>(pool)); }
int Malloc(void *pool, size_t size, gfp_t gfp, unsigned long *handle) {
  unsigned long h = zs_malloc(static_cast<zs_pool *>(pool), size, gfp);
  if (IS_ERR_VALUE(h)) return static_cast<int>(PTR_ERR(reinterpret_cast<void *>(h)));
  *handle = h;
  return 0;
}
void Free(void *pool, unsigned long handle) { zs_free(static_cast<zs_pool *>(pool), handle); }
void *Map(void *pool, unsigned long handle, enum zpool_mapmode mm) {
  enum zs_mapmode mode = mm == ZPOOL_MM_RO ? ZS_MM_RO : mm == ZPOOL_MM_WO ? ZS_MM_WO : ZS_MM_RW;
  return zs_map_object(static_cast<zs_pool *>(pool), handle, mode);
}
void Unmap(void *pool, unsigned long handle) {
  zs_unmap_object(static_cast<zs_pool *>(pool), handle);
}
u64 Total(void *pool) { return zs_get_total_pages(static_cast<zs_pool *>(pool)) * PAGE_SIZE; }

void InitDriver(struct zpool_driver &d) {
  d.type = kUserDriverType;
  d.owner = &g_user_module;
  d.create = Create;
  d.destroy = Destroy;
  d.malloc = Malloc;
  d.free = Free;
  d.map = Map;
  d.unmap = Unmap;
  d.total_size = Total;
  d.malloc_support_movable = true;
}

}  // namespace

struct zpool_driver &UserDriver() {
  static struct zpool_driver *driver = [] {
    auto *d = new struct zpool_driver;  // never freed: a registered driver must outlive exit
    InitDriver(*d);
    return d;
  }();
  return *driver;
}

const char *ResetUserDriver() {
  struct zpool_driver &d = UserDriver();
  const char *problem = "";
  if (d.refcount.load() != 0) {
    problem = "the user driver's refcount is not 0 with every pool destroyed";
    d.refcount.store(0);
  }
  if (zpool_has_pool(kUserDriverType) && zpool_unregister_driver(&d) != 0 && !*problem)
    problem = "the user driver could not be unregistered with every pool destroyed";
  return problem;
}

}  // namespace zfuzz

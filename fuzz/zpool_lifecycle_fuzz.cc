// SPDX-License-Identifier: GPL-2.0-only
// zpool_lifecycle_fuzz: the driver registry and pool lifecycle of zpool (the 2014 review's
// questions) against a model of the refcount rules.
//
// Three custom drivers (custom0 over zbud, custom1 over zsmalloc, custom2 over zsmalloc without a
// shrink operation), each owned by its own struct module, are registered, unregistered, used by
// pools, and have their modules unloaded and reloaded, in any order the input chooses; pools of
// every type (zbud, zsmalloc, custom*, and an unknown type) are created, used and destroyed.
// The model knows, for every driver, whether it is registered, how many pools use it and whether
// its module is going away, and so predicts every answer: create NULL or not, unregister 0 or
// -EBUSY, module unload 0 or -EBUSY, zpool_has_pool, and exactly which calls WARN (a second
// registration of a driver or type, a negative driver refcount). A "threads" operation runs
// creators/destroyers of built-in pools against a thread that registers and unregisters a custom
// driver, then checks the registry is consistent. Runs under the record policy: the expected
// WARN count is part of the oracle; everything is torn down at the end of each input.
#include <fuzzer/FuzzedDataProvider.h>

#include <atomic>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "fuzz/api/program.h"
#include "zpool/kernel/kernel.h"
#include "zpool/kernel/module.h"
#include "zpool/misuse.h"
#include "zpool/zbud.h"
#include "zpool/zpool.h"
#include "zpool/zsmalloc.h"

namespace {

using zfuzz::TraceLine;
using zfuzz::Tracing;

// ---- the custom drivers: thin wrappers over the real backends --------------------------------

void *ZbudCreate(const char *, gfp_t gfp, const struct zpool_ops *ops, struct zpool *) {
  // Eviction is not exercised here; the wrapped pool has no evict callback.
  (void)ops;
  return zbud_create_pool(gfp, nullptr);
}
void ZbudDestroy(void *pool) { zbud_destroy_pool(static_cast<zbud_pool *>(pool)); }
int ZbudMalloc(void *pool, size_t size, gfp_t gfp, unsigned long *handle) {
  return zbud_alloc(static_cast<zbud_pool *>(pool), size, gfp, handle);
}
void ZbudFree(void *pool, unsigned long handle) {
  zbud_free(static_cast<zbud_pool *>(pool), handle);
}
int ZbudShrink(void *pool, unsigned int pages, unsigned int *reclaimed) {
  (void)pool, (void)pages;
  if (reclaimed) *reclaimed = 0;
  return -EINVAL;
}
void *ZbudMap(void *pool, unsigned long handle, enum zpool_mapmode) {
  return zbud_map(static_cast<zbud_pool *>(pool), handle);
}
void ZbudUnmap(void *pool, unsigned long handle) {
  zbud_unmap(static_cast<zbud_pool *>(pool), handle);
}
u64 ZbudTotal(void *pool) { return zbud_get_pool_size(static_cast<zbud_pool *>(pool)) * PAGE_SIZE; }

void *ZsCreate(const char *name, gfp_t, const struct zpool_ops *, struct zpool *) {
  return zs_create_pool(name);
}
void ZsDestroy(void *pool) { zs_destroy_pool(static_cast<zs_pool *>(pool)); }
int ZsMalloc(void *pool, size_t size, gfp_t gfp, unsigned long *handle) {
  unsigned long h = zs_malloc(static_cast<zs_pool *>(pool), size, gfp);
  if (IS_ERR_VALUE(h)) return static_cast<int>(PTR_ERR(reinterpret_cast<void *>(h)));
  *handle = h;
  return 0;
}
void ZsFree(void *pool, unsigned long handle) { zs_free(static_cast<zs_pool *>(pool), handle); }
int ZsShrink(void *, unsigned int, unsigned int *reclaimed) {
  if (reclaimed) *reclaimed = 0;
  return -EINVAL;
}
void *ZsMap(void *pool, unsigned long handle, enum zpool_mapmode mm) {
  enum zs_mapmode mode = mm == ZPOOL_MM_RO ? ZS_MM_RO : mm == ZPOOL_MM_WO ? ZS_MM_WO : ZS_MM_RW;
  return zs_map_object(static_cast<zs_pool *>(pool), handle, mode);
}
void ZsUnmap(void *pool, unsigned long handle) {
  zs_unmap_object(static_cast<zs_pool *>(pool), handle);
}
u64 ZsTotal(void *pool) { return zs_get_total_pages(static_cast<zs_pool *>(pool)) * PAGE_SIZE; }

constexpr int kCustom = 3;
const char *const kCustomTypes[kCustom] = {"custom0", "custom1", "custom2"};
struct module g_module0("custom0_mod");
struct module g_module1("custom1_mod");
struct module g_module2("custom2_mod");
struct module *const g_modules[kCustom] = {&g_module0, &g_module1, &g_module2};
struct zpool_driver g_drivers[kCustom];
// Same type as a built-in: registering it must WARN and change nothing.
struct zpool_driver g_impostor;

void InitDrivers() {
  for (int i = 0; i < kCustom; i++) {
    zpool_driver &d = g_drivers[i];
    d.type = kCustomTypes[i];
    d.owner = g_modules[i];
    bool zbud = i == 0;
    d.create = zbud ? ZbudCreate : ZsCreate;
    d.destroy = zbud ? ZbudDestroy : ZsDestroy;
    d.malloc = zbud ? ZbudMalloc : ZsMalloc;
    d.free = zbud ? ZbudFree : ZsFree;
    d.shrink = i == 2 ? nullptr : (zbud ? ZbudShrink : ZsShrink);
    d.map = zbud ? ZbudMap : ZsMap;
    d.unmap = zbud ? ZbudUnmap : ZsUnmap;
    d.total_size = zbud ? ZbudTotal : ZsTotal;
    d.sleep_mapped = zbud;
    d.malloc_support_movable = !zbud;
  }
  g_impostor.type = "zbud";
  g_impostor.create = ZsCreate;
  g_impostor.destroy = ZsDestroy;
  g_impostor.malloc = ZsMalloc;
  g_impostor.free = ZsFree;
  g_impostor.map = ZsMap;
  g_impostor.unmap = ZsUnmap;
  g_impostor.total_size = ZsTotal;
}

// ---- the model -----------------------------------------------------------------------------------

struct Pool {
  struct zpool *pool;
  int driver;  // -1: built-in zbud, -2: built-in zsmalloc, 0..2: custom
  std::vector<unsigned long> handles;
};

struct Model {
  bool registered[kCustom] = {};
  bool going[kCustom] = {};
  std::vector<Pool> pools;
  unsigned long expected_warns = 0;

  int users(int driver) const {
    int n = 0;
    for (const Pool &p : pools) n += p.driver == driver;
    return n;
  }
};

void CheckWarns(const Model &m, const char *after) {
  ZFUZZ_CHECK(kc_warn_count() == m.expected_warns, "after %s: %lu WARNs, the model expects %lu (last: "
        "see the report above)", after, kc_warn_count(), m.expected_warns);
}

const char *TypeName(int driver) {
  return driver == -1 ? "zbud" : driver == -2 ? "zsmalloc" : kCustomTypes[driver];
}

// fail_nth > 0: the create runs with kc_fail_nth_alloc(fail_nth) armed; if that failure fires
// inside it, the create must fail and give back everything it took (the driver reference
// included: the teardown and the unregister/unload answers check that).
void Create(Model &m, int choice, unsigned long fail_nth = 0) {
  // choice: 0 zbud, 1 zsmalloc, 2..4 custom0..2, 5 an unknown type
  int driver = choice == 0 ? -1 : choice == 1 ? -2 : choice <= 4 ? choice - 2 : 99;
  const char *type = driver == 99 ? "no-such-type" : TypeName(driver);
  if (fail_nth && Tracing()) TraceLine("kc_fail_nth_alloc(%lu)", fail_nth);
  kc_fail_nth_alloc(fail_nth);
  struct zpool *pool = zpool_create_pool(type, "lifecycle", GFP_KERNEL | __GFP_NOWARN, nullptr);
  bool fired = fail_nth > 0 && kc_fail_nth_pending() == 0;
  kc_fail_nth_alloc(0);
  if (Tracing()) TraceLine("p%zu = zpool_create_pool(\"%s\", \"lifecycle\", GFP_KERNEL, NULL)%s",
                           m.pools.size(), type, pool ? "" : " = NULL");
  bool expect = driver < 0 || (driver < kCustom && m.registered[driver] && !m.going[driver]);
  if (fired) expect = false;
  ZFUZZ_CHECK((pool != nullptr) == expect, "create of type %s returned %s, expected %s", type,
        pool ? "a pool" : "NULL", expect ? "a pool" : "NULL");
  if (pool) m.pools.push_back({pool, driver, {}});
}

void UsePool(Pool &p, FuzzedDataProvider &in) {
  int n = in.ConsumeIntegralInRange<int>(1, 4);
  for (int i = 0; i < n; i++) {
    size_t size = in.ConsumeIntegralInRange<size_t>(1, 3000);
    unsigned long handle = 0;
    int err = zpool_malloc(p.pool, size, GFP_KERNEL, &handle);
    if (Tracing()) TraceLine("zpool_malloc(p, %zu, GFP_KERNEL, &h) = %d", size, err);
    ZFUZZ_CHECK(err == 0, "zpool_malloc(%zu) on %s failed: %d", size, TypeName(p.driver), err);
    void *mem = zpool_map_handle(p.pool, handle, ZPOOL_MM_WO);
    ZFUZZ_CHECK(mem != nullptr, "map of a fresh object failed");
    memset(mem, 0x5a, size);
    zpool_unmap_handle(p.pool, handle);
    p.handles.push_back(handle);
  }
  ZFUZZ_CHECK(zpool_get_total_size(p.pool) >= PAGE_SIZE, "a pool with objects reports no pages");
}

void Destroy(Model &m, size_t index) {
  Pool p = m.pools[index];
  m.pools.erase(m.pools.begin() + static_cast<long>(index));
  for (unsigned long h : p.handles) zpool_free(p.pool, h);
  if (Tracing()) TraceLine("zpool_destroy_pool(p%zu)  /* %zu objects freed first */", index,
                           p.handles.size());
  zpool_destroy_pool(p.pool);
}

void Register(Model &m, int i) {
  if (Tracing()) TraceLine("zpool_register_driver(&%s_driver)", kCustomTypes[i]);
  zpool_register_driver(&g_drivers[i]);
  if (m.registered[i]) {
    m.expected_warns++;  // registered twice: WARN, nothing changes
  } else {
    m.registered[i] = true;
  }
}

void Unregister(Model &m, int i) {
  if (!m.registered[i]) return;  // unregistering an unknown driver is not part of the contract
  int err = zpool_unregister_driver(&g_drivers[i]);
  if (Tracing()) TraceLine("zpool_unregister_driver(&%s_driver) = %d", kCustomTypes[i], err);
  int users = m.users(i);
  ZFUZZ_CHECK(err == (users > 0 ? -EBUSY : 0), "unregister of %s with %d pools returned %d",
        kCustomTypes[i], users, err);
  if (err == 0) m.registered[i] = false;
}

void UnloadModule(Model &m, int i) {
  int err = kc_module_unload_begin(g_modules[i]);
  if (Tracing()) TraceLine("kc_module_unload_begin(%s) = %d", g_modules[i]->name, err);
  if (m.going[i]) return;  // already going: no references can exist, the answer is -EBUSY
  int users = m.users(i);
  ZFUZZ_CHECK(err == (users > 0 ? -EBUSY : 0), "unload of %s with %d pools returned %d",
        g_modules[i]->name, users, err);
  if (err == 0) m.going[i] = true;
}

void ReloadModule(Model &m, int i) {
  if (!m.going[i]) return;  // reloading a live module would drop its references
  if (Tracing()) TraceLine("kc_module_reload(%s)", g_modules[i]->name);
  kc_module_reload(g_modules[i]);
  m.going[i] = false;
}

void HasPool(Model &m, int choice) {
  int driver = choice == 0 ? -1 : choice == 1 ? -2 : choice - 2;
  const char *type = TypeName(driver);
  bool has = zpool_has_pool(type);
  if (Tracing()) TraceLine("zpool_has_pool(\"%s\") = %d", type, has);
  bool expect = driver < 0 || (m.registered[driver] && !m.going[driver]);
  ZFUZZ_CHECK(has == expect, "zpool_has_pool(%s) = %d, expected %d", type, has, expect);
}

// Built-in pools created and destroyed on two threads while a third registers and unregisters
// custom driver `i` (which no pool uses, so every unregister must succeed).
void Threads(Model &m, int i, int rounds) {
  if (m.users(i) > 0 || m.going[i]) return;
  if (Tracing()) TraceLine("threads: 2 x %d create/destroy of built-in pools | %d x "
                           "register/unregister %s", rounds, rounds, kCustomTypes[i]);
  bool was_registered = m.registered[i];
  if (was_registered) Unregister(m, i);
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 2; t++) {
    threads.emplace_back([t, rounds, &failures] {
      kc_set_cpu(t);
      for (int r = 0; r < rounds; r++) {
        struct zpool *pool =
            zpool_create_pool(t ? "zsmalloc" : "zbud", "threads", GFP_KERNEL, nullptr);
        if (pool == nullptr) {
          failures++;
          continue;
        }
        unsigned long handle;
        if (zpool_malloc(pool, 100 + static_cast<size_t>(r), GFP_KERNEL, &handle) == 0)
          zpool_free(pool, handle);
        zpool_destroy_pool(pool);
      }
    });
  }
  threads.emplace_back([i, rounds, &failures] {
    kc_set_cpu(2 % kc_nr_cpus());
    for (int r = 0; r < rounds; r++) {
      zpool_register_driver(&g_drivers[i]);
      if (!zpool_has_pool(kCustomTypes[i])) failures++;
      if (zpool_unregister_driver(&g_drivers[i]) != 0) failures++;
    }
  });
  for (auto &t : threads) t.join();
  ZFUZZ_CHECK(failures.load() == 0, "%d failures among concurrent creates and register/unregister",
        failures.load());
  ZFUZZ_CHECK(!zpool_has_pool(kCustomTypes[i]), "%s still registered after the threads",
        kCustomTypes[i]);
  if (was_registered) Register(m, i);
}

void CorruptRefcount(Model &m, int i) {
  // A driver refcount below zero (a put without a get): unregister must WARN and refuse.
  if (!m.registered[i] || m.users(i) > 0) return;
  g_drivers[i].refcount.store(-1);
  int err = zpool_unregister_driver(&g_drivers[i]);
  if (Tracing()) TraceLine("driver->refcount = -1; zpool_unregister_driver(&%s_driver) = %d",
                           kCustomTypes[i], err);
  m.expected_warns++;
  ZFUZZ_CHECK(err == -EBUSY, "unregister with a negative refcount returned %d", err);
  g_drivers[i].refcount.store(0);
}

void RegisterImpostor(Model &m) {
  if (Tracing()) TraceLine("zpool_register_driver(&impostor)  /* type \"zbud\" again */");
  zpool_register_driver(&g_impostor);
  m.expected_warns++;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int *, char ***) {
  zfuzz::InitializeHarness(KC_WARN_RECORD);
  InitDrivers();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  FuzzedDataProvider in(data, size);
  zfuzz::ResetKernelState();
  const unsigned long pages_before = kc_pages_in_use(), meta_before = kc_meta_in_use();
  Model m;
  for (int op = 0; op < 64 && in.remaining_bytes() > 0; op++) {
    switch (in.ConsumeIntegralInRange<int>(0, 11)) {
      case 0:
        Register(m, in.ConsumeIntegralInRange<int>(0, kCustom - 1));
        break;
      case 1:
        Unregister(m, in.ConsumeIntegralInRange<int>(0, kCustom - 1));
        break;
      case 2:
      case 3:
        Create(m, in.ConsumeIntegralInRange<int>(0, 5));
        break;
      case 4:
        if (!m.pools.empty()) Destroy(m, in.ConsumeIntegralInRange<size_t>(0, m.pools.size() - 1));
        break;
      case 5:
        UnloadModule(m, in.ConsumeIntegralInRange<int>(0, kCustom - 1));
        break;
      case 6:
        ReloadModule(m, in.ConsumeIntegralInRange<int>(0, kCustom - 1));
        break;
      case 7:
        HasPool(m, in.ConsumeIntegralInRange<int>(0, 4));
        break;
      case 8:
        if (!m.pools.empty())
          UsePool(m.pools[in.ConsumeIntegralInRange<size_t>(0, m.pools.size() - 1)], in);
        break;
      case 9: {
        int i = in.ConsumeIntegralInRange<int>(0, kCustom - 1);
        Threads(m, i, in.ConsumeIntegralInRange<int>(1, 8));
        break;
      }
      case 11: {  // a create with an allocation failure injected inside it
        int choice = in.ConsumeIntegralInRange<int>(0, 4);
        unsigned long nth = in.ConsumeIntegralInRange<unsigned long>(1, 8);
        Create(m, choice, nth);
        break;
      }
      case 10:
        if (in.ConsumeBool()) {
          CorruptRefcount(m, in.ConsumeIntegralInRange<int>(0, kCustom - 1));
        } else {
          RegisterImpostor(m);
        }
        break;
    }
    CheckWarns(m, "an operation");
  }
  // Teardown: every pool destroyed, every custom driver unregistered, modules live again.
  while (!m.pools.empty()) Destroy(m, m.pools.size() - 1);
  for (int i = 0; i < kCustom; i++) {
    Unregister(m, i);
    ReloadModule(m, i);
    ZFUZZ_CHECK(g_drivers[i].refcount.load() == 0, "%s refcount %d after teardown", kCustomTypes[i],
          g_drivers[i].refcount.load());
    ZFUZZ_CHECK(module_refcount(g_modules[i]) == 0, "%s holds %ld module references after teardown",
          g_modules[i]->name, module_refcount(g_modules[i]));
  }
  CheckWarns(m, "teardown");
  ZFUZZ_CHECK(zpool_misuse_count(ZPOOL_MISUSE_DRIVER_REFCOUNT) ==
            zpool_misuse_total(),
        "a misuse other than driver-refcount was reported");
  ZFUZZ_CHECK(kc_pages_in_use() == pages_before && kc_meta_in_use() == meta_before,
        "leak: pages %lu -> %lu, metadata %lu -> %lu", pages_before, kc_pages_in_use(),
        meta_before, kc_meta_in_use());
  zfuzz::ResetKernelState();
  return 0;
}

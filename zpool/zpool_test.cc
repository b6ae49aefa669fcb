// SPDX-License-Identifier: GPL-2.0-only
// zpool over the real backends.
//
// - ZpoolBackendTest: one suite, value-parameterised by backend (kBackends below: a type name and
//   the few facts the contract lets differ), run through zpool against every backend. A new
//   backend gets the whole suite by adding one line to kBackends.
// - Evict routing through zbud, the registry with a driver of our own that wraps zbud, the
//   zpool-level hardening catalogue on the real backends (a misuse produces exactly one WARN:
//   zpool's, or the backend's, never both), and threads (meaningful under TSan).
#include "zpool/zpool.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "zpool/kernel/kernel.h"
#include "zpool/kernel/module.h"
#include "zpool/kernel/sanitizer.h"
#include "zpool/misuse.h"
#include "zpool/zbud.h"
#include "zpool/zsmalloc.h"

namespace {

// ---- Helpers
// -------------------------------------------------------------------------------------

std::string LastWarning() {
  char buf[8192];
  kc_last_warning(buf, sizeof(buf));
  return buf;
}

// Expects `stmt` to report exactly one WARN, a misuse of `kind` whose message names it.
#define EXPECT_ONE_MISUSE(kind, stmt)                                                             \
  do {                                                                                            \
    SCOPED_TRACE(#stmt);                                                                          \
    const unsigned long warns0 = kc_warn_count();                                                 \
    const unsigned long kind0 = zpool_misuse_count(kind);                                         \
    const unsigned long total0 = zpool_misuse_total();                                            \
    stmt;                                                                                         \
    EXPECT_EQ(kc_warn_count(), warns0 + 1) << LastWarning();                                      \
    EXPECT_EQ(zpool_misuse_count(kind), kind0 + 1) << LastWarning();                              \
    EXPECT_EQ(zpool_misuse_total(), total0 + 1);                                                  \
    EXPECT_NE(LastWarning().find(std::string(zpool_misuse_name(kind)) + ": "), std::string::npos) \
        << LastWarning();                                                                         \
  } while (0)

#define EXPECT_NO_WARN(stmt)                             \
  do {                                                   \
    SCOPED_TRACE(#stmt);                                 \
    const unsigned long warns0 = kc_warn_count();        \
    stmt;                                                \
    EXPECT_EQ(kc_warn_count(), warns0) << LastWarning(); \
  } while (0)

u8 PatternByte(unsigned long seed, size_t i) {
  return static_cast<u8>(seed * 131 + i * 7 + (i >> 8));
}

// Writes the pattern of `seed` over the object through a WO mapping.
void Fill(zpool *pool, unsigned long handle, size_t size, unsigned long seed) {
  auto *p = static_cast<u8 *>(zpool_map_handle(pool, handle, ZPOOL_MM_WO));
  ASSERT_NE(p, nullptr);
  for (size_t i = 0; i < size; i++) p[i] = PatternByte(seed, i);
  zpool_unmap_handle(pool, handle);
}

// True if the object holds the pattern of `seed` (read through an RO mapping).
bool Holds(zpool *pool, unsigned long handle, size_t size, unsigned long seed) {
  auto *p = static_cast<const u8 *>(zpool_map_handle(pool, handle, ZPOOL_MM_RO));
  if (p == nullptr) return false;
  bool ok = true;
  for (size_t i = 0; i < size && ok; i++) ok = p[i] == PatternByte(seed, i);
  zpool_unmap_handle(pool, handle);
  return ok;
}

void ExpectValid(zpool *pool) {
  char why[512] = "";
  EXPECT_EQ(zpool_validate_TestOnly(pool, why, sizeof(why)), 0) << why;
}

struct Object {
  unsigned long handle;
  size_t size;
  unsigned long seed;
};

// Resets the warning state and checks that pages, metadata and pools come back.
class ZpoolFixture {
 protected:
  void Begin() {
    GTEST_FLAG_SET(death_test_style, "threadsafe");
    kc_set_warn_policy(KC_WARN_RECORD);
    kc_warn_reset();
    zpool_misuse_reset();
    pages0_ = kc_pages_in_use();
    meta0_ = kc_meta_in_use();
    pools0_ = zpool_live_pools_TestOnly();
  }
  void End() {
    EXPECT_EQ(zpool_live_pools_TestOnly(), pools0_) << "a pool was left behind";
    EXPECT_EQ(kc_pages_in_use(), pages0_) << "pages leaked";
    EXPECT_EQ(kc_meta_in_use(), meta0_) << "metadata leaked";
    EXPECT_EQ(preempt_count(), 0);
    kc_set_warn_policy(KC_WARN_LOG);
    kc_warn_reset();
    zpool_misuse_reset();
  }
  unsigned long pages0_ = 0, meta0_ = 0, pools0_ = 0;
};

// ---- No set-up call, no static-initialisation order
// -----------------------------------------------

// Uses zpool from a dynamic initialiser of this translation unit, which may run before or after
// those of zpool.cc and zpool_drivers.cc (ASan's strict_init_order, on in .bazelrc, reports a
// read of another unit's not yet initialised global).
struct StaticInitUse {
  StaticInitUse() {
    has_zbud = zpool_has_pool("zbud");
    has_zsmalloc = zpool_has_pool("zsmalloc");
    for (const char *type : {"zbud", "zsmalloc"}) {
      zpool *pool = zpool_create_pool(type, "static-init", GFP_KERNEL, nullptr);
      if (pool == nullptr) continue;
      unsigned long h = 0;
      if (zpool_malloc(pool, 100, GFP_KERNEL, &h) == 0) {
        zpool_free(pool, h);
        pools_used++;
      }
      zpool_destroy_pool(pool);
    }
  }
  bool has_zbud = false;
  bool has_zsmalloc = false;
  int pools_used = 0;
};
const StaticInitUse g_static_init_use;

TEST(ZpoolStaticInit, BuiltinDriversServePoolsDuringStaticInitialisation) {
  EXPECT_TRUE(g_static_init_use.has_zbud);
  EXPECT_TRUE(g_static_init_use.has_zsmalloc);
  EXPECT_EQ(g_static_init_use.pools_used, 2);
}

// ---- One suite for every backend ---------------------------------------------------------------

struct Backend {
  const char *type;
  size_t max_size;    // the largest size zpool_malloc accepts
  bool highmem_ok;    // __GFP_HIGHMEM accepted (zbud: -EINVAL)
  bool sleep_mapped;  // zpool_can_sleep_mapped()
  bool movable;       // zpool_malloc_support_movable()
  bool can_shrink;    // evictable when given ops->evict
  bool map_has_mode;  // the backend sees the map mode (so it can checksum RO mappings)
};

const Backend kBackends[] = {
    {"zbud", zbud_max_alloc_size(), false, true, false, true, false},
    {"zsmalloc", PAGE_SIZE, true, false, true, false, true},
};

class ZpoolBackendTest : public ::testing::TestWithParam<Backend>, protected ZpoolFixture {
 protected:
  void SetUp() override { Begin(); }
  void TearDown() override { End(); }

  const Backend &backend() const { return GetParam(); }
  zpool *Create(const zpool_ops *ops = nullptr) {
    zpool *pool = zpool_create_pool(backend().type, "zpool_test", GFP_KERNEL, ops);
    EXPECT_NE(pool, nullptr);
    return pool;
  }
  unsigned long Malloc(zpool *pool, size_t size, gfp_t gfp = GFP_KERNEL) {
    unsigned long handle = 0;
    EXPECT_EQ(zpool_malloc(pool, size, gfp, &handle), 0) << size;
    EXPECT_NE(handle, 0u);
    return handle;
  }
  std::vector<size_t> Sizes() const {
    std::vector<size_t> sizes;
    for (size_t s :
         {size_t{1},         size_t{2},    size_t{7},     size_t{8},         size_t{9},
          size_t{31},        size_t{32},   size_t{33},    size_t{63},        size_t{64},
          size_t{65},        size_t{100},  size_t{255},   size_t{256},       size_t{1000},
          size_t{1024},      size_t{2000}, PAGE_SIZE / 2, PAGE_SIZE / 2 + 1, backend().max_size - 1,
          backend().max_size})
      if (s <= backend().max_size) sizes.push_back(s);
    return sizes;
  }
};

TEST_P(ZpoolBackendTest, AvailableWithoutSetUpAndReportsItsNature) {
  EXPECT_TRUE(zpool_has_pool(backend().type));
  zpool_ops ops = {.evict = [](zpool *, unsigned long) { return -EBUSY; }};
  zpool *plain = Create();
  zpool *with_ops = Create(&ops);
  ASSERT_NE(plain, nullptr);
  ASSERT_NE(with_ops, nullptr);
  EXPECT_STREQ(zpool_get_type(plain), backend().type);
  EXPECT_EQ(zpool_can_sleep_mapped(plain), backend().sleep_mapped);
  EXPECT_EQ(zpool_malloc_support_movable(plain), backend().movable);
  EXPECT_FALSE(zpool_evictable(plain)) << "no ops";
  EXPECT_EQ(zpool_evictable(with_ops), backend().can_shrink);
  EXPECT_EQ(zpool_get_total_size(plain), 0u);
  ExpectValid(plain);
  zpool_destroy_pool(plain);
  zpool_destroy_pool(with_ops);
  EXPECT_EQ(kc_warn_count(), 0u) << LastWarning();
}

TEST_P(ZpoolBackendTest, MallocMapFreeKeepContentsAndCountTotalSizeInBytes) {
  zpool *pool = Create();
  ASSERT_NE(pool, nullptr);
  const unsigned long pages_empty = kc_pages_in_use();  // what the empty pool holds
  std::vector<Object> objects;
  unsigned long seed = 1;
  size_t bytes = 0;
  for (int round = 0; round < 3; round++) {
    for (size_t size : Sizes()) {
      Object o = {Malloc(pool, size), size, seed++};
      Fill(pool, o.handle, o.size, o.seed);
      objects.push_back(o);
      bytes += size;
    }
  }
  std::vector<unsigned long> handles;
  for (const Object &o : objects) handles.push_back(o.handle);
  std::sort(handles.begin(), handles.end());
  EXPECT_EQ(std::adjacent_find(handles.begin(), handles.end()), handles.end())
      << "distinct handles";

  const u64 total = zpool_get_total_size(pool);
  EXPECT_EQ(total % PAGE_SIZE, 0u);
  EXPECT_GE(total, bytes);
  EXPECT_EQ(total / PAGE_SIZE, kc_pages_in_use() - pages_empty) << "bytes, of the pages it holds";
  for (const Object &o : objects) EXPECT_TRUE(Holds(pool, o.handle, o.size, o.seed)) << o.size;
  ExpectValid(pool);

  // Free in a random order; the others keep their contents.
  std::mt19937 rng(42);
  std::shuffle(objects.begin(), objects.end(), rng);
  for (size_t i = 0; i < objects.size(); i++) {
    zpool_free(pool, objects[i].handle);
    if (i % 7 == 0) {
      for (size_t j = i + 1; j < objects.size(); j++)
        ASSERT_TRUE(Holds(pool, objects[j].handle, objects[j].size, objects[j].seed));
      ExpectValid(pool);
      EXPECT_EQ(zpool_get_total_size(pool) / PAGE_SIZE, kc_pages_in_use() - pages_empty);
    }
  }
  EXPECT_EQ(zpool_get_total_size(pool), 0u) << "every page is given back";
  EXPECT_EQ(kc_pages_in_use(), pages_empty);
  zpool_destroy_pool(pool);
  EXPECT_EQ(kc_warn_count(), 0u) << LastWarning();
}

TEST_P(ZpoolBackendTest, MapModesPassThrough) {
  zpool *pool = Create();
  ASSERT_NE(pool, nullptr);
  for (size_t size : Sizes()) {
    unsigned long h = Malloc(pool, size);
    Fill(pool, h, size, size);  // WO
    // RW: reads the contents, and what it writes stays.
    auto *p = static_cast<u8 *>(zpool_map_handle(pool, h, ZPOOL_MM_RW));
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(p[0], PatternByte(size, 0));
    EXPECT_EQ(p[size - 1], PatternByte(size, size - 1));
    for (size_t i = 0; i < size; i++) p[i] = PatternByte(size + 1, i);
    zpool_unmap_handle(pool, h);
    EXPECT_TRUE(Holds(pool, h, size, size + 1)) << size;  // RO
    // The default mode is RW.
    p = static_cast<u8 *>(zpool_map_handle(pool, h, ZPOOL_MM_DEFAULT));
    ASSERT_NE(p, nullptr);
    p[size / 2] ^= 0xff;
    zpool_unmap_handle(pool, h);
    p = static_cast<u8 *>(zpool_map_handle(pool, h, ZPOOL_MM_RO));
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(p[size / 2], PatternByte(size + 1, size / 2) ^ 0xff) << size;
    zpool_unmap_handle(pool, h);
    zpool_free(pool, h);
  }
  ExpectValid(pool);
  zpool_destroy_pool(pool);
  EXPECT_EQ(kc_warn_count(), 0u) << LastWarning();
}

TEST_P(ZpoolBackendTest, ErrorCodesAreTheBackendsAndDoNotWarn) {
  zpool *pool = Create();
  ASSERT_NE(pool, nullptr);
  const unsigned long pages_empty = kc_pages_in_use();
  unsigned long h = 0;
  EXPECT_EQ(zpool_malloc(pool, 0, GFP_KERNEL, &h), -EINVAL);
  EXPECT_EQ(zpool_malloc(pool, backend().max_size + 1, GFP_KERNEL, &h), -ENOSPC);
  EXPECT_EQ(zpool_malloc(pool, 4 * PAGE_SIZE, GFP_KERNEL, &h), -ENOSPC);
  EXPECT_EQ(zpool_malloc(pool, SIZE_MAX, GFP_KERNEL, &h), -ENOSPC);
  if (backend().highmem_ok) {
    EXPECT_EQ(zpool_malloc(pool, 100, GFP_KERNEL | __GFP_HIGHMEM, &h), 0);
    zpool_free(pool, h);
  } else {
    EXPECT_EQ(zpool_malloc(pool, 100, GFP_KERNEL | __GFP_HIGHMEM, &h), -EINVAL);
  }
  unsigned int reclaimed = 7;
  EXPECT_EQ(zpool_shrink(pool, 1, &reclaimed), -EINVAL) << "not evictable without ops";
  EXPECT_EQ(reclaimed, 0u);
  EXPECT_EQ(zpool_get_total_size(pool), 0u);
  EXPECT_EQ(kc_pages_in_use(), pages_empty);
  zpool_destroy_pool(pool);
  EXPECT_EQ(kc_warn_count(), 0u) << LastWarning();
  EXPECT_EQ(zpool_misuse_total(), 0u);
}

TEST_P(ZpoolBackendTest, OutOfMemoryFailsCleanly) {
  // Creation: every allocation it makes fails in turn; each failure is NULL, says so with a
  // pr_err, and leaks nothing.
  const unsigned long errs0 = kc_log_count(KC_LOG_ERR);
  zpool *pool = nullptr;
  unsigned long failed = 0;
  for (unsigned long n = 1; n < 4096 && pool == nullptr; n++) {
    kc_fail_nth_alloc(n);
    pool = zpool_create_pool(backend().type, "oom", GFP_KERNEL, nullptr);
    kc_fail_nth_alloc(0);
    if (pool == nullptr) {
      failed++;
      EXPECT_EQ(kc_meta_in_use(), meta0_) << n;
      EXPECT_EQ(kc_pages_in_use(), pages0_) << n;
      EXPECT_EQ(zpool_live_pools_TestOnly(), pools0_) << n;
    }
  }
  ASSERT_NE(pool, nullptr);
  EXPECT_GE(failed, 1u);
  EXPECT_GE(kc_log_count(KC_LOG_ERR), errs0 + failed) << "a pr_err per failed create";
  // Allocation: -ENOMEM, nothing leaked, the pool still fine.
  std::vector<unsigned long> handles;
  for (size_t size : {size_t{64}, backend().max_size}) {
    for (unsigned long nth = 1; nth < 4; nth++) {
      const unsigned long pages = kc_pages_in_use();
      unsigned long h = 0;
      kc_fail_nth_alloc(nth);
      int ret = zpool_malloc(pool, size, GFP_KERNEL | __GFP_NOWARN, &h);
      kc_fail_nth_alloc(0);
      if (ret == 0) {
        handles.push_back(h);
      } else {
        EXPECT_EQ(ret, -ENOMEM);
        EXPECT_EQ(kc_pages_in_use(), pages);
      }
    }
    handles.push_back(Malloc(pool, size));
  }
  ExpectValid(pool);
  for (unsigned long h : handles) zpool_free(pool, h);
  zpool_destroy_pool(pool);
  EXPECT_EQ(kc_warn_count(), 0u) << LastWarning();
}

// ---- The zpool-level catalogue on each backend: exactly one WARN, zpool's ----------------------

TEST_P(ZpoolBackendTest, NestedMapAndBadUnmapAreRefusedBeforeTheBackend) {
  if (!ZPOOL_CHECKS) GTEST_SKIP() << "misuse checks compiled out (ZPOOL_UNCHECKED=1)";
  zpool *pool = Create();
  ASSERT_NE(pool, nullptr);
  unsigned long h1 = Malloc(pool, 100), h2 = Malloc(pool, 200);
  Fill(pool, h1, 100, 1);
  Fill(pool, h2, 200, 2);
  EXPECT_ONE_MISUSE(ZPOOL_MISUSE_BAD_UNMAP, zpool_unmap_handle(pool, h1));
  ASSERT_NE(zpool_map_handle(pool, h1, ZPOOL_MM_RO), nullptr);
  EXPECT_ONE_MISUSE(ZPOOL_MISUSE_NESTED_MAP,
                    EXPECT_EQ(zpool_map_handle(pool, h2, ZPOOL_MM_RO), nullptr));
  EXPECT_NE(LastWarning().find("zpool_map_handle"), std::string::npos) << LastWarning();
  EXPECT_ONE_MISUSE(ZPOOL_MISUSE_NESTED_MAP,
                    EXPECT_EQ(zpool_map_handle(pool, h1, ZPOOL_MM_RO), nullptr));
  EXPECT_ONE_MISUSE(ZPOOL_MISUSE_BAD_UNMAP, zpool_unmap_handle(pool, h2));
  EXPECT_NO_WARN(zpool_unmap_handle(pool, h1));
  EXPECT_FALSE(kc_in_atomic());
  EXPECT_ONE_MISUSE(ZPOOL_MISUSE_BAD_UNMAP, zpool_unmap_handle(pool, h1));
  EXPECT_TRUE(Holds(pool, h1, 100, 1));
  EXPECT_TRUE(Holds(pool, h2, 200, 2));
  ExpectValid(pool);
  zpool_free(pool, h1);
  zpool_free(pool, h2);
  zpool_destroy_pool(pool);
  EXPECT_EQ(zpool_misuse_total(), 5u);
}

TEST_P(ZpoolBackendTest, FreeMappedAndDestroyMappedAreRefused) {
  if (!ZPOOL_CHECKS) GTEST_SKIP() << "misuse checks compiled out (ZPOOL_UNCHECKED=1)";
  zpool *pool = Create();
  ASSERT_NE(pool, nullptr);
  unsigned long h = Malloc(pool, 300), other = Malloc(pool, 50);
  Fill(pool, other, 50, 9);
  auto *p = static_cast<u8 *>(zpool_map_handle(pool, h, ZPOOL_MM_WO));
  ASSERT_NE(p, nullptr);
  for (size_t i = 0; i < 300; i++) p[i] = PatternByte(5, i);
  EXPECT_ONE_MISUSE(ZPOOL_MISUSE_FREE_MAPPED, zpool_free(pool, h));
  EXPECT_ONE_MISUSE(ZPOOL_MISUSE_DESTROY_BUSY, zpool_destroy_pool(pool));
  EXPECT_EQ(p[299], PatternByte(5, 299)) << "still allocated and mapped";
  zpool_unmap_handle(pool, h);
  EXPECT_TRUE(Holds(pool, h, 300, 5));
  EXPECT_TRUE(Holds(pool, other, 50, 9));
  ExpectValid(pool);
  EXPECT_NO_WARN(zpool_free(pool, h));
  zpool_free(pool, other);
  EXPECT_NO_WARN(zpool_destroy_pool(pool));
}

TEST_P(ZpoolBackendTest, DestroyWhileAnotherThreadMapsIsRefused) {
  if (!ZPOOL_CHECKS) GTEST_SKIP() << "misuse checks compiled out (ZPOOL_UNCHECKED=1)";
  zpool *pool = Create();
  ASSERT_NE(pool, nullptr);
  unsigned long h = Malloc(pool, 100);
  Fill(pool, h, 100, 3);
  std::atomic<int> step{0};
  std::thread mapper([&] {
    kc_set_cpu(1);
    if (zpool_map_handle(pool, h, ZPOOL_MM_RO) == nullptr) ADD_FAILURE();
    step = 1;
    while (step.load() != 2) std::this_thread::yield();
    zpool_unmap_handle(pool, h);
  });
  kc_set_cpu(0);
  while (step.load() != 1) std::this_thread::yield();
  EXPECT_ONE_MISUSE(ZPOOL_MISUSE_DESTROY_BUSY, zpool_destroy_pool(pool));
  step = 2;
  mapper.join();
  EXPECT_TRUE(Holds(pool, h, 100, 3));
  zpool_free(pool, h);
  EXPECT_NO_WARN(zpool_destroy_pool(pool));
}

TEST_P(ZpoolBackendTest, UseAfterDestroyNeverReachesTheBackend) {
  if (!ZPOOL_CHECKS) GTEST_SKIP() << "misuse checks compiled out (ZPOOL_UNCHECKED=1)";
  zpool *pool = Create();
  ASSERT_NE(pool, nullptr);
  unsigned long h = Malloc(pool, 64);
  zpool_free(pool, h);
  zpool_destroy_pool(pool);
  const auto uad = ZPOOL_MISUSE_USE_AFTER_DESTROY;
  unsigned long h2 = 0;
  unsigned int reclaimed = 3;
  EXPECT_ONE_MISUSE(uad, EXPECT_EQ(zpool_malloc(pool, 64, GFP_KERNEL, &h2), -EINVAL));
  EXPECT_ONE_MISUSE(uad, EXPECT_EQ(zpool_map_handle(pool, h, ZPOOL_MM_RW), nullptr));
  EXPECT_ONE_MISUSE(uad, zpool_unmap_handle(pool, h));
  EXPECT_ONE_MISUSE(uad, zpool_free(pool, h));
  EXPECT_ONE_MISUSE(uad, EXPECT_EQ(zpool_shrink(pool, 1, &reclaimed), -EINVAL));
  EXPECT_ONE_MISUSE(uad, EXPECT_EQ(zpool_get_total_size(pool), 0u));
  EXPECT_ONE_MISUSE(uad, zpool_destroy_pool(pool));
  EXPECT_EQ(kc_pages_in_use(), pages0_);
}

TEST_P(ZpoolBackendTest, SleepWhileMappedIsOneWarnForBackendsThatCannotSleepMapped) {
  if (!ZPOOL_CHECKS) GTEST_SKIP() << "misuse checks compiled out (ZPOOL_UNCHECKED=1)";
  zpool *pool = Create();
  ASSERT_NE(pool, nullptr);
  unsigned long h = Malloc(pool, 100), h2 = 0, h3 = 0;
  ASSERT_NE(zpool_map_handle(pool, h, ZPOOL_MM_RW), nullptr);
  if (backend().sleep_mapped) {
    EXPECT_NO_WARN(EXPECT_EQ(zpool_malloc(pool, 64, GFP_KERNEL, &h2), 0));
  } else {
    // zpool WARNs once and strips __GFP_DIRECT_RECLAIM: the backend and the page allocator
    // must not WARN again for the same call.
    EXPECT_ONE_MISUSE(ZPOOL_MISUSE_SLEEP_WHILE_MAPPED,
                      EXPECT_EQ(zpool_malloc(pool, 64, GFP_KERNEL, &h2), 0));
  }
  EXPECT_NO_WARN(EXPECT_EQ(zpool_malloc(pool, 32, GFP_NOWAIT, &h3), 0));
  zpool_unmap_handle(pool, h);
  ExpectValid(pool);
  for (unsigned long x : {h, h2, h3}) zpool_free(pool, x);
  EXPECT_NO_WARN(zpool_destroy_pool(pool));
}

// ---- The backend's own checks come through zpool once ----------------------------------------

TEST_P(ZpoolBackendTest, BackendHandleChecksReportOnceThroughZpool) {
  if (!ZPOOL_CHECKS) GTEST_SKIP() << "misuse checks compiled out (ZPOOL_UNCHECKED=1)";
  zpool *pool = Create();
  zpool *other = Create();
  ASSERT_NE(pool, nullptr);
  ASSERT_NE(other, nullptr);
  unsigned long keep = Malloc(pool, 80), h = Malloc(pool, 80), foreign = Malloc(other, 80);
  Fill(pool, keep, 80, 11);
  Fill(other, foreign, 80, 12);
  zpool_free(pool, h);
  EXPECT_ONE_MISUSE(ZPOOL_MISUSE_DOUBLE_FREE, zpool_free(pool, h));
  unsigned long local = 0;
  const unsigned long garbage[] = {0, 1, 0x1000, reinterpret_cast<unsigned long>(&local), foreign};
  for (unsigned long g : garbage) {
    SCOPED_TRACE(g);
    EXPECT_ONE_MISUSE(ZPOOL_MISUSE_INVALID_HANDLE, zpool_free(pool, g));
    EXPECT_ONE_MISUSE(ZPOOL_MISUSE_INVALID_HANDLE,
                      EXPECT_EQ(zpool_map_handle(pool, g, ZPOOL_MM_RO), nullptr));
    EXPECT_FALSE(kc_in_atomic()) << "a refused map holds nothing";
  }
  EXPECT_TRUE(Holds(pool, keep, 80, 11));
  EXPECT_TRUE(Holds(other, foreign, 80, 12));
  ExpectValid(pool);
  ExpectValid(other);
  zpool_free(other, foreign);
  zpool_destroy_pool(other);
  // Destroying a pool that still holds objects: one WARN, every page back.
  EXPECT_ONE_MISUSE(ZPOOL_MISUSE_DESTROY_NONEMPTY, zpool_destroy_pool(pool));
  EXPECT_EQ(kc_pages_in_use(), pages0_);
}

TEST_P(ZpoolBackendTest, WriteThroughReadOnlyMappingIsReportedOnceAtUnmap) {
  if (!ZPOOL_CHECKS) GTEST_SKIP() << "misuse checks compiled out (ZPOOL_UNCHECKED=1)";
  if (!kc_hardening_full()) GTEST_SKIP() << "the RO checksum is a full-hardening check";
  // zbud_map() has no mode and zbud.h no size query: neither zbud nor zpool can checksum an RO
  // mapping of a zbud object.
  if (!backend().map_has_mode) GTEST_SKIP() << backend().type << " maps without a mode";
  zpool *pool = Create();
  ASSERT_NE(pool, nullptr);
  unsigned long h = Malloc(pool, 64);
  Fill(pool, h, 64, 4);
  auto *p = static_cast<u8 *>(zpool_map_handle(pool, h, ZPOOL_MM_RO));
  ASSERT_NE(p, nullptr);
  p[10] ^= 0x5a;
  EXPECT_ONE_MISUSE(ZPOOL_MISUSE_WRITE_RO, zpool_unmap_handle(pool, h));
  EXPECT_FALSE(kc_in_atomic());
  ExpectValid(pool);
  zpool_free(pool, h);
  zpool_destroy_pool(pool);
}

TEST_P(ZpoolBackendTest, OverflowIntoSlackIsReportedOnceAtUnmap) {
  if (!ZPOOL_CHECKS) GTEST_SKIP() << "misuse checks compiled out (ZPOOL_UNCHECKED=1)";
  if (kc::kAsan) GTEST_SKIP() << "under ASan the write itself is the report";
  zpool *pool = Create();
  ASSERT_NE(pool, nullptr);
  // 100 bytes: zbud's slot is 128 bytes; zsmalloc's class (100 + handle header) has slack too.
  unsigned long h = Malloc(pool, 100);
  auto *p = static_cast<u8 *>(zpool_map_handle(pool, h, ZPOOL_MM_WO));
  ASSERT_NE(p, nullptr);
  memset(p, 1, 100);
  p[100] = 0xee;  // one byte past the requested size
  EXPECT_ONE_MISUSE(ZPOOL_MISUSE_OVERFLOW, zpool_unmap_handle(pool, h));
  EXPECT_FALSE(kc_in_atomic());
  ExpectValid(pool);
  zpool_free(pool, h);
  zpool_destroy_pool(pool);
}

TEST_P(ZpoolBackendTest, NestedMapIsAZpoolCrashUnderAbort) {
  if (!ZPOOL_CHECKS) GTEST_SKIP() << "misuse checks compiled out (ZPOOL_UNCHECKED=1)";
  zpool *pool = Create();
  ASSERT_NE(pool, nullptr);
  unsigned long h1 = Malloc(pool, 10), h2 = Malloc(pool, 10);
  ASSERT_NE(zpool_map_handle(pool, h1, ZPOOL_MM_RW), nullptr);
  EXPECT_DEATH((kc_set_warn_policy(KC_WARN_ABORT), zpool_map_handle(pool, h2, ZPOOL_MM_RW)),
               "nested-map: zpool_map_handle\\(.*only one handle may be mapped per cpu");
  EXPECT_DEATH((kc_set_warn_policy(KC_WARN_ABORT), zpool_free(pool, h1)),
               "free-mapped: zpool_free\\(");
  zpool_unmap_handle(pool, h1);
  EXPECT_DEATH((kc_set_warn_policy(KC_WARN_ABORT), zpool_unmap_handle(pool, h1)),
               "bad-unmap: zpool_unmap_handle\\(");
  zpool_free(pool, h1);
  EXPECT_DEATH((kc_set_warn_policy(KC_WARN_ABORT), zpool_free(pool, h1)), "double-free: ");
  zpool_free(pool, h2);
  zpool_destroy_pool(pool);
  EXPECT_DEATH((kc_set_warn_policy(KC_WARN_ABORT), zpool_free(pool, h2)),
               "use-after-destroy: zpool_free\\(");
  EXPECT_EQ(kc_warn_count(), 0u);
}

// ---- Threads: one pool, every virtual CPU (run under TSan)
// ---------------------------------------

TEST_P(ZpoolBackendTest, OnePoolUsedFromEveryCpu) {
  zpool *pool = Create();
  ASSERT_NE(pool, nullptr);
  kc_set_warn_policy(KC_WARN_ABORT);  // misuse-free: any WARN is a bug
  const int cpus = kc_nr_cpus();
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int cpu = 0; cpu < cpus; cpu++) {
    threads.emplace_back([&, cpu] {
      kc_set_cpu(cpu);
      std::vector<Object> mine;
      for (int i = 0; i < 150; i++) {
        const size_t size = 1 + (static_cast<size_t>(i) * 97 + cpu * 13) % backend().max_size;
        unsigned long h = 0;
        if (zpool_malloc(pool, size, GFP_KERNEL, &h) != 0) {
          failures++;
          continue;
        }
        Object o = {h, size, static_cast<unsigned long>(cpu * 1000 + i)};
        Fill(pool, o.handle, o.size, o.seed);
        mine.push_back(o);
        if (i % 3 == 2) {  // free the oldest, after checking it
          if (!Holds(pool, mine.front().handle, mine.front().size, mine.front().seed)) failures++;
          zpool_free(pool, mine.front().handle);
          mine.erase(mine.begin());
        }
        zpool_get_total_size(pool);
      }
      for (const Object &o : mine) {
        if (!Holds(pool, o.handle, o.size, o.seed)) failures++;
        zpool_free(pool, o.handle);
      }
    });
  }
  for (auto &t : threads) t.join();
  kc_set_warn_policy(KC_WARN_RECORD);
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(zpool_get_total_size(pool), 0u);
  ExpectValid(pool);
  zpool_destroy_pool(pool);
}

std::string BackendName(const ::testing::TestParamInfo<Backend> &info) { return info.param.type; }

INSTANTIATE_TEST_SUITE_P(Builtin, ZpoolBackendTest, ::testing::ValuesIn(kBackends), BackendName);

// ---- Backends that cannot sleep mapped: the per-CPU area
// --------------------------------------------

// Two threads bound to one virtual CPU mapping at once (catalogue 5): the backend's local_lock
// WARNs once and makes the second wait; zpool's per-thread tracking sees two different threads
// and adds nothing.
class ZpoolCrossBackend : public ::testing::Test, protected ZpoolFixture {
 protected:
  void SetUp() override { Begin(); }
  void TearDown() override { End(); }
};

TEST_F(ZpoolCrossBackend, TwoThreadsOnOneCpuMappingWarnOnceAndTheSecondWaits) {
  if (!ZPOOL_CHECKS) GTEST_SKIP() << "misuse checks compiled out (ZPOOL_UNCHECKED=1)";
  zpool *pool = zpool_create_pool("zsmalloc", "cpu0", GFP_KERNEL, nullptr);
  ASSERT_NE(pool, nullptr);
  unsigned long h1 = 0, h2 = 0;
  ASSERT_EQ(zpool_malloc(pool, 100, GFP_KERNEL, &h1), 0);
  ASSERT_EQ(zpool_malloc(pool, 100, GFP_KERNEL, &h2), 0);
  std::atomic<int> step{0};
  std::atomic<bool> second_mapped{false};
  std::thread first([&] {
    kc_set_cpu(0);
    ASSERT_NE(zpool_map_handle(pool, h1, ZPOOL_MM_WO), nullptr);
    step = 1;
    // The second thread WARNs on entering this CPU's area, then waits for it.
    for (int i = 0; i < 10000 && kc_warn_count() == 0; i++)
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    EXPECT_FALSE(second_mapped.load()) << "the second thread must wait for the per-CPU area";
    zpool_unmap_handle(pool, h1);
  });
  std::thread second([&] {
    kc_set_cpu(0);
    while (step.load() != 1) std::this_thread::yield();
    void *p = zpool_map_handle(pool, h2, ZPOOL_MM_WO);
    second_mapped = true;
    EXPECT_NE(p, nullptr);
    if (p != nullptr) zpool_unmap_handle(pool, h2);
  });
  first.join();
  second.join();
  EXPECT_EQ(kc_warn_count(), 1u) << LastWarning();
  zpool_free(pool, h1);
  zpool_free(pool, h2);
  zpool_destroy_pool(pool);
}

// Holding a zsmalloc mapping restricts may-sleep calls on every pool, zbud's included.
int EvictFreeing(zpool *pool, unsigned long handle) {
  zpool_free(pool, handle);
  return 0;
}

TEST_F(ZpoolCrossBackend, SleepWhileHoldingAZsmallocMappingIsOneWarnOnAnyPool) {
  if (!ZPOOL_CHECKS) GTEST_SKIP() << "misuse checks compiled out (ZPOOL_UNCHECKED=1)";
  zpool_ops ops = {.evict = EvictFreeing};
  zpool *zs = zpool_create_pool("zsmalloc", "zs", GFP_KERNEL, nullptr);
  zpool *zb = zpool_create_pool("zbud", "zb", GFP_KERNEL, &ops);
  ASSERT_NE(zs, nullptr);
  ASSERT_NE(zb, nullptr);
  unsigned long hs = 0, hb = 0, hb2 = 0;
  ASSERT_EQ(zpool_malloc(zs, 100, GFP_KERNEL, &hs), 0);
  ASSERT_EQ(zpool_malloc(zb, 100, GFP_KERNEL, &hb), 0);
  ASSERT_NE(zpool_map_handle(zs, hs, ZPOOL_MM_RW), nullptr);
  const auto swm = ZPOOL_MISUSE_SLEEP_WHILE_MAPPED;
  EXPECT_ONE_MISUSE(swm, EXPECT_EQ(zpool_malloc(zb, 100, GFP_KERNEL, &hb2), 0));
  unsigned int reclaimed = 5;
  EXPECT_ONE_MISUSE(swm, EXPECT_EQ(zpool_shrink(zb, 1, &reclaimed), -EBUSY));
  EXPECT_EQ(reclaimed, 0u);
  EXPECT_ONE_MISUSE(swm, EXPECT_EQ(zpool_create_pool("zbud", "x", GFP_KERNEL, nullptr), nullptr));
  EXPECT_ONE_MISUSE(swm, zpool_destroy_pool(zb));
  EXPECT_NO_WARN(zpool_free(zb, hb2));
  zpool_unmap_handle(zs, hs);
  EXPECT_NO_WARN(EXPECT_EQ(zpool_shrink(zb, 1, &reclaimed), 0));
  EXPECT_EQ(reclaimed, 1u);
  zpool_free(zs, hs);
  zpool_destroy_pool(zs);
  zpool_destroy_pool(zb);
  (void)hb;  // evicted by the shrink
}

// ---- Evict routing through zbud
// -------------------------------------------------------------------

struct EvictLog {
  std::vector<unsigned long> handles;
  int mode = 0;  // 0: write back and free; 1: refuse; 2: return 0 without freeing
};
EvictLog g_log;

int ZbudEvictCallback(zpool *pool, unsigned long handle) {
  g_log.handles.push_back(handle);
  if (g_log.mode == 1) return -EBUSY;
  if (g_log.mode == 2) return 0;
  // Write-back as zswap does it: read the object, then free it.
  auto *p = static_cast<const u8 *>(zpool_map_handle(pool, handle, ZPOOL_MM_RO));
  EXPECT_NE(p, nullptr);
  volatile u8 first = p != nullptr ? p[0] : 0;
  (void)first;
  zpool_unmap_handle(pool, handle);
  zpool_free(pool, handle);
  return 0;
}

class ZbudEvict : public ::testing::Test, protected ZpoolFixture {
 protected:
  void SetUp() override {
    Begin();
    g_log = {};
    pool_ = zpool_create_pool("zbud", "evict", GFP_KERNEL, &ops_);
    ASSERT_NE(pool_, nullptr);
  }
  void TearDown() override {
    if (pool_ != nullptr) zpool_destroy_pool(pool_);
    End();
  }
  // One object per page: larger than half a page.
  std::vector<unsigned long> FillPages(int pages) {
    std::vector<unsigned long> handles;
    for (int i = 0; i < pages; i++) {
      unsigned long h = 0;
      EXPECT_EQ(zpool_malloc(pool_, zbud_max_alloc_size(), GFP_KERNEL, &h), 0);
      Fill(pool_, h, zbud_max_alloc_size(), static_cast<unsigned long>(i));
      handles.push_back(h);
    }
    return handles;
  }
  zpool_ops ops_ = {.evict = ZbudEvictCallback};
  zpool *pool_ = nullptr;
};

TEST_F(ZbudEvict, ShrinkReclaimsThePagesAskedForOldestFirst) {
  EXPECT_TRUE(zpool_evictable(pool_));
  std::vector<unsigned long> h = FillPages(6);
  EXPECT_EQ(zpool_get_total_size(pool_), 6 * PAGE_SIZE);
  unsigned int reclaimed = 0;
  EXPECT_EQ(zpool_shrink(pool_, 3, &reclaimed), 0);
  EXPECT_EQ(reclaimed, 3u);
  EXPECT_EQ(g_log.handles, (std::vector<unsigned long>{h[0], h[1], h[2]})) << "LRU tail first";
  EXPECT_EQ(zpool_get_total_size(pool_), 3 * PAGE_SIZE);
  EXPECT_EQ(kc_pages_in_use(), pages0_ + 3);
  for (int i = 3; i < 6; i++)
    EXPECT_TRUE(Holds(pool_, h[i], zbud_max_alloc_size(), static_cast<unsigned long>(i)));
  ExpectValid(pool_);
  // Asking for more than there is: every page goes, then the empty LRU is -EINVAL.
  EXPECT_EQ(zpool_shrink(pool_, 5, &reclaimed), -EINVAL);
  EXPECT_EQ(reclaimed, 3u);
  EXPECT_EQ(zpool_get_total_size(pool_), 0u);
  EXPECT_EQ(kc_warn_count(), 0u) << LastWarning();
}

TEST_F(ZbudEvict, OnePageEvictsBothBuddies) {
  unsigned long a = 0, b = 0;
  ASSERT_EQ(zpool_malloc(pool_, 100, GFP_KERNEL, &a), 0);
  ASSERT_EQ(zpool_malloc(pool_, 100, GFP_KERNEL, &b), 0);
  EXPECT_EQ(zpool_get_total_size(pool_), PAGE_SIZE) << "two buddies, one page";
  unsigned int reclaimed = 0;
  EXPECT_EQ(zpool_shrink(pool_, 1, &reclaimed), 0);
  EXPECT_EQ(reclaimed, 1u);
  EXPECT_EQ(g_log.handles.size(), 2u);
  EXPECT_EQ(zpool_get_total_size(pool_), 0u);
  EXPECT_EQ(kc_warn_count(), 0u) << LastWarning();
}

TEST_F(ZbudEvict, ZeroPagesIsMinusEinvalAsInTheKernel) {
  FillPages(1);
  unsigned int reclaimed = 9;
  EXPECT_EQ(zpool_shrink(pool_, 0, &reclaimed), -EINVAL);
  EXPECT_EQ(reclaimed, 0u);
  EXPECT_TRUE(g_log.handles.empty());
  EXPECT_EQ(zpool_shrink(pool_, 1, nullptr), 0) << "reclaimed may be NULL";
}

TEST_F(ZbudEvict, RefusingCallbackFailsTheShrinkAndKeepsEverything) {
  std::vector<unsigned long> h = FillPages(2);
  g_log.mode = 1;
  unsigned int reclaimed = 9;
  EXPECT_EQ(zpool_shrink(pool_, 1, &reclaimed), -EAGAIN);
  EXPECT_EQ(reclaimed, 0u);
  EXPECT_EQ(g_log.handles.size(), 8u) << "zbud_reclaim_page(pool, 8): eight tries";
  EXPECT_EQ(zpool_get_total_size(pool_), 2 * PAGE_SIZE);
  for (int i = 0; i < 2; i++)
    EXPECT_TRUE(Holds(pool_, h[i], zbud_max_alloc_size(), static_cast<unsigned long>(i)));
  EXPECT_EQ(kc_warn_count(), 0u) << LastWarning();
  ExpectValid(pool_);
  for (unsigned long x : h) zpool_free(pool_, x);
}

TEST_F(ZbudEvict, CallbackThatDoesNotFreeIsOneBadEvict) {
  if (!ZPOOL_CHECKS) GTEST_SKIP() << "misuse checks compiled out (ZPOOL_UNCHECKED=1)";
  std::vector<unsigned long> h = FillPages(1);
  g_log.mode = 2;
  unsigned int reclaimed = 9;
  // zpool reports it and tells zbud the eviction failed: zbud does not report it again.
  EXPECT_ONE_MISUSE(ZPOOL_MISUSE_BAD_EVICT, EXPECT_NE(zpool_shrink(pool_, 1, &reclaimed), 0));
  EXPECT_NE(LastWarning().find("zpool_evict"), std::string::npos) << LastWarning();
  EXPECT_EQ(reclaimed, 0u);
  EXPECT_TRUE(Holds(pool_, h[0], zbud_max_alloc_size(), 0)) << "the page stays consistent";
  ExpectValid(pool_);
  g_log.mode = 0;
  EXPECT_NO_WARN(EXPECT_EQ(zpool_shrink(pool_, 1, &reclaimed), 0));
  EXPECT_EQ(reclaimed, 1u);
}

TEST_F(ZbudEvict, WithoutOpsOrCallbackShrinkFails) {
  zpool *no_ops = zpool_create_pool("zbud", "no-ops", GFP_KERNEL, nullptr);
  zpool_ops empty = {};
  zpool *no_callback = zpool_create_pool("zbud", "no-callback", GFP_KERNEL, &empty);
  ASSERT_NE(no_ops, nullptr);
  ASSERT_NE(no_callback, nullptr);
  for (zpool *pool : {no_ops, no_callback}) {
    EXPECT_FALSE(zpool_evictable(pool));
    unsigned long h = 0;
    ASSERT_EQ(zpool_malloc(pool, 100, GFP_KERNEL, &h), 0);
    unsigned int reclaimed = 4;
    EXPECT_EQ(zpool_shrink(pool, 1, &reclaimed), -EINVAL);
    EXPECT_EQ(reclaimed, 0u);
    EXPECT_EQ(zpool_get_total_size(pool), PAGE_SIZE);
    zpool_free(pool, h);
    zpool_destroy_pool(pool);
  }
  EXPECT_EQ(kc_warn_count(), 0u) << LastWarning();
}

TEST_F(ZpoolCrossBackend, ZsmallocShrinkIsMinusEinvalEvenWithOps) {
  zpool_ops ops = {.evict = EvictFreeing};
  zpool *pool = zpool_create_pool("zsmalloc", "zs", GFP_KERNEL, &ops);
  ASSERT_NE(pool, nullptr);
  EXPECT_FALSE(zpool_evictable(pool));
  unsigned long h = 0;
  ASSERT_EQ(zpool_malloc(pool, 100, GFP_KERNEL, &h), 0);
  unsigned int reclaimed = 4;
  const unsigned long warns0 = kc_warn_count();
  EXPECT_EQ(zpool_shrink(pool, 1, &reclaimed), -EINVAL);
  EXPECT_EQ(reclaimed, 0u);
  EXPECT_EQ(kc_warn_count(), warns0);
  zpool_free(pool, h);
  zpool_destroy_pool(pool);
}

// ---- The registry with a driver of our own, wrapping zbud
// ------------------------------------------

std::atomic<int> g_wrap_creates{0}, g_wrap_mallocs{0};
std::atomic<void *> g_wrap_last_pool{nullptr};

int WrapEvict(struct zbud_pool *pool, unsigned long handle) { return zpool_evict(pool, handle); }
const zbud_ops kWrapOps = {.evict = WrapEvict};

void InitWrapDriver(zpool_driver *d, const char *type, struct module *owner = nullptr) {
  d->type = type;
  d->owner = owner;
  d->create = [](const char *, gfp_t gfp, const zpool_ops *ops, zpool *) -> void * {
    g_wrap_creates++;
    zbud_pool *pool = zbud_create_pool(gfp, ops != nullptr && ops->evict ? &kWrapOps : nullptr);
    g_wrap_last_pool = pool;
    return pool;
  };
  d->destroy = [](void *pool) { zbud_destroy_pool(static_cast<zbud_pool *>(pool)); };
  d->malloc = [](void *pool, size_t size, gfp_t gfp, unsigned long *handle) {
    g_wrap_mallocs++;
    return zbud_alloc(static_cast<zbud_pool *>(pool), size, gfp, handle);
  };
  d->free = [](void *pool, unsigned long handle) {
    zbud_free(static_cast<zbud_pool *>(pool), handle);
  };
  d->shrink = [](void *pool, unsigned int pages, unsigned int *reclaimed) {
    unsigned int done = 0;
    int ret = -EINVAL;
    while (done < pages && (ret = zbud_reclaim_page(static_cast<zbud_pool *>(pool), 8)) == 0)
      done++;
    if (reclaimed != nullptr) *reclaimed = done;
    return ret;
  };
  d->map = [](void *pool, unsigned long handle, zpool_mapmode) {
    return zbud_map(static_cast<zbud_pool *>(pool), handle);
  };
  d->unmap = [](void *pool, unsigned long handle) {
    zbud_unmap(static_cast<zbud_pool *>(pool), handle);
  };
  d->total_size = [](void *pool) -> u64 {
    return zbud_get_pool_size(static_cast<zbud_pool *>(pool)) * PAGE_SIZE;
  };
  d->sleep_mapped = true;
  d->validate = [](void *pool, char *why, size_t len) {
    return zbud_validate_TestOnly(static_cast<zbud_pool *>(pool), why, len);
  };
}

class ZpoolRegistry : public ::testing::Test, protected ZpoolFixture {
 protected:
  void SetUp() override { Begin(); }
  void TearDown() override { End(); }
};

TEST_F(ZpoolRegistry, CustomDriverServesAPoolAndUnregistersOnlyAfterDestroy) {
  zpool_driver wrap;
  InitWrapDriver(&wrap, "wrapped-zbud");
  EXPECT_FALSE(zpool_has_pool("wrapped-zbud"));
  EXPECT_EQ(zpool_create_pool("wrapped-zbud", "w", GFP_KERNEL, nullptr), nullptr);
  zpool_register_driver(&wrap);
  EXPECT_TRUE(zpool_has_pool("wrapped-zbud"));
  const int creates0 = g_wrap_creates.load(), mallocs0 = g_wrap_mallocs.load();
  zpool_ops ops = {.evict = EvictFreeing};
  zpool *pool = zpool_create_pool("wrapped-zbud", "w", GFP_KERNEL, &ops);
  ASSERT_NE(pool, nullptr);
  EXPECT_EQ(g_wrap_creates.load(), creates0 + 1);
  EXPECT_STREQ(zpool_get_type(pool), "wrapped-zbud");
  EXPECT_TRUE(zpool_evictable(pool));
  unsigned long h = 0, h2 = 0;
  ASSERT_EQ(zpool_malloc(pool, 500, GFP_KERNEL, &h), 0);
  EXPECT_EQ(g_wrap_mallocs.load(), mallocs0 + 1);
  Fill(pool, h, 500, 77);
  EXPECT_TRUE(Holds(pool, h, 500, 77));
  EXPECT_EQ(zpool_get_total_size(pool), PAGE_SIZE);
  ExpectValid(pool);

  EXPECT_NO_WARN(EXPECT_EQ(zpool_unregister_driver(&wrap), -EBUSY));
  EXPECT_TRUE(zpool_has_pool("wrapped-zbud"));
  // The backend's evict reaches the user's callback through the pool list.
  ASSERT_EQ(zpool_malloc(pool, 500, GFP_KERNEL, &h2), 0);
  EXPECT_EQ(zpool_evict(g_wrap_last_pool.load(), h2), 0);
  EXPECT_EQ(zpool_evict(&h2, h2), -ENOENT) << "not a pool's backend";
  unsigned int reclaimed = 0;
  EXPECT_EQ(zpool_shrink(pool, 1, &reclaimed), 0);
  EXPECT_EQ(reclaimed, 1u);
  EXPECT_EQ(zpool_get_total_size(pool), 0u);

  zpool_destroy_pool(pool);
  EXPECT_EQ(wrap.refcount.load(), 0);
  EXPECT_EQ(zpool_unregister_driver(&wrap), 0);
  EXPECT_FALSE(zpool_has_pool("wrapped-zbud"));
  EXPECT_EQ(kc_warn_count(), 0u) << LastWarning();
}

TEST_F(ZpoolRegistry, DoubleRegisterWarnsAndBuiltinTypesCannotBeTaken) {
  zpool_driver wrap;
  InitWrapDriver(&wrap, "wrapped-twice");
  zpool_register_driver(&wrap);
  zpool_register_driver(&wrap);
  EXPECT_EQ(kc_warn_count(), 1u);
  zpool_driver impostor;
  InitWrapDriver(&impostor, "zbud");  // a built-in type
  zpool_register_driver(&impostor);
  EXPECT_EQ(kc_warn_count(), 2u);
  EXPECT_NE(LastWarning().find("type already registered"), std::string::npos) << LastWarning();
  const int creates0 = g_wrap_creates.load();
  zpool *pool = zpool_create_pool("zbud", "z", GFP_KERNEL, nullptr);
  ASSERT_NE(pool, nullptr);
  EXPECT_EQ(g_wrap_creates.load(), creates0) << "the built-in zbud still serves \"zbud\"";
  zpool_destroy_pool(pool);
  EXPECT_EQ(zpool_unregister_driver(&wrap), 0);
  EXPECT_EQ(zpool_misuse_total(), 0u);
}

TEST_F(ZpoolRegistry, OwnerGoingAwayMakesCreateFailCleanly) {
  static struct module owner("wrapped_zbud_module");
  zpool_driver wrap;
  InitWrapDriver(&wrap, "wrapped-owned", &owner);
  zpool_register_driver(&wrap);
  zpool *pool = zpool_create_pool("wrapped-owned", "w", GFP_KERNEL, nullptr);
  ASSERT_NE(pool, nullptr);
  EXPECT_EQ(kc_module_unload_begin(&owner), -EBUSY) << "the pool pins the module";
  zpool_destroy_pool(pool);
  ASSERT_EQ(kc_module_unload_begin(&owner), 0);
  const int creates0 = g_wrap_creates.load();
  const unsigned long errs0 = kc_log_count(KC_LOG_ERR);
  EXPECT_EQ(zpool_create_pool("wrapped-owned", "w", GFP_KERNEL, nullptr), nullptr);
  EXPECT_EQ(kc_log_count(KC_LOG_ERR), errs0 + 1);
  EXPECT_EQ(g_wrap_creates.load(), creates0);
  EXPECT_EQ(wrap.refcount.load(), 0);
  EXPECT_EQ(zpool_unregister_driver(&wrap), 0);  // the module's exit
  kc_module_reload(&owner);
  EXPECT_EQ(zpool_create_pool("no-such-type", "w", GFP_KERNEL, nullptr), nullptr);
  EXPECT_EQ(kc_warn_count(), 0u) << LastWarning();
}

// Threads creating and destroying pools of both built-in types while others register and
// unregister a custom driver and create pools of it (run under TSan).
TEST_F(ZpoolRegistry, CreateDestroyRacesRegisterUnregister) {
  const int loglevel = kc_get_console_loglevel();
  kc_set_console_loglevel(KC_LOG_ERR);  // creates that lose the race pr_err: keep the log short
  zpool_driver wrap;
  InitWrapDriver(&wrap, "wrapped-churn");
  std::atomic<bool> stop{false};
  std::atomic<int> failures{0}, custom_pools{0};
  std::vector<std::thread> threads;
  threads.emplace_back([&] {
    for (int i = 0; i < 50; i++) {
      zpool_register_driver(&wrap);
      // Let the creator use it (for a while at most): unregister then races a live pool.
      const int seen = custom_pools.load();
      for (int spin = 0; spin < 2000 && custom_pools.load() == seen; spin++)
        std::this_thread::yield();
      int ret;
      while ((ret = zpool_unregister_driver(&wrap)) == -EBUSY) std::this_thread::yield();
      if (ret != 0) failures++;
    }
    stop = true;
  });
  threads.emplace_back([&] {
    kc_set_cpu(3 % kc_nr_cpus());
    while (!stop.load()) {
      zpool *pool = zpool_create_pool("wrapped-churn", "c", GFP_KERNEL, nullptr);
      if (pool == nullptr) continue;
      custom_pools++;
      unsigned long h = 0;
      if (zpool_malloc(pool, 64, GFP_KERNEL, &h) != 0) failures++;
      zpool_free(pool, h);
      zpool_destroy_pool(pool);
    }
  });
  for (const char *type : {"zbud", "zsmalloc"}) {
    threads.emplace_back([&, type] {
      kc_set_cpu(type[1] == 'b' ? 0 : 1 % kc_nr_cpus());
      int rounds = 0;
      while (!stop.load() || rounds < 20) {
        rounds++;
        zpool *pool = zpool_create_pool(type, "churn", GFP_KERNEL, nullptr);
        if (pool == nullptr) {
          failures++;
          continue;
        }
        unsigned long h = 0;
        if (zpool_malloc(pool, 200, GFP_KERNEL, &h) != 0) {
          failures++;
        } else {
          Fill(pool, h, 200, 1);
          if (!Holds(pool, h, 200, 1)) failures++;
          zpool_free(pool, h);
        }
        zpool_destroy_pool(pool);
      }
    });
  }
  for (auto &t : threads) t.join();
  kc_set_console_loglevel(loglevel);
  EXPECT_EQ(failures.load(), 0);
  EXPECT_GT(custom_pools.load(), 0) << "the custom driver served pools between its unregisters";
  EXPECT_EQ(wrap.refcount.load(), 0);
  EXPECT_FALSE(zpool_has_pool("wrapped-churn"));
  EXPECT_EQ(kc_warn_count(), 0u) << LastWarning();
}

}  // namespace

// SPDX-License-Identifier: GPL-2.0-only
// The registry and the lifecycle rules of zpool.h, against a mock driver that checks nothing
// itself and counts its calls: every WARN here is zpool's, and "zpool checks before it calls the
// backend" is observable (the mock's call count does not move). This binary links zpool.cc
// without the built-in drivers (it defines zpool_internal::builtin_drivers() below).
#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "zpool/kernel/kernel.h"
#include "zpool/kernel/module.h"
#include "zpool/misuse.h"
#include "zpool/zpool.h"

std::span<zpool_driver *const> zpool_internal::builtin_drivers() { return {}; }

namespace {

// ---- The mock driver
// -----------------------------------------------------------------------------

enum MockOp { kCreate, kDestroy, kMalloc, kFree, kShrink, kMap, kUnmap, kTotal, kNumOps };
std::atomic<int> g_calls[kNumOps];
std::atomic<gfp_t> g_last_gfp{0};
std::atomic<bool> g_fail_create{false};
// Blocking malloc: while set, mock malloc announces itself and waits to be released.
std::atomic<bool> g_block_malloc{false};
std::atomic<int> g_malloc_waiting{0};
std::atomic<bool> g_malloc_release{false};
// Evictions that failed (the value zpool_evict returned), as the backend saw them.
std::atomic<int> g_last_evict_ret{0};
std::atomic<void *> g_last_pool{nullptr};

int Calls(MockOp op) { return g_calls[op].load(); }

struct MockPool {
  bool atomic_mapped;  // map disables preemption, as zsmalloc does
  std::mutex mu;
  std::map<unsigned long, size_t> live;  // handle -> size
  std::vector<unsigned long> order;      // allocation order, for shrink (oldest first)
};

void *MockCreate(const char *name, gfp_t gfp, const zpool_ops *ops, zpool *zpool) {
  g_calls[kCreate]++;
  if (g_fail_create.load()) return nullptr;
  auto *pool = new MockPool;
  pool->atomic_mapped = false;
  g_last_pool = pool;
  return pool;
}

void *MockCreateAtomicMapped(const char *name, gfp_t gfp, const zpool_ops *ops, zpool *zpool) {
  auto *pool = static_cast<MockPool *>(MockCreate(name, gfp, ops, zpool));
  if (pool != nullptr) pool->atomic_mapped = true;
  return pool;
}

void MockDestroy(void *p) {
  g_calls[kDestroy]++;
  auto *pool = static_cast<MockPool *>(p);
  for (auto &[handle, size] : pool->live) kfree(reinterpret_cast<void *>(handle));
  delete pool;
}

int MockMalloc(void *p, size_t size, gfp_t gfp, unsigned long *handle) {
  g_calls[kMalloc]++;
  g_last_gfp = gfp;
  if (g_block_malloc.load()) {
    g_malloc_waiting++;
    while (!g_malloc_release.load()) std::this_thread::yield();
    g_malloc_waiting--;
  }
  if (size == 0) return -EINVAL;
  void *mem = kmalloc(size, gfp);
  if (mem == nullptr) return -ENOMEM;
  auto *pool = static_cast<MockPool *>(p);
  std::lock_guard<std::mutex> guard(pool->mu);
  *handle = reinterpret_cast<unsigned long>(mem);
  pool->live[*handle] = size;
  pool->order.push_back(*handle);
  return 0;
}

void MockFree(void *p, unsigned long handle) {
  g_calls[kFree]++;
  auto *pool = static_cast<MockPool *>(p);
  std::lock_guard<std::mutex> guard(pool->mu);
  if (pool->live.erase(handle) == 0) return;  // checks nothing: zpool's tests only
  std::erase(pool->order, handle);
  kfree(reinterpret_cast<void *>(handle));
}

// Evicts the oldest object, retrying a failed one up to 8 times as zbud does.
int MockShrink(void *p, unsigned int pages, unsigned int *reclaimed) {
  g_calls[kShrink]++;
  auto *pool = static_cast<MockPool *>(p);
  unsigned int done = 0;
  int ret = 0;
  while (done < pages) {
    unsigned long victim = 0;
    {
      std::lock_guard<std::mutex> guard(pool->mu);
      if (pool->order.empty()) {
        ret = -EINVAL;
        break;
      }
      victim = pool->order.front();
    }
    for (int tries = 0; tries < 8; tries++) {
      ret = zpool_evict(pool, victim);
      g_last_evict_ret = ret;
      if (ret == 0) break;
    }
    if (ret != 0) {
      ret = -EAGAIN;
      break;
    }
    done++;
  }
  if (reclaimed != nullptr) *reclaimed = done;
  return ret;
}

void *MockMap(void *p, unsigned long handle, enum zpool_mapmode mm) {
  g_calls[kMap]++;
  auto *pool = static_cast<MockPool *>(p);
  std::lock_guard<std::mutex> guard(pool->mu);
  if (pool->live.count(handle) == 0) return nullptr;
  if (pool->atomic_mapped) preempt_disable();
  return reinterpret_cast<void *>(handle);
}

void MockUnmap(void *p, unsigned long handle) {
  g_calls[kUnmap]++;
  if (static_cast<MockPool *>(p)->atomic_mapped) preempt_enable();
}

u64 MockTotal(void *p) {
  g_calls[kTotal]++;
  auto *pool = static_cast<MockPool *>(p);
  std::lock_guard<std::mutex> guard(pool->mu);
  u64 total = 0;
  for (auto &[handle, size] : pool->live) total += size;
  return total;
}

// A mock driver of the given type, sleeping mapped (like zbud) or not (like zsmalloc).
void InitMockDriver(zpool_driver *d, const char *type, bool sleep_mapped = true,
                    bool can_shrink = true) {
  d->type = type;
  d->create = sleep_mapped ? MockCreate : MockCreateAtomicMapped;
  d->destroy = MockDestroy;
  d->malloc = MockMalloc;
  d->free = MockFree;
  d->shrink = can_shrink ? MockShrink : nullptr;
  d->map = MockMap;
  d->unmap = MockUnmap;
  d->total_size = MockTotal;
  d->sleep_mapped = sleep_mapped;
  d->malloc_support_movable = true;
}

size_t MockLive(void *p) {
  auto *pool = static_cast<MockPool *>(p);
  std::lock_guard<std::mutex> guard(pool->mu);
  return pool->live.size();
}

std::string LastWarning() {
  char buf[8192];
  kc_last_warning(buf, sizeof(buf));
  return buf;
}

// Expects `stmt` to report exactly one WARN, a misuse of `kind`, naming it.
#define EXPECT_ONE_MISUSE(kind, stmt)                                                             \
  do {                                                                                            \
    SCOPED_TRACE(#stmt);                                                                          \
    const unsigned long warns0 = kc_warn_count();                                                 \
    const unsigned long kind0 = zpool_misuse_count(kind);                                         \
    const unsigned long total0 = zpool_misuse_total();                                            \
    stmt;                                                                                         \
    EXPECT_EQ(kc_warn_count(), warns0 + 1);                                                       \
    EXPECT_EQ(zpool_misuse_count(kind), kind0 + 1);                                               \
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

class ZpoolLifecycle : public ::testing::Test {
 protected:
  void SetUp() override {
    GTEST_FLAG_SET(death_test_style, "threadsafe");
    kc_set_warn_policy(KC_WARN_RECORD);
    kc_warn_reset();
    zpool_misuse_reset();
    for (auto &c : g_calls) c = 0;
    g_fail_create = false;
    g_block_malloc = false;
    g_malloc_release = false;
    pages0_ = kc_pages_in_use();
    meta0_ = kc_meta_in_use();
    pools0_ = zpool_live_pools_TestOnly();
    InitMockDriver(&driver_, "mock");
    zpool_register_driver(&driver_);
    InitMockDriver(&atomic_driver_, "mock-atomic", /*sleep_mapped=*/false);
    zpool_register_driver(&atomic_driver_);
    ASSERT_EQ(kc_warn_count(), 0u);
  }

  void TearDown() override {
    EXPECT_EQ(zpool_live_pools_TestOnly(), pools0_);
    EXPECT_EQ(zpool_unregister_driver(&driver_), 0);
    EXPECT_EQ(zpool_unregister_driver(&atomic_driver_), 0);
    EXPECT_EQ(kc_pages_in_use(), pages0_);
    EXPECT_EQ(kc_meta_in_use(), meta0_);
    EXPECT_EQ(preempt_count(), 0);
    kc_set_warn_policy(KC_WARN_LOG);
    kc_warn_reset();
    zpool_misuse_reset();
  }

  unsigned long Malloc(zpool *pool, size_t size = 64) {
    unsigned long handle = 0;
    EXPECT_EQ(zpool_malloc(pool, size, GFP_KERNEL, &handle), 0);
    return handle;
  }

  zpool_driver driver_;
  zpool_driver atomic_driver_;
  unsigned long pages0_ = 0, meta0_ = 0, pools0_ = 0;
};

// ---- Registry
// --------------------------------------------------------------------------------------

TEST_F(ZpoolLifecycle, NoBuiltinDriversInThisBinary) {
  EXPECT_FALSE(zpool_has_pool("zbud"));
  EXPECT_FALSE(zpool_has_pool("zsmalloc"));
  EXPECT_TRUE(zpool_has_pool("mock"));
  EXPECT_FALSE(zpool_has_pool(nullptr));
}

TEST_F(ZpoolLifecycle, UnknownTypeGivesNullAndPrErr) {
  const unsigned long errs0 = kc_log_count(KC_LOG_ERR);
  EXPECT_NO_WARN(EXPECT_EQ(zpool_create_pool("no-such-type", "x", GFP_KERNEL, nullptr), nullptr));
  EXPECT_EQ(kc_log_count(KC_LOG_ERR), errs0 + 1);
  EXPECT_NO_WARN(EXPECT_EQ(zpool_create_pool(nullptr, "x", GFP_KERNEL, nullptr), nullptr));
  EXPECT_EQ(kc_log_count(KC_LOG_ERR), errs0 + 2);
  EXPECT_EQ(Calls(kCreate), 0);
  EXPECT_EQ(driver_.refcount.load(), 0);
}

TEST_F(ZpoolLifecycle, TypeIsNeverAFormatString) {
  // The 2014 request_module("zpool-%s") lesson: a type is data, printed with "%s".
  EXPECT_EQ(zpool_create_pool("%s%s%s%n%n", "x", GFP_KERNEL, nullptr), nullptr);
  zpool_driver odd;
  InitMockDriver(&odd, "%n%s%x");
  zpool_register_driver(&odd);
  zpool *pool = zpool_create_pool("%n%s%x", "%n", GFP_KERNEL, nullptr);
  ASSERT_NE(pool, nullptr);
  EXPECT_STREQ(zpool_get_type(pool), "%n%s%x");
  zpool_destroy_pool(pool);
  EXPECT_EQ(zpool_unregister_driver(&odd), 0);
  EXPECT_EQ(kc_warn_count(), 0u);
}

TEST_F(ZpoolLifecycle, RegisteredDriverServesPoolsAndRefusesUnregisterWhileInUse) {
  zpool_driver custom;
  InitMockDriver(&custom, "custom");
  EXPECT_FALSE(zpool_has_pool("custom"));
  zpool_register_driver(&custom);
  EXPECT_TRUE(zpool_has_pool("custom"));
  EXPECT_EQ(custom.refcount.load(), 0) << "has_pool drops the reference it takes";

  zpool *a = zpool_create_pool("custom", "a", GFP_KERNEL, nullptr);
  ASSERT_NE(a, nullptr);
  EXPECT_STREQ(zpool_get_type(a), "custom");
  EXPECT_EQ(custom.refcount.load(), 1);
  EXPECT_NO_WARN(EXPECT_EQ(zpool_unregister_driver(&custom), -EBUSY));
  EXPECT_EQ(zpool_misuse_total(), 0u) << "-EBUSY is the documented answer, not a misuse";
  EXPECT_TRUE(zpool_has_pool("custom")) << "a refused unregister changes nothing";
  zpool *b = zpool_create_pool("custom", "b", GFP_KERNEL, nullptr);
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(custom.refcount.load(), 2);
  zpool_destroy_pool(a);
  EXPECT_EQ(zpool_unregister_driver(&custom), -EBUSY);
  zpool_destroy_pool(b);
  EXPECT_EQ(custom.refcount.load(), 0);
  EXPECT_EQ(zpool_unregister_driver(&custom), 0);
  EXPECT_FALSE(zpool_has_pool("custom"));
  EXPECT_EQ(zpool_create_pool("custom", "c", GFP_KERNEL, nullptr), nullptr);
  EXPECT_EQ(Calls(kCreate), 2);
  EXPECT_EQ(Calls(kDestroy), 2);
  EXPECT_EQ(kc_warn_count(), 0u);
}

TEST_F(ZpoolLifecycle, RegisteringTwiceWarnsAndChangesNothing) {
  zpool_driver custom;
  InitMockDriver(&custom, "twice");
  zpool_register_driver(&custom);
  zpool_register_driver(&custom);  // the same driver again
  EXPECT_EQ(kc_warn_count(), 1u);
  EXPECT_NE(LastWarning().find("already registered"), std::string::npos) << LastWarning();

  zpool_driver impostor;  // another driver for a type that is taken
  InitMockDriver(&impostor, "twice");
  impostor.create = MockCreateAtomicMapped;
  zpool_register_driver(&impostor);
  EXPECT_EQ(kc_warn_count(), 2u);
  EXPECT_EQ(zpool_misuse_total(), 0u);

  zpool *pool = zpool_create_pool("twice", "p", GFP_KERNEL, nullptr);
  ASSERT_NE(pool, nullptr);
  EXPECT_EQ(custom.refcount.load(), 1) << "the first driver still serves the type";
  EXPECT_EQ(impostor.refcount.load(), 0);
  zpool_destroy_pool(pool);

  EXPECT_EQ(zpool_unregister_driver(&custom), 0) << "one registration, one unregister";
  EXPECT_EQ(zpool_unregister_driver(&impostor), -EINVAL) << "never registered";
  EXPECT_EQ(zpool_unregister_driver(&custom), -EINVAL) << "unregistered twice";
  EXPECT_EQ(kc_warn_count(), 4u);
  EXPECT_EQ(zpool_misuse_total(), 0u);
  EXPECT_FALSE(zpool_has_pool("twice"));
}

TEST_F(ZpoolLifecycle, IncompleteDriverIsRefused) {
  zpool_driver bad;
  InitMockDriver(&bad, "incomplete");
  bad.map = nullptr;
  zpool_register_driver(&bad);
  EXPECT_EQ(kc_warn_count(), 1u);
  EXPECT_FALSE(zpool_has_pool("incomplete"));
  zpool_register_driver(nullptr);
  EXPECT_EQ(kc_warn_count(), 2u);
  EXPECT_EQ(zpool_unregister_driver(nullptr), -EINVAL);
  EXPECT_EQ(kc_warn_count(), 3u);
}

TEST_F(ZpoolLifecycle, NegativeRefcountWarnsOnUnregister) {
  zpool_driver custom;
  InitMockDriver(&custom, "negative");
  zpool_register_driver(&custom);
  custom.refcount = -1;  // corrupted outside zpool
  EXPECT_ONE_MISUSE(ZPOOL_MISUSE_DRIVER_REFCOUNT,
                    EXPECT_EQ(zpool_unregister_driver(&custom), -EBUSY));
  EXPECT_NE(LastWarning().find("refcount is -1"), std::string::npos) << LastWarning();
  custom.refcount = 0;
  EXPECT_EQ(zpool_unregister_driver(&custom), 0);
}

TEST_F(ZpoolLifecycle, RefcountDroppedBelowZeroWarnsOnDestroy) {
  zpool *pool = zpool_create_pool("mock", "p", GFP_KERNEL, nullptr);
  ASSERT_NE(pool, nullptr);
  driver_.refcount = 0;  // corrupted outside zpool
  EXPECT_ONE_MISUSE(ZPOOL_MISUSE_DRIVER_REFCOUNT, zpool_destroy_pool(pool));
  EXPECT_EQ(driver_.refcount.load(), -1);
  driver_.refcount = 0;
}

TEST_F(ZpoolLifecycle, OwnerGoingAwayMakesCreateFailCleanly) {
  static struct module owner("zpool_mock_owner");
  zpool_driver custom;
  InitMockDriver(&custom, "owned");
  custom.owner = &owner;
  zpool_register_driver(&custom);

  zpool *pool = zpool_create_pool("owned", "p", GFP_KERNEL, nullptr);
  ASSERT_NE(pool, nullptr);
  EXPECT_EQ(module_refcount(&owner), 1) << "a pool pins its driver's module";
  EXPECT_EQ(kc_module_unload_begin(&owner), -EBUSY);
  zpool_destroy_pool(pool);
  EXPECT_EQ(module_refcount(&owner), 0);

  ASSERT_EQ(kc_module_unload_begin(&owner), 0);  // the owner is going away
  const unsigned long errs0 = kc_log_count(KC_LOG_ERR);
  const int creates0 = Calls(kCreate);
  EXPECT_EQ(zpool_create_pool("owned", "q", GFP_KERNEL, nullptr), nullptr);
  EXPECT_EQ(kc_log_count(KC_LOG_ERR), errs0 + 1);
  EXPECT_EQ(Calls(kCreate), creates0) << "the backend is not asked";
  EXPECT_EQ(custom.refcount.load(), 0);
  EXPECT_FALSE(zpool_has_pool("owned"));
  // The module's exit function unregisters: nothing holds the driver.
  EXPECT_EQ(zpool_unregister_driver(&custom), 0);
  kc_module_reload(&owner);
  EXPECT_EQ(kc_warn_count(), 0u);
}

TEST_F(ZpoolLifecycle, FailedCreateDropsEveryReference) {
  static struct module owner("zpool_mock_owner2");
  zpool_driver custom;
  InitMockDriver(&custom, "failing");
  custom.owner = &owner;
  zpool_register_driver(&custom);
  const unsigned long errs0 = kc_log_count(KC_LOG_ERR);

  g_fail_create = true;  // the backend's create fails
  EXPECT_EQ(zpool_create_pool("failing", "p", GFP_KERNEL, nullptr), nullptr);
  g_fail_create = false;
  EXPECT_EQ(Calls(kCreate), 1);
  EXPECT_EQ(kc_log_count(KC_LOG_ERR), errs0 + 1);
  EXPECT_EQ(custom.refcount.load(), 0);
  EXPECT_EQ(module_refcount(&owner), 0);

  kc_fail_nth_alloc(1);  // the zpool struct itself cannot be allocated
  EXPECT_EQ(zpool_create_pool("failing", "p", GFP_KERNEL, nullptr), nullptr);
  kc_fail_nth_alloc(0);
  EXPECT_EQ(Calls(kCreate), 1) << "the backend is not asked";
  EXPECT_EQ(kc_log_count(KC_LOG_ERR), errs0 + 2);
  EXPECT_EQ(custom.refcount.load(), 0);
  EXPECT_EQ(module_refcount(&owner), 0);
  EXPECT_EQ(zpool_unregister_driver(&custom), 0);
  EXPECT_EQ(kc_warn_count(), 0u);
}

// ---- Calls and their checks
// --------------------------------------------------------------------------

TEST_F(ZpoolLifecycle, CallsReachTheDriver) {
  zpool_ops ops = {.evict = [](zpool *, unsigned long) { return 0; }};
  zpool *pool = zpool_create_pool("mock", "p", GFP_KERNEL, &ops);
  ASSERT_NE(pool, nullptr);
  EXPECT_TRUE(zpool_evictable(pool));
  EXPECT_TRUE(zpool_can_sleep_mapped(pool));
  EXPECT_TRUE(zpool_malloc_support_movable(pool));
  unsigned long h = Malloc(pool, 100);
  EXPECT_EQ(zpool_get_total_size(pool), 100u);
  auto *p = static_cast<char *>(zpool_map_handle(pool, h, ZPOOL_MM_WO));
  ASSERT_NE(p, nullptr);
  p[0] = 'x';
  zpool_unmap_handle(pool, h);
  EXPECT_EQ(zpool_malloc(pool, 10, GFP_KERNEL, nullptr), -EINVAL);
  zpool_free(pool, h);
  EXPECT_EQ(zpool_get_total_size(pool), 0u);
  zpool_destroy_pool(pool);
  EXPECT_EQ(Calls(kMalloc), 1);
  EXPECT_EQ(Calls(kFree), 1);
  EXPECT_EQ(Calls(kMap), 1);
  EXPECT_EQ(Calls(kUnmap), 1);
  EXPECT_EQ(kc_warn_count(), 0u);

  zpool *plain = zpool_create_pool("mock-atomic", "q", GFP_KERNEL, nullptr);
  ASSERT_NE(plain, nullptr);
  EXPECT_FALSE(zpool_evictable(plain)) << "no ops";
  EXPECT_FALSE(zpool_can_sleep_mapped(plain));
  zpool_destroy_pool(plain);
}

TEST_F(ZpoolLifecycle, UseAfterDestroyWarnsAndFailsEveryCall) {
  if (!ZPOOL_CHECKS) GTEST_SKIP() << "misuse checks compiled out (ZPOOL_UNCHECKED=1)";
  zpool *pool = zpool_create_pool("mock", "p", GFP_KERNEL, nullptr);
  ASSERT_NE(pool, nullptr);
  zpool_destroy_pool(pool);
  for (auto &c : g_calls) c = 0;
  unsigned long h = 1234;
  unsigned int reclaimed = 99;
  const auto uad = ZPOOL_MISUSE_USE_AFTER_DESTROY;
  EXPECT_ONE_MISUSE(uad, zpool_destroy_pool(pool));
  EXPECT_ONE_MISUSE(uad, EXPECT_EQ(zpool_malloc(pool, 64, GFP_KERNEL, &h), -EINVAL));
  EXPECT_EQ(h, 1234u) << "the handle is untouched";
  EXPECT_ONE_MISUSE(uad, zpool_free(pool, h));
  EXPECT_ONE_MISUSE(uad, EXPECT_EQ(zpool_shrink(pool, 1, &reclaimed), -EINVAL));
  EXPECT_EQ(reclaimed, 0u);
  EXPECT_ONE_MISUSE(uad, EXPECT_EQ(zpool_map_handle(pool, h, ZPOOL_MM_RW), nullptr));
  EXPECT_ONE_MISUSE(uad, zpool_unmap_handle(pool, h));
  EXPECT_ONE_MISUSE(uad, EXPECT_EQ(zpool_get_total_size(pool), 0u));
  EXPECT_ONE_MISUSE(uad, EXPECT_FALSE(zpool_evictable(pool)));
  EXPECT_ONE_MISUSE(uad, EXPECT_FALSE(zpool_can_sleep_mapped(pool)));
  EXPECT_ONE_MISUSE(uad, EXPECT_FALSE(zpool_malloc_support_movable(pool)));
  EXPECT_ONE_MISUSE(uad, EXPECT_EQ(zpool_get_type(pool), nullptr));
  EXPECT_NE(LastWarning().find("zpool_get_type"), std::string::npos) << "names the call";
  for (auto &c : g_calls) EXPECT_EQ(c.load(), 0) << "nothing reaches the driver";
  EXPECT_EQ(zpool_validate_TestOnly(pool, nullptr, 0), -EINVAL);

  // Never-created pointers: NULL, the stack, the heap.
  std::vector<char> heap(64);
  zpool *garbage[] = {nullptr, reinterpret_cast<zpool *>(&h),
                      reinterpret_cast<zpool *>(heap.data())};
  for (zpool *g : garbage) {
    EXPECT_ONE_MISUSE(uad, EXPECT_EQ(zpool_malloc(g, 64, GFP_KERNEL, &h), -EINVAL));
    EXPECT_ONE_MISUSE(uad, zpool_destroy_pool(g));
  }
  EXPECT_EQ(driver_.refcount.load(), 0);
}

TEST_F(ZpoolLifecycle, NestedMapWarnsAndReturnsNull) {
  if (!ZPOOL_CHECKS) GTEST_SKIP() << "misuse checks compiled out (ZPOOL_UNCHECKED=1)";
  zpool *pool = zpool_create_pool("mock", "p", GFP_KERNEL, nullptr);
  zpool *other = zpool_create_pool("mock", "q", GFP_KERNEL, nullptr);
  ASSERT_NE(pool, nullptr);
  ASSERT_NE(other, nullptr);
  unsigned long h1 = Malloc(pool), h2 = Malloc(pool), h3 = Malloc(other);
  ASSERT_NE(zpool_map_handle(pool, h1, ZPOOL_MM_RW), nullptr);
  EXPECT_ONE_MISUSE(ZPOOL_MISUSE_NESTED_MAP,
                    EXPECT_EQ(zpool_map_handle(pool, h2, ZPOOL_MM_RO), nullptr));
  EXPECT_NE(LastWarning().find("missing zpool_unmap_handle()"), std::string::npos);
  EXPECT_ONE_MISUSE(ZPOOL_MISUSE_NESTED_MAP,
                    EXPECT_EQ(zpool_map_handle(pool, h1, ZPOOL_MM_RO), nullptr));
  // One mapping per thread over all pools.
  EXPECT_ONE_MISUSE(ZPOOL_MISUSE_NESTED_MAP,
                    EXPECT_EQ(zpool_map_handle(other, h3, ZPOOL_MM_RO), nullptr));
  EXPECT_EQ(Calls(kMap), 1) << "refused before the backend";
  zpool_unmap_handle(pool, h1);
  EXPECT_NO_WARN(EXPECT_NE(zpool_map_handle(pool, h2, ZPOOL_MM_RO), nullptr));
  zpool_unmap_handle(pool, h2);
  for (unsigned long h : {h1, h2}) zpool_free(pool, h);
  zpool_free(other, h3);
  zpool_destroy_pool(pool);
  zpool_destroy_pool(other);
  EXPECT_EQ(zpool_misuse_total(), 3u);
}

TEST_F(ZpoolLifecycle, BadUnmapWarnsAndDoesNothing) {
  if (!ZPOOL_CHECKS) GTEST_SKIP() << "misuse checks compiled out (ZPOOL_UNCHECKED=1)";
  zpool *pool = zpool_create_pool("mock", "p", GFP_KERNEL, nullptr);
  ASSERT_NE(pool, nullptr);
  unsigned long h1 = Malloc(pool), h2 = Malloc(pool);
  EXPECT_ONE_MISUSE(ZPOOL_MISUSE_BAD_UNMAP, zpool_unmap_handle(pool, h1));
  EXPECT_NE(LastWarning().find("maps nothing"), std::string::npos) << LastWarning();
  ASSERT_NE(zpool_map_handle(pool, h1, ZPOOL_MM_RW), nullptr);
  EXPECT_ONE_MISUSE(ZPOOL_MISUSE_BAD_UNMAP, zpool_unmap_handle(pool, h2));
  // Unmapping on another thread than the one that mapped.
  std::thread([&] {
    EXPECT_ONE_MISUSE(ZPOOL_MISUSE_BAD_UNMAP, zpool_unmap_handle(pool, h1));
  }).join();
  EXPECT_EQ(Calls(kUnmap), 0) << "refused before the backend";
  EXPECT_NO_WARN(zpool_unmap_handle(pool, h1));
  EXPECT_ONE_MISUSE(ZPOOL_MISUSE_BAD_UNMAP, zpool_unmap_handle(pool, h1));  // twice
  EXPECT_EQ(Calls(kUnmap), 1);
  zpool_free(pool, h1);
  zpool_free(pool, h2);
  zpool_destroy_pool(pool);
}

TEST_F(ZpoolLifecycle, FreeOfMappedHandleIsRefused) {
  if (!ZPOOL_CHECKS) GTEST_SKIP() << "misuse checks compiled out (ZPOOL_UNCHECKED=1)";
  zpool *pool = zpool_create_pool("mock", "p", GFP_KERNEL, nullptr);
  ASSERT_NE(pool, nullptr);
  unsigned long h = Malloc(pool, 16);
  auto *p = static_cast<char *>(zpool_map_handle(pool, h, ZPOOL_MM_WO));
  ASSERT_NE(p, nullptr);
  memcpy(p, "still here", 11);
  EXPECT_ONE_MISUSE(ZPOOL_MISUSE_FREE_MAPPED, zpool_free(pool, h));
  EXPECT_EQ(Calls(kFree), 0);
  EXPECT_STREQ(p, "still here") << "the object stays allocated and mapped";
  zpool_unmap_handle(pool, h);
  EXPECT_NO_WARN(zpool_free(pool, h));
  EXPECT_EQ(Calls(kFree), 1);
  zpool_destroy_pool(pool);
}

TEST_F(ZpoolLifecycle, DestroyWhileThisThreadMapsIsRefused) {
  if (!ZPOOL_CHECKS) GTEST_SKIP() << "misuse checks compiled out (ZPOOL_UNCHECKED=1)";
  zpool *pool = zpool_create_pool("mock-atomic", "p", GFP_KERNEL, nullptr);
  ASSERT_NE(pool, nullptr);
  unsigned long h = Malloc(pool);
  ASSERT_NE(zpool_map_handle(pool, h, ZPOOL_MM_RW), nullptr);
  // destroy-busy, not sleep-while-mapped: the mapping is of this very pool.
  EXPECT_ONE_MISUSE(ZPOOL_MISUSE_DESTROY_BUSY, zpool_destroy_pool(pool));
  EXPECT_EQ(Calls(kDestroy), 0);
  EXPECT_NE(zpool_get_total_size(pool), 0u) << "the pool stays usable";
  zpool_unmap_handle(pool, h);
  zpool_free(pool, h);
  EXPECT_NO_WARN(zpool_destroy_pool(pool));
  EXPECT_EQ(Calls(kDestroy), 1);
}

TEST_F(ZpoolLifecycle, DestroyWhileAnotherThreadMapsIsRefused) {
  if (!ZPOOL_CHECKS) GTEST_SKIP() << "misuse checks compiled out (ZPOOL_UNCHECKED=1)";
  zpool *pool = zpool_create_pool("mock", "p", GFP_KERNEL, nullptr);
  ASSERT_NE(pool, nullptr);
  unsigned long h = Malloc(pool);
  std::atomic<int> step{0};
  std::thread mapper([&] {
    ASSERT_NE(zpool_map_handle(pool, h, ZPOOL_MM_RW), nullptr);
    step = 1;
    while (step.load() != 2) std::this_thread::yield();
    zpool_unmap_handle(pool, h);
    step = 3;
  });
  while (step.load() != 1) std::this_thread::yield();
  EXPECT_ONE_MISUSE(ZPOOL_MISUSE_DESTROY_BUSY, zpool_destroy_pool(pool));
  EXPECT_NE(LastWarning().find("on other threads"), std::string::npos) << LastWarning();
  EXPECT_NO_WARN(EXPECT_EQ(zpool_get_total_size(pool), 64u));
  step = 2;
  mapper.join();
  zpool_free(pool, h);
  EXPECT_NO_WARN(zpool_destroy_pool(pool));
}

TEST_F(ZpoolLifecycle, DestroyWithCallInFlightIsRefused) {
  if (!ZPOOL_CHECKS) GTEST_SKIP() << "misuse checks compiled out (ZPOOL_UNCHECKED=1)";
  zpool *pool = zpool_create_pool("mock", "p", GFP_KERNEL, nullptr);
  ASSERT_NE(pool, nullptr);
  g_block_malloc = true;
  unsigned long h = 0;
  int ret = -1;
  std::thread caller([&] { ret = zpool_malloc(pool, 64, GFP_KERNEL, &h); });
  while (g_malloc_waiting.load() == 0) std::this_thread::yield();
  EXPECT_ONE_MISUSE(ZPOOL_MISUSE_DESTROY_BUSY, zpool_destroy_pool(pool));
  EXPECT_NE(LastWarning().find("1 call(s) in flight"), std::string::npos) << LastWarning();
  g_block_malloc = false;
  // Calls started after the refused destroy work.
  EXPECT_NO_WARN(EXPECT_NE(Malloc(pool), 0u));
  g_malloc_release = true;
  caller.join();
  EXPECT_EQ(ret, 0) << "the call in flight completes normally";
  zpool_free(pool, h);
  EXPECT_EQ(MockLive(g_last_pool.load()), 1u);
  EXPECT_NO_WARN(zpool_destroy_pool(pool));  // one object left: the mock does not mind
}

TEST_F(ZpoolLifecycle, SleepWhileMappedWarnsOncePerCallAndStaysSafe) {
  if (!ZPOOL_CHECKS) GTEST_SKIP() << "misuse checks compiled out (ZPOOL_UNCHECKED=1)";
  zpool *pool = zpool_create_pool("mock-atomic", "p", GFP_KERNEL, nullptr);
  zpool *other = zpool_create_pool("mock", "q", GFP_KERNEL, nullptr);
  zpool_ops ops = {.evict = [](zpool *, unsigned long) { return 0; }};
  zpool *evictable = zpool_create_pool("mock", "r", GFP_KERNEL, &ops);
  ASSERT_NE(pool, nullptr);
  ASSERT_NE(other, nullptr);
  ASSERT_NE(evictable, nullptr);
  unsigned long h = Malloc(pool), h2 = 0, h3 = 0;
  ASSERT_NE(zpool_map_handle(pool, h, ZPOOL_MM_RW), nullptr);
  ASSERT_TRUE(kc_in_atomic()) << "the mock maps with preemption off, as zsmalloc";
  const auto swm = ZPOOL_MISUSE_SLEEP_WHILE_MAPPED;

  // malloc that may sleep: WARN once (not again from the allocator's might_sleep), then
  // allocate without direct reclaim.
  EXPECT_ONE_MISUSE(swm, EXPECT_EQ(zpool_malloc(pool, 32, GFP_KERNEL, &h2), 0));
  EXPECT_NE(LastWarning().find("sleeping function called from invalid context"), std::string::npos);
  EXPECT_EQ(g_last_gfp.load() & __GFP_DIRECT_RECLAIM, 0u);
  EXPECT_EQ(g_last_gfp.load(), GFP_KERNEL & ~__GFP_DIRECT_RECLAIM);
  EXPECT_ONE_MISUSE(swm, EXPECT_EQ(zpool_malloc(other, 32, GFP_NOIO, &h3), 0));
  EXPECT_NO_WARN(EXPECT_EQ(zpool_malloc(other, 32, GFP_NOWAIT, &h3), 0));  // cannot sleep
  EXPECT_NO_WARN(zpool_free(other, h3));

  const int shrinks0 = Calls(kShrink);
  unsigned int reclaimed = 7;
  EXPECT_ONE_MISUSE(swm, EXPECT_EQ(zpool_shrink(evictable, 1, &reclaimed), -EBUSY));
  EXPECT_EQ(reclaimed, 0u);
  EXPECT_EQ(Calls(kShrink), shrinks0);
  EXPECT_NO_WARN(EXPECT_EQ(zpool_shrink(other, 1, &reclaimed), -EINVAL));  // not evictable

  const int creates0 = Calls(kCreate);
  EXPECT_ONE_MISUSE(swm, EXPECT_EQ(zpool_create_pool("mock", "s", GFP_KERNEL, nullptr), nullptr));
  EXPECT_EQ(Calls(kCreate), creates0);
  EXPECT_ONE_MISUSE(swm, zpool_destroy_pool(other));
  EXPECT_EQ(Calls(kDestroy), 0);
  EXPECT_EQ(zpool_misuse_total(), 5u);

  zpool_unmap_handle(pool, h);
  EXPECT_FALSE(kc_in_atomic());
  EXPECT_NO_WARN(zpool_free(pool, h2));
  zpool_free(pool, h);
  zpool_destroy_pool(pool);
  zpool_destroy_pool(other);
  zpool_destroy_pool(evictable);
}

TEST_F(ZpoolLifecycle, MappingOfAPoolThatCanSleepMappedRestrictsOnlyNesting) {
  zpool *pool = zpool_create_pool("mock", "p", GFP_KERNEL, nullptr);
  ASSERT_NE(pool, nullptr);
  unsigned long h = Malloc(pool), h2 = 0;
  ASSERT_NE(zpool_map_handle(pool, h, ZPOOL_MM_RW), nullptr);
  EXPECT_NO_WARN(EXPECT_EQ(zpool_malloc(pool, 32, GFP_KERNEL, &h2), 0));
  EXPECT_EQ(g_last_gfp.load(), GFP_KERNEL);
  zpool *other = nullptr;
  EXPECT_NO_WARN(other = zpool_create_pool("mock", "q", GFP_KERNEL, nullptr));
  ASSERT_NE(other, nullptr);
  EXPECT_NO_WARN(zpool_destroy_pool(other));
  zpool_unmap_handle(pool, h);
  zpool_free(pool, h);
  zpool_free(pool, h2);
  zpool_destroy_pool(pool);
  EXPECT_EQ(kc_warn_count(), 0u);
}

// ---- Eviction
// ----------------------------------------------------------------------------------------

zpool *g_evict_pool = nullptr;
std::vector<unsigned long> g_evicted;

int EvictAndFree(zpool *pool, unsigned long handle) {
  EXPECT_EQ(pool, g_evict_pool);
  // The usual write-back: read the object, then free it.
  void *p = zpool_map_handle(pool, handle, ZPOOL_MM_RO);
  EXPECT_NE(p, nullptr);
  zpool_unmap_handle(pool, handle);
  zpool_free(pool, handle);
  g_evicted.push_back(handle);
  return 0;
}

int EvictWithoutFreeing(zpool *, unsigned long handle) {
  g_evicted.push_back(handle);
  return 0;
}

int EvictRefusing(zpool *, unsigned long handle) {
  g_evicted.push_back(handle);
  return -EBUSY;
}

int EvictFreeingOnAnotherThread(zpool *pool, unsigned long handle) {
  std::thread([&] { zpool_free(pool, handle); }).join();
  g_evicted.push_back(handle);
  return 0;
}

int EvictDestroyingThePool(zpool *pool, unsigned long handle) {
  zpool_destroy_pool(pool);  // destroy-busy: the shrink is in flight
  zpool_free(pool, handle);
  return 0;
}

class ZpoolEvict : public ZpoolLifecycle {
 protected:
  zpool *Create(int (*evict)(zpool *, unsigned long)) {
    ops_.evict = evict;
    g_evicted.clear();
    g_evict_pool = zpool_create_pool("mock", "evict", GFP_KERNEL, &ops_);
    return g_evict_pool;
  }
  zpool_ops ops_ = {};
};

TEST_F(ZpoolEvict, ShrinkRoutesEvictToTheUsersCallback) {
  zpool *pool = Create(EvictAndFree);
  ASSERT_NE(pool, nullptr);
  EXPECT_TRUE(zpool_evictable(pool));
  unsigned long h[4];
  for (auto &x : h) x = Malloc(pool);
  unsigned int reclaimed = 0;
  EXPECT_EQ(zpool_shrink(pool, 2, &reclaimed), 0);
  EXPECT_EQ(reclaimed, 2u);
  EXPECT_EQ(g_evicted, (std::vector<unsigned long>{h[0], h[1]}));
  EXPECT_EQ(MockLive(g_last_pool.load()), 2u);
  EXPECT_EQ(kc_warn_count(), 0u);
  zpool_free(pool, h[2]);
  zpool_free(pool, h[3]);
  zpool_destroy_pool(pool);
}

TEST_F(ZpoolEvict, EvictWithoutOpsOrCallbackOrPool) {
  zpool *pool = zpool_create_pool("mock", "p", GFP_KERNEL, nullptr);
  ASSERT_NE(pool, nullptr);
  void *backend = g_last_pool.load();
  unsigned long h = Malloc(pool);
  EXPECT_EQ(zpool_evict(backend, h), -EINVAL) << "no ops";
  unsigned int reclaimed = 5;
  EXPECT_EQ(zpool_shrink(pool, 1, &reclaimed), -EINVAL);
  EXPECT_EQ(reclaimed, 0u);
  EXPECT_EQ(Calls(kShrink), 0);
  zpool_ops no_callback = {};
  zpool *pool2 = zpool_create_pool("mock", "q", GFP_KERNEL, &no_callback);
  ASSERT_NE(pool2, nullptr);
  EXPECT_FALSE(zpool_evictable(pool2));
  EXPECT_EQ(zpool_evict(g_last_pool.load(), h), -EINVAL) << "ops without evict";
  int not_a_pool;
  EXPECT_EQ(zpool_evict(&not_a_pool, h), -ENOENT);
  EXPECT_EQ(kc_warn_count(), 0u);
  zpool_free(pool, h);
  zpool_destroy_pool(pool);
  zpool_destroy_pool(pool2);
  EXPECT_EQ(zpool_evict(backend, h), -ENOENT) << "destroyed";
}

TEST_F(ZpoolEvict, CallbackThatDoesNotFreeIsBadEvictOncePerShrink) {
  if (!ZPOOL_CHECKS) GTEST_SKIP() << "misuse checks compiled out (ZPOOL_UNCHECKED=1)";
  zpool *pool = Create(EvictWithoutFreeing);
  ASSERT_NE(pool, nullptr);
  unsigned long h = Malloc(pool, 16);
  memcpy(zpool_map_handle(pool, h, ZPOOL_MM_WO), "keep me", 8);
  zpool_unmap_handle(pool, h);
  unsigned int reclaimed = 9;
  // The mock retries the page 8 times, as zbud: one WARN for the one zpool_shrink call.
  EXPECT_ONE_MISUSE(ZPOOL_MISUSE_BAD_EVICT, EXPECT_EQ(zpool_shrink(pool, 1, &reclaimed), -EAGAIN));
  EXPECT_EQ(g_evicted.size(), 8u);
  EXPECT_EQ(g_last_evict_ret.load(), -EBUSY) << "the backend sees a failed eviction";
  EXPECT_EQ(reclaimed, 0u);
  EXPECT_EQ(MockLive(g_last_pool.load()), 1u) << "the object stays allocated";
  EXPECT_STREQ(static_cast<char *>(zpool_map_handle(pool, h, ZPOOL_MM_RO)), "keep me");
  zpool_unmap_handle(pool, h);
  // An eviction outside any zpool call (a backend evicting on its own) reports each time.
  EXPECT_ONE_MISUSE(ZPOOL_MISUSE_BAD_EVICT, EXPECT_EQ(zpool_evict(g_last_pool.load(), h), -EBUSY));
  zpool_free(pool, h);
  zpool_destroy_pool(pool);
}

TEST_F(ZpoolEvict, RefusingCallbackIsNotAMisuse) {
  zpool *pool = Create(EvictRefusing);
  ASSERT_NE(pool, nullptr);
  unsigned long h = Malloc(pool);
  unsigned int reclaimed = 9;
  EXPECT_NO_WARN(EXPECT_EQ(zpool_shrink(pool, 1, &reclaimed), -EAGAIN));
  EXPECT_EQ(g_last_evict_ret.load(), -EBUSY);
  EXPECT_EQ(reclaimed, 0u);
  zpool_free(pool, h);
  zpool_destroy_pool(pool);
}

TEST_F(ZpoolEvict, CallbackMayFreeOnAnotherThread) {
  zpool *pool = Create(EvictFreeingOnAnotherThread);
  ASSERT_NE(pool, nullptr);
  Malloc(pool);
  unsigned int reclaimed = 0;
  EXPECT_NO_WARN(EXPECT_EQ(zpool_shrink(pool, 1, &reclaimed), 0));
  EXPECT_EQ(reclaimed, 1u);
  zpool_destroy_pool(pool);
}

TEST_F(ZpoolEvict, CallbackCannotDestroyThePool) {
  if (!ZPOOL_CHECKS) GTEST_SKIP() << "misuse checks compiled out (ZPOOL_UNCHECKED=1)";
  zpool *pool = Create(EvictDestroyingThePool);
  ASSERT_NE(pool, nullptr);
  Malloc(pool);
  unsigned int reclaimed = 0;
  EXPECT_ONE_MISUSE(ZPOOL_MISUSE_DESTROY_BUSY, EXPECT_EQ(zpool_shrink(pool, 1, &reclaimed), 0));
  EXPECT_NE(LastWarning().find("evict callback"), std::string::npos) << LastWarning();
  EXPECT_EQ(reclaimed, 1u);
  EXPECT_NO_WARN(zpool_destroy_pool(pool));
}

// ---- abort policy: each zpool-level misuse is a crash naming it
// ------------------------------------

TEST_F(ZpoolLifecycle, DeathTestsPinTheMessages) {
  if (!ZPOOL_CHECKS) GTEST_SKIP() << "misuse checks compiled out (ZPOOL_UNCHECKED=1)";
  zpool *pool = zpool_create_pool("mock-atomic", "p", GFP_KERNEL, nullptr);
  ASSERT_NE(pool, nullptr);
  unsigned long h1 = Malloc(pool), h2 = Malloc(pool);
  auto abort_on_warn = [] { kc_set_warn_policy(KC_WARN_ABORT); };
  EXPECT_DEATH((abort_on_warn(), zpool_unmap_handle(pool, h1)),
               "bad-unmap: zpool_unmap_handle\\(.*this thread maps nothing");
  ASSERT_NE(zpool_map_handle(pool, h1, ZPOOL_MM_RW), nullptr);
  EXPECT_DEATH((abort_on_warn(), zpool_map_handle(pool, h2, ZPOOL_MM_RW)),
               "nested-map: zpool_map_handle\\(.*missing zpool_unmap_handle");
  EXPECT_DEATH((abort_on_warn(), zpool_free(pool, h1)),
               "free-mapped: zpool_free\\(.*this thread maps the handle");
  EXPECT_DEATH((abort_on_warn(), zpool_destroy_pool(pool)),
               "destroy-busy: zpool_destroy_pool\\(.*this thread maps handle");
  EXPECT_DEATH((abort_on_warn(), zpool_malloc(pool, 8, GFP_KERNEL, &h2)),
               "sleep-while-mapped: sleeping function called from invalid context: zpool_malloc");
  zpool_unmap_handle(pool, h1);
  zpool_free(pool, h1);
  zpool_free(pool, h2);
  zpool_destroy_pool(pool);
  EXPECT_DEATH((abort_on_warn(), zpool_get_total_size(pool)),
               "use-after-destroy: zpool_get_total_size\\(.*not a live pool");
  zpool_driver custom;
  InitMockDriver(&custom, "death");
  zpool_register_driver(&custom);
  custom.refcount = -3;
  EXPECT_DEATH((abort_on_warn(), zpool_unregister_driver(&custom)),
               "driver-refcount: zpool_unregister_driver\\(death\\): refcount is -3");
  custom.refcount = 0;
  EXPECT_EQ(zpool_unregister_driver(&custom), 0);
  EXPECT_EQ(kc_warn_count(), 0u) << "the parent saw none of the children's WARNs";
}

TEST_F(ZpoolEvict, BadEvictDeathTest) {
  if (!ZPOOL_CHECKS) GTEST_SKIP() << "misuse checks compiled out (ZPOOL_UNCHECKED=1)";
  zpool *pool = Create(EvictWithoutFreeing);
  ASSERT_NE(pool, nullptr);
  unsigned long h = Malloc(pool);
  unsigned int reclaimed;
  EXPECT_DEATH((kc_set_warn_policy(KC_WARN_ABORT), zpool_shrink(pool, 1, &reclaimed)),
               "bad-evict: zpool_evict\\(.*returned 0 without freeing");
  zpool_free(pool, h);
  zpool_destroy_pool(pool);
}

// ---- Concurrency (meaningful under TSan)
// -------------------------------------------------------------

TEST_F(ZpoolLifecycle, RegisterUnregisterAndOwnerUnloadRaceCreateDestroy) {
  const int loglevel = kc_get_console_loglevel();
  kc_set_console_loglevel(KC_LOG_ERR);  // creates that lose the race pr_err: keep the log short
  static struct module owner("zpool_race_owner");
  zpool_driver racy;
  InitMockDriver(&racy, "racy");
  racy.owner = &owner;
  std::atomic<bool> stop{false};
  std::atomic<int> created{0}, refused{0}, busy{0}, unloads{0};

  // The driver's "module": registers, sometimes starts unloading while registered (creates must
  // then fail cleanly), unregisters (retrying while pools use it), and is reloaded only once
  // unregistered (no try_module_get can be in flight then).
  std::thread registrar([&] {
    for (int i = 0; i < 100; i++) {
      zpool_register_driver(&racy);
      bool unloading = false;
      if (i % 2 == 0) {
        // Let the creators use the driver: unregister then races live pools.
        const int seen = created.load();
        for (int spin = 0; spin < 2000 && created.load() == seen; spin++) std::this_thread::yield();
      } else {
        // Unload while registered, racing the creators' try_module_get(): it succeeds at an
        // instant when no pool holds the module.
        for (int spin = 0; spin < 100000 && !unloading; spin++) {
          unloading = kc_module_unload_begin(&owner) == 0;
          if (!unloading) std::this_thread::yield();
        }
      }
      if (unloading) {
        unloads++;
        const int seen = refused.load();
        for (int spin = 0; spin < 2000 && refused.load() == seen; spin++) std::this_thread::yield();
      }
      int ret;
      while ((ret = zpool_unregister_driver(&racy)) == -EBUSY) {
        EXPECT_FALSE(unloading) << "no pool can be created while the owner is going away";
        busy++;
        std::this_thread::yield();
      }
      EXPECT_EQ(ret, 0);
      if (unloading) kc_module_reload(&owner);
    }
    stop = true;
  });
  std::vector<std::thread> creators;
  for (int t = 0; t < 2; t++) {
    creators.emplace_back([&, t] {
      kc_set_cpu(t);
      while (!stop.load()) {
        zpool_has_pool("racy");
        zpool *pool = zpool_create_pool("racy", "r", GFP_KERNEL, nullptr);
        if (pool == nullptr) {
          refused++;
          continue;
        }
        created++;
        unsigned long h = 0;
        EXPECT_EQ(zpool_malloc(pool, 32, GFP_KERNEL, &h), 0);
        zpool_free(pool, h);
        zpool_destroy_pool(pool);
      }
    });
  }
  registrar.join();
  for (auto &t : creators) t.join();
  kc_set_console_loglevel(loglevel);
  EXPECT_EQ(racy.refcount.load(), 0);
  EXPECT_EQ(module_refcount(&owner), 0);
  EXPECT_TRUE(module_is_live(&owner));
  EXPECT_EQ(kc_warn_count(), 0u) << LastWarning();
  EXPECT_GT(created.load(), 0);
  EXPECT_GT(refused.load(), 0);
  EXPECT_GT(unloads.load(), 0);
}

TEST_F(ZpoolLifecycle, OnePoolManyCpus) {
  zpool *pool = zpool_create_pool("mock-atomic", "p", GFP_KERNEL, nullptr);
  ASSERT_NE(pool, nullptr);
  kc_set_warn_policy(KC_WARN_ABORT);  // a misuse-free run: any WARN is a failure
  std::vector<std::thread> threads;
  for (int cpu = 0; cpu < kc_nr_cpus(); cpu++) {
    threads.emplace_back([pool, cpu] {
      kc_set_cpu(cpu);
      for (int i = 0; i < 200; i++) {
        unsigned long h = 0;
        ASSERT_EQ(zpool_malloc(pool, 24, GFP_KERNEL, &h), 0);
        auto *p = static_cast<int *>(zpool_map_handle(pool, h, ZPOOL_MM_WO));
        ASSERT_NE(p, nullptr);
        *p = cpu * 1000 + i;
        zpool_unmap_handle(pool, h);
        p = static_cast<int *>(zpool_map_handle(pool, h, ZPOOL_MM_RO));
        ASSERT_NE(p, nullptr);
        EXPECT_EQ(*p, cpu * 1000 + i);
        zpool_unmap_handle(pool, h);
        zpool_free(pool, h);
      }
    });
  }
  for (auto &t : threads) t.join();
  kc_set_warn_policy(KC_WARN_RECORD);
  EXPECT_EQ(zpool_get_total_size(pool), 0u);
  zpool_destroy_pool(pool);
}

TEST_F(ZpoolLifecycle, DestroyAttemptsNeverFailTheCallsOfAThreadThatHoldsThePool) {
  if (!ZPOOL_CHECKS) GTEST_SKIP() << "misuse checks compiled out (ZPOOL_UNCHECKED=1)";
  zpool *pool = zpool_create_pool("mock", "p", GFP_KERNEL, nullptr);
  ASSERT_NE(pool, nullptr);
  unsigned long pinned = Malloc(pool);
  std::atomic<bool> mapped{false}, stop{false};
  std::atomic<int> failed{0}, calls{0};
  std::thread holder([&] {
    kc_set_cpu(1);
    if (zpool_map_handle(pool, pinned, ZPOOL_MM_RW) == nullptr) failed++;
    mapped = true;
    // While this thread maps a handle, its own calls are never refused by a racing destroy
    // attempt (which marks the pool dying for a moment, then finds the mapping and backs out).
    while (!stop.load(std::memory_order_relaxed)) {
      unsigned long h = 0;
      if (zpool_malloc(pool, 16, GFP_NOWAIT, &h) != 0) {
        failed++;
        continue;
      }
      zpool_free(pool, h);
      if (zpool_get_total_size(pool) == 0) failed++;
      calls++;
    }
    zpool_unmap_handle(pool, pinned);
  });
  kc_set_cpu(0);
  while (!mapped.load()) std::this_thread::yield();
  const unsigned long attempts = 20000;
  for (unsigned long i = 0; i < attempts; i++) zpool_destroy_pool(pool);  // always refused
  stop = true;
  holder.join();
  EXPECT_EQ(failed.load(), 0);
  EXPECT_GT(calls.load(), 0);
  EXPECT_EQ(zpool_misuse_count(ZPOOL_MISUSE_DESTROY_BUSY), attempts);
  EXPECT_EQ(kc_warn_count(), attempts) << "no call of the holder failed";
  zpool_free(pool, pinned);
  zpool_destroy_pool(pool);
}

}  // namespace

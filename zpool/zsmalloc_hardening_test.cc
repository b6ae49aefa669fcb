// SPDX-License-Identifier: GPL-2.0-only
// zsmalloc's part of the hardening catalogue (docs/hardening.md, entries 1-12 and the documented
// errors), and the sanitizer-aware memory: under `record` each misuse WARNs exactly once with its
// kind counted, returns what the catalogue says, leaves every other object intact and the pool
// valid; under `abort` a death test pins the message. The ASan and MSan cases run under their own
// configs and pass only if the sanitizer reports the bad access itself.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "zpool/kernel/kernel.h"
#include "zpool/kernel/sanitizer.h"
#include "zpool/kernel/sched.h"
#include "zpool/misuse.h"
#include "zpool/zsmalloc.h"

#if defined(KC_ASAN)
#include <sanitizer/asan_interface.h>
#endif

namespace {

constexpr unsigned long kHandleSize = sizeof(unsigned long);
constexpr gfp_t kGfp = GFP_KERNEL | __GFP_NOWARN;

unsigned long ErrValue(long err) { return reinterpret_cast<unsigned long>(ERR_PTR(err)); }

unsigned char PatternByte(unsigned seed, size_t i) {
  return static_cast<unsigned char>(seed * 131u + i * 7u + 1u);
}

void Fill(zs_pool *pool, unsigned long h, size_t size, unsigned seed) {
  auto *p = static_cast<unsigned char *>(zs_map_object(pool, h, ZS_MM_WO));
  ASSERT_NE(p, nullptr);
  for (size_t i = 0; i < size; i++) p[i] = PatternByte(seed, i);
  zs_unmap_object(pool, h);
}

bool Intact(zs_pool *pool, unsigned long h, size_t size, unsigned seed) {
  auto *p = static_cast<const unsigned char *>(zs_map_object(pool, h, ZS_MM_RO));
  if (p == nullptr) return false;
  bool ok = true;
  for (size_t i = 0; i < size && ok; i++) ok = p[i] == PatternByte(seed, i);
  zs_unmap_object(pool, h);
  return ok;
}

std::string Validate(zs_pool *pool) {
  char why[512];
  int err = zs_validate_TestOnly(pool, why, sizeof(why));
  return err == 0 ? std::string() : std::string("validator: ") + why;
}

zs_class_info Lookup(zs_pool *pool, size_t size) {
  zs_class_info info{};
  EXPECT_EQ(zs_lookup_class(pool, size, &info), 0);
  return info;
}

// A size with slack in its slot whose class has objects that span two pages (the first such
// object is found by SpanningIndex, counting from the start of a fresh zspage).
size_t SpanningSize(zs_pool *pool) {
  for (size_t size = PAGE_SIZE * 3 / 4; size >= 100; size -= 8) {
    zs_class_info info = Lookup(pool, size);
    if (!info.huge && info.pages_per_zspage > 1 && PAGE_SIZE % info.size != 0 &&
        info.size - kHandleSize > size)
      return size;
  }
  return 0;
}

[[maybe_unused]] int SpanningIndex(const zs_class_info &info) {
  for (int i = 0; i < info.objs_per_zspage; i++) {
    unsigned long start = static_cast<unsigned long>(i) * info.size;
    if ((start % PAGE_SIZE) + info.size > PAGE_SIZE) return i;
  }
  return -1;
}

std::string LastWarning() {
  char buf[4096];
  kc_last_warning(buf, sizeof(buf));
  return buf;
}

// A write the compiler emits as is, without ASan's check: the misuse under test must reach the
// allocator's own detection (the redzone) in every build, ASan included.
__attribute__((no_sanitize("address"))) void RawStore(void *p, size_t i, unsigned char v) {
  static_cast<volatile unsigned char *>(p)[i] = v;
}

// Exactly one WARN, of this kind, since the last call; then resets the counters.
#define EXPECT_ONE_MISUSE(kind)                                                                \
  do {                                                                                         \
    EXPECT_EQ(kc_warn_count(), 1u) << LastWarning();                                           \
    EXPECT_EQ(zpool_misuse_count(kind), 1u) << zpool_misuse_name(kind);                        \
    EXPECT_EQ(zpool_misuse_total(), 1u);                                                       \
    EXPECT_NE(LastWarning().find(zpool_misuse_name(kind)), std::string::npos) << LastWarning(); \
    kc_warn_reset();                                                                           \
    zpool_misuse_reset();                                                                      \
  } while (0)

#define EXPECT_NO_MISUSE()                                  \
  do {                                                      \
    EXPECT_EQ(kc_warn_count(), 0u) << LastWarning();        \
    EXPECT_EQ(zpool_misuse_total(), 0u);                    \
  } while (0)

// Runs `statement` under the abort policy: the death test child must die with `regex`.
#define EXPECT_ABORTS(statement, regex)                     \
  EXPECT_DEATH(                                             \
      {                                                     \
        kc_set_warn_policy(KC_WARN_ABORT);                  \
        statement;                                          \
      },                                                    \
      regex)

class ZsHardeningTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!ZPOOL_CHECKS) GTEST_SKIP() << "misuse checks compiled out (ZPOOL_UNCHECKED=1)";
    GTEST_FLAG_SET(death_test_style, "threadsafe");
    kc_set_warn_policy(KC_WARN_RECORD);
    kc_warn_reset();
    zpool_misuse_reset();
    kc_fail_nth_alloc(0);
    kc_set_hardening(KC_HARDENING_FULL);
    pages0_ = kc_pages_in_use();
    meta0_ = kc_meta_in_use();
    pool_ = zs_create_pool("hardening");
    ASSERT_NE(pool_, nullptr);
    for (unsigned i = 0; i < 8; i++) {
      size_t size = 40 + i * 300;
      unsigned long h = zs_malloc(pool_, size, kGfp);
      ASSERT_FALSE(IS_ERR_VALUE(h));
      Fill(pool_, h, size, 100 + i);
      bystanders_.push_back({h, size});
    }
  }

  void TearDown() override {
    for (zs_pool *pool : fresh_) {
      EXPECT_EQ(Validate(pool), "");
      zs_destroy_pool(pool);
    }
    if (pool_ != nullptr) {
      // Every other object kept its contents; the pool is consistent and usable.
      for (size_t i = 0; i < bystanders_.size(); i++)
        EXPECT_TRUE(Intact(pool_, bystanders_[i].first, bystanders_[i].second, 100 + static_cast<unsigned>(i)))
            << "bystander " << i;
      EXPECT_EQ(Validate(pool_), "");
      for (auto &[h, size] : bystanders_) zs_free(pool_, h);
      EXPECT_NO_MISUSE();
      zs_destroy_pool(pool_);
    }
    EXPECT_NO_MISUSE();
    EXPECT_EQ(kc_pages_in_use(), pages0_) << "pages leaked";
    EXPECT_EQ(kc_meta_in_use(), meta0_) << "metadata leaked";
    EXPECT_EQ(preempt_count(), 0);
    kc::SetSchedHook(nullptr);
    kc_set_warn_policy(KC_WARN_LOG);
    kc_warn_reset();
    zpool_misuse_reset();
  }

  // A pool without the bystanders, for tests that need to know where objects land (object k of
  // a class's first zspage is the k-th allocation of that class). Destroyed by TearDown.
  unsigned long AllocIn(zs_pool *pool, size_t size, unsigned seed) {
    unsigned long h = zs_malloc(pool, size, kGfp);
    EXPECT_FALSE(IS_ERR_VALUE(h));
    Fill(pool, h, size, seed);
    return h;
  }

  zs_pool *FreshPool() {
    zs_pool *pool = zs_create_pool("fresh");
    EXPECT_NE(pool, nullptr);
    fresh_.push_back(pool);
    return pool;
  }

  unsigned long Alloc(size_t size, unsigned seed) {
    unsigned long h = zs_malloc(pool_, size, kGfp);
    EXPECT_FALSE(IS_ERR_VALUE(h));
    Fill(pool_, h, size, seed);
    return h;
  }

  zs_pool *pool_ = nullptr;
  std::vector<zs_pool *> fresh_;
  std::vector<std::pair<unsigned long, size_t>> bystanders_;
  unsigned long pages0_ = 0;
  unsigned long meta0_ = 0;
};

// ---- A scheduling hook that parks one chosen thread at its first event of a kind ----------------

thread_local kc::SchedEvent t_park_at;
thread_local bool t_park = false;
std::atomic<int> g_park{0};  // 0 idle, 1 parked, 2 released

void ParkHook(const kc::SchedPoint &point) {
  if (!t_park || point.event != t_park_at) return;
  t_park = false;
  g_park.store(1);
  while (g_park.load() != 2) std::this_thread::yield();
}

void WaitParked() {
  while (g_park.load() != 1) std::this_thread::yield();
}

// ---- 15: documented errors are not misuses -------------------------------------------------------

TEST_F(ZsHardeningTest, DocumentedErrorsDoNotWarn) {
  EXPECT_EQ(zs_malloc(pool_, 0, kGfp), ErrValue(-EINVAL));
  EXPECT_EQ(zs_malloc(pool_, PAGE_SIZE + 1, kGfp), ErrValue(-ENOSPC));
  // Even while mapped: the size is checked before the sleep.
  void *p = zs_map_object(pool_, bystanders_[0].first, ZS_MM_RO);
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(zs_malloc(pool_, 0, GFP_KERNEL), ErrValue(-EINVAL));
  zs_unmap_object(pool_, bystanders_[0].first);
  EXPECT_NO_MISUSE();
}

// ---- 1: destroy of a non-empty pool -------------------------------------------------------------------

TEST_F(ZsHardeningTest, DestroyNonEmptyWarnsReportsEachGroupAndFreesEverything) {
  Alloc(100, 1);
  Alloc(100, 2);
  Alloc(3000, 3);
  // Objects per class (each class's few objects share one zspage, hence one fullness group).
  std::map<int, std::pair<zs_class_info, int>> per_class;
  for (size_t size : {size_t{100}, size_t{100}, size_t{3000}}) {
    zs_class_info info = Lookup(pool_, size);
    per_class[info.index] = {info, per_class[info.index].second + 1};
  }
  for (auto &[h, size] : bystanders_) {
    zs_class_info info = Lookup(pool_, size);
    per_class[info.index] = {info, per_class[info.index].second + 1};
  }
  const unsigned long errs = kc_log_count(KC_LOG_ERR);
  testing::internal::CaptureStderr();
  zs_destroy_pool(pool_);
  std::string err = testing::internal::GetCapturedStderr();
  pool_ = nullptr;
  EXPECT_NE(LastWarning().find("11 objects"), std::string::npos) << LastWarning();
  EXPECT_ONE_MISUSE(ZPOOL_MISUSE_DESTROY_NONEMPTY);
  // The kernel's message, once per non-empty class and fullness group.
  for (auto &[index, entry] : per_class) {
    const zs_class_info &info = entry.first;
    int inuse = entry.second;
    ASSERT_LE(inuse, info.objs_per_zspage);
    int group = inuse == info.objs_per_zspage ? 11 : 100 * inuse / info.objs_per_zspage / 10 + 1;
    char want[128];
    snprintf(want, sizeof(want), "Class-%u fullness group %d is not empty", info.size, group);
    EXPECT_NE(err.find(want), std::string::npos) << want << "\n" << err;
  }
  size_t lines = 0;
  for (size_t at = err.find("fullness group"); at != std::string::npos;
       at = err.find("fullness group", at + 1))
    lines++;
  EXPECT_EQ(lines, per_class.size());
  EXPECT_EQ(kc_log_count(KC_LOG_ERR) - errs, lines);
  // TearDown: no page and no metadata leaked.
}

TEST_F(ZsHardeningTest, DestroyNonEmptyAbortsUnderAbort) {
  EXPECT_ABORTS(zs_destroy_pool(pool_),
                "destroy-nonempty: zs_destroy_pool\\(.*8 objects in [0-9]+ pages still allocated");
}

// ---- 2: destroy while mapped or while a call is in flight ------------------------------------------

TEST_F(ZsHardeningTest, DestroyWhileAnotherThreadHoldsAMappingIsRefused) {
  if (kc_nr_cpus() < 2) GTEST_SKIP() << "needs two virtual CPUs";
  unsigned long h = Alloc(500, 1);
  std::atomic<int> phase{0};
  std::thread mapper([&] {
    kc_set_cpu(1);
    void *p = zs_map_object(pool_, h, ZS_MM_RW);
    EXPECT_NE(p, nullptr);
    phase.store(1);
    while (phase.load() != 2) std::this_thread::yield();
    zs_unmap_object(pool_, h);
  });
  kc_set_cpu(0);
  while (phase.load() != 1) std::this_thread::yield();
  zs_destroy_pool(pool_);
  EXPECT_NE(LastWarning().find("1 handles mapped"), std::string::npos) << LastWarning();
  EXPECT_ONE_MISUSE(ZPOOL_MISUSE_DESTROY_BUSY);
  // Refused: the pool works, the mapping can be released.
  unsigned long h2 = Alloc(200, 2);
  phase.store(2);
  mapper.join();
  EXPECT_TRUE(Intact(pool_, h, 500, 1));
  zs_free(pool_, h);
  zs_free(pool_, h2);
  EXPECT_NO_MISUSE();
}

TEST_F(ZsHardeningTest, DestroyWhileACallIsInFlightIsRefused) {
  // A thread parked inside zs_malloc (at its handle allocation) while the pool is destroyed.
  kc::SetSchedHook(ParkHook);
  g_park.store(0);
  unsigned long h = 0;
  std::thread caller([&] {
    t_park_at = kc::SchedEvent::kAlloc;
    t_park = true;
    h = zs_malloc(pool_, 300, kGfp);
  });
  WaitParked();
  zs_destroy_pool(pool_);
  EXPECT_NE(LastWarning().find("1 calls in flight"), std::string::npos) << LastWarning();
  EXPECT_ONE_MISUSE(ZPOOL_MISUSE_DESTROY_BUSY);
  g_park.store(2);
  caller.join();
  kc::SetSchedHook(nullptr);
  ASSERT_FALSE(IS_ERR_VALUE(h));
  Fill(pool_, h, 300, 5);
  EXPECT_TRUE(Intact(pool_, h, 300, 5));
  zs_free(pool_, h);
  EXPECT_NO_MISUSE();
}

TEST_F(ZsHardeningTest, DestroyBusyAbortsUnderAbort) {
  if (kc_nr_cpus() < 2) GTEST_SKIP() << "needs two virtual CPUs";
  EXPECT_ABORTS(
      {
        std::atomic<bool> mapped{false};
        std::thread mapper([&] {
          kc_set_cpu(1);
          zs_map_object(pool_, bystanders_[0].first, ZS_MM_RO);
          mapped.store(true);
          for (;;) std::this_thread::sleep_for(std::chrono::seconds(1));
        });
        mapper.detach();
        while (!mapped.load()) std::this_thread::yield();
        zs_destroy_pool(pool_);
      },
      "destroy-busy: zs_destroy_pool\\(.*1 handles mapped; refused");
}

// ---- 3: calls after destruction ------------------------------------------------------------------

TEST_F(ZsHardeningTest, CallsOnADestroyedPoolWarnAndFail) {
  zs_pool *doomed = zs_create_pool("doomed");
  ASSERT_NE(doomed, nullptr);
  unsigned long h = zs_malloc(doomed, 100, kGfp);
  zs_free(doomed, h);
  zs_destroy_pool(doomed);
  EXPECT_NO_MISUSE();

  EXPECT_EQ(zs_malloc(doomed, 100, kGfp), ErrValue(-EINVAL));
  EXPECT_ONE_MISUSE(ZPOOL_MISUSE_USE_AFTER_DESTROY);
  zs_free(doomed, h);
  EXPECT_ONE_MISUSE(ZPOOL_MISUSE_USE_AFTER_DESTROY);
  EXPECT_EQ(zs_map_object(doomed, h, ZS_MM_RW), nullptr);
  EXPECT_ONE_MISUSE(ZPOOL_MISUSE_USE_AFTER_DESTROY);
  EXPECT_FALSE(kc_in_atomic());
  zs_unmap_object(doomed, h);
  EXPECT_ONE_MISUSE(ZPOOL_MISUSE_USE_AFTER_DESTROY);
  EXPECT_EQ(zs_get_total_pages(doomed), 0u);
  EXPECT_ONE_MISUSE(ZPOOL_MISUSE_USE_AFTER_DESTROY);
  EXPECT_EQ(zs_compact(doomed), 0u);
  EXPECT_ONE_MISUSE(ZPOOL_MISUSE_USE_AFTER_DESTROY);
  EXPECT_EQ(zs_huge_class_size(doomed), 0u);
  EXPECT_ONE_MISUSE(ZPOOL_MISUSE_USE_AFTER_DESTROY);
  struct zs_pool_stats stats{12345};
  zs_pool_stats(doomed, &stats);
  EXPECT_EQ(stats.pages_compacted, 12345u);
  EXPECT_ONE_MISUSE(ZPOOL_MISUSE_USE_AFTER_DESTROY);
  zs_destroy_pool(doomed);
  EXPECT_ONE_MISUSE(ZPOOL_MISUSE_USE_AFTER_DESTROY);
  // Never a pool at all.
  int garbage = 0;
  EXPECT_EQ(zs_malloc(reinterpret_cast<zs_pool *>(&garbage), 100, kGfp), ErrValue(-EINVAL));
  EXPECT_ONE_MISUSE(ZPOOL_MISUSE_USE_AFTER_DESTROY);
  zs_free(nullptr, 0);
  EXPECT_ONE_MISUSE(ZPOOL_MISUSE_USE_AFTER_DESTROY);
}

TEST_F(ZsHardeningTest, CallsWhileDestructionIsUnderWayWarnAndFail) {
  // The destroyer parked after its destruction began (at the first lock it takes past the busy
  // check); a call made then must be refused, not run on a pool being freed.
  zs_pool *doomed = zs_create_pool("doomed");
  ASSERT_NE(doomed, nullptr);
  kc::SetSchedHook(ParkHook);
  g_park.store(0);
  std::thread destroyer([&] {
    t_park_at = kc::SchedEvent::kLockAcquire;
    t_park = true;
    zs_destroy_pool(doomed);
  });
  WaitParked();
  EXPECT_EQ(zs_malloc(doomed, 100, kGfp), ErrValue(-EINVAL));
  EXPECT_NE(LastWarning().find("being destroyed"), std::string::npos) << LastWarning();
  EXPECT_ONE_MISUSE(ZPOOL_MISUSE_USE_AFTER_DESTROY);
  g_park.store(2);
  destroyer.join();
  kc::SetSchedHook(nullptr);
  EXPECT_NO_MISUSE();
}

TEST_F(ZsHardeningTest, UseAfterDestroyAbortsUnderAbort) {
  zs_pool *doomed = zs_create_pool("doomed");
  ASSERT_NE(doomed, nullptr);
  zs_destroy_pool(doomed);
  EXPECT_ABORTS(zs_malloc(doomed, 100, kGfp),
                "use-after-destroy: zs_malloc\\(.*not a live zsmalloc pool");
}

// ---- 4: nested map --------------------------------------------------------------------------------

TEST_F(ZsHardeningTest, NestedMapReturnsNull) {
  unsigned long a = Alloc(100, 1), b = Alloc(2000, 2);
  zs_pool *other = zs_create_pool("other");
  ASSERT_NE(other, nullptr);
  unsigned long c = zs_malloc(other, 100, kGfp);
  auto *pa = static_cast<unsigned char *>(zs_map_object(pool_, a, ZS_MM_RW));
  ASSERT_NE(pa, nullptr);
  EXPECT_EQ(zs_map_object(pool_, b, ZS_MM_RO), nullptr);
  EXPECT_ONE_MISUSE(ZPOOL_MISUSE_NESTED_MAP);
  EXPECT_EQ(zs_map_object(pool_, a, ZS_MM_RO), nullptr);  // the same handle again
  EXPECT_ONE_MISUSE(ZPOOL_MISUSE_NESTED_MAP);
  // Nested across pools: still one mapping per CPU.
  EXPECT_EQ(zs_map_object(other, c, ZS_MM_RO), nullptr);
  EXPECT_ONE_MISUSE(ZPOOL_MISUSE_NESTED_MAP);
  // The first mapping is intact and still held.
  EXPECT_TRUE(kc_in_atomic());
  EXPECT_EQ(pa[0], PatternByte(1, 0));
  pa[0] = PatternByte(1, 0);
  zs_unmap_object(pool_, a);
  EXPECT_TRUE(Intact(pool_, a, 100, 1));
  EXPECT_TRUE(Intact(pool_, b, 2000, 2));
  zs_free(other, c);
  zs_destroy_pool(other);
  zs_free(pool_, a);
  zs_free(pool_, b);
  EXPECT_NO_MISUSE();
}

TEST_F(ZsHardeningTest, NestedMapAbortsUnderAbort) {
  unsigned long a = Alloc(100, 1), b = Alloc(100, 2);
  EXPECT_ABORTS(
      {
        zs_map_object(pool_, a, ZS_MM_RO);
        zs_map_object(pool_, b, ZS_MM_RO);
      },
      "nested-map: zs_map_object\\(.*this thread already holds a mapping");
  zs_free(pool_, a);
  zs_free(pool_, b);
}

// ---- 5: two threads on one virtual CPU -------------------------------------------------------------

// Thread 1 maps a on cpu 0 and holds it; thread 2, bound to cpu 0 too, maps b: it must WARN (the
// misuse, once: local_lock stays uncontended and silent) and then wait instead of sharing the area.
void TwoThreadsOnOneCpu(zs_pool *pool, unsigned long a, unsigned long b, size_t size,
                        std::atomic<bool> *second_done) {
  std::atomic<int> phase{0};
  std::thread first([&] {
    kc_set_cpu(0);
    auto *p = static_cast<unsigned char *>(zs_map_object(pool, a, ZS_MM_RW));
    EXPECT_NE(p, nullptr);
    phase.store(1);
    while (phase.load() != 2) std::this_thread::yield();
    for (size_t i = 0; i < size; i++) p[i] = PatternByte(11, i);
    std::this_thread::sleep_for(std::chrono::milliseconds(20));  // the second one must not enter
    EXPECT_FALSE(second_done->load());
    zs_unmap_object(pool, a);
  });
  while (phase.load() != 1) std::this_thread::yield();
  std::thread second([&] {
    kc_set_cpu(0);
    auto *p = static_cast<unsigned char *>(zs_map_object(pool, b, ZS_MM_RW));
    EXPECT_NE(p, nullptr);
    second_done->store(true);
    for (size_t i = 0; i < size; i++) p[i] = PatternByte(12, i);
    zs_unmap_object(pool, b);
  });
  while (zpool_misuse_count(ZPOOL_MISUSE_CONCURRENT_MAP) == 0) std::this_thread::yield();
  phase.store(2);
  first.join();
  second.join();
}

TEST_F(ZsHardeningTest, TwoThreadsMappingOnOneCpuWarnAndTheSecondWaits) {
  unsigned long a = Alloc(3000, 1), b = Alloc(3000, 2);  // spanning-class objects: vm_buf shared
  std::atomic<bool> second_done{false};
  TwoThreadsOnOneCpu(pool_, a, b, 3000, &second_done);
  EXPECT_TRUE(second_done.load());
  EXPECT_NE(LastWarning().find("two threads bound to one virtual CPU"), std::string::npos);
  EXPECT_ONE_MISUSE(ZPOOL_MISUSE_CONCURRENT_MAP);
  EXPECT_TRUE(Intact(pool_, a, 3000, 11));
  EXPECT_TRUE(Intact(pool_, b, 3000, 12));
  zs_free(pool_, a);
  zs_free(pool_, b);
}

TEST_F(ZsHardeningTest, ConcurrentMapAbortsUnderAbort) {
  unsigned long a = Alloc(3000, 1), b = Alloc(3000, 2);
  EXPECT_ABORTS(
      {
        std::atomic<bool> done{false};
        TwoThreadsOnOneCpu(pool_, a, b, 3000, &done);
      },
      "concurrent-map: zs_map_object\\(.*two threads bound to one virtual CPU");
  zs_free(pool_, a);
  zs_free(pool_, b);
}

// ---- 6: bad unmap -------------------------------------------------------------------------------------

TEST_F(ZsHardeningTest, BadUnmapIsANoOp) {
  unsigned long a = Alloc(100, 1), b = Alloc(100, 2);
  zs_unmap_object(pool_, a);  // never mapped
  EXPECT_ONE_MISUSE(ZPOOL_MISUSE_BAD_UNMAP);
  EXPECT_FALSE(kc_in_atomic());

  ASSERT_NE(zs_map_object(pool_, a, ZS_MM_RW), nullptr);
  zs_unmap_object(pool_, b);  // not the mapped one
  EXPECT_NE(LastWarning().find("another handle mapped"), std::string::npos);
  EXPECT_ONE_MISUSE(ZPOOL_MISUSE_BAD_UNMAP);
  EXPECT_TRUE(kc_in_atomic()) << "the mapping of a must still be held";
  if (kc_nr_cpus() >= 2) {
    std::thread other([&] {
      kc_set_cpu(1);
      zs_unmap_object(pool_, a);  // mapped, but by another thread (on another CPU)
    });
    other.join();
    EXPECT_ONE_MISUSE(ZPOOL_MISUSE_BAD_UNMAP);
  }
  zs_unmap_object(pool_, a);
  EXPECT_NO_MISUSE();
  zs_unmap_object(pool_, a);  // twice
  EXPECT_ONE_MISUSE(ZPOOL_MISUSE_BAD_UNMAP);
  EXPECT_TRUE(Intact(pool_, a, 100, 1));
  EXPECT_TRUE(Intact(pool_, b, 100, 2));
  zs_free(pool_, a);
  zs_free(pool_, b);
}

TEST_F(ZsHardeningTest, BadUnmapAbortsUnderAbort) {
  unsigned long a = Alloc(100, 1);
  EXPECT_ABORTS(zs_unmap_object(pool_, a), "bad-unmap: zs_unmap_object\\(.*not mapped by this thread");
  zs_free(pool_, a);
}

// ---- 7: sleeping while mapped ------------------------------------------------------------------------

TEST_F(ZsHardeningTest, MaySleepCallsWhileMappedWarnThenProceedOrRefuse) {
  // A fragmented class, so that a compaction would free pages.
  std::vector<unsigned long> frag;
  for (int i = 0; i < 3 * Lookup(pool_, 200).objs_per_zspage; i++) frag.push_back(Alloc(200, 7));
  for (size_t i = 0; i < frag.size(); i += 2) zs_free(pool_, frag[i]);
  const unsigned long pages = zs_get_total_pages(pool_);
  zs_pool *other = zs_create_pool("other");
  ASSERT_NE(other, nullptr);
  unsigned long a = Alloc(100, 1);

  ASSERT_NE(zs_map_object(pool_, a, ZS_MM_RO), nullptr);
  // GFP_KERNEL malloc: WARN, then it proceeds without direct reclaim (no second WARN from the
  // page allocator's might_sleep()).
  unsigned long h = zs_malloc(pool_, 3000, GFP_KERNEL);
  EXPECT_FALSE(IS_ERR_VALUE(h));
  EXPECT_NE(LastWarning().find("may sleep"), std::string::npos);
  EXPECT_ONE_MISUSE(ZPOOL_MISUSE_SLEEP_WHILE_MAPPED);
  // Non-sleeping allocations are fine while mapped.
  unsigned long h2 = zs_malloc(pool_, 100, GFP_ATOMIC);
  unsigned long h3 = zs_malloc(pool_, 100, GFP_NOWAIT);
  EXPECT_FALSE(IS_ERR_VALUE(h2));
  EXPECT_FALSE(IS_ERR_VALUE(h3));
  EXPECT_NO_MISUSE();
  // Compaction: refused.
  EXPECT_EQ(zs_compact(pool_), 0u);
  EXPECT_ONE_MISUSE(ZPOOL_MISUSE_SLEEP_WHILE_MAPPED);
  // Destroying the pool that holds the mapping: destroy-busy, refused.
  zs_destroy_pool(pool_);
  EXPECT_ONE_MISUSE(ZPOOL_MISUSE_DESTROY_BUSY);
  // Destroying another (empty) pool: safe without sleeping, so it proceeds.
  zs_destroy_pool(other);
  EXPECT_ONE_MISUSE(ZPOOL_MISUSE_SLEEP_WHILE_MAPPED);
  // Creating a pool: proceeds without sleeping.
  zs_pool *third = zs_create_pool("third");
  EXPECT_NE(third, nullptr);
  EXPECT_ONE_MISUSE(ZPOOL_MISUSE_SLEEP_WHILE_MAPPED);
  zs_unmap_object(pool_, a);
  EXPECT_NO_MISUSE();

  EXPECT_GE(zs_get_total_pages(pool_), pages) << "nothing was compacted while mapped";
  EXPECT_GT(zs_compact(pool_), 0u);  // unmapped, compaction runs
  zs_destroy_pool(third);
  for (unsigned long x : {a, h, h2, h3}) zs_free(pool_, x);
  for (size_t i = 1; i < frag.size(); i += 2) {
    EXPECT_TRUE(Intact(pool_, frag[i], 200, 7));
    zs_free(pool_, frag[i]);
  }
  EXPECT_NO_MISUSE();
}

TEST_F(ZsHardeningTest, SleepWhileMappedAbortsUnderAbort) {
  unsigned long a = Alloc(100, 1);
  EXPECT_ABORTS(
      {
        zs_map_object(pool_, a, ZS_MM_RO);
        zs_malloc(pool_, 100, GFP_KERNEL);
      },
      "sleep-while-mapped: zs_malloc\\(.*may sleep, but this thread holds a mapping");
  zs_free(pool_, a);
}

// ---- 8: double free -----------------------------------------------------------------------------------

TEST_F(ZsHardeningTest, DoubleFreeIsANoOp) {
  unsigned long a = Alloc(100, 1), b = Alloc(100, 2);
  zs_free(pool_, a);
  EXPECT_NO_MISUSE();
  const unsigned long pages = zs_get_total_pages(pool_);
  zs_free(pool_, a);
  EXPECT_ONE_MISUSE(ZPOOL_MISUSE_DOUBLE_FREE);
  EXPECT_EQ(zs_get_total_pages(pool_), pages);
  // Mapping or unmapping the freed handle: the same misuse, NULL / no-op.
  EXPECT_EQ(zs_map_object(pool_, a, ZS_MM_RO), nullptr);
  EXPECT_ONE_MISUSE(ZPOOL_MISUSE_DOUBLE_FREE);
  zs_unmap_object(pool_, a);
  EXPECT_ONE_MISUSE(ZPOOL_MISUSE_DOUBLE_FREE);
  EXPECT_TRUE(Intact(pool_, b, 100, 2));
  EXPECT_EQ(Validate(pool_), "");
  zs_free(pool_, b);
  EXPECT_NO_MISUSE();
}

TEST_F(ZsHardeningTest, AFreedHandleReleasedFromQuarantineReadsAsInvalid) {
  // The documented limit of telling double free from garbage: once the freed handle's slot has
  // left the quarantine (here: after many later frees, and no allocation since to reuse it), a
  // second free of it is reported as invalid-handle, still a no-op.
  std::vector<unsigned long> others;
  for (int i = 0; i < 400; i++) others.push_back(zs_malloc(pool_, 50, kGfp));
  unsigned long a = Alloc(100, 1);
  zs_free(pool_, a);
  for (unsigned long h : others) zs_free(pool_, h);
  EXPECT_NO_MISUSE();
  zs_free(pool_, a);
  EXPECT_ONE_MISUSE(ZPOOL_MISUSE_INVALID_HANDLE);
}

TEST_F(ZsHardeningTest, DoubleFreeAbortsUnderAbort) {
  unsigned long a = Alloc(100, 1);
  zs_free(pool_, a);
  EXPECT_ABORTS(zs_free(pool_, a), "double-free: zs_free\\(.*handle is already free");
}

// ---- 9: handles this pool never returned -------------------------------------------------------------

TEST_F(ZsHardeningTest, InvalidHandlesAreRejected) {
  zs_pool *other = zs_create_pool("other");
  ASSERT_NE(other, nullptr);
  unsigned long theirs = zs_malloc(other, 100, kGfp);
  Fill(other, theirs, 100, 9);
  unsigned long mine = Alloc(100, 1);
  int local = 0;
  const unsigned long bad[] = {0,
                               0xdeadbeef,
                               reinterpret_cast<unsigned long>(&local),
                               theirs,
                               mine + 8,
                               ErrValue(-ENOMEM)};
  for (unsigned long h : bad) {
    zs_free(pool_, h);
    EXPECT_ONE_MISUSE(ZPOOL_MISUSE_INVALID_HANDLE);
    EXPECT_EQ(zs_map_object(pool_, h, ZS_MM_RW), nullptr);
    EXPECT_ONE_MISUSE(ZPOOL_MISUSE_INVALID_HANDLE);
    zs_unmap_object(pool_, h);
    EXPECT_ONE_MISUSE(ZPOOL_MISUSE_INVALID_HANDLE);
  }
  EXPECT_FALSE(kc_in_atomic());
  EXPECT_TRUE(Intact(other, theirs, 100, 9));
  EXPECT_TRUE(Intact(pool_, mine, 100, 1));
  EXPECT_EQ(Validate(other), "");
  zs_free(other, theirs);
  zs_destroy_pool(other);
  zs_free(pool_, mine);
  EXPECT_NO_MISUSE();
}

TEST_F(ZsHardeningTest, InvalidHandleAbortsUnderAbort) {
  EXPECT_ABORTS(zs_free(pool_, 0x1234), "invalid-handle: zs_free\\(.*not a handle of this pool");
}

// ---- 10: free of a mapped handle ---------------------------------------------------------------------

TEST_F(ZsHardeningTest, FreeOfAMappedHandleIsRefused) {
  unsigned long a = Alloc(3000, 1);
  auto *p = static_cast<unsigned char *>(zs_map_object(pool_, a, ZS_MM_RW));
  ASSERT_NE(p, nullptr);
  zs_free(pool_, a);
  EXPECT_ONE_MISUSE(ZPOOL_MISUSE_FREE_MAPPED);
  for (size_t i = 0; i < 3000; i++) p[i] = PatternByte(2, i);  // still allocated and mapped
  zs_unmap_object(pool_, a);
  EXPECT_NO_MISUSE();
  EXPECT_TRUE(Intact(pool_, a, 3000, 2));
  if (kc_nr_cpus() >= 2) {  // mapped on another CPU
    std::atomic<int> phase{0};
    std::thread mapper([&] {
      kc_set_cpu(1);
      zs_map_object(pool_, a, ZS_MM_RO);
      phase.store(1);
      while (phase.load() != 2) std::this_thread::yield();
      zs_unmap_object(pool_, a);
    });
    kc_set_cpu(0);
    while (phase.load() != 1) std::this_thread::yield();
    zs_free(pool_, a);
    EXPECT_ONE_MISUSE(ZPOOL_MISUSE_FREE_MAPPED);
    phase.store(2);
    mapper.join();
  }
  EXPECT_TRUE(Intact(pool_, a, 3000, 2));
  zs_free(pool_, a);
  EXPECT_NO_MISUSE();
}

TEST_F(ZsHardeningTest, FreeRacingMapsOfTheSameHandleOnAnotherCpu) {
  // One thread maps and unmaps a handle over and over; another frees it until the free is
  // accepted. Every refused free must leave the map count as the mapper left it: in the end the
  // handle is freed exactly once and the pool is consistent.
  if (kc_nr_cpus() < 2) GTEST_SKIP() << "needs two virtual CPUs";
  zs_pool *pool = FreshPool();
  // ZS_RACE_ROUNDS=n for a soak run (bazel test --test_env=ZS_RACE_ROUNDS=400 ...).
  const int rounds = getenv("ZS_RACE_ROUNDS") ? atoi(getenv("ZS_RACE_ROUNDS")) : 20;
  for (int round = 0; round < rounds; round++) {
    kc_warn_reset();
    zpool_misuse_reset();
    unsigned long h = zs_malloc(pool, 3000, kGfp);
    Fill(pool, h, 3000, 1);
    std::atomic<bool> freed{false};
    std::atomic<int> maps{0}, unmaps{0}, cpu_seen{-1};
    std::thread mapper([&] {
      kc_set_cpu(1);
      cpu_seen.store(kc_current_cpu());
      for (int i = 0; i < 2000 && !freed.load(); i++) {
        void *p = zs_map_object(pool, h, ZS_MM_RO);
        if (p == nullptr) break;  // freed under us: reported as a use of a freed handle
        maps++;
        zs_unmap_object(pool, h);
        unmaps++;
      }
      EXPECT_FALSE(kc_in_atomic());
    });
    kc_set_cpu(0);
    while (!freed.load()) {
      zs_free(pool, h);  // refused (free-mapped) while mapped
      if (zs_get_total_pages(pool) == 0) freed.store(true);
      if (mapper.joinable() && zpool_misuse_count(ZPOOL_MISUSE_FREE_MAPPED) > 5000) break;
    }
    mapper.join();
    {
      std::string kinds;
      for (int k = 1; k < ZPOOL_MISUSE_COUNT; k++)
        if (zpool_misuse_count(static_cast<zpool_misuse>(k)))
          kinds += std::string(zpool_misuse_name(static_cast<zpool_misuse>(k))) + "=" +
                   std::to_string(zpool_misuse_count(static_cast<zpool_misuse>(k))) + " ";
      EXPECT_EQ(zpool_misuse_count(ZPOOL_MISUSE_FREE_MAPPED) +
                    zpool_misuse_count(ZPOOL_MISUSE_DOUBLE_FREE),
                zpool_misuse_total())
          << kinds << " freed=" << freed.load();
    }
    if (!freed.load()) {  // the mapper is done: the free must now be accepted, silently
      unsigned long before = zpool_misuse_total();
      zs_free(pool, h);
      EXPECT_EQ(zpool_misuse_total(), before)
          << "the map count was corrupted: " << LastWarning() << " maps " << maps.load()
          << " unmaps " << unmaps.load() << " mapper cpu " << cpu_seen.load() << " main cpu "
          << kc_current_cpu() << " warns " << kc_warn_count();
    }
    ASSERT_EQ(zs_get_total_pages(pool), 0u) << "round " << round;
    EXPECT_EQ(zpool_misuse_count(ZPOOL_MISUSE_FREE_MAPPED) + zpool_misuse_count(ZPOOL_MISUSE_DOUBLE_FREE),
              zpool_misuse_total());
    ASSERT_EQ(Validate(pool), "");
  }
  EXPECT_FALSE(kc_in_atomic());
  kc_warn_reset();
  zpool_misuse_reset();
}

TEST_F(ZsHardeningTest, FreeDuringAnUnmapIsRefusedUntilTheUnmapHasLetGo) {
  // The unmapping thread parked inside zs_unmap_object() (at its local_unlock): the handle is
  // still mapped, so a free is refused. Were the map count dropped before the zspage lock (the
  // order this test pins), the free would empty and free the zspage under the unmap, which then
  // releases a lock in freed memory (an ASan report; a silent corruption elsewhere).
  if (kc_nr_cpus() < 2) GTEST_SKIP() << "needs two virtual CPUs";
  zs_pool *pool = FreshPool();
  for (size_t size : {size_t{100}, SpanningSize(pool)}) {
    unsigned long h = zs_malloc(pool, size, kGfp);
    Fill(pool, h, size, 1);
    kc::SetSchedHook(ParkHook);
    g_park.store(0);
    std::thread unmapper([&] {
      kc_set_cpu(1);
      ASSERT_NE(zs_map_object(pool, h, ZS_MM_RO), nullptr);
      t_park_at = kc::SchedEvent::kPreemptEnable;
      t_park = true;
      zs_unmap_object(pool, h);
    });
    WaitParked();
    zs_free(pool, h);
    EXPECT_ONE_MISUSE(ZPOOL_MISUSE_FREE_MAPPED);
    EXPECT_GT(zs_get_total_pages(pool), 0u);
    g_park.store(2);
    unmapper.join();
    kc::SetSchedHook(nullptr);
    EXPECT_TRUE(Intact(pool, h, size, 1));
    zs_free(pool, h);
    EXPECT_NO_MISUSE();
    EXPECT_EQ(zs_get_total_pages(pool), 0u);
  }
}

TEST_F(ZsHardeningTest, FreeMappedAbortsUnderAbort) {
  unsigned long a = Alloc(100, 1);
  EXPECT_ABORTS(
      {
        zs_map_object(pool_, a, ZS_MM_RW);
        zs_free(pool_, a);
      },
      "free-mapped: zs_free\\(.*handle is mapped on 1 CPU\\(s\\).*refused");
  zs_free(pool_, a);
}

// ---- 11: overflow past the requested size ---------------------------------------------------------

// A requested size with slack in its slot: an object of the class serving `size`, in place.
TEST_F(ZsHardeningTest, WritePastTheRequestedSizeIsCaughtAtUnmap) {
  for (size_t size : {size_t{100}, SpanningSize(pool_)}) {  // in place / in a spanning class
    zs_class_info info = Lookup(pool_, size);
    ASSERT_GT(info.size - kHandleSize, size) << "no slack";
    std::vector<unsigned long> hs;
    for (int i = 0; i < info.objs_per_zspage; i++) hs.push_back(Alloc(size, static_cast<unsigned>(i)));
    for (int i = 0; i < info.objs_per_zspage; i++) {
      unsigned long h = hs[static_cast<size_t>(i)];
      auto *p = static_cast<unsigned char *>(zs_map_object(pool_, h, ZS_MM_RW));
      ASSERT_NE(p, nullptr);
      RawStore(p, size, 0x42);  // the first byte past the object
      zs_unmap_object(pool_, h);
      EXPECT_NE(LastWarning().find("redzone byte 0 overwritten"), std::string::npos) << LastWarning();
      EXPECT_ONE_MISUSE(ZPOOL_MISUSE_OVERFLOW);
      EXPECT_FALSE(kc_in_atomic());
      ASSERT_EQ(Validate(pool_), "") << "the redzone is not intact again";
    }
    for (int i = 0; i < info.objs_per_zspage; i++)
      EXPECT_TRUE(Intact(pool_, hs[static_cast<size_t>(i)], size, static_cast<unsigned>(i)));
    // Writing up to the requested size is fine.
    auto *p = static_cast<unsigned char *>(zs_map_object(pool_, hs[0], ZS_MM_RW));
    p[size - 1] = 1;
    zs_unmap_object(pool_, hs[0]);
    EXPECT_NO_MISUSE();
    for (unsigned long h : hs) zs_free(pool_, h);
  }
}

// The report names the first redzone byte overwritten wherever it is, for redzones of every
// length class the check handles differently: 16-byte blocks (the later ones overlapping the
// end) from 16 bytes, two overlapping words from 8, two halves from 4, bytes below. Every
// configuration has a size for each length (merged classes leave up to 64 bytes of slack).
TEST_F(ZsHardeningTest, TheFirstRedzoneByteOverwrittenIsNamed) {
  auto redzone_of = [&](size_t size) {
    const zs_class_info info = Lookup(pool_, size);
    return info.huge ? 0 : std::min<size_t>(info.size - kHandleSize - size, 64);
  };
  for (size_t want : {size_t{1}, size_t{3}, size_t{4}, size_t{7}, size_t{8}, size_t{14}, size_t{15},
                      size_t{16}, size_t{17}, size_t{33}, size_t{63}, size_t{64}}) {
    size_t size = 1;
    while (size < PAGE_SIZE && redzone_of(size) != want) size++;
    ASSERT_LT(size, PAGE_SIZE) << "no size leaves a " << want << "-byte redzone";
    const size_t rz = want;
    unsigned long h = Alloc(size, 7);
    for (size_t k = 0; k < rz; k++) {
      auto *p = static_cast<unsigned char *>(zs_map_object(pool_, h, ZS_MM_RW));
      ASSERT_NE(p, nullptr);
      RawStore(p, size + k, 0x42);
      if (k + 1 < rz) RawStore(p, size + rz - 1, 0x43);  // a later byte too: the first is named
      zs_unmap_object(pool_, h);
      const std::string expect = "redzone byte " + std::to_string(k) + " overwritten";
      EXPECT_NE(LastWarning().find(expect), std::string::npos)
          << "size " << size << ", byte " << k << ": " << LastWarning();
      EXPECT_ONE_MISUSE(ZPOOL_MISUSE_OVERFLOW);
      ASSERT_EQ(Validate(pool_), "") << "the redzone is not intact again";
    }
    EXPECT_TRUE(Intact(pool_, h, size, 7));
    zs_free(pool_, h);
  }
}

// zs_malloc() writes a new object's redzone in place when it lies in the slot's first page, and
// through the next page of the chain when it reaches into it, partly or wholly. For a few sizes
// of each placement, every object of a fresh zspage, allocated and never written: the validator
// (which checks the redzones of unmapped objects) passes, and an RO map and unmap of each report
// nothing. A redzone that straddles two pages needs more slack than a 4 KiB page's classes leave
// (their sizes are 16 apart); the 64 KiB-page variant (_ps16) has such sizes.
TEST_F(ZsHardeningTest, ANewObjectsRedzoneIsSetWhereverItFalls) {
  enum Placement { kInFirstPage, kStraddling, kInNextPage, kPlacements };
  std::vector<size_t> sizes[kPlacements];
  for (size_t size = 1; size < PAGE_SIZE; size++) {
    const zs_class_info info = Lookup(pool_, size);
    if (info.huge || info.size - kHandleSize <= size) continue;
    const size_t rz = std::min<size_t>(info.size - kHandleSize - size, 64);
    for (int i = 0; i < info.objs_per_zspage; i++) {
      const size_t start = (static_cast<size_t>(i) * info.size) % PAGE_SIZE + kHandleSize + size;
      const Placement where = start + rz <= PAGE_SIZE ? kInFirstPage
                              : start < PAGE_SIZE     ? kStraddling
                                                      : kInNextPage;
      if (sizes[where].size() < 4 && (sizes[where].empty() || sizes[where].back() != size))
        sizes[where].push_back(size);
    }
  }
  EXPECT_FALSE(sizes[kInFirstPage].empty());
  EXPECT_FALSE(sizes[kInNextPage].empty());
  if (PAGE_SIZE >= 16384) EXPECT_FALSE(sizes[kStraddling].empty());

  // Each size's objects are freed before the next size's: the emptied zspage is freed, so the
  // next size fills a fresh zspage from slot 0.
  zs_pool *pool = FreshPool();
  for (const std::vector<size_t> &placement : sizes) {
    for (size_t size : placement) {
      const zs_class_info info = Lookup(pool, size);
      std::vector<unsigned long> hs;
      for (int i = 0; i < info.objs_per_zspage; i++) {
        unsigned long h = zs_malloc(pool, size, kGfp);
        ASSERT_FALSE(IS_ERR_VALUE(h));
        hs.push_back(h);
      }
      ASSERT_EQ(Validate(pool), "") << "size " << size;
      for (unsigned long h : hs) {
        ASSERT_NE(zs_map_object(pool, h, ZS_MM_RO), nullptr);
        zs_unmap_object(pool, h);
      }
      EXPECT_NO_MISUSE();
      for (unsigned long h : hs) zs_free(pool, h);
    }
  }
}

TEST_F(ZsHardeningTest, OverflowAbortsUnderAbort) {
  unsigned long a = Alloc(100, 1);
  EXPECT_ABORTS(
      {
        auto *p = zs_map_object(pool_, a, ZS_MM_RW);
        RawStore(p, 100, 0);
        zs_unmap_object(pool_, a);
      },
      "overflow: zs_unmap_object\\(.*write past the requested 100 bytes");
  zs_free(pool_, a);
}

// ---- 12: write through a read-only mapping --------------------------------------------------------

TEST_F(ZsHardeningTest, WriteThroughAnRoMappingIsCaughtAtUnmap) {
  zs_pool *pool = FreshPool();
  for (size_t size : {size_t{100}, SpanningSize(pool)}) {
    zs_class_info info = Lookup(pool, size);
    std::vector<unsigned long> hs;
    for (int i = 0; i < info.objs_per_zspage; i++) {
      unsigned long h = zs_malloc(pool, size, kGfp);
      Fill(pool, h, size, static_cast<unsigned>(i));
      hs.push_back(h);
    }
    int spanning_checked = 0;
    for (int i = 0; i < info.objs_per_zspage; i++) {
      unsigned long h = hs[static_cast<size_t>(i)];
      auto *p = static_cast<unsigned char *>(zs_map_object(pool, h, ZS_MM_RO));
      ASSERT_NE(p, nullptr);
      p[size / 2] ^= 0xff;
      zs_unmap_object(pool, h);
      EXPECT_ONE_MISUSE(ZPOOL_MISUSE_WRITE_RO);
      // A spanning object was a copy that RO does not copy back: unchanged. An object mapped in
      // place was written for real: put it back.
      unsigned long start = static_cast<unsigned long>(i) * info.size;
      if ((start % PAGE_SIZE) + info.size > PAGE_SIZE) {
        EXPECT_TRUE(Intact(pool, h, size, static_cast<unsigned>(i)));
        spanning_checked++;
      } else {
        Fill(pool, h, size, static_cast<unsigned>(i));
      }
    }
    if (PAGE_SIZE % info.size != 0 && info.pages_per_zspage > 1) EXPECT_GT(spanning_checked, 0);
    // Cheap hardening: no checksum, no WARN.
    kc_set_hardening(KC_HARDENING_CHEAP);
    auto *p = static_cast<unsigned char *>(zs_map_object(pool, hs[0], ZS_MM_RO));
    p[0] ^= 0xff;
    zs_unmap_object(pool, hs[0]);
    EXPECT_NO_MISUSE();
    kc_set_hardening(KC_HARDENING_FULL);
    Fill(pool, hs[0], size, 0);
    // An overflow through an RO mapping is one misuse: the overflow.
    p = static_cast<unsigned char *>(zs_map_object(pool, hs[0], ZS_MM_RO));
    RawStore(p, size, 0);
    p[0] ^= 1;
    zs_unmap_object(pool, hs[0]);
    EXPECT_ONE_MISUSE(ZPOOL_MISUSE_OVERFLOW);
    Fill(pool, hs[0], size, 0);
    for (int i = 0; i < info.objs_per_zspage; i++)
      EXPECT_TRUE(Intact(pool, hs[static_cast<size_t>(i)], size, static_cast<unsigned>(i)));
    for (unsigned long h : hs) zs_free(pool, h);
  }
  EXPECT_NO_MISUSE();
}

TEST_F(ZsHardeningTest, WriteRoAbortsUnderAbort) {
  unsigned long a = Alloc(100, 1);
  EXPECT_ABORTS(
      {
        auto *p = static_cast<unsigned char *>(zs_map_object(pool_, a, ZS_MM_RO));
        p[3] = 0;
        zs_unmap_object(pool_, a);
      },
      "write-ro: zs_unmap_object\\(.*changed while mapped ZS_MM_RO");
  zs_free(pool_, a);
}

// ---- Sanitizer-aware memory --------------------------------------------------------------------------

// Neighbouring objects of one page mapped and written concurrently on two CPUs: the poisoning of
// one never hides the other (in every config; under ASan a clash is a report, under TSan a race).
TEST_F(ZsHardeningTest, NeighboursMappedConcurrentlyOnTwoCpusDoNotClash) {
  if (kc_nr_cpus() < 2) GTEST_SKIP() << "needs two virtual CPUs";
  std::vector<unsigned long> hs;
  for (int i = 0; i < 16; i++) hs.push_back(Alloc(100, static_cast<unsigned>(i)));
  std::vector<std::thread> ts;
  for (int t = 0; t < 2; t++) {
    ts.emplace_back([&, t] {
      kc_set_cpu(t);
      for (int round = 0; round < 300; round++) {
        for (size_t i = static_cast<size_t>(t); i < hs.size(); i += 2) {
          auto *p = static_cast<unsigned char *>(zs_map_object(pool_, hs[i], ZS_MM_RW));
          for (size_t b = 0; b < 100; b++) p[b] = PatternByte(static_cast<unsigned>(i + round), b);
          zs_unmap_object(pool_, hs[i]);
        }
      }
    });
  }
  for (auto &t : ts) t.join();
  for (size_t i = 0; i < hs.size(); i++) {
    EXPECT_TRUE(Intact(pool_, hs[i], 100, static_cast<unsigned>(i + 299)));
    zs_free(pool_, hs[i]);
  }
  EXPECT_NO_MISUSE();
}

#if defined(KC_ASAN)

TEST_F(ZsHardeningTest, AsanPoisonsEverythingButTheMappedRequestedBytes) {
  zs_pool *pool = FreshPool();
  unsigned long a = AllocIn(pool, 100, 1), b = AllocIn(pool, 100, 2);
  auto *p = static_cast<unsigned char *>(zs_map_object(pool, a, ZS_MM_RW));
  EXPECT_FALSE(__asan_region_is_poisoned(p, 100));
  EXPECT_TRUE(__asan_address_is_poisoned(p + 100));        // slack
  EXPECT_TRUE(__asan_address_is_poisoned(p - kHandleSize));  // the handle header
  zs_unmap_object(pool, a);
  EXPECT_TRUE(__asan_address_is_poisoned(p));
  // The per-CPU buffer of a spanning object: only while mapped, only the requested size.
  const size_t size = SpanningSize(pool);
  ASSERT_NE(size, 0u);
  zs_class_info big = Lookup(pool, size);
  const int k = SpanningIndex(big);
  ASSERT_GE(k, 0);
  std::vector<unsigned long> hs;
  for (int i = 0; i <= k; i++) hs.push_back(AllocIn(pool, size, 3));
  auto *q = static_cast<unsigned char *>(zs_map_object(pool, hs.back(), ZS_MM_RO));
  EXPECT_FALSE(__asan_region_is_poisoned(q, size));
  EXPECT_TRUE(__asan_address_is_poisoned(q + size));
  zs_unmap_object(pool, hs.back());
  EXPECT_TRUE(__asan_address_is_poisoned(q));
  for (unsigned long h : hs) zs_free(pool, h);
  zs_free(pool, a);
  zs_free(pool, b);
}

TEST_F(ZsHardeningTest, AsanReportsAnOverflowIntoTheNeighbourAtTheWrite) {
  zs_pool *pool = FreshPool();
  zs_class_info info = Lookup(pool, 100);
  // The first two objects of a zspage: a is in place, b right after it.
  unsigned long a = AllocIn(pool, 100, 1), b = AllocIn(pool, 100, 2);
  auto *p = static_cast<volatile unsigned char *>(zs_map_object(pool, a, ZS_MM_RW));
  // Slack of a, then the next slot (b's header and payload).
  EXPECT_DEATH(p[100] = 1, "AddressSanitizer");
  EXPECT_DEATH(p[info.size - kHandleSize] = 1, "AddressSanitizer");
  EXPECT_DEATH(p[info.size] = 1, "AddressSanitizer");
  zs_unmap_object(pool, a);
  EXPECT_TRUE(Intact(pool, b, 100, 2));
  zs_free(pool, a);
  zs_free(pool, b);
}

TEST_F(ZsHardeningTest, AsanReportsUseAfterUnmapAndUseAfterFree) {
  zs_pool *pool = FreshPool();
  unsigned long a = AllocIn(pool, 100, 1);
  auto *p = static_cast<volatile unsigned char *>(zs_map_object(pool, a, ZS_MM_RO));
  zs_unmap_object(pool, a);
  EXPECT_DEATH(p[0] = 1, "AddressSanitizer.*use-after-poison");
  zs_free(pool, a);
  EXPECT_DEATH((void)p[5], "AddressSanitizer");
  // A spanning object's pointer is into the per-CPU buffer: poisoned after unmap too.
  const size_t size = SpanningSize(pool);
  ASSERT_NE(size, 0u);
  zs_class_info big = Lookup(pool, size);
  const int k = SpanningIndex(big);
  ASSERT_GE(k, 0);
  std::vector<unsigned long> hs;
  for (int i = 0; i <= k; i++) hs.push_back(AllocIn(pool, size, 3));
  auto *q = static_cast<volatile unsigned char *>(zs_map_object(pool, hs.back(), ZS_MM_RW));
  EXPECT_DEATH(q[size] = 1, "AddressSanitizer");  // past the requested size in the buffer
  zs_unmap_object(pool, hs.back());
  EXPECT_DEATH(q[10] = 1, "AddressSanitizer");
  for (unsigned long h : hs) zs_free(pool, h);
}

#endif  // KC_ASAN

#if defined(KC_MSAN)

// A read whose value decides a branch (MSan's report point) that the compiler can neither drop
// (the asm makes the call observable, even with its result unused) nor turn into a select.
__attribute__((noinline)) int Use(const unsigned char *p, size_t i) {
  if (p[i] == 0x5a) {
    asm volatile("" ::: "memory");
    return 1;
  }
  asm volatile("" ::: "memory");
  return 0;
}

TEST_F(ZsHardeningTest, MsanReportsReadingAnUnwrittenObjectThroughRo) {
  unsigned long a = zs_malloc(pool_, 100, kGfp);
  auto *p = static_cast<unsigned char *>(zs_map_object(pool_, a, ZS_MM_RO));
  EXPECT_DEATH(Use(p, 10), "use-of-uninitialized-value");
  zs_unmap_object(pool_, a);
  // Written bytes are fine, unwritten ones are still reported.
  p = static_cast<unsigned char *>(zs_map_object(pool_, a, ZS_MM_WO));
  for (int i = 0; i < 50; i++) p[i] = 1;
  zs_unmap_object(pool_, a);
  p = static_cast<unsigned char *>(zs_map_object(pool_, a, ZS_MM_RO));
  EXPECT_EQ(Use(p, 10), 0);
  EXPECT_DEATH(Use(p, 60), "use-of-uninitialized-value");
  zs_unmap_object(pool_, a);
  zs_free(pool_, a);
  // A reused slot is uninitialised again.
  unsigned long b = zs_malloc(pool_, 100, kGfp);
  p = static_cast<unsigned char *>(zs_map_object(pool_, b, ZS_MM_RO));
  EXPECT_DEATH(Use(p, 10), "use-of-uninitialized-value");
  zs_unmap_object(pool_, b);
  zs_free(pool_, b);
}

TEST_F(ZsHardeningTest, MsanReportsReadingAnUnwrittenObjectThroughTheSpanningCopy) {
  zs_pool *pool = FreshPool();
  const size_t size = SpanningSize(pool);
  ASSERT_NE(size, 0u);
  zs_class_info big = Lookup(pool, size);
  const int k = SpanningIndex(big);
  ASSERT_GE(k, 0);
  std::vector<unsigned long> hs;
  for (int i = 0; i <= k; i++) hs.push_back(zs_malloc(pool, size, kGfp));
  unsigned long h = hs.back();
  // An RO copy of a never-written object.
  auto *p = static_cast<unsigned char *>(zs_map_object(pool, h, ZS_MM_RO));
  EXPECT_DEATH(Use(p, 0), "use-of-uninitialized-value");
  EXPECT_DEATH(Use(p, size - 1), "use-of-uninitialized-value");
  zs_unmap_object(pool, h);
  // WO does not copy in: the buffer starts uninitialised, even though the RO map above left the
  // object's bytes in it; what is written becomes initialised, through the copy back, on both
  // sides of the page boundary.
  p = static_cast<unsigned char *>(zs_map_object(pool, h, ZS_MM_WO));
  for (size_t i = 0; i < size / 2; i++) p[i] = 2;
  zs_unmap_object(pool, h);
  p = static_cast<unsigned char *>(zs_map_object(pool, h, ZS_MM_RO));
  EXPECT_EQ(Use(p, 0), 0);
  EXPECT_EQ(Use(p, size / 2 - 1), 0);
  EXPECT_DEATH(Use(p, size / 2), "use-of-uninitialized-value");
  EXPECT_DEATH(Use(p, size - 1), "use-of-uninitialized-value");
  zs_unmap_object(pool, h);
  for (unsigned long x : hs) zs_free(pool, x);
}

TEST_F(ZsHardeningTest, MsanStateMovesWithCompaction) {
  zs_pool *pool = FreshPool();
  zs_class_info info = Lookup(pool, 500);
  std::vector<unsigned long> hs;
  for (int i = 0; i < 4 * info.objs_per_zspage; i++) hs.push_back(zs_malloc(pool, 500, kGfp));
  // Keep the last object of each zspage: half written.
  std::vector<unsigned long> kept;
  for (size_t i = 0; i < hs.size(); i++) {
    if (i % static_cast<size_t>(info.objs_per_zspage) == static_cast<size_t>(info.objs_per_zspage) - 1) {
      auto *p = static_cast<unsigned char *>(zs_map_object(pool, hs[i], ZS_MM_WO));
      for (int b = 0; b < 250; b++) p[b] = 3;
      zs_unmap_object(pool, hs[i]);
      kept.push_back(hs[i]);
    } else {
      zs_free(pool, hs[i]);
    }
  }
  EXPECT_GT(zs_compact(pool), 0u);  // moved: the kept objects now share a zspage
  for (unsigned long h : kept) {
    auto *p = static_cast<unsigned char *>(zs_map_object(pool, h, ZS_MM_RO));
    EXPECT_EQ(Use(p, 249), 0);
    EXPECT_DEATH(Use(p, 250), "use-of-uninitialized-value");
    zs_unmap_object(pool, h);
    zs_free(pool, h);
  }
}

#endif  // KC_MSAN

}  // namespace

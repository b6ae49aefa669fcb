// SPDX-License-Identifier: GPL-2.0-only
// zbud with real threads on different virtual CPUs: allocating, mapping (nested), writing,
// verifying, freeing and reclaiming at once. Meant for TSan (data races, lock order) and ASan
// (the poisoning of neighbouring objects in one page must not clash), and run in every config.
// The legal runs are under the "abort" warning policy: any WARN is a false positive and crashes.
// The concurrent hardening entry (destroy while a call is in flight on another thread) is here too.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <functional>
#include <mutex>
#include <random>
#include <thread>
#include <unordered_map>
#include <vector>

#include "zpool/kernel/kernel.h"
#include "zpool/misuse.h"
#include "zpool/zbud.h"

namespace {

constexpr unsigned long kChunk = PAGE_SIZE >> 6;
constexpr size_t kMax = PAGE_SIZE - 2 * kChunk;

std::function<int(zbud_pool *, unsigned long)> g_evict;  // set before any thread starts
int EvictThunk(zbud_pool *pool, unsigned long handle) { return g_evict(pool, handle); }
const zbud_ops kOps = {EvictThunk};

u8 PatternByte(unsigned seed, size_t i) { return static_cast<u8>(seed * 29u + i * 3u + 7u); }

void Fill(zbud_pool *pool, unsigned long handle, size_t size, unsigned seed) {
  auto *p = static_cast<u8 *>(zbud_map(pool, handle));
  for (size_t i = 0; i < size; i++) p[i] = PatternByte(seed, i);
  zbud_unmap(pool, handle);
}

bool Holds(zbud_pool *pool, unsigned long handle, size_t size, unsigned seed) {
  auto *p = static_cast<const u8 *>(zbud_map(pool, handle));
  if (p == nullptr) return false;
  bool same = true;
  for (size_t i = 0; i < size && same; i++) same = p[i] == PatternByte(seed, i);
  zbud_unmap(pool, handle);
  return same;
}

bool Valid(zbud_pool *pool, std::string *why_out = nullptr) {
  char why[256] = "";
  int ret = zbud_validate_TestOnly(pool, why, sizeof(why));
  if (why_out != nullptr) *why_out = why;
  return ret == 0;
}

class ZbudThreadsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    kc_fail_nth_alloc(0);
    kc_warn_reset();
    zpool_misuse_reset();
    start_pages_ = kc_pages_in_use();
    start_meta_ = kc_meta_in_use();
  }
  void TearDown() override {
    EXPECT_EQ(kc_pages_in_use(), start_pages_) << "pages leaked";
    EXPECT_EQ(kc_meta_in_use(), start_meta_) << "metadata leaked";
    kc_set_warn_policy(KC_WARN_LOG);
  }
  unsigned long start_pages_ = 0;
  unsigned long start_meta_ = 0;
};

// ---- Everything at once -------------------------------------------------------------------------

struct Slot {
  std::mutex mu;
  unsigned long handle = 0;
  size_t size = 0;
  unsigned seed = 0;
  bool live = false;
};

TEST_F(ZbudThreadsTest, AllocMapWriteFreeAndReclaimAtOnce) {
  kc_set_warn_policy(KC_WARN_ABORT);
  zbud_pool *pool = zbud_create_pool(GFP_KERNEL, &kOps);
  ASSERT_NE(pool, nullptr);

  constexpr int kSlots = 96;
  constexpr int kWorkers = 4;
  constexpr int kReclaimers = 2;
  const int ops = PAGE_SHIFT == 12 ? 6000 : 1200;
  std::vector<Slot> slots(kSlots);
  std::mutex side_mu;  // handle -> slot, for the evict callback (zswap's tree)
  std::unordered_map<unsigned long, int> slot_of;
  std::atomic<int> bad_contents{0}, bad_validation{0}, evicted{0};
  std::atomic<bool> workers_done{false};
  std::string first_invalid;
  std::mutex first_invalid_mu;

  g_evict = [&](zbud_pool *p, unsigned long handle) {
    int s;
    {
      std::lock_guard<std::mutex> guard(side_mu);
      auto it = slot_of.find(handle);
      if (it == slot_of.end()) return -EBUSY;  // being allocated, or freed meanwhile
      s = it->second;
    }
    Slot &slot = slots[static_cast<size_t>(s)];
    std::lock_guard<std::mutex> guard(slot.mu);
    if (!slot.live || slot.handle != handle) return -EBUSY;  // freed meanwhile
    if (!Holds(p, handle, slot.size, slot.seed)) bad_contents++;
    // Unregister before the free: once freed, the address may be handed out again at once.
    {
      std::lock_guard<std::mutex> side(side_mu);
      slot_of.erase(handle);
    }
    zbud_free(p, handle);
    slot.live = false;
    evicted++;
    return 0;
  };

  auto worker = [&](int id) {
    kc_set_cpu(id % kc_nr_cpus());
    std::mt19937 rng(1000u + static_cast<unsigned>(id));
    for (int op = 0; op < ops; op++) {
      Slot &slot = slots[rng() % kSlots];
      std::lock_guard<std::mutex> guard(slot.mu);
      if (slot.live) {
        // Nested map: the outer mapping stays while the inner one verifies.
        void *outer = zbud_map(pool, slot.handle);
        if (outer == nullptr || !Holds(pool, slot.handle, slot.size, slot.seed)) bad_contents++;
        zbud_unmap(pool, slot.handle);
        if (rng() % 10 < 7) {
          {
            std::lock_guard<std::mutex> side(side_mu);  // before the free (see the callback)
            slot_of.erase(slot.handle);
          }
          zbud_free(pool, slot.handle);
          slot.live = false;
        } else {
          slot.seed += 77;
          Fill(pool, slot.handle, slot.size, slot.seed);
        }
      } else {
        const size_t size = 1 + rng() % (rng() % 3 ? kMax / 2 : kMax);
        unsigned long handle = 0;
        if (zbud_alloc(pool, size, GFP_KERNEL, &handle) != 0) {
          bad_contents++;
          continue;
        }
        slot.handle = handle;
        slot.size = size;
        slot.seed = static_cast<unsigned>(id * 100000 + op);
        Fill(pool, handle, size, slot.seed);
        std::lock_guard<std::mutex> side(side_mu);
        slot_of[handle] = static_cast<int>(&slot - slots.data());
        slot.live = true;
      }
    }
  };
  auto reclaimer = [&](int id) {
    kc_set_cpu(id % kc_nr_cpus());
    int round = 0;
    while (!workers_done.load(std::memory_order_acquire)) {
      int ret = zbud_reclaim_page(pool, 2);
      if (ret != 0 && ret != -EAGAIN && ret != -EINVAL) bad_validation++;
      if (++round % 16 == 0) {
        std::string why;
        if (!Valid(pool, &why)) {
          bad_validation++;
          std::lock_guard<std::mutex> guard(first_invalid_mu);
          if (first_invalid.empty()) first_invalid = why;
        }
      }
      std::this_thread::yield();
    }
  };

  std::vector<std::thread> threads;
  for (int i = 0; i < kReclaimers; i++) threads.emplace_back(reclaimer, kWorkers + i);
  std::vector<std::thread> workers;
  for (int i = 0; i < kWorkers; i++) workers.emplace_back(worker, i);
  for (auto &t : workers) t.join();
  workers_done.store(true, std::memory_order_release);
  for (auto &t : threads) t.join();

  EXPECT_EQ(bad_contents.load(), 0);
  EXPECT_EQ(bad_validation.load(), 0) << first_invalid;
  std::string why;
  EXPECT_TRUE(Valid(pool, &why)) << why;
  size_t live = 0;
  for (Slot &slot : slots) {
    if (!slot.live) continue;
    live++;
    EXPECT_TRUE(Holds(pool, slot.handle, slot.size, slot.seed));
    zbud_free(pool, slot.handle);
  }
  EXPECT_EQ(live, slot_of.size());
  EXPECT_EQ(zbud_get_pool_size(pool), 0u);
  zbud_destroy_pool(pool);
  EXPECT_EQ(kc_warn_count(), 0u);
  EXPECT_EQ(zpool_misuse_total(), 0u);
  g_evict = nullptr;
  RecordProperty("evicted", evicted.load());
}

// ---- Two buddies of one page, mapped and written by two threads at once ----------------------

TEST_F(ZbudThreadsTest, NeighboursInOnePageMappedConcurrently) {
  kc_set_warn_policy(KC_WARN_ABORT);
  g_evict = [](zbud_pool *, unsigned long) { return -EBUSY; };
  zbud_pool *pool = zbud_create_pool(GFP_KERNEL, &kOps);
  ASSERT_NE(pool, nullptr);
  const size_t size = 20 * kChunk - 5;
  unsigned long first = 0, last = 0;
  ASSERT_EQ(zbud_alloc(pool, size, GFP_KERNEL, &first), 0);
  ASSERT_EQ(zbud_alloc(pool, size, GFP_KERNEL, &last), 0);
  ASSERT_EQ(first & PAGE_MASK, last & PAGE_MASK);
  std::atomic<int> bad{0};
  std::atomic<bool> done{false};
  const int rounds = PAGE_SHIFT == 12 ? 1500 : 300;
  auto writer = [&](unsigned long handle, int cpu) {
    kc_set_cpu(cpu % kc_nr_cpus());
    for (int r = 0; r < rounds; r++) {
      Fill(pool, handle, size, static_cast<unsigned>(r));
      if (!Holds(pool, handle, size, static_cast<unsigned>(r))) bad++;
    }
  };
  std::thread checker([&] {
    kc_set_cpu(2 % kc_nr_cpus());
    while (!done.load(std::memory_order_acquire)) {
      if (!Valid(pool)) bad++;
      // A third object comes and goes beside the page (other pages, same lists and LRU).
      unsigned long h = 0;
      if (zbud_alloc(pool, size, GFP_KERNEL, &h) != 0) bad++;
      zbud_free(pool, h);
      // And reclaim walks over the page (the callback refuses).
      int ret = zbud_reclaim_page(pool, 1);
      if (ret != -EAGAIN) bad++;
    }
  });
  std::thread a(writer, first, 0), b(writer, last, 1);
  a.join();
  b.join();
  done.store(true, std::memory_order_release);
  checker.join();
  EXPECT_EQ(bad.load(), 0);
  zbud_free(pool, first);
  zbud_free(pool, last);
  zbud_destroy_pool(pool);
  EXPECT_EQ(kc_warn_count(), 0u);
  g_evict = nullptr;
}

// ---- One object mapped by every CPU at once (the lock-free map count) -------------------------

TEST_F(ZbudThreadsTest, OneObjectMappedByManyThreadsAtOnce) {
  kc_set_warn_policy(KC_WARN_ABORT);
  g_evict = [](zbud_pool *, unsigned long) { return -EBUSY; };
  zbud_pool *pool = zbud_create_pool(GFP_KERNEL, &kOps);
  ASSERT_NE(pool, nullptr);
  const size_t size = 3 * kChunk + 7;
  unsigned long shared = 0, other = 0;
  ASSERT_EQ(zbud_alloc(pool, size, GFP_KERNEL, &shared), 0);
  ASSERT_EQ(zbud_alloc(pool, size, GFP_KERNEL, &other), 0);  // its buddy, freed and reused below
  Fill(pool, shared, size, 5);
  std::atomic<int> bad{0};
  const int rounds = PAGE_SHIFT == 12 ? 3000 : 1000;
  std::vector<std::thread> readers;
  for (int t = 0; t < 4; t++) {
    readers.emplace_back([&, t] {
      kc_set_cpu(t % kc_nr_cpus());
      for (int r = 0; r < rounds; r++) {
        auto *outer = static_cast<const u8 *>(zbud_map(pool, shared));
        if (!Holds(pool, shared, size, 5) || outer[size - 1] != PatternByte(5, size - 1)) bad++;
        zbud_unmap(pool, shared);
      }
    });
  }
  // Meanwhile the other buddy of the page is freed and reallocated (under the pool lock).
  std::thread churn([&] {
    kc_set_cpu(3 % kc_nr_cpus());
    for (int r = 0; r < rounds / 4; r++) {
      zbud_free(pool, other);
      if (zbud_alloc(pool, size, GFP_KERNEL, &other) != 0) bad++;
      if ((other & PAGE_MASK) != (shared & PAGE_MASK)) bad++;
    }
  });
  for (auto &t : readers) t.join();
  churn.join();
  EXPECT_EQ(bad.load(), 0);
  std::string why;
  EXPECT_TRUE(Valid(pool, &why)) << why;
  zbud_free(pool, shared);  // every map was balanced: no free-mapped (abort policy)
  zbud_free(pool, other);
  zbud_destroy_pool(pool);
  EXPECT_EQ(kc_warn_count(), 0u);
  g_evict = nullptr;
}

// ---- 2. destroy-busy with real threads ----------------------------------------------------------

TEST_F(ZbudThreadsTest, DestroyWhileAnotherThreadIsInsideACallIsRefused) {
  if (!ZPOOL_CHECKS) GTEST_SKIP() << "misuse checks compiled out (ZPOOL_UNCHECKED=1)";
  kc_set_warn_policy(KC_WARN_RECORD);
  zbud_pool *pool = zbud_create_pool(GFP_KERNEL, &kOps);
  ASSERT_NE(pool, nullptr);
  unsigned long h = 0;
  ASSERT_EQ(zbud_alloc(pool, 1000, GFP_KERNEL, &h), 0);
  Fill(pool, h, 1000, 3);
  std::atomic<bool> inside{false}, release{false};
  g_evict = [&](zbud_pool *p, unsigned long handle) {
    inside.store(true, std::memory_order_release);
    while (!release.load(std::memory_order_acquire)) std::this_thread::yield();
    EXPECT_TRUE(Holds(p, handle, 1000, 3));
    zbud_free(p, handle);
    return 0;
  };
  int ret = -1;
  std::thread reclaimer([&] {
    kc_set_cpu(1 % kc_nr_cpus());
    ret = zbud_reclaim_page(pool, 1);
  });
  while (!inside.load(std::memory_order_acquire)) std::this_thread::yield();
  zbud_destroy_pool(pool);  // the reclaim call is in flight on the other thread
  EXPECT_EQ(kc_warn_count(), 1u);
  EXPECT_EQ(zpool_misuse_count(ZPOOL_MISUSE_DESTROY_BUSY), 1u);
  char text[512];
  kc_last_warning(text, sizeof(text));
  EXPECT_NE(strstr(text, "destroy-busy: zbud_destroy_pool("), nullptr) << text;
  EXPECT_NE(strstr(text, "1 call(s) in flight"), nullptr) << text;
  release.store(true, std::memory_order_release);
  reclaimer.join();
  EXPECT_EQ(ret, 0) << "the reclaim finished normally";
  std::string why;
  EXPECT_TRUE(Valid(pool, &why)) << why;
  EXPECT_EQ(zbud_get_pool_size(pool), 0u);
  // Destroy while another thread holds a mapping: refused too.
  ASSERT_EQ(zbud_alloc(pool, 1000, GFP_KERNEL, &h), 0);
  std::atomic<bool> mapped{false}, unmap{false};
  std::thread mapper([&] {
    kc_set_cpu(2 % kc_nr_cpus());
    void *p = zbud_map(pool, h);
    memset(p, 1, 1000);
    mapped.store(true, std::memory_order_release);
    while (!unmap.load(std::memory_order_acquire)) std::this_thread::yield();
    zbud_unmap(pool, h);
  });
  while (!mapped.load(std::memory_order_acquire)) std::this_thread::yield();
  zbud_destroy_pool(pool);
  EXPECT_EQ(zpool_misuse_count(ZPOOL_MISUSE_DESTROY_BUSY), 2u);
  unmap.store(true, std::memory_order_release);
  mapper.join();
  zbud_free(pool, h);
  zbud_destroy_pool(pool);  // quiet now
  EXPECT_EQ(kc_warn_count(), 2u);
  EXPECT_EQ(zpool_misuse_total(), 2u);
  g_evict = nullptr;
}

// Destroy attempts racing with lock-free maps. Destroy seals every allocated buddy (so that no
// lock-free map can start) unless one is mapped, and then unseals them all. Here one object stays
// mapped, so every attempt must be refused, and the pool must come out of each exactly as it
// was: every object maps (lock-free again), holds its contents and frees normally. Maps that
// fall into an attempt's window see a pool being destroyed: use-after-destroy, NULL. (A map
// racing with a destroy that succeeds is not tested: it touches the pool as it is freed.)
TEST_F(ZbudThreadsTest, RefusedDestroysRacingWithMapsLeaveThePoolAsItWas) {
  if (!ZPOOL_CHECKS) GTEST_SKIP() << "misuse checks compiled out (ZPOOL_UNCHECKED=1)";
  kc_set_warn_policy(KC_WARN_RECORD);
  zbud_pool *pool = zbud_create_pool(GFP_KERNEL, &kOps);
  ASSERT_NE(pool, nullptr);
  constexpr int kObjects = 7;
  auto size_of = [](int i) { return static_cast<size_t>(300 + 150 * i); };
  unsigned long handles[kObjects];
  for (int i = 0; i < kObjects; i++) {
    ASSERT_EQ(zbud_alloc(pool, size_of(i), GFP_KERNEL, &handles[i]), 0);
    Fill(pool, handles[i], size_of(i), i + 1);
  }
  std::atomic<bool> started{false}, stop{false};
  std::atomic<unsigned long> maps{0}, refused_maps{0}, bad_reads{0};
  std::thread mapper([&] {
    kc_set_cpu(1 % kc_nr_cpus());
    void *pinned = zbud_map(pool, handles[0]);  // holds off every destroy
    if (pinned == nullptr) {
      bad_reads.fetch_add(1);
      started.store(true);
      return;
    }
    started.store(true, std::memory_order_release);
    for (unsigned long n = 0; !stop.load(std::memory_order_acquire); n++) {
      const int i = 1 + static_cast<int>(n % (kObjects - 1));
      auto *p = static_cast<const u8 *>(zbud_map(pool, handles[i]));
      if (p == nullptr) {
        refused_maps.fetch_add(1, std::memory_order_relaxed);
        continue;
      }
      const size_t last = size_of(i) - 1;
      if (p[0] != PatternByte(i + 1, 0) || p[last] != PatternByte(i + 1, last))
        bad_reads.fetch_add(1, std::memory_order_relaxed);
      zbud_unmap(pool, handles[i]);
      maps.fetch_add(1, std::memory_order_relaxed);
    }
    zbud_unmap(pool, handles[0]);
  });
  while (!started.load(std::memory_order_acquire)) std::this_thread::yield();
  constexpr unsigned long kAttempts = 300;
  for (unsigned long k = 0; k < kAttempts; k++) {
    zbud_destroy_pool(pool);
    if (k % 50 == 0) {
      std::string why;
      ASSERT_TRUE(Valid(pool, &why)) << why;
    }
  }
  stop.store(true, std::memory_order_release);
  mapper.join();
  EXPECT_EQ(bad_reads.load(), 0u);
  EXPECT_GT(maps.load(), 0u);
  EXPECT_EQ(zpool_misuse_count(ZPOOL_MISUSE_DESTROY_BUSY), kAttempts);
  EXPECT_EQ(zpool_misuse_count(ZPOOL_MISUSE_USE_AFTER_DESTROY), refused_maps.load());
  EXPECT_EQ(zpool_misuse_total(), kAttempts + refused_maps.load());
  // As it was: every object maps, holds its contents, and frees without a report.
  const unsigned long reports = zpool_misuse_total();
  std::string why;
  EXPECT_TRUE(Valid(pool, &why)) << why;
  for (int i = 0; i < kObjects; i++) {
    EXPECT_TRUE(Holds(pool, handles[i], size_of(i), i + 1)) << "object " << i;
    zbud_free(pool, handles[i]);
  }
  zbud_destroy_pool(pool);
  EXPECT_EQ(zpool_misuse_total(), reports);
}

}  // namespace

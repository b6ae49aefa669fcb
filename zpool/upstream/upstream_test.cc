// SPDX-License-Identifier: GPL-2.0-only
// The kernel's own allocator files, built against the shims: they initialise, allocate, map,
// compact, migrate and free as in the kernel; the shims' checks fire where the kernel's would;
// and the project's model agrees with them where it claims to (the class table).
#include "zpool/upstream/bridge.h"

#include <gtest/gtest.h>

#include <climits>
#include <cstring>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "zpool/kernel/kernel.h"
#include "zpool/zsmalloc.h"

namespace {

constexpr unsigned int kGfp = GFP_KERNEL | __GFP_NOWARN;

class UpstreamTest : public testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(upstream_init(), 0);
    kc_warn_reset();
    pages_before_ = upstream_pages_in_use();
  }
  void TearDown() override {
    upstream_run_pending_work();
    EXPECT_EQ(upstream_pages_in_use(), pages_before_) << "pages leaked";
    EXPECT_EQ(kc_warn_count(), 0u) << "an unexpected WARN";
  }
  long pages_before_ = 0;
};

void Fill(unsigned char *p, size_t n, unsigned seed) {
  for (size_t i = 0; i < n; i++) p[i] = static_cast<unsigned char>(seed * 131 + i * 7);
}
bool Holds(const unsigned char *p, size_t n, unsigned seed) {
  for (size_t i = 0; i < n; i++)
    if (p[i] != static_cast<unsigned char>(seed * 131 + i * 7)) return false;
  return true;
}

TEST_F(UpstreamTest, TheDriversRegisterWithUpstreamZpool) {
  for (const char *type : {"zsmalloc", "zbud", "z3fold"}) {
    std::string t = type;
    EXPECT_TRUE(upstream_zpool_has_pool(t.data())) << type;
  }
  std::string unknown = "nosuch";
  EXPECT_FALSE(upstream_zpool_has_pool(unknown.data()));
}

TEST_F(UpstreamTest, ZsmallocKeepsEveryObjectsBytesAtEverySize) {
  upstream_zs_pool *pool = upstream_zs_create_pool("upstream-test");
  ASSERT_NE(pool, nullptr);
  std::vector<std::pair<unsigned long, size_t>> objects;
  for (size_t size = 1; size <= PAGE_SIZE; size += (size < 64 ? 7 : 97)) {
    unsigned long h = upstream_zs_malloc(pool, size, kGfp);
    ASSERT_FALSE(IS_ERR_VALUE(h)) << size;
    auto *p = static_cast<unsigned char *>(upstream_zs_map_object(pool, h, UPSTREAM_ZS_MM_WO));
    Fill(p, size, static_cast<unsigned>(objects.size()));
    upstream_zs_unmap_object(pool, h);
    objects.push_back({h, size});
  }
  EXPECT_GT(upstream_zs_get_total_pages(pool), 0u);
  for (size_t i = 0; i < objects.size(); i++) {
    auto [h, size] = objects[i];
    auto *p = static_cast<unsigned char *>(upstream_zs_map_object(pool, h, UPSTREAM_ZS_MM_RO));
    EXPECT_TRUE(Holds(p, size, static_cast<unsigned>(i))) << "object of " << size << " bytes";
    upstream_zs_unmap_object(pool, h);
  }
  EXPECT_EQ(upstream_zs_malloc(pool, 0, kGfp), reinterpret_cast<unsigned long>(ERR_PTR(-EINVAL)));
  EXPECT_EQ(upstream_zs_malloc(pool, PAGE_SIZE + 1, kGfp),
            reinterpret_cast<unsigned long>(ERR_PTR(-ENOSPC)));
  for (auto [h, size] : objects) upstream_zs_free(pool, h);
  EXPECT_EQ(upstream_zs_get_total_pages(pool), 0u);
  upstream_zs_destroy_pool(pool);
}

// The geometry of the class serving `size` (the model's table, which TheModelsClassTableIs-
// TheKernels proves equal to the kernel's), for expectations that hold at every page size.
struct zs_class_info ClassOf(size_t size) {
  struct zs_pool *model = zs_create_pool("model-geometry");
  struct zs_class_info info = {};
  EXPECT_EQ(zs_lookup_class(model, size, &info), 0);
  zs_destroy_pool(model);
  EXPECT_GE(info.objs_per_zspage, 2) << "a size with room for two objects a zspage";
  return info;
}

// A size with 16 objects a page: below the huge classes at every page shift and chain size.
constexpr size_t kSixteenth = PAGE_SIZE / 16 - 8;

TEST_F(UpstreamTest, CompactionFreesThePagesOfAFragmentedClass) {
  upstream_zs_pool *pool = upstream_zs_create_pool("upstream-compact");
  ASSERT_NE(pool, nullptr);
  const size_t size = kSixteenth;
  const struct zs_class_info c = ClassOf(size);
  const int n = 8 * c.objs_per_zspage;  // eight full zspages
  const unsigned long ppz = static_cast<unsigned long>(c.pages_per_zspage);
  std::vector<unsigned long> handles;
  for (int i = 0; i < n; i++) {
    unsigned long h = upstream_zs_malloc(pool, size, kGfp);
    ASSERT_FALSE(IS_ERR_VALUE(h));
    auto *p = static_cast<unsigned char *>(upstream_zs_map_object(pool, h, UPSTREAM_ZS_MM_WO));
    Fill(p, size, static_cast<unsigned>(i));
    upstream_zs_unmap_object(pool, h);
    handles.push_back(h);
  }
  EXPECT_EQ(upstream_zs_get_total_pages(pool), 8 * ppz);
  for (int i = 1; i < n; i += 2) upstream_zs_free(pool, handles[static_cast<size_t>(i)]);
  EXPECT_EQ(upstream_zs_get_total_pages(pool), 8 * ppz);  // every zspage half full
  unsigned long freed = upstream_zs_compact(pool);
  EXPECT_EQ(freed, 4 * ppz);
  EXPECT_EQ(upstream_zs_get_total_pages(pool), 4 * ppz);
  struct upstream_zs_pool_stats stats = {};
  upstream_zs_pool_stats(pool, &stats);
  EXPECT_EQ(stats.pages_compacted.counter, static_cast<long>(4 * ppz));
  for (int i = 0; i < n; i += 2) {  // the moved objects kept their bytes
    unsigned long h = handles[static_cast<size_t>(i)];
    auto *p = static_cast<unsigned char *>(upstream_zs_map_object(pool, h, UPSTREAM_ZS_MM_RO));
    EXPECT_TRUE(Holds(p, size, static_cast<unsigned>(i))) << i;
    upstream_zs_unmap_object(pool, h);
    upstream_zs_free(pool, h);
  }
  EXPECT_EQ(upstream_zs_get_total_pages(pool), 0u);
  upstream_zs_destroy_pool(pool);
}

TEST_F(UpstreamTest, TheShrinkerCompactsAndDebugfsShowsTheClasses) {
  upstream_zs_pool *pool = upstream_zs_create_pool("upstream-shrink");
  ASSERT_NE(pool, nullptr);
  const struct zs_class_info c = ClassOf(kSixteenth);
  const int count = 4 * c.objs_per_zspage;
  std::vector<unsigned long> handles;
  for (int i = 0; i < count; i++) handles.push_back(upstream_zs_malloc(pool, kSixteenth, kGfp));
  for (int i = 1; i < count; i += 2) upstream_zs_free(pool, handles[static_cast<size_t>(i)]);
  EXPECT_EQ(upstream_shrink("mm-zspool:upstream-shrink", 128),
            2u * static_cast<unsigned long>(c.pages_per_zspage));
  char small[64];  // too small: cut, and the result says so
  size_t n = upstream_debugfs_read("zsmalloc/upstream-shrink/classes", small, sizeof(small));
  ASSERT_GE(n, sizeof(small));
  EXPECT_EQ(strlen(small), sizeof(small) - 1);
  static char buf[1 << 17];
  ASSERT_EQ(upstream_debugfs_read("zsmalloc/upstream-shrink/classes", buf, sizeof(buf)), n);
  std::string text(buf, n);
  EXPECT_NE(text.find("pages_per_zspage"), std::string::npos) << text;
  EXPECT_NE(text.find("Total"), std::string::npos) << text;
  for (int i = 0; i < count; i += 2) upstream_zs_free(pool, handles[static_cast<size_t>(i)]);
  upstream_zs_destroy_pool(pool);
  EXPECT_EQ(upstream_debugfs_read("zsmalloc/upstream-shrink/classes", buf, sizeof(buf)), 0u);
}

// The model's class table is the kernel's: for every size, the class index, its object size,
// pages and objects per zspage, and the huge watermark (this build's page shift and chain size;
// every variant of the test runs its own).
TEST_F(UpstreamTest, TheModelsClassTableIsTheKernels) {
  upstream_zs_pool *up = upstream_zs_create_pool("upstream-classes");
  struct zs_pool *model = zs_create_pool("model-classes");
  ASSERT_NE(up, nullptr);
  ASSERT_NE(model, nullptr);
  EXPECT_EQ(upstream_zs_huge_class_size(up), zs_huge_class_size(model));
  // The kernel's table, from its debugfs file: class index -> (size, pages per zspage).
  static char buf[1 << 17];
  size_t n = upstream_debugfs_read("zsmalloc/upstream-classes/classes", buf, sizeof(buf));
  ASSERT_GT(n, 0u);
  ASSERT_LT(n, sizeof(buf));
  std::map<int, std::pair<unsigned, int>> table;
  std::istringstream lines(std::string(buf, n));
  for (std::string line; std::getline(lines, line);) {
    std::istringstream f(line);
    int index;
    unsigned size;
    if (!(f >> index >> size)) continue;
    std::vector<unsigned long> cols;
    for (unsigned long v; f >> v;) cols.push_back(v);
    ASSERT_GE(cols.size(), 2u) << line;
    table[index] = {size, static_cast<int>(cols[cols.size() - 2])};
  }
  ASSERT_FALSE(table.empty());
  int checked = 0;
  for (size_t size = 1; size <= PAGE_SIZE; size++) {
    struct zs_class_info info = {};
    ASSERT_EQ(zs_lookup_class(model, size, &info), 0) << size;
    unsigned index = upstream_zs_lookup_class_index(up, static_cast<unsigned>(size));
    ASSERT_EQ(static_cast<int>(index), info.index) << "size " << size;
    auto it = table.find(info.index);
    ASSERT_NE(it, table.end()) << "class " << info.index;
    EXPECT_EQ(it->second.first, info.size) << "class " << info.index;
    EXPECT_EQ(it->second.second, info.pages_per_zspage) << "class " << info.index;
    checked++;
  }
  EXPECT_EQ(checked, static_cast<int>(PAGE_SIZE));
  zs_destroy_pool(model);
  upstream_zs_destroy_pool(up);
}

TEST_F(UpstreamTest, ZpoolOverEachBackendStoresAndFrees) {
  for (const char *type : {"zsmalloc", "zbud", "z3fold"}) {
    upstream_zpool *pool = upstream_zpool_create_pool(type, "upstream-zpool", kGfp);
    ASSERT_NE(pool, nullptr) << type;
    EXPECT_STREQ(upstream_zpool_get_type(pool), type);
    std::vector<std::pair<unsigned long, size_t>> objects;
    for (size_t size : {16ul, 500ul, 1000ul, 1900ul, 3000ul}) {
      unsigned long h = 0;
      ASSERT_EQ(upstream_zpool_malloc(pool, size, kGfp, &h), 0) << type << " " << size;
      auto *p = static_cast<unsigned char *>(upstream_zpool_map_handle(pool, h, UPSTREAM_ZPOOL_MM_WO));
      Fill(p, size, static_cast<unsigned>(size));
      upstream_zpool_unmap_handle(pool, h);
      objects.push_back({h, size});
    }
    EXPECT_GT(upstream_zpool_get_total_pages(pool), 0u) << type;
    for (auto [h, size] : objects) {
      auto *p = static_cast<unsigned char *>(upstream_zpool_map_handle(pool, h, UPSTREAM_ZPOOL_MM_RO));
      EXPECT_TRUE(Holds(p, size, static_cast<unsigned>(size))) << type << " " << size;
      upstream_zpool_unmap_handle(pool, h);
      upstream_zpool_free(pool, h);
    }
    upstream_run_pending_work();  // z3fold frees its pages from a work item
    EXPECT_EQ(upstream_zpool_get_total_pages(pool), 0u) << type;
    upstream_zpool_destroy_pool(pool);
  }
}

// Migrates every live page of the upstream files in turn (compaction's scanner, sequentially).
int MigrateEveryPage(upstream_migrate_action action) {
  int migrated = 0;
  long n = upstream_live_pages();
  for (long i = 0; i < n; i++)
    if (upstream_migrate_nth_page(static_cast<unsigned long>(i), action) == 0) migrated++;
  return migrated;
}

TEST_F(UpstreamTest, MigrationMovesZspagesAndTheObjectsKeepTheirBytes) {
  upstream_zs_pool *pool = upstream_zs_create_pool("upstream-migrate");
  ASSERT_NE(pool, nullptr);
  std::vector<std::pair<unsigned long, size_t>> objects;
  for (size_t size : {40ul, 700ul, 1500ul, 2100ul, 3000ul, PAGE_SIZE - 8, PAGE_SIZE}) {
    for (int i = 0; i < 5; i++) {
      unsigned long h = upstream_zs_malloc(pool, size, kGfp | __GFP_MOVABLE);
      ASSERT_FALSE(IS_ERR_VALUE(h));
      auto *p = static_cast<unsigned char *>(upstream_zs_map_object(pool, h, UPSTREAM_ZS_MM_WO));
      Fill(p, size, static_cast<unsigned>(objects.size()));
      upstream_zs_unmap_object(pool, h);
      objects.push_back({h, size});
    }
  }
  const unsigned long pages = upstream_zs_get_total_pages(pool);
  const long zone = upstream_zone_zspages();
  // Put back first: isolation and putback leave everything as it was.
  EXPECT_EQ(MigrateEveryPage(UPSTREAM_MIGRATE_PUTBACK), 0);
  EXPECT_EQ(MigrateEveryPage(UPSTREAM_MIGRATE_NO_MEMORY), 0);
  // Then move every page: each is replaced by a new one (zs_page_migrate), nothing else changes.
  const long live = upstream_live_pages();
  EXPECT_EQ(MigrateEveryPage(UPSTREAM_MIGRATE), static_cast<int>(live));
  EXPECT_EQ(upstream_zs_get_total_pages(pool), pages);
  EXPECT_EQ(upstream_zone_zspages(), zone);
  for (size_t i = 0; i < objects.size(); i++) {
    auto [h, size] = objects[i];
    auto *p = static_cast<unsigned char *>(upstream_zs_map_object(pool, h, UPSTREAM_ZS_MM_RO));
    EXPECT_TRUE(Holds(p, size, static_cast<unsigned>(i))) << "object of " << size << " bytes";
    upstream_zs_unmap_object(pool, h);
  }
  for (auto [h, size] : objects) upstream_zs_free(pool, h);
  upstream_zs_destroy_pool(pool);
}

// Stores objects of several sizes in an upstream zpool of `type`, migrates every page, checks
// the bytes, frees everything and destroys the pool; returns how many pages migrated.
int StoreMigrateAndFree(const char *type) {
  upstream_zpool *pool = upstream_zpool_create_pool(type, "upstream-migrate", kGfp);
  EXPECT_NE(pool, nullptr) << type;
  if (pool == nullptr) return -1;
  std::vector<std::pair<unsigned long, size_t>> objects;
  for (size_t size : {100ul, 900ul, 1300ul, 2000ul, 3500ul}) {
    unsigned long h = 0;
    EXPECT_EQ(upstream_zpool_malloc(pool, size, kGfp | __GFP_MOVABLE, &h), 0) << type;
    auto *p = static_cast<unsigned char *>(upstream_zpool_map_handle(pool, h, UPSTREAM_ZPOOL_MM_WO));
    Fill(p, size, static_cast<unsigned>(size));
    upstream_zpool_unmap_handle(pool, h);
    objects.push_back({h, size});
  }
  const uint64_t pages = upstream_zpool_get_total_pages(pool);
  int migrated = MigrateEveryPage(UPSTREAM_MIGRATE);
  upstream_run_pending_work();
  EXPECT_EQ(upstream_zpool_get_total_pages(pool), pages) << type;
  for (auto [h, size] : objects) {
    auto *p = static_cast<unsigned char *>(upstream_zpool_map_handle(pool, h, UPSTREAM_ZPOOL_MM_RO));
    EXPECT_TRUE(Holds(p, size, static_cast<unsigned>(size))) << type << " " << size;
    upstream_zpool_unmap_handle(pool, h);
    upstream_zpool_free(pool, h);
  }
  upstream_run_pending_work();
  EXPECT_EQ(upstream_zpool_get_total_pages(pool), 0u) << type;
  upstream_zpool_destroy_pool(pool);
  return migrated;
}

TEST_F(UpstreamTest, ZbudPagesAreNotMovable) {
  EXPECT_EQ(StoreMigrateAndFree("zbud"), 0) << "6.12's zbud pages are not movable";
}

// Upstream finding Z1 (docs/upstream-findings.md): z3fold_page_migrate() copies the old page's
// private flags to the new page, PAGE_CLAIMED (set by z3fold_page_isolate) included, and nothing
// clears it there: every later z3fold_free() of an object in the new page takes the "claimed by
// someone else" path and skips free_handle(), so the page's handle slots are never freed. The
// pool's destroy then finds objects left in its z3fold_handle cache. This test pins the
// behaviour of the unmodified 6.12 file; it fails, naming the change, on a tree that fixed it.
TEST_F(UpstreamTest, Z3foldMigrationStrandsTheHandleSlotsOfTheNewPage) {
  const enum kc_warn_policy policy = kc_get_warn_policy();
  kc_set_warn_policy(KC_WARN_RECORD);
  EXPECT_GT(StoreMigrateAndFree("z3fold"), 0) << "z3fold's pages are movable";
  kc_set_warn_policy(policy);
  char text[512] = "";
  kc_last_warning(text, sizeof(text));
  EXPECT_EQ(kc_warn_count(), 1u) << text;
  EXPECT_NE(std::string(text).find("z3fold_handle"), std::string::npos)
      << "no longer reproduces (fixed in this tree?): " << text;
  kc_warn_reset();
}

// Upstream finding Z2 (docs/upstream-findings.md): when z3fold's compaction work moves a
// page's single object (compact_single_buddy()) into a page whose own handle slots were freed,
// __z3fold_alloc() gives that page new slots, and nothing ever stores a handle in them (the moved
// object keeps its handle in the old page's slots). free_handle() frees slots only when a handle
// in them is freed, and releasing a page never frees zhdr->slots: the new slots leak. The
// program is the fuzzer's (upstream_api_fuzz), minimised by hand.
TEST_F(UpstreamTest, Z3foldCompactionLeaksTheEmptySlotsOfItsTargetPage) {
  const enum kc_warn_policy policy = kc_get_warn_policy();
  kc_set_warn_policy(KC_WARN_RECORD);
  const unsigned long known_before = upstream_known_findings_seen();
  upstream_zpool *pool = upstream_zpool_create_pool("z3fold", "upstream-z2", kGfp);
  ASSERT_NE(pool, nullptr);
  unsigned long h[10];
  for (unsigned long &handle : h) {  // three a page: pages A (h0-h2), B, C, and D (h9)
    ASSERT_EQ(upstream_zpool_malloc(pool, 1162, kGfp | __GFP_MOVABLE, &handle), 0);
  }
  EXPECT_EQ(upstream_zpool_get_total_pages(pool), 4u);
  for (int i : {8, 6, 4, 2, 0}) upstream_zpool_free(pool, h[i]);
  upstream_run_pending_work();  // compaction moves h7 (C) and h1 (A) into D
  for (int i : {7, 9, 5}) upstream_zpool_free(pool, h[i]);  // D's own slots go with h9
  upstream_run_pending_work();  // h3 moves into D: __z3fold_alloc() gives D new slots
  for (int i : {1, 3}) upstream_zpool_free(pool, h[i]);
  upstream_run_pending_work();
  EXPECT_EQ(upstream_zpool_get_total_pages(pool), 0u);
  upstream_zpool_destroy_pool(pool);
  kc_set_warn_policy(policy);
  char text[512] = "";
  kc_last_warning(text, sizeof(text));
  EXPECT_EQ(upstream_known_findings_seen() - known_before, 1u)
      << "no longer reproduces (fixed in this tree?): " << text;
  EXPECT_NE(std::string(text).find("z3fold_handle"), std::string::npos) << text;
  kc_warn_reset();
}

// The model's per-class statistics are the kernel's after the same operations: allocated and
// in-use objects and zspages per fullness group, for every class.
TEST_F(UpstreamTest, TheModelsClassStatisticsAreTheKernels) {
  upstream_zs_pool *up = upstream_zs_create_pool("upstream-stats");
  struct zs_pool *model = zs_create_pool("model-stats");
  ASSERT_NE(up, nullptr);
  ASSERT_NE(model, nullptr);
  std::vector<std::pair<unsigned long, unsigned long>> handles;
  for (size_t size = 20; size <= PAGE_SIZE; size += 301)
    for (int i = 0; i < 7; i++)
      handles.push_back({upstream_zs_malloc(up, size, kGfp), zs_malloc(model, size, kGfp)});
  for (size_t i = 0; i < handles.size(); i += 3) {
    upstream_zs_free(up, handles[i].first);
    zs_free(model, handles[i].second);
  }
  EXPECT_EQ(upstream_zs_compact(up), zs_compact(model));
  EXPECT_EQ(upstream_zs_get_total_pages(up), zs_get_total_pages(model));
  int compared = 0;
  for (unsigned index = 0;; index++) {
    upstream_zs_class u = {};
    struct zs_class_stats m = {};
    int ue = upstream_zs_class_probe(up, index, &u), me = zs_class_stats(model, static_cast<int>(index), &m);
    ASSERT_EQ(ue, me) << "class count differs at " << index;
    if (ue != 0) break;
    ASSERT_EQ(u.index, m.index) << index;
    for (int fg = 0; fg < ZS_FULLNESS_GROUPS; fg++)
      EXPECT_EQ(u.stats[fg], m.zspages[fg]) << "class " << index << " group " << fg;
    EXPECT_EQ(u.stats[ZS_FULLNESS_GROUPS], m.objs_allocated) << "class " << index;
    EXPECT_EQ(u.stats[ZS_FULLNESS_GROUPS + 1], m.objs_inuse) << "class " << index;
    compared++;
  }
  EXPECT_GT(compared, 100);
  for (size_t i = 0; i < handles.size(); i++) {
    if (i % 3 == 0) continue;
    upstream_zs_free(up, handles[i].first);
    zs_free(model, handles[i].second);
  }
  zs_destroy_pool(model);
  upstream_zs_destroy_pool(up);
}

// mm's free path: a page freed with its type still set is "Bad page state".
void FreeATypedPage() {
  zfuzz_site site = {__FILE__, __func__, __LINE__};
  zfuzz_upstream_page *page = upstream_alloc_page(kGfp, site);
  page->page_type = 0xf6u << 24;  // PGTY_zsmalloc
  upstream_put_page(page, site);
}

TEST(UpstreamDeathTest, APageFreedWithItsTypeIsABadPageState) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  ASSERT_EQ(upstream_init(), 0);
  EXPECT_DEATH(FreeATypedPage(), "Bad page state.*still has a type");
}

}  // namespace

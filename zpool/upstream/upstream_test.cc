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

TEST_F(UpstreamTest, CompactionFreesThePagesOfAFragmentedClass) {
  upstream_zs_pool *pool = upstream_zs_create_pool("upstream-compact");
  ASSERT_NE(pool, nullptr);
  const size_t size = PAGE_SIZE / 2 - 8;  // two a zspage of one page
  std::vector<unsigned long> handles;
  for (int i = 0; i < 16; i++) {
    unsigned long h = upstream_zs_malloc(pool, size, kGfp);
    ASSERT_FALSE(IS_ERR_VALUE(h));
    auto *p = static_cast<unsigned char *>(upstream_zs_map_object(pool, h, UPSTREAM_ZS_MM_WO));
    Fill(p, size, static_cast<unsigned>(i));
    upstream_zs_unmap_object(pool, h);
    handles.push_back(h);
  }
  EXPECT_EQ(upstream_zs_get_total_pages(pool), 8u);
  for (int i = 1; i < 16; i += 2) upstream_zs_free(pool, handles[static_cast<size_t>(i)]);
  EXPECT_EQ(upstream_zs_get_total_pages(pool), 8u);  // every zspage half full
  unsigned long freed = upstream_zs_compact(pool);
  EXPECT_EQ(freed, 4u);
  EXPECT_EQ(upstream_zs_get_total_pages(pool), 4u);
  struct upstream_zs_pool_stats stats = {};
  upstream_zs_pool_stats(pool, &stats);
  EXPECT_EQ(stats.pages_compacted.counter, 4);
  for (int i = 0; i < 16; i += 2) {  // the moved objects kept their bytes
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
  std::vector<unsigned long> handles;
  for (int i = 0; i < 8; i++) handles.push_back(upstream_zs_malloc(pool, PAGE_SIZE / 2 - 8, kGfp));
  for (int i = 1; i < 8; i += 2) upstream_zs_free(pool, handles[static_cast<size_t>(i)]);
  EXPECT_EQ(upstream_shrink("mm-zspool:upstream-shrink", 128), 2u);
  char small[64];  // too small: cut, and the result says so
  size_t n = upstream_debugfs_read("zsmalloc/upstream-shrink/classes", small, sizeof(small));
  ASSERT_GE(n, sizeof(small));
  EXPECT_EQ(strlen(small), sizeof(small) - 1);
  static char buf[1 << 17];
  ASSERT_EQ(upstream_debugfs_read("zsmalloc/upstream-shrink/classes", buf, sizeof(buf)), n);
  std::string text(buf, n);
  EXPECT_NE(text.find("pages_per_zspage"), std::string::npos) << text;
  EXPECT_NE(text.find("Total"), std::string::npos) << text;
  for (int i = 0; i < 8; i += 2) upstream_zs_free(pool, handles[static_cast<size_t>(i)]);
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

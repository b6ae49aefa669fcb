// SPDX-License-Identifier: GPL-2.0-only
// Our allocators as benchmark contenders: zsmalloc and zbud through their own APIs, and both
// through zpool. The chain size (ZS_CONFIG_CHAIN_SIZE) and the checks (ZPOOL_UNCHECKED) are
// those of the libraries this binary links: alloc_bench_ours (chain 8), alloc_bench_ours_cs4
// (chain 4), and either built with --copt=-DZPOOL_UNCHECKED=1 (the unchecked build).
//
// gfp flags as the kernel's users pass them: zram's zs_malloc(GFP_NOIO | __GFP_HIGHMEM |
// __GFP_MOVABLE); zswap's zpool_malloc(__GFP_NORETRY | __GFP_NOWARN | __GFP_KSWAPD_RECLAIM),
// plus __GFP_HIGHMEM | __GFP_MOVABLE when zpool_malloc_support_movable().
#include <stdio.h>
#include <string.h>

#include <string>

#include "bench/contender.h"
#include "zpool/kernel/kernel.h"
#include "zpool/misuse.h"
#include "zpool/zbud.h"
#include "zpool/zpool.h"
#include "zpool/zsmalloc.h"

namespace bench {
namespace {

// The kernel's __GFP_NORETRY (not in our kernel.h: zpool backends ignore it).
constexpr gfp_t kGfpNoretry = 0x10000u;
constexpr gfp_t kZramGfp = GFP_NOIO | __GFP_HIGHMEM | __GFP_MOVABLE;
constexpr gfp_t kZswapGfp = kGfpNoretry | __GFP_NOWARN | __GFP_KSWAPD_RECLAIM;

std::string Build() {
  char buf[160];
  snprintf(buf, sizeof(buf), "chain_size=%d checks=%s page_size=%lu", zs_chain_size(),
           ZPOOL_CHECKS ? "on" : "compiled-out(ZPOOL_UNCHECKED=1)", PAGE_SIZE);
  return buf;
}

class Ours : public Contender {
 public:
  std::string BuildInfo() const override { return Build(); }
  void BindThread(int cpu) override { kc_set_cpu(cpu); }
  unsigned long Warnings() const override { return kc_warn_count() + zpool_misuse_total(); }
  void SetHardening(const std::string &level) override {
    kc_set_hardening(level == "full" ? KC_HARDENING_FULL : KC_HARDENING_CHEAP);
  }
  std::string Hardening() const override {
    return kc_get_hardening() == KC_HARDENING_FULL ? "full" : "cheap";
  }

 protected:
  // Cross-check: every page the kernel layer has handed out since Create().
  double PagesInUseBytes() const {
    return static_cast<double>(kc_pages_in_use() - pages_base_) * PAGE_SIZE;
  }
  unsigned long pages_base_ = 0;
};

class Zsmalloc final : public Ours {
 public:
  std::string Name() const override { return "zsmalloc"; }
  std::string MemoryMethod() const override {
    return "zs_get_total_pages * PAGE_SIZE (stat: kc_pages_in_use delta)";
  }
  bool Create() override {
    pages_base_ = kc_pages_in_use();
    pool_ = zs_create_pool("bench");
    return pool_ != nullptr;
  }
  void Destroy() override {
    zs_destroy_pool(pool_);
    pool_ = nullptr;
  }
  bool Store(const void *src, size_t len, uintptr_t *handle) override {
    unsigned long h = zs_malloc(pool_, len, kZramGfp);
    if (IS_ERR_VALUE(h)) return false;
    void *dst = zs_map_object(pool_, h, ZS_MM_WO);
    memcpy(dst, src, len);
    zs_unmap_object(pool_, h);
    *handle = h;
    return true;
  }
  void Load(uintptr_t handle, void *dst, size_t len) override {
    const void *src = zs_map_object(pool_, handle, ZS_MM_RO);
    memcpy(dst, src, len);
    zs_unmap_object(pool_, handle);
  }
  void Free(uintptr_t handle) override { zs_free(pool_, handle); }
  MemoryFigures Memory() override {
    return {static_cast<double>(zs_get_total_pages(pool_)) * PAGE_SIZE, PagesInUseBytes()};
  }
  long Compact(bool *supported) override {
    *supported = true;
    return static_cast<long>(zs_compact(pool_));
  }
  std::string Validate() override {
    char why[512] = "";
    return zs_validate_TestOnly(pool_, why, sizeof(why)) == 0 ? "" : why;
  }

 private:
  struct zs_pool *pool_ = nullptr;
};

class Zbud final : public Ours {
 public:
  std::string Name() const override { return "zbud"; }
  std::string MemoryMethod() const override {
    return "zbud_get_pool_size * PAGE_SIZE (stat: kc_pages_in_use delta)";
  }
  size_t MaxSize() const override { return zbud_max_alloc_size(); }
  bool Create() override {
    pages_base_ = kc_pages_in_use();
    pool_ = zbud_create_pool(GFP_KERNEL, nullptr);
    return pool_ != nullptr;
  }
  void Destroy() override {
    zbud_destroy_pool(pool_);
    pool_ = nullptr;
  }
  bool Store(const void *src, size_t len, uintptr_t *handle) override {
    unsigned long h;
    if (zbud_alloc(pool_, len, kZswapGfp, &h) != 0) return false;
    memcpy(zbud_map(pool_, h), src, len);
    zbud_unmap(pool_, h);
    *handle = h;
    return true;
  }
  void Load(uintptr_t handle, void *dst, size_t len) override {
    memcpy(dst, zbud_map(pool_, handle), len);
    zbud_unmap(pool_, handle);
  }
  void Free(uintptr_t handle) override { zbud_free(pool_, handle); }
  MemoryFigures Memory() override {
    return {static_cast<double>(zbud_get_pool_size(pool_)) * PAGE_SIZE, PagesInUseBytes()};
  }
  long Compact(bool *supported) override {
    *supported = false;
    return -1;
  }
  std::string Validate() override {
    char why[512] = "";
    return zbud_validate_TestOnly(pool_, why, sizeof(why)) == 0 ? "" : why;
  }

 private:
  struct zbud_pool *pool_ = nullptr;
};

class Zpool final : public Ours {
 public:
  explicit Zpool(const char *type) : type_(type) {}
  std::string Name() const override { return std::string("zpool-") + type_; }
  std::string MemoryMethod() const override {
    return "zpool_get_total_size (stat: kc_pages_in_use delta)";
  }
  size_t MaxSize() const override {
    return strcmp(type_, "zbud") == 0 ? zbud_max_alloc_size() : SIZE_MAX;
  }
  bool Create() override {
    pages_base_ = kc_pages_in_use();
    pool_ = zpool_create_pool(type_, "bench", kZswapGfp, nullptr);
    if (pool_ == nullptr) return false;
    gfp_ = kZswapGfp;
    if (zpool_malloc_support_movable(pool_)) gfp_ |= __GFP_HIGHMEM | __GFP_MOVABLE;
    return true;
  }
  void Destroy() override {
    zpool_destroy_pool(pool_);
    pool_ = nullptr;
  }
  bool Store(const void *src, size_t len, uintptr_t *handle) override {
    unsigned long h;
    if (zpool_malloc(pool_, len, gfp_, &h) != 0) return false;
    memcpy(zpool_map_handle(pool_, h, ZPOOL_MM_WO), src, len);
    zpool_unmap_handle(pool_, h);
    *handle = h;
    return true;
  }
  void Load(uintptr_t handle, void *dst, size_t len) override {
    memcpy(dst, zpool_map_handle(pool_, handle, ZPOOL_MM_RO), len);
    zpool_unmap_handle(pool_, handle);
  }
  void Free(uintptr_t handle) override { zpool_free(pool_, handle); }
  MemoryFigures Memory() override {
    return {static_cast<double>(zpool_get_total_size(pool_)), PagesInUseBytes()};
  }
  long Compact(bool *supported) override {
    *supported = false;  // the zpool API has no compaction (the kernel's shrinker does it)
    return -1;
  }
  std::string Validate() override {
    char why[512] = "";
    return zpool_validate_TestOnly(pool_, why, sizeof(why)) == 0 ? "" : why;
  }

 private:
  const char *type_;
  struct zpool *pool_ = nullptr;
  gfp_t gfp_ = 0;
};

}  // namespace

std::vector<std::string> ContenderNames() {
  return {"zsmalloc", "zbud", "zpool-zsmalloc", "zpool-zbud"};
}

std::unique_ptr<Contender> MakeContender(const std::string &name) {
  if (name == "zsmalloc") return std::make_unique<Zsmalloc>();
  if (name == "zbud") return std::make_unique<Zbud>();
  if (name == "zpool-zsmalloc") return std::make_unique<Zpool>("zsmalloc");
  if (name == "zpool-zbud") return std::make_unique<Zpool>("zbud");
  return nullptr;
}

size_t BuildPageSize() { return PAGE_SIZE; }

}  // namespace bench

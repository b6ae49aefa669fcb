// SPDX-License-Identifier: GPL-2.0-only
// The upstream Subjects (upstream_subjects.h): Linux 6.12's zsmalloc and zpool over zsmalloc,
// zbud and z3fold. What 6.12 does not have, they say so: no eviction or shrink (zpool lost its
// ops and zpool_shrink() with zswap's own LRU, 6.5), totals in pages, no validator of the
// project's kind (the kernel's own BUG/WARN/VM_BUG_ON and the shims' checks are the oracle).
#include "fuzz/api/upstream_subjects.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <memory>
#include <string>

#include "fuzz/api/program.h"
#include "fuzz/api/subject.h"
#include "zpool/upstream/bridge.h"

namespace zfuzz {
namespace {

// Work the files queued (zsmalloc's deferred zspage free, z3fold's page compaction and page
// release) runs between calls, as a kworker would have, and shows in the program.
int RunQueuedWork() {
  int ran = upstream_run_pending_work();
  if (ran > 0 && Tracing()) TraceLine("/* kworker: %d queued work item(s) ran */", ran);
  return ran;
}

int MigrateNth(unsigned long n, int action) {
  static constexpr upstream_migrate_action kActions[] = {
      UPSTREAM_MIGRATE, UPSTREAM_MIGRATE_PUTBACK, UPSTREAM_MIGRATE_NO_MEMORY};
  static constexpr const char *kNames[] = {"migrate", "isolate + putback",
                                           "isolate, no new page, putback"};
  const int a = action >= 0 && action < 3 ? action : 0;
  int rc = upstream_migrate_nth_page(n, kActions[a]);
  if (Tracing()) TraceLine("upstream_migrate_nth_page(%lu, %s) = %s", n, kNames[a], ErrName(rc));
  return rc;
}

class UpstreamZsSubject : public Subject {
 public:
  explicit UpstreamZsSubject(int slot) : Subject(Kind::kUpstreamZsmalloc, slot) {}
  bool Create(bool) override {
    pool_ = upstream_zs_create_pool(pool_name_);
    if (Tracing())
      TraceLine("%s = upstream_zs_create_pool(\"%s\")%s", pool_name_, pool_name_,
                pool_ ? "" : " = NULL");
    return pool_ != nullptr;
  }
  void Destroy(bool keep_stale) override {
    if (Tracing()) TraceLine("upstream_zs_destroy_pool(%s)", pool_name_);
    upstream_zs_destroy_pool(pool_);
    RunQueuedWork();
    if (!keep_stale) pool_ = nullptr;
  }
  int Malloc(size_t size, gfp_t gfp, unsigned long *handle, int id) override {
    unsigned long h = upstream_zs_malloc(pool_, size, gfp);
    int err = IS_ERR_VALUE(h) ? static_cast<int>(PTR_ERR(reinterpret_cast<void *>(h))) : 0;
    if (err == 0) *handle = h;
    if (Tracing()) {
      if (err == 0)
        TraceLine("h%d = upstream_zs_malloc(%s, %zu, %s)", id, pool_name_, size,
                  GfpName(gfp).c_str());
      else
        TraceLine("upstream_zs_malloc(%s, %zu, %s) = ERR_PTR(%s)", pool_name_, size,
                  GfpName(gfp).c_str(), ErrName(err));
    }
    return err;
  }
  void Free(unsigned long handle, int id) override {
    if (Tracing()) TraceLine("upstream_zs_free(%s, %s)", pool_name_, HName(id).c_str());
    upstream_zs_free(pool_, handle);
  }
  void *Map(unsigned long handle, MapMode mode, int id) override {
    if (Tracing())
      TraceLine("p = upstream_zs_map_object(%s, %s, ZS_MM_%s)", pool_name_, HName(id).c_str(),
                MapModeName(mode));
    return upstream_zs_map_object(pool_, handle, ZsMode(mode));
  }
  void Unmap(unsigned long handle, int id) override {
    if (Tracing()) TraceLine("upstream_zs_unmap_object(%s, %s)", pool_name_, HName(id).c_str());
    upstream_zs_unmap_object(pool_, handle);
  }
  unsigned long Compact() override {
    unsigned long freed = upstream_zs_compact(pool_);
    if (Tracing()) TraceLine("upstream_zs_compact(%s) = %lu", pool_name_, freed);
    return freed;
  }
  unsigned long PagesCompacted() override {
    struct upstream_zs_pool_stats stats = {};
    upstream_zs_pool_stats(pool_, &stats);
    return static_cast<unsigned long>(stats.pages_compacted.counter);
  }
  bool CanCompact() const override { return true; }
  int Reclaim(unsigned int, unsigned int *reclaimed) override {
    if (reclaimed) *reclaimed = 0;
    return -EINVAL;  // zsmalloc has no eviction
  }
  bool CanEvict() const override { return false; }
  u64 TotalPages() override {
    unsigned long pages = upstream_zs_get_total_pages(pool_);
    if (Tracing()) TraceLine("upstream_zs_get_total_pages(%s) = %lu", pool_name_, pages);
    return pages;
  }
  size_t MaxSize() const override { return PAGE_SIZE; }
  // The kernel's zsmalloc has no validator: its BUG_ONs and the shims' page checks are the oracle.
  int Validate(char *, size_t) override { return 0; }
  bool RejectsHighmem() const override { return false; }
  bool ClassAt(int index, ClassView *out) override {
    upstream_zs_class c = {};
    if (index < 0 || upstream_zs_class_probe(pool_, static_cast<unsigned>(index), &c) != 0)
      return false;
    *out = ClassView{};
    out->index = c.index;
    out->size = c.size;
    out->pages_per_zspage = c.pages_per_zspage;
    out->objs_per_zspage = c.objs_per_zspage;
    for (int fg = 0; fg < 12; fg++) out->zspages[fg] = c.stats[fg];
    out->allocated = c.stats[12];
    out->inuse = c.stats[13];
    return true;
  }
  bool LookupClass(size_t size, ClassView *out) override {
    if (size == 0 || size > PAGE_SIZE) return false;
    unsigned index = upstream_zs_lookup_class_index(pool_, static_cast<unsigned>(size));
    ClassView c;
    if (!ClassAt(static_cast<int>(index), &c)) return false;
    *out = ClassView{};
    out->index = c.index;
    out->size = c.size;
    out->pages_per_zspage = c.pages_per_zspage;
    out->objs_per_zspage = c.objs_per_zspage;
    return true;
  }
  size_t HugeClassSize() override { return upstream_zs_huge_class_size(pool_); }
  int Migrate(unsigned long n, int action) override { return MigrateNth(n, action); }
  int Quiesce() override { return RunQueuedWork(); }

 private:
  static upstream_zs_mapmode ZsMode(MapMode mode) {
    switch (mode) {
      case MapMode::kRW:
        return UPSTREAM_ZS_MM_RW;
      case MapMode::kRO:
        return UPSTREAM_ZS_MM_RO;
      case MapMode::kWO:
        return UPSTREAM_ZS_MM_WO;
    }
    return UPSTREAM_ZS_MM_RW;
  }
  upstream_zs_pool *pool_ = nullptr;
};

// 6.12's zpool: zpool_create_pool(type, name, gfp) with no ops; no evict, no shrink.
class UpstreamZpoolSubject : public Subject {
 public:
  UpstreamZpoolSubject(Kind kind, int slot) : Subject(kind, slot), type_(TypeOf(kind)) {}
  bool Create(bool) override {
    pool_ = upstream_zpool_create_pool(type_, pool_name_, GFP_KERNEL);
    if (Tracing())
      TraceLine("%s = upstream_zpool_create_pool(\"%s\", \"%s\", GFP_KERNEL)%s", pool_name_,
                type_, pool_name_, pool_ ? "" : " = NULL");
    return pool_ != nullptr;
  }
  void Destroy(bool keep_stale) override {
    if (Tracing()) TraceLine("upstream_zpool_destroy_pool(%s)", pool_name_);
    RunQueuedWork();  // z3fold frees its pages from a work item
    upstream_zpool_destroy_pool(pool_);
    if (!keep_stale) pool_ = nullptr;
  }
  int Malloc(size_t size, gfp_t gfp, unsigned long *handle, int id) override {
    int err = upstream_zpool_malloc(pool_, size, gfp, handle);
    if (Tracing())
      TraceLine("upstream_zpool_malloc(%s, %zu, %s, &h%d) = %s", pool_name_, size,
                GfpName(gfp).c_str(), id, ErrName(err));
    return err;
  }
  void Free(unsigned long handle, int id) override {
    if (Tracing()) TraceLine("upstream_zpool_free(%s, %s)", pool_name_, HName(id).c_str());
    upstream_zpool_free(pool_, handle);
  }
  void *Map(unsigned long handle, MapMode mode, int id) override {
    if (Tracing())
      TraceLine("p = upstream_zpool_map_handle(%s, %s, ZPOOL_MM_%s)", pool_name_,
                HName(id).c_str(), MapModeName(mode));
    return upstream_zpool_map_handle(pool_, handle, ZpoolMode(mode));
  }
  void Unmap(unsigned long handle, int id) override {
    if (Tracing()) TraceLine("upstream_zpool_unmap_handle(%s, %s)", pool_name_, HName(id).c_str());
    upstream_zpool_unmap_handle(pool_, handle);
  }
  int Reclaim(unsigned int, unsigned int *reclaimed) override {
    if (reclaimed) *reclaimed = 0;
    return -EINVAL;  // 6.12's zpool has no zpool_shrink()
  }
  bool CanEvict() const override { return false; }
  u64 TotalPages() override {
    u64 pages = upstream_zpool_get_total_pages(pool_);
    if (Tracing())
      TraceLine("upstream_zpool_get_total_pages(%s) = %llu", pool_name_,
                static_cast<unsigned long long>(pages));
    return pages;
  }
  size_t MaxSize() const override {
    // zbud: a page less its header chunk and one chunk; z3fold and zsmalloc: a page (z3fold
    // stores the largest sizes in a headless page).
    return kind_ == Kind::kUpstreamZpoolZbud ? PAGE_SIZE - 2 * (PAGE_SIZE >> 6) : PAGE_SIZE;
  }
  int Validate(char *, size_t) override { return 0; }
  bool RejectsHighmem() const override { return kind_ != Kind::kUpstreamZpoolZsmalloc; }
  std::string CheckProperties(bool) override {
    const char *type = upstream_zpool_get_type(pool_);
    bool sleep_mapped = upstream_zpool_can_sleep_mapped(pool_);
    bool movable = upstream_zpool_malloc_support_movable(pool_);
    std::string t = type_;
    bool has_pool = upstream_zpool_has_pool(t.data());
    if (Tracing())
      TraceLine("upstream_zpool_get_type(%s) = \"%s\", can_sleep_mapped %d, "
                "malloc_support_movable %d, has_pool %d",
                pool_name_, type ? type : "(null)", sleep_mapped, movable, has_pool);
    // 6.12's drivers: zsmalloc maps atomically and declares malloc_support_movable; zbud and
    // z3fold sleep mapped and do not declare it (z3fold's pages are movable all the same: it
    // makes them so itself, whatever the gfp).
    const bool zs = kind_ == Kind::kUpstreamZpoolZsmalloc;
    std::string why;
    if (type == nullptr || strcmp(type, type_) != 0) why += " type";
    if (sleep_mapped != !zs) why += " can_sleep_mapped";
    if (movable != zs) why += " malloc_support_movable";
    if (!has_pool) why += " zpool_has_pool";
    return why;
  }
  int Migrate(unsigned long n, int action) override { return MigrateNth(n, action); }
  int Quiesce() override { return RunQueuedWork(); }

 private:
  static const char *TypeOf(Kind kind) {
    switch (kind) {
      case Kind::kUpstreamZpoolZbud:
        return "zbud";
      case Kind::kUpstreamZpoolZ3fold:
        return "z3fold";
      default:
        return "zsmalloc";
    }
  }
  static upstream_zpool_mapmode ZpoolMode(MapMode mode) {
    switch (mode) {
      case MapMode::kRW:
        return UPSTREAM_ZPOOL_MM_RW;
      case MapMode::kRO:
        return UPSTREAM_ZPOOL_MM_RO;
      case MapMode::kWO:
        return UPSTREAM_ZPOOL_MM_WO;
    }
    return UPSTREAM_ZPOOL_MM_RW;
  }
  const char *type_;
  upstream_zpool *pool_ = nullptr;
};

std::unique_ptr<Subject> MakeUpstreamSubject(Kind kind, int slot) {
  if (kind == Kind::kUpstreamZsmalloc) return std::make_unique<UpstreamZsSubject>(slot);
  return std::make_unique<UpstreamZpoolSubject>(kind, slot);
}

}  // namespace

void UseUpstreamSubjects() {
  if (int err = upstream_init(); err != 0) {
    fprintf(stderr, "zfuzz: the upstream files' module init failed: %d\n", err);
    abort();
  }
  RegisterUpstreamSubjectMaker(MakeUpstreamSubject);
  // One pool of each kind made and destroyed now, so the files' lazily made state (caches,
  // debugfs, the per-CPU areas) is made here rather than by whichever input comes first.
  const bool tracing = Tracing();
  SetTracing(false);
  for (Kind kind : {Kind::kUpstreamZsmalloc, Kind::kUpstreamZpoolZsmalloc,
                    Kind::kUpstreamZpoolZbud, Kind::kUpstreamZpoolZ3fold}) {
    std::unique_ptr<Subject> subject = MakeUpstreamSubject(kind, 0);
    if (subject->Create(false)) subject->Destroy();
  }
  SetTracing(tracing);
  ResetKernelState();
}

}  // namespace zfuzz

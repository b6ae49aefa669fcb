// SPDX-License-Identifier: GPL-2.0-only
// The four Subjects: zbud, zsmalloc, zpool over zbud, zpool over zsmalloc.
#include "fuzz/api/subject.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <atomic>
#include <mutex>
#include <utility>
#include <vector>

#include "zpool/zbud.h"
#include "zpool/zpool.h"
#include "zpool/zsmalloc.h"

namespace zfuzz {

namespace {

std::atomic<int> g_tracing{-1};

// pool pointer -> Subject, for the evict callbacks (which only get the pool).
std::mutex g_registry_mu;
std::vector<std::pair<const void *, Subject *>> &Registry() {
  // Reserved up front: a vector growing in the first input only would be a path the next inputs
  // never take (AFL++ counts it as instability).
  static auto *registry = [] {
    auto *r = new std::vector<std::pair<const void *, Subject *>>();
    r->reserve(64);
    return r;
  }();
  return *registry;
}

// A pool pointer may come back from a new create after a destroy that kept the subject's stale
// pointer registered (the misuse target): the newest registration wins.
void Register(const void *pool, Subject *subject) {
  std::lock_guard<std::mutex> guard(g_registry_mu);
  for (auto &entry : Registry()) {
    if (entry.first == pool) {
      entry.second = subject;
      return;
    }
  }
  Registry().emplace_back(pool, subject);
}

void Unregister(const void *pool) {
  std::lock_guard<std::mutex> guard(g_registry_mu);
  auto &r = Registry();
  for (size_t i = 0; i < r.size(); i++) {
    if (r[i].first == pool) {
      r[i] = r.back();
      r.pop_back();
      return;
    }
  }
}

Subject *Lookup(const void *pool) {
  std::lock_guard<std::mutex> guard(g_registry_mu);
  for (auto &entry : Registry())
    if (entry.first == pool) return entry.second;
  return nullptr;
}

// ---- zbud ---------------------------------------------------------------------------------------

int ZbudEvict(struct zbud_pool *pool, unsigned long handle) {
  Subject *subject = Lookup(pool);
  return subject ? subject->CallEvict(handle) : -EINVAL;
}
const struct zbud_ops kZbudOps = {ZbudEvict};

class ZbudSubject : public Subject {
 public:
  explicit ZbudSubject(int slot) : Subject(Kind::kZbud, slot) {}
  bool Create(bool with_evict) override {
    pool_ = zbud_create_pool(GFP_KERNEL, with_evict ? &kZbudOps : nullptr);
    if (Tracing())
      TraceLine("%s = zbud_create_pool(GFP_KERNEL, %s)%s", pool_name_,
                with_evict ? "&ops" : "NULL", pool_ ? "" : " = NULL");
    if (pool_) Register(pool_, this);
    return pool_ != nullptr;
  }
  void Destroy(bool keep_stale) override {
    if (Tracing()) TraceLine("zbud_destroy_pool(%s)", pool_name_);
    zbud_destroy_pool(pool_);
    // A destroy the backend refused (destroy-busy) leaves the pool alive and its evict routed.
    if (!keep_stale) {
      Unregister(pool_);
      pool_ = nullptr;
    }
  }
  int Malloc(size_t size, gfp_t gfp, unsigned long *handle, int id) override {
    int err = zbud_alloc(pool_, size, gfp, handle);
    if (Tracing())
      TraceLine("zbud_alloc(%s, %zu, %s, &h%d) = %s", pool_name_, size, GfpName(gfp).c_str(), id,
                ErrName(err));
    return err;
  }
  void Free(unsigned long handle, int id) override {
    if (Tracing()) TraceLine("zbud_free(%s, %s)", pool_name_, HName(id).c_str());
    zbud_free(pool_, handle);
  }
  void *Map(unsigned long handle, MapMode mode, int id) override {
    if (Tracing()) TraceLine("p = zbud_map(%s, %s)  /* %s access */", pool_name_, HName(id).c_str(),
                             MapModeName(mode));
    return zbud_map(pool_, handle);
  }
  void Unmap(unsigned long handle, int id) override {
    if (Tracing()) TraceLine("zbud_unmap(%s, %s)", pool_name_, HName(id).c_str());
    zbud_unmap(pool_, handle);
  }
  int Reclaim(unsigned int retries, unsigned int *reclaimed) override {
    if (Tracing()) TraceLine("zbud_reclaim_page(%s, %u) ...", pool_name_, retries);
    int err = zbud_reclaim_page(pool_, retries);
    if (reclaimed) *reclaimed = err == 0 ? 1 : 0;
    if (Tracing()) TraceLine("  ... zbud_reclaim_page = %s", ErrName(err));
    return err;
  }
  bool CanEvict() const override { return true; }
  u64 TotalPages() override {
    u64 pages = zbud_get_pool_size(pool_);
    if (Tracing()) TraceLine("zbud_get_pool_size(%s) = %llu", pool_name_,
                             static_cast<unsigned long long>(pages));
    return pages;
  }
  size_t MaxSize() const override { return zbud_max_alloc_size(); }
  int Validate(char *why, size_t len) override { return zbud_validate_TestOnly(pool_, why, len); }
  int Corruptions() const override { return ZBUD_CORRUPTIONS; }
  int ValidateCorrupted(unsigned long handle, int kind, char *why, size_t len) override {
    return zbud_validate_corrupted_TestOnly(pool_, handle, kind, why, len);
  }
  bool RejectsHighmem() const override { return true; }

 private:
  struct zbud_pool *pool_ = nullptr;
};

// ---- zsmalloc -----------------------------------------------------------------------------------

enum zs_mapmode ZsMode(MapMode mode) {
  switch (mode) {
    case MapMode::kRW:
      return ZS_MM_RW;
    case MapMode::kRO:
      return ZS_MM_RO;
    case MapMode::kWO:
      return ZS_MM_WO;
  }
  return ZS_MM_RW;
}

class ZsSubject : public Subject {
 public:
  explicit ZsSubject(int slot) : Subject(Kind::kZsmalloc, slot) {}
  bool Create(bool) override {
    pool_ = zs_create_pool(pool_name_);
    if (Tracing())
      TraceLine("%s = zs_create_pool(\"%s\")%s", pool_name_, pool_name_, pool_ ? "" : " = NULL");
    return pool_ != nullptr;
  }
  void Destroy(bool keep_stale) override {
    if (Tracing()) TraceLine("zs_destroy_pool(%s)", pool_name_);
    zs_destroy_pool(pool_);
    if (!keep_stale) pool_ = nullptr;
  }
  int Malloc(size_t size, gfp_t gfp, unsigned long *handle, int id) override {
    unsigned long h = zs_malloc(pool_, size, gfp);
    int err = IS_ERR_VALUE(h) ? static_cast<int>(PTR_ERR(reinterpret_cast<void *>(h))) : 0;
    if (err == 0) *handle = h;
    if (Tracing()) {
      if (err == 0) {
        TraceLine("h%d = zs_malloc(%s, %zu, %s)", id, pool_name_, size, GfpName(gfp).c_str());
      } else {
        TraceLine("zs_malloc(%s, %zu, %s) = ERR_PTR(%s)", pool_name_, size,
                  GfpName(gfp).c_str(), ErrName(err));
      }
    }
    return err;
  }
  void Free(unsigned long handle, int id) override {
    if (Tracing()) TraceLine("zs_free(%s, %s)", pool_name_, HName(id).c_str());
    zs_free(pool_, handle);
  }
  void *Map(unsigned long handle, MapMode mode, int id) override {
    if (Tracing()) TraceLine("p = zs_map_object(%s, %s, ZS_MM_%s)", pool_name_, HName(id).c_str(),
                             MapModeName(mode));
    return zs_map_object(pool_, handle, ZsMode(mode));
  }
  void Unmap(unsigned long handle, int id) override {
    if (Tracing()) TraceLine("zs_unmap_object(%s, %s)", pool_name_, HName(id).c_str());
    zs_unmap_object(pool_, handle);
  }
  unsigned long Compact() override {
    unsigned long freed = zs_compact(pool_);
    if (Tracing()) TraceLine("zs_compact(%s) = %lu", pool_name_, freed);
    return freed;
  }
  unsigned long PagesCompacted() override {
    struct zs_pool_stats stats = {};
    zs_pool_stats(pool_, &stats);
    return stats.pages_compacted;
  }
  bool CanCompact() const override { return true; }
  bool ClassAt(int index, ClassView *out) override {
    struct zs_class_stats stats = {};
    if (zs_class_stats(pool_, index, &stats) != 0) return false;
    *out = ClassView{};
    out->index = stats.index;
    out->size = static_cast<int>(stats.size);
    out->pages_per_zspage = stats.pages_per_zspage;
    out->objs_per_zspage = stats.objs_per_zspage;
    for (int fg = 0; fg < ZS_FULLNESS_GROUPS; fg++) out->zspages[fg] = stats.zspages[fg];
    out->allocated = stats.objs_allocated;
    out->inuse = stats.objs_inuse;
    return true;
  }
  bool LookupClass(size_t size, ClassView *out) override {
    struct zs_class_info info = {};
    if (zs_lookup_class(pool_, size, &info) != 0) return false;
    *out = ClassView{};
    out->index = info.index;
    out->size = static_cast<int>(info.size);
    out->pages_per_zspage = info.pages_per_zspage;
    out->objs_per_zspage = info.objs_per_zspage;
    return true;
  }
  size_t HugeClassSize() override { return zs_huge_class_size(pool_); }
  // zs_huge_class_size() is the watermark zram uses to store incompressible pages whole: sizes
  // from it up go to a huge class (one object per page), smaller ones do not; and no class
  // spans more pages than the chain size.
  int CheckHugeClass(char *why, size_t len) {
    const size_t huge = zs_huge_class_size(pool_);
    struct zs_class_info at = {}, below = {};
    if (huge < 2 || huge > PAGE_SIZE || zs_lookup_class(pool_, huge, &at) != 0 ||
        zs_lookup_class(pool_, huge - 1, &below) != 0 || !at.huge || below.huge ||
        at.pages_per_zspage != 1 || below.pages_per_zspage > zs_chain_size()) {
      snprintf(why, len,
               "zs_huge_class_size() = %zu: class of that size huge=%d (%d pages), of one byte "
               "less huge=%d (%d pages, chain size %d)",
               huge, at.huge, at.pages_per_zspage, below.huge, below.pages_per_zspage,
               zs_chain_size());
      return -EUCLEAN;
    }
    return 0;
  }
  int Reclaim(unsigned int, unsigned int *reclaimed) override {
    if (reclaimed) *reclaimed = 0;
    return -EINVAL;  // zsmalloc has no eviction
  }
  bool CanEvict() const override { return false; }
  u64 TotalPages() override {
    unsigned long pages = zs_get_total_pages(pool_);
    if (Tracing()) TraceLine("zs_get_total_pages(%s) = %lu", pool_name_, pages);
    return pages;
  }
  size_t MaxSize() const override { return PAGE_SIZE; }
  int Validate(char *why, size_t len) override {
    if (int err = zs_validate_TestOnly(pool_, why, len)) return err;
    return CheckHugeClass(why, len);
  }
  bool RejectsHighmem() const override { return false; }

 private:
  struct zs_pool *pool_ = nullptr;
};

// ---- zpool ----------------------------------------------------------------------------------------

int ZpoolEvict(struct zpool *pool, unsigned long handle) {
  Subject *subject = Lookup(pool);
  return subject ? subject->CallEvict(handle) : -EINVAL;
}
const struct zpool_ops kZpoolOps = {ZpoolEvict};

enum zpool_mapmode ZpoolMode(MapMode mode) {
  switch (mode) {
    case MapMode::kRW:
      return ZPOOL_MM_RW;
    case MapMode::kRO:
      return ZPOOL_MM_RO;
    case MapMode::kWO:
      return ZPOOL_MM_WO;
  }
  return ZPOOL_MM_RW;
}

class ZpoolSubject : public Subject {
 public:
  ZpoolSubject(Kind kind, int slot)
      : Subject(kind, slot), type_(kind == Kind::kZpoolZbud ? "zbud" : "zsmalloc") {}
  bool Create(bool with_evict) override {
    pool_ = zpool_create_pool(type_, pool_name_, GFP_KERNEL, with_evict ? &kZpoolOps : nullptr);
    if (Tracing())
      TraceLine("%s = zpool_create_pool(\"%s\", \"%s\", GFP_KERNEL, %s)%s", pool_name_, type_,
                pool_name_, with_evict ? "&ops" : "NULL", pool_ ? "" : " = NULL");
    if (pool_) Register(pool_, this);
    return pool_ != nullptr;
  }
  void Destroy(bool keep_stale) override {
    if (Tracing()) TraceLine("zpool_destroy_pool(%s)", pool_name_);
    zpool_destroy_pool(pool_);
    // A destroy the backend refused (destroy-busy) leaves the pool alive and its evict routed.
    if (!keep_stale) {
      Unregister(pool_);
      pool_ = nullptr;
    }
  }
  int Malloc(size_t size, gfp_t gfp, unsigned long *handle, int id) override {
    int err = zpool_malloc(pool_, size, gfp, handle);
    if (Tracing())
      TraceLine("zpool_malloc(%s, %zu, %s, &h%d) = %s", pool_name_, size, GfpName(gfp).c_str(),
                id, ErrName(err));
    return err;
  }
  void Free(unsigned long handle, int id) override {
    if (Tracing()) TraceLine("zpool_free(%s, %s)", pool_name_, HName(id).c_str());
    zpool_free(pool_, handle);
  }
  void *Map(unsigned long handle, MapMode mode, int id) override {
    if (Tracing()) TraceLine("p = zpool_map_handle(%s, %s, ZPOOL_MM_%s)", pool_name_, HName(id).c_str(),
                             MapModeName(mode));
    return zpool_map_handle(pool_, handle, ZpoolMode(mode));
  }
  void Unmap(unsigned long handle, int id) override {
    if (Tracing()) TraceLine("zpool_unmap_handle(%s, %s)", pool_name_, HName(id).c_str());
    zpool_unmap_handle(pool_, handle);
  }
  int Reclaim(unsigned int pages, unsigned int *reclaimed) override {
    unsigned int got = 0;
    if (Tracing()) TraceLine("zpool_shrink(%s, %u, &reclaimed) ...", pool_name_, pages);
    int err = zpool_shrink(pool_, pages, &got);
    if (reclaimed) *reclaimed = got;
    if (Tracing()) TraceLine("  ... zpool_shrink = %s, reclaimed = %u", ErrName(err), got);
    return err;
  }
  bool CanEvict() const override { return kind_ == Kind::kZpoolZbud; }
  u64 TotalPages() override {
    u64 bytes = zpool_get_total_size(pool_);
    if (Tracing()) TraceLine("zpool_get_total_size(%s) = %llu", pool_name_,
                             static_cast<unsigned long long>(bytes));
    return bytes / PAGE_SIZE;
  }
  size_t MaxSize() const override {
    return kind_ == Kind::kZpoolZbud ? zbud_max_alloc_size() : PAGE_SIZE;
  }
  int Validate(char *why, size_t len) override { return zpool_validate_TestOnly(pool_, why, len); }
  bool RejectsHighmem() const override { return kind_ == Kind::kZpoolZbud; }
  std::string CheckProperties(bool with_evict) override {
    bool zbud = kind_ == Kind::kZpoolZbud;
    const char *type = zpool_get_type(pool_);
    bool evictable = zpool_evictable(pool_);
    bool sleep_mapped = zpool_can_sleep_mapped(pool_);
    bool movable = zpool_malloc_support_movable(pool_);
    if (Tracing())
      TraceLine("zpool_get_type(%s) = \"%s\", evictable %d, can_sleep_mapped %d, "
                "malloc_support_movable %d",
                pool_name_, type ? type : "(null)", evictable, sleep_mapped, movable);
    std::string why;
    if (type == nullptr || strcmp(type, type_) != 0) why += " type";
    if (evictable != (zbud && with_evict)) why += " evictable";
    if (sleep_mapped != zbud) why += " can_sleep_mapped";
    if (movable != !zbud) why += " malloc_support_movable";
    if (!zpool_has_pool(type_)) why += " zpool_has_pool";
    return why;
  }

 private:
  const char *type_;
  struct zpool *pool_ = nullptr;
};

}  // namespace

std::string HName(int id) { return id >= 0 ? "h" + std::to_string(id) : std::string("bad_handle"); }

const char *ErrName(int err) {
  switch (err) {
    case 0:
      return "0";
    case -EINVAL:
      return "-EINVAL";
    case -ENOSPC:
      return "-ENOSPC";
    case -ENOMEM:
      return "-ENOMEM";
    case -EAGAIN:
      return "-EAGAIN";
    case -EBUSY:
      return "-EBUSY";
    case -ENOENT:
      return "-ENOENT";
    default:
      return "-E?";
  }
}

bool Tracing() {
  int on = g_tracing.load(std::memory_order_relaxed);
  if (__builtin_expect(on < 0, 0)) {
    const char *env = getenv("ZFUZZ_EXPLAIN");
    on = (env != nullptr && strcmp(env, "1") == 0) ? 1 : 0;
    g_tracing.store(on, std::memory_order_relaxed);
  }
  return on == 1;
}

void SetTracing(bool on) { g_tracing.store(on ? 1 : 0, std::memory_order_relaxed); }

namespace {
thread_local const char *t_trace_prefix = "";
}  // namespace

void SetTracePrefix(const char *prefix) { t_trace_prefix = prefix ? prefix : ""; }

void TraceLine(const char *fmt, ...) {
  char buf[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof(buf), fmt, ap);
  va_end(ap);
  fprintf(stderr, "  %s%s\n", t_trace_prefix, buf);
  fflush(stderr);
}

std::string GfpName(gfp_t gfp) {
  std::string base;
  gfp_t rest = gfp;
  struct {
    gfp_t value;
    const char *name;
  } const kBases[] = {{GFP_KERNEL, "GFP_KERNEL"},
                      {GFP_ATOMIC, "GFP_ATOMIC"},
                      {GFP_NOIO, "GFP_NOIO"},
                      {GFP_NOWAIT, "GFP_NOWAIT"}};
  for (const auto &b : kBases) {
    if ((gfp & b.value) == b.value) {
      base = b.name;
      rest &= ~b.value;
      break;
    }
  }
  struct {
    gfp_t value;
    const char *name;
  } const kFlags[] = {{__GFP_HIGHMEM, "__GFP_HIGHMEM"},
                      {__GFP_MOVABLE, "__GFP_MOVABLE"},
                      {__GFP_NOWARN, "__GFP_NOWARN"},
                      {__GFP_ZERO, "__GFP_ZERO"}};
  for (const auto &f : kFlags) {
    if (rest & f.value) {
      base += base.empty() ? "" : " | ";
      base += f.name;
      rest &= ~f.value;
    }
  }
  if (rest != 0 || base.empty()) {
    char hex[32];
    snprintf(hex, sizeof(hex), "%s%#x", base.empty() ? "" : " | ", rest);
    base += hex;
  }
  return base;
}

const char *MapModeName(MapMode mode) {
  switch (mode) {
    case MapMode::kRW:
      return "RW";
    case MapMode::kRO:
      return "RO";
    case MapMode::kWO:
      return "WO";
  }
  return "?";
}

const char *KindName(Kind kind) {
  switch (kind) {
    case Kind::kZbud:
      return "zbud";
    case Kind::kZsmalloc:
      return "zsmalloc";
    case Kind::kZpoolZbud:
      return "zpool/zbud";
    case Kind::kZpoolZsmalloc:
      return "zpool/zsmalloc";
    case Kind::kUpstreamZsmalloc:
      return "upstream zsmalloc";
    case Kind::kUpstreamZpoolZsmalloc:
      return "upstream zpool/zsmalloc";
    case Kind::kUpstreamZpoolZbud:
      return "upstream zpool/zbud";
    case Kind::kUpstreamZpoolZ3fold:
      return "upstream zpool/z3fold";
  }
  return "?";
}

bool IsUpstream(Kind kind) {
  switch (kind) {
    case Kind::kUpstreamZsmalloc:
    case Kind::kUpstreamZpoolZsmalloc:
    case Kind::kUpstreamZpoolZbud:
    case Kind::kUpstreamZpoolZ3fold:
      return true;
    default:
      return false;
  }
}

Subject::Subject(Kind kind, int slot) : kind_(kind), slot_(slot) {
  snprintf(pool_name_, sizeof(pool_name_), "pool%d", slot);
}

namespace {
std::atomic<SubjectMaker> g_upstream_maker{nullptr};
}  // namespace

void RegisterUpstreamSubjectMaker(SubjectMaker maker) { g_upstream_maker.store(maker); }

std::unique_ptr<Subject> MakeSubject(Kind kind, int slot) {
  if (IsUpstream(kind)) {
    SubjectMaker maker = g_upstream_maker.load();
    if (maker == nullptr) {
      fprintf(stderr, "zfuzz: %s: this binary does not link //fuzz/api:upstream_subjects (or "
              "never called UseUpstreamSubjects())\n", KindName(kind));
      abort();
    }
    return maker(kind, slot);
  }
  switch (kind) {
    case Kind::kZbud:
      return std::make_unique<ZbudSubject>(slot);
    case Kind::kZsmalloc:
      return std::make_unique<ZsSubject>(slot);
    case Kind::kZpoolZbud:
    case Kind::kZpoolZsmalloc:
      return std::make_unique<ZpoolSubject>(kind, slot);
    default:
      break;
  }
  return nullptr;
}

void ClearSubjectRegistry() {
  std::lock_guard<std::mutex> guard(g_registry_mu);
  Registry().clear();
}

Subject *SubjectOfZbudPool(const void *pool) { return Lookup(pool); }
Subject *SubjectOfZpool(const void *pool) { return Lookup(pool); }

}  // namespace zfuzz

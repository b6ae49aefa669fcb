// SPDX-License-Identifier: GPL-2.0-only
// Subject: one allocator under test behind one interface (zbud, zsmalloc, or zpool over either),
// printing every call it makes as a kernel-style call line when tracing is on.
//
// The fuzz targets drive Subjects; the call lines are what `tools/zfuzz explain` and `repro`
// show, so a finding reads as a program:
//   pool0 = zs_create_pool("zfuzz0")
//   h3 = zs_malloc(pool0, 1200, GFP_KERNEL)
//   p = zs_map_object(pool0, h3, ZS_MM_WO)
// Handles are printed by the object id the model gave them (h3), never by value, so the same
// input prints the same program on every run and every machine.
#ifndef FUZZ_API_SUBJECT_H_
#define FUZZ_API_SUBJECT_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "zpool/kernel/kernel.h"

namespace zfuzz {

// ---- Tracing ---------------------------------------------------------------------------------
// On when the environment has ZFUZZ_EXPLAIN=1 (read once) or after SetTracing(true).
bool Tracing();
void SetTracing(bool on);
// Prints one program line (stderr, flushed, so the line before a crash is visible).
void TraceLine(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
// A prefix for this thread's trace lines ("[t1] "), for programs that run several threads.
void SetTracePrefix(const char *prefix);
std::string GfpName(gfp_t gfp);
// A handle by its object id ("h3"); a negative id is a deliberately bad handle (the misuse
// target prints what it is on the line before).
std::string HName(int id);
const char *ErrName(int err);  // "-EINVAL"...

enum class MapMode { kRW, kRO, kWO };
const char *MapModeName(MapMode mode);  // "RW"...

// The project's allocators, and the kernel's own (Linux 6.12's mm/zsmalloc.c and mm/zpool.c
// over zsmalloc, zbud and z3fold: //fuzz/api:upstream_subjects, see UseUpstreamSubjects()).
enum class Kind {
  kZbud,
  kZsmalloc,
  kZpoolZbud,
  kZpoolZsmalloc,
  kUpstreamZsmalloc,
  kUpstreamZpoolZsmalloc,
  kUpstreamZpoolZbud,
  kUpstreamZpoolZ3fold,
};
const char *KindName(Kind kind);
bool IsUpstream(Kind kind);

// A zsmalloc size class as the kernel counts it: its geometry and statistics (zspages per
// fullness group ZS_INUSE_RATIO_0, _10 .. _90, _99, _100; objects allocated and in use).
struct ClassView {
  int index = 0;  // the class serving the index asked for (merged classes: a larger one)
  int size = 0;
  int pages_per_zspage = 0;
  int objs_per_zspage = 0;
  unsigned long zspages[12] = {};
  unsigned long allocated = 0;
  unsigned long inuse = 0;
  bool operator==(const ClassView &) const = default;
};

// Called by a backend's eviction (zbud reclaim, zpool shrink) for each handle; must behave like a
// user's evict callback: free the handle and return 0, or return an error without freeing.
using EvictFn = std::function<int(unsigned long handle)>;

class Subject {
 public:
  virtual ~Subject() = default;
  Kind kind() const { return kind_; }
  int slot() const { return slot_; }
  const char *pool_name() const { return pool_name_; }

  // Creates the pool. False when creation failed (only under fault injection).
  virtual bool Create(bool with_evict) = 0;
  // Destroys the pool. With keep_stale the subject keeps the pool pointer, so later calls go to
  // the destroyed pool (the misuse target's use-after-destroy); a destroy that the backend
  // refused (destroy-busy) leaves the pool alive either way, and the caller keeps using it.
  virtual void Destroy(bool keep_stale = false) = 0;
  // 0 with *handle set, or a negative errno.
  virtual int Malloc(size_t size, gfp_t gfp, unsigned long *handle, int id) = 0;
  virtual void Free(unsigned long handle, int id) = 0;
  virtual void *Map(unsigned long handle, MapMode mode, int id) = 0;
  virtual void Unmap(unsigned long handle, int id) = 0;
  // zsmalloc only: pages freed, and the accumulated pages_compacted.
  virtual unsigned long Compact() { return 0; }
  virtual unsigned long PagesCompacted() { return 0; }
  virtual bool CanCompact() const { return false; }
  // zbud: zbud_reclaim_page(pool, arg) (0 or -errno); zpool: zpool_shrink(pool, arg, &reclaimed).
  virtual int Reclaim(unsigned int arg, unsigned int *reclaimed) = 0;
  // Whether the backend can evict at all (zbud, zpool over zbud).
  virtual bool CanEvict() const = 0;
  virtual u64 TotalPages() = 0;
  // The largest size Malloc accepts.
  virtual size_t MaxSize() const = 0;
  // 0, or -EUCLEAN with a description (backends without a validator: 0).
  virtual int Validate(char *why, size_t len) = 0;
  // The validator's own test, where the backend has one: breaks invariant `kind` (0 ..
  // Corruptions() - 1) on the page of `handle`, validates, restores. -EUCLEAN: caught; 0:
  // missed; -EINVAL: does not apply here.
  virtual int Corruptions() const { return 0; }
  virtual int ValidateCorrupted(unsigned long handle, int kind, char *why, size_t len) {
    return -EINVAL;
  }
  // Whether Malloc rejects __GFP_HIGHMEM (zbud does, with -EINVAL).
  virtual bool RejectsHighmem() const = 0;
  // zsmalloc subjects: the class at `index` (0 .. the last; false past it) with its statistics,
  // the class serving an allocation of `size` bytes (geometry only), and zs_huge_class_size().
  virtual bool ClassAt(int index, ClassView *out) { return false; }
  virtual bool LookupClass(size_t size, ClassView *out) { return false; }
  virtual size_t HugeClassSize() { return 0; }
  // Upstream subjects: mm/migrate.c's protocol on the n-th live page of the upstream files
  // (`action` 0 migrate, 1 isolate and put back, 2 fail for want of a new page): 0 migrated, else
  // a negative errno (zpool/upstream/bridge.h). -EOPNOTSUPP: the backend has no page migration.
  virtual int Migrate(unsigned long n, int action) { return -EOPNOTSUPP; }
  // Runs what the backend deferred to a worker (upstream: queued work items), as a kworker would
  // between two calls. Returns how many items ran.
  virtual int Quiesce() { return 0; }
  // zpool only: queries the pool's properties (type, evictable, can_sleep_mapped,
  // malloc_support_movable) and returns a description of any that contradicts the contract
  // ("" when all agree).
  virtual std::string CheckProperties(bool with_evict) { return ""; }

  void set_evict(EvictFn fn) { evict_ = std::move(fn); }
  int CallEvict(unsigned long handle) { return evict_ ? evict_(handle) : -EINVAL; }

 protected:
  Subject(Kind kind, int slot);
  Kind kind_;
  int slot_;
  char pool_name_[16];
  EvictFn evict_;
};

std::unique_ptr<Subject> MakeSubject(Kind kind, int slot);

// The upstream kinds come from //fuzz/api:upstream_subjects, which links the kernel's own files
// (//zpool/upstream): a harness that uses them calls its UseUpstreamSubjects() first, which
// registers their maker here. MakeSubject() of an upstream kind without one is a fatal error.
using SubjectMaker = std::unique_ptr<Subject> (*)(Kind kind, int slot);
void RegisterUpstreamSubjectMaker(SubjectMaker maker);

// Forgets every pool -> subject registration (stale ones survive a kept-stale destroy), so that
// no state passes from one input to the next.
void ClearSubjectRegistry();

// The subject whose evict callback is running (the backends call a plain function pointer).
Subject *SubjectOfZbudPool(const void *pool);
Subject *SubjectOfZpool(const void *pool);

}  // namespace zfuzz

#endif  // FUZZ_API_SUBJECT_H_

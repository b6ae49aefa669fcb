// SPDX-License-Identifier: GPL-2.0-only
// The operation language's decoder, executor and shadow model.
#include "fuzz/api/program.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <memory>
#include <string>
#include <type_traits>

#include "zpool/kernel/lock.h"
#include "zpool/kernel/page.h"
#include "zpool/misuse.h"
#include "zpool/zbud.h"

namespace zfuzz {

void ReportFinding(const char *file, int line, const char *fmt, ...) {
  char buf[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof(buf), fmt, ap);
  va_end(ap);
  fprintf(stderr, "zfuzz: FINDING at %s:%d: %s\n", file, line, buf);
  fflush(stderr);
  kc::RunFatalHook();  // a scheduled run prints its interleaving and schedule
}

void ResetKernelState() {
  kc_fail_nth_alloc(0);
  kc_warn_reset();
  kc::lockdep::ResetForTest();
  zpool_misuse_reset();
  kc_set_cpu(0);
  ClearSubjectRegistry();
}

namespace {


constexpr size_t kHandleHeader = sizeof(unsigned long);  // zsmalloc's ZS_HANDLE_SIZE

uint64_t Mix(uint64_t x) {  // splitmix64 finaliser
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

struct Object {
  int id;
  size_t size;
  uint32_t gen = 0;
  unsigned long handle[kMaxSubjects] = {};
  bool present[kMaxSubjects] = {};
  bool PresentAnywhere() const {
    for (bool p : present)
      if (p) return true;
    return false;
  }
};

struct Slot {
  std::unique_ptr<Subject> subjects[kMaxSubjects];
  bool live = false;
  bool with_evict = false;
  std::vector<Object> objects;
};

// Typed reads from the choice source, shaped like FuzzedDataProvider's.
class Reader {
 public:
  explicit Reader(Choices &choices) : c_(choices) {}
  template <class T>
  T ConsumeIntegralInRange(T min, T max) {
    if constexpr (std::is_signed_v<T>) {
      uint64_t span = static_cast<uint64_t>(static_cast<int64_t>(max) - static_cast<int64_t>(min));
      return static_cast<T>(static_cast<int64_t>(min) + static_cast<int64_t>(c_.Pick(0, span)));
    } else {
      return static_cast<T>(c_.Pick(min, max));
    }
  }
  bool ConsumeBool() { return (c_.Pick(0, 255) & 1) != 0; }
  size_t remaining_bytes() const { return c_.Exhausted() ? 0 : 1; }

 private:
  Choices &c_;
};

class Runner {
 public:
  Runner(Choices &choices, uint64_t seed, const ProgramOptions &options)
      : in_(choices), options_(options),
        nsub_(std::min(static_cast<int>(options.kinds.size()), kMaxSubjects)), seed_(seed) {
    slots_.resize(static_cast<size_t>(options.pool_slots));
    for (int s = 0; s < options.pool_slots; s++)
      for (int k = 0; k < nsub_; k++)
        slots_[static_cast<size_t>(s)].subjects[k] = MakeSubject(options.kinds[k], s);
  }

  int Run() {
    pages_before_ = kc_pages_in_use();
    meta_before_ = kc_meta_in_use();
    int ops = 0;
    Create(slots_[0], /*with_evict=*/true);  // every program starts with one pool
    const int last_op = options_.migration ? kMigrate : kMigrate - 1;
    while (ops < options_.max_ops && in_.remaining_bytes() > 0) {
      Step(static_cast<ProgramOp>(in_.ConsumeIntegralInRange<int>(0, last_op)));
      ops++;
      Quiesce();
      if (options_.exact) CheckSamePages();
      if (options_.validate_every > 0 && ops % options_.validate_every == 0) ValidateAll();
    }
    Teardown();
    return ops;
  }

 private:
  // ---- patterns --------------------------------------------------------------------------------
  uint64_t Word(const Object &obj, size_t w) const {
    return Mix(seed_ ^ (uint64_t(obj.id) << 40) ^ (uint64_t(obj.gen) << 20) ^ w);
  }
  void Fill(uint8_t *p, const Object &obj) const {
    for (size_t off = 0; off < obj.size; off += 8) {
      uint64_t w = Word(obj, off / 8);
      memcpy(p + off, &w, std::min<size_t>(8, obj.size - off));
    }
  }
  void Verify(const uint8_t *p, const Object &obj, int k, const char *when) const {
    for (size_t off = 0; off < obj.size; off += 8) {
      uint64_t w = Word(obj, off / 8);
      size_t n = std::min<size_t>(8, obj.size - off);
      if (memcmp(p + off, &w, n) != 0) {
        size_t at = off;
        while (at < off + n && p[at] == reinterpret_cast<const uint8_t *>(&w)[at - off]) at++;
        ZFUZZ_CHECK(false, "%s: h%d (%zu bytes, generation %u) on %s differs at byte %zu: "
                    "contents lost", when, obj.id, obj.size, obj.gen,
                    KindName(options_.kinds[static_cast<size_t>(k)]), at);
      }
    }
  }

  // ---- decoding helpers ------------------------------------------------------------------------
  size_t MaxSize(const Slot &slot) const {
    size_t max = 0;
    for (int k = 0; k < nsub_; k++) max = std::max(max, slot.subjects[k]->MaxSize());
    return max;
  }

  size_t DecodeSize(const Slot &slot) {
    const size_t max = MaxSize(slot);
    const size_t delta = PAGE_SIZE >> 8;        // zsmalloc's class spacing
    const size_t chunk = PAGE_SIZE >> 6;        // zbud's chunk
    switch (static_cast<SizeKind>(in_.ConsumeIntegralInRange<int>(0, kSizeKinds - 1))) {
      case kSizeAny:
        return in_.ConsumeIntegralInRange<size_t>(1, max);
      case kSizeClassBoundary: {  // a zsmalloc class boundary (class size less the handle)
        size_t k = in_.ConsumeIntegralInRange<size_t>(3, 256);
        long adjust = in_.ConsumeIntegralInRange<int>(-1, 1);
        return std::clamp<long>(long(k * delta) - long(kHandleHeader) + adjust, 1, long(max));
      }
      case kSizeChunkBoundary: {  // a zbud chunk boundary
        size_t n = in_.ConsumeIntegralInRange<size_t>(1, 62);
        long adjust = in_.ConsumeIntegralInRange<int>(-1, 1);
        return std::clamp<long>(long(n * chunk) + adjust, 1, long(max));
      }
      case kSizeSpan: {  // sizes whose objects often span two pages
        size_t denom = in_.ConsumeIntegralInRange<size_t>(2, 7);
        size_t num = in_.ConsumeIntegralInRange<size_t>(1, denom - 1);
        long adjust = in_.ConsumeIntegralInRange<int>(-1, 1);
        return std::clamp<long>(long(PAGE_SIZE * num / denom) + adjust * 8, 1, long(max));
      }
      case kSizeMaxima: {  // the maxima and the huge-class threshold
        size_t picks[] = {max, max - 1, zbud_max_alloc_size(), PAGE_SIZE,
                          PAGE_SIZE * 7 / 8 + 32, PAGE_SIZE - 2 * chunk + 1};
        return std::min(picks[in_.ConsumeIntegralInRange<size_t>(0, 5)], max + 64);
      }
      case kSizeZero:
        return 0;
      case kSizeTooBig:
        return max + in_.ConsumeIntegralInRange<size_t>(1, 100);
      case kSizeSmall:
      case kSizeKinds:
        break;
    }
    return in_.ConsumeIntegralInRange<size_t>(1, 128);
  }

  gfp_t DecodeGfp() {
    return kProgramGfps[in_.ConsumeIntegralInRange<size_t>(0, kProgramGfpCount - 1)] |
           __GFP_NOWARN;
  }

  Slot &DecodeSlot() {
    return slots_[in_.ConsumeIntegralInRange<size_t>(0, slots_.size() - 1)];
  }

  // ---- operations --------------------------------------------------------------------------------
  // Arguments are decoded before the state is looked at (a dead slot still consumes its
  // operation's arguments), so a program's bytes keep their meaning whatever happened before;
  // only an object index, whose range is the live count, is not read when there is none.
  void Step(ProgramOp op) {
    switch (op) {
      case kCreate: {
        Slot &slot = DecodeSlot();
        bool with_evict = in_.ConsumeBool();
        if (!slot.live) Create(slot, with_evict);
        break;
      }
      case kDestroy: {
        Slot &slot = DecodeSlot();
        if (slot.live) Destroy(slot);
        break;
      }
      case kMalloc: {
        Slot &slot = DecodeSlot();
        size_t size = DecodeSize(slot);
        gfp_t gfp = DecodeGfp();
        if (slot.live) Malloc(slot, size, gfp);
        break;
      }
      case kFree: {
        Slot &slot = DecodeSlot();
        if (slot.live && !slot.objects.empty())
          Free(slot, in_.ConsumeIntegralInRange<size_t>(0, slot.objects.size() - 1));
        break;
      }
      case kMapAccess: {
        Slot &slot = DecodeSlot();
        MapMode mode = static_cast<MapMode>(in_.ConsumeIntegralInRange<int>(0, 2));
        if (slot.live && !slot.objects.empty())
          MapAccess(slot, in_.ConsumeIntegralInRange<size_t>(0, slot.objects.size() - 1), mode);
        break;
      }
      case kCompact: {
        Slot &slot = DecodeSlot();
        if (slot.live) Compact(slot);
        break;
      }
      case kReclaim: {
        Slot &slot = DecodeSlot();
        unsigned arg = in_.ConsumeIntegralInRange<unsigned>(0, 4);
        int policy = in_.ConsumeIntegralInRange<int>(0, 2);
        if (slot.live && !options_.exact) Reclaim(slot, arg, policy);
        break;
      }
      case kStats: {
        Slot &slot = DecodeSlot();
        if (slot.live) CheckPages(slot);
        break;
      }
      case kSetCpu: {
        int cpu = in_.ConsumeIntegralInRange<int>(0, kc_nr_cpus() - 1);
        if (Tracing()) TraceLine("kc_set_cpu(%d)", cpu);
        kc_set_cpu(cpu);
        break;
      }
      case kFailNth: {
        unsigned long nth = in_.ConsumeIntegralInRange<unsigned long>(1, 6);
        if (!options_.fault_injection) break;
        if (Tracing()) TraceLine("kc_fail_nth_alloc(%lu)", nth);
        kc_fail_nth_alloc(nth);
        break;
      }
      case kValidate:
        ValidateAll();
        break;
      case kMallocMany: {
        Slot &slot = DecodeSlot();
        int count = in_.ConsumeIntegralInRange<int>(2, 48);
        size_t size = DecodeSize(slot);
        gfp_t gfp = DecodeGfp();
        if (slot.live)
          for (int i = 0; i < count; i++) Malloc(slot, size, gfp);
        break;
      }
      case kFreeMany: {  // every stride-th object: fragments zspages for compaction
        Slot &slot = DecodeSlot();
        size_t stride = in_.ConsumeIntegralInRange<size_t>(2, 4);
        if (!slot.live) break;
        for (size_t i = slot.objects.size(); i-- > 0;)
          if (i % stride == 0) Free(slot, i);
        break;
      }
      case kProperties: {
        Slot &slot = DecodeSlot();
        if (!slot.live) break;
        for (int k = 0; k < nsub_; k++) {
          std::string why = slot.subjects[k]->CheckProperties(slot.with_evict);
          ZFUZZ_CHECK(why.empty(), "%s: properties contradict the contract:%s",
                      KindName(options_.kinds[static_cast<size_t>(k)]), why.c_str());
        }
        break;
      }
      case kMigrate: {
        unsigned long page = in_.ConsumeIntegralInRange<unsigned long>(0, 1023);
        int action = in_.ConsumeIntegralInRange<int>(0, 2);
        Migrate(page, action);
        break;
      }
      case kOpCount:
        break;
    }
  }

  // The project's allocators allocate only where the contract says a call can fail, so an
  // injected failure that fires must fail that call, and no other call may meet one. The
  // kernel's own files also allocate on the side (z3fold's handle slots in free and compaction)
  // and fall back when that fails: for them a failure that fired may be survived, but a call
  // that met none must still succeed.
  static bool Tolerant(const Subject &subject) { return IsUpstream(subject.kind()); }

  // Runs fn(k) for each subject with fault-injection accounting: returns whether the injected
  // failure fired during that subject's call.
  template <class Fn>
  bool Call(Fn &&fn) {
    unsigned long pending = kc_fail_nth_pending();
    fn();
    return pending > 0 && kc_fail_nth_pending() == 0;
  }

  void Create(Slot &slot, bool with_evict) {
    bool ok[kMaxSubjects] = {};
    for (int k = 0; k < nsub_; k++) {
      bool fired = Call([&] { ok[k] = slot.subjects[k]->Create(with_evict); });
      ZFUZZ_CHECK(ok[k] != fired || (fired && Tolerant(*slot.subjects[k])), "%s: create returned %s although the injected allocation "
                  "failure %s", KindName(options_.kinds[static_cast<size_t>(k)]),
                  ok[k] ? "a pool" : "NULL", fired ? "fired" : "did not fire");
    }
    bool all = true, any = false;
    for (int k = 0; k < nsub_; k++) {
      all = all && ok[k];
      any = any || ok[k];
    }
    if (any && !all) {  // one failed under injection: drop the others too
      for (int k = 0; k < nsub_; k++)
        if (ok[k]) slot.subjects[k]->Destroy();
      return;
    }
    slot.live = ok[0];
    slot.with_evict = with_evict;
    if (slot.live) {
      for (int k = 0; k < nsub_; k++) {
        slot.subjects[k]->set_evict([this, &slot, k](unsigned long handle) {
          return OnEvict(slot, k, handle);
        });
      }
    }
  }

  void Destroy(Slot &slot) {
    // Legal: free every object first (destroying a non-empty pool is the misuse target's).
    while (!slot.objects.empty()) Free(slot, slot.objects.size() - 1);
    for (int k = 0; k < nsub_; k++) {
      slot.subjects[k]->Quiesce();  // pages some backends free from a work item
      ZFUZZ_CHECK(slot.subjects[k]->TotalPages() == 0, "%s: pages left after freeing everything",
                  KindName(options_.kinds[static_cast<size_t>(k)]));
      slot.subjects[k]->Destroy();
    }
    slot.live = false;
  }

  int ExpectedMallocError(const Subject &subject, size_t size, gfp_t gfp) const {
    if (size == 0) return -EINVAL;
    if (subject.RejectsHighmem() && (gfp & __GFP_HIGHMEM)) return -EINVAL;
    if (size > subject.MaxSize()) return -ENOSPC;
    return 0;
  }

  void Malloc(Slot &slot, size_t size, gfp_t gfp) {
    Object obj;
    obj.id = next_id_++;
    obj.size = size;
    bool any = false;
    for (int k = 0; k < nsub_; k++) {
      Subject &subject = *slot.subjects[k];
      unsigned long handle = 0;
      int err = 0;
      bool fired = Call([&] { err = subject.Malloc(size, gfp, &handle, obj.id); });
      int expected = ExpectedMallocError(subject, size, gfp);
      if (expected == 0 && fired && !(err == 0 && Tolerant(subject))) expected = -ENOMEM;
      ZFUZZ_CHECK(err == expected, "%s: malloc(%zu, %s) returned %d, expected %d",
                  KindName(subject.kind()), size, GfpName(gfp).c_str(), err, expected);
      if (err == 0) {
        obj.handle[k] = handle;
        obj.present[k] = true;
        any = true;
        for (const Object &other : slot.objects)
          ZFUZZ_CHECK(!other.present[k] || other.handle[k] != handle,
                      "%s: malloc returned h%d's handle again for h%d",
                      KindName(subject.kind()), other.id, obj.id);
      }
    }
    if (options_.exact)
      for (int k = 0; k + 1 < nsub_; k += 2)
        ZFUZZ_CHECK(obj.present[k] == obj.present[k + 1],
                    "malloc(%zu, %s) of h%d: %s %s, %s %s", size, GfpName(gfp).c_str(), obj.id,
                    KindName(slot.subjects[k]->kind()), obj.present[k] ? "succeeded" : "failed",
                    KindName(slot.subjects[k + 1]->kind()),
                    obj.present[k + 1] ? "succeeded" : "failed");
    if (!any) return;
    // Initialise through a WO mapping, as zswap/zram do.
    long shape[kMaxSubjects] = {};
    for (int k = 0; k < nsub_; k++) {
      if (!obj.present[k]) continue;
      void *p = nullptr;
      bool fired = Call([&] { p = slot.subjects[k]->Map(obj.handle[k], MapMode::kWO, obj.id); });
      ZFUZZ_CHECK(!fired || Tolerant(*slot.subjects[k]), "%s: map consumed an injected allocation failure",
                  KindName(slot.subjects[k]->kind()));
      ZFUZZ_CHECK(p != nullptr, "%s: map WO of a fresh object returned NULL",
                  KindName(slot.subjects[k]->kind()));
      shape[k] = MapShape(p);
      Fill(static_cast<uint8_t *>(p), obj);
      slot.subjects[k]->Unmap(obj.handle[k], obj.id);
    }
    CheckSameShape(slot, obj, shape, MapMode::kWO);
    slot.objects.push_back(obj);
  }

  void VerifyThroughMap(Slot &slot, const Object &obj, int k, const char *when) {
    void *p = slot.subjects[k]->Map(obj.handle[k], MapMode::kRO, obj.id);
    ZFUZZ_CHECK(p != nullptr, "%s: map RO returned NULL", KindName(slot.subjects[k]->kind()));
    Verify(static_cast<const uint8_t *>(p), obj, k, when);
    slot.subjects[k]->Unmap(obj.handle[k], obj.id);
  }

  void Free(Slot &slot, size_t index) {
    Object obj = slot.objects[index];
    slot.objects[index] = slot.objects.back();
    slot.objects.pop_back();
    for (int k = 0; k < nsub_; k++) {
      if (!obj.present[k]) continue;
      VerifyThroughMap(slot, obj, k, "before free");
      bool fired = Call([&] { slot.subjects[k]->Free(obj.handle[k], obj.id); });
      ZFUZZ_CHECK(!fired || Tolerant(*slot.subjects[k]), "%s: free consumed an injected allocation failure",
                  KindName(slot.subjects[k]->kind()));
    }
  }

  void MapAccess(Slot &slot, size_t index, MapMode mode) {
    Object &obj = slot.objects[index];
    uint32_t next_gen = obj.gen + 1;
    long shape[kMaxSubjects] = {};
    for (int k = 0; k < nsub_; k++) {
      if (!obj.present[k]) continue;
      Subject &subject = *slot.subjects[k];
      bool fired = false;
      void *p = nullptr;
      fired = Call([&] { p = subject.Map(obj.handle[k], mode, obj.id); });
      ZFUZZ_CHECK(!fired || Tolerant(subject), "%s: map consumed an injected allocation failure",
                  KindName(subject.kind()));
      ZFUZZ_CHECK(p != nullptr, "%s: map %s of h%d returned NULL", KindName(subject.kind()),
                  MapModeName(mode), obj.id);
      auto *bytes = static_cast<uint8_t *>(p);
      shape[k] = MapShape(p);
      if (mode != MapMode::kWO) Verify(bytes, obj, k, "mapped");
      if (mode != MapMode::kRO) {
        Object rewritten = obj;
        rewritten.gen = next_gen;
        Fill(bytes, rewritten);
        if (Tracing()) TraceLine("memcpy(p, pattern(h%d, generation %u), %zu)", obj.id, next_gen,
                                 obj.size);
      }
      subject.Unmap(obj.handle[k], obj.id);
    }
    CheckSameShape(slot, obj, shape, mode);
    if (mode != MapMode::kRO) obj.gen = next_gen;
  }

  // Where a mapping points: its offset in a page of the pool, or -1 for a copy (an object that
  // spans two pages, mapped through the per-CPU buffer).
  static long MapShape(const void *p) {
    return virt_to_page(p) != nullptr ? static_cast<long>(reinterpret_cast<uintptr_t>(p) &
                                                          (PAGE_SIZE - 1))
                                      : -1;
  }

  void CheckSameShape(const Slot &slot, const Object &obj, const long *shape, MapMode mode) {
    if (!options_.exact) return;
    for (int k = 0; k + 1 < nsub_; k += 2) {
      if (!obj.present[k] || !obj.present[k + 1] || shape[k] == shape[k + 1]) continue;
      char a[32], b[32];
      snprintf(a, sizeof(a), shape[k] < 0 ? "a copy" : "page offset %ld", shape[k]);
      snprintf(b, sizeof(b), shape[k + 1] < 0 ? "a copy" : "page offset %ld", shape[k + 1]);
      ZFUZZ_CHECK(false, "map %s of h%d (%zu bytes): %s maps %s, %s maps %s", MapModeName(mode),
                  obj.id, obj.size, KindName(slot.subjects[k]->kind()), a,
                  KindName(slot.subjects[k + 1]->kind()), b);
    }
  }

  unsigned long Pages(Slot &slot, int k) {
    bool tracing = Tracing();
    SetTracing(false);  // a bookkeeping read, not part of the program
    unsigned long pages = slot.subjects[k]->TotalPages();
    SetTracing(tracing);
    return pages;
  }

  void Compact(Slot &slot) {
    unsigned long freed_by[kMaxSubjects] = {}, compacted[kMaxSubjects] = {};
    for (int k = 0; k < nsub_; k++) {
      Subject &subject = *slot.subjects[k];
      if (!subject.CanCompact()) continue;
      unsigned long before = Pages(slot, k), compacted_before = subject.PagesCompacted();
      unsigned long freed = 0;
      bool fired = Call([&] { freed = subject.Compact(); });
      ZFUZZ_CHECK(!fired || Tolerant(subject), "%s: compaction consumed an injected allocation failure",
                  KindName(subject.kind()));
      unsigned long after = Pages(slot, k);
      ZFUZZ_CHECK(before - after == freed,
                  "%s: zs_compact returned %lu but pages went from %lu to %lu",
                  KindName(subject.kind()), freed, before, after);
      ZFUZZ_CHECK(subject.PagesCompacted() == compacted_before + freed,
                  "%s: pages_compacted went from %lu to %lu after freeing %lu",
                  KindName(subject.kind()), compacted_before, subject.PagesCompacted(), freed);
      freed_by[k] = freed;
      compacted[k] = subject.PagesCompacted();
    }
    if (options_.exact) {
      for (int k = 0; k + 1 < nsub_; k += 2) {
        ZFUZZ_CHECK(freed_by[k] == freed_by[k + 1] && compacted[k] == compacted[k + 1],
                    "compaction: %s freed %lu pages (pages_compacted %lu), %s freed %lu (%lu)",
                    KindName(slot.subjects[k]->kind()), freed_by[k], compacted[k],
                    KindName(slot.subjects[k + 1]->kind()), freed_by[k + 1], compacted[k + 1]);
      }
      CheckSameClasses(slot);
    }
    // Every object still maps to its own contents.
    for (const Object &obj : slot.objects)
      for (int k = 0; k < nsub_; k++)
        if (obj.present[k] && slot.subjects[k]->CanCompact())
          VerifyThroughMap(slot, obj, k, "after compaction");
  }

  // The evict callback: policy 0 frees every handle, 1 refuses every one (-EBUSY), 2 frees the
  // handles of even-numbered objects only.
  int OnEvict(Slot &slot, int k, unsigned long handle) {
    auto it = std::find_if(slot.objects.begin(), slot.objects.end(), [&](const Object &o) {
      return o.present[k] && o.handle[k] == handle;
    });
    ZFUZZ_CHECK(it != slot.objects.end(), "%s: evict called with a handle that is not live",
                KindName(slot.subjects[k]->kind()));
    Object obj = *it;
    if (Tracing()) TraceLine("  evict(%s, h%d) policy %d", slot.subjects[k]->pool_name(), obj.id,
                             evict_policy_);
    if (evict_policy_ == 1 || (evict_policy_ == 2 && obj.id % 2)) return -EBUSY;
    VerifyThroughMap(slot, obj, k, "in evict");
    slot.subjects[k]->Free(handle, obj.id);
    it->present[k] = false;
    if (!it->PresentAnywhere()) slot.objects.erase(it);
    evicted_++;
    return 0;
  }

  void Reclaim(Slot &slot, unsigned arg, int policy) {
    evict_policy_ = policy;
    for (int k = 0; k < nsub_; k++) {
      Subject &subject = *slot.subjects[k];
      size_t live = 0;
      for (const Object &obj : slot.objects) live += obj.present[k];
      unsigned long before = Pages(slot, k);
      unsigned reclaimed = 0;
      int err = 0;
      evicted_ = 0;
      bool fired = Call([&] { err = subject.Reclaim(arg, &reclaimed); });
      ZFUZZ_CHECK(!fired, "%s: reclaim consumed an injected allocation failure",
                  KindName(subject.kind()));
      unsigned long after = Pages(slot, k);
      if (!subject.CanEvict()) {
        ZFUZZ_CHECK(err == -EINVAL && reclaimed == 0, "%s: shrink without eviction returned %d",
                    KindName(subject.kind()), err);
        continue;
      }
      bool zpool = subject.kind() == Kind::kZpoolZbud;
      if (!slot.with_evict || live == 0 || arg == 0) {
        // zbud_reclaim_page: -EINVAL without evict, with an empty LRU, with 0 retries. zpool's
        // shrink of 0 pages reclaims nothing.
        ZFUZZ_CHECK(after == before && evicted_ == 0,
                    "%s: a reclaim that cannot run changed the pool (%lu -> %lu pages)",
                    KindName(subject.kind()), before, after);
        if (!zpool || !slot.with_evict || live == 0)
          ZFUZZ_CHECK(err == -EINVAL, "%s: reclaim expected -EINVAL, got %d",
                      KindName(subject.kind()), err);
        continue;
      }
      // zpool's shrink over zbud reclaims page after page and returns the last answer: -EINVAL
      // when the LRU ran empty before enough pages were reclaimed (as the kernel's does).
      ZFUZZ_CHECK(err == 0 || err == -EAGAIN || (zpool && err == -EINVAL && after == 0),
                  "%s: reclaim returned %d (%lu -> %lu pages)", KindName(subject.kind()), err,
                  before, after);
      ZFUZZ_CHECK(before - after == reclaimed,
                  "%s: reclaim reports %u pages but the pool went from %lu to %lu pages",
                  KindName(subject.kind()), reclaimed, before, after);
      if (policy == 0)
        ZFUZZ_CHECK(err == 0 || (zpool && err == -EINVAL && after == 0),
                    "%s: reclaim with an evict that frees everything failed (%d)",
                    KindName(subject.kind()), err);
      if (policy == 1)
        ZFUZZ_CHECK(err == -EAGAIN && reclaimed == 0 && evicted_ == 0,
                    "%s: reclaim with an evict that refuses returned %d, %u pages",
                    KindName(subject.kind()), err, reclaimed);
      if (!zpool && err == 0) ZFUZZ_CHECK(reclaimed == 1, "zbud: reclaim of one page");
      if (zpool && err == 0)
        ZFUZZ_CHECK(reclaimed == arg, "zpool/zbud: shrink(%u) returned 0 with %u reclaimed", arg,
                    reclaimed);
    }
  }

  void CheckPages(Slot &slot) {
    for (int k = 0; k < nsub_; k++) {
      Subject &subject = *slot.subjects[k];
      size_t live = 0, bytes = 0;
      for (const Object &obj : slot.objects) {
        if (!obj.present[k]) continue;
        live++;
        bytes += obj.size;
      }
      unsigned long pages = subject.TotalPages();
      const char *name = KindName(subject.kind());
      if (live == 0) {
        ZFUZZ_CHECK(pages == 0, "%s: %lu pages with no live object", name, pages);
        continue;
      }
      ZFUZZ_CHECK(pages * PAGE_SIZE >= bytes, "%s: %lu pages cannot hold %zu live bytes", name,
                  pages, bytes);
      if (subject.kind() == Kind::kUpstreamZpoolZ3fold) {
        ZFUZZ_CHECK(pages >= (live + 2) / 3 && pages <= live,
                    "%s: %lu pages for %zu objects (3 buddies a page at most, no empty page)",
                    name, pages, live);
      } else if (subject.kind() == Kind::kZbud || subject.kind() == Kind::kZpoolZbud ||
                 subject.kind() == Kind::kUpstreamZpoolZbud) {
        ZFUZZ_CHECK(pages >= (live + 1) / 2 && pages <= live,
                    "%s: %lu pages for %zu objects (2 buddies a page at most, no empty page)",
                    name, pages, live);
      } else {
        // Each object occupies at most one zspage's worth of pages (the chain size).
        ZFUZZ_CHECK(pages <= live * 16, "%s: %lu pages for %zu objects", name, pages, live);
      }
    }
  }

  // ---- the exact differential (ProgramOptions::exact) ---------------------------------------
  void CheckSamePages() {
    for (Slot &slot : slots_) {
      if (!slot.live) continue;
      for (int k = 0; k + 1 < nsub_; k += 2) {
        unsigned long a = Pages(slot, k), b = Pages(slot, k + 1);
        ZFUZZ_CHECK(a == b, "total pages of %s: %s %lu, %s %lu", slot.subjects[k]->pool_name(),
                    KindName(slot.subjects[k]->kind()), a, KindName(slot.subjects[k + 1]->kind()),
                    b);
      }
    }
  }

  // Every class's geometry and statistics (zsmalloc pairs).
  void CheckSameClasses(Slot &slot) {
    for (int k = 0; k + 1 < nsub_; k += 2) {
      Subject &a = *slot.subjects[k], &b = *slot.subjects[k + 1];
      for (int index = 0;; index++) {
        ClassView ca, cb;
        bool ha = a.ClassAt(index, &ca), hb = b.ClassAt(index, &cb);
        ZFUZZ_CHECK(ha == hb, "class %d: %s %s it, %s %s", index, KindName(a.kind()),
                    ha ? "has" : "lacks", KindName(b.kind()), hb ? "has" : "lacks");
        if (!ha) break;
        if (ca == cb) continue;
        ZFUZZ_CHECK(false, "class %d: %s %s, %s %s", index, KindName(a.kind()),
                    Describe(ca).c_str(), KindName(b.kind()), Describe(cb).c_str());
      }
    }
  }

  static std::string Describe(const ClassView &c) {
    char buf[320];
    int n = snprintf(buf, sizeof(buf), "{class %d, size %d, %d pages, %d objs; allocated %lu, "
                     "in use %lu; zspages by fullness", c.index, c.size, c.pages_per_zspage,
                     c.objs_per_zspage, c.allocated, c.inuse);
    for (unsigned long z : c.zspages)
      if (n > 0 && static_cast<size_t>(n) < sizeof(buf))
        n += snprintf(buf + n, sizeof(buf) - static_cast<size_t>(n), " %lu", z);
    return std::string(buf) + "}";
  }

  // ---- page migration (upstream subjects) ------------------------------------------------------
  // The upstream files' pages are one list (the bridge's), whichever pool holds them: the first
  // subject that can migrate does, once; then every object of every upstream subject must still
  // hold its bytes (the pages and classes are compared after the operation, as always).
  void Migrate(unsigned long page, int action) {
    for (int k = 0; k < nsub_; k++) {
      if (slots_[0].subjects[k]->Migrate(page, action) == -EOPNOTSUPP) continue;
      for (Slot &slot : slots_) {
        if (!slot.live) continue;
        for (const Object &obj : slot.objects)
          for (int j = 0; j < nsub_; j++)
            if (obj.present[j] && IsUpstream(slot.subjects[j]->kind()))
              VerifyThroughMap(slot, obj, j, "after page migration");
      }
      return;
    }
  }

  void Quiesce() {
    for (Slot &slot : slots_)
      for (int k = 0; k < nsub_; k++) slot.subjects[k]->Quiesce();
  }

  // A validator that cannot fail proves nothing: after each clean validation, one corruption
  // (in turn, on a live object chosen by the count) must be caught, and the pool stays valid.
  void CheckValidatorCatches(Slot &slot, int k) {
    Subject &subject = *slot.subjects[k];
    if (subject.Corruptions() == 0 || slot.objects.empty()) return;
    const int kind = static_cast<int>(validations_ % subject.Corruptions());
    const Object &o = slot.objects[validations_ / subject.Corruptions() % slot.objects.size()];
    validations_++;
    if (!o.present[k]) return;
    char why[512] = "";
    int err = subject.ValidateCorrupted(o.handle[k], kind, why, sizeof(why));
    ZFUZZ_CHECK(err == -EUCLEAN || err == -EINVAL,
                "%s: the validator missed corruption %d of h%d (returned %d)",
                KindName(subject.kind()), kind, o.id, err);
    err = subject.Validate(why, sizeof(why));
    ZFUZZ_CHECK(err == 0, "%s: not restored after corruption %d: %s", KindName(subject.kind()),
                kind, why);
  }

  void ValidateAll() {
    for (Slot &slot : slots_) {
      if (!slot.live) continue;
      for (int k = 0; k < nsub_; k++) {
        char why[512] = "";
        int err = slot.subjects[k]->Validate(why, sizeof(why));
        ZFUZZ_CHECK(err == 0, "%s: validator: %s", KindName(slot.subjects[k]->kind()), why);
        CheckValidatorCatches(slot, k);
      }
      CheckPages(slot);
      if (options_.exact) CheckSameClasses(slot);
    }
  }

  void Teardown() {
    kc_fail_nth_alloc(0);
    ValidateAll();
    for (Slot &slot : slots_)
      if (slot.live) Destroy(slot);
    ZFUZZ_CHECK(kc_pages_in_use() == pages_before_,
                "pages leaked: %lu in use after teardown, %lu before",
                kc_pages_in_use(), pages_before_);
    ZFUZZ_CHECK(kc_meta_in_use() == meta_before_,
                "metadata leaked: %lu objects in use after teardown, %lu before",
                kc_meta_in_use(), meta_before_);
    ZFUZZ_CHECK(zpool_misuse_total() == 0, "a legal program reported a misuse");
  }

  Reader in_;
  const ProgramOptions &options_;
  const int nsub_;
  uint64_t seed_;
  std::vector<Slot> slots_;
  int next_id_ = 0;
  int evict_policy_ = 0;
  int evicted_ = 0;
  unsigned long pages_before_ = 0, meta_before_ = 0;
  unsigned long validations_ = 0;  // clean validations so far: picks the next corruption
};

std::atomic<unsigned long> g_operations{0};

void PrintOperationsAtExit() {
  fprintf(stderr, "zfuzz: operations executed: %lu\n", g_operations.load());
}

}  // namespace

void InitializeHarness(kc_warn_policy policy) {
  // Inputs choose virtual CPUs: their meaning must not depend on the machine (or on
  // ZPOOL_NR_CPUS), so every harness runs on 4 virtual CPUs.
  kc_set_nr_cpus(kHarnessCpus);
  // ZPOOL_WARN in the environment wins (e.g. ZPOOL_WARN=log to see the reports of a target that
  // records WARNs silently); a target's oracle is meant for its own policy.
  const char *warn_env = getenv("ZPOOL_WARN");
  if (warn_env == nullptr || *warn_env == '\0') kc_set_warn_policy(policy);
  kc_set_console_loglevel(KC_LOG_WARNING);  // pr_err only: injected failures are not news
  kc_set_hardening(KC_HARDENING_FULL);
  kc::PrewarmForFuzzing(/*pages=*/2048, /*slabs=*/16);
  // One pool of each kind created and destroyed before the first input: the lazily made caches
  // (pool and handle slabs, driver lookups) are then made here, not in whichever input comes
  // first, so every input takes the same paths on every run (AFL++ stability).
  const bool tracing = Tracing();
  SetTracing(false);
  for (Kind kind : {Kind::kZbud, Kind::kZsmalloc, Kind::kZpoolZbud, Kind::kZpoolZsmalloc}) {
    std::unique_ptr<Subject> subject = MakeSubject(kind, 0);
    if (subject->Create(/*with_evict=*/true)) subject->Destroy();
  }
  SetTracing(tracing);
  ResetKernelState();
  if (const char *env = getenv("ZFUZZ_PRINT_OPS"); env != nullptr && strcmp(env, "1") == 0)
    atexit(PrintOperationsAtExit);
}

std::string CompareClassTables(Kind a, Kind b) {
  const bool tracing = Tracing();
  SetTracing(false);
  std::unique_ptr<Subject> sa = MakeSubject(a, 0), sb = MakeSubject(b, 0);
  std::string why;
  char buf[512];
  const bool made_a = sa->Create(false), made_b = sb->Create(false);
  if (!made_a || !made_b) {
    why = "could not create the pools";
  } else if (sa->HugeClassSize() != sb->HugeClassSize()) {
    snprintf(buf, sizeof(buf), "zs_huge_class_size: %s %zu, %s %zu", KindName(a),
             sa->HugeClassSize(), KindName(b), sb->HugeClassSize());
    why = buf;
  } else {
    for (size_t size = 1; size <= PAGE_SIZE && why.empty(); size++) {
      ClassView ca, cb;
      bool ha = sa->LookupClass(size, &ca), hb = sb->LookupClass(size, &cb);
      if (ha && hb && ca == cb) continue;
      snprintf(buf, sizeof(buf),
               "the class of %zu bytes: %s {class %d, size %d, %d pages, %d objs}, %s {class %d, "
               "size %d, %d pages, %d objs}",
               size, KindName(a), ha ? ca.index : -1, ca.size, ca.pages_per_zspage,
               ca.objs_per_zspage, KindName(b), hb ? cb.index : -1, cb.size, cb.pages_per_zspage,
               cb.objs_per_zspage);
      why = buf;
    }
  }
  if (made_a) sa->Destroy();
  if (made_b) sb->Destroy();
  SetTracing(tracing);
  return why;
}

uint64_t FdpChoices::Pick(uint64_t min, uint64_t max) {
  return in_.ConsumeIntegralInRange<uint64_t>(min, max);
}

bool FdpChoices::Exhausted() const { return in_.remaining_bytes() == 0; }

uint64_t ScriptChoices::Pick(uint64_t min, uint64_t max) {
  uint64_t value = min;
  if (next_ < script_.size()) {
    value = script_[next_++];
    if (value < min || value > max) {
      fprintf(stderr, "zfuzz: seed script value %llu at position %zu is outside [%llu, %llu]\n",
              static_cast<unsigned long long>(value), next_ - 1,
              static_cast<unsigned long long>(min), static_cast<unsigned long long>(max));
      abort();
    }
  }
  // FuzzedDataProvider reads an integer's bytes from the end of the input, most significant
  // first, as many as the range needs. Record them in reading order; Bytes() reverses.
  uint64_t range = max - min, offset = value - min;
  int nbytes = 0;
  while (nbytes < 8 && (range >> (8 * nbytes)) > 0) nbytes++;
  for (int i = nbytes - 1; i >= 0; i--) read_order_.push_back(static_cast<uint8_t>(offset >> (8 * i)));
  return value;
}

bool ScriptChoices::Exhausted() const { return next_ >= script_.size(); }

std::vector<uint8_t> ScriptChoices::Bytes() const {
  return std::vector<uint8_t>(read_order_.rbegin(), read_order_.rend());
}

uint64_t SeedOf(const uint8_t *data, size_t size) {
  return size >= 1 ? Mix(data[0] | (uint64_t{data[size - 1]} << 8) | (uint64_t{size} << 16))
                   : Mix(0);
}

int RunChoices(Choices &choices, uint64_t seed, const ProgramOptions &options) {
  ResetKernelState();
  int ops = 0;
  {
    Runner runner(choices, seed, options);
    ops = runner.Run();
  }
  if (Tracing()) TraceLine("/* end of program: %d operations */", ops);
  ResetKernelState();
  g_operations.fetch_add(static_cast<unsigned long>(ops), std::memory_order_relaxed);
  return ops;
}

int RunProgram(const uint8_t *data, size_t size, const ProgramOptions &options) {
  if (Tracing()) TraceLine("/* program: %zu input bytes */", size);
  FdpChoices choices(data, size);
  return RunChoices(choices, SeedOf(data, size), options);
}

}  // namespace zfuzz

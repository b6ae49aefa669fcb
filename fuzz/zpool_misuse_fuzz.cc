// SPDX-License-Identifier: GPL-2.0-only
// zpool_misuse_fuzz: legal operations interleaved with the hardening catalogue's misuses
// (docs/hardening.md), on zbud, zsmalloc, zpool over zbud or zpool over zsmalloc (chosen by the
// first choice of the input), under the record warning policy.
//
// The oracle, after every operation: the WARN count rose by exactly as many WARNs as the
// operation's misuse must fire (0 or 1), of exactly the right kind (zpool_misuse_count), the
// call returned what the catalogue says (NULL, -EINVAL, refused...), the backend's validator
// passes, and every legal object still holds its pattern (checked through RO maps). At the end
// everything is freed and no page or metadata object is leaked. What each backend must report
// differs where the catalogue says so: a nested map is legal in zbud's own API, a zbud mapping
// may sleep, zbud has no read-only mappings to checksum, only zsmalloc compacts.
// Overflow writes are made only in builds without ASan or MSan: under ASan the write itself is
// the report (sanitizer-aware memory), and under MSan the redzone bytes cannot be read to be
// changed. The unit tests cover those builds.
#include <fuzzer/FuzzedDataProvider.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "fuzz/api/program.h"
#include "fuzz/api/subject.h"
#include "zpool/kernel/lock.h"
#include "zpool/kernel/sanitizer.h"
#include "zpool/misuse.h"
#include "zpool/zbud.h"
#include "zpool/zsmalloc.h"

namespace {

using zfuzz::Kind;
using zfuzz::MapMode;
using zfuzz::Subject;
using zfuzz::TraceLine;
using zfuzz::Tracing;

constexpr zpool_misuse NONE = ZPOOL_MISUSE_NONE;

uint64_t Mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

struct Obj {
  int id;
  unsigned long handle;
  size_t size;
  uint32_t gen;
};

// The lock a misbehaving caller holds around a call that may sleep (SleepInAtomic).
constinit kc::LockClass g_atomic_lock_class("misuse caller's spinlock");

// A pool only used to look up zsmalloc's size classes (for the redzone slack); created once.
struct zs_pool *g_class_pool = nullptr;

class Run {
 public:
  Run(FuzzedDataProvider &in, Kind kind) : in_(in), kind_(kind) {
    zbud_like_ = kind == Kind::kZbud || kind == Kind::kZpoolZbud;
    via_zpool_ = kind == Kind::kZpoolZbud || kind == Kind::kZpoolZsmalloc;
  }

  void Go() {
    pages_before_ = kc_pages_in_use();
    meta_before_ = kc_meta_in_use();
    main_ = zfuzz::MakeSubject(kind_, 0);
    other_ = zfuzz::MakeSubject(kind_, 1);
    CreateMain();
    ZFUZZ_CHECK(other_->Create(false), "second pool creation failed");
    ZFUZZ_CHECK(other_->Malloc(100, GFP_KERNEL, &foreign_, 1000) == 0, "foreign malloc failed");
    for (int step = 0; step < 96 && in_.remaining_bytes() > 0; step++) {
      Step(in_.ConsumeIntegralInRange<int>(0, kLastOp));
      char why[512] = "";
      ZFUZZ_CHECK(main_->Validate(why, sizeof(why)) == 0, "validator after a misuse: %s", why);
      if (step % 8 == 7) VerifyAll("periodic check");
    }
    VerifyAll("end of program");
    while (!objects_.empty()) FreeLegal(objects_.size() - 1);
    main_->Destroy();
    other_->Free(foreign_, 1000);
    other_->Destroy();
    ZFUZZ_CHECK(kc_pages_in_use() == pages_before_ && kc_meta_in_use() == meta_before_,
                "leak: pages %lu -> %lu, metadata %lu -> %lu", pages_before_, kc_pages_in_use(),
                meta_before_, kc_meta_in_use());
  }

 private:
  // ---- expectations ----------------------------------------------------------------------------
  struct Snapshot {
    unsigned long warns;
    unsigned long counts[ZPOOL_MISUSE_COUNT];
  };
  static Snapshot Take() {
    Snapshot s;
    s.warns = kc_warn_count();
    for (int k = 0; k < ZPOOL_MISUSE_COUNT; k++)
      s.counts[k] = zpool_misuse_count(static_cast<zpool_misuse>(k));
    return s;
  }
  // The operation since `before` fired exactly one WARN, of kind `a` (or `b`), or none if a is
  // NONE.
  void Expect(const Snapshot &before, const char *what, zpool_misuse a, zpool_misuse b = NONE) {
    Snapshot now = Take();
    unsigned long warns = now.warns - before.warns;
    std::string kinds;
    for (int k = 1; k < ZPOOL_MISUSE_COUNT; k++) {
      if (now.counts[k] != before.counts[k]) {
        kinds += " ";
        kinds += zpool_misuse_name(static_cast<zpool_misuse>(k));
      }
    }
    if (a == NONE) {
      ZFUZZ_CHECK(warns == 0, "%s on %s: %lu unexpected WARNs (%s )", what,
                  zfuzz::KindName(kind_), warns, kinds.c_str());
      return;
    }
    bool got_a = now.counts[a] == before.counts[a] + 1;
    bool got_b = b != NONE && now.counts[b] == before.counts[b] + 1;
    ZFUZZ_CHECK(warns == 1 && (got_a || got_b) && kinds.find(' ', 1) == std::string::npos,
                "%s on %s: expected one %s%s%s WARN, got %lu WARNs of kinds (%s )", what,
                zfuzz::KindName(kind_), zpool_misuse_name(a), b != NONE ? " or " : "",
                b != NONE ? zpool_misuse_name(b) : "", warns, kinds.c_str());
  }
  void Note(const char *text) {
    if (Tracing()) TraceLine("%s", text);
  }

  // ---- patterns ----------------------------------------------------------------------------------
  uint64_t Word(const Obj &o, size_t w) const {
    return Mix((uint64_t(o.id) << 40) ^ (uint64_t(o.gen) << 20) ^ w);
  }
  void Fill(uint8_t *p, const Obj &o) const {
    for (size_t off = 0; off < o.size; off += 8) {
      uint64_t w = Word(o, off / 8);
      memcpy(p + off, &w, std::min<size_t>(8, o.size - off));
    }
  }
  void Verify(const uint8_t *p, const Obj &o, const char *when) const {
    for (size_t off = 0; off < o.size; off += 8) {
      uint64_t w = Word(o, off / 8);
      ZFUZZ_CHECK(memcmp(p + off, &w, std::min<size_t>(8, o.size - off)) == 0,
                  "%s: h%d (%zu bytes) differs at byte %zu: a misuse corrupted a legal object",
                  when, o.id, o.size, off);
    }
  }
  void VerifyOne(const Obj &o, const char *when) {
    Snapshot before = Take();
    void *p = main_->Map(o.handle, MapMode::kRO, o.id);
    ZFUZZ_CHECK(p != nullptr, "%s: RO map of live h%d returned NULL", when, o.id);
    Verify(static_cast<uint8_t *>(p), o, when);
    main_->Unmap(o.handle, o.id);
    Expect(before, when, NONE);
  }
  void VerifyAll(const char *when) {
    for (const Obj &o : objects_) VerifyOne(o, when);
  }
  void Rewrite(Obj &o) {
    o.gen++;
    void *p = main_->Map(o.handle, MapMode::kWO, o.id);
    ZFUZZ_CHECK(p != nullptr, "WO map of live h%d returned NULL", o.id);
    Fill(static_cast<uint8_t *>(p), o);
    main_->Unmap(o.handle, o.id);
  }

  // ---- legal operations ----------------------------------------------------------------------------
  void CreateMain() {
    ZFUZZ_CHECK(main_->Create(/*with_evict=*/true), "pool creation failed");
    main_->set_evict([this](unsigned long h) { return Evict(h); });
  }
  size_t DecodeSize() {
    return in_.ConsumeIntegralInRange<size_t>(1, std::min(main_->MaxSize(), zbud_max_alloc_size()));
  }
  void MallocLegal(size_t size, gfp_t gfp) {
    Snapshot before = Take();
    Obj o{next_id_++, 0, size, 0};
    int err = main_->Malloc(size, gfp, &o.handle, o.id);
    ZFUZZ_CHECK(err == 0, "malloc(%zu) failed: %d", size, err);
    Expect(before, "malloc", NONE);
    Rewrite(o);
    objects_.push_back(o);
  }
  void FreeLegal(size_t i) {
    Obj o = objects_[i];
    VerifyOne(o, "before free");
    objects_.erase(objects_.begin() + static_cast<long>(i));
    Snapshot before = Take();
    main_->Free(o.handle, o.id);
    Expect(before, "free", NONE);
    freed_.push_back({o.id, o.handle});
  }
  size_t Pick() { return in_.ConsumeIntegralInRange<size_t>(0, objects_.size() - 1); }
  bool HandleIsLive(unsigned long h) const {
    return std::any_of(objects_.begin(), objects_.end(), [h](const Obj &o) { return o.handle == h; });
  }

  // The evict callback of the main pool: policy decided by the operation that reclaims.
  int Evict(unsigned long handle) {
    if (evict_without_freeing_) return 0;  // the bad-evict misuse
    if (evict_frees_buddy_) {
      // The bad-evict misuse of the other kind: freeing a handle it was not given, the other
      // buddy of the page being reclaimed (zbud handles are addresses in the page).
      for (size_t i = 0; i < objects_.size() && !buddy_freed_; i++) {
        const Obj o = objects_[i];
        if (o.handle == handle || (o.handle & PAGE_MASK) != (handle & PAGE_MASK)) continue;
        Note("/* misuse: the evict callback frees the other buddy of its page */");
        objects_.erase(objects_.begin() + static_cast<long>(i));
        main_->Free(o.handle, o.id);
        freed_.push_back({o.id, o.handle});
        buddy_freed_ = true;
      }
      return -EBUSY;
    }
    if (destroy_in_evict_) {
      // The destroy-from-evict misuse: the reclaim that called us is a call in flight, so the
      // destroy must be refused and the pool stay usable (keep_stale: the subject keeps it).
      Note("/* misuse: the evict callback destroys its own pool */");
      main_->Destroy(/*keep_stale=*/true);
      destroys_in_evict_++;
      return -EBUSY;
    }
    return -EBUSY;                          // a legal refusal
  }

  // ---- the operations ------------------------------------------------------------------------------
  void Step(int op) {
    switch (op) {
      case 0:
      case 1:
        MallocLegal(DecodeSize(), in_.ConsumeBool() ? GFP_KERNEL : GFP_ATOMIC);
        return;
      case 2:
        if (!objects_.empty()) FreeLegal(Pick());
        return;
      case 3: {  // legal map access
        if (objects_.empty()) return;
        Obj &o = objects_[Pick()];
        VerifyOne(o, "map");
        Rewrite(o);
        return;
      }
      case 4: {  // legal compaction
        if (!main_->CanCompact()) return;
        Snapshot before = Take();
        main_->Compact();
        Expect(before, "compact", NONE);
        return;
      }
      case 5:
        DestroyNonEmpty();
        return;
      case 6:
        UseAfterDestroy();
        return;
      case 7:
        NestedMap();
        return;
      case 8:
        BadUnmap();
        return;
      case 9:
        FreeMapped();
        return;
      case 10:
        SleepWhileMapped();
        return;
      case 11:
        DestroyWhileMapped();
        return;
      case 12:
        DoubleFreeLatest(in_.ConsumeIntegralInRange<int>(0, 2));
        return;
      case 13:
        DoubleFreeOld();
        return;
      case 14: {  // (arguments read in order: a call's argument order is unspecified)
        int which = in_.ConsumeIntegralInRange<int>(0, 3);
        int call = in_.ConsumeIntegralInRange<int>(0, 2);
        InvalidHandle(which, call);
        return;
      }
      case 15:
        Overflow();
        return;
      case 16:
        WriteReadOnly();
        return;
      case 17:
        if (in_.ConsumeBool())
          EvictFreesBuddy();
        else
          BadEvict();
        return;
      case 18:
        UnmapWrongHandle();
        return;
      case 19:
        LegalReclaim();
        return;
      case 20:
        SleepInAtomic(in_.ConsumeIntegralInRange<int>(0, 3));
        return;
      case 21:
        DestroyFromEvict();
        return;
    }
  }
  static constexpr int kLastOp = 21;

  void DestroyNonEmpty() {
    if (objects_.empty()) return;
    Note("/* misuse: destroy a pool that still holds objects */");
    Snapshot before = Take();
    main_->Destroy();
    Expect(before, "destroy of a non-empty pool", ZPOOL_MISUSE_DESTROY_NONEMPTY);
    objects_.clear();
    freed_.clear();  // the pool's handles died with it
    CreateMain();
  }

  void UseAfterDestroy() {
    while (!objects_.empty()) FreeLegal(objects_.size() - 1);
    // A handle the pool once gave out (freed just before the destroy), or 0 when none was.
    const unsigned long stale = freed_.empty() ? 0 : freed_.back().second;
    const int stale_id = freed_.empty() ? -1 : freed_.back().first;
    main_->Destroy(/*keep_stale=*/true);
    // Every entry point must notice the destroyed pool, not only malloc.
    const int call = in_.ConsumeIntegralInRange<int>(0, 7);
    Note("/* misuse: a call on the pool just destroyed */");
    Snapshot before = Take();
    switch (call) {
      case 1:
        main_->Free(stale, stale_id);
        Expect(before, "free on a destroyed pool", ZPOOL_MISUSE_USE_AFTER_DESTROY);
        break;
      case 2: {
        void *p = main_->Map(stale, MapMode::kRO, stale_id);
        Expect(before, "map on a destroyed pool", ZPOOL_MISUSE_USE_AFTER_DESTROY);
        ZFUZZ_CHECK(p == nullptr, "map on a destroyed pool returned %p, not NULL", p);
        break;
      }
      case 3:
        main_->Unmap(stale, stale_id);
        Expect(before, "unmap on a destroyed pool", ZPOOL_MISUSE_USE_AFTER_DESTROY);
        break;
      case 4:
        if (main_->CanEvict()) {
          unsigned int reclaimed = 0;
          int err = main_->Reclaim(1, &reclaimed);
          Expect(before, "reclaim on a destroyed pool", ZPOOL_MISUSE_USE_AFTER_DESTROY);
          ZFUZZ_CHECK(err == -EINVAL && reclaimed == 0,
                      "reclaim on a destroyed pool returned %d (%u reclaimed), not -EINVAL", err,
                      reclaimed);
          break;
        }
        [[fallthrough]];
      case 5:
        if (main_->CanCompact()) {
          unsigned long freed = main_->Compact();
          Expect(before, "compaction of a destroyed pool", ZPOOL_MISUSE_USE_AFTER_DESTROY);
          ZFUZZ_CHECK(freed == 0, "compaction of a destroyed pool freed %lu pages", freed);
          break;
        }
        [[fallthrough]];
      case 6: {
        u64 pages = main_->TotalPages();
        Expect(before, "size of a destroyed pool", ZPOOL_MISUSE_USE_AFTER_DESTROY);
        ZFUZZ_CHECK(pages == 0, "a destroyed pool reports %llu pages",
                    static_cast<unsigned long long>(pages));
        break;
      }
      case 7:
        main_->Destroy();
        Expect(before, "destroy of a destroyed pool", ZPOOL_MISUSE_USE_AFTER_DESTROY);
        break;
      default: {
        unsigned long h = 0;
        int err = main_->Malloc(64, GFP_KERNEL, &h, next_id_);
        Expect(before, "malloc on a destroyed pool", ZPOOL_MISUSE_USE_AFTER_DESTROY);
        ZFUZZ_CHECK(err == -EINVAL, "malloc on a destroyed pool returned %d, not -EINVAL", err);
        break;
      }
    }
    if (call != 7) {  // (after a second destroy the subject holds no pool to validate)
      char why[256] = "";
      int err = main_->Validate(why, sizeof(why));
      ZFUZZ_CHECK(err == -EINVAL, "the validator of a destroyed pool returned %d (%s)", err, why);
    }
    freed_.clear();
    CreateMain();
  }

  void NestedMap() {
    if (objects_.empty()) return;
    Obj &a = objects_[Pick()];
    Obj &b = objects_[Pick()];
    void *pa = main_->Map(a.handle, MapMode::kRO, a.id);
    ZFUZZ_CHECK(pa != nullptr, "map of live h%d returned NULL", a.id);
    Note("/* misuse: a second map while this thread holds one */");
    Snapshot before = Take();
    void *pb = main_->Map(b.handle, MapMode::kRO, b.id);
    if (kind_ == Kind::kZbud) {  // legal in zbud's own API
      Expect(before, "nested zbud_map", NONE);
      ZFUZZ_CHECK(pb != nullptr, "nested zbud_map returned NULL");
      Verify(static_cast<uint8_t *>(pb), b, "nested map");
      main_->Unmap(b.handle, b.id);
    } else {
      Expect(before, "nested map", ZPOOL_MISUSE_NESTED_MAP);
      ZFUZZ_CHECK(pb == nullptr, "a nested map returned a pointer");
    }
    Verify(static_cast<uint8_t *>(pa), a, "the first mapping");
    main_->Unmap(a.handle, a.id);
  }

  void BadUnmap() {
    if (objects_.empty()) return;
    Obj &o = objects_[Pick()];
    Note("/* misuse: unmap of a handle that is not mapped */");
    Snapshot before = Take();
    main_->Unmap(o.handle, o.id);
    Expect(before, "unmap of an unmapped handle", ZPOOL_MISUSE_BAD_UNMAP);
  }

  void UnmapWrongHandle() {
    if (objects_.size() < 2) return;
    size_t i = Pick(), j = Pick();
    if (i == j) return;
    Obj &a = objects_[i];
    Obj &b = objects_[j];
    if (kind_ == Kind::kZbud) return;  // zbud tracks maps per buddy: covered by BadUnmap
    void *pa = main_->Map(a.handle, MapMode::kRO, a.id);
    ZFUZZ_CHECK(pa != nullptr, "map of live h%d returned NULL", a.id);
    Note("/* misuse: unmap of a different handle than the one mapped */");
    Snapshot before = Take();
    main_->Unmap(b.handle, b.id);
    Expect(before, "unmap of another handle", ZPOOL_MISUSE_BAD_UNMAP);
    Verify(static_cast<uint8_t *>(pa), a, "mapping after a bad unmap");
    main_->Unmap(a.handle, a.id);
  }

  void FreeMapped() {
    if (objects_.empty()) return;
    Obj &o = objects_[Pick()];
    void *p = main_->Map(o.handle, MapMode::kRO, o.id);
    ZFUZZ_CHECK(p != nullptr, "map of live h%d returned NULL", o.id);
    Note("/* misuse: free of the handle this thread maps */");
    Snapshot before = Take();
    main_->Free(o.handle, o.id);
    Expect(before, "free of a mapped handle", ZPOOL_MISUSE_FREE_MAPPED);
    Verify(static_cast<uint8_t *>(p), o, "mapping after a refused free");
    main_->Unmap(o.handle, o.id);
  }

  void SleepWhileMapped() {
    if (objects_.empty()) return;
    Obj &o = objects_[Pick()];
    size_t size = DecodeSize();
    bool compact = in_.ConsumeBool() && main_->CanCompact();
    void *p = main_->Map(o.handle, MapMode::kRO, o.id);
    ZFUZZ_CHECK(p != nullptr, "map of live h%d returned NULL", o.id);
    Note("/* misuse (where the mapping cannot sleep): a call that may sleep, while mapped */");
    Snapshot before = Take();
    zpool_misuse expected = zbud_like_ ? NONE : ZPOOL_MISUSE_SLEEP_WHILE_MAPPED;
    if (compact) {
      unsigned long freed = main_->Compact();
      Expect(before, "zs_compact while mapped", expected);
      ZFUZZ_CHECK(freed == 0, "zs_compact while mapped freed %lu pages", freed);
      main_->Unmap(o.handle, o.id);
      return;
    }
    Obj n{next_id_++, 0, size, 0};
    int err = main_->Malloc(size, GFP_KERNEL, &n.handle, n.id);
    Expect(before, "GFP_KERNEL malloc while mapped", expected);
    ZFUZZ_CHECK(err == 0, "malloc while mapped failed (%d): it must proceed without sleeping", err);
    Verify(static_cast<uint8_t *>(p), o, "mapping across a malloc");
    main_->Unmap(o.handle, o.id);
    Rewrite(n);
    objects_.push_back(n);
  }

  void DestroyWhileMapped() {
    if (objects_.empty()) return;
    Obj &o = objects_[Pick()];
    void *p = main_->Map(o.handle, MapMode::kRO, o.id);
    ZFUZZ_CHECK(p != nullptr, "map of live h%d returned NULL", o.id);
    Note("/* misuse: destroy of the pool this thread maps */");
    Snapshot before = Take();
    main_->Destroy(/*keep_stale=*/true);  // refused: the pool stays valid
    Expect(before, "destroy while mapped", ZPOOL_MISUSE_DESTROY_BUSY);
    Verify(static_cast<uint8_t *>(p), o, "mapping after a refused destroy");
    main_->Unmap(o.handle, o.id);
  }

  // call: 0 free, 1 map, 2 unmap of the handle just freed.
  void DoubleFreeLatest(int call) {
    if (objects_.empty()) return;
    size_t i = Pick();
    FreeLegal(i);
    auto [id, handle] = freed_.back();
    Note(call == 1   ? "/* misuse: map of the handle just freed */"
         : call == 2 ? "/* misuse: unmap of the handle just freed */"
                     : "/* misuse: free of the handle just freed */");
    Snapshot before = Take();
    if (call == 1) {
      void *p = main_->Map(handle, MapMode::kRO, id);
      Expect(before, "map of a freed handle", ZPOOL_MISUSE_DOUBLE_FREE);
      ZFUZZ_CHECK(p == nullptr, "map of a freed handle returned a pointer");
    } else if (call == 2) {
      main_->Unmap(handle, id);
      // zpool knows the handle is not mapped before it knows it is freed.
      Expect(before, "unmap of a freed handle", ZPOOL_MISUSE_DOUBLE_FREE,
             via_zpool_ ? ZPOOL_MISUSE_BAD_UNMAP : NONE);
    } else {
      main_->Free(handle, id);
      Expect(before, "double free", ZPOOL_MISUSE_DOUBLE_FREE);
    }
  }

  void DoubleFreeOld() {
    if (freed_.empty()) return;
    auto [id, handle] = freed_[in_.ConsumeIntegralInRange<size_t>(0, freed_.size() - 1)];
    if (HandleIsLive(handle)) return;  // the slot went to a new object: that is a live handle
    Note("/* misuse: free of a handle freed some time ago */");
    Snapshot before = Take();
    main_->Free(handle, id);
    // Still recognisable as freed (double-free), or forgotten (invalid-handle).
    Expect(before, "free of an old freed handle", ZPOOL_MISUSE_DOUBLE_FREE,
           ZPOOL_MISUSE_INVALID_HANDLE);
  }

  // call: 0 free, 1 map, 2 unmap of a handle the pool never gave out.
  void InvalidHandle(int which, int call) {
    unsigned long handle;
    const char *what;
    switch (which) {
      case 0:
        handle = 0;
        what = "/* misuse: handle 0 */";
        break;
      case 1:
        if (objects_.empty()) return;
        handle = objects_[Pick()].handle + 1;
        what = "/* misuse: a live handle + 1 */";
        break;
      case 2:
        handle = ~0UL << 12;
        what = "/* misuse: a kernel-space address as handle */";
        break;
      default:
        handle = foreign_;
        what = "/* misuse: a live handle of another pool */";
        break;
    }
    if (HandleIsLive(handle)) return;
    Note(what);
    Snapshot before = Take();
    if (call == 1) {
      void *p = main_->Map(handle, MapMode::kRO, -1);
      Expect(before, "map of an invalid handle", ZPOOL_MISUSE_INVALID_HANDLE);
      ZFUZZ_CHECK(p == nullptr, "map of an invalid handle returned a pointer");
    } else if (call == 2) {
      main_->Unmap(handle, -1);
      Expect(before, "unmap of an invalid handle", ZPOOL_MISUSE_INVALID_HANDLE,
             via_zpool_ ? ZPOOL_MISUSE_BAD_UNMAP : NONE);
    } else {
      main_->Free(handle, -1);
      Expect(before, "free of an invalid handle", ZPOOL_MISUSE_INVALID_HANDLE);
    }
  }

  // Bytes of the object's slot after its requested size (where the redzone is).
  size_t Slack(size_t size) const {
    if (zbud_like_) {
      size_t chunk = PAGE_SIZE >> 6;
      return (size + chunk - 1) / chunk * chunk - size;
    }
    struct zs_class_info info;
    if (zs_lookup_class(g_class_pool, size, &info) != 0) return 0;
    size_t used = size + (info.huge ? 0 : sizeof(unsigned long));
    return info.size > used ? info.size - used : 0;
  }

  void Overflow() {
    if (objects_.empty()) return;
    Obj &o = objects_[Pick()];
    size_t extra = in_.ConsumeIntegralInRange<size_t>(1, 64);
    bool rw = in_.ConsumeBool();
    if (kc::kAsan || kc::kMsan) return;  // see the file comment
    size_t slack = std::min<size_t>(Slack(o.size), 64);
    if (slack == 0) return;
    extra = std::min(extra, slack);
    auto *p = static_cast<uint8_t *>(main_->Map(o.handle, rw ? MapMode::kRW : MapMode::kWO, o.id));
    ZFUZZ_CHECK(p != nullptr, "map of live h%d returned NULL", o.id);
    o.gen++;
    Fill(p, o);
    Note("/* misuse: write past the requested size, into the slot's slack */");
    for (size_t k = 0; k < extra; k++) p[o.size + k] = static_cast<uint8_t>(~p[o.size + k]);
    Snapshot before = Take();
    main_->Unmap(o.handle, o.id);
    Expect(before, "write past the requested size", ZPOOL_MISUSE_OVERFLOW);
  }

  void WriteReadOnly() {
    if (objects_.empty()) return;
    Obj &o = objects_[Pick()];
    auto *p = static_cast<uint8_t *>(main_->Map(o.handle, MapMode::kRO, o.id));
    ZFUZZ_CHECK(p != nullptr, "map of live h%d returned NULL", o.id);
    Note("/* misuse: write through a read-only mapping */");
    size_t at = in_.ConsumeIntegralInRange<size_t>(0, o.size - 1);
    p[at] = static_cast<uint8_t>(~p[at]);
    Snapshot before = Take();
    main_->Unmap(o.handle, o.id);
    // zbud has no read-only mappings: its map has no mode, so there is nothing to check.
    Expect(before, "write through an RO mapping", zbud_like_ ? NONE : ZPOOL_MISUSE_WRITE_RO);
    Rewrite(o);  // the write may or may not have reached the object: give it known contents
  }

  // The kernel's classic "sleeping function called from invalid context": a call that may sleep
  // (GFP_KERNEL malloc, reclaim, compaction, pool creation) made under a spinlock. Every backend
  // must WARN once, then either proceed without sleeping (malloc, creation) or refuse (reclaim,
  // compaction), and stay consistent.
  void SleepInAtomic(int what) {
    if (what == 1 && !(main_->CanEvict() && !objects_.empty())) what = 0;
    if (what == 2 && !main_->CanCompact()) what = 0;
    Note("/* misuse: a call that may sleep, under a spinlock */");
    if (Tracing()) TraceLine("spin_lock(&lock)");
    Snapshot before = Take();
    spin_lock(&atomic_lock_);
    switch (what) {
      case 1: {
        unsigned int reclaimed = 0;
        int err = main_->Reclaim(1, &reclaimed);
        spin_unlock(&atomic_lock_);
        Expect(before, "reclaim under a spinlock", ZPOOL_MISUSE_SLEEP_WHILE_MAPPED);
        ZFUZZ_CHECK(err != 0 && reclaimed == 0,
                    "reclaim under a spinlock ran (%d, %u reclaimed): evict callbacks may sleep",
                    err, reclaimed);
        break;
      }
      case 2: {
        unsigned long freed = main_->Compact();
        spin_unlock(&atomic_lock_);
        Expect(before, "compaction under a spinlock", ZPOOL_MISUSE_SLEEP_WHILE_MAPPED);
        ZFUZZ_CHECK(freed == 0, "compaction under a spinlock freed %lu pages", freed);
        break;
      }
      case 3: {
        std::unique_ptr<Subject> extra = zfuzz::MakeSubject(kind_, 2);
        bool created = extra->Create(/*with_evict=*/false);
        spin_unlock(&atomic_lock_);
        Expect(before, "pool creation under a spinlock", ZPOOL_MISUSE_SLEEP_WHILE_MAPPED);
        // zbud and zsmalloc create without sleeping; zpool refuses (its backend's create may
        // sleep in ways it cannot strip).
        ZFUZZ_CHECK(created != via_zpool_, "pool creation under a spinlock %s on %s",
                    created ? "succeeded" : "failed", zfuzz::KindName(kind_));
        if (created) {
          Snapshot after = Take();
          extra->Destroy();
          Expect(after, "destroy of an empty pool", NONE);
        }
        break;
      }
      default: {
        Obj n{next_id_++, 0, DecodeSize(), 0};
        int err = main_->Malloc(n.size, GFP_KERNEL, &n.handle, n.id);
        spin_unlock(&atomic_lock_);
        Expect(before, "GFP_KERNEL malloc under a spinlock", ZPOOL_MISUSE_SLEEP_WHILE_MAPPED);
        ZFUZZ_CHECK(err == 0, "malloc under a spinlock failed (%d): it must proceed without "
                    "sleeping", err);
        Rewrite(n);
        objects_.push_back(n);
        break;
      }
    }
    if (Tracing()) TraceLine("spin_unlock(&lock)");
  }

  // Destroying a pool from its own evict callback: a call (the reclaim) is in flight, so each
  // destroy is refused with one destroy-busy WARN (zpool_shrink retries the eviction, so there
  // may be several), and the reclaim ends normally.
  void DestroyFromEvict() {
    if (!main_->CanEvict() || objects_.empty()) return;
    destroy_in_evict_ = true;
    destroys_in_evict_ = 0;
    Snapshot before = Take();
    unsigned int reclaimed = 0;
    int err = main_->Reclaim(1, &reclaimed);
    destroy_in_evict_ = false;
    Snapshot after = Take();
    const unsigned long busy =
        after.counts[ZPOOL_MISUSE_DESTROY_BUSY] - before.counts[ZPOOL_MISUSE_DESTROY_BUSY];
    ZFUZZ_CHECK(destroys_in_evict_ > 0 && busy == destroys_in_evict_ &&
                    after.warns - before.warns == busy,
                "destroy from the evict callback on %s: %lu destroy(s), %lu destroy-busy WARNs, "
                "%lu WARNs in all",
                zfuzz::KindName(kind_), destroys_in_evict_, busy, after.warns - before.warns);
    ZFUZZ_CHECK(err != 0 && reclaimed == 0,
                "reclaim whose evict refused succeeded (%d, %u reclaimed)", err, reclaimed);
  }

  // An evict callback that frees the other buddy of its page: one bad-evict WARN (the free is
  // done, that buddy is not evicted), the reclaim ends without reclaiming (our callback refuses).
  void EvictFreesBuddy() {
    if (!main_->CanEvict() || objects_.size() < 2) return;
    evict_frees_buddy_ = true;
    buddy_freed_ = false;
    Snapshot before = Take();
    unsigned int reclaimed = 0;
    int err = main_->Reclaim(1, &reclaimed);
    evict_frees_buddy_ = false;
    Expect(before, "evict that frees another handle",
           buddy_freed_ ? ZPOOL_MISUSE_BAD_EVICT : NONE);
    ZFUZZ_CHECK(err != 0 && reclaimed == 0, "reclaim whose evict refused succeeded (%d)", err);
  }

  void BadEvict() {
    if (!main_->CanEvict() || objects_.empty()) return;
    Note("/* misuse: an evict callback that returns 0 without freeing its handle */");
    evict_without_freeing_ = true;
    Snapshot before = Take();
    unsigned reclaimed = 0;
    int err = main_->Reclaim(1, &reclaimed);
    evict_without_freeing_ = false;
    Expect(before, "evict that does not free", ZPOOL_MISUSE_BAD_EVICT);
    ZFUZZ_CHECK(err != 0 && reclaimed == 0, "reclaim with a lying evict succeeded (%d)", err);
  }

  void LegalReclaim() {
    if (!main_->CanEvict() || objects_.empty()) return;
    Snapshot before = Take();
    unsigned reclaimed = 0;
    int err = main_->Reclaim(2, &reclaimed);  // the callback refuses: nothing is evicted
    Expect(before, "reclaim with a refusing evict", NONE);
    ZFUZZ_CHECK(err == -EAGAIN && reclaimed == 0, "reclaim with a refusing evict returned %d",
                err);
  }

  FuzzedDataProvider &in_;
  Kind kind_;
  bool zbud_like_ = false;
  bool via_zpool_ = false;
  std::unique_ptr<Subject> main_, other_;
  std::vector<Obj> objects_;
  std::vector<std::pair<int, unsigned long>> freed_;
  unsigned long foreign_ = 0;
  int next_id_ = 0;
  bool evict_without_freeing_ = false;
  bool destroy_in_evict_ = false;
  bool evict_frees_buddy_ = false;
  bool buddy_freed_ = false;
  unsigned long destroys_in_evict_ = 0;
  spinlock_t atomic_lock_{g_atomic_lock_class};
  unsigned long pages_before_ = 0, meta_before_ = 0;
};

}  // namespace

extern "C" int LLVMFuzzerInitialize(int *, char ***) {
  zfuzz::InitializeHarness(KC_WARN_RECORD);
  kc_set_console_loglevel(KC_LOG_ERR);  // destroy-nonempty's per-class pr_err are expected here
  g_class_pool = zs_create_pool("zfuzz-classes");
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static constexpr Kind kKinds[] = {Kind::kZbud, Kind::kZsmalloc, Kind::kZpoolZbud,
                                    Kind::kZpoolZsmalloc};
  FuzzedDataProvider in(data, size);
  zfuzz::ResetKernelState();
  Kind kind = kKinds[in.ConsumeIntegralInRange<size_t>(0, 3)];
  if (Tracing()) TraceLine("/* misuse program on %s, %zu input bytes */", zfuzz::KindName(kind), size);
  {
    Run run(in, kind);
    run.Go();
  }
  zfuzz::ResetKernelState();
  return 0;
}

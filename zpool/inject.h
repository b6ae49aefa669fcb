// SPDX-License-Identifier: GPL-2.0-only
// Injected bugs, for proving the fuzz targets find real bugs (issue 8's acceptance).
//
// A test-only build flag, --define=zfuzz_bug=<name>, compiles exactly one of these bugs into the
// allocators; without it every constant is false and the code is the normal code (the flag never
// changes a normal build). `tools/zfuzz fuzz --inject-bug NAME` and the tools' end-to-end test
// use it. The bugs, each a mistake the kernel's own history makes plausible:
//   class_index       zsmalloc: the size class index is one too small (objects overflow)
//   span_copyback     zsmalloc: an object spanning two pages mapped RW is not copied back
//   compact_unlocked  zsmalloc: compaction rewrites handles after dropping pool->lock
//   create_refcount   zpool: a failed backend create does not drop the driver reference
//   under_reclaim     zbud: zbud_free() ignores under_reclaim (frees a page being reclaimed)
// and the logic races of the concurrency issue: every access under some lock, so TSan cannot see
// them; the order or the atomicity is wrong, as in fixes of the kernel's history:
//   free_lock_gap     zsmalloc: zs_free() drops pool->lock before it takes class->lock, so
//                     compaction can move the object between the lookup and the free (the
//                     kernel takes class->lock first: "the pool->lock protects the race with
//                     zpage's migration", since the 5.17 migrate_lock rework)
//   map_lock_gap      zsmalloc: zs_map_object() drops pool->lock before it takes the zspage
//                     lock, so compaction can move the object it is about to map (the race the
//                     4.8 migration work closed with the zspage lock taken under the pool lock)
//   driver_ref_gap    zpool: zpool_get_driver() takes the driver reference after dropping
//                     drivers_lock, so an unregister in between succeeds while a pool is being
//                     created from the driver (the 2014 review's "racy against unregister")
//   reclaim_recheck   zbud: zbud_reclaim_page() clears under_reclaim in one critical section and
//                     re-lists or frees the page in the next, so a zbud_free() in between sees a
//                     page off every list and not under reclaim (the kernel does both under one
//                     hold of pool->lock)
// and fidelity bugs: the model stays consistent with itself (its validator, the shadow model and
// the contents all agree), it just is not the kernel any more; only the exact differential
// against the kernel's own files (upstream_diff_fuzz) can see them:
//   fullness_ratio    zsmalloc: the fullness group rounds the in-use ratio up, not down (the
//                     kernel's fix_fullness_group() arithmetic), so zspages sit one group high
//   first_object      zsmalloc: a new zspage's free list starts at its second object and ends
//                     at its first, so objects land at other offsets than the kernel's
//   compact_dst_order zsmalloc: compaction takes its destination from the emptiest zspages, as
//                     it takes its source (the kernel fills the fullest first)
#ifndef ZPOOL_INJECT_H_
#define ZPOOL_INJECT_H_

#ifndef ZFUZZ_BUG_CLASS_INDEX
#define ZFUZZ_BUG_CLASS_INDEX 0
#endif
#ifndef ZFUZZ_BUG_SPAN_COPYBACK
#define ZFUZZ_BUG_SPAN_COPYBACK 0
#endif
#ifndef ZFUZZ_BUG_COMPACT_UNLOCKED
#define ZFUZZ_BUG_COMPACT_UNLOCKED 0
#endif
#ifndef ZFUZZ_BUG_CREATE_REFCOUNT
#define ZFUZZ_BUG_CREATE_REFCOUNT 0
#endif
#ifndef ZFUZZ_BUG_UNDER_RECLAIM
#define ZFUZZ_BUG_UNDER_RECLAIM 0
#endif
#ifndef ZFUZZ_BUG_FREE_LOCK_GAP
#define ZFUZZ_BUG_FREE_LOCK_GAP 0
#endif
#ifndef ZFUZZ_BUG_MAP_LOCK_GAP
#define ZFUZZ_BUG_MAP_LOCK_GAP 0
#endif
#ifndef ZFUZZ_BUG_DRIVER_REF_GAP
#define ZFUZZ_BUG_DRIVER_REF_GAP 0
#endif
#ifndef ZFUZZ_BUG_RECLAIM_RECHECK
#define ZFUZZ_BUG_RECLAIM_RECHECK 0
#endif

#ifndef ZFUZZ_BUG_FULLNESS_RATIO
#define ZFUZZ_BUG_FULLNESS_RATIO 0
#endif
#ifndef ZFUZZ_BUG_FIRST_OBJECT
#define ZFUZZ_BUG_FIRST_OBJECT 0
#endif
#ifndef ZFUZZ_BUG_COMPACT_DST_ORDER
#define ZFUZZ_BUG_COMPACT_DST_ORDER 0
#endif

inline constexpr bool kBugClassIndex = ZFUZZ_BUG_CLASS_INDEX;
inline constexpr bool kBugSpanCopyback = ZFUZZ_BUG_SPAN_COPYBACK;
inline constexpr bool kBugCompactUnlocked = ZFUZZ_BUG_COMPACT_UNLOCKED;
inline constexpr bool kBugCreateRefcount = ZFUZZ_BUG_CREATE_REFCOUNT;
inline constexpr bool kBugUnderReclaim = ZFUZZ_BUG_UNDER_RECLAIM;
inline constexpr bool kBugFreeLockGap = ZFUZZ_BUG_FREE_LOCK_GAP;
inline constexpr bool kBugMapLockGap = ZFUZZ_BUG_MAP_LOCK_GAP;
inline constexpr bool kBugDriverRefGap = ZFUZZ_BUG_DRIVER_REF_GAP;
inline constexpr bool kBugReclaimRecheck = ZFUZZ_BUG_RECLAIM_RECHECK;
inline constexpr bool kBugFullnessRatio = ZFUZZ_BUG_FULLNESS_RATIO;
inline constexpr bool kBugFirstObject = ZFUZZ_BUG_FIRST_OBJECT;
inline constexpr bool kBugCompactDstOrder = ZFUZZ_BUG_COMPACT_DST_ORDER;

#endif  // ZPOOL_INJECT_H_

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

inline constexpr bool kBugClassIndex = ZFUZZ_BUG_CLASS_INDEX;
inline constexpr bool kBugSpanCopyback = ZFUZZ_BUG_SPAN_COPYBACK;
inline constexpr bool kBugCompactUnlocked = ZFUZZ_BUG_COMPACT_UNLOCKED;
inline constexpr bool kBugCreateRefcount = ZFUZZ_BUG_CREATE_REFCOUNT;
inline constexpr bool kBugUnderReclaim = ZFUZZ_BUG_UNDER_RECLAIM;

#endif  // ZPOOL_INJECT_H_

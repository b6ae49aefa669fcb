// SPDX-License-Identifier: GPL-2.0-only
// The hardening catalogue: every misuse of the allocator APIs that the kernel forbids but does not
// check, with a name, a counter, and one way to report it.
//
//   if (ZPOOL_MISUSE(ZPOOL_MISUSE_DOUBLE_FREE, "zs_free(%p, %#lx): handle is already free",
//                    pool, handle))
//     return;
//
// ZPOOL_MISUSE WARNs (so the warning policy applies: log reports and carries on, record counts
// silently, abort crashes with the caller's frame on top) with the message prefixed by the
// misuse's name, and counts the misuse by kind, so the misuse fuzzer's oracle can check that each
// misuse fired exactly the WARN it must. It evaluates to true. Messages say what happened and the
// likely cause ("... missing zs_unmap_object()?").
#ifndef ZPOOL_MISUSE_H_
#define ZPOOL_MISUSE_H_

#include "zpool/kernel/kernel.h"

// Numbered as in the hardening catalogue (issue 7). Keep zpool_misuse_name() in step.
enum zpool_misuse {
  ZPOOL_MISUSE_NONE = 0,
  ZPOOL_MISUSE_DESTROY_NONEMPTY = 1,    // destroy of a pool that still holds objects
  ZPOOL_MISUSE_DESTROY_BUSY = 2,        // destroy while mapped or while a call is in flight
  ZPOOL_MISUSE_USE_AFTER_DESTROY = 3,   // a call on a pool whose destruction began
  ZPOOL_MISUSE_NESTED_MAP = 4,          // a second map on a CPU that holds a mapping
  ZPOOL_MISUSE_CONCURRENT_MAP = 5,      // two threads on one virtual CPU mapping at once
  ZPOOL_MISUSE_BAD_UNMAP = 6,           // unmap of a handle not mapped on this CPU
  ZPOOL_MISUSE_SLEEP_WHILE_MAPPED = 7,  // a call that may sleep made while holding a mapping
  ZPOOL_MISUSE_DOUBLE_FREE = 8,         // free of a handle already freed
  ZPOOL_MISUSE_INVALID_HANDLE = 9,      // a handle this pool never returned
  ZPOOL_MISUSE_FREE_MAPPED = 10,        // free of a handle that is mapped
  ZPOOL_MISUSE_OVERFLOW = 11,           // write past the requested size inside a mapping
  ZPOOL_MISUSE_WRITE_RO = 12,           // write through a read-only mapping
  ZPOOL_MISUSE_BAD_EVICT = 13,          // evict callback returned 0 without freeing, or freed
                                        // a handle it was not given
  ZPOOL_MISUSE_DRIVER_REFCOUNT = 14,    // a driver's refcount went negative
  ZPOOL_MISUSE_COUNT
};

const char *zpool_misuse_name(enum zpool_misuse kind);
// Misuses reported since start or the last reset (counted under every warning policy).
unsigned long zpool_misuse_count(enum zpool_misuse kind);
unsigned long zpool_misuse_total(void);
void zpool_misuse_reset(void);
// Counts one misuse; returns its name. For ZPOOL_MISUSE only.
const char *zpool_misuse_note(enum zpool_misuse kind);

// Build-time switch for the benchmark's "unchecked" build: with ZPOOL_UNCHECKED=1 the backends'
// misuse checks compile away (`if (ZPOOL_CHECKS && ...)`).
#if defined(ZPOOL_UNCHECKED) && ZPOOL_UNCHECKED
inline constexpr bool ZPOOL_CHECKS = false;
#else
inline constexpr bool ZPOOL_CHECKS = true;
#endif

#define ZPOOL_MISUSE(kind, fmt, ...) \
  WARN(true, "%s: " fmt, zpool_misuse_note(kind) __VA_OPT__(, ) __VA_ARGS__)

#endif  // ZPOOL_MISUSE_H_

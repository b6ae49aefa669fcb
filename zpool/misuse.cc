// SPDX-License-Identifier: GPL-2.0-only
// Names and counters of the hardening catalogue.
#include "zpool/misuse.h"

#include <atomic>

namespace {
std::atomic<unsigned long> g_counts[ZPOOL_MISUSE_COUNT];
}  // namespace

const char *zpool_misuse_name(enum zpool_misuse kind) {
  switch (kind) {
    case ZPOOL_MISUSE_NONE:
      return "none";
    case ZPOOL_MISUSE_DESTROY_NONEMPTY:
      return "destroy-nonempty";
    case ZPOOL_MISUSE_DESTROY_BUSY:
      return "destroy-busy";
    case ZPOOL_MISUSE_USE_AFTER_DESTROY:
      return "use-after-destroy";
    case ZPOOL_MISUSE_NESTED_MAP:
      return "nested-map";
    case ZPOOL_MISUSE_CONCURRENT_MAP:
      return "concurrent-map";
    case ZPOOL_MISUSE_BAD_UNMAP:
      return "bad-unmap";
    case ZPOOL_MISUSE_SLEEP_WHILE_MAPPED:
      return "sleep-while-mapped";
    case ZPOOL_MISUSE_DOUBLE_FREE:
      return "double-free";
    case ZPOOL_MISUSE_INVALID_HANDLE:
      return "invalid-handle";
    case ZPOOL_MISUSE_FREE_MAPPED:
      return "free-mapped";
    case ZPOOL_MISUSE_OVERFLOW:
      return "overflow";
    case ZPOOL_MISUSE_WRITE_RO:
      return "write-ro";
    case ZPOOL_MISUSE_BAD_EVICT:
      return "bad-evict";
    case ZPOOL_MISUSE_DRIVER_REFCOUNT:
      return "driver-refcount";
    case ZPOOL_MISUSE_COUNT:
      break;
  }
  return "unknown-misuse";
}

unsigned long zpool_misuse_count(enum zpool_misuse kind) {
  if (kind <= ZPOOL_MISUSE_NONE || kind >= ZPOOL_MISUSE_COUNT) return 0;
  return g_counts[kind].load(std::memory_order_acquire);
}

unsigned long zpool_misuse_total(void) {
  unsigned long total = 0;
  for (int k = ZPOOL_MISUSE_NONE + 1; k < ZPOOL_MISUSE_COUNT; k++)
    total += g_counts[k].load(std::memory_order_acquire);
  return total;
}

void zpool_misuse_reset(void) {
  for (auto &count : g_counts) count.store(0, std::memory_order_release);
}

const char *zpool_misuse_note(enum zpool_misuse kind) {
  if (kind > ZPOOL_MISUSE_NONE && kind < ZPOOL_MISUSE_COUNT)
    g_counts[kind].fetch_add(1, std::memory_order_acq_rel);
  return zpool_misuse_name(kind);
}

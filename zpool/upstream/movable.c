// SPDX-License-Identifier: GPL-2.0-only
/* The movable-page callbacks, called from C: see zfuzz_abi.h. */
#include "zpool/upstream/include/zfuzz_abi.h"

bool upstream_mops_isolate(const struct movable_operations *ops, struct page *page,
                           isolate_mode_t mode) {
  return ops->isolate_page(page, mode);
}

int upstream_mops_migrate(const struct movable_operations *ops, struct page *dst,
                          struct page *src, enum migrate_mode mode) {
  return ops->migrate_page(dst, src, mode);
}

void upstream_mops_putback(const struct movable_operations *ops, struct page *page) {
  ops->putback_page(page);
}

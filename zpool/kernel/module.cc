// SPDX-License-Identifier: GPL-2.0-only
// Module reference counting.
#include "zpool/kernel/module.h"

namespace {
// Added to refcnt while a module is going away: a try_module_get() racing with the unload sees a
// negative count and backs out.
constexpr long kModuleDying = -(1L << 40);
}  // namespace

bool try_module_get(struct module *mod) {
  if (mod == nullptr) return true;
  if (mod->state.load(std::memory_order_acquire) != MODULE_STATE_LIVE) return false;
  long before = mod->refcnt.fetch_add(1, std::memory_order_acq_rel);
  if (before < 0) {
    mod->refcnt.fetch_sub(1, std::memory_order_acq_rel);
    return false;
  }
  return true;
}

void module_put(struct module *mod) {
  if (mod == nullptr) return;
  long before = mod->refcnt.fetch_sub(1, std::memory_order_acq_rel);
  WARN(before == 0 || before == kModuleDying,
       "module_put(%s): reference count underflow (more puts than gets)", mod->name);
}

long module_refcount(const struct module *mod) {
  long refs = mod->refcnt.load(std::memory_order_acquire);
  return refs < 0 ? refs - kModuleDying : refs;
}

bool module_is_live(const struct module *mod) {
  return mod == nullptr || mod->state.load(std::memory_order_acquire) == MODULE_STATE_LIVE;
}

int kc_module_unload_begin(struct module *mod) {
  if (mod == nullptr) return -EINVAL;
  long expected = 0;
  if (!mod->refcnt.compare_exchange_strong(expected, kModuleDying, std::memory_order_acq_rel))
    return -EBUSY;
  mod->state.store(MODULE_STATE_GOING, std::memory_order_release);
  return 0;
}

void kc_module_reload(struct module *mod) {
  if (mod == nullptr) return;
  mod->refcnt.store(0, std::memory_order_release);
  mod->state.store(MODULE_STATE_LIVE, std::memory_order_release);
}

// SPDX-License-Identifier: GPL-2.0-only
// struct module: a reference count and a life-cycle state, as much of the kernel's module as
// the zpool registry needs (the 2014 design: a pool pins its driver's module).
//
// try_module_get() succeeds only while the module is live. kc_module_unload_begin() is the
// kernel's try_stop_module(): it fails with -EBUSY while references are held, and otherwise marks
// the module going in one atomic step, so a racing try_module_get() either got its reference
// first (and the unload fails) or fails itself. Never both succeed.
#ifndef ZPOOL_KERNEL_MODULE_H_
#define ZPOOL_KERNEL_MODULE_H_

#include <atomic>

#include "zpool/kernel/kernel.h"

enum module_state { MODULE_STATE_LIVE, MODULE_STATE_GOING };

struct module {
  constexpr explicit module(const char *module_name) : name(module_name) {}
  module(const module &) = delete;
  module &operator=(const module &) = delete;

  const char *name;
  std::atomic<long> refcnt{0};  // references; kModuleDying bias while going away
  std::atomic<int> state{MODULE_STATE_LIVE};
};

// References currently held (0 while the module is going away with none held).
long module_refcount(const struct module *mod);
bool module_is_live(const struct module *mod);

// Starts unloading: -EBUSY if references are held (nothing changes), else 0 and the module is
// going: every later try_module_get() fails until kc_module_reload().
int kc_module_unload_begin(struct module *mod);
// The module is loaded again (after an unload): live, no references.
void kc_module_reload(struct module *mod);

#endif  // ZPOOL_KERNEL_MODULE_H_

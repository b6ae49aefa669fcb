// SPDX-License-Identifier: GPL-2.0-only
// A zpool driver of the user's own ("zfuzz_user", over zsmalloc, owned by its own struct module),
// for the targets and scenarios that register, use and unregister a driver while other threads
// create pools of its type.
#ifndef FUZZ_API_USER_DRIVER_H_
#define FUZZ_API_USER_DRIVER_H_

#include "zpool/zpool.h"

namespace zfuzz {

inline constexpr const char *kUserDriverType = "zfuzz_user";

// The driver (initialised on first use; never freed).
struct zpool_driver &UserDriver();

// Leaves the driver unregistered with a zero refcount whatever a run did to it, and says whether
// it found it that way ("" when clean, else what was wrong), so that no state passes from one
// input to the next.
const char *ResetUserDriver();

}  // namespace zfuzz

#endif  // FUZZ_API_USER_DRIVER_H_

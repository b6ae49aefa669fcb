// SPDX-License-Identifier: GPL-2.0-only
// PercpuRef's process-wide half: thread slots and the destroyer's barrier (percpu_ref.h).
#include "zpool/kernel/percpu_ref.h"

#include <linux/membarrier.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdint>
#include <mutex>

#include "zpool/kernel/kernel.h"

namespace kc::internal {
namespace {

long Membarrier(int cmd) { return syscall(SYS_membarrier, cmd, 0U, 0); }

// Registers the process for MEMBARRIER_CMD_PRIVATE_EXPEDITED, once, before any slot exists.
void RegisterMembarrierOnce() {
  static const bool registered = [] {
    const long supported = Membarrier(MEMBARRIER_CMD_QUERY);
    const bool ok = supported > 0 && (supported & MEMBARRIER_CMD_PRIVATE_EXPEDITED) != 0 &&
                    Membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED) == 0;
    g_ref_asymmetric.store(ok, std::memory_order_release);
    return ok;
  }();
  (void)registered;
}

// Exclusive slots in use (bit i: slot i), handed out lowest first so that a fuzz input's threads
// get the same slots on every run.
std::mutex g_slots_mu;
uint64_t g_slots_used = 0;  // guarded by g_slots_mu
static_assert(kRefSlots <= 64);

struct SlotRelease {
  int slot = -1;
  ~SlotRelease() {
    if (slot < 0 || slot == kSharedRefSlot) return;
    std::lock_guard<std::mutex> lock(g_slots_mu);
    g_slots_used &= ~(uint64_t{1} << slot);
    // A call this thread makes from a later thread_local destructor takes the shared slot.
    t_ref_slot = kSharedRefSlot;
  }
};
thread_local SlotRelease t_release;

}  // namespace

int AcquireRefSlot() {
  RegisterMembarrierOnce();
  int slot = kSharedRefSlot;
  {
    std::lock_guard<std::mutex> lock(g_slots_mu);
    for (int i = 0; i < kSharedRefSlot; i++) {
      if (!(g_slots_used & (uint64_t{1} << i))) {
        g_slots_used |= uint64_t{1} << i;
        slot = i;
        break;
      }
    }
  }
  t_release.slot = slot;
  t_ref_slot = slot;
  return slot;
}

void RefHeavyBarrier() {
  RegisterMembarrierOnce();
  if (!g_ref_asymmetric.load(std::memory_order_acquire)) return;
  // Cannot fail once registered; if it ever did, the calls' light barrier would not be enough.
  BUG_ON(Membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED) != 0);
}

}  // namespace kc::internal

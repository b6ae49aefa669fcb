// SPDX-License-Identifier: GPL-2.0-only
// kmem_cache_owns() for the object a thread asks about over and over: its pool.
//
// Every zpool, zsmalloc and zbud call proves its pool live with kmem_cache_owns() before it
// dereferences it: an O(1) lookup, but about 40 instructions, on every map and malloc. A thread
// almost always asks about the same pool again, and a pool stops being live only when its owner
// frees it. So the owner counts its frees (FreeCount::Free bumps the count, then frees), and a
// thread keeps a LiveMemo: the last object it proved live and the count read BEFORE that proof.
// While the count is unchanged, nothing has been freed since, and the memo answers without the
// lookup. Any free makes every thread's memo miss once; pools are freed rarely.
//
// A memo gives the answer kmem_cache_owns() would give at the moment the count was last read: a
// free that races with the call is as undetected as it is without the memo. The call is then a
// misuse racing with a destroy, and the pool's in-flight count catches it: that count lives in
// the pool cache's type-stable slot (kmem_cache_slot_ref), not in the pool, so the call finds it
// dying even after the pool's memory was freed.
#ifndef ZPOOL_KERNEL_LIVE_MEMO_H_
#define ZPOOL_KERNEL_LIVE_MEMO_H_

#include <atomic>

#include "zpool/kernel/page.h"

namespace kc {

// The frees of one kmem_cache, counted by the cache's owner. Every kmem_cache_free() of the cache
// must go through Free(): a free the count misses would leave memos of the freed object valid.
class FreeCount {
 public:
  constexpr FreeCount() = default;
  FreeCount(const FreeCount &) = delete;
  FreeCount &operator=(const FreeCount &) = delete;

  void Free(struct kmem_cache *cache, void *obj) {
    count_.fetch_add(1, std::memory_order_seq_cst);  // before the object can be reused
    kmem_cache_free(cache, obj);
  }
  unsigned long Load() const { return count_.load(std::memory_order_acquire); }

 private:
  std::atomic<unsigned long> count_{0};
};

// One per thread and cache (a constinit thread_local).
class LiveMemo {
 public:
  constexpr LiveMemo() = default;

  // kmem_cache_owns(cache, obj), from the memo when `frees` has not changed since obj's proof.
  bool Owns(const struct kmem_cache *cache, const FreeCount &frees, const void *obj) {
    const unsigned long now = frees.Load();  // read before the proof below
    if (obj == obj_ && now == frees_) return true;
    if (!kmem_cache_owns(cache, obj)) return false;
    obj_ = obj;
    frees_ = now;
    return true;
  }

 private:
  const void *obj_ = nullptr;
  unsigned long frees_ = ~0UL;  // no count: the first call (NULL included) asks the cache
};

}  // namespace kc

#endif  // ZPOOL_KERNEL_LIVE_MEMO_H_

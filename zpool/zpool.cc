// SPDX-License-Identifier: GPL-2.0-only
// zpool: a thin dispatcher over a table of driver operations, plus the checks that make the
// lifecycle rules of zpool.h hold.
//
// Registry (the final 2014 design). `drivers` is a list under `drivers_lock`. GetDriver() finds
// a type, takes try_module_get(owner) and refcount++ under that lock; PutDriver() drops both
// (refcount first, then the module, so a module exit that unregisters never sees a stale
// count). The registry, with the built-in drivers on it, is a function-local static created by
// the first zpool call and never destroyed: no static-initialisation order, no exit-time order.
//
// Pools. struct zpool comes from the kmem_cache `pool_cache`, so every entry point can ask
// kmem_cache_owns() whether a pointer is a live pool without dereferencing it (through each
// thread's memo of the pool it proved live last, kernel/live_memo.h: pools are freed through
// g_pools_freed, which invalidates every memo). Pools are on `pools` under `pools_lock` so that
// zpool_evict() can route a backend's evict (which names the backend's pool) to the zpool's ops
// (the 3.17 design).
//
// Calls in flight. Each pool has a kc::PercpuRef: every call enters it (its thread's counter) for
// its duration, and a mapping keeps the reference of its zpool_map_handle() call until the
// unmap. zpool_destroy_pool() claims the pool (`destroying`), marks the ref dying and sums the
// counters: any call or mapping still counted refuses the destroy (destroy-busy); calls that
// start after the mark fail (use-after-destroy). A thread that already holds a reference on the
// pool (it is inside a call on it, e.g. an evict callback, or it maps a handle of it) never has
// a nested call refused by a racing destroy attempt: that attempt must fail, so the call waits
// for it to back out.
//
// zpool_map_handle() and zpool_unmap_handle() run on every load: their common case (a live pool,
// no mapping held; the mapping this thread holds) is checked inline without a stack frame, and
// anything else goes to out-of-line functions that take the checks in order and report.
//
// Per-thread state (thread_local, constant-initialised): the one mapping this thread holds
// (pool, handle, whether the pool can sleep mapped), and a stack of the zpool calls it is inside
// that run user code (CallFrame: zpool_shrink -> backend -> zpool_evict -> ops->evict ->
// zpool_free nests calls on one pool; no other call runs user code, so only those two push a
// frame and the common calls touch no per-thread state but the mapping).
//
// Eviction. zpool_evict() puts an EvictFrame (the handle, `freed`) on the pool's `evicting` list
// under `evict_lock` for the duration of the user's callback; zpool_free() of that handle, on
// any thread, marks it freed. A callback that returns 0 without freeing is bad-evict.
//
// Locks: drivers_lock, pools_lock and a pool's evict_lock are spinlocks (zpool calls may run in
// atomic context, under a zsmalloc mapping) and never nest; no zpool lock is held while a
// driver operation or a user callback runs.
#include "zpool/zpool.h"

#include <stdio.h>
#include <string.h>

#include <new>

#include "zpool/kernel/live_memo.h"
#include "zpool/kernel/lock.h"
#include "zpool/kernel/page.h"
#include "zpool/kernel/percpu_ref.h"
#include "zpool/kernel/sched.h"
#include "zpool/kernel/thread_annotations.h"
#include "zpool/inject.h"
#include "zpool/misuse.h"

namespace zpool_internal {
struct PoolList;        // tag: the registry's list of pools
struct EvictFrameList;  // tag: a pool's evictions in progress

// One eviction in progress: the user's evict callback for `handle` is running.
struct EvictFrame : kc::ListNode<EvictFrameList> {
  unsigned long handle = 0;
  bool freed = false;  // the pool's evict_lock
};
}  // namespace zpool_internal

namespace {

constinit kc::LockClass kDriversLockClass("zpool drivers_lock");
constinit kc::LockClass kPoolsLockClass("zpool pools_lock");
constinit kc::LockClass kEvictLockClass("zpool evict_lock");

const char *Name(const char *s) { return s != nullptr ? s : "(null)"; }

// The cache every struct zpool comes from, published by the registry's constructor, so that the
// pool check of every call reads one global instead of calling registry(). NULL until then:
// no pool exists before the registry does.
constinit std::atomic<struct kmem_cache *> g_pool_cache{nullptr};
// Every struct zpool is freed through this count, so a thread's memo of the pool it proved live
// last (kc::LiveMemo) answers the pool check of its next call until some pool is freed.
constinit kc::FreeCount g_pools_freed;
constinit thread_local kc::LiveMemo t_live_pool;

// The calls in flight on a pool. REQUIRES: pool is a slot of the pool cache (live or freed).
kc::PercpuRef &PoolRef(const struct zpool *pool) {
  return *kc::kmem_cache_slot_ref(g_pool_cache.load(std::memory_order_relaxed), pool);
}

}  // namespace

struct zpool : kc::ListNode<zpool_internal::PoolList> {
  zpool(struct zpool_driver *d, const struct zpool_ops *o) : driver(d), ops(o) {}
  zpool(const zpool &) = delete;
  zpool &operator=(const zpool &) = delete;

  struct zpool_driver *const driver;
  const struct zpool_ops *const ops;
  void *pool = nullptr;    // the backend's pool
  bool evictable = false;  // driver->shrink && ops && ops->evict

  // Calls in flight and mappings held: in the pool cache's slot (PoolRef()), which outlives the
  // pool, so that a call racing the destroy finds it dying instead of touching freed memory.
  std::atomic<bool> destroying{false};  // claimed by one zpool_destroy_pool()

  spinlock_t evict_lock{kEvictLockClass};
  kc::IntrusiveList<zpool_internal::EvictFrame, zpool_internal::EvictFrameList> evicting
      KC_GUARDED_BY(evict_lock);
  std::atomic<int> nr_evicting{0};  // evicting.size(), readable without the lock
};

namespace {

struct Registry {
  Registry()
      : pool_cache(kc::kmem_cache_create_typesafe("zpool", sizeof(struct zpool),
                                                   alignof(struct zpool))) {
    BUG_ON(pool_cache == nullptr);
    g_pool_cache.store(pool_cache, std::memory_order_release);
    kc::SpinLockGuard guard(drivers_lock);
    for (zpool_driver *driver : zpool_internal::builtin_drivers()) {
      driver->refcount.store(0, std::memory_order_relaxed);
      drivers.push_back(driver);
    }
  }

  spinlock_t drivers_lock{kDriversLockClass};
  kc::IntrusiveList<zpool_driver, zpool_internal::DriverList> drivers KC_GUARDED_BY(drivers_lock);
  spinlock_t pools_lock{kPoolsLockClass};
  kc::IntrusiveList<struct zpool, zpool_internal::PoolList> pools KC_GUARDED_BY(pools_lock);
  struct kmem_cache *const pool_cache;
};

// Created by the first zpool call (thread-safe), never destroyed (usable until exit).
Registry &registry() {
  static Registry *const r = new Registry();
  return *r;
}

using DriverRegistryList = kc::IntrusiveList<zpool_driver, zpool_internal::DriverList>;

// ---- Driver references -------------------------------------------------------------------------

enum class Lookup { kFound, kUnknown, kGoing };

zpool_driver *FindDriver(Registry &r, const char *type) KC_REQUIRES(r.drivers_lock) {
  zpool_driver *found = nullptr;
  r.drivers.for_each([&](zpool_driver *d) {
    if (found == nullptr && strcmp(d->type, type) == 0) found = d;
  });
  return found;
}

// The driver for `type` with a module reference and a driver reference, or NULL (`why`).
void TakeDriverRef(zpool_driver *driver) {
  kc::sched_atomic(&driver->refcount);
  driver->refcount.fetch_add(1, std::memory_order_acq_rel);
}

zpool_driver *GetDriver(const char *type, Lookup *why) {
  Registry &r = registry();
  zpool_driver *driver;
  {
    kc::SpinLockGuard guard(r.drivers_lock);
    driver = FindDriver(r, type);
    if (driver == nullptr) {
      *why = Lookup::kUnknown;
      return nullptr;
    }
    if (!try_module_get(driver->owner)) {
      *why = Lookup::kGoing;
      return nullptr;
    }
    if (!kBugDriverRefGap) TakeDriverRef(driver);
  }
  if (kBugDriverRefGap) {  // injected bug (zpool/inject.h): the reference after the lock is gone
    kc::sched_gap(&r.drivers_lock);
    TakeDriverRef(driver);
  }
  *why = Lookup::kFound;
  return driver;
}

void PutDriver(zpool_driver *driver) {
  // Read before the decrement: once the count is 0 the driver may be unregistered and freed.
  struct module *owner = driver->owner;
  const char *type = driver->type;
  kc::sched_atomic(&driver->refcount);
  int before = driver->refcount.fetch_sub(1, std::memory_order_acq_rel);
  module_put(owner);
  if (before <= 0)
    ZPOOL_MISUSE(ZPOOL_MISUSE_DRIVER_REFCOUNT,
                 "zpool driver %s: refcount went from %d to %d (more puts than gets: was the "
                 "refcount changed outside zpool?)",
                 Name(type), before, before - 1);
}

// ---- Per-thread state --------------------------------------------------------------------------

// The zpool calls this thread is inside, innermost first.
struct CallFrame {
  struct zpool *pool;
  CallFrame *outer;
  bool bad_evict_reported;  // a bad-evict was reported within this call
};

// The mapping this thread holds (at most one).
struct ThreadMapping {
  struct zpool *pool;  // NULL: none
  unsigned long handle;
  bool sleepable;  // the pool's driver can sleep mapped
};

thread_local constinit ThreadMapping t_mapping = {};
thread_local constinit CallFrame *t_calls = nullptr;

bool ThreadMapsAtomic() { return t_mapping.pool != nullptr && !t_mapping.sleepable; }

// May this thread sleep? Not while it maps a handle of a backend that cannot sleep mapped, nor in
// atomic context for another reason (a spinlock held around the call: the kernel's "sleeping
// function called from invalid context"). The reason, for the reports; empty when it may.
struct AtomicWhy {
  char text[200];
};
AtomicWhy WhyAtomic() {
  AtomicWhy why = {""};
  if (ThreadMapsAtomic())
    snprintf(why.text, sizeof(why.text),
             "this thread maps handle %#lx of pool %p, which cannot sleep mapped (missing "
             "zpool_unmap_handle()?)",
             t_mapping.handle, static_cast<void *>(t_mapping.pool));
  else if (kc_in_atomic())
    snprintf(why.text, sizeof(why.text),
             "this thread is in atomic context (preempt_count %d: holding a spinlock?)",
             preempt_count());
  return why;
}
bool MaySleep() { return !ThreadMapsAtomic() && !kc_in_atomic(); }

CallFrame *InnermostCallOn(const struct zpool *pool, CallFrame *from) {
  for (CallFrame *f = from; f != nullptr; f = f->outer)
    if (f->pool == pool) return f;
  return nullptr;
}

// This thread holds a counted reference on the pool: a mapping, or a call in progress.
bool PinnedByThisThread(const struct zpool *pool) {
  return t_mapping.pool == pool || InnermostCallOn(pool, t_calls) != nullptr;
}

// EnterPool() when the pool's destruction has begun: refused, unless this thread already holds a
// reference on the pool; then the destroy attempt must fail, and the call waits for it to back
// out instead.
[[gnu::noinline]] bool EnterDyingPool(struct zpool *pool) {
  if (!PinnedByThisThread(pool)) return false;
  unsigned spins = 0;
  do {
    kc::WaitSpin(spins, &PoolRef(pool));  // the destroyer's abort_destroy() names the same object
  } while (!PoolRef(pool).enter());
  return true;
}

// Counts a call in flight on a live pool. False once the pool's destruction has begun (but see
// EnterDyingPool()).
inline bool EnterPool(struct zpool *pool) {
  return __builtin_expect(PoolRef(pool).enter(), 1) || EnterDyingPool(pool);
}

inline bool IsLivePool(const struct zpool *pool) {
  struct kmem_cache *cache = g_pool_cache.load(std::memory_order_acquire);
  return cache != nullptr && t_live_pool.Owns(cache, g_pools_freed, pool);
}

// One zpool call on a pool: checks that the pool is live and counts the call in flight, for the
// scope of the object. A call that runs user code (zpool_shrink: the evict callback) also pushes
// a frame on this thread's call stack, so the callback's own calls on the pool are known to be
// nested in it.
class PoolCall {
 public:
  enum State { kOk, kNotLive, kDying };
  enum Frame { kNoFrame, kPushFrame };

  explicit PoolCall(struct zpool *pool, Frame frame = kNoFrame) : pool_(pool) {
    if constexpr (!ZPOOL_CHECKS) return;
    if (!IsLivePool(pool)) {
      state_ = kNotLive;
      return;
    }
    if (!EnterPool(pool)) {
      state_ = kDying;
      return;
    }
    entered_ = true;
    if (frame == kPushFrame) {
      framed_ = true;
      frame_ = {pool, t_calls, false};
      t_calls = &frame_;
    }
  }
  ~PoolCall() {
    if (!entered_) return;
    if (framed_) t_calls = frame_.outer;
    if (!kept_) PoolRef(pool_).exit();
  }
  PoolCall(const PoolCall &) = delete;
  PoolCall &operator=(const PoolCall &) = delete;

  State state() const { return state_; }
  const char *why() const {
    return state_ == kNotLive
               ? "not a live pool (destroyed already, or never returned by zpool_create_pool())"
               : "the pool is being destroyed (a call racing zpool_destroy_pool()?)";
  }
  // The call's reference passes to a mapping; zpool_unmap_handle() drops it.
  void keep_reference() { kept_ = entered_; }

 private:
  struct zpool *const pool_;
  State state_ = kOk;
  bool entered_ = false;
  bool framed_ = false;
  bool kept_ = false;
  CallFrame frame_ = {};
};

}  // namespace

// Starts a call on `pool` (an identifier) named `api`; on a pool that is not live, or is being
// destroyed, reports use-after-destroy and returns `fail` (empty for void functions). A fifth
// argument is the PoolCall's Frame. ZPOOL_CALL: the call is the enclosing function.
#define ZPOOL_CALL_AS(api, call, pool, fail, ...)                   \
  PoolCall call(pool __VA_OPT__(, ) __VA_ARGS__);                   \
  if (__builtin_expect(call.state() != PoolCall::kOk, 0)) {         \
    ZPOOL_MISUSE(ZPOOL_MISUSE_USE_AFTER_DESTROY, "%s(%p): %s", api, \
                 static_cast<const void *>(pool), call.why());      \
    return fail;                                                    \
  }
#define ZPOOL_CALL(call, pool, fail, ...) \
  ZPOOL_CALL_AS(__func__, call, pool, fail __VA_OPT__(, ) __VA_ARGS__)

// ---- Registry ----------------------------------------------------------------------------------

void zpool_register_driver(struct zpool_driver *driver) {
  if (WARN(driver == nullptr, "zpool_register_driver(NULL): ignored")) return;
  if (WARN(driver->type == nullptr || driver->create == nullptr || driver->destroy == nullptr ||
               driver->malloc == nullptr || driver->free == nullptr || driver->map == nullptr ||
               driver->unmap == nullptr || driver->total_size == nullptr,
           "zpool_register_driver(%s): driver without a type or a required operation; ignored",
           Name(driver->type)))
    return;
  Registry &r = registry();
  zpool_driver *other = nullptr;
  bool again = false;
  {
    kc::SpinLockGuard guard(r.drivers_lock);
    again = DriverRegistryList::is_linked(driver);
    if (!again) other = FindDriver(r, driver->type);
    if (!again && other == nullptr) {
      driver->refcount.store(0, std::memory_order_relaxed);
      r.drivers.push_back(driver);
    }
  }
  WARN(again, "zpool_register_driver(%s): driver %p is already registered; ignored", driver->type,
       static_cast<void *>(driver));
  WARN(other != nullptr,
       "zpool_register_driver(%s): type already registered by driver %p; driver %p ignored",
       driver->type, static_cast<void *>(other), static_cast<void *>(driver));
}

int zpool_unregister_driver(struct zpool_driver *driver) {
  if (WARN(driver == nullptr, "zpool_unregister_driver(NULL)")) return -EINVAL;
  Registry &r = registry();
  bool registered;
  int refcount;
  {
    kc::SpinLockGuard guard(r.drivers_lock);
    registered = DriverRegistryList::is_linked(driver);
    refcount = driver->refcount.load(std::memory_order_acquire);
    if (registered && refcount == 0) r.drivers.remove(driver);
  }
  if (WARN(!registered,
           "zpool_unregister_driver(%s): driver %p is not registered (unregistered twice?)",
           Name(driver->type), static_cast<void *>(driver)))
    return -EINVAL;
  if (refcount < 0) {
    ZPOOL_MISUSE(ZPOOL_MISUSE_DRIVER_REFCOUNT,
                 "zpool_unregister_driver(%s): refcount is %d (more puts than gets: was the "
                 "refcount changed outside zpool?); the driver stays registered",
                 driver->type, refcount);
    return -EBUSY;
  }
  return refcount > 0 ? -EBUSY : 0;
}

bool zpool_has_pool(const char *type) {
  if (type == nullptr) return false;
  Lookup why;
  zpool_driver *driver = GetDriver(type, &why);
  if (driver == nullptr) return false;
  PutDriver(driver);
  return true;
}

// ---- Pool lifecycle ----------------------------------------------------------------------------

struct zpool *zpool_create_pool(const char *type, const char *name, gfp_t gfp,
                                const struct zpool_ops *ops) {
  if (type == nullptr) {
    pr_err("zpool: no pool type given\n");
    return nullptr;
  }
  if (ZPOOL_CHECKS && !MaySleep()) {
    ZPOOL_MISUSE(ZPOOL_MISUSE_SLEEP_WHILE_MAPPED,
                 "sleeping function called from invalid context: zpool_create_pool(%s) may "
                 "sleep, but %s; refused",
                 type, WhyAtomic().text);
    return nullptr;
  }
  pr_debug("zpool: creating pool type %s\n", type);
  Lookup why;
  zpool_driver *driver = GetDriver(type, &why);
  if (driver == nullptr) {
    if (why == Lookup::kGoing)
      pr_err("zpool: driver for type %s is going away\n", type);
    else
      pr_err("zpool: no driver for type %s\n", type);
    return nullptr;
  }
  Registry &r = registry();
  void *mem = kmem_cache_alloc(r.pool_cache, gfp & ~__GFP_ZERO);
  if (mem == nullptr) {
    pr_err("zpool: couldn't create zpool - out of memory\n");
    PutDriver(driver);
    return nullptr;
  }
  auto *pool = new (mem) struct zpool(driver, ops);
  PoolRef(pool).abort_destroy();  // the slot's count was left dying by the pool freed from it
  pool->pool = driver->create(name, gfp, ops, pool);
  if (pool->pool == nullptr) {
    pr_err("zpool: couldn't create %s pool\n", type);
    pool->~zpool();
    g_pools_freed.Free(r.pool_cache, pool);
    if (!kBugCreateRefcount) PutDriver(driver);  // (injected bug: zpool/inject.h)
    return nullptr;
  }
  pool->evictable = driver->shrink != nullptr && ops != nullptr && ops->evict != nullptr;
  {
    kc::SpinLockGuard guard(r.pools_lock);
    r.pools.push_back(pool);
  }
  pr_debug("zpool: created pool type %s\n", type);
  return pool;
}

void zpool_destroy_pool(struct zpool *pool) {
  Registry &r = registry();
  if constexpr (ZPOOL_CHECKS) {
    if (!IsLivePool(pool)) {
      ZPOOL_MISUSE(ZPOOL_MISUSE_USE_AFTER_DESTROY,
                   "zpool_destroy_pool(%p): not a live pool (destroyed twice?)",
                   static_cast<void *>(pool));
      return;
    }
    if (pool->destroying.exchange(true, std::memory_order_acq_rel)) {
      ZPOOL_MISUSE(ZPOOL_MISUSE_USE_AFTER_DESTROY,
                   "zpool_destroy_pool(%p): another thread is destroying the pool (destroyed "
                   "twice?)",
                   static_cast<void *>(pool));
      return;
    }
    if (t_mapping.pool == pool) {
      pool->destroying.store(false, std::memory_order_release);
      ZPOOL_MISUSE(ZPOOL_MISUSE_DESTROY_BUSY,
                   "zpool_destroy_pool(%p): this thread maps handle %#lx of the pool; refused: "
                   "missing zpool_unmap_handle()?",
                   static_cast<void *>(pool), t_mapping.handle);
      return;
    }
    if (ThreadMapsAtomic()) {
      pool->destroying.store(false, std::memory_order_release);
      ZPOOL_MISUSE(ZPOOL_MISUSE_SLEEP_WHILE_MAPPED,
                   "sleeping function called from invalid context: zpool_destroy_pool(%p) may "
                   "sleep, but this thread maps handle %#lx of pool %p, which cannot sleep "
                   "mapped; refused: missing zpool_unmap_handle()?",
                   static_cast<void *>(pool), t_mapping.handle,
                   static_cast<void *>(t_mapping.pool));
      return;
    }
    if (long busy = PoolRef(pool).begin_destroy(); busy != 0) {
      PoolRef(pool).abort_destroy();
      pool->destroying.store(false, std::memory_order_release);
      const bool inside = InnermostCallOn(pool, t_calls) != nullptr;
      ZPOOL_MISUSE(ZPOOL_MISUSE_DESTROY_BUSY,
                   "zpool_destroy_pool(%p): %ld call(s) in flight or handle(s) mapped%s; "
                   "refused: the creator must make sure the pool is unused before destroying it",
                   static_cast<void *>(pool), busy,
                   inside ? " (this thread is inside a call on the pool: an evict callback?)"
                          : " on other threads");
      return;
    }
  }
  {
    kc::SpinLockGuard guard(r.pools_lock);
    r.pools.remove(pool);
  }
  pr_debug("zpool: destroying pool type %s\n", pool->driver->type);
  zpool_driver *driver = pool->driver;
  driver->destroy(pool->pool);
  pool->~zpool();
  g_pools_freed.Free(r.pool_cache, pool);
  PutDriver(driver);
}

// ---- Calls on a pool ---------------------------------------------------------------------------

const char *zpool_get_type(struct zpool *pool) {
  ZPOOL_CALL(call, pool, nullptr);
  return pool->driver->type;
}

int zpool_malloc(struct zpool *pool, size_t size, gfp_t gfp, unsigned long *handle) {
  ZPOOL_CALL(call, pool, -EINVAL);
  if (handle == nullptr) return -EINVAL;
  if (ZPOOL_CHECKS && gfpflags_allow_blocking(gfp) && !MaySleep()) {
    ZPOOL_MISUSE(ZPOOL_MISUSE_SLEEP_WHILE_MAPPED,
                 "sleeping function called from invalid context: zpool_malloc(%p, %zu, gfp "
                 "%#x) may sleep, but %s; allocating without __GFP_DIRECT_RECLAIM",
                 static_cast<void *>(pool), size, gfp, WhyAtomic().text);
    gfp &= ~__GFP_DIRECT_RECLAIM;
  }
  return pool->driver->malloc(pool->pool, size, gfp, handle);
}

namespace {
// zpool_free() of a handle whose eviction is in progress: the callback did its job.
[[maybe_unused]] void NoteEvictedFree(struct zpool *pool, unsigned long handle) {
  kc::SpinLockGuard guard(pool->evict_lock);
  pool->evicting.for_each([&](zpool_internal::EvictFrame *frame) {
    if (frame->handle == handle) frame->freed = true;
  });
}
}  // namespace

void zpool_free(struct zpool *pool, unsigned long handle) {
  ZPOOL_CALL(call, pool, );
  if constexpr (ZPOOL_CHECKS) {
    if (t_mapping.pool == pool && t_mapping.handle == handle) {
      ZPOOL_MISUSE(ZPOOL_MISUSE_FREE_MAPPED,
                   "zpool_free(%p, %#lx): this thread maps the handle; refused (it stays "
                   "allocated and mapped): missing zpool_unmap_handle()?",
                   static_cast<void *>(pool), handle);
      return;
    }
    if (pool->nr_evicting.load(std::memory_order_acquire) != 0) NoteEvictedFree(pool, handle);
  }
  pool->driver->free(pool->pool, handle);
}

int zpool_shrink(struct zpool *pool, unsigned int pages, unsigned int *reclaimed) {
  if (reclaimed != nullptr) *reclaimed = 0;
  ZPOOL_CALL(call, pool, -EINVAL, PoolCall::kPushFrame);
  if (!pool->evictable) return -EINVAL;
  if (ZPOOL_CHECKS && !MaySleep()) {
    ZPOOL_MISUSE(ZPOOL_MISUSE_SLEEP_WHILE_MAPPED,
                 "sleeping function called from invalid context: zpool_shrink(%p, %u) calls "
                 "the evict callback, which may sleep, but %s; refused (-EBUSY)",
                 static_cast<void *>(pool), pages, WhyAtomic().text);
    return -EBUSY;
  }
  return pool->driver->shrink(pool->pool, pages, reclaimed);
}

namespace {

// zpool_map_handle() when its lock-free path declines: the same steps with each check in the
// order of docs/hardening.md, so that whatever is wrong is reported.
[[gnu::noinline]] void *MapChecked(struct zpool *pool, unsigned long handle,
                                   enum zpool_mapmode mm) {
  ZPOOL_CALL_AS("zpool_map_handle", call, pool, nullptr);
  if (ZPOOL_CHECKS && t_mapping.pool != nullptr) {
    ZPOOL_MISUSE(ZPOOL_MISUSE_NESTED_MAP,
                 "zpool_map_handle(%p, %#lx) on cpu %d: this thread already maps handle %#lx of "
                 "pool %p, and only one handle may be mapped per cpu at a time: missing "
                 "zpool_unmap_handle()?",
                 static_cast<void *>(pool), handle, kc_current_cpu(), t_mapping.handle,
                 static_cast<void *>(t_mapping.pool));
    return nullptr;
  }
  void *mem = pool->driver->map(pool->pool, handle, mm);
  if (ZPOOL_CHECKS && mem != nullptr) {
    t_mapping = {pool, handle, pool->driver->sleep_mapped};
    call.keep_reference();
  }
  return mem;
}

// zpool_unmap_handle() of anything but the mapping this thread holds: the misuse to report.
[[gnu::noinline]] void UnmapChecked(struct zpool *pool, unsigned long handle) {
  ZPOOL_CALL_AS("zpool_unmap_handle", call, pool, );
  if (t_mapping.pool == nullptr) {
    ZPOOL_MISUSE(ZPOOL_MISUSE_BAD_UNMAP,
                 "zpool_unmap_handle(%p, %#lx) on cpu %d: this thread maps nothing (unmapped "
                 "twice, or unmapping on another thread than the map?); ignored",
                 static_cast<void *>(pool), handle, kc_current_cpu());
  } else {
    ZPOOL_MISUSE(ZPOOL_MISUSE_BAD_UNMAP,
                 "zpool_unmap_handle(%p, %#lx) on cpu %d: this thread maps handle %#lx of "
                 "pool %p, not this one (wrong handle or pool?); ignored",
                 static_cast<void *>(pool), handle, kc_current_cpu(), t_mapping.handle,
                 static_cast<void *>(t_mapping.pool));
  }
}

}  // namespace

void *zpool_map_handle(struct zpool *pool, unsigned long handle, enum zpool_mapmode mm) {
  if constexpr (!ZPOOL_CHECKS) return pool->driver->map(pool->pool, handle, mm);
  // The common case, without a frame: this thread maps nothing and the pool is live. The call's
  // reference passes to the mapping; zpool_unmap_handle() drops it.
  if (__builtin_expect(t_mapping.pool == nullptr && IsLivePool(pool) && PoolRef(pool).enter(), 1)) {
    void *mem = pool->driver->map(pool->pool, handle, mm);
    if (mem == nullptr) {
      PoolRef(pool).exit();
      return nullptr;
    }
    t_mapping = {pool, handle, pool->driver->sleep_mapped};
    return mem;
  }
  return MapChecked(pool, handle, mm);
}

void zpool_unmap_handle(struct zpool *pool, unsigned long handle) {
  if constexpr (!ZPOOL_CHECKS) {
    pool->driver->unmap(pool->pool, handle);
    return;
  }
  if (t_mapping.pool == pool && t_mapping.handle == handle) {
    // The mapping's reference keeps the pool live until here: nothing else to check.
    pool->driver->unmap(pool->pool, handle);
    t_mapping = {};
    PoolRef(pool).exit();
    return;
  }
  UnmapChecked(pool, handle);  // not this thread's mapping: misuse, ignored
}

u64 zpool_get_total_size(struct zpool *pool) {
  ZPOOL_CALL(call, pool, 0);
  return pool->driver->total_size(pool->pool);
}

bool zpool_evictable(struct zpool *pool) {
  ZPOOL_CALL(call, pool, false);
  return pool->evictable;
}

bool zpool_can_sleep_mapped(struct zpool *pool) {
  ZPOOL_CALL(call, pool, false);
  return pool->driver->sleep_mapped;
}

bool zpool_malloc_support_movable(struct zpool *pool) {
  ZPOOL_CALL(call, pool, false);
  return pool->driver->malloc_support_movable;
}

// ---- Eviction ----------------------------------------------------------------------------------

int zpool_evict(void *backend_pool, unsigned long handle) {
  Registry &r = registry();
  enum { kUnknown, kNoCallback, kDying, kEntered } found = kUnknown;
  struct zpool *pool = nullptr;
  {
    // Under pools_lock the pool cannot be freed (destroy unlists it first), so its ops can be
    // read and the call counted in flight.
    kc::SpinLockGuard guard(r.pools_lock);
    r.pools.for_each([&](struct zpool *p) {
      if (pool == nullptr && p->pool == backend_pool) pool = p;
    });
    if (pool != nullptr) {
      if (pool->ops == nullptr || pool->ops->evict == nullptr)
        found = kNoCallback;
      else if (ZPOOL_CHECKS && !EnterPool(pool))
        found = kDying;
      else
        found = kEntered;
    }
  }
  if (found == kUnknown || found == kDying) return -ENOENT;
  if (found == kNoCallback) return -EINVAL;
  if constexpr (!ZPOOL_CHECKS) return pool->ops->evict(pool, handle);

  CallFrame frame = {pool, t_calls, false};
  t_calls = &frame;
  zpool_internal::EvictFrame evicting;
  evicting.handle = handle;
  {
    kc::SpinLockGuard guard(pool->evict_lock);
    pool->evicting.push_back(&evicting);
    pool->nr_evicting.fetch_add(1, std::memory_order_acq_rel);
  }
  int ret = pool->ops->evict(pool, handle);
  bool freed;
  {
    kc::SpinLockGuard guard(pool->evict_lock);
    pool->evicting.remove(&evicting);
    pool->nr_evicting.fetch_sub(1, std::memory_order_acq_rel);
    freed = evicting.freed;
  }
  if (ret == 0 && !freed) {
    // Report once per enclosing call (zbud retries a failed page up to 8 times).
    CallFrame *outer = InnermostCallOn(pool, frame.outer);
    const bool report = outer == nullptr || !outer->bad_evict_reported;
    if (outer != nullptr) outer->bad_evict_reported = true;
    if (report)
      ZPOOL_MISUSE(ZPOOL_MISUSE_BAD_EVICT,
                   "zpool_evict(%p, %#lx): the evict callback %p returned 0 without freeing the "
                   "handle (it must zpool_free() it first); the eviction fails (-EBUSY) and the "
                   "object stays allocated",
                   static_cast<void *>(pool), handle, reinterpret_cast<void *>(pool->ops->evict));
    ret = -EBUSY;
  }
  t_calls = frame.outer;
  PoolRef(pool).exit();
  return ret;
}

// ---- Test hooks --------------------------------------------------------------------------------

unsigned long zpool_live_pools_TestOnly(void) {
  Registry &r = registry();
  kc::SpinLockGuard guard(r.pools_lock);
  return r.pools.size();
}

int zpool_validate_TestOnly(struct zpool *pool, char *why, size_t len) {
  if (ZPOOL_CHECKS && (!IsLivePool(pool) || !EnterPool(pool))) {
    if (why != nullptr && len > 0) snprintf(why, len, "%p is not a live pool", (void *)pool);
    return -EINVAL;
  }
  int ret = pool->driver->validate != nullptr ? pool->driver->validate(pool->pool, why, len) : 0;
  if (ret == 0 && why != nullptr && len > 0) why[0] = '\0';
  if (ZPOOL_CHECKS) PoolRef(pool).exit();
  return ret;
}

// SPDX-License-Identifier: GPL-2.0-only
// The bridge: the kernel API of zfuzz_abi.h, implemented on //zpool/kernel for the upstream
// allocator files (C) that the shim (zfuzz_shim.h) compiles.
//
// - Locks are the kernel layer's spinlock_t and rwlock_t, constructed in the C struct's storage
//   (on first use for a static initializer), one lock class per init site; every acquire and
//   release is a scheduling point at the upstream file's line. local_lock_t is this CPU's copy's
//   owner word: a second thread entering it on the same virtual CPU WARNs and waits, as the
//   project's own per-CPU area does.
// - A page is the kernel layer's page with a C descriptor (struct page of the shim) recorded as
//   its owner, so virt_to_page() and pfn_to_page() stay O(1). The descriptor lives while the
//   page's reference count is above zero; at zero the page must be clean (no type, no private
//   flag, not locked, not isolated, no movable operations) or it is "Bad page state", a BUG.
// - Per-CPU data: a copy per virtual CPU, found from any address inside the registered copy 0.
// - Work runs deterministically: queued work runs when flushed or when the harness asks
//   (upstream_run_pending_work), never on a thread of its own.
#include "zpool/upstream/bridge.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <atomic>
#include <climits>
#include <map>
#include <memory>
#include <mutex>
#include <new>
#include <string>
#include <vector>

#include "zpool/kernel/kernel.h"
#include "zpool/kernel/lock.h"
#include "zpool/kernel/module.h"
#include "zpool/kernel/page.h"
#include "zpool/kernel/percpu.h"
#include "zpool/kernel/sched.h"

using UPage = zfuzz_upstream_page;

namespace {

kc::Site SiteOf(const zfuzz_site &s) {
  return kc::Site::At(s.file ? s.file : "", s.func ? s.func : "", static_cast<unsigned>(s.line));
}

// The bridge's own state: plain std::mutex, never held across a scheduling point.
std::mutex &BridgeMutex() {
  static std::mutex *mu = new std::mutex();
  return *mu;
}

constexpr unsigned long kAllowedGfp = __GFP_HIGHMEM | __GFP_MOVABLE | __GFP_HIGH | __GFP_IO |
                                      __GFP_FS | __GFP_ZERO | __GFP_DIRECT_RECLAIM |
                                      __GFP_KSWAPD_RECLAIM | __GFP_NOWARN;
gfp_t Gfp(unsigned int gfp) { return static_cast<gfp_t>(gfp & kAllowedGfp); }

}  // namespace

// ---- modules -------------------------------------------------------------------------------------

extern "C" {
char zfuzz_module_zsmalloc, zfuzz_module_zpool, zfuzz_module_zbud, zfuzz_module_z3fold;
}

namespace {

struct module g_mod_zsmalloc("zsmalloc"), g_mod_zpool("zpool"), g_mod_zbud("zbud"),
    g_mod_z3fold("z3fold");

struct module *KcModule(struct module *handle) {
  const void *h = handle;
  if (h == &zfuzz_module_zsmalloc) return &g_mod_zsmalloc;
  if (h == &zfuzz_module_zpool) return &g_mod_zpool;
  if (h == &zfuzz_module_zbud) return &g_mod_zbud;
  if (h == &zfuzz_module_z3fold) return &g_mod_z3fold;
  return handle;  // a module of the caller's own (a test's driver), or NULL
}

}  // namespace

// ---- reports, scheduling, CPUs ---------------------------------------------------------------

void upstream_log(int level, const char *fmt, ...) {
  char buf[1024];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(buf, sizeof(buf), fmt, ap);
  va_end(ap);
  // The kernel's messages end in '\n'; the kernel layer's reports add their own.
  if (n > 0 && static_cast<size_t>(n) < sizeof(buf) && buf[n - 1] == '\n') buf[n - 1] = '\0';
  if (level <= 3)
    pr_err("%s", buf);
  else if (level == 4)
    pr_warn("%s", buf);
  else if (level <= 6)
    pr_info("%s", buf);
  else
    pr_debug("%s", buf);
}

bool upstream_warn(zfuzz_site site, const char *cond, const char *fmt, ...) {
  char buf[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof(buf), fmt, ap);
  va_end(ap);
  return kc_warn_report(site.file, site.line, site.func, cond, "%s", buf);
}

void upstream_bug(zfuzz_site site, const char *cond, const UPage *page) {
  if (page != nullptr) {
    fprintf(stderr,
            "page:%p flags:%#lx mapping:%p index:%#lx private:%#lx page_type:%#x refcount:%d "
            "locked:%d\n",
            static_cast<const void *>(page), page->flags, page->mapping, page->index,
            page->private_, page->page_type, page->_refcount.counter, page->zfuzz_locked);
  }
  kc_bug_report(site.file, site.line, site.func, cond);
  abort();
}

void upstream_might_sleep(zfuzz_site site) {
  if (kc_in_atomic() && kc_warn_report(site.file, site.line, site.func, "might_sleep()", "%s",
                                       kc_might_sleep_message()))
    abort();
}

void upstream_sched_point(zfuzz_site site, const void *obj) {
  kc::sched_point(kc::SchedEvent::kAtomic, obj, SiteOf(site));
}

void upstream_cond_resched(zfuzz_site site) {
  upstream_might_sleep(site);
  kc::sched_point(kc::SchedEvent::kYield, nullptr, SiteOf(site));
}

int upstream_current_cpu(void) { return kc_current_cpu(); }
int upstream_nr_cpus(void) { return kc_nr_cpus(); }
bool upstream_in_atomic(void) { return kc_in_atomic(); }
void upstream_preempt_disable(zfuzz_site) { preempt_disable(); }
void upstream_preempt_enable(zfuzz_site) { preempt_enable(); }

bool upstream_try_module_get(struct module *mod) { return try_module_get(KcModule(mod)); }
void upstream_module_put(struct module *mod) { module_put(KcModule(mod)); }

int upstream_request_module(const char *fmt, ...) {
  // No module can be loaded here: the name is formatted (never used as a format itself, the
  // 2014 request_module(type) lesson) and the answer is "no such module".
  char name[128];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(name, sizeof(name), fmt, ap);
  va_end(ap);
  pr_debug("request_module(%s): no modules to load\n", name);
  return -ENOENT;
}

// ---- locks ----------------------------------------------------------------------------------------

namespace {

static_assert(sizeof(spinlock_t) <= sizeof(zfuzz_lock_storage::impl), "spinlock_t fits");
static_assert(sizeof(rwlock_t) <= sizeof(zfuzz_lock_storage::impl), "rwlock_t fits");

// One lock class per init site (and per static lock's name), as lockdep's static keys make them.
const kc::LockClass &ClassFor(const std::string &key, const char *name) {
  static std::map<std::string, std::unique_ptr<kc::LockClass>> *classes =
      new std::map<std::string, std::unique_ptr<kc::LockClass>>();
  static std::map<std::string, std::string> *names = new std::map<std::string, std::string>();
  std::lock_guard<std::mutex> guard(BridgeMutex());
  auto it = classes->find(key);
  if (it != classes->end()) return *it->second;
  std::string &stored = (*names)[key];
  stored = std::string("upstream ") + name;
  auto &cls = (*classes)[key];
  cls = std::make_unique<kc::LockClass>(stored.c_str());
  return *cls;
}

// The local lock of one per-CPU copy: its owner, and a WARN when a second thread enters.
struct LocalLockImpl {
  std::atomic<pid_t> owner{0};
};
static_assert(sizeof(LocalLockImpl) <= sizeof(zfuzz_lock_storage::impl), "local lock fits");

void Construct(zfuzz_lock_storage *s, int kind, const kc::LockClass &cls) {
  switch (kind) {
    case ZFUZZ_SPIN:
      new (s->impl) spinlock_t(cls);
      break;
    case ZFUZZ_RW:
      new (s->impl) rwlock_t(cls);
      break;
    default:
      new (s->impl) LocalLockImpl();
      break;
  }
}

// The lock in s, constructed now if it is a static one nobody has used yet.
void Ready(zfuzz_lock_storage *s, int kind) {
  if (__atomic_load_n(&s->state, __ATOMIC_ACQUIRE) == 2) return;
  int expected = 0;
  if (__atomic_compare_exchange_n(&s->state, &expected, 1, false, __ATOMIC_ACQ_REL,
                                  __ATOMIC_ACQUIRE)) {
    std::string name = s->name ? s->name : "static lock";
    Construct(s, kind, ClassFor("static:" + name, name.c_str()));
    __atomic_store_n(&s->state, 2, __ATOMIC_RELEASE);
    return;
  }
  while (__atomic_load_n(&s->state, __ATOMIC_ACQUIRE) != 2) {
  }
}

spinlock_t &Spin(zfuzz_lock_storage *s) { return *std::launder(reinterpret_cast<spinlock_t *>(s->impl)); }
rwlock_t &Rw(zfuzz_lock_storage *s) { return *std::launder(reinterpret_cast<rwlock_t *>(s->impl)); }
LocalLockImpl &Local(zfuzz_lock_storage *s) {
  return *std::launder(reinterpret_cast<LocalLockImpl *>(s->impl));
}

void LocalLock(zfuzz_lock_storage *s, const kc::Site &site) {
  kc::sched_point(kc::SchedEvent::kPreemptDisable, s, site);
  preempt_disable();
  LocalLockImpl &l = Local(s);
  pid_t me = kc::CurrentTid(), holder = 0;
  if (!l.owner.compare_exchange_strong(holder, me)) {
    BUG_ON(holder == me);  // the same thread twice: a self-deadlock
    WARN(true,
         "two threads inside local_lock %s of cpu %d: tid %d holds it, tid %d entered (two "
         "threads bound to one virtual CPU?); waiting",
         s->name ? s->name : "?", kc_current_cpu(), static_cast<int>(holder),
         static_cast<int>(me));
    unsigned spins = 0;
    do {
      kc::WaitSpin(spins, s, site);
      holder = 0;
    } while (!l.owner.compare_exchange_weak(holder, me));
  }
}

void LocalUnlock(zfuzz_lock_storage *s, const kc::Site &site) {
  LocalLockImpl &l = Local(s);
  if (WARN(l.owner.load() != kc::CurrentTid(), "local_unlock of %s by a thread that does not hold it",
           s->name ? s->name : "?"))
    return;
  l.owner.store(0);
  preempt_enable();
  kc::sched_point(kc::SchedEvent::kPreemptEnable, s, site);
}

}  // namespace

void upstream_lock_init(zfuzz_lock_storage *s, int kind, const char *name, zfuzz_site site) {
  std::string key = std::string(site.file ? site.file : "") + ":" + std::to_string(site.line) +
                    ":" + (name ? name : "");
  Construct(s, kind, ClassFor(key, name ? name : "lock"));
  s->name = name;
  __atomic_store_n(&s->state, 2, __ATOMIC_RELEASE);
}

void upstream_lock(zfuzz_lock_storage *s, int kind, int op, zfuzz_site site)
    KC_NO_THREAD_SAFETY_ANALYSIS {
  Ready(s, kind);
  const kc::Site at = SiteOf(site);
  switch (op) {
    case ZFUZZ_LOCK:
      if (kind == ZFUZZ_LOCAL)
        LocalLock(s, at);
      else
        Spin(s).lock(at);
      break;
    case ZFUZZ_UNLOCK:
      if (kind == ZFUZZ_LOCAL)
        LocalUnlock(s, at);
      else
        Spin(s).unlock(at);
      break;
    case ZFUZZ_READ_LOCK:
      Rw(s).read_lock(at);
      break;
    case ZFUZZ_READ_UNLOCK:
      Rw(s).read_unlock(at);
      break;
    case ZFUZZ_WRITE_LOCK:
      Rw(s).write_lock(at);
      break;
    case ZFUZZ_WRITE_UNLOCK:
      Rw(s).write_unlock(at);
      break;
  }
}

int upstream_trylock(zfuzz_lock_storage *s, int kind, int op, zfuzz_site site)
    KC_NO_THREAD_SAFETY_ANALYSIS {
  Ready(s, kind);
  const kc::Site at = SiteOf(site);
  if (kind == ZFUZZ_SPIN) return Spin(s).trylock(at);
  if (op == ZFUZZ_READ_LOCK) return Rw(s).read_trylock(at);
  return Rw(s).write_trylock(at);
}

int upstream_lock_query(zfuzz_lock_storage *s, int kind, int what) {
  Ready(s, kind);
  if (kind == ZFUZZ_SPIN)
    return what == ZFUZZ_CONTENDED ? Spin(s).is_contended() : Spin(s).held_by_me();
  if (kind == ZFUZZ_RW)
    return what == ZFUZZ_CONTENDED ? Rw(s).is_contended() : Rw(s).held_by_me();
  return Local(s).owner.load() == kc::CurrentTid();
}

// ---- per-CPU data, CPU hotplug ----------------------------------------------------------------

namespace {

struct PerCpu {
  char *base;  // copy 0
  size_t size;
  std::vector<std::unique_ptr<char[]>> copies;  // copies 1 .. kMaxCpus-1
  bool dynamic;
};

std::vector<PerCpu> &PerCpus() {
  static std::vector<PerCpu> *v = new std::vector<PerCpu>();
  return *v;
}

}  // namespace

void upstream_percpu_register(void *base, size_t size) {
  PerCpu p{static_cast<char *>(base), size, {}, false};
  for (int cpu = 1; cpu < kc::kMaxCpus; cpu++) {
    p.copies.emplace_back(new char[size]);
    memcpy(p.copies.back().get(), base, size);  // the initializer's values
  }
  std::lock_guard<std::mutex> guard(BridgeMutex());
  PerCpus().push_back(std::move(p));
}

void *upstream_percpu_ptr(const void *ptr, int cpu) {
  const char *p = static_cast<const char *>(ptr);
  BUG_ON(cpu < 0 || cpu >= kc::kMaxCpus);
  std::lock_guard<std::mutex> guard(BridgeMutex());
  for (PerCpu &v : PerCpus()) {
    if (p >= v.base && p < v.base + v.size) {
      if (cpu == 0) return const_cast<char *>(p);
      return v.copies[static_cast<size_t>(cpu - 1)].get() + (p - v.base);
    }
  }
  pr_err("upstream: this_cpu_ptr/per_cpu_ptr(%p): not per-CPU data\n", ptr);
  BUG();
}

void *upstream_alloc_percpu(size_t size, size_t align) {
  (void)align;  // new char[] is aligned for any fundamental type
  char *base = new char[size]();
  PerCpu p{base, size, {}, true};
  for (int cpu = 1; cpu < kc::kMaxCpus; cpu++) p.copies.emplace_back(new char[size]());
  std::lock_guard<std::mutex> guard(BridgeMutex());
  PerCpus().push_back(std::move(p));
  return base;
}

void upstream_free_percpu(void *ptr) {
  if (ptr == nullptr) return;
  std::lock_guard<std::mutex> guard(BridgeMutex());
  auto &v = PerCpus();
  for (auto it = v.begin(); it != v.end(); ++it) {
    if (it->base == ptr && it->dynamic) {
      delete[] it->base;
      v.erase(it);
      return;
    }
  }
  WARN(true, "free_percpu(%p): not allocated by alloc_percpu", ptr);
}

namespace {
struct Hotplug {
  int state;
  int (*startup)(unsigned int);
  int (*teardown)(unsigned int);
};
std::vector<Hotplug> &Hotplugs() {
  static std::vector<Hotplug> *v = new std::vector<Hotplug>();
  return *v;
}
}  // namespace

int upstream_cpuhp_setup(int state, const char *name, int (*startup)(unsigned int),
                         int (*teardown)(unsigned int)) {
  for (int cpu = 0; cpu < kc_nr_cpus(); cpu++) {
    if (startup == nullptr) break;
    if (int err = startup(static_cast<unsigned>(cpu)); err != 0) {
      pr_err("cpuhp %s: startup of cpu %d failed with %d\n", name, cpu, err);
      for (int undo = cpu - 1; undo >= 0 && teardown != nullptr; undo--)
        teardown(static_cast<unsigned>(undo));
      return err;
    }
  }
  Hotplugs().push_back(Hotplug{state, startup, teardown});
  return 0;
}

void upstream_cpuhp_remove(int state) {
  auto &v = Hotplugs();
  for (auto it = v.begin(); it != v.end(); ++it) {
    if (it->state != state) continue;
    for (int cpu = kc_nr_cpus() - 1; cpu >= 0 && it->teardown != nullptr; cpu--)
      it->teardown(static_cast<unsigned>(cpu));
    v.erase(it);
    return;
  }
}

// ---- memory ------------------------------------------------------------------------------------

void *upstream_kmalloc(size_t size, unsigned int gfp, zfuzz_site site) {
  if (gfpflags_allow_blocking(Gfp(gfp))) upstream_might_sleep(site);
  return kmalloc(size, Gfp(gfp) & ~__GFP_DIRECT_RECLAIM);
}

void upstream_kfree(const void *p) { kfree(p); }

char *upstream_kstrdup(const char *s, unsigned int gfp, zfuzz_site site) {
  if (s == nullptr) return nullptr;
  size_t n = strlen(s) + 1;
  char *copy = static_cast<char *>(upstream_kmalloc(n, gfp, site));
  if (copy != nullptr) memcpy(copy, s, n);
  return copy;
}

char *upstream_kasprintf(unsigned int gfp, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(nullptr, 0, fmt, ap);
  va_end(ap);
  if (n < 0) return nullptr;
  char *buf = static_cast<char *>(kmalloc(static_cast<size_t>(n) + 1, Gfp(gfp)));
  if (buf == nullptr) return nullptr;
  va_start(ap, fmt);
  vsnprintf(buf, static_cast<size_t>(n) + 1, fmt, ap);
  va_end(ap);
  return buf;
}

namespace {
// The names of the caches (zsmalloc frees its name right after kmem_cache_create: copied) and
// their constructors.
struct CacheInfo {
  std::unique_ptr<std::string> name;  // what the kernel layer's cache points at
  void (*ctor)(void *);
  // Objects in use -> where they were allocated: a cache destroyed with objects left names
  // the upstream lines that allocated them (as SLUB's "Objects remaining" report does).
  std::map<const void *, zfuzz_site> live;
};
std::map<const struct kmem_cache *, CacheInfo> &Caches() {
  static std::map<const struct kmem_cache *, CacheInfo> *m =
      new std::map<const struct kmem_cache *, CacheInfo>();
  return *m;
}
}  // namespace

struct kmem_cache *upstream_kmem_cache_create(const char *name, unsigned int size,
                                              unsigned int align, unsigned long flags,
                                              void (*ctor)(void *)) {
  (void)flags;
  // The kernel layer's cache keeps the name pointer: it points at a copy that lives until the
  // cache is destroyed.
  CacheInfo info{std::make_unique<std::string>(name ? name : ""), ctor, {}};
  struct kmem_cache *cache = kmem_cache_create(info.name->c_str(), size, align);
  if (cache == nullptr) return nullptr;
  std::lock_guard<std::mutex> guard(BridgeMutex());
  Caches().emplace(cache, std::move(info));
  return cache;
}

void *upstream_kmem_cache_alloc(struct kmem_cache *c, unsigned int gfp, zfuzz_site site) {
  if (gfpflags_allow_blocking(Gfp(gfp))) upstream_might_sleep(site);
  void *obj = kmem_cache_alloc(c, Gfp(gfp) & ~__GFP_DIRECT_RECLAIM);
  if (obj == nullptr) return nullptr;
  void (*ctor)(void *) = nullptr;
  {
    std::lock_guard<std::mutex> guard(BridgeMutex());
    auto it = Caches().find(c);
    if (it != Caches().end()) {
      ctor = it->second.ctor;
      it->second.live[obj] = site;
    }
  }
  if (ctor != nullptr && !(gfp & __GFP_ZERO)) ctor(obj);
  return obj;
}

void upstream_kmem_cache_free(struct kmem_cache *c, void *p) {
  if (p != nullptr) {
    std::lock_guard<std::mutex> guard(BridgeMutex());
    auto it = Caches().find(c);
    if (it != Caches().end()) it->second.live.erase(p);
  }
  kmem_cache_free(c, p);
}

extern "C" int upstream_z3fold_slots_in_use(const void *obj);

namespace {
std::atomic<bool> g_report_known{true};
std::atomic<unsigned long> g_known_seen{0};

// A known upstream finding's signature, or nullptr: objects left in a cache at its destroy.
const char *KnownLeak(const std::string &cache, const void *obj) {
  if (cache == "z3fold_handle" && upstream_z3fold_slots_in_use(obj) == 0)
    return "Z2 (z3fold: empty handle slots of a compaction target page)";
  return nullptr;
}
}  // namespace

void upstream_report_known_findings(bool report) { g_report_known.store(report); }
unsigned long upstream_known_findings_seen(void) { return g_known_seen.load(); }

void upstream_kmem_cache_destroy(struct kmem_cache *c) {
  if (c == nullptr) return;
  std::vector<void *> known;
  {
    std::lock_guard<std::mutex> guard(BridgeMutex());
    auto it = Caches().find(c);
    if (it != Caches().end()) {
      for (const auto &[obj, site] : it->second.live) {
        if (const char *finding = KnownLeak(*it->second.name, obj)) {
          g_known_seen.fetch_add(1);
          if (!g_report_known.load()) {
            known.push_back(const_cast<void *>(obj));
            continue;
          }
          pr_err("kmem_cache_destroy %s: object %p: known upstream finding %s\n",
                 it->second.name->c_str(), obj, finding);
        }
        pr_err("kmem_cache_destroy %s: object %p allocated at %s:%d (%s) still in use\n",
               it->second.name->c_str(), obj, site.file ? site.file : "?", site.line,
               site.func ? site.func : "?");
      }
    }
  }
  for (void *obj : known) upstream_kmem_cache_free(c, obj);  // suppressed: as if freed in time
  kmem_cache_destroy(c);
  std::lock_guard<std::mutex> guard(BridgeMutex());
  Caches().erase(c);
}

// ---- pages ---------------------------------------------------------------------------------------

namespace {

std::atomic<long> g_zone_state[1];  // NR_ZSPAGES
std::atomic<long> g_pages{0};       // upstream pages allocated and not freed

// Every live page, in allocation order up to swaps at removal (deterministic for one thread's
// program): the pages the migration driver can name. Guarded by BridgeMutex(); a page leaves it
// when its count reaches zero, before its descriptor is freed.
std::vector<UPage *> &LivePages() {
  static auto *pages = [] {
    auto *v = new std::vector<UPage *>();
    v->reserve(4096);
    return v;
  }();
  return *pages;
}

void ListPage(UPage *p) {
  std::lock_guard<std::mutex> guard(BridgeMutex());
  p->zfuzz_slot = static_cast<long>(LivePages().size());
  LivePages().push_back(p);
}

void UnlistPage(UPage *p) {
  std::lock_guard<std::mutex> guard(BridgeMutex());
  auto &v = LivePages();
  UPage *last = v.back();
  v[static_cast<size_t>(p->zfuzz_slot)] = last;
  last->zfuzz_slot = p->zfuzz_slot;
  v.pop_back();
  p->zfuzz_slot = -1;
}

UPage *Desc(struct page *kc_page) {
  return kc_page == nullptr ? nullptr : static_cast<UPage *>(const_cast<void *>(kc_page->owner));
}

struct page *KcPage(const UPage *page) { return static_cast<struct page *>(page->zfuzz_kc_page); }

// mm's free_pages_prepare() and bad_page(): what a page must be when its last reference goes.
const char *BadPageReason(const UPage *p) {
  if (p->page_type != UINT_MAX) return "page still has a type (PageZsmalloc?)";
  if (p->zfuzz_locked) return "page still locked";
  if (p->flags & (1UL << ZFUZZ_PG_PRIVATE)) return "PG_private still set";
  if (p->flags & (1UL << ZFUZZ_PG_ISOLATED)) return "PG_isolated still set";
  if (reinterpret_cast<unsigned long>(p->mapping) & ~ZFUZZ_PAGE_MAPPING_FLAGS)
    return "page still has its movable operations (mapping)";
  return nullptr;
}

}  // namespace

UPage *upstream_alloc_page(unsigned int gfp, zfuzz_site site) {
  if (gfpflags_allow_blocking(Gfp(gfp))) upstream_might_sleep(site);
  struct page *kc_page = alloc_page(Gfp(gfp) & ~__GFP_DIRECT_RECLAIM);
  if (kc_page == nullptr) return nullptr;
  UPage *p = static_cast<UPage *>(kmalloc(sizeof(UPage), GFP_ATOMIC | __GFP_ZERO));
  if (p == nullptr) {
    __free_page(kc_page);
    return nullptr;
  }
  p->page_type = UINT_MAX;
  p->_refcount.counter = 1;
  p->lru.next = p->lru.prev = &p->lru;
  p->zfuzz_kc_page = kc_page;
  p->zfuzz_unit = site.unit;
  kc_page->owner = p;
  g_pages.fetch_add(1);
  ListPage(p);
  return p;
}

void upstream_put_page(UPage *page, zfuzz_site site) {
  if (page == nullptr) return;
  kc::sched_point(kc::SchedEvent::kAtomic, &page->_refcount, SiteOf(site));
  int left = __atomic_sub_fetch(&page->_refcount.counter, 1, __ATOMIC_SEQ_CST);
  if (left > 0) return;
  if (left < 0) {
    fprintf(stderr, "BUG: Bad page state: page %p freed with refcount %d\n",
            static_cast<void *>(page), left + 1);
    upstream_bug(site, "put_page() of a free page", page);
  }
  if (const char *why = BadPageReason(page)) {
    fprintf(stderr, "BUG: Bad page state in process %d: %s\n", static_cast<int>(kc::CurrentTid()),
            why);
    upstream_bug(site, "bad page state at free", page);
  }
  UnlistPage(page);
  struct page *kc_page = KcPage(page);
  kc_page->owner = nullptr;
  __free_page(kc_page);
  kfree(page);
  g_pages.fetch_sub(1);
}

void *upstream_page_address(const UPage *page) { return page_address(KcPage(page)); }

UPage *upstream_virt_to_page(const void *addr) { return Desc(virt_to_page(addr)); }

unsigned long upstream_page_to_pfn(const UPage *page) {
  return reinterpret_cast<unsigned long>(page_address(KcPage(page))) >> PAGE_SHIFT;
}

UPage *upstream_pfn_to_page(unsigned long pfn) {
  return Desc(virt_to_page(reinterpret_cast<const void *>(pfn << PAGE_SHIFT)));
}

bool upstream_trylock_page(UPage *page, zfuzz_site site) {
  kc::sched_point(kc::SchedEvent::kLockAcquire, page, SiteOf(site));
  int expected = 0;
  return __atomic_compare_exchange_n(&page->zfuzz_locked, &expected, 1, false, __ATOMIC_ACQ_REL,
                                     __ATOMIC_ACQUIRE);
}

void upstream_lock_page(UPage *page, zfuzz_site site) {
  upstream_might_sleep(site);  // the page lock sleeps
  unsigned spins = 0;
  while (!upstream_trylock_page(page, site)) kc::WaitSpin(spins, page, SiteOf(site));
}

void upstream_unlock_page(UPage *page, zfuzz_site site) {
  if (!__atomic_exchange_n(&page->zfuzz_locked, 0, __ATOMIC_ACQ_REL))
    upstream_bug(site, "unlock_page() of an unlocked page", page);
  kc::sched_point(kc::SchedEvent::kLockRelease, page, SiteOf(site));
}

void upstream_wait_on_page_locked(UPage *page, zfuzz_site site) {
  upstream_might_sleep(site);
  unsigned spins = 0;
  while (__atomic_load_n(&page->zfuzz_locked, __ATOMIC_ACQUIRE))
    kc::WaitSpin(spins, page, SiteOf(site));
}

void upstream_zone_page_state(UPage *, int item, int delta) {
  if (item == 0) g_zone_state[0].fetch_add(delta);
}

// ---- page migration: mm/migrate.c's protocol for movable non-LRU pages ---------------------------
//
// What compaction does to a zsmalloc or z3fold page, step for step with the references and page
// locks mm/migrate.c takes: isolate_movable_page() (a reference unless the count is already zero,
// the movable bit, trylock, not yet isolated, the owner's isolate_page(), PG_isolated), then
// migrate_folio_unmap()/migrate_folio_move() in MIGRATE_SYNC mode (a page freed meanwhile is just
// released; else a new page, both locked, the owner's migrate_page(), PG_isolated cleared on
// success, both unlocked, the new page's and the isolation reference dropped), or, when migration
// fails or is not wanted, putback_movable_pages() (the owner's putback_page() under the page
// lock). A page of the files' that is not movable (zbud's, z3fold's headless under the lock)
// stays where it is, as on a kernel the scanner skips it.

namespace {

const movable_operations *MovableOps(const UPage *p) {
  auto m = reinterpret_cast<unsigned long>(p->mapping);
  if ((m & ZFUZZ_PAGE_MAPPING_FLAGS) != ZFUZZ_PAGE_MAPPING_MOVABLE) return nullptr;
  return reinterpret_cast<const movable_operations *>(m & ~ZFUZZ_PAGE_MAPPING_FLAGS);
}
bool MovableBit(const UPage *p) {
  return (reinterpret_cast<unsigned long>(p->mapping) & ZFUZZ_PAGE_MAPPING_FLAGS) ==
         ZFUZZ_PAGE_MAPPING_MOVABLE;
}
bool Isolated(const UPage *p) {
  return __atomic_load_n(&p->flags, __ATOMIC_ACQUIRE) & (1UL << ZFUZZ_PG_ISOLATED);
}
void SetIsolated(UPage *p, bool on) {
  if (on)
    __atomic_fetch_or(&p->flags, 1UL << ZFUZZ_PG_ISOLATED, __ATOMIC_ACQ_REL);
  else
    __atomic_fetch_and(&p->flags, ~(1UL << ZFUZZ_PG_ISOLATED), __ATOMIC_ACQ_REL);
}

// Files whose pages the driver leaves alone (upstream_set_migration()).
std::atomic<unsigned> g_unmigrated_units{0};
constexpr const char *kUnits[] = {"zsmalloc", "zbud", "z3fold", "zpool"};
unsigned UnitBit(const char *unit) {
  for (unsigned i = 0; i < 4; i++)
    if (unit != nullptr && strcmp(unit, kUnits[i]) == 0) return 1u << i;
  return 0;
}

// The n-th live page (modulo their number) of the files the driver may migrate, with a reference
// taken, as the compaction scanner's folio_get_nontail_page() takes one: never on a page whose
// count already reached zero.
UPage *GetNthPage(unsigned long n, zfuzz_site site) {
  kc::sched_point(kc::SchedEvent::kAtomic, &LivePages(), SiteOf(site));
  std::lock_guard<std::mutex> guard(BridgeMutex());
  const unsigned skip = g_unmigrated_units.load(std::memory_order_relaxed);
  auto &v = LivePages();
  size_t eligible = 0;
  for (UPage *p : v) eligible += (UnitBit(p->zfuzz_unit) & skip) == 0;
  if (eligible == 0) return nullptr;
  size_t want = n % eligible;
  UPage *p = nullptr;
  for (UPage *q : v) {
    if (UnitBit(q->zfuzz_unit) & skip) continue;
    if (want-- == 0) {
      p = q;
      break;
    }
  }
  int count = __atomic_load_n(&p->_refcount.counter, __ATOMIC_ACQUIRE);
  do {
    if (count <= 0) return nullptr;
  } while (!__atomic_compare_exchange_n(&p->_refcount.counter, &count, count + 1, false,
                                        __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE));
  return p;
}

bool IsolateMovablePage(UPage *page, zfuzz_site site) {
  if (!MovableBit(page)) {  // checked before the lock, as the kernel does
    upstream_put_page(page, site);
    return false;
  }
  if (!upstream_trylock_page(page, site)) {
    upstream_put_page(page, site);
    return false;
  }
  const movable_operations *mops = MovableOps(page);
  if (mops == nullptr || Isolated(page) || !upstream_mops_isolate(mops, page, 0)) {
    upstream_unlock_page(page, site);
    upstream_put_page(page, site);
    return false;
  }
  if (Isolated(page) && upstream_warn(site, "folio_test_isolated(folio)",
                                      "the driver set PG_isolated itself"))
    abort();
  SetIsolated(page, true);
  upstream_unlock_page(page, site);
  return true;
}

void PutbackMovablePage(UPage *page, zfuzz_site site) {
  if (!Isolated(page)) upstream_bug(site, "!folio_test_isolated(folio)", page);
  upstream_lock_page(page, site);
  if (const movable_operations *mops = MovableOps(page)) upstream_mops_putback(mops, page);
  SetIsolated(page, false);
  upstream_unlock_page(page, site);
  upstream_put_page(page, site);
}

// 0 (MIGRATEPAGE_SUCCESS): the isolation reference is gone and the page with it; otherwise the
// page is still isolated and referenced, for the caller to put back.
int MigrateIsolatedPage(UPage *src, bool fail_new_page, zfuzz_site site) {
  if (__atomic_load_n(&src->_refcount.counter, __ATOMIC_ACQUIRE) == 1) {
    // Freed by its owner meanwhile: ours is the last reference (free clears PG_isolated).
    SetIsolated(src, false);
    upstream_put_page(src, site);
    return 0;
  }
  UPage *dst = fail_new_page ? nullptr : upstream_alloc_page(GFP_KERNEL | __GFP_HIGHMEM | __GFP_MOVABLE, site);
  if (dst == nullptr) return -ENOMEM;
  upstream_lock_page(src, site);
  if (!upstream_trylock_page(dst, site)) upstream_bug(site, "a new page is locked", dst);
  int rc = 0;
  if (!Isolated(src) &&
      kc_warn_report(site.file, site.line, site.func, "!PageIsolated(src)", "%s",
                     "migrating a page that is not isolated"))
    abort();
  if (const movable_operations *mops = MovableOps(src))  // PageMovable(): released if not
    rc = upstream_mops_migrate(mops, dst, src, MIGRATE_SYNC);
  if (rc == 0) SetIsolated(src, false);
  upstream_unlock_page(dst, site);
  upstream_put_page(dst, site);  // on success the owner holds its own reference
  upstream_unlock_page(src, site);
  if (rc == 0) upstream_put_page(src, site);  // migrate_folio_done()
  return rc;
}

}  // namespace

int upstream_migrate_nth_page(unsigned long n, enum upstream_migrate_action action) {
  const zfuzz_site site = {__FILE__, "upstream_migrate_nth_page", __LINE__};
  UPage *page = GetNthPage(n, site);
  if (page == nullptr) return -ENOENT;
  if (!IsolateMovablePage(page, site)) return -EBUSY;
  int rc = action == UPSTREAM_MIGRATE_PUTBACK ? -EAGAIN
                                              : MigrateIsolatedPage(
                                                    page, action == UPSTREAM_MIGRATE_NO_MEMORY,
                                                    site);
  if (rc != 0) PutbackMovablePage(page, site);
  return rc;
}

void upstream_set_migration(const char *unit, bool on) {
  unsigned bit = UnitBit(unit);
  if (on)
    g_unmigrated_units.fetch_and(~bit);
  else
    g_unmigrated_units.fetch_or(bit);
}

long upstream_live_pages(void) {
  std::lock_guard<std::mutex> guard(BridgeMutex());
  return static_cast<long>(LivePages().size());
}

// ---- work queues -----------------------------------------------------------------------------

struct workqueue_struct {
  std::string name;
};

namespace {
// Queued work in order, each with its queue (NULL: the system queue of schedule_work()).
struct QueuedWork {
  workqueue_struct *wq;
  work_struct *w;
};
std::vector<QueuedWork> &PendingWork() {
  static auto *v = new std::vector<QueuedWork>();
  return *v;
}

// Takes the first item that `match` accepts off the pending list (clearing its pending bit).
template <class Match>
work_struct *TakeFirst(Match match) {
  std::lock_guard<std::mutex> guard(BridgeMutex());
  auto &v = PendingWork();
  for (auto it = v.begin(); it != v.end(); ++it) {
    if (!match(*it)) continue;
    work_struct *w = it->w;
    v.erase(it);
    __atomic_and_fetch(&w->pending, ~1UL, __ATOMIC_SEQ_CST);
    return w;
  }
  return nullptr;
}

// Runs queued items that `match` accepts, including those they queue, until none is left.
template <class Match>
int RunWork(Match match) {
  int ran = 0;
  while (work_struct *w = TakeFirst(match)) {
    w->func(w);
    ran++;
  }
  return ran;
}
}  // namespace

bool upstream_queue_work(workqueue_struct *wq, work_struct *w) {
  if (__atomic_fetch_or(&w->pending, 1UL, __ATOMIC_SEQ_CST) & 1) return false;
  std::lock_guard<std::mutex> guard(BridgeMutex());
  PendingWork().push_back({wq, w});
  return true;
}

void upstream_flush_work(work_struct *w) {
  if (TakeFirst([w](const QueuedWork &q) { return q.w == w; }) != nullptr) w->func(w);
}

bool upstream_cancel_work_sync(work_struct *w) {
  return TakeFirst([w](const QueuedWork &q) { return q.w == w; }) != nullptr;
}

workqueue_struct *upstream_create_workqueue(const char *name) {
  return new workqueue_struct{name ? name : ""};
}

// destroy_workqueue() drains its own queue first, as the kernel's does.
void upstream_destroy_workqueue(workqueue_struct *wq) {
  RunWork([wq](const QueuedWork &q) { return q.wq == wq; });
  delete wq;
}

int upstream_run_pending_work(void) {
  return RunWork([](const QueuedWork &) { return true; });
}

// ---- shrinkers ----------------------------------------------------------------------------------

namespace {
std::vector<shrinker *> &Shrinkers() {
  static std::vector<shrinker *> *v = new std::vector<shrinker *>();
  return *v;
}
}  // namespace

shrinker *upstream_shrinker_alloc(unsigned int, const char *fmt, ...) {
  auto *s = static_cast<shrinker *>(kmalloc(sizeof(shrinker), GFP_KERNEL | __GFP_ZERO));
  if (s == nullptr) return nullptr;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(s->zfuzz_name, sizeof(s->zfuzz_name), fmt, ap);
  va_end(ap);
  return s;
}

void upstream_shrinker_register(shrinker *s) {
  std::lock_guard<std::mutex> guard(BridgeMutex());
  Shrinkers().push_back(s);
  s->zfuzz_registered = 1;
}

void upstream_shrinker_free(shrinker *s) {
  if (s == nullptr) return;
  {
    std::lock_guard<std::mutex> guard(BridgeMutex());
    auto &v = Shrinkers();
    for (auto it = v.begin(); it != v.end(); ++it)
      if (*it == s) {
        v.erase(it);
        break;
      }
  }
  kfree(s);
}

unsigned long upstream_shrink(const char *name_prefix, unsigned long nr_to_scan) {
  std::vector<shrinker *> list;
  {
    std::lock_guard<std::mutex> guard(BridgeMutex());
    for (shrinker *s : Shrinkers())
      if (name_prefix == nullptr || strncmp(s->zfuzz_name, name_prefix, strlen(name_prefix)) == 0)
        list.push_back(s);
  }
  unsigned long freed = 0;
  for (shrinker *s : list) {
    shrink_control sc = {GFP_KERNEL, nr_to_scan, 0};
    unsigned long count = s->count_objects ? s->count_objects(s, &sc) : 0;
    if (count == 0 || count == ~0UL - 1) continue;
    unsigned long got = s->scan_objects ? s->scan_objects(s, &sc) : 0;
    if (got != ~0UL) freed += got;
  }
  return freed;
}

// ---- debugfs and seq_file --------------------------------------------------------------------------

struct dentry {
  std::string name;
  dentry *parent;
  void *data = nullptr;
  const file_operations *fops = nullptr;
  std::vector<dentry *> children;
};

namespace {
dentry &DebugfsRoot() {
  static dentry *root = new dentry{"", nullptr};
  return *root;
}

void RemoveTree(dentry *d) {
  for (dentry *c : d->children) RemoveTree(c);
  delete d;
}
}  // namespace

// Like the kernel's seq_file, an overflow is noticed rather than cut silently: len counts every
// byte show() produced, and the reader compares it with what fitted.
void upstream_seq_printf(seq_file *s, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char *dst = s->len < s->size ? s->buf + s->len : nullptr;
  int n = vsnprintf(dst, dst != nullptr ? s->size - s->len : 0, fmt, ap);
  if (n > 0) s->len += static_cast<size_t>(n);
  va_end(ap);
}

bool upstream_debugfs_initialized(void) { return true; }

dentry *upstream_debugfs_create_dir(const char *name, dentry *parent) {
  std::lock_guard<std::mutex> guard(BridgeMutex());
  dentry *p = parent ? parent : &DebugfsRoot();
  auto *d = new dentry{name ? name : "", p};
  p->children.push_back(d);
  return d;
}

void upstream_debugfs_create_file(const char *name, int, dentry *parent, void *data,
                                  const file_operations *fops) {
  std::lock_guard<std::mutex> guard(BridgeMutex());
  dentry *p = parent ? parent : &DebugfsRoot();
  auto *d = new dentry{name ? name : "", p};
  d->data = data;
  d->fops = fops;
  p->children.push_back(d);
}

void upstream_debugfs_remove_recursive(dentry *d) {
  if (d == nullptr) return;
  std::lock_guard<std::mutex> guard(BridgeMutex());
  if (d->parent != nullptr) {
    auto &c = d->parent->children;
    for (auto it = c.begin(); it != c.end(); ++it)
      if (*it == d) {
        c.erase(it);
        break;
      }
  }
  RemoveTree(d);
}

size_t upstream_debugfs_read(const char *path, char *buf, size_t len) {
  dentry *d = &DebugfsRoot();
  {
    std::lock_guard<std::mutex> guard(BridgeMutex());
    std::string rest = path ? path : "";
    while (!rest.empty() && d != nullptr) {
      size_t slash = rest.find('/');
      std::string part = rest.substr(0, slash);
      rest = slash == std::string::npos ? "" : rest.substr(slash + 1);
      dentry *found = nullptr;
      for (dentry *c : d->children)
        if (c->name == part) found = c;
      d = found;
    }
  }
  if (d == nullptr || d->fops == nullptr || d->fops->show == nullptr || len == 0) return 0;
  seq_file s = {d->data, buf, len, 0};
  d->fops->show(&s, nullptr);
  buf[std::min(s.len, len - 1)] = '\0';
  return s.len;
}

// ---- module init and teardown, and accounting ---------------------------------------------------

extern "C" {
int upstream_module_init_zsmalloc(void);
int upstream_module_init_zbud(void);
int upstream_module_init_z3fold(void);
}

int upstream_init(void) {
  static int result = [] {
    // zpool.c has no initcall (its driver list is static); the drivers register in link order.
    if (int err = upstream_module_init_zsmalloc(); err != 0) return err;
    if (int err = upstream_module_init_zbud(); err != 0) return err;
    return upstream_module_init_z3fold();
  }();
  return result;
}

long upstream_pages_in_use(void) { return g_pages.load(); }
long upstream_zone_zspages(void) { return g_zone_state[0].load(); }

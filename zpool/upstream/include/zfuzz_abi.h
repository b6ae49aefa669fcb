/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The C ABI between the upstream files' shim (zfuzz_shim.h, C) and the bridge (bridge.cc, C++):
 * the structures both sides read and write, and the bridge's functions. C and C++ both include
 * this file. The kernel's `struct page` is `struct zfuzz_upstream_page` on the C++ side, where
 * `struct page` is the kernel layer's own descriptor; the layouts are one.
 */
#ifndef ZFUZZ_UPSTREAM_ABI_H
#define ZFUZZ_UPSTREAM_ABI_H

#include <stdbool.h>
#include <stddef.h>

#ifdef __cplusplus
#define ZFUZZ_PAGE zfuzz_upstream_page
#define ZFUZZ_NORETURN [[noreturn]]
extern "C" {
#else
#define ZFUZZ_PAGE page
#define ZFUZZ_NORETURN _Noreturn
#endif

struct kmem_cache;
struct module;

struct list_head {
  struct list_head *next, *prev;
};

/* Where a call was made (the upstream file's line): the scheduling point's site, a report's. */
struct zfuzz_site {
  const char *file;
  const char *func;
  int line;
  const char *unit; /* the file's KBUILD_MODNAME ("zsmalloc"...); NULL for the bridge's own */
};

/* The fields these files use, the page lock and the reference count, and the kernel layer's
 * own page behind it. page_type is UINT_MAX when the page has no type (PGTY_* in the top byte;
 * zsmalloc keeps its first object's offset in the low 24 bits). */
struct ZFUZZ_PAGE {
  unsigned long flags;
  struct list_head lru;
  void *mapping; /* a movable page's movable_operations | PAGE_MAPPING_MOVABLE */
  unsigned long index;
#ifdef __cplusplus
  unsigned long private_; /* `private` in C */
#else
  unsigned long private;
#endif
  unsigned int page_type;
  struct { int counter; } _refcount;
  int zfuzz_locked;   /* the page lock */
  void *zfuzz_kc_page; /* the kernel layer's struct page */
  long zfuzz_slot;     /* its place in the bridge's list of live pages (the migration driver's) */
  const char *zfuzz_unit; /* the file that allocated it (KBUILD_MODNAME) */
};

/* Page flag bits (page->flags) and the movable-page protocol of mm/migrate.c, which the bridge's
 * migration driver runs on the files' pages. */
enum { ZFUZZ_PG_PRIVATE = 1, ZFUZZ_PG_OWNER_PRIV_1 = 2, ZFUZZ_PG_ISOLATED = 3 };
#define ZFUZZ_PAGE_MAPPING_MOVABLE 0x2UL
#define ZFUZZ_PAGE_MAPPING_FLAGS 0x3UL
typedef int isolate_mode_t;
enum migrate_mode { MIGRATE_ASYNC, MIGRATE_SYNC_LIGHT, MIGRATE_SYNC };
struct movable_operations {
  bool (*isolate_page)(struct ZFUZZ_PAGE *, isolate_mode_t);
  int (*migrate_page)(struct ZFUZZ_PAGE *dst, struct ZFUZZ_PAGE *src, enum migrate_mode);
  void (*putback_page)(struct ZFUZZ_PAGE *);
};
/* The bridge calls a file's movable_operations through these (movable.c, C): a callback is then
 * called with the type it was compiled with, `struct page`, as -fsanitize=function checks; from
 * C++ the same pointer has the type of `struct zfuzz_upstream_page`. */
bool upstream_mops_isolate(const struct movable_operations *ops, struct ZFUZZ_PAGE *page,
                           isolate_mode_t mode);
int upstream_mops_migrate(const struct movable_operations *ops, struct ZFUZZ_PAGE *dst,
                          struct ZFUZZ_PAGE *src, enum migrate_mode mode);
void upstream_mops_putback(const struct movable_operations *ops, struct ZFUZZ_PAGE *page);

/* A size class of upstream zsmalloc as zsmalloc_probe.c reads it, under the class lock: its
 * geometry and its statistics (zspages per fullness group, then objects allocated and in use:
 * the kernel's enum class_stat_type). */
#define ZFUZZ_ZS_CLASS_STATS 14
struct upstream_zs_class {
  int index; /* the class serving this index (merged classes point at a larger one) */
  int size;
  int pages_per_zspage;
  int objs_per_zspage;
  unsigned long stats[ZFUZZ_ZS_CLASS_STATS];
};

/* Storage for a kernel-layer lock, constructed on first use (DEFINE_SPINLOCK is a static
 * initializer) or by spin_lock_init()/rwlock_init() with the init site as its lock class. */
struct zfuzz_lock_storage {
  _Alignas(8) unsigned char impl[48];
  const char *name;
  int state; /* 0: not constructed, 1: being constructed, 2: ready */
};
enum { ZFUZZ_SPIN, ZFUZZ_RW, ZFUZZ_LOCAL };
enum { ZFUZZ_LOCK, ZFUZZ_UNLOCK, ZFUZZ_READ_LOCK, ZFUZZ_READ_UNLOCK, ZFUZZ_WRITE_LOCK,
       ZFUZZ_WRITE_UNLOCK };
enum { ZFUZZ_CONTENDED, ZFUZZ_HELD_BY_ME };

struct work_struct;
typedef void (*work_func_t)(struct work_struct *);
struct work_struct {
  unsigned long pending; /* bit 0: queued */
  struct list_head entry;
  work_func_t func;
};
struct workqueue_struct;

struct shrink_control {
  unsigned int gfp_mask;
  unsigned long nr_to_scan;
  unsigned long nr_scanned;
};
struct shrinker {
  unsigned long (*count_objects)(struct shrinker *, struct shrink_control *);
  unsigned long (*scan_objects)(struct shrinker *, struct shrink_control *);
  long batch;
  int seeks;
  void *private_data;
  struct list_head zfuzz_list;
  char zfuzz_name[48];
  int zfuzz_registered;
};

struct dentry;
struct seq_file {
#ifdef __cplusplus
  void *private_; /* `private` in C */
#else
  void *private;
#endif
  char *buf;
  size_t size, len;
};
struct file_operations {
  int (*show)(struct seq_file *, void *);
};

/* ---- reports, scheduling, CPUs --------------------------------------------------------------- */
void upstream_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A WARN: true when the caller must abort (the warning policy). */
bool upstream_warn(struct zfuzz_site site, const char *cond, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
ZFUZZ_NORETURN void upstream_bug(struct zfuzz_site site, const char *cond,
                                 const struct ZFUZZ_PAGE *page);
void upstream_might_sleep(struct zfuzz_site site);
void upstream_sched_point(struct zfuzz_site site, const void *obj);
void upstream_cond_resched(struct zfuzz_site site);
int upstream_current_cpu(void);
int upstream_nr_cpus(void);
bool upstream_in_atomic(void);
void upstream_preempt_disable(struct zfuzz_site site);
void upstream_preempt_enable(struct zfuzz_site site);
bool upstream_try_module_get(struct module *mod);
void upstream_module_put(struct module *mod);
int upstream_request_module(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
extern char zfuzz_module_zsmalloc, zfuzz_module_zpool, zfuzz_module_zbud, zfuzz_module_z3fold;

/* ---- locks ----------------------------------------------------------------------------------- */
void upstream_lock_init(struct zfuzz_lock_storage *s, int kind, const char *name,
                        struct zfuzz_site site);
void upstream_lock(struct zfuzz_lock_storage *s, int kind, int op, struct zfuzz_site site);
int upstream_trylock(struct zfuzz_lock_storage *s, int kind, int op, struct zfuzz_site site);
int upstream_lock_query(struct zfuzz_lock_storage *s, int kind, int what);

/* ---- per-CPU data, CPU hotplug --------------------------------------------------------------- */
void upstream_percpu_register(void *base, size_t size);
void *upstream_percpu_ptr(const void *ptr, int cpu);
void *upstream_alloc_percpu(size_t size, size_t align);
void upstream_free_percpu(void *ptr);
int upstream_cpuhp_setup(int state, const char *name, int (*startup)(unsigned int),
                         int (*teardown)(unsigned int));
void upstream_cpuhp_remove(int state);

/* ---- memory ---------------------------------------------------------------------------------- */
void *upstream_kmalloc(size_t size, unsigned int gfp, struct zfuzz_site site);
void upstream_kfree(const void *p);
char *upstream_kstrdup(const char *s, unsigned int gfp, struct zfuzz_site site);
char *upstream_kasprintf(unsigned int gfp, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
struct kmem_cache *upstream_kmem_cache_create(const char *name, unsigned int size,
                                              unsigned int align, unsigned long flags,
                                              void (*ctor)(void *));
void *upstream_kmem_cache_alloc(struct kmem_cache *c, unsigned int gfp, struct zfuzz_site site);
void upstream_kmem_cache_free(struct kmem_cache *c, void *p);
void upstream_kmem_cache_destroy(struct kmem_cache *c);

/* ---- pages ----------------------------------------------------------------------------------- */
struct ZFUZZ_PAGE *upstream_alloc_page(unsigned int gfp, struct zfuzz_site site);
void upstream_put_page(struct ZFUZZ_PAGE *page, struct zfuzz_site site);
void *upstream_page_address(const struct ZFUZZ_PAGE *page);
struct ZFUZZ_PAGE *upstream_virt_to_page(const void *addr);
unsigned long upstream_page_to_pfn(const struct ZFUZZ_PAGE *page);
struct ZFUZZ_PAGE *upstream_pfn_to_page(unsigned long pfn);
void upstream_lock_page(struct ZFUZZ_PAGE *page, struct zfuzz_site site);
bool upstream_trylock_page(struct ZFUZZ_PAGE *page, struct zfuzz_site site);
void upstream_unlock_page(struct ZFUZZ_PAGE *page, struct zfuzz_site site);
void upstream_wait_on_page_locked(struct ZFUZZ_PAGE *page, struct zfuzz_site site);
void upstream_zone_page_state(struct ZFUZZ_PAGE *page, int item, int delta);

/* ---- work queues, shrinkers, debugfs --------------------------------------------------------- */
bool upstream_queue_work(struct workqueue_struct *wq, struct work_struct *w);
void upstream_flush_work(struct work_struct *w);
bool upstream_cancel_work_sync(struct work_struct *w);
struct workqueue_struct *upstream_create_workqueue(const char *name);
void upstream_destroy_workqueue(struct workqueue_struct *wq);
struct shrinker *upstream_shrinker_alloc(unsigned int flags, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void upstream_shrinker_register(struct shrinker *s);
void upstream_shrinker_free(struct shrinker *s);
void upstream_seq_printf(struct seq_file *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
bool upstream_debugfs_initialized(void);
struct dentry *upstream_debugfs_create_dir(const char *name, struct dentry *parent);
void upstream_debugfs_create_file(const char *name, int mode, struct dentry *parent, void *data,
                                  const struct file_operations *fops);
void upstream_debugfs_remove_recursive(struct dentry *d);

#ifdef __cplusplus
}
#endif

#endif /* ZFUZZ_UPSTREAM_ABI_H */

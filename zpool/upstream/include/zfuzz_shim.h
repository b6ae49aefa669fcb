/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The kernel API that Linux 6.12's mm/zsmalloc.c, mm/zpool.c, mm/zbud.c and mm/z3fold.c use,
 * written for userspace from that use (not from include/linux): every linux/NAME.h and
 * asm/NAME.h of this directory includes this one file. Types, macros and small helpers are here, in C; what
 * needs a thread, a lock or a page goes to the bridge (bridge.cc, C++), which implements it on
 * //zpool/kernel: the locks are the kernel layer's (lock-order checker, scheduling points at the
 * call site of the upstream file), pages its pages, slab caches its caches, per-CPU data its
 * virtual CPUs, WARN/BUG its reports.
 *
 * Config (as Debian builds 6.12, and what the differential needs): CONFIG_COMPACTION (page
 * migration), CONFIG_MIGRATION, CONFIG_ZPOOL, CONFIG_ZSMALLOC_STAT, CONFIG_DEBUG_VM (VM_BUG_ON
 * and friends are checks, not no-ops); CONFIG_ZSMALLOC_CHAIN_SIZE and PAGE_SHIFT follow the
 * project's build defines (ZS_CONFIG_CHAIN_SIZE, ZPOOL_PAGE_SHIFT).
 *
 * Checks the kernel makes around these files, made here too: a page freed with a type, a
 * private flag, a mapping, a lock or a reference left is "BUG: Bad page state"; setting a page
 * type on a page that has one is a BUG; __SetPageMovable() without the page lock is a
 * VM_BUG_ON; sleeping (a blocking allocation, mutex, cond_resched) in atomic context WARNs
 * (might_sleep); lock order is checked; pages and slab objects left at teardown are leaks the
 * tests count.
 */
#ifndef ZFUZZ_UPSTREAM_SHIM_H
#define ZFUZZ_UPSTREAM_SHIM_H

#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* ---- configuration ------------------------------------------------------------------------ */
#define CONFIG_COMPACTION 1
#define CONFIG_MIGRATION 1
#define CONFIG_ZPOOL 1
#define CONFIG_ZSMALLOC_STAT 1
#define CONFIG_DEBUG_VM 1
#ifndef ZS_CONFIG_CHAIN_SIZE
#define ZS_CONFIG_CHAIN_SIZE 8
#endif
#define CONFIG_ZSMALLOC_CHAIN_SIZE ZS_CONFIG_CHAIN_SIZE
#ifndef ZPOOL_PAGE_SHIFT
#define ZPOOL_PAGE_SHIFT 12
#endif
#define IS_ENABLED(option) (option + 0)

/* ---- types -------------------------------------------------------------------------------- */
typedef uint8_t u8;
typedef uint16_t u16;
typedef uint32_t u32;
typedef uint64_t u64;
typedef int8_t s8;
typedef int16_t s16;
typedef int32_t s32;
typedef int64_t s64;
typedef unsigned int gfp_t;
typedef unsigned long pgoff_t;
/* atomic_t's layout is the ABI's (struct page's _refcount). */
typedef struct { int counter; } atomic_t;
typedef struct { long counter; } atomic_long_t;
typedef struct { s64 counter; } atomic64_t;

/* ---- compiler and kernel macros ----------------------------------------------------------- */
#define likely(x) __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)
#define __maybe_unused __attribute__((unused))
#ifndef __always_inline
#define __always_inline inline __attribute__((always_inline))
#endif
#define __init
#define __exit
#define __acquires(x)
#define __releases(x)
#define __must_check
#define __percpu
#define READ_ONCE(x) (*(const volatile __typeof__(x) *)&(x))
#define WRITE_ONCE(x, v) (*(volatile __typeof__(x) *)&(x) = (v))
#define data_race(x) (x)
#define barrier() __asm__ __volatile__("" ::: "memory")
#define cpu_relax() __builtin_ia32_pause()
#define __AC(x, t) (x##t)
#define _AC(x, t) __AC(x, t)
#define UL(x) (_AC(x, UL))
#define BITS_PER_LONG 64
#define BIT(n) (1UL << (n))
#define SZ_16M 0x01000000
#define ZFUZZ_CAT2(a, b) a##b
#define ZFUZZ_CAT(a, b) ZFUZZ_CAT2(a, b)
#define BUILD_BUG_ON(cond) _Static_assert(!(cond), "BUILD_BUG_ON(" #cond ")")
#define container_of(ptr, type, member) ((type *)((char *)(ptr) - offsetof(type, member)))
#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define min(a, b) ((a) < (b) ? (a) : (b))
#define max(a, b) ((a) > (b) ? (a) : (b))
#define min_t(t, a, b) ((t)(a) < (t)(b) ? (t)(a) : (t)(b))
#define max_t(t, a, b) ((t)(a) > (t)(b) ? (t)(a) : (t)(b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))
#define DIV_ROUND_UP(n, d) (((n) + (d) - 1) / (d))
#define round_up(x, y) ((((x) - 1) | ((__typeof__(x))((y) - 1))) + 1)
#define ALIGN(x, a) (((x) + (a) - 1) & ~((__typeof__(x))(a) - 1))
static inline bool is_power_of_2(unsigned long n) { return n != 0 && (n & (n - 1)) == 0; }
#define EXPORT_SYMBOL(sym)
#define EXPORT_SYMBOL_GPL(sym)
#define MODULE_LICENSE(x)
#define MODULE_AUTHOR(x)
#define MODULE_DESCRIPTION(x)
#define MODULE_ALIAS(x)
/* THIS_MODULE: an address per upstream file (a constant, for static initializers); the bridge
 * maps it to a kernel-layer struct module. */
#define THIS_MODULE ((struct module *)&ZFUZZ_CAT(zfuzz_module_, ZFUZZ_UPSTREAM_UNIT))
/* module_init(fn) / module_exit(fn): upstream_init() runs them in link order (bridge.cc). */
#define module_init(fn) \
  int ZFUZZ_CAT(upstream_module_init_, ZFUZZ_UPSTREAM_UNIT)(void) { return fn(); }
#define module_exit(fn) \
  void ZFUZZ_CAT(upstream_module_exit_, ZFUZZ_UPSTREAM_UNIT)(void) { fn(); }
#define S_IFREG 0100000

/* ---- errors (Linux's values; <errno.h> would reach for linux/errno.h, which is this file) - */
#define EPERM 1
#define ENOENT 2
#define EINTR 4
#define EIO 5
#define E2BIG 7
#define EAGAIN 11
#define ENOMEM 12
#define EFAULT 14
#define EBUSY 16
#define EEXIST 17
#define ENODEV 19
#define EINVAL 22
#define ENOSPC 28
#define ENOSYS 38
#define MAX_ERRNO 4095
#define IS_ERR_VALUE(x) unlikely((unsigned long)(void *)(x) >= (unsigned long)-MAX_ERRNO)
static inline void *ERR_PTR(long error) { return (void *)error; }
static inline long PTR_ERR(const void *ptr) { return (long)ptr; }
static inline bool IS_ERR(const void *ptr) { return IS_ERR_VALUE((unsigned long)ptr); }
static inline bool IS_ERR_OR_NULL(const void *ptr) { return !ptr || IS_ERR(ptr); }

#include "zfuzz_abi.h"
#define ZFUZZ_SITE ((struct zfuzz_site){__FILE__, __func__, __LINE__, KBUILD_MODNAME})
#define try_module_get upstream_try_module_get
#define module_put upstream_module_put

/* ---- printk, WARN, BUG -------------------------------------------------------------------- */
#ifndef pr_fmt
#define pr_fmt(fmt) fmt
#endif
#define pr_err(fmt, ...) upstream_log(3, pr_fmt(fmt), ##__VA_ARGS__)
#define pr_warn(fmt, ...) upstream_log(4, pr_fmt(fmt), ##__VA_ARGS__)
#define pr_info(fmt, ...) upstream_log(6, pr_fmt(fmt), ##__VA_ARGS__)
#define pr_debug(fmt, ...) upstream_log(7, pr_fmt(fmt), ##__VA_ARGS__)
#define WARN_ON(cond)                                                                  \
  ({                                                                                   \
    bool zfuzz_c_ = !!(cond);                                                          \
    if (unlikely(zfuzz_c_) && upstream_warn(ZFUZZ_SITE, #cond, "WARN_ON(%s)", #cond)) \
      __builtin_trap();                                                                \
    unlikely(zfuzz_c_);                                                                \
  })
#define WARN_ON_ONCE(cond)                                                             \
  ({                                                                                   \
    static bool zfuzz_once_;                                                           \
    bool zfuzz_c_ = !!(cond);                                                          \
    if (unlikely(zfuzz_c_) && !zfuzz_once_) {                                          \
      zfuzz_once_ = true;                                                              \
      if (upstream_warn(ZFUZZ_SITE, #cond, "WARN_ON_ONCE(%s)", #cond)) __builtin_trap(); \
    }                                                                                  \
    unlikely(zfuzz_c_);                                                                \
  })
#define WARN(cond, fmt, ...)                                                           \
  ({                                                                                   \
    bool zfuzz_c_ = !!(cond);                                                          \
    if (unlikely(zfuzz_c_) && upstream_warn(ZFUZZ_SITE, #cond, fmt, ##__VA_ARGS__))   \
      __builtin_trap();                                                                \
    unlikely(zfuzz_c_);                                                                \
  })
#define BUG() upstream_bug(ZFUZZ_SITE, "BUG()", NULL)
#define BUG_ON(cond)                                                   \
  do {                                                                 \
    if (unlikely(cond)) upstream_bug(ZFUZZ_SITE, "BUG_ON(" #cond ")", NULL); \
  } while (0)
/* CONFIG_DEBUG_VM */
#define VM_BUG_ON(cond)                                                   \
  do {                                                                    \
    if (unlikely(cond)) upstream_bug(ZFUZZ_SITE, "VM_BUG_ON(" #cond ")", NULL); \
  } while (0)
#define VM_BUG_ON_PAGE(cond, page)                                                   \
  do {                                                                               \
    if (unlikely(cond)) upstream_bug(ZFUZZ_SITE, "VM_BUG_ON_PAGE(" #cond ")", page); \
  } while (0)
#define VM_WARN_ON_ONCE(cond) WARN_ON_ONCE(cond)
#define VM_WARN_ON(cond) WARN_ON(cond)
#define might_sleep() upstream_might_sleep(ZFUZZ_SITE)
#define cond_resched() upstream_cond_resched(ZFUZZ_SITE)

/* ---- atomics (sequentially consistent; a scheduling point where a protocol reads one) ----- */
#define ATOMIC_INIT(i) {(i)}
#define zfuzz_atomic_point(v) upstream_sched_point(ZFUZZ_SITE, (v))
#define atomic_read(v) __atomic_load_n(&(v)->counter, __ATOMIC_SEQ_CST)
#define atomic_set(v, i) __atomic_store_n(&(v)->counter, (i), __ATOMIC_SEQ_CST)
#define atomic_add(i, v) ((void)__atomic_add_fetch(&(v)->counter, (i), __ATOMIC_SEQ_CST))
#define atomic_sub(i, v) ((void)__atomic_sub_fetch(&(v)->counter, (i), __ATOMIC_SEQ_CST))
#define atomic_inc(v) (zfuzz_atomic_point(v), atomic_add(1, v))
#define atomic_dec(v) (zfuzz_atomic_point(v), atomic_sub(1, v))
#define atomic_inc_return(v) (zfuzz_atomic_point(v), __atomic_add_fetch(&(v)->counter, 1, __ATOMIC_SEQ_CST))
#define atomic_dec_return(v) (zfuzz_atomic_point(v), __atomic_sub_fetch(&(v)->counter, 1, __ATOMIC_SEQ_CST))
#define atomic_dec_and_test(v) (atomic_dec_return(v) == 0)
#define atomic_xchg(v, n) (zfuzz_atomic_point(v), __atomic_exchange_n(&(v)->counter, (n), __ATOMIC_SEQ_CST))
#define atomic_cmpxchg(v, o, n)                                                      \
  ({                                                                                 \
    __typeof__((v)->counter) zfuzz_old_ = (o);                                       \
    zfuzz_atomic_point(v);                                                           \
    __atomic_compare_exchange_n(&(v)->counter, &zfuzz_old_, (n), false,             \
                                __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);                 \
    zfuzz_old_;                                                                      \
  })
#define atomic_long_read(v) atomic_read(v)
#define atomic_long_set(v, i) atomic_set(v, i)
#define atomic_long_add(i, v) atomic_add(i, v)
#define atomic_long_sub(i, v) atomic_sub(i, v)
#define atomic_long_inc(v) atomic_inc(v)
#define atomic_long_dec(v) atomic_dec(v)
#define atomic64_read(v) atomic_read(v)
#define atomic64_set(v, i) atomic_set(v, i)
#define atomic64_inc(v) atomic_inc(v)
#define atomic64_dec(v) atomic_dec(v)
/* Bit operations on an unsigned long word (atomic ones are a protocol's: a scheduling point). */
#define set_bit(nr, addr) (zfuzz_atomic_point(addr), (void)__atomic_or_fetch((addr), BIT(nr), __ATOMIC_SEQ_CST))
#define clear_bit(nr, addr) (zfuzz_atomic_point(addr), (void)__atomic_and_fetch((addr), ~BIT(nr), __ATOMIC_SEQ_CST))
#define test_bit(nr, addr) ((__atomic_load_n((addr), __ATOMIC_SEQ_CST) >> (nr)) & 1)
#define test_and_set_bit(nr, addr) (zfuzz_atomic_point(addr), (__atomic_fetch_or((addr), BIT(nr), __ATOMIC_SEQ_CST) >> (nr)) & 1)
#define test_and_clear_bit(nr, addr) (zfuzz_atomic_point(addr), (__atomic_fetch_and((addr), ~BIT(nr), __ATOMIC_SEQ_CST) >> (nr)) & 1)
#define __set_bit(nr, addr) (*(addr) |= BIT(nr))
#define __clear_bit(nr, addr) (*(addr) &= ~BIT(nr))

/* kref */
struct kref {
  atomic_t refcount;
};
static inline void kref_init(struct kref *k) { atomic_set(&k->refcount, 1); }
#define kref_get(k) atomic_inc(&(k)->refcount)
#define kref_put(k, release) \
  (atomic_dec_and_test(&(k)->refcount) ? ((release)(k), 1) : 0)

/* ---- lists -------------------------------------------------------------------------------- */
#define LIST_HEAD_INIT(name) {&(name), &(name)}
#define LIST_HEAD(name) struct list_head name = LIST_HEAD_INIT(name)
static inline void INIT_LIST_HEAD(struct list_head *l) { l->next = l->prev = l; }
static inline void zfuzz_list_insert(struct list_head *n, struct list_head *prev,
                                     struct list_head *next) {
  next->prev = n;
  n->next = next;
  n->prev = prev;
  prev->next = n;
}
/* A list_del() leaves the kernel's poison values: a use after it faults, as there. */
#define LIST_POISON1 ((struct list_head *)0x100)
#define LIST_POISON2 ((struct list_head *)0x122)
static inline void list_add(struct list_head *n, struct list_head *head) {
  zfuzz_list_insert(n, head, head->next);
}
static inline void list_add_tail(struct list_head *n, struct list_head *head) {
  zfuzz_list_insert(n, head->prev, head);
}
static inline void zfuzz_list_unlink(struct list_head *e) {
  e->next->prev = e->prev;
  e->prev->next = e->next;
}
static inline void list_del(struct list_head *e) {
  zfuzz_list_unlink(e);
  e->next = LIST_POISON1;
  e->prev = LIST_POISON2;
}
static inline void list_del_init(struct list_head *e) {
  zfuzz_list_unlink(e);
  INIT_LIST_HEAD(e);
}
static inline bool list_empty(const struct list_head *head) { return head->next == head; }
static inline void list_move(struct list_head *e, struct list_head *head) {
  zfuzz_list_unlink(e);
  list_add(e, head);
}
static inline void list_splice_init(struct list_head *list, struct list_head *head) {
  if (list_empty(list)) return;
  struct list_head *first = list->next, *last = list->prev, *at = head->next;
  first->prev = head;
  head->next = first;
  last->next = at;
  at->prev = last;
  INIT_LIST_HEAD(list);
}
#define list_entry(ptr, type, member) container_of(ptr, type, member)
#define list_first_entry(ptr, type, member) list_entry((ptr)->next, type, member)
#define list_first_entry_or_null(ptr, type, member) \
  (list_empty(ptr) ? NULL : list_first_entry(ptr, type, member))
#define list_next_entry(pos, member) list_entry((pos)->member.next, __typeof__(*(pos)), member)
#define list_for_each_entry(pos, head, member)                                     \
  for (pos = list_first_entry(head, __typeof__(*pos), member); &pos->member != (head); \
       pos = list_next_entry(pos, member))
#define list_for_each_entry_safe(pos, n, head, member)                              \
  for (pos = list_first_entry(head, __typeof__(*pos), member),                       \
      n = list_next_entry(pos, member);                                             \
       &pos->member != (head); pos = n, n = list_next_entry(n, member))

/* ---- locks (the kernel layer's, through the bridge) --------------------------------------- */
typedef struct { struct zfuzz_lock_storage s; } spinlock_t;
typedef struct { struct zfuzz_lock_storage s; } rwlock_t;
typedef struct { struct zfuzz_lock_storage s; } local_lock_t;


#define __SPIN_LOCK_UNLOCKED(x) {{{0}, #x, 0}}
#define DEFINE_SPINLOCK(x) spinlock_t x = __SPIN_LOCK_UNLOCKED(x)
#define spin_lock_init(l) upstream_lock_init(&(l)->s, ZFUZZ_SPIN, #l, ZFUZZ_SITE)
#define spin_lock(l) upstream_lock(&(l)->s, ZFUZZ_SPIN, ZFUZZ_LOCK, ZFUZZ_SITE)
#define spin_unlock(l) upstream_lock(&(l)->s, ZFUZZ_SPIN, ZFUZZ_UNLOCK, ZFUZZ_SITE)
#define spin_trylock(l) upstream_trylock(&(l)->s, ZFUZZ_SPIN, ZFUZZ_LOCK, ZFUZZ_SITE)
#define spin_is_contended(l) upstream_lock_query(&(l)->s, ZFUZZ_SPIN, ZFUZZ_CONTENDED)
#define assert_spin_locked(l) \
  WARN(!upstream_lock_query(&(l)->s, ZFUZZ_SPIN, ZFUZZ_HELD_BY_ME), "assert_spin_locked(%s)", #l)
#define lockdep_assert_held(l) assert_spin_locked(l)
#define rwlock_init(l) upstream_lock_init(&(l)->s, ZFUZZ_RW, #l, ZFUZZ_SITE)
#define read_lock(l) upstream_lock(&(l)->s, ZFUZZ_RW, ZFUZZ_READ_LOCK, ZFUZZ_SITE)
#define read_unlock(l) upstream_lock(&(l)->s, ZFUZZ_RW, ZFUZZ_READ_UNLOCK, ZFUZZ_SITE)
#define write_lock(l) upstream_lock(&(l)->s, ZFUZZ_RW, ZFUZZ_WRITE_LOCK, ZFUZZ_SITE)
#define write_unlock(l) upstream_lock(&(l)->s, ZFUZZ_RW, ZFUZZ_WRITE_UNLOCK, ZFUZZ_SITE)
#define rwlock_is_contended(l) upstream_lock_query(&(l)->s, ZFUZZ_RW, ZFUZZ_CONTENDED)
#define INIT_LOCAL_LOCK(x) {{{0}, #x, 0}}
/* local_lock() of a per-CPU structure's lock: this CPU's instance (this_cpu_ptr). */
#define local_lock(l) upstream_lock(&this_cpu_ptr(l)->s, ZFUZZ_LOCAL, ZFUZZ_LOCK, ZFUZZ_SITE)
#define local_unlock(l) upstream_lock(&this_cpu_ptr(l)->s, ZFUZZ_LOCAL, ZFUZZ_UNLOCK, ZFUZZ_SITE)

/* ---- preemption, CPUs, per-CPU data ------------------------------------------------------- */
#define preempt_disable() upstream_preempt_disable(ZFUZZ_SITE)
#define preempt_enable() upstream_preempt_enable(ZFUZZ_SITE)
#define pagefault_disable() preempt_disable()
#define pagefault_enable() preempt_enable()
#define migrate_disable() preempt_disable()
#define migrate_enable() preempt_enable()
#define in_interrupt() 0
#define smp_processor_id() upstream_current_cpu()
#define raw_smp_processor_id() upstream_current_cpu()
#define nr_cpu_ids upstream_nr_cpus()
static inline bool cpu_online(int cpu) { return cpu >= 0 && cpu < upstream_nr_cpus(); }
#define for_each_possible_cpu(cpu) for ((cpu) = 0; (cpu) < upstream_nr_cpus(); (cpu)++)
#define for_each_online_cpu(cpu) for_each_possible_cpu(cpu)
/* Per-CPU data: one copy per virtual CPU. A DEFINE_PER_CPU variable is its CPU-0 copy (the
 * initializer's), registered with the bridge, which makes the others; this_cpu_ptr(&v.field)
 * maps any address inside the CPU-0 copy to the same place in this CPU's. */
/* "static DEFINE_PER_CPU(t, v) = init;": the storage class applies to the first declaration, the
 * initializer to the last (an extern declaration, which takes the linkage of the first). */
#define DEFINE_PER_CPU(type, name)                                                     \
  __typeof__(type) name;                                                               \
  __attribute__((constructor)) static void ZFUZZ_CAT(zfuzz_percpu_register_, name)(void) { \
    upstream_percpu_register(&name, sizeof(name));                                     \
  }                                                                                    \
  extern __typeof__(type) name
#define per_cpu_ptr(ptr, cpu) ((__typeof__(ptr))upstream_percpu_ptr((ptr), (cpu)))
#define this_cpu_ptr(ptr) per_cpu_ptr(ptr, smp_processor_id())
#define per_cpu(var, cpu) (*per_cpu_ptr(&(var), cpu))
#define __alloc_percpu(size, align) upstream_alloc_percpu((size), (align))
#define alloc_percpu(type) ((type *)upstream_alloc_percpu(sizeof(type), __alignof__(type)))
#define free_percpu(ptr) upstream_free_percpu(ptr)
/* CPU hotplug: the callbacks run for every virtual CPU at setup (and teardown at remove). */
enum cpuhp_state { CPUHP_MM_ZS_PREPARE = 1, CPUHP_MM_Z3FOLD_PREPARE };
#define cpuhp_setup_state(state, name, up, down) upstream_cpuhp_setup((state), (name), (up), (down))
#define cpuhp_remove_state(state) upstream_cpuhp_remove(state)

/* ---- memory: kmalloc, slab caches --------------------------------------------------------- */
/* The kernel layer's flag values (zpool/kernel/kernel.h; bridge.cc checks them). */
#define __GFP_DIRECT_RECLAIM 0x400u
#define __GFP_KSWAPD_RECLAIM 0x800u
#define __GFP_IO 0x40u
#define __GFP_FS 0x80u
#define __GFP_HIGH 0x20u
#define __GFP_HIGHMEM 0x02u
#define __GFP_MOVABLE 0x08u
#define __GFP_NOWARN 0x2000u
#define __GFP_ZERO 0x100u
#define __GFP_NORETRY 0x10000u
#define __GFP_RECLAIM (__GFP_DIRECT_RECLAIM | __GFP_KSWAPD_RECLAIM)
#define GFP_KERNEL (__GFP_RECLAIM | __GFP_IO | __GFP_FS)
#define GFP_NOIO (__GFP_RECLAIM)
#define GFP_NOWAIT (__GFP_KSWAPD_RECLAIM)
#define GFP_ATOMIC (__GFP_HIGH | __GFP_KSWAPD_RECLAIM)
static inline bool gfpflags_allow_blocking(gfp_t gfp) { return !!(gfp & __GFP_DIRECT_RECLAIM); }
#define kmalloc(size, gfp) upstream_kmalloc((size), (gfp), ZFUZZ_SITE)
#define kzalloc(size, gfp) upstream_kmalloc((size), (gfp) | __GFP_ZERO, ZFUZZ_SITE)
#define kfree(p) upstream_kfree(p)
#define kstrdup(s, gfp) upstream_kstrdup((s), (gfp), ZFUZZ_SITE)
#define kasprintf upstream_kasprintf
#define kmemleak_not_leak(p) ((void)(p))
#define kmem_cache_create(name, size, align, flags, ctor) \
  upstream_kmem_cache_create((name), (size), (align), (flags), (ctor))
#define kmem_cache_alloc(c, gfp) upstream_kmem_cache_alloc((c), (gfp), ZFUZZ_SITE)
#define kmem_cache_zalloc(c, gfp) upstream_kmem_cache_alloc((c), (gfp) | __GFP_ZERO, ZFUZZ_SITE)
#define kmem_cache_free(c, p) upstream_kmem_cache_free((c), (p))
#define kmem_cache_destroy(c) upstream_kmem_cache_destroy(c)
#define SLAB_HWCACHE_ALIGN 0

/* ---- pages -------------------------------------------------------------------------------- */
#define PAGE_SHIFT ZPOOL_PAGE_SHIFT
#define PAGE_SIZE (_AC(1, UL) << PAGE_SHIFT)
#define PAGE_MASK (~(PAGE_SIZE - 1))
#define offset_in_page(p) ((unsigned long)(p) & ~PAGE_MASK)
/* Userspace addresses fit 47 bits: a pfn (address >> PAGE_SHIFT) fits these. */
#define MAX_POSSIBLE_PHYSMEM_BITS 52

enum pageflags {
  PG_private = ZFUZZ_PG_PRIVATE,
  PG_owner_priv_1 = ZFUZZ_PG_OWNER_PRIV_1,
  PG_isolated = ZFUZZ_PG_ISOLATED
};
#define PAGE_MAPPING_MOVABLE ZFUZZ_PAGE_MAPPING_MOVABLE
#define PGTY_zsmalloc 0xf6u
#define alloc_page(gfp) upstream_alloc_page((gfp), ZFUZZ_SITE)
#define alloc_pages(gfp, order) (BUILD_BUG_ON(order), alloc_page(gfp))
#define get_page(page) (zfuzz_atomic_point(&(page)->_refcount), (void)atomic_add(1, &(page)->_refcount))
#define put_page(page) upstream_put_page((page), ZFUZZ_SITE)
#define __free_page(page) upstream_put_page((page), ZFUZZ_SITE)
#define page_address(page) upstream_page_address(page)
#define virt_to_page(addr) upstream_virt_to_page(addr)
#define page_to_pfn(page) upstream_page_to_pfn(page)
#define pfn_to_page(pfn) upstream_pfn_to_page(pfn)
#define page_zone(page) ((void *)0) /* one zone */
#define kmap_atomic(page) (preempt_disable(), page_address(page))
#define kunmap_atomic(addr) ((void)(addr), preempt_enable())
#define kmap_local_page(page) page_address(page)
#define kunmap_local(addr) ((void)(addr))
#define copy_page(to, from) memcpy((to), (from), PAGE_SIZE)
#define kmsan_copy_page_meta(dst, src) ((void)(dst), (void)(src))
#define page_private(page) ((page)->private)
#define set_page_private(page, v) ((page)->private = (v))
#define PagePrivate(page) test_bit(PG_private, &(page)->flags)
#define SetPagePrivate(page) __set_bit(PG_private, &(page)->flags)
#define ClearPagePrivate(page) __clear_bit(PG_private, &(page)->flags)
#define PageIsolated(page) test_bit(PG_isolated, &(page)->flags)
#define PageLocked(page) (__atomic_load_n(&(page)->zfuzz_locked, __ATOMIC_SEQ_CST) != 0)
#define lock_page(page) upstream_lock_page((page), ZFUZZ_SITE)
#define trylock_page(page) upstream_trylock_page((page), ZFUZZ_SITE)
#define unlock_page(page) upstream_unlock_page((page), ZFUZZ_SITE)
#define wait_on_page_locked(page) upstream_wait_on_page_locked((page), ZFUZZ_SITE)
#define PageZsmalloc(page) ((READ_ONCE((page)->page_type) >> 24) == PGTY_zsmalloc)
#define __SetPageZsmalloc(page)                                               \
  do {                                                                        \
    VM_BUG_ON_PAGE((page)->page_type != UINT_MAX, (page)); /* one type */     \
    (page)->page_type = PGTY_zsmalloc << 24;                                  \
  } while (0)
#define __ClearPageZsmalloc(page)                         \
  do {                                                    \
    if (PageZsmalloc(page)) (page)->page_type = UINT_MAX; \
  } while (0)
enum node_stat_item { NR_ZSPAGES };
#define inc_zone_page_state(page, item) upstream_zone_page_state((page), (item), 1)
#define dec_zone_page_state(page, item) upstream_zone_page_state((page), (item), -1)

/* Movable pages: struct movable_operations is the ABI's (the bridge's migration driver calls
 * it, as mm/migrate.c does). */
#define MIGRATEPAGE_SUCCESS 0
#define __SetPageMovable(page, mops)                                               \
  do {                                                                             \
    VM_BUG_ON_PAGE(!PageLocked(page), (page)); /* the kernel's check, kept */      \
    (page)->mapping = (void *)((unsigned long)(mops) | PAGE_MAPPING_MOVABLE);      \
  } while (0)
#define __ClearPageMovable(page)                                       \
  do {                                                                 \
    VM_BUG_ON_PAGE(!((unsigned long)(page)->mapping & PAGE_MAPPING_MOVABLE), (page)); \
    (page)->mapping = (void *)PAGE_MAPPING_MOVABLE;                    \
  } while (0)
static inline bool __PageMovable(const struct page *page) {
  return ((unsigned long)page->mapping & ZFUZZ_PAGE_MAPPING_FLAGS) == PAGE_MAPPING_MOVABLE;
}

/* ---- work queues (deterministic: run by upstream_run_work(), or at flush) ------------------ */
#define INIT_WORK(w, f)                 \
  do {                                  \
    (w)->pending = 0;                   \
    INIT_LIST_HEAD(&(w)->entry);        \
    (w)->func = (f);                    \
  } while (0)
#define schedule_work(w) upstream_queue_work(NULL, (w))
#define queue_work(wq, w) upstream_queue_work((wq), (w))
#define queue_work_on(cpu, wq, w) upstream_queue_work((wq), (w))
#define flush_work(w) upstream_flush_work(w)
#define cancel_work_sync(w) upstream_cancel_work_sync(w)
#define work_pending(w) test_bit(0, &(w)->pending)
#define create_singlethread_workqueue(name) upstream_create_workqueue(name)
#define destroy_workqueue(wq) upstream_destroy_workqueue(wq)

/* ---- shrinkers ---------------------------------------------------------------------------- */
#define SHRINK_STOP (~0UL)
#define SHRINK_EMPTY (~0UL - 1)
#define shrinker_alloc upstream_shrinker_alloc
#define shrinker_register upstream_shrinker_register
#define shrinker_free upstream_shrinker_free

/* ---- debugfs and seq_file (into a buffer the tests can read) ------------------------------ */
#define seq_printf upstream_seq_printf
#define seq_puts(s, str) upstream_seq_printf((s), "%s", (str))
#define DEFINE_SHOW_ATTRIBUTE(name) \
  static const struct file_operations name##_fops = {.show = name##_show}
#define debugfs_initialized() upstream_debugfs_initialized()
#define debugfs_create_dir(name, parent) upstream_debugfs_create_dir((name), (parent))
#define debugfs_create_file(name, mode, parent, data, fops) \
  upstream_debugfs_create_file((name), (mode), (parent), (data), (fops))
#define debugfs_remove_recursive(d) upstream_debugfs_remove_recursive(d)

/* ---- modules ------------------------------------------------------------------------------ */
#define request_module upstream_request_module

#endif /* ZFUZZ_UPSTREAM_SHIM_H */

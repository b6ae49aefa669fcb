// SPDX-License-Identifier: GPL-2.0-only
// zpool/kernel/kernel.h: the userspace stand-in for the kernel facilities the allocators use.
//
// This header is the public contract of //zpool/kernel (../spec/API.md): kernel names, kernel
// error conventions. The C++ layer behind it (locks, lists, per-CPU data, pages, slabs, the
// scheduling hook) lives in the sibling headers, which include this one.
//
// Everything here is thread-safe unless it says otherwise.
#ifndef ZPOOL_KERNEL_KERNEL_H_
#define ZPOOL_KERNEL_KERNEL_H_

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "zpool/kernel/site.h"

// ---- Basic types ----------------------------------------------------------------------------
typedef uint8_t u8;
typedef uint16_t u16;
typedef uint32_t u32;
typedef uint64_t u64;
typedef int64_t s64;
typedef unsigned int gfp_t;

// ---- Page geometry (PAGE_SHIFT 12 by default; --define=page_shift=14|16 at build time) -------
#ifndef ZPOOL_PAGE_SHIFT
#define ZPOOL_PAGE_SHIFT 12
#endif
#if ZPOOL_PAGE_SHIFT != 12 && ZPOOL_PAGE_SHIFT != 14 && ZPOOL_PAGE_SHIFT != 16
#error "ZPOOL_PAGE_SHIFT must be 12, 14 or 16"
#endif
inline constexpr unsigned int PAGE_SHIFT = ZPOOL_PAGE_SHIFT;
inline constexpr unsigned long PAGE_SIZE = 1UL << PAGE_SHIFT;
inline constexpr unsigned long PAGE_MASK = ~(PAGE_SIZE - 1);

// ---- GFP flags (the kernel's bit values) ------------------------------------------------------
inline constexpr gfp_t __GFP_HIGHMEM = 0x02u;
inline constexpr gfp_t __GFP_MOVABLE = 0x08u;
inline constexpr gfp_t __GFP_HIGH = 0x20u;
inline constexpr gfp_t __GFP_IO = 0x40u;
inline constexpr gfp_t __GFP_FS = 0x80u;
inline constexpr gfp_t __GFP_ZERO = 0x100u;
inline constexpr gfp_t __GFP_DIRECT_RECLAIM = 0x400u;
inline constexpr gfp_t __GFP_KSWAPD_RECLAIM = 0x800u;
inline constexpr gfp_t __GFP_NOWARN = 0x2000u;
inline constexpr gfp_t __GFP_RECLAIM = __GFP_DIRECT_RECLAIM | __GFP_KSWAPD_RECLAIM;

inline constexpr gfp_t GFP_ATOMIC = __GFP_HIGH | __GFP_KSWAPD_RECLAIM;
inline constexpr gfp_t GFP_KERNEL = __GFP_RECLAIM | __GFP_IO | __GFP_FS;
inline constexpr gfp_t GFP_NOWAIT = __GFP_KSWAPD_RECLAIM;
inline constexpr gfp_t GFP_NOIO = __GFP_RECLAIM;

// True when an allocation with these flags may sleep (direct reclaim allowed).
inline bool gfpflags_allow_blocking(gfp_t gfp) { return (gfp & __GFP_DIRECT_RECLAIM) != 0; }

// ---- Error pointers ---------------------------------------------------------------------------
inline constexpr unsigned long MAX_ERRNO = 4095;

inline bool IS_ERR_VALUE(unsigned long x) { return x >= static_cast<unsigned long>(-MAX_ERRNO); }
inline void *ERR_PTR(long error) { return reinterpret_cast<void *>(error); }
inline long PTR_ERR(const void *ptr) { return reinterpret_cast<long>(ptr); }
inline bool IS_ERR(const void *ptr) { return IS_ERR_VALUE(reinterpret_cast<unsigned long>(ptr)); }
inline bool IS_ERR_OR_NULL(const void *ptr) { return ptr == nullptr || IS_ERR(ptr); }

// ---- Logging ----------------------------------------------------------------------------------
// printk-style logging to stderr. Messages below the console level are dropped (fuzzers lower
// it so that a destroy of a non-empty pool does not flood the log); the default prints all.
enum kc_log_level { KC_LOG_ERR = 3, KC_LOG_WARNING = 4, KC_LOG_INFO = 6, KC_LOG_DEBUG = 7 };
void kc_set_console_loglevel(int level);  // print messages with level < `level`; default 8
int kc_get_console_loglevel(void);
unsigned long kc_log_count(enum kc_log_level level);  // messages logged (printed or not)

void pr_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void pr_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void pr_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void pr_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

// ---- The WARN_ON family -----------------------------------------------------------------------
enum kc_warn_policy { KC_WARN_LOG, KC_WARN_RECORD, KC_WARN_ABORT };
void kc_set_warn_policy(enum kc_warn_policy policy);
enum kc_warn_policy kc_get_warn_policy(void);
unsigned long kc_warn_count(void);    // WARNs that fired since start or the last reset
void kc_warn_reset(void);             // count to 0, re-arms every *_ONCE site
size_t kc_last_warning(char *buf, size_t len);  // text of the latest WARN, NUL-terminated

// Implementation details of the macros below; not for direct use.
struct kc_warn_once_state {
  unsigned long fired_epoch;  // accessed atomically; epoch in which this site last fired
};
bool kc_warn_once_should_fire(struct kc_warn_once_state *site);
// Reports a WARN (policy permitting) and counts it. Returns true when the caller must abort
// (policy ABORT): the abort is then executed in the caller's own frame, so the top frame of the
// crash is the code that warned, not this helper (crash deduplication by stack relies on it).
bool kc_warn_report(const char *file, int line, const char *func, const char *cond,
                    const char *fmt, ...) __attribute__((format(printf, 5, 6)));
void kc_bug_report(const char *file, int line, const char *func, const char *cond);
#define KC_NO_MESSAGE_ nullptr
// The abort of a WARN under the abort policy, inlined into the caller's frame. Deliberately not
// [[noreturn]]: clang's coverage mapping ends a region at a noreturn call, so every line of a
// WARN's expansion after it, and the statement after the WARN, would count as never run.
[[gnu::always_inline]] inline void kc_warn_abort(void) { abort(); }

// WARN_ON(cond): evaluates to the truth of cond; reports file, line, function and a stack trace.
#define WARN_ON(cond)                                                                          \
  ({                                                                                           \
    bool kc_warn_cond_ = static_cast<bool>(cond);                                              \
    if (__builtin_expect(kc_warn_cond_, 0) &&                                                  \
        kc_warn_report(__FILE__, __LINE__, __func__, #cond, KC_NO_MESSAGE_))                   \
      kc_warn_abort();                                                                         \
    kc_warn_cond_;                                                                             \
  })

#define WARN(cond, fmt, ...)                                                                   \
  ({                                                                                           \
    bool kc_warn_cond_ = static_cast<bool>(cond);                                              \
    if (__builtin_expect(kc_warn_cond_, 0) &&                                                  \
        kc_warn_report(__FILE__, __LINE__, __func__, #cond, fmt __VA_OPT__(, ) __VA_ARGS__))   \
      kc_warn_abort();                                                                         \
    kc_warn_cond_;                                                                             \
  })

#define WARN_ON_ONCE(cond)                                                                     \
  ({                                                                                           \
    static struct kc_warn_once_state kc_warn_once_;                                            \
    bool kc_warn_cond_ = static_cast<bool>(cond);                                              \
    if (__builtin_expect(kc_warn_cond_, 0) && kc_warn_once_should_fire(&kc_warn_once_) &&      \
        kc_warn_report(__FILE__, __LINE__, __func__, #cond, KC_NO_MESSAGE_))                   \
      kc_warn_abort();                                                                         \
    kc_warn_cond_;                                                                             \
  })

#define WARN_ONCE(cond, fmt, ...)                                                              \
  ({                                                                                           \
    static struct kc_warn_once_state kc_warn_once_;                                            \
    bool kc_warn_cond_ = static_cast<bool>(cond);                                              \
    if (__builtin_expect(kc_warn_cond_, 0) && kc_warn_once_should_fire(&kc_warn_once_) &&      \
        kc_warn_report(__FILE__, __LINE__, __func__, #cond, fmt __VA_OPT__(, ) __VA_ARGS__))   \
      kc_warn_abort();                                                                         \
    kc_warn_cond_;                                                                             \
  })

// BUG_ON(cond): "cannot go on". Reports and aborts under every policy.
#define BUG_ON(cond)                                                                           \
  do {                                                                                         \
    if (__builtin_expect(static_cast<bool>(cond), 0)) {                                        \
      kc_bug_report(__FILE__, __LINE__, __func__, #cond);                                      \
      abort();                                                                                 \
    }                                                                                          \
  } while (0)

#define BUG() BUG_ON(true)

// ---- Hardening level ------------------------------------------------------------------------
// O(1) misuse checks are always on (unless compiled out with ZPOOL_UNCHECKED=1). FULL adds the
// O(object size) ones (the checksum of read-only mappings). Default FULL; env ZPOOL_HARDENING
// (full, cheap) or kc_set_hardening() change it.
enum kc_hardening { KC_HARDENING_CHEAP, KC_HARDENING_FULL };
void kc_set_hardening(enum kc_hardening level);
enum kc_hardening kc_get_hardening(void);
inline bool kc_hardening_full(void) { return kc_get_hardening() == KC_HARDENING_FULL; }

// ---- Virtual CPUs and atomic context ----------------------------------------------------------
int kc_nr_cpus(void);            // default: the machine's online CPUs, env ZPOOL_NR_CPUS
void kc_set_nr_cpus(int n);      // only while no per-CPU data exists (before the first pool)
int kc_current_cpu(void);        // the calling thread's virtual CPU
void kc_set_cpu(int cpu);        // bind the calling thread to a virtual CPU
namespace kc::internal {
inline thread_local int t_preempt_count = 0;  // cpu.cc's; here so kc_in_atomic() inlines
}  // namespace kc::internal
// True while this thread holds a mapping or a spinlock (on every map and alloc path: inline).
inline bool kc_in_atomic(void) { return kc::internal::t_preempt_count > 0; }
void might_sleep(void);          // WARNs when called in atomic context
void preempt_disable(void);
void preempt_enable(void);
int preempt_count(void);
// A scheduling point (kc::SchedEvent::kYield at the caller's site); might_sleep() first.
void cond_resched(const kc::Site &site = kc::Site::current());

// might_sleep() is also a macro, like the kernel's, so that the report names the caller (its
// file, line and function, and its frame on top of the stack); &might_sleep is the function.
const char *kc_might_sleep_message(void);
#define might_sleep()                                                                          \
  do {                                                                                         \
    if (__builtin_expect(kc_in_atomic(), 0) &&                                                 \
        kc_warn_report(__FILE__, __LINE__, __func__, "might_sleep()", "%s",                    \
                       kc_might_sleep_message()))                                              \
      kc_warn_abort();                                                                         \
  } while (0)
#define might_sleep_if(cond)                                                                   \
  do {                                                                                         \
    if (cond) might_sleep();                                                                   \
  } while (0)

// ---- Pages and fault injection ----------------------------------------------------------------
struct page;  // defined in zpool/kernel/page.h
struct page *alloc_page(gfp_t gfp);           // NULL on failure
void __free_page(struct page *page);
void *page_address(const struct page *page);
struct page *virt_to_page(const void *addr);  // O(1); NULL for an address that is not ours
unsigned long kc_pages_in_use(void);          // pages allocated and not yet freed, all pools
void kc_fail_nth_alloc(unsigned long nth);    // the nth page or metadata allocation from now
                                              // fails (1 = the next one); 0 switches it off
unsigned long kc_fail_nth_pending(void);      // allocations left before the injected failure
                                              // (0: none armed)

// Metadata allocation (the kmalloc / kmem_cache role): same fault injection and accounting.
void *kmalloc(size_t size, gfp_t gfp);
void *kzalloc(size_t size, gfp_t gfp);
void kfree(const void *ptr);
unsigned long kc_meta_in_use(void);  // kmalloc'd and kmem_cache objects not yet freed

// ---- Modules ----------------------------------------------------------------------------------
// A module's reference count and state. A module that is going away (being unloaded) refuses new
// references: try_module_get() fails. The zpool registry takes one per pool (the 2014 design).
struct module;
bool try_module_get(struct module *mod);  // true for NULL (built-in code cannot go away)
void module_put(struct module *mod);

#endif  // ZPOOL_KERNEL_KERNEL_H_

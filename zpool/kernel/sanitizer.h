// SPDX-License-Identifier: GPL-2.0-only
// Thin wrappers over the sanitizer interfaces, no-ops in builds without that sanitizer.
//
// ASan: poison marks bytes that must not be touched; unpoison allows them again.
// MSan: mark_uninitialized makes bytes "never written" (a read is then a report); mark_initialized
// is the opposite. Allocator code that must read a poisoned or uninitialised byte on purpose
// (a redzone check, moving an object during compaction) brackets the access with these.
#ifndef ZPOOL_KERNEL_SANITIZER_H_
#define ZPOOL_KERNEL_SANITIZER_H_

#include <cstddef>

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define KC_ASAN 1
#endif
#if __has_feature(memory_sanitizer)
#define KC_MSAN 1
#endif
#if __has_feature(thread_sanitizer)
#define KC_TSAN 1
#endif
#endif

#if defined(KC_ASAN)
#include <sanitizer/asan_interface.h>
#endif
#if defined(KC_MSAN)
#include <sanitizer/msan_interface.h>
#endif

namespace kc {

#if defined(KC_ASAN)
inline constexpr bool kAsan = true;
#else
inline constexpr bool kAsan = false;
#endif
#if defined(KC_MSAN)
inline constexpr bool kMsan = true;
#else
inline constexpr bool kMsan = false;
#endif
#if defined(KC_TSAN)
inline constexpr bool kTsan = true;
#else
inline constexpr bool kTsan = false;
#endif

inline void asan_poison(const void *p, size_t n) {
#if defined(KC_ASAN)
  __asan_poison_memory_region(p, n);
#else
  (void)p, (void)n;
#endif
}

inline void asan_unpoison(const void *p, size_t n) {
#if defined(KC_ASAN)
  __asan_unpoison_memory_region(p, n);
#else
  (void)p, (void)n;
#endif
}

// True if any byte of [p, p+n) is poisoned (always false without ASan).
inline bool asan_region_poisoned(const void *p, size_t n) {
#if defined(KC_ASAN)
  return __asan_region_is_poisoned(const_cast<void *>(p), n) != nullptr;
#else
  (void)p, (void)n;
  return false;
#endif
}

inline void msan_mark_uninitialized(const void *p, size_t n) {
#if defined(KC_MSAN)
  __msan_poison(p, n);
#else
  (void)p, (void)n;
#endif
}

inline void msan_mark_initialized(const void *p, size_t n) {
#if defined(KC_MSAN)
  __msan_unpoison(p, n);
#else
  (void)p, (void)n;
#endif
}

}  // namespace kc

#endif  // ZPOOL_KERNEL_SANITIZER_H_

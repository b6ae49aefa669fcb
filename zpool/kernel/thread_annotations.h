// SPDX-License-Identifier: GPL-2.0-only
// Clang thread-safety annotations (checked with -Wthread-safety across the tree).
//
// Attributes can only be spelled through macros; these are the only macros of the lock layer.
#ifndef ZPOOL_KERNEL_THREAD_ANNOTATIONS_H_
#define ZPOOL_KERNEL_THREAD_ANNOTATIONS_H_

#if defined(__clang__)
#define KC_THREAD_ANNOTATION_(x) __attribute__((x))
#else
#define KC_THREAD_ANNOTATION_(x)
#endif

#define KC_CAPABILITY(x) KC_THREAD_ANNOTATION_(capability(x))
#define KC_SCOPED_CAPABILITY KC_THREAD_ANNOTATION_(scoped_lockable)
#define KC_GUARDED_BY(x) KC_THREAD_ANNOTATION_(guarded_by(x))
#define KC_PT_GUARDED_BY(x) KC_THREAD_ANNOTATION_(pt_guarded_by(x))
#define KC_ACQUIRED_BEFORE(...) KC_THREAD_ANNOTATION_(acquired_before(__VA_ARGS__))
#define KC_ACQUIRED_AFTER(...) KC_THREAD_ANNOTATION_(acquired_after(__VA_ARGS__))
#define KC_REQUIRES(...) KC_THREAD_ANNOTATION_(requires_capability(__VA_ARGS__))
#define KC_REQUIRES_SHARED(...) KC_THREAD_ANNOTATION_(requires_shared_capability(__VA_ARGS__))
#define KC_ACQUIRE(...) KC_THREAD_ANNOTATION_(acquire_capability(__VA_ARGS__))
#define KC_ACQUIRE_SHARED(...) KC_THREAD_ANNOTATION_(acquire_shared_capability(__VA_ARGS__))
#define KC_RELEASE(...) KC_THREAD_ANNOTATION_(release_capability(__VA_ARGS__))
#define KC_RELEASE_SHARED(...) KC_THREAD_ANNOTATION_(release_shared_capability(__VA_ARGS__))
#define KC_RELEASE_GENERIC(...) KC_THREAD_ANNOTATION_(release_generic_capability(__VA_ARGS__))
#define KC_TRY_ACQUIRE(...) KC_THREAD_ANNOTATION_(try_acquire_capability(__VA_ARGS__))
#define KC_TRY_ACQUIRE_SHARED(...) \
  KC_THREAD_ANNOTATION_(try_acquire_shared_capability(__VA_ARGS__))
#define KC_EXCLUDES(...) KC_THREAD_ANNOTATION_(locks_excluded(__VA_ARGS__))
#define KC_ASSERT_CAPABILITY(x) KC_THREAD_ANNOTATION_(assert_capability(x))
#define KC_ASSERT_SHARED_CAPABILITY(x) KC_THREAD_ANNOTATION_(assert_shared_capability(x))
#define KC_RETURN_CAPABILITY(x) KC_THREAD_ANNOTATION_(lock_returned(x))
#define KC_NO_THREAD_SAFETY_ANALYSIS KC_THREAD_ANNOTATION_(no_thread_safety_analysis)

#endif  // ZPOOL_KERNEL_THREAD_ANNOTATIONS_H_

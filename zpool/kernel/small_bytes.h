// SPDX-License-Identifier: GPL-2.0-only
// Copy and compare of at most kSmallBytesMax bytes at any alignment: the allocators' redzones
// (zbud's and zsmalloc's), written at allocation and checked at every last unmap.
//
// A redzone's length is the slack after the object, so it differs from object to object, and a
// loop that stops at the length costs a mispredicted branch on nearly every call. These use one
// fixed shape per length class instead: from 16 bytes, kSmallBytesMax / 16 blocks of 16, each
// starting at min(16 k, n - 16) (the later ones overlap the end); from 8, two overlapping words;
// from 4, two overlapping halves; from 2, two overlapping quarters; then one byte.
//
// Not instrumented by ASan (redzones are poisoned while the object is not mapped), and no call
// to memcpy/memcmp for the compiler to emit (ASan intercepts those). Other sanitizers see the
// accesses as usual.
#ifndef ZPOOL_KERNEL_SMALL_BYTES_H_
#define ZPOOL_KERNEL_SMALL_BYTES_H_

#include <algorithm>
#include <cstddef>

namespace kc {

inline constexpr size_t kSmallBytesMax = 64;

namespace small_bytes {
typedef unsigned char __attribute__((vector_size(16), aligned(1), may_alias)) Block;
typedef unsigned long __attribute__((may_alias, aligned(1))) Word;
typedef unsigned int __attribute__((may_alias, aligned(1))) Half;
typedef unsigned short __attribute__((may_alias, aligned(1))) Quarter;
static_assert(kSmallBytesMax % sizeof(Block) == 0, "whole blocks");

// One unit of N bytes at offset `at` of each range. (The unit types are named here, not passed
// as template arguments: a template argument would drop their aligned(1).)
template <size_t N>
__attribute__((no_sanitize("address"))) inline void CopyAt(unsigned char *d,
                                                           const unsigned char *s, size_t at) {
  if constexpr (N == sizeof(Block))
    *reinterpret_cast<Block *>(d + at) = *reinterpret_cast<const Block *>(s + at);
  else if constexpr (N == sizeof(Word))
    *reinterpret_cast<Word *>(d + at) = *reinterpret_cast<const Word *>(s + at);
  else if constexpr (N == sizeof(Half))
    *reinterpret_cast<Half *>(d + at) = *reinterpret_cast<const Half *>(s + at);
  else
    *reinterpret_cast<Quarter *>(d + at) = *reinterpret_cast<const Quarter *>(s + at);
}
template <size_t N>
__attribute__((no_sanitize("address"))) inline auto DiffAt(const unsigned char *a,
                                                           const unsigned char *b, size_t at) {
  if constexpr (N == sizeof(Block))
    return *reinterpret_cast<const Block *>(a + at) ^ *reinterpret_cast<const Block *>(b + at);
  else if constexpr (N == sizeof(Word))
    return *reinterpret_cast<const Word *>(a + at) ^ *reinterpret_cast<const Word *>(b + at);
  else if constexpr (N == sizeof(Half))
    return *reinterpret_cast<const Half *>(a + at) ^ *reinterpret_cast<const Half *>(b + at);
  else
    return *reinterpret_cast<const Quarter *>(a + at) ^ *reinterpret_cast<const Quarter *>(b + at);
}
static_assert(sizeof(Block) == 16 && sizeof(Word) == 8 && sizeof(Half) == 4 &&
              sizeof(Quarter) == 2, "distinct unit sizes");
}  // namespace small_bytes

// dst[0, n) = src[0, n). REQUIRES: n <= kSmallBytesMax; the ranges do not overlap.
__attribute__((no_sanitize("address"))) inline void SmallCopy(void *dst, const void *src,
                                                              size_t n) {
  using namespace small_bytes;
  auto *d = static_cast<unsigned char *>(dst);
  auto *s = static_cast<const unsigned char *>(src);
  if (n >= sizeof(Block)) {
    for (size_t k = 0; k < kSmallBytesMax / sizeof(Block); k++)
      CopyAt<sizeof(Block)>(d, s, std::min(sizeof(Block) * k, n - sizeof(Block)));
  } else if (n >= sizeof(Word)) {
    CopyAt<sizeof(Word)>(d, s, 0);
    CopyAt<sizeof(Word)>(d, s, n - sizeof(Word));
  } else if (n >= sizeof(Half)) {
    CopyAt<sizeof(Half)>(d, s, 0);
    CopyAt<sizeof(Half)>(d, s, n - sizeof(Half));
  } else if (n >= sizeof(Quarter)) {
    CopyAt<sizeof(Quarter)>(d, s, 0);
    CopyAt<sizeof(Quarter)>(d, s, n - sizeof(Quarter));
  } else if (n == 1) {
    d[0] = s[0];
  }
}

// Are a[0, n) and b[0, n) equal? REQUIRES: n <= kSmallBytesMax.
__attribute__((no_sanitize("address"))) inline bool SmallEqual(const void *a, const void *b,
                                                               size_t n) {
  using namespace small_bytes;
  auto *x = static_cast<const unsigned char *>(a);
  auto *y = static_cast<const unsigned char *>(b);
  if (n >= sizeof(Block)) {
    Block diff = {};
    for (size_t k = 0; k < kSmallBytesMax / sizeof(Block); k++)
      diff |= DiffAt<sizeof(Block)>(x, y, std::min(sizeof(Block) * k, n - sizeof(Block)));
    unsigned long halves[2];
    __builtin_memcpy(halves, &diff, sizeof(halves));
    return (halves[0] | halves[1]) == 0;
  }
  if (n >= sizeof(Word))
    return (DiffAt<sizeof(Word)>(x, y, 0) | DiffAt<sizeof(Word)>(x, y, n - sizeof(Word))) == 0;
  if (n >= sizeof(Half))
    return (DiffAt<sizeof(Half)>(x, y, 0) | DiffAt<sizeof(Half)>(x, y, n - sizeof(Half))) == 0;
  if (n >= sizeof(Quarter))
    return (DiffAt<sizeof(Quarter)>(x, y, 0) | DiffAt<sizeof(Quarter)>(x, y, n - sizeof(Quarter))) == 0;
  return n == 0 || x[0] == y[0];
}

}  // namespace kc

#endif  // ZPOOL_KERNEL_SMALL_BYTES_H_

// SPDX-License-Identifier: GPL-2.0-only
// kc::SmallCopy and kc::SmallEqual at every length up to kSmallBytesMax and every alignment:
// exactly the n bytes are copied (nothing before or after), and a difference in any one of the
// n bytes, and only there, makes the ranges unequal.
#include "zpool/kernel/small_bytes.h"

#include <gtest/gtest.h>

#include <cstring>

namespace {

constexpr size_t kMax = kc::kSmallBytesMax;
constexpr size_t kAlign = 16;

unsigned char Pattern(size_t i) { return static_cast<unsigned char>(0x5a ^ (i * 29)); }

TEST(SmallBytesTest, CopiesExactlyTheRange) {
  unsigned char src[kMax + kAlign], dst[kMax + 2 * kAlign];
  for (size_t i = 0; i < sizeof(src); i++) src[i] = Pattern(i);
  for (size_t n = 0; n <= kMax; n++) {
    for (size_t off = 0; off < kAlign; off++) {
      memset(dst, 0xee, sizeof(dst));
      kc::SmallCopy(dst + kAlign + off, src + off, n);
      for (size_t i = 0; i < sizeof(dst); i++) {
        const bool inside = i >= kAlign + off && i < kAlign + off + n;
        ASSERT_EQ(dst[i], inside ? src[i - kAlign] : 0xee)
            << "n " << n << ", offset " << off << ", byte " << i;
      }
    }
  }
}

TEST(SmallBytesTest, EveryByteOfTheRangeIsCompared) {
  unsigned char a[kMax + kAlign + 1], b[kMax + kAlign + 1];
  for (size_t i = 0; i < sizeof(a); i++) a[i] = Pattern(i);
  for (size_t n = 0; n <= kMax; n++) {
    for (size_t off = 0; off < kAlign; off++) {
      memcpy(b, a, sizeof(b));
      ASSERT_TRUE(kc::SmallEqual(a + off, b + off, n)) << "n " << n << ", offset " << off;
      b[off + n] ^= 0xff;  // the byte after the range
      ASSERT_TRUE(kc::SmallEqual(a + off, b + off, n)) << "n " << n << ": compared past the end";
      b[off + n] ^= 0xff;
      for (size_t i = 0; i < n; i++) {
        b[off + i] ^= 0x01;
        ASSERT_FALSE(kc::SmallEqual(a + off, b + off, n))
            << "n " << n << ", offset " << off << ": byte " << i << " not compared";
        b[off + i] ^= 0x01;
      }
    }
  }
}

}  // namespace

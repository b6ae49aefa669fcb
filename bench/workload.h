// SPDX-License-Identifier: GPL-2.0-only
// The benchmark workload: real pages of this machine's files, compressed as zram and zswap do.
//
// bench_workload (workload_main.cc) walks a fixed set of directories in sorted order, picks pages
// with a seeded PRNG, compresses each PAGE_SIZE page with LZ4 (LZ4_compress_default, the kernel's
// lz4) and zstd (level 3, the kernel's default), and writes one self-contained file:
//
//   Header | PageEntry[n_pages] | original pages (n_pages * page_size) | LZ4 blobs | zstd blobs
//
// A page that does not compress below PAGE_SIZE is stored whole (length == page_size, the bytes
// are the original page), as the kernel does. Same-filled pages (every word equal) are skipped:
// zram and zswap store those as a value, without an allocation.
//
// The allocator benchmarks mmap that file read-only (its pages are page cache, so RssAnon, the
// figure the malloc contenders are measured with, does not see them) and verify every object
// they read back by decompressing it and comparing it with the original page.
#ifndef BENCH_WORKLOAD_H_
#define BENCH_WORKLOAD_H_

#include <stddef.h>
#include <stdint.h>

#include <string>

namespace bench {

enum Algo : int { kLz4 = 0, kZstd = 1, kNumAlgos = 2 };
const char *AlgoName(int algo);
// "lz4" / "zstd" -> Algo; -1 if unknown.
int AlgoFromName(const char *name);

inline constexpr char kMagic[8] = {'Z', 'F', 'B', 'E', 'N', 'C', 'H', '1'};

struct Header {
  char magic[8];
  uint32_t page_size;
  uint32_t n_pages;
  uint64_t seed;
  uint64_t table_off;  // PageEntry[n_pages]
  uint64_t orig_off;   // n_pages * page_size bytes, page-aligned
  uint64_t blob_off[kNumAlgos];
  uint64_t blob_len[kNumAlgos];
};

struct PageEntry {
  uint64_t off[kNumAlgos];  // relative to blob_off[algo]
  uint32_t len[kNumAlgos];  // == page_size: stored whole (did not compress below PAGE_SIZE)
  uint32_t source;          // index of the source file (see the generator's JSON summary)
  uint32_t category;        // Category
};

enum Category : uint32_t { kLib = 0, kBin = 1, kDoc = 2, kText = 3, kNumCategories = 4 };
const char *CategoryName(uint32_t category);

// A workload file mapped read-only.
class Workload {
 public:
  Workload() = default;
  ~Workload();
  Workload(const Workload &) = delete;
  Workload &operator=(const Workload &) = delete;

  // False (with the cause in *error) if the file cannot be mapped or is not a workload of
  // `expected_page_size` pages (the caller's PAGE_SIZE).
  bool Open(const char *path, uint32_t expected_page_size, std::string *error);

  uint32_t n_pages() const { return header_->n_pages; }
  uint32_t page_size() const { return header_->page_size; }
  const PageEntry &entry(uint32_t i) const { return table_[i]; }
  const uint8_t *original(uint32_t i) const {
    return base_ + header_->orig_off + static_cast<uint64_t>(i) * header_->page_size;
  }
  const uint8_t *blob(int algo, uint32_t i) const {
    return base_ + header_->blob_off[algo] + table_[i].off[algo];
  }
  uint32_t len(int algo, uint32_t i) const { return table_[i].len[algo]; }

 private:
  const uint8_t *base_ = nullptr;
  size_t size_ = 0;
  const Header *header_ = nullptr;
  const PageEntry *table_ = nullptr;
};

// Checks that `data` (`len` bytes, as read back from an allocator) decompresses to the original
// page `i`. `scratch` holds at least page_size bytes. Thread-compatible (one Verifier per thread:
// it owns a zstd context).
class Verifier {
 public:
  Verifier();
  ~Verifier();
  Verifier(const Verifier &) = delete;
  Verifier &operator=(const Verifier &) = delete;
  bool Check(const Workload &w, int algo, uint32_t i, const uint8_t *data, size_t len);

 private:
  void *zstd_dctx_;
  uint8_t *page_;
};

// Deterministic PRNG (splitmix64), identical on every machine and library.
class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed) {}
  uint64_t Next() {
    uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  // Uniform in [0, n), n > 0 (Lemire's multiply-shift; the bias is negligible here).
  uint64_t Below(uint64_t n) {
    return static_cast<uint64_t>((static_cast<unsigned __int128>(Next()) * n) >> 64);
  }
  template <typename T>
  void Shuffle(T *v, size_t n) {
    for (size_t i = n; i > 1; i--) {
      size_t j = Below(i);
      T tmp = v[i - 1];
      v[i - 1] = v[j];
      v[j] = tmp;
    }
  }

 private:
  uint64_t state_;
};

}  // namespace bench

#endif  // BENCH_WORKLOAD_H_

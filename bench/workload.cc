// SPDX-License-Identifier: GPL-2.0-only
#include "bench/workload.h"

#include <fcntl.h>
#include <lz4.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

namespace bench {

const char *AlgoName(int algo) { return algo == kLz4 ? "lz4" : algo == kZstd ? "zstd" : "?"; }

int AlgoFromName(const char *name) {
  if (strcmp(name, "lz4") == 0) return kLz4;
  if (strcmp(name, "zstd") == 0) return kZstd;
  return -1;
}

const char *CategoryName(uint32_t category) {
  static const char *const kNames[] = {"lib", "bin", "doc", "text"};
  return category < kNumCategories ? kNames[category] : "?";
}

Workload::~Workload() {
  if (base_ != nullptr) munmap(const_cast<uint8_t *>(base_), size_);
}

bool Workload::Open(const char *path, uint32_t expected_page_size, std::string *error) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    *error = std::string("cannot open ") + path + ": " + strerror(errno);
    return false;
  }
  struct stat st;
  if (fstat(fd, &st) != 0 || st.st_size < static_cast<off_t>(sizeof(Header))) {
    close(fd);
    *error = std::string(path) + ": not a workload file (too short)";
    return false;
  }
  void *mem = mmap(nullptr, st.st_size, PROT_READ, MAP_SHARED, fd, 0);
  close(fd);
  if (mem == MAP_FAILED) {
    *error = std::string("cannot map ") + path + ": " + strerror(errno);
    return false;
  }
  base_ = static_cast<const uint8_t *>(mem);
  size_ = st.st_size;
  header_ = reinterpret_cast<const Header *>(base_);
  if (memcmp(header_->magic, kMagic, sizeof(kMagic)) != 0) {
    *error = std::string(path) + ": not a workload file (bad magic)";
    return false;
  }
  if (header_->page_size != expected_page_size) {
    *error = std::string(path) + ": workload of " + std::to_string(header_->page_size) +
             "-byte pages, this build uses " + std::to_string(expected_page_size);
    return false;
  }
  uint64_t end = header_->blob_off[kZstd] + header_->blob_len[kZstd];
  if (end > size_ || header_->table_off + uint64_t{header_->n_pages} * sizeof(PageEntry) > size_ ||
      header_->orig_off + uint64_t{header_->n_pages} * header_->page_size > size_) {
    *error = std::string(path) + ": truncated workload file";
    return false;
  }
  table_ = reinterpret_cast<const PageEntry *>(base_ + header_->table_off);
  // The benchmark reads everything several times: ask for it up front.
  madvise(const_cast<uint8_t *>(base_), size_, MADV_WILLNEED);
  return true;
}

Verifier::Verifier() {
  zstd_dctx_ = ZSTD_createDCtx();
  page_ = static_cast<uint8_t *>(malloc(1 << 16));
}

Verifier::~Verifier() {
  ZSTD_freeDCtx(static_cast<ZSTD_DCtx *>(zstd_dctx_));
  free(page_);
}

bool Verifier::Check(const Workload &w, int algo, uint32_t i, const uint8_t *data, size_t len) {
  const uint32_t expected_len = w.len(algo, i);
  if (len != expected_len) return false;
  // The bytes stored must come back unchanged...
  if (memcmp(data, w.blob(algo, i), len) != 0) return false;
  // ...and decompress to the original page.
  const uint32_t ps = w.page_size();
  if (len == ps) return memcmp(data, w.original(i), ps) == 0;  // stored whole
  if (algo == kLz4) {
    int n = LZ4_decompress_safe(reinterpret_cast<const char *>(data),
                                reinterpret_cast<char *>(page_), static_cast<int>(len),
                                static_cast<int>(ps));
    if (n != static_cast<int>(ps)) return false;
  } else {
    size_t n = ZSTD_decompressDCtx(static_cast<ZSTD_DCtx *>(zstd_dctx_), page_, ps, data, len);
    if (ZSTD_isError(n) || n != ps) return false;
  }
  return memcmp(page_, w.original(i), ps) == 0;
}

}  // namespace bench

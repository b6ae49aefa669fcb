// SPDX-License-Identifier: GPL-2.0-only
// bench_workload: writes the benchmark's workload file (see workload.h) and prints a JSON summary
// (page counts, compressed sizes, the size distribution) on stdout.
//
//   bench_workload --pages N --seed S --out FILE [--page-size 4096] [--per-file K]
//
// Selection, deterministic for a given machine content, seed and page count:
//   lib   shared libraries under /usr/lib (names containing ".so")          40% of the pages
//   bin   /usr/bin, /usr/sbin                                                30%
//   doc   /usr/share/doc (copyright files, changelogs: many are gzip'ed)     15%
//   text  C headers (/usr/include), Python (/usr/lib/python3*), Perl        15%
// Each category's files are listed by a sorted walk (no symlinks followed), shuffled with the
// seed, and taken in that order, at most --per-file pages from each (default
// max(32, pages / 200)) (seeded choice of pages when
// the file is larger), until the category's share is reached; a category that runs out leaves
// its share to the next. The last partial page of a file is zero-padded, as in the page cache.
#include <dirent.h>
#include <fcntl.h>
#include <lz4.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zstd.h>

#include <algorithm>
#include <string>
#include <vector>

#include "bench/workload.h"

namespace {

using bench::Header;
using bench::PageEntry;
using bench::Rng;

struct Args {
  long pages = 20000;
  uint64_t seed = 1;
  const char *out = nullptr;
  long page_size = 4096;
  long per_file = 0;  // 0: max(32, pages / 200), so that large workloads reach their quotas
  int zstd_level = 3;
};

[[noreturn]] void Usage(const char *why) {
  fprintf(stderr, "bench_workload: %s\n", why);
  fprintf(stderr,
          "usage: bench_workload --pages N --seed S --out FILE [--page-size 4096] "
          "[--per-file K] [--zstd-level 3]\n");
  exit(2);
}

long ParseLong(const char *flag, const char *value, long min, long max) {
  char *end = nullptr;
  errno = 0;
  long v = strtol(value, &end, 10);
  if (errno != 0 || end == value || *end != '\0' || v < min || v > max) {
    char buf[256];
    snprintf(buf, sizeof(buf), "%s: %s is not a number in %ld..%ld", flag, value, min, max);
    Usage(buf);
  }
  return v;
}

Args ParseArgs(int argc, char **argv) {
  Args a;
  for (int i = 1; i < argc; i++) {
    std::string flag = argv[i];
    auto value = [&]() -> const char * {
      if (i + 1 >= argc) Usage((flag + " needs a value").c_str());
      return argv[++i];
    };
    if (flag == "--pages") {
      a.pages = ParseLong("--pages", value(), 1, 10000000);
    } else if (flag == "--seed") {
      a.seed = static_cast<uint64_t>(ParseLong("--seed", value(), 0, 1L << 62));
    } else if (flag == "--out") {
      a.out = value();
    } else if (flag == "--page-size") {
      a.page_size = ParseLong("--page-size", value(), 4096, 65536);
      if (a.page_size != 4096 && a.page_size != 16384 && a.page_size != 65536)
        Usage("--page-size: 4096, 16384 or 65536");
    } else if (flag == "--per-file") {
      a.per_file = ParseLong("--per-file", value(), 1, 1000000);
    } else if (flag == "--zstd-level") {
      a.zstd_level = static_cast<int>(ParseLong("--zstd-level", value(), 1, 19));
    } else {
      Usage(("unknown flag " + flag).c_str());
    }
  }
  if (a.out == nullptr) Usage("--out is required");
  if (a.per_file == 0) a.per_file = std::max(32L, a.pages / 200);
  return a;
}

// ---- file selection ----------------------------------------------------------------------------

using Filter = bool (*)(const std::string &path);

bool AnyFile(const std::string &) { return true; }
bool SharedLib(const std::string &path) {
  const char *name = strrchr(path.c_str(), '/');
  name = name ? name + 1 : path.c_str();
  const char *so = strstr(name, ".so");
  return so != nullptr && (so[3] == '\0' || so[3] == '.');
}
bool PythonSource(const std::string &path) {
  return path.size() > 3 && path.compare(path.size() - 3, 3, ".py") == 0;
}

// Regular files under `dir` (not following symlinks), in sorted order. Empty files are dropped
// later (they have no page).
void Walk(const std::string &dir, Filter filter, std::vector<std::string> *out) {
  DIR *d = opendir(dir.c_str());
  if (d == nullptr) return;
  std::vector<std::pair<std::string, unsigned char>> entries;
  while (struct dirent *e = readdir(d)) {
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
    entries.emplace_back(e->d_name, e->d_type);
  }
  closedir(d);
  std::sort(entries.begin(), entries.end());
  for (const auto &[name, type] : entries) {
    std::string path = dir + "/" + name;
    bool is_dir = type == DT_DIR, is_reg = type == DT_REG;
    if (type == DT_UNKNOWN) {  // file systems without d_type
      struct stat st;
      if (lstat(path.c_str(), &st) != 0) continue;
      is_dir = S_ISDIR(st.st_mode);
      is_reg = S_ISREG(st.st_mode);
    }
    if (is_dir) {
      Walk(path, filter, out);
    } else if (is_reg && filter(path)) {
      out->push_back(path);
    }
  }
}

// Directories under `parent` whose names start with `prefix`, sorted.
std::vector<std::string> Subdirs(const std::string &parent, const char *prefix) {
  std::vector<std::string> out;
  DIR *d = opendir(parent.c_str());
  if (d == nullptr) return out;
  while (struct dirent *e = readdir(d)) {
    if (strncmp(e->d_name, prefix, strlen(prefix)) == 0) out.push_back(parent + "/" + e->d_name);
  }
  closedir(d);
  std::sort(out.begin(), out.end());
  return out;
}

struct CategorySpec {
  uint32_t category;
  double share;
};

std::vector<std::string> FilesOf(uint32_t category) {
  std::vector<std::string> files;
  switch (category) {
    case bench::kLib:
      Walk("/usr/lib", SharedLib, &files);
      break;
    case bench::kBin:
      Walk("/usr/bin", AnyFile, &files);
      Walk("/usr/sbin", AnyFile, &files);
      break;
    case bench::kDoc:
      Walk("/usr/share/doc", AnyFile, &files);
      break;
    case bench::kText:
      Walk("/usr/include", AnyFile, &files);
      for (const std::string &d : Subdirs("/usr/lib", "python3")) Walk(d, PythonSource, &files);
      Walk("/usr/share/perl", AnyFile, &files);
      Walk("/usr/share/perl5", AnyFile, &files);
      break;
  }
  // A path can be listed twice only through two roots; keep one.
  std::sort(files.begin(), files.end());
  files.erase(std::unique(files.begin(), files.end()), files.end());
  return files;
}

bool SameFilled(const uint8_t *page, size_t size) {
  uint64_t first;
  memcpy(&first, page, sizeof(first));
  for (size_t off = sizeof(first); off < size; off += sizeof(first)) {
    uint64_t w;
    memcpy(&w, page + off, sizeof(w));
    if (w != first) return false;
  }
  return true;
}

double Now() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

}  // namespace

int main(int argc, char **argv) {
  const Args args = ParseArgs(argc, argv);
  const double t0 = Now();
  const size_t ps = static_cast<size_t>(args.page_size);
  const uint32_t n_target = static_cast<uint32_t>(args.pages);

  FILE *out = fopen(args.out, "w+b");
  if (out == nullptr) {
    fprintf(stderr, "bench_workload: cannot create %s: %s\n", args.out, strerror(errno));
    return 1;
  }
  Header header{};
  memcpy(header.magic, bench::kMagic, sizeof(header.magic));
  header.page_size = static_cast<uint32_t>(ps);
  header.seed = args.seed;
  header.table_off = ps;  // after the header page
  header.orig_off =
      (header.table_off + uint64_t{n_target} * sizeof(PageEntry) + ps - 1) / ps * ps;

  std::vector<PageEntry> table;
  table.reserve(n_target);
  std::vector<uint8_t> blobs[bench::kNumAlgos];
  std::vector<uint8_t> page(ps);
  std::vector<uint8_t> dst(std::max<size_t>(LZ4_compressBound(ps), ZSTD_compressBound(ps)));
  ZSTD_CCtx *cctx = ZSTD_createCCtx();
  ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, args.zstd_level);
  // As the kernel's zstd: no checksum, no frame content size, no dictionary id.
  ZSTD_CCtx_setParameter(cctx, ZSTD_c_checksumFlag, 0);

  const CategorySpec specs[] = {
      {bench::kLib, 0.40}, {bench::kBin, 0.30}, {bench::kDoc, 0.15}, {bench::kText, 0.15}};
  unsigned long same_filled = 0, files_used[bench::kNumCategories] = {},
                files_listed[bench::kNumCategories] = {}, read_errors = 0;
  uint32_t carried = 0;  // pages a category could not supply, left to the next ones
  uint32_t source_id = 0;
  double compress_seconds[bench::kNumAlgos] = {};

  for (size_t s = 0; s < sizeof(specs) / sizeof(specs[0]); s++) {
    const uint32_t cat = specs[s].category;
    uint32_t want = static_cast<uint32_t>(n_target * specs[s].share + 0.5) + carried;
    if (s + 1 == sizeof(specs) / sizeof(specs[0])) want = n_target - table.size();
    uint32_t got = 0;
    std::vector<std::string> files = FilesOf(cat);
    files_listed[cat] = files.size();
    Rng rng(args.seed * 0x100000001b3ULL + cat + 1);
    rng.Shuffle(files.data(), files.size());
    for (size_t f = 0; f < files.size() && got < want; f++, source_id++) {
      int fd = open(files[f].c_str(), O_RDONLY | O_CLOEXEC);
      if (fd < 0) {
        read_errors++;
        continue;
      }
      struct stat st;
      if (fstat(fd, &st) != 0) {
        close(fd);
        read_errors++;
        continue;
      }
      const uint64_t n_file_pages = (static_cast<uint64_t>(st.st_size) + ps - 1) / ps;
      std::vector<uint64_t> picks;
      if (n_file_pages <= static_cast<uint64_t>(args.per_file)) {
        for (uint64_t p = 0; p < n_file_pages; p++) picks.push_back(p);
      } else {
        // A seeded choice of distinct pages, in file order (partial Fisher-Yates).
        std::vector<uint64_t> all(n_file_pages);
        for (uint64_t p = 0; p < n_file_pages; p++) all[p] = p;
        for (long k = 0; k < args.per_file; k++) {
          uint64_t j = k + rng.Below(n_file_pages - k);
          std::swap(all[k], all[j]);
        }
        picks.assign(all.begin(), all.begin() + args.per_file);
        std::sort(picks.begin(), picks.end());
      }
      bool used = false;
      for (uint64_t p : picks) {
        if (got >= want) break;
        memset(page.data(), 0, ps);
        ssize_t n = pread(fd, page.data(), ps, static_cast<off_t>(p * ps));
        if (n <= 0) {
          read_errors++;
          break;
        }
        if (SameFilled(page.data(), ps)) {
          same_filled++;
          continue;
        }
        PageEntry e{};
        e.source = source_id;
        e.category = cat;
        for (int algo = 0; algo < bench::kNumAlgos; algo++) {
          const double c0 = Now();
          size_t clen;
          if (algo == bench::kLz4) {
            int r = LZ4_compress_default(reinterpret_cast<const char *>(page.data()),
                                         reinterpret_cast<char *>(dst.data()),
                                         static_cast<int>(ps), static_cast<int>(dst.size()));
            clen = r > 0 ? static_cast<size_t>(r) : ps;
          } else {
            size_t r = ZSTD_compress2(cctx, dst.data(), dst.size(), page.data(), ps);
            clen = ZSTD_isError(r) ? ps : r;
          }
          compress_seconds[algo] += Now() - c0;
          const uint8_t *src = dst.data();
          if (clen >= ps) {  // did not compress below PAGE_SIZE: stored whole
            clen = ps;
            src = page.data();
          }
          e.off[algo] = blobs[algo].size();
          e.len[algo] = static_cast<uint32_t>(clen);
          blobs[algo].insert(blobs[algo].end(), src, src + clen);
        }
        if (fseeko(out, static_cast<off_t>(header.orig_off + uint64_t{table.size()} * ps),
                   SEEK_SET) != 0 ||
            fwrite(page.data(), 1, ps, out) != ps) {
          fprintf(stderr, "bench_workload: write to %s failed: %s\n", args.out, strerror(errno));
          return 1;
        }
        table.push_back(e);
        got++;
        used = true;
      }
      close(fd);
      if (used) files_used[cat]++;
    }
    carried = want - got;
  }
  ZSTD_freeCCtx(cctx);

  header.n_pages = static_cast<uint32_t>(table.size());
  uint64_t off = header.orig_off + uint64_t{header.n_pages} * ps;
  for (int algo = 0; algo < bench::kNumAlgos; algo++) {
    header.blob_off[algo] = off;
    header.blob_len[algo] = blobs[algo].size();
    off += blobs[algo].size();
  }
  bool ok = fseeko(out, 0, SEEK_SET) == 0 && fwrite(&header, sizeof(header), 1, out) == 1 &&
            fseeko(out, static_cast<off_t>(header.table_off), SEEK_SET) == 0 &&
            fwrite(table.data(), sizeof(PageEntry), table.size(), out) == table.size();
  for (int algo = 0; ok && algo < bench::kNumAlgos; algo++) {
    ok = fseeko(out, static_cast<off_t>(header.blob_off[algo]), SEEK_SET) == 0 &&
         fwrite(blobs[algo].data(), 1, blobs[algo].size(), out) == blobs[algo].size();
  }
  if (!ok || fclose(out) != 0) {
    fprintf(stderr, "bench_workload: write to %s failed: %s\n", args.out, strerror(errno));
    return 1;
  }
  if (table.empty()) {
    fprintf(stderr, "bench_workload: no pages found under /usr\n");
    return 1;
  }

  // ---- the JSON summary ----------------------------------------------------------------------
  const unsigned kBucket = 128;
  const unsigned n_buckets = static_cast<unsigned>(ps / kBucket);
  printf("{\n  \"pages\": %u,\n  \"requested_pages\": %u,\n  \"page_size\": %zu,\n", header.n_pages,
         n_target, ps);
  printf("  \"seed\": %llu,\n  \"per_file\": %ld,\n  \"zstd_level\": %d,\n",
         static_cast<unsigned long long>(args.seed), args.per_file, args.zstd_level);
  printf("  \"same_filled_skipped\": %lu,\n  \"read_errors\": %lu,\n", same_filled, read_errors);
  printf("  \"seconds\": %.3f,\n  \"bucket_bytes\": %u,\n", Now() - t0, kBucket);
  printf("  \"categories\": {");
  for (uint32_t c = 0; c < bench::kNumCategories; c++) {
    unsigned long pages = 0, bytes[bench::kNumAlgos] = {};
    for (const PageEntry &e : table) {
      if (e.category != c) continue;
      pages++;
      for (int a = 0; a < bench::kNumAlgos; a++) bytes[a] += e.len[a];
    }
    printf("%s\n    \"%s\": {\"pages\": %lu, \"files_listed\": %lu, \"files_used\": %lu, "
           "\"lz4_bytes\": %lu, \"zstd_bytes\": %lu}",
           c ? "," : "", bench::CategoryName(c), pages, files_listed[c], files_used[c], bytes[0],
           bytes[1]);
  }
  printf("\n  },\n  \"algos\": {");
  for (int a = 0; a < bench::kNumAlgos; a++) {
    std::vector<uint32_t> lens;
    lens.reserve(table.size());
    unsigned long whole = 0;
    // Buckets of kBucket bytes, then one more: pages stored whole.
    std::vector<unsigned long> hist(n_buckets + 1, 0);
    for (const PageEntry &e : table) {
      lens.push_back(e.len[a]);
      if (e.len[a] == ps) whole++;
      hist[e.len[a] >= ps ? n_buckets : e.len[a] / kBucket]++;
    }
    std::sort(lens.begin(), lens.end());
    auto pct = [&](double q) { return lens[std::min(lens.size() - 1, size_t(q * lens.size()))]; };
    printf("%s\n    \"%s\": {\"bytes\": %llu, \"mean\": %.1f, \"stored_whole\": %lu, "
           "\"p10\": %u, \"p50\": %u, \"p90\": %u, \"compress_seconds\": %.3f, \"histogram\": [",
           a ? "," : "", bench::AlgoName(a), static_cast<unsigned long long>(header.blob_len[a]),
           static_cast<double>(header.blob_len[a]) / table.size(), whole, pct(0.1), pct(0.5),
           pct(0.9), compress_seconds[a]);
    for (unsigned b = 0; b <= n_buckets; b++) printf("%s%lu", b ? ", " : "", hist[b]);
    printf("]}");
  }
  printf("\n  }\n}\n");
  return 0;
}

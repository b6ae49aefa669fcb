// SPDX-License-Identifier: GPL-2.0-only
// The malloc family as benchmark contenders: malloc + memcpy + free of the same compressed
// buffers. BENCH_ALLOCATOR selects the allocator the binary is linked with (each in its own
// binary: jemalloc and mimalloc replace malloc for the whole process when linked):
//   0  glibc     stat: mallinfo2() arena + hblkhd (heap bytes obtained from the system)
//   1  jemalloc  stat: mallctl "stats.active" (bytes in active pages)
//   2  mimalloc  stat: mi_process_info() current commit
// The headline "memory used" of each is the process's RssAnon delta since Create(), measured
// after the same trim/purge the harness's "compaction" step asks for.
// "Compaction": malloc_trim(0) (glibc), tcache flush + arena purge (jemalloc), mi_collect(true)
// (mimalloc): none of them can move objects.
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <string>

#include "bench/contender.h"

#ifndef BENCH_ALLOCATOR
#define BENCH_ALLOCATOR 0
#endif

#if BENCH_ALLOCATOR == 0
#include <gnu/libc-version.h>
#elif BENCH_ALLOCATOR == 1
// Debian's jemalloc is built without a prefix: its mallctl is the plain name. Declared here
// rather than through <jemalloc/jemalloc.h>, whose malloc declarations clash with glibc's.
extern "C" int mallctl(const char *name, void *oldp, size_t *oldlenp, void *newp, size_t newlen);
#elif BENCH_ALLOCATOR == 2
#include <mimalloc.h>
#else
#error "BENCH_ALLOCATOR must be 0 (glibc), 1 (jemalloc) or 2 (mimalloc)"
#endif

namespace bench {
namespace {

class Malloc final : public Contender {
 public:
  std::string Name() const override {
    return BENCH_ALLOCATOR == 0 ? "glibc" : BENCH_ALLOCATOR == 1 ? "jemalloc" : "mimalloc";
  }
  std::string MemoryMethod() const override {
#if BENCH_ALLOCATOR == 0
    return "RssAnon delta (stat: mallinfo2 arena+hblkhd delta)";
#elif BENCH_ALLOCATOR == 1
    return "RssAnon delta (stat: mallctl stats.active delta)";
#else
    return "RssAnon delta (stat: mi_process_info current_commit delta)";
#endif
  }
  std::string BuildInfo() const override {
    char buf[128];
#if BENCH_ALLOCATOR == 0
    snprintf(buf, sizeof(buf), "glibc %s", gnu_get_libc_version());
#elif BENCH_ALLOCATOR == 1
    const char *version = "?";
    size_t len = sizeof(version);
    mallctl("version", &version, &len, nullptr, 0);
    snprintf(buf, sizeof(buf), "jemalloc %s", version);
#else
    int v = mi_version();
    snprintf(buf, sizeof(buf), "mimalloc %d.%d.%d", v / 100, (v / 10) % 10, v % 10);
#endif
    return buf;
  }

  bool Create() override {
    if (!MallocIsOurs()) {
      fprintf(stderr, "alloc_bench: malloc is not %s's in this binary (link order?)\n",
              Name().c_str());
      return false;
    }
    // Start from a clean heap: whatever an earlier phase freed goes back first.
    bool unused;
    Compact(&unused);
    rss_base_ = RssAnonBytes();
    stat_base_ = Stat();
    return true;
  }
  void Destroy() override {}

  bool Store(const void *src, size_t len, uintptr_t *handle) override {
    void *p = malloc(len);
    if (p == nullptr) return false;
    memcpy(p, src, len);
    *handle = reinterpret_cast<uintptr_t>(p);
    return true;
  }
  void Load(uintptr_t handle, void *dst, size_t len) override {
    memcpy(dst, reinterpret_cast<const void *>(handle), len);
  }
  void Free(uintptr_t handle) override { free(reinterpret_cast<void *>(handle)); }

  MemoryFigures Memory() override { return {RssAnonBytes() - rss_base_, Stat() - stat_base_}; }

  long Compact(bool *supported) override {
    *supported = true;
#if BENCH_ALLOCATOR == 0
    malloc_trim(0);
#elif BENCH_ALLOCATOR == 1
    mallctl("thread.tcache.flush", nullptr, nullptr, nullptr, 0);
    mallctl("arena.4096.purge", nullptr, nullptr, nullptr, 0);  // MALLCTL_ARENAS_ALL
#else
    mi_collect(true);
#endif
    return -1;
  }

 private:
  static double Stat() {
#if BENCH_ALLOCATOR == 0
    struct mallinfo2 mi = mallinfo2();
    return static_cast<double>(mi.arena + mi.hblkhd);
#elif BENCH_ALLOCATOR == 1
    uint64_t epoch = 1;
    size_t len = sizeof(epoch);
    mallctl("epoch", &epoch, &len, &epoch, len);
    size_t active = 0;
    len = sizeof(active);
    if (mallctl("stats.active", &active, &len, nullptr, 0) != 0) return -1;
    return static_cast<double>(active);
#else
    size_t elapsed, user, sys, rss, peak_rss, commit, peak_commit, faults;
    mi_process_info(&elapsed, &user, &sys, &rss, &peak_rss, &commit, &peak_commit, &faults);
    return static_cast<double>(commit);
#endif
  }

  // The binary's malloc really is the allocator under test (jemalloc and mimalloc replace it
  // only when they come before libc in the link).
  static bool MallocIsOurs() {
#if BENCH_ALLOCATOR == 0
    return true;
#elif BENCH_ALLOCATOR == 1
    auto allocated = []() -> size_t {
      uint64_t epoch = 1;
      size_t len = sizeof(epoch);
      mallctl("epoch", &epoch, &len, &epoch, len);
      size_t v = 0;
      len = sizeof(v);
      mallctl("stats.allocated", &v, &len, nullptr, 0);
      return v;
    };
    size_t before = allocated();
    void *volatile p = malloc(1 << 20);
    size_t after = allocated();
    free(p);
    return after >= before + (1 << 20);
#else
    void *volatile p = malloc(64);
    bool ours = mi_is_in_heap_region(p);
    free(p);
    return ours;
#endif
  }

  double rss_base_ = 0;
  double stat_base_ = 0;
};

}  // namespace

std::vector<std::string> ContenderNames() { return {Malloc().Name()}; }

std::unique_ptr<Contender> MakeContender(const std::string &name) {
  if (name != Malloc().Name()) return nullptr;
  return std::make_unique<Malloc>();
}

size_t BuildPageSize() { return static_cast<size_t>(sysconf(_SC_PAGESIZE)); }

}  // namespace bench

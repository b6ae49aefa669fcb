// SPDX-License-Identifier: GPL-2.0-only
// One allocator under test, as the harness (harness.cc) drives it: a pool, store/load/free of
// compressed pages, its memory, and its compaction.
//
// Every benchmark binary links harness.cc and exactly one contender source:
//   contenders_ours.cc    zsmalloc, zbud, zpool/zsmalloc, zpool/zbud (chain size and checks as
//                         the binary was built: alloc_bench_ours, _cs4, the unchecked build)
//   contenders_malloc.cc  malloc + memcpy + free, with the allocator the binary links (glibc,
//                         jemalloc or mimalloc: each in its own binary, since both replace
//                         malloc for the whole process)
#ifndef BENCH_CONTENDER_H_
#define BENCH_CONTENDER_H_

#include <stddef.h>
#include <stdint.h>

#include <memory>
#include <string>
#include <vector>

namespace bench {

struct MemoryFigures {
  // The headline "memory used" in bytes: pages * PAGE_SIZE for our allocators, the RssAnon
  // delta for the malloc family (see `method`).
  double used = 0;
  // The allocator's own statistic, in bytes (mallinfo2, jemalloc stats.active,
  // mi_process_info's commit; zs_get_total_pages / zbud_get_pool_size for ours), -1 if none.
  double stat = -1;
};

class Contender {
 public:
  virtual ~Contender() = default;
  virtual std::string Name() const = 0;
  // How `MemoryFigures::used` and `stat` are measured, one line.
  virtual std::string MemoryMethod() const = 0;
  // Free-form facts about the build (chain size, checks compiled in, allocator version).
  virtual std::string BuildInfo() const { return ""; }
  // Largest object the contender can store (zbud: 3968 on 4 KiB pages). Larger pages are
  // skipped by the harness and counted.
  virtual size_t MaxSize() const { return SIZE_MAX; }

  // A fresh pool (and the baseline of the memory figures). False on failure.
  virtual bool Create() = 0;
  virtual void Destroy() = 0;
  // Called first on every thread that uses the pool (the harness's threads run on distinct
  // virtual CPUs: kc_set_cpu).
  virtual void BindThread(int cpu) { (void)cpu; }

  // malloc + write-only map + copy + unmap. False on failure.
  virtual bool Store(const void *src, size_t len, uintptr_t *handle) = 0;
  // read-only map + copy + unmap.
  virtual void Load(uintptr_t handle, void *dst, size_t len) = 0;
  virtual void Free(uintptr_t handle) = 0;

  virtual MemoryFigures Memory() = 0;
  // zs_compact for zsmalloc; malloc_trim / purge / mi_collect for the malloc family (which
  // cannot move objects). Returns pages freed when the allocator says, -1 otherwise. Sets
  // *supported to false when the contender has no such operation (zbud, zpool).
  virtual long Compact(bool *supported) = 0;
  // The allocator's own consistency check, if any: empty string when fine.
  virtual std::string Validate() { return ""; }
  // WARNs and misuse reports since start (must stay 0), for ours.
  virtual unsigned long Warnings() const { return 0; }
  // The hardening level, for the record ("cheap", "full", "n/a").
  virtual void SetHardening(const std::string &level) { (void)level; }
  virtual std::string Hardening() const { return "n/a"; }
};

// Defined by the contender source linked into the binary. `names` receives the contenders this
// binary offers; MakeContender returns nullptr for any other name.
std::vector<std::string> ContenderNames();
std::unique_ptr<Contender> MakeContender(const std::string &name);
// PAGE_SIZE of this build (ours) or of the machine (malloc family).
size_t BuildPageSize();

// RssAnon of this process, in bytes (from /proc/self/status): the pages the process really
// holds, without the page cache of mapped files.
double RssAnonBytes();

}  // namespace bench

#endif  // BENCH_CONTENDER_H_

// SPDX-License-Identifier: GPL-2.0-only
// zpool_concurrent_fuzz: 2 to 4 threads, each with its own decoded operation stream, on one pool,
// bound to virtual CPUs chosen by the input (two threads may share one CPU), with a background
// thread that compacts (zsmalloc) or reclaims with a refusing evict callback (zbud).
//
// Input layout (FuzzedDataProvider): backend, mode, thread count, each thread's CPU, whether the
// background thread runs, then each thread's operation stream (a length-prefixed slice), and the
// rest: the scheduler's decisions.
//
// Two modes:
// - free-running: real threads at full speed (for TSan and real races); oracle: every object's
//   contents intact (each thread owns its objects and verifies them on every RO/RW map and before
//   free), no WARN but concurrent-map, and none of those unless two threads share a CPU;
// - scheduled: kc::DeterministicScheduler runs one thread at a time and the input decides at
//   every kernel-layer scheduling point which thread runs next, so one input is one interleaving
//   and a finding reproduces every time.
// In both modes: contents intact, the validator clean, no page or metadata leaked, no WARN but
// concurrent-map, and concurrent-map WARNs only from maps made by threads that share a CPU (at
// most one per such map: the waiting thread reports once, then waits). Whether a given map meets
// the other thread's mapping depends on where the interleaving switches inside the map, so the
// harness bounds the count rather than predicting it; the unit tests pin the exact case.
// Runs under the record policy; threads joined, pool destroyed, state reset after each input.
#include <fuzzer/FuzzedDataProvider.h>

#include <atomic>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "fuzz/api/program.h"
#include "fuzz/api/subject.h"
#include "zpool/kernel/percpu.h"
#include "zpool/kernel/sched.h"
#include "zpool/kernel/scheduler.h"
#include "zpool/misuse.h"

namespace {

using zfuzz::Kind;
using zfuzz::MapMode;
using zfuzz::Subject;
using zfuzz::TraceLine;
using zfuzz::Tracing;

constexpr int kMaxThreads = 4;
constexpr Kind kKinds[] = {Kind::kZsmalloc, Kind::kZpoolZsmalloc, Kind::kZpoolZbud, Kind::kZbud};

uint64_t Mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

struct Object {
  unsigned long handle;
  size_t size;
  uint32_t id;
  uint32_t gen;
};

struct Shared {
  Subject *subject;
  bool scheduled;
  bool per_cpu_area;  // zsmalloc-backed: maps take the CPU's local lock
  std::atomic<long> possible_concurrent{0};  // maps made by threads sharing a CPU
  bool cpu_shared[kc::kMaxCpus] = {};
};

void Background(Shared &shared, int rounds);

class Worker {
 public:
  Worker(Shared &shared, int index, int cpu, std::vector<uint8_t> ops)
      : shared_(shared), index_(index), cpu_(cpu), ops_(std::move(ops)) {
    snprintf(prefix_, sizeof(prefix_), "[t%d] ", index);
  }

  void Run() {
    zfuzz::SetTracePrefix(prefix_);
    kc_set_cpu(cpu_);
    FuzzedDataProvider in(ops_.data(), ops_.size());
    for (int step = 0; step < 48 && in.remaining_bytes() > 0; step++) {
      switch (in.ConsumeIntegralInRange<int>(0, 7)) {
        // Arguments are read in named steps: the order of evaluation of a call's arguments is
        // unspecified in C++, and an input must mean the same under every compiler.
        case 0: {
          size_t size = in.ConsumeIntegralInRange<size_t>(1, shared_.subject->MaxSize());
          bool atomic = in.ConsumeBool();
          Malloc(size, atomic);
          break;
        }
        case 1: {  // many objects of one size: zspages of one class, for compaction to work on
          int count = in.ConsumeIntegralInRange<int>(2, 24);
          size_t size = in.ConsumeIntegralInRange<size_t>(1, shared_.subject->MaxSize());
          for (int i = 0; i < count; i++) Malloc(size, true);
          break;
        }
        case 2: {
          if (objects_.empty()) break;
          size_t index = in.ConsumeIntegralInRange<size_t>(0, objects_.size() - 1);
          auto mode = static_cast<MapMode>(in.ConsumeIntegralInRange<int>(0, 2));
          int hold = in.ConsumeIntegralInRange<int>(0, 3);
          Map(index, mode, hold);
          break;
        }
        case 3:
          if (!objects_.empty()) Free(in.ConsumeIntegralInRange<size_t>(0, objects_.size() - 1));
          break;
        case 4:  // free every other object: sparse zspages
          for (size_t i = objects_.size(); i-- > 0;)
            if (i % 2 == 0) Free(i);
          break;
        case 5: {  // map every object in turn (RW): touches whatever compaction is moving
          for (size_t i = 0; i < objects_.size(); i++) Map(i, MapMode::kRW, 0);
          break;
        }
        case 6:
          kc::sched_point(kc::SchedEvent::kYield);
          break;
        case 7:  // compaction (or reclaim) from this worker, racing the others' maps and frees
          Background(shared_, 1);
          break;
      }
    }
    while (!objects_.empty()) Free(objects_.size() - 1);
    zfuzz::SetTracePrefix("");
  }

 private:
  uint64_t Word(const Object &obj, size_t w) const {
    return Mix((uint64_t{obj.id} << 32) ^ (uint64_t{obj.gen} << 8) ^ uint64_t(index_) ^ (w << 40));
  }
  void Fill(uint8_t *p, const Object &obj) const {
    for (size_t off = 0; off < obj.size; off += 8) {
      uint64_t w = Word(obj, off / 8);
      memcpy(p + off, &w, std::min<size_t>(8, obj.size - off));
    }
  }
  void Verify(const uint8_t *p, const Object &obj, const char *when) const {
    for (size_t off = 0; off < obj.size; off += 8) {
      uint64_t w = Word(obj, off / 8);
      ZFUZZ_CHECK(memcmp(p + off, &w, std::min<size_t>(8, obj.size - off)) == 0,
                  "thread %d: %s: object %u (%zu bytes) differs at byte %zu: contents lost",
                  index_, when, obj.id, obj.size, off);
    }
  }

  // Maps, counting the maps that may meet another thread's mapping of the same CPU.
  void *MapTracked(const Object &obj, MapMode mode) {
    void *p = shared_.subject->Map(obj.handle, mode, static_cast<int>(obj.id));
    if (shared_.per_cpu_area && shared_.cpu_shared[cpu_]) shared_.possible_concurrent++;
    return p;
  }
  void UnmapTracked(const Object &obj) {
    shared_.subject->Unmap(obj.handle, static_cast<int>(obj.id));
  }

  void Malloc(size_t size, bool atomic) {
    Object obj{0, size, next_id_++, 0};
    int err = shared_.subject->Malloc(size, (atomic ? GFP_ATOMIC : GFP_KERNEL) | __GFP_NOWARN,
                                      &obj.handle, static_cast<int>(obj.id));
    ZFUZZ_CHECK(err == 0, "thread %d: malloc(%zu) failed with %d", index_, size, err);
    void *p = MapTracked(obj, MapMode::kWO);
    ZFUZZ_CHECK(p != nullptr, "thread %d: WO map of a new object returned NULL", index_);
    Fill(static_cast<uint8_t *>(p), obj);
    UnmapTracked(obj);
    objects_.push_back(obj);
  }

  void Map(size_t index, MapMode mode, int hold) {
    Object &obj = objects_[index];
    void *p = MapTracked(obj, mode);
    ZFUZZ_CHECK(p != nullptr, "thread %d: map of object %u returned NULL", index_, obj.id);
    auto *bytes = static_cast<uint8_t *>(p);
    if (mode != MapMode::kWO) Verify(bytes, obj, "mapped");
    for (int i = 0; i < hold; i++) kc::sched_point(kc::SchedEvent::kYield);
    if (mode != MapMode::kRO) {
      obj.gen++;
      Fill(bytes, obj);
    }
    UnmapTracked(obj);
  }

  void Free(size_t index) {
    Object obj = objects_[index];
    objects_[index] = objects_.back();
    objects_.pop_back();
    void *p = MapTracked(obj, MapMode::kRO);
    ZFUZZ_CHECK(p != nullptr, "thread %d: map before free returned NULL", index_);
    Verify(static_cast<const uint8_t *>(p), obj, "before free");
    UnmapTracked(obj);
    shared_.subject->Free(obj.handle, static_cast<int>(obj.id));
  }

  Shared &shared_;
  int index_;
  int cpu_;
  std::vector<uint8_t> ops_;
  std::vector<Object> objects_;
  uint32_t next_id_ = 0;
  char prefix_[16];
};

// Compacts (zsmalloc) or reclaims with the refusing evict (zbud), `rounds` times. Run by the
// background thread (on the last CPU, which it sets) and by a worker's compaction operation.
void Background(Shared &shared, int rounds) {
  for (int i = 0; i < rounds; i++) {
    if (shared.subject->CanCompact()) {
      shared.subject->Compact();
    } else if (shared.subject->CanEvict()) {
      unsigned reclaimed = 0;
      int err = shared.subject->Reclaim(1, &reclaimed);
      ZFUZZ_CHECK(err == 0 || err == -EAGAIN || err == -EINVAL,
                  "background reclaim returned %d", err);
    }
    kc::sched_point(kc::SchedEvent::kYield);
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int *, char ***) {
  zfuzz::InitializeHarness(KC_WARN_RECORD);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  FuzzedDataProvider in(data, size);
  zfuzz::ResetKernelState();
  const unsigned long pages_before = kc_pages_in_use(), meta_before = kc_meta_in_use();
  Kind kind = kKinds[in.ConsumeIntegralInRange<size_t>(0, 3)];
  bool scheduled = in.ConsumeBool();
  int nthreads = in.ConsumeIntegralInRange<int>(2, kMaxThreads);
  int cpus[kMaxThreads];
  for (int t = 0; t < nthreads; t++) cpus[t] = in.ConsumeIntegralInRange<int>(0, kc_nr_cpus() - 1);
  int background_rounds = in.ConsumeIntegralInRange<int>(0, 16);
  std::vector<std::vector<uint8_t>> streams;
  for (int t = 0; t < nthreads; t++) {
    size_t length = in.ConsumeIntegralInRange<size_t>(0, 96);
    streams.push_back(in.ConsumeBytes<uint8_t>(length));
  }
  std::vector<uint8_t> decisions = in.ConsumeRemainingBytes<uint8_t>();

  std::unique_ptr<Subject> subject = zfuzz::MakeSubject(kind, 0);
  if (Tracing())
    TraceLine("/* %s, %s, %d threads, background %d rounds */", zfuzz::KindName(kind),
              scheduled ? "scheduled" : "free-running", nthreads, background_rounds);
  ZFUZZ_CHECK(subject->Create(/*with_evict=*/true), "pool creation failed");
  subject->set_evict([](unsigned long) { return -EBUSY; });  // objects belong to the workers

  Shared shared;
  shared.subject = subject.get();
  shared.scheduled = scheduled;
  shared.per_cpu_area = kind == Kind::kZsmalloc || kind == Kind::kZpoolZsmalloc;
  for (int a = 0; a < nthreads; a++)
    for (int b = 0; b < nthreads; b++)
      if (a != b && cpus[a] == cpus[b]) shared.cpu_shared[cpus[a]] = true;

  std::vector<std::unique_ptr<Worker>> workers;
  for (int t = 0; t < nthreads; t++)
    workers.push_back(std::make_unique<Worker>(shared, t, cpus[t], std::move(streams[t])));
  std::vector<std::function<void()>> bodies;
  for (auto &w : workers) bodies.push_back([&w] { w->Run(); });
  if (background_rounds > 0)
    bodies.push_back([&shared, background_rounds] {
      zfuzz::SetTracePrefix("[bg] ");
      kc_set_cpu(kc_nr_cpus() - 1);
      Background(shared, background_rounds);
    });

  if (scheduled) {
    kc::DeterministicScheduler scheduler(decisions);
    scheduler.Run(std::move(bodies));
  } else {
    std::vector<std::thread> threads;
    for (auto &body : bodies) threads.emplace_back(body);
    for (auto &t : threads) t.join();
  }

  // The oracle.
  char why[512] = "";
  ZFUZZ_CHECK(subject->Validate(why, sizeof(why)) == 0, "validator: %s", why);
  ZFUZZ_CHECK(subject->TotalPages() == 0, "pages left after every thread freed its objects");
  subject->Destroy();
  unsigned long concurrent = zpool_misuse_count(ZPOOL_MISUSE_CONCURRENT_MAP);
  ZFUZZ_CHECK(kc_warn_count() == concurrent,
              "%lu WARNs, of which %lu concurrent-map: an unexpected WARN", kc_warn_count(),
              concurrent);
  ZFUZZ_CHECK(concurrent <= static_cast<unsigned long>(shared.possible_concurrent.load()),
              "%lu concurrent-map WARNs but only %ld maps by threads sharing a CPU", concurrent,
              shared.possible_concurrent.load());
  ZFUZZ_CHECK(kc_pages_in_use() == pages_before && kc_meta_in_use() == meta_before,
              "leak: pages %lu -> %lu, metadata %lu -> %lu", pages_before, kc_pages_in_use(),
              meta_before, kc_meta_in_use());
  zfuzz::ResetKernelState();
  return 0;
}

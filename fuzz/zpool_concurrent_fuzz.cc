// SPDX-License-Identifier: GPL-2.0-only
// zpool_concurrent_fuzz: threads on one pool, in five modes chosen by the input's first choice
// (or forced with ZFUZZ_CONCURRENT_MODE=free|input|pct|scenario-input|scenario-pct):
//
// - program modes (free, input, pct): 2 to 4 threads, each with its own decoded operation stream
//   (malloc, batches of one size, map RO/WO/RW with holds, free, free every other, map all,
//   yield, compact or reclaim, and the registry: register/unregister the user driver, create,
//   use and destroy a zpool of its type), bound to virtual CPUs chosen by the input (two may
//   share one), with a background thread that compacts (zsmalloc) or reclaims with a refusing
//   evict callback (zbud);
//     free   real threads at full speed (for TSan and real races),
//     input  the DeterministicScheduler, the remaining input bytes deciding at every point,
//     pct    the DeterministicScheduler under PCT: depth 1-3, priorities and change points drawn
//            from the input;
//   oracle: every object's contents intact (each thread owns its objects and verifies them on
//   every RO/RW map and before free), the validator clean, no page or metadata leaked, no WARN
//   but concurrent-map and those only from maps of threads that share a CPU (at most one per such
//   map: the waiting thread reports once, then waits), and the registry's invariant (while a
//   zpool of the user type is alive, its driver stays registered: an unregister that returned 0
//   leaves no pool of that type);
// - scenario modes (scenario-input, scenario-pct): a scenario of the explorer's catalogue
//   (fuzz/explore) under input-driven or PCT schedules, judged by its linearizability oracle.
// In the scheduled modes each switch is interleaving coverage (fuzz/api/interleaving.h), one
// input is one interleaving, and a finding prints it and reproduces every time.
// Runs under the record policy; threads joined, pools destroyed, the user driver unregistered and
// state reset after each input.
#include <fuzzer/FuzzedDataProvider.h>

#include <atomic>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "fuzz/api/interleaving.h"
#include "fuzz/api/program.h"
#include "fuzz/api/subject.h"
#include "fuzz/api/user_driver.h"
#include "fuzz/explore/scenario.h"
#include "zpool/kernel/explore.h"
#include "zpool/kernel/percpu.h"
#include "zpool/kernel/sched.h"
#include "zpool/kernel/scheduler.h"
#include "zpool/misuse.h"
#include "zpool/zpool.h"

namespace {

using zfuzz::Kind;
using zfuzz::MapMode;
using zfuzz::Subject;
using zfuzz::TraceLine;
using zfuzz::Tracing;
using zfuzz::kUserDriverType;
using zfuzz::UserDriver;

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
      switch (in.ConsumeIntegralInRange<int>(0, 8)) {
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
        case 8:  // the registry: the user driver and zpools of its type
          Registry(in.ConsumeIntegralInRange<int>(0, 2));
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

  // 0 register, 1 unregister (worker 0 only, which owns the registration: registering twice
  // is a WARN of its own), 2 a zpool of the user type: create, one object, destroy. While the
  // pool lives the driver must stay registered (its unregister must refuse with -EBUSY).
  void Registry(int what) {
    if (index_ != 0) what = 2;
    if (what == 0 && !registered_) {
      if (Tracing()) TraceLine("zpool_register_driver(&%s_driver)", kUserDriverType);
      zpool_register_driver(&UserDriver());
      registered_ = true;
      return;
    }
    if (what == 1 && registered_) {
      int rc = zpool_unregister_driver(&UserDriver());
      if (Tracing()) TraceLine("zpool_unregister_driver(&%s_driver) = %d", kUserDriverType, rc);
      if (rc == 0) registered_ = false;
      return;
    }
    if (what != 2) return;
    struct zpool *pool = zpool_create_pool(kUserDriverType, prefix_, GFP_KERNEL, nullptr);
    if (Tracing())
      TraceLine("zp = zpool_create_pool(\"%s\") = %s", kUserDriverType, pool ? "zp" : "NULL");
    if (pool == nullptr) return;
    ZFUZZ_CHECK(zpool_has_pool(kUserDriverType),
                "thread %d: a zpool of type %s is alive but its driver is not registered (an "
                "unregister returned 0 while the pool was being created)",
                index_, kUserDriverType);
    unsigned long handle = 0;
    if (zpool_malloc(pool, 64, GFP_KERNEL, &handle) == 0) zpool_free(pool, handle);
    zpool_destroy_pool(pool);
    if (Tracing()) TraceLine("zpool_destroy_pool(zp)");
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
  bool registered_ = false;  // worker 0: the user driver is registered
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

enum Mode { kFree, kInput, kPct, kScenarioInput, kScenarioPct, kModes };
const char *const kModeNames[kModes] = {"free", "input", "pct", "scenario-input",
                                        "scenario-pct"};
int g_forced_mode = -1;  // ZFUZZ_CONCURRENT_MODE

std::vector<std::unique_ptr<zfuzz::explore::Runner>> &Runners() {
  static std::vector<std::unique_ptr<zfuzz::explore::Runner>> runners;
  return runners;
}

// A scenario of the explorer's catalogue under the input's schedule.
void RunScenario(FuzzedDataProvider &in, bool pct) {
  const auto &catalogue = zfuzz::explore::Catalogue();
  size_t index = in.ConsumeIntegralInRange<size_t>(0, catalogue.size() - 1);
  const zfuzz::explore::Scenario &scenario = catalogue[index];
  std::unique_ptr<kc::ScheduleStrategy> strategy;
  std::string described;
  if (pct) {
    int depth = in.ConsumeIntegralInRange<int>(1, 3);
    uint64_t steps = in.ConsumeIntegralInRange<uint64_t>(8, 1024);
    uint64_t seed = in.ConsumeIntegral<uint64_t>();
    auto p = std::make_unique<kc::PctStrategy>(kc::PctStrategy::FromSeed(
        seed, static_cast<int>(scenario.threads.size()), depth, steps));
    described = p->Describe();
    strategy = std::move(p);
  } else {
    std::vector<uint8_t> decisions = in.ConsumeRemainingBytes<uint8_t>();
    strategy = std::make_unique<kc::InputStrategy>(decisions);
    described = std::to_string(decisions.size()) + " decision bytes";
  }
  if (Tracing())
    TraceLine("/* scenario %s (%s), %s schedule: %s */", scenario.name.c_str(),
              scenario.covers.c_str(), pct ? "PCT" : "input", described.c_str());
  kc::ExecutionReport r = Runners()[index]->Execute(*strategy, kc::ExploreSchedulerOptions());
  ZFUZZ_CHECK(r.failure.empty(), "scenario %s: %s\n== interleaving (%llu preemptions) ==\n%s"
              "schedule: %s",
              scenario.name.c_str(), r.failure.c_str(),
              static_cast<unsigned long long>(r.preemptions), r.interleaving.c_str(),
              kc::FormatSchedule(r.choices).c_str());
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int *, char ***) {
  zfuzz::explore::InitializeExplorer();  // the harness set-up, and quiet destroy reports
  zfuzz::InstallInterleavingCoverage();
  if (const char *mode = getenv("ZFUZZ_CONCURRENT_MODE"); mode != nullptr && *mode) {
    for (int m = 0; m < kModes; m++)
      if (strcmp(mode, kModeNames[m]) == 0) g_forced_mode = m;
    if (g_forced_mode < 0) {
      fprintf(stderr, "zpool_concurrent_fuzz: ZFUZZ_CONCURRENT_MODE=%s is not one of free, input, "
                      "pct, scenario-input, scenario-pct\n", mode);
      exit(2);
    }
  }
  // Every scenario's sequential outcomes now: no input then runs code another did not. (Not
  // traced: explain and repro show the input's own program.)
  const bool tracing = Tracing();
  zfuzz::SetTracing(false);
  for (const auto &scenario : zfuzz::explore::Catalogue()) {
    Runners().push_back(std::make_unique<zfuzz::explore::Runner>(scenario));
    Runners().back()->Prepare();
  }
  zfuzz::SetTracing(tracing);
  zfuzz::ResetKernelState();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  FuzzedDataProvider in(data, size);
  zfuzz::ResetKernelState();
  int mode = in.ConsumeIntegralInRange<int>(0, kModes - 1);
  if (g_forced_mode >= 0) mode = g_forced_mode;
  if (mode == kScenarioInput || mode == kScenarioPct) {
    RunScenario(in, mode == kScenarioPct);
    zfuzz::ResetKernelState();
    return 0;
  }
  const unsigned long pages_before = kc_pages_in_use(), meta_before = kc_meta_in_use();
  Kind kind = kKinds[in.ConsumeIntegralInRange<size_t>(0, 3)];
  const bool scheduled = mode != kFree;
  int nthreads = in.ConsumeIntegralInRange<int>(2, kMaxThreads);
  int cpus[kMaxThreads];
  for (int t = 0; t < nthreads; t++) cpus[t] = in.ConsumeIntegralInRange<int>(0, kc_nr_cpus() - 1);
  int background_rounds = in.ConsumeIntegralInRange<int>(0, 16);
  int pct_depth = 0;
  uint64_t pct_steps = 0, pct_seed = 0;
  if (mode == kPct) {
    pct_depth = in.ConsumeIntegralInRange<int>(1, 3);
    pct_steps = in.ConsumeIntegralInRange<uint64_t>(16, 4096);
    pct_seed = in.ConsumeIntegral<uint64_t>();
  }
  std::vector<std::vector<uint8_t>> streams;
  for (int t = 0; t < nthreads; t++) {
    size_t length = in.ConsumeIntegralInRange<size_t>(0, 96);
    streams.push_back(in.ConsumeBytes<uint8_t>(length));
  }
  std::vector<uint8_t> decisions = in.ConsumeRemainingBytes<uint8_t>();

  std::unique_ptr<Subject> subject = zfuzz::MakeSubject(kind, 0);
  if (Tracing())
    TraceLine("/* %s, %s, %d threads, background %d rounds */", zfuzz::KindName(kind),
              kModeNames[mode], nthreads, background_rounds);
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

  if (mode == kInput) {
    kc::DeterministicScheduler scheduler(decisions);
    scheduler.Run(std::move(bodies));
  } else if (mode == kPct) {
    kc::PctStrategy pct = kc::PctStrategy::FromSeed(pct_seed, static_cast<int>(bodies.size()),
                                                    pct_depth, pct_steps);
    if (Tracing()) TraceLine("/* PCT %s over %llu steps */", pct.Describe().c_str(),
                             static_cast<unsigned long long>(pct_steps));
    kc::DeterministicScheduler scheduler(pct, {});
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
  const char *registry = zfuzz::ResetUserDriver();
  ZFUZZ_CHECK(*registry == '\0', "%s", registry);
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

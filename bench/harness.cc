// SPDX-License-Identifier: GPL-2.0-only
// The allocator benchmark's phases, the same for every contender (contender.h). One process run
// measures one contender once; tools/zfuzz bench runs every contender several times, interleaved,
// and takes medians.
//
//   alloc_bench_<x> --workload FILE --contender NAME [--algo lz4|zstd] [--seed S]
//                   [--hardening cheap|full] [--pages K] [--phases LIST] [--inner R]
//                   [--pin CPU]
//   alloc_bench_<x> --page-fault-probe | --list
//
// --pages K uses K of the workload's pages, evenly spaced (every category keeps its share).
// --phases: a comma-separated subset of store,load,refill,free,steady,churn,threads (default:
// all). Storing everything and verifying it always happen; an unlisted phase is skipped or, for
// free, done untimed.
// --inner R: load, refill (with free_half) and steady run R times in the process, churn's four
// rounds are timed apart. Each phase is timed in chunks of 256 operations; its figure
// (ops_per_sec) sums each chunk's fastest pass (PhaseTimer), beside the fastest and the median
// whole pass. store (fresh memory) and free (all) happen once. A run without free and steady
// (a density run) goes from store straight to churn, without emptying the pool.
// --pin CPU: the main thread runs on that (real) CPU only, the two workers of the threads phase
// on CPU and the next one: fewer migrations, and every contender measured on the same CPU.
//
// Prints one JSON object on stdout. Exit 0; 1 if anything failed (a store, a verification, a
// validator, a WARN), with the cause on stderr; 2 on bad arguments.
//
// Phases (n = the workload's pages whose compressed size the contender accepts):
//   store      store all n (malloc + WO map + copy + unmap) into fresh memory      timed
//              -> density "alloc": compressed bytes / memory used
//   load       read all back in random order (RO map + copy + unmap)              timed
//   verify     read all back, decompress, compare with the original page          checked
//   refill     free a random half (free_half), store it again (memory in use)    timed
//   verify     again (all n)                                                      checked
//   free       free all in random order                                           timed
//   steady     n/2 live, then n operations: store or free (random live), 50/50    timed
//              (R times: R * n operations)
//   churn      store all; four times replace a random half with other pages;      timed
//              free a random half -> density "churn" (live bytes / memory),
//              then compaction (zs_compact / malloc_trim / purge / mi_collect)   timed
//              -> density "compacted"; verify every live object; free all
//   threads    2 threads on virtual CPUs 0 and 1, one pool: each stores its half   timed
//              (fresh memory), loads it (random order), frees a random half of it
//              and stores it again (refill), verifies, frees all; wall time per phase
//
// "store" grows the memory, so it includes the OS's page faults (--page-fault-probe prints
// their cost: about 16 us a page on a VM); "refill" stores into memory already in use, the
// allocator's own cost.
#include <stdio.h>
#include <stdlib.h>
#include <sched.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <barrier>
#include <chrono>
#include <cmath>
#include <limits>
#include <string>
#include <thread>
#include <vector>

#include "bench/contender.h"
#include "bench/workload.h"

namespace bench {

double RssAnonBytes() {
  FILE *f = fopen("/proc/self/status", "r");
  if (f == nullptr) return -1;
  char line[256];
  double kb = -1;
  while (fgets(line, sizeof(line), f) != nullptr) {
    if (strncmp(line, "RssAnon:", 8) == 0) {
      kb = strtod(line + 8, nullptr);
      break;
    }
  }
  fclose(f);
  return kb < 0 ? -1 : kb * 1024.0;
}

namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

// Keeps the compiler from dropping a copy whose destination is never read.
inline void Escape(void *p) { asm volatile("" : : "g"(p) : "memory"); }

double PageFaultMicros();

// Pins the calling thread to real CPU `cpu` modulo the CPUs online (nothing for cpu < 0).
void PinTo(int cpu) {
  if (cpu < 0) return;
  long online = sysconf(_SC_NPROCESSORS_ONLN);
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(static_cast<int>(cpu % (online > 0 ? online : 1)), &set);
  if (sched_setaffinity(0, sizeof(set), &set) != 0)
    fprintf(stderr, "alloc_bench: warning: cannot pin to CPU %d: %s\n", cpu, strerror(errno));
}

[[noreturn]] void Usage(const char *why) {
  fprintf(stderr, "alloc_bench: %s\n", why);
  fprintf(stderr,
          "usage: alloc_bench --workload FILE --contender NAME [--algo lz4|zstd] [--seed S] "
          "[--hardening cheap|full] [--pages K] [--phases LIST] [--inner R] [--pin CPU]\n");
  exit(2);
}

[[noreturn]] void Fail(const std::string &why) {
  fprintf(stderr, "alloc_bench: FAILED: %s\n", why.c_str());
  exit(1);
}

struct Args {
  std::string workload;
  std::string contender;
  int algo = kLz4;
  uint64_t seed = 1;
  std::string hardening = "cheap";
  long pages = 0;  // 0: all
  int inner = 3;    // timings of each repeatable phase in this process
  int pin = -1;     // real CPU for the main thread (the 2 workers: pin and the next), -1: none
  std::vector<std::string> phases = {"store", "load",  "refill", "free",
                                     "steady", "churn", "threads"};
  bool Has(const char *phase) const {
    return std::find(phases.begin(), phases.end(), phase) != phases.end();
  }
};

Args ParseArgs(int argc, char **argv) {
  Args a;
  for (int i = 1; i < argc; i++) {
    std::string flag = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) Usage((flag + " needs a value").c_str());
      return argv[++i];
    };
    if (flag == "--workload") {
      a.workload = value();
    } else if (flag == "--contender") {
      a.contender = value();
    } else if (flag == "--algo") {
      std::string v = value();
      a.algo = AlgoFromName(v.c_str());
      if (a.algo < 0) Usage("--algo: lz4 or zstd");
    } else if (flag == "--seed") {
      a.seed = strtoull(value().c_str(), nullptr, 10);
    } else if (flag == "--hardening") {
      a.hardening = value();
      if (a.hardening != "cheap" && a.hardening != "full") Usage("--hardening: cheap or full");
    } else if (flag == "--pages") {
      std::string v = value();
      char *end = nullptr;
      a.pages = strtol(v.c_str(), &end, 10);
      if (end == v.c_str() || *end != '\0' || a.pages < 4) Usage("--pages: a number >= 4");
    } else if (flag == "--pin") {
      std::string v = value();
      char *end = nullptr;
      long cpu = strtol(v.c_str(), &end, 10);
      if (end == v.c_str() || *end != '\0' || cpu < -1 || cpu >= CPU_SETSIZE)
        Usage("--pin: a CPU number, or -1");
      a.pin = static_cast<int>(cpu);
    } else if (flag == "--inner") {
      std::string v = value();
      char *end = nullptr;
      long k = strtol(v.c_str(), &end, 10);
      if (end == v.c_str() || *end != '\0' || k < 1 || k > 1000) Usage("--inner: 1..1000");
      a.inner = static_cast<int>(k);
    } else if (flag == "--phases") {
      static const char *const kKnown[] = {"store", "load",  "refill", "free",
                                           "steady", "churn", "threads"};
      a.phases.clear();
      std::string v = value() + ",";
      for (size_t start = 0, comma; (comma = v.find(',', start)) != std::string::npos;
           start = comma + 1) {
        std::string phase = v.substr(start, comma - start);
        if (phase.empty()) continue;
        if (std::find(std::begin(kKnown), std::end(kKnown), phase) == std::end(kKnown))
          Usage(("--phases: unknown phase " + phase).c_str());
        a.phases.push_back(phase);
      }
    } else if (flag == "--page-fault-probe") {
      printf("{\"page_fault_us\": %.2f}\n", PageFaultMicros());
      exit(0);
    } else if (flag == "--list") {
      for (const std::string &name : ContenderNames()) printf("%s\n", name.c_str());
      exit(0);
    } else {
      Usage(("unknown flag " + flag).c_str());
    }
  }
  if (a.workload.empty()) Usage("--workload is required");
  if (a.contender.empty()) Usage("--contender is required");
  return a;
}

// A small JSON object writer (numbers and strings; the harness's output is flat but for the
// "phases" and "density" sub-objects).
class Json {
 public:
  void Open(const char *key = nullptr) {
    Sep();
    if (key) Key(key);
    out_ += "{";
    first_ = true;
  }
  void Close() {
    out_ += "}";
    first_ = false;
  }
  void Num(const char *key, double v) {
    Sep();
    Key(key);
    char buf[64];
    if (std::isfinite(v)) {
      snprintf(buf, sizeof(buf), "%.6g", v);
    } else {
      snprintf(buf, sizeof(buf), "null");
    }
    out_ += buf;
  }
  void Str(const char *key, const std::string &v) {
    Sep();
    Key(key);
    out_ += '"';
    for (char c : v) {
      if (c == '"' || c == '\\') {
        out_ += '\\';
        out_ += c;
      } else if (static_cast<unsigned char>(c) < 0x20) {
        out_ += ' ';
      } else {
        out_ += c;
      }
    }
    out_ += '"';
  }
  void Bool(const char *key, bool v) {
    Sep();
    Key(key);
    out_ += v ? "true" : "false";
  }
  const std::string &str() const { return out_; }

 private:
  void Sep() {
    if (!first_) out_ += ", ";
    first_ = false;
  }
  void Key(const char *key) {
    out_ += '"';
    out_ += key;
    out_ += "\": ";
  }
  std::string out_;
  bool first_ = true;
};

struct Obj {
  uintptr_t handle = 0;
  uint32_t page = 0;  // workload page stored in this slot
  bool live = false;
};

// Times a phase of `ops` operations over one or more passes, in chunks of kChunk operations.
// On a shared machine a pass is often preempted; a chunk (a fraction of a millisecond) much
// less often. The phase's figure is the sum over chunks of each chunk's fastest pass: what the
// operations cost undisturbed. The fastest and the median whole pass are kept beside it.
class PhaseTimer {
 public:
  static constexpr size_t kChunk = 256;
  explicit PhaseTimer(size_t ops)
      : ops_(ops), best_((ops + kChunk - 1) / kChunk, std::numeric_limits<double>::infinity()) {}
  void Begin() {
    done_ = 0;
    chunk_ = 0;
    pass_start_ = last_ = Clock::now();
  }
  // After each operation of the pass.
  void Op() {
    if (++done_ % kChunk == 0 || done_ == ops_) {
      const auto now = Clock::now();
      if (chunk_ < best_.size()) best_[chunk_] = std::min(best_[chunk_], Seconds(last_, now));
      chunk_++;
      last_ = now;
    }
  }
  void End() { passes_.push_back(Seconds(pass_start_, Clock::now())); }
  // `ops_per_op`: operations each Op() stands for (a churn replacement is a free and a store).
  void Report(Json &j, const char *key, double ops_per_op = 1) {
    double chunked = 0;
    for (double b : best_) chunked += std::isfinite(b) ? b : 0;
    std::vector<double> p = passes_;
    std::sort(p.begin(), p.end());
    const double ops = static_cast<double>(ops_) * ops_per_op;
    const double mid = p.empty() ? NAN
                       : p.size() % 2 ? p[p.size() / 2]
                                      : (p[p.size() / 2 - 1] + p[p.size() / 2]) / 2;
    j.Open(key);
    j.Num("ops", ops);
    j.Num("passes", static_cast<double>(p.size()));
    j.Num("seconds", chunked);
    j.Num("ops_per_sec", chunked > 0 ? ops / chunked : NAN);
    j.Num("ops_per_sec_best_pass", p.empty() ? NAN : ops / p.front());
    j.Num("ops_per_sec_median_pass", ops / mid);
    j.Close();
  }

 private:
  size_t ops_;
  std::vector<double> best_;
  std::vector<double> passes_;
  size_t done_ = 0, chunk_ = 0;
  Clock::time_point pass_start_, last_;
};

class Bench {
 public:
  Bench(const Args &args, const Workload &w, Contender *c)
      : args_(args), w_(w), c_(c), rng_(args.seed * 0x9e3779b97f4a7c15ULL + 17) {}

  int Run();

 private:
  uint32_t Len(uint32_t page) const { return w_.len(args_.algo, page); }
  void StoreSlot(size_t slot, uint32_t page) {
    Obj &o = objs_[slot];
    if (!c_->Store(w_.blob(args_.algo, page), Len(page), &o.handle)) {
      Fail(c_->Name() + ": store of " + std::to_string(Len(page)) + " bytes failed (slot " +
           std::to_string(slot) + ")");
    }
    o.page = page;
    o.live = true;
    live_bytes_ += Len(page);
  }
  void FreeSlot(size_t slot) {
    Obj &o = objs_[slot];
    c_->Free(o.handle);
    o.live = false;
    live_bytes_ -= Len(o.page);
  }
  void VerifySlot(Verifier &v, size_t slot, uint8_t *scratch) {
    const Obj &o = objs_[slot];
    c_->Load(o.handle, scratch, Len(o.page));
    if (!v.Check(w_, args_.algo, o.page, scratch, Len(o.page))) {
      Fail(c_->Name() + ": verification of slot " + std::to_string(slot) + " (page " +
           std::to_string(o.page) + ", " + std::to_string(Len(o.page)) +
           " bytes) failed: the object read back does not decompress to the original page");
    }
    verified_++;
  }
  void VerifyAllLive(const char *when) {
    for (size_t s = 0; s < objs_.size(); s++) {
      if (objs_[s].live) VerifySlot(verifier_, s, scratch_);
    }
    std::string why = c_->Validate();
    if (!why.empty()) Fail(c_->Name() + ": validator after " + when + ": " + why);
  }
  void Permute(std::vector<uint32_t> *perm) {
    for (uint32_t i = 0; i < perm->size(); i++) (*perm)[i] = i;
    rng_.Shuffle(perm->data(), perm->size());
  }
  void Density(const char *key, Json &j) {
    MemoryFigures m = c_->Memory();
    double rss = RssAnonBytes() - rss0_;
    j.Open(key);
    j.Num("live_bytes", static_cast<double>(live_bytes_));
    j.Num("used_bytes", m.used);
    j.Num("stat_bytes", m.stat);
    j.Num("rss_bytes", rss);
    j.Num("overhead", m.used > 0 ? m.used / static_cast<double>(live_bytes_) - 1.0 : NAN);
    j.Num("density", m.used > 0 ? static_cast<double>(live_bytes_) / m.used : NAN);
    j.Close();
  }
  void Steady(Json &p, Json &d, Json &j);
  // `stored`: every slot already holds its page (else the pool is empty).
  void Churn(Json &p, Json &d, Json &j, bool stored);
  void Threads(Json &p);

  const Args &args_;
  const Workload &w_;
  Contender *c_;
  Rng rng_;
  Verifier verifier_;
  std::vector<uint32_t> pages_;  // eligible workload pages
  std::vector<Obj> objs_;
  std::vector<uint32_t> perm_;
  std::vector<uint32_t> live_, free_slots_;  // steady state
  uint64_t live_bytes_ = 0;
  unsigned long verified_ = 0;
  double rss0_ = 0;
  alignas(64) uint8_t scratch_[1 << 16];
};

int Bench::Run() {
  const size_t max = c_->MaxSize();
  unsigned long skipped = 0;
  uint64_t eligible_bytes = 0;
  const uint32_t total = w_.n_pages();
  const uint32_t want =
      args_.pages > 0 && args_.pages < total ? static_cast<uint32_t>(args_.pages) : total;
  for (uint32_t k = 0; k < want; k++) {
    // Evenly spaced: the workload is stored category by category.
    const uint32_t i = static_cast<uint32_t>(uint64_t{k} * total / want);
    if (Len(i) <= max) {
      pages_.push_back(i);
      eligible_bytes += Len(i);
    } else {
      skipped++;
    }
  }
  const size_t n = pages_.size();
  if (n < 4) Fail("fewer than 4 pages in the workload");
  // Everything the harness allocates, allocated before the baselines.
  objs_.assign(n, Obj{});
  perm_.assign(n, 0);
  live_.reserve(n);
  free_slots_.reserve(n);
  const size_t half = n / 2;
  PhaseTimer store(n), load(n), free_half(half), refill(half), free_all(n);

  c_->SetHardening(args_.hardening);
  PinTo(args_.pin);
  c_->BindThread(0);
  const auto t_run = Clock::now();
  rss0_ = RssAnonBytes();
  if (!c_->Create()) Fail(c_->Name() + ": pool creation failed");

  Json j;
  j.Open();
  j.Str("contender", c_->Name());
  j.Str("build", c_->BuildInfo());
  j.Str("memory_method", c_->MemoryMethod());
  j.Str("hardening", c_->Hardening());
  j.Str("algo", AlgoName(args_.algo));
  j.Num("seed", static_cast<double>(args_.seed));
  j.Num("page_size", static_cast<double>(BuildPageSize()));
  j.Num("workload_pages", w_.n_pages());
  j.Num("pages_used", want);
  j.Num("objects", static_cast<double>(n));
  j.Num("skipped_too_large", static_cast<double>(skipped));
  j.Num("max_size", max == SIZE_MAX ? -1.0 : static_cast<double>(max));
  j.Num("stored_bytes", static_cast<double>(eligible_bytes));
  j.Num("inner", args_.inner);

  Json p;  // phases
  p.Open("phases");
  Json d;  // densities
  d.Open("density");

  // ---- store all (fresh memory) ------------------------------------------------------------
  store.Begin();
  for (size_t s = 0; s < n; s++) {
    StoreSlot(s, pages_[s]);
    store.Op();
  }
  store.End();
  store.Report(p, "store");
  Density("alloc", d);

  // ---- load all, random order --------------------------------------------------------------
  if (args_.Has("load")) {
    for (int r = 0; r < args_.inner; r++) {
      Permute(&perm_);
      load.Begin();
      for (size_t k = 0; k < n; k++) {
        const Obj &o = objs_[perm_[k]];
        c_->Load(o.handle, scratch_, Len(o.page));
        Escape(scratch_);
        load.Op();
      }
      load.End();
    }
    load.Report(p, "load");
  }
  VerifyAllLive("store");

  // ---- refill: free a random half, store it again ------------------------------------------
  if (args_.Has("refill")) {
    for (int r = 0; r < args_.inner; r++) {
      Permute(&perm_);
      free_half.Begin();
      for (size_t k = 0; k < half; k++) {
        FreeSlot(perm_[k]);
        free_half.Op();
      }
      free_half.End();
      refill.Begin();
      for (size_t k = 0; k < half; k++) {
        StoreSlot(perm_[k], pages_[perm_[k]]);
        refill.Op();
      }
      refill.End();
    }
    free_half.Report(p, "free_half");
    refill.Report(p, "refill");
    VerifyAllLive("refill");
  }

  // ---- free all, random order --------------------------------------------------------------
  // A density-only run (neither free nor steady asked for) goes straight on to the churn with
  // everything still stored: the same state, without emptying and refilling the pool.
  const bool keep = !args_.Has("free") && !args_.Has("steady") && args_.Has("churn");
  if (!keep) {
    Permute(&perm_);
    free_all.Begin();
    for (size_t k = 0; k < n; k++) {
      FreeSlot(perm_[k]);
      free_all.Op();
    }
    free_all.End();
    if (args_.Has("free")) free_all.Report(p, "free");
    MemoryFigures m = c_->Memory();
    j.Num("used_after_free_all", m.used);
  }

  if (args_.Has("steady")) Steady(p, d, j);

  if (args_.Has("churn")) Churn(p, d, j, /*stored=*/keep);

  // ---- two threads -----------------------------------------------------------------------------
  if (args_.Has("threads")) Threads(p);

  p.Close();
  d.Close();
  c_->Destroy();
  j.Num("verified_objects", static_cast<double>(verified_));
  j.Num("warnings", static_cast<double>(c_->Warnings()));
  j.Num("run_seconds", Seconds(t_run, Clock::now()));
  // j's object is still open: close it by hand around the two sub-objects.
  std::string out = j.str();
  out += ", " + p.str() + ", " + d.str() + "}";
  printf("%s\n", out.c_str());
  if (c_->Warnings() != 0) {
    fprintf(stderr, "alloc_bench: FAILED: %s: %lu WARN(s) during the benchmark\n",
            c_->Name().c_str(), c_->Warnings());
    return 1;
  }
  return 0;
}

// Steady state: n/2 live objects, then `inner` passes of n operations, each a store (of the
// next workload page) or a free (of a random live object), 50/50.
void Bench::Steady(Json &p, Json &d, Json &j) {
  const size_t n = pages_.size();
  const size_t half = n / 2;
  // Reserved before the memory baselines (Run).
  std::vector<uint32_t> &live = live_, &free_slots = free_slots_;
  size_t cursor = 0;
  live.clear();
  free_slots.clear();
  for (size_t s = n; s-- > 0;) free_slots.push_back(static_cast<uint32_t>(s));
  auto store_next = [&]() {
    uint32_t slot = free_slots.back();
    free_slots.pop_back();
    StoreSlot(slot, pages_[cursor++ % n]);
    live.push_back(slot);
  };
  auto free_random = [&]() {
    size_t k = rng_.Below(live.size());
    uint32_t slot = live[k];
    live[k] = live.back();
    live.pop_back();
    FreeSlot(slot);
    free_slots.push_back(slot);
  };
  while (live.size() < half) store_next();
  unsigned long steady_stores = 0, steady_frees = 0;
  PhaseTimer timer(n);
  for (int r = 0; r < args_.inner; r++) {
    timer.Begin();
    for (size_t k = 0; k < n; k++) {
      bool do_free = !free_slots.empty() ? (rng_.Next() & 1) != 0 : true;
      if (live.empty()) do_free = false;
      if (do_free) {
        free_random();
        steady_frees++;
      } else {
        store_next();
        steady_stores++;
      }
      timer.Op();
    }
    timer.End();
  }
  timer.Report(p, "steady");
  j.Num("steady_stores", static_cast<double>(steady_stores));
  j.Num("steady_frees", static_cast<double>(steady_frees));
  Density("steady", d);
  VerifyAllLive("steady");
  for (uint32_t slot : live) FreeSlot(slot);
  live.clear();
}

// Churn: store all (unless stored); four rounds that each replace a random half with other
// pages (a free and a store per object); free a random half; then compaction.
void Bench::Churn(Json &p, Json &d, Json &j, bool stored) {
  const size_t n = pages_.size();
  const size_t half = n / 2;
  if (!stored) {
    for (size_t s = 0; s < n; s++) StoreSlot(s, pages_[s]);
  }
  size_t cursor = rng_.Below(n);  // replacements: other pages, so other sizes
  PhaseTimer timer(half);
  for (int round = 0; round < 4; round++) {
    Permute(&perm_);
    timer.Begin();
    for (size_t k = 0; k < half; k++) {
      FreeSlot(perm_[k]);
      StoreSlot(perm_[k], pages_[cursor++ % n]);
      timer.Op();
    }
    timer.End();
  }
  timer.Report(p, "churn", 2.0);  // ops: one free + one store per replaced object
  Permute(&perm_);
  for (size_t k = 0; k < half; k++) FreeSlot(perm_[k]);
  Density("churn", d);
  bool compact_supported = false;
  const auto t0 = Clock::now();
  long compacted = c_->Compact(&compact_supported);
  const auto t1 = Clock::now();
  p.Open("compact");
  p.Num("seconds", Seconds(t0, t1));
  p.Bool("supported", compact_supported);
  p.Num("pages_freed", static_cast<double>(compacted));
  p.Close();
  if (compact_supported) Density("compacted", d);
  VerifyAllLive("compaction");
  for (size_t s = 0; s < n; s++) {
    if (objs_[s].live) FreeSlot(s);
  }
  MemoryFigures m = c_->Memory();
  j.Num("used_after_churn_free_all", m.used);
}

// Two threads on virtual CPUs 0 and 1, one pool, each with its half of the objects: store
// (fresh memory), `inner` passes of load, `inner` passes of free-a-random-half + refill, verify,
// free all. Each worker stamps the start and end of its share of each phase; a phase's wall time
// is from the earlier start to the later end (the workers start together at a barrier). For the
// repeated phases, the fastest pass.
void Bench::Threads(Json &p) {
  const size_t n = pages_.size();
  const int inner = args_.inner;
  // Phase slots: 0 store, 1..inner loads, then (free half, refill) pairs, then the final free.
  const int n_slots = 1 + inner + 2 * inner + 1;
  std::vector<Clock::time_point> begin[2], end[2];
  std::barrier sync(2);
  std::string failure[2];
  auto worker = [&](int t) {
    PinTo(args_.pin < 0 ? -1 : args_.pin + t);
    c_->BindThread(t);
    Verifier verifier;
    std::vector<uint8_t> scratch(1 << 16);
    std::vector<uint32_t> mine;
    for (size_t s = t; s < n; s += 2) mine.push_back(static_cast<uint32_t>(s));
    Rng rng(args_.seed * 31 + t);
    std::vector<uintptr_t> handles(n);
    begin[t].reserve(n_slots);
    end[t].reserve(n_slots);
    auto store = [&](uint32_t s) {
      if (!c_->Store(w_.blob(args_.algo, pages_[s]), Len(pages_[s]), &handles[s]) &&
          failure[t].empty())
        failure[t] = "store failed";
    };
    auto phase = [&](auto &&body) {
      sync.arrive_and_wait();
      begin[t].push_back(Clock::now());
      body();
      end[t].push_back(Clock::now());
    };
    const size_t half = mine.size() / 2;
    phase([&] {
      for (uint32_t s : mine) store(s);
    });
    for (int r = 0; r < inner; r++) {
      rng.Shuffle(mine.data(), mine.size());
      phase([&] {
        for (uint32_t s : mine) {
          c_->Load(handles[s], scratch.data(), Len(pages_[s]));
          Escape(scratch.data());
        }
      });
    }
    for (int r = 0; r < inner; r++) {
      rng.Shuffle(mine.data(), mine.size());
      phase([&] {
        for (size_t k = 0; k < half; k++) c_->Free(handles[mine[k]]);
      });
      phase([&] {
        for (size_t k = 0; k < half; k++) store(mine[k]);
      });
    }
    sync.arrive_and_wait();
    for (uint32_t s : mine) {  // untimed
      c_->Load(handles[s], scratch.data(), Len(pages_[s]));
      if (!verifier.Check(w_, args_.algo, pages_[s], scratch.data(), Len(pages_[s])) &&
          failure[t].empty())
        failure[t] = "verification of page " + std::to_string(pages_[s]) + " failed";
    }
    rng.Shuffle(mine.data(), mine.size());
    phase([&] {
      for (uint32_t s : mine) c_->Free(handles[s]);
    });
  };
  std::thread a(worker, 0), b(worker, 1);
  a.join();
  b.join();
  for (const std::string &f : failure) {
    if (!f.empty()) Fail(c_->Name() + ": 2 threads: " + f);
  }
  verified_ += n;
  auto wall = [&](int slot) {
    return Seconds(std::min(begin[0][slot], begin[1][slot]), std::max(end[0][slot], end[1][slot]));
  };
  auto report = [&](const char *key, std::vector<double> passes, double ops) {
    std::sort(passes.begin(), passes.end());
    p.Open(key);
    p.Num("ops", ops);
    p.Num("passes", static_cast<double>(passes.size()));
    p.Num("seconds", passes.front());
    p.Num("ops_per_sec", ops / passes.front());
    p.Num("ops_per_sec_median_pass", ops / passes[passes.size() / 2]);
    p.Close();
  };
  std::vector<double> loads, frees, refills;
  int slot = 1;
  for (int r = 0; r < inner; r++) loads.push_back(wall(slot++));
  for (int r = 0; r < inner; r++) {
    frees.push_back(wall(slot++));
    refills.push_back(wall(slot++));
  }
  const size_t refilled = (n - n / 2) / 2 + (n / 2) / 2;  // both threads' halves
  report("store_2t", {wall(0)}, n);
  report("load_2t", loads, n);
  report("free_half_2t", frees, refilled);
  report("refill_2t", refills, refilled);
  report("free_2t", {wall(slot)}, n);
}

// The cost of one anonymous page fault on this machine (fresh memory touched once), in
// microseconds: what every contender pays per page when its memory grows.
double PageFaultMicros() {
  const size_t size = 64UL << 20;
  const long ps = sysconf(_SC_PAGESIZE);
  std::vector<double> v;
  for (int r = 0; r < 3; r++) {
    void *mem = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) return -1;
    auto t0 = Clock::now();
    for (size_t off = 0; off < size; off += ps) static_cast<volatile char *>(mem)[off] = 1;
    auto t1 = Clock::now();
    munmap(mem, size);
    v.push_back(Seconds(t0, t1) * 1e6 / (size / ps));
  }
  std::sort(v.begin(), v.end());
  return v[1];
}

}  // namespace
}  // namespace bench

int main(int argc, char **argv) {
  bench::Args args = bench::ParseArgs(argc, argv);
  std::unique_ptr<bench::Contender> c = bench::MakeContender(args.contender);
  if (c == nullptr) {
    std::string known;
    for (const std::string &name : bench::ContenderNames()) known += " " + name;
    bench::Usage(("unknown contender " + args.contender + " (this binary has:" + known + ")")
                     .c_str());
  }
  bench::Workload w;
  std::string error;
  if (!w.Open(args.workload.c_str(), static_cast<uint32_t>(bench::BuildPageSize()), &error)) {
    fprintf(stderr, "alloc_bench: %s\n", error.c_str());
    return 1;
  }
  auto *b = new bench::Bench(args, w, c.get());  // large (scratch buffer): not on the stack
  int rc = b->Run();
  delete b;
  return rc;
}

// SPDX-License-Identifier: GPL-2.0-only
// Scenario executions and the linearizability oracle (scenario.h).
#include "fuzz/explore/scenario.h"

#include <stdio.h>
#include <string.h>

#include <algorithm>
#include <functional>
#include <mutex>
#include <numeric>

#include "fuzz/api/program.h"
#include "fuzz/api/user_driver.h"
#include "zpool/kernel/kernel.h"
#include "zpool/kernel/lock.h"
#include "zpool/kernel/module.h"
#include "zpool/misuse.h"
#include "zpool/zpool.h"
#include "zpool/zsmalloc.h"

namespace zfuzz::explore {

namespace {

constexpr gfp_t kGfp = GFP_KERNEL | __GFP_NOWARN;
constexpr int kMaxVersions = 8;  // versions a scenario's writes can reach

uint64_t Mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

// The bytes of version `v` of object `id`.
void Fill(uint8_t *p, size_t size, int id, int v) {
  for (size_t off = 0; off < size; off += 8) {
    uint64_t w = Mix((uint64_t(id) << 32) ^ (uint64_t(v) << 16) ^ (off / 8));
    memcpy(p + off, &w, std::min<size_t>(8, size - off));
  }
}

bool Holds(const uint8_t *p, size_t size, int id, int v) {
  for (size_t off = 0; off < size; off += 8) {
    uint64_t w = Mix((uint64_t(id) << 32) ^ (uint64_t(v) << 16) ^ (off / 8));
    if (memcmp(p + off, &w, std::min<size_t>(8, size - off)) != 0) return false;
  }
  return true;
}

// Which version the bytes are: "v<n>", or "garbage".
std::string VersionOf(const uint8_t *p, size_t size, int id, int expected) {
  if (Holds(p, size, id, expected)) return "v" + std::to_string(expected);
  for (int v = 0; v < kMaxVersions; v++)
    if (v != expected && Holds(p, size, id, v)) return "v" + std::to_string(v);
  return "garbage";
}

bool IsZsmalloc(Kind k) { return k == Kind::kZsmalloc || k == Kind::kZpoolZsmalloc; }

}  // namespace

const char *OpName(OpKind kind) {
  switch (kind) {
    case OpKind::kMalloc: return "malloc";
    case OpKind::kFree: return "free";
    case OpKind::kMapRO: return "map-ro";
    case OpKind::kMapWO: return "map-wo";
    case OpKind::kMapRW: return "map-rw";
    case OpKind::kCompact: return "compact";
    case OpKind::kReclaim: return "reclaim";
    case OpKind::kDestroy: return "destroy";
    case OpKind::kZpoolCreate: return "zpool-create";
    case OpKind::kZpoolDestroy: return "zpool-destroy";
    case OpKind::kRegister: return "register";
    case OpKind::kUnregister: return "unregister";
    case OpKind::kHasPool: return "has-pool";
  }
  return "?";
}

const char *PrepName(Prep prep) {
  switch (prep) {
    case Prep::kEmpty: return "empty";
    case Prep::kFragmented: return "fragmented";
    case Prep::kSpanning: return "spanning";
    case Prep::kHuge: return "huge";
    case Prep::kBuddies: return "buddies";
    case Prep::kRegistered: return "registered";
    case Prep::kRegisteredInUse: return "registered-in-use";
  }
  return "?";
}

std::string Outcome::Describe(const Scenario &s) const {
  std::string out;
  size_t i = 0;
  for (size_t t = 0; t < s.threads.size(); t++) {
    out += "t" + std::to_string(t) + ":";
    for (size_t k = 0; k < s.threads[t].size(); k++, i++) {
      out += std::string(" ") + OpName(s.threads[t][k].kind);
      if (s.threads[t][k].obj >= 0) out += "(" + std::to_string(s.threads[t][k].obj) + ")";
      out += "=" + (i < absent.size() && absent[i] ? std::string("absent") : ops[i]);
    }
    out += "; ";
  }
  out += "objects";
  for (const auto &[id, v] : objects) out += " " + std::to_string(id) + ":" + v;
  out += "; pages " + std::to_string(pages);
  if (!evicted.empty()) {
    out += "; evicted";
    for (int id : evicted) out += " " + std::to_string(id);
  }
  return out + "; " + state;
}

// ---- one execution's world ------------------------------------------------------------------------

struct Runner::World {
  struct Obj {
    unsigned long handle = 0;
    size_t size = 0;
    int version = 0;
    bool live = false;
    int pattern = 0;  // the id its bytes are made from (a prepared object is renamed after)
  };

  const Scenario &s;
  std::unique_ptr<Subject> subject;
  bool pool_dead = false;
  // The objects. A plain std::mutex, never held across an API call (the API's scheduling points
  // could then switch to a thread that blocks on it while holding the baton).
  std::mutex mu;
  std::map<int, Obj> objs;
  std::set<int> evicted;
  std::vector<std::string> obs;
  std::vector<bool> absent;
  struct zpool *user_pool = nullptr;
  std::string failure;

  explicit World(const Scenario &scenario) : s(scenario) {}

  void Fail(const std::string &why) {
    if (failure.empty()) failure = why;
  }

  int Evict(unsigned long handle) {
    int id = -1;
    {
      std::lock_guard<std::mutex> g(mu);
      for (auto &[oid, o] : objs)
        if (o.live && o.handle == handle) id = oid;
      if (id < 0 || s.evict == Evict::kRefuse) return -EBUSY;
      objs[id].live = false;
      evicted.insert(id);
    }
    subject->Free(handle, id);
    return 0;
  }

  bool Alloc(int id, size_t size, std::string *obs_out) {
    unsigned long h = 0;
    int err = subject->Malloc(size, kGfp, &h, id);
    if (err != 0) {
      if (obs_out) *obs_out = "err" + std::to_string(err);
      return false;
    }
    void *p = subject->Map(h, MapMode::kWO, id);
    if (p == nullptr) {
      if (!s.misuse) Fail("WO map of new object " + std::to_string(id) + " returned NULL");
      if (obs_out) *obs_out = "null";
      return false;
    }
    Fill(static_cast<uint8_t *>(p), size, id, 0);
    subject->Unmap(h, id);
    std::lock_guard<std::mutex> g(mu);
    objs[id] = Obj{h, size, 0, true, id};
    if (obs_out) *obs_out = "ok";
    return true;
  }

  void FreeObj(int id) {
    Obj o;
    {
      std::lock_guard<std::mutex> g(mu);
      auto it = objs.find(id);
      if (it == objs.end() || !it->second.live) return;
      it->second.live = false;
      o = it->second;
    }
    subject->Free(o.handle, id);
  }

  // The pool state every execution starts from.
  void Prepare() {
    const size_t half = PAGE_SIZE / 2 - 8;          // a PAGE_SIZE/2 slot with the handle
    const size_t three_eighths = PAGE_SIZE * 3 / 8 - 8;
    switch (s.prep) {
      case Prep::kEmpty:
      case Prep::kRegistered:
      case Prep::kRegisteredInUse:
        break;
      case Prep::kFragmented:
        // Zspages of 2: [a b] [c d] [e f]. Free b, c: [a .] [. d] [e f]; renumber so that 0 is
        // alone in the emptiest zspage and 1 in a half-full one... both are half full: compaction
        // takes its source from one and its destination from the other.
        for (int i = 0; i < 6; i++) Alloc(1000 + i, half, nullptr);
        FreeObj(1001);
        FreeObj(1002);
        Rename(1000, 0);
        Rename(1003, 1);
        Rename(1004, 2);
        Rename(1005, 3);
        break;
      case Prep::kSpanning:
        // Zspages of 8 slots over 3 pages; slot 2 spans pages 0 and 1.
        for (int i = 0; i < 16; i++) Alloc(1000 + i, three_eighths, nullptr);
        for (int i = 0; i < 8; i++)
          if (i != 2) FreeObj(1000 + i);
        for (int i = 8; i < 12; i++) FreeObj(1000 + i);
        Rename(1002, 0);
        for (int i = 12; i < 16; i++) Rename(1000 + i, i - 11);
        break;
      case Prep::kHuge:
        for (int i = 0; i < 3; i++) Alloc(i, PAGE_SIZE - 64, nullptr);
        break;
      case Prep::kBuddies:
        for (int i = 0; i < 4; i++) Alloc(i, PAGE_SIZE / 4, nullptr);
        break;
    }
    if (s.prep == Prep::kRegistered || s.prep == Prep::kRegisteredInUse)
      zpool_register_driver(&UserDriver());
    if (s.prep == Prep::kRegisteredInUse) {
      user_pool = zpool_create_pool(kUserDriverType, "explore-user", GFP_KERNEL, nullptr);
      if (user_pool == nullptr) Fail("prepared zpool of the user driver not created");
    }
  }

  void Rename(int from, int to) {
    std::lock_guard<std::mutex> g(mu);
    auto it = objs.find(from);
    if (it == objs.end()) return;
    Obj o = it->second;
    objs.erase(it);
    objs[to] = o;  // its bytes keep their pattern (Obj::pattern)
  }

  void Do(int thread, int index, size_t obs_index) {
    const Op &op = s.threads[static_cast<size_t>(thread)][static_cast<size_t>(index)];
    std::string &out = obs[obs_index];
    switch (op.kind) {
      case OpKind::kMalloc:
        Alloc(100 + 10 * thread + index, op.size, &out);
        break;
      case OpKind::kFree: {
        bool live;
        {
          std::lock_guard<std::mutex> g(mu);
          auto it = objs.find(op.obj);
          live = it != objs.end() && it->second.live;
        }
        out = live ? "ok" : (evicted.count(op.obj) ? "evicted" : "gone");
        FreeObj(op.obj);
        break;
      }
      case OpKind::kMapRO:
      case OpKind::kMapWO:
      case OpKind::kMapRW: {
        Obj o;
        {
          std::lock_guard<std::mutex> g(mu);
          auto it = objs.find(op.obj);
          if (it == objs.end() || !it->second.live) {
            out = evicted.count(op.obj) ? "evicted" : "gone";
            break;
          }
          o = it->second;
        }
        MapMode mode = op.kind == OpKind::kMapRO   ? MapMode::kRO
                       : op.kind == OpKind::kMapWO ? MapMode::kWO
                                                   : MapMode::kRW;
        void *p = subject->Map(o.handle, mode, op.obj);
        if (p == nullptr) {
          out = "null";
          break;
        }
        auto *bytes = static_cast<uint8_t *>(p);
        out = mode == MapMode::kWO ? "w" : VersionOf(bytes, o.size, o.pattern, o.version);
        if (mode != MapMode::kRO) {
          Fill(bytes, o.size, o.pattern, o.version + 1);
          std::lock_guard<std::mutex> g(mu);
          objs[op.obj].version = o.version + 1;
        }
        subject->Unmap(o.handle, op.obj);
        break;
      }
      case OpKind::kCompact:
        subject->Compact();
        out = "*";
        break;
      case OpKind::kReclaim: {
        unsigned reclaimed = 0;
        subject->Reclaim(1, &reclaimed);
        out = "*";
        break;
      }
      case OpKind::kDestroy: {
        unsigned long busy = zpool_misuse_count(ZPOOL_MISUSE_DESTROY_BUSY);
        subject->Destroy(/*keep_stale=*/true);
        if (zpool_misuse_count(ZPOOL_MISUSE_DESTROY_BUSY) != busy) {
          out = "*";
          absent[obs_index] = true;
        } else {
          out = "done";
          pool_dead = true;
        }
        break;
      }
      case OpKind::kZpoolCreate: {
        struct zpool *p = zpool_create_pool(kUserDriverType, "explore-user", GFP_KERNEL, nullptr);
        out = p ? "ok" : "null";
        if (p) user_pool = p;
        break;
      }
      case OpKind::kZpoolDestroy:
        if (user_pool == nullptr) {
          out = "none";
        } else {
          zpool_destroy_pool(user_pool);
          user_pool = nullptr;
          out = "done";
        }
        break;
      case OpKind::kRegister:
        zpool_register_driver(&UserDriver());
        out = "done";
        break;
      case OpKind::kUnregister: {
        int rc = zpool_unregister_driver(&UserDriver());
        out = "rc" + std::to_string(rc);
        // -EBUSY changes nothing. A transient reference (a zpool_has_pool() lookup, a create in
        // progress) makes the kernel's unregister refuse too: compared as if not called.
        if (rc == -EBUSY) absent[obs_index] = true;
        break;
      }
      case OpKind::kHasPool:
        out = zpool_has_pool(kUserDriverType) ? "yes" : "no";
        break;
    }
  }

  // The state at quiescence (one thread): objects, pages, WARNs, registry; then the invariants.
  Outcome Observe() {
    Outcome o;
    o.ops = obs;
    o.absent = absent;
    o.evicted = evicted;
    char why[512] = "";
    if (!pool_dead && subject->Validate(why, sizeof(why)) != 0)
      Fail(std::string("validator: ") + why);
    for (auto &[id, ob] : objs) {
      if (!ob.live) continue;
      if (pool_dead) {
        o.objects[id] = "destroyed";
        continue;
      }
      void *p = subject->Map(ob.handle, MapMode::kRO, id);
      o.objects[id] =
          p ? VersionOf(static_cast<uint8_t *>(p), ob.size, ob.pattern, ob.version) : "null";
      if (p) subject->Unmap(ob.handle, id);
    }
    unsigned long pages = 0;
    if (!pool_dead) {
      if (IsZsmalloc(s.backend))
        for (int i = 0; i < 16 && subject->Compact() != 0; i++) {
        }
      pages = subject->TotalPages();
    }
    char text[512];
    unsigned long busy = zpool_misuse_count(ZPOOL_MISUSE_DESTROY_BUSY);
    o.pages = pages;
    int n = snprintf(text, sizeof(text), "warns %lu;", kc_warn_count() - busy);
    for (int k = 1; k <= ZPOOL_MISUSE_DRIVER_REFCOUNT; k++) {
      auto kind = static_cast<zpool_misuse>(k);
      if (kind == ZPOOL_MISUSE_DESTROY_BUSY) continue;
      if (unsigned long c = zpool_misuse_count(kind); c != 0 && n < static_cast<int>(sizeof(text)))
        n += snprintf(text + n, sizeof(text) - static_cast<size_t>(n), " %s %lu;",
                      zpool_misuse_name(kind), c);
    }
    const bool registered = zpool_has_pool(kUserDriverType);
    const int refs = UserDriver().refcount.load();
    if (s.prep == Prep::kRegistered || s.prep == Prep::kRegisteredInUse ||
        std::any_of(s.threads.begin(), s.threads.end(), [](const std::vector<Op> &ops) {
          return std::any_of(ops.begin(), ops.end(), [](const Op &op) {
            return op.kind == OpKind::kRegister || op.kind == OpKind::kUnregister ||
                   op.kind == OpKind::kZpoolCreate;
          });
        })) {
      snprintf(text + n, sizeof(text) - static_cast<size_t>(std::min<int>(n, sizeof(text) - 1)),
               " driver %s, %s zpool", registered ? "registered" : "unregistered",
               user_pool ? "one" : "no");
    }
    o.state = text;
    if (refs < 0) Fail("driver " + std::string(kUserDriverType) + " refcount " + std::to_string(refs));
    if (!registered && user_pool != nullptr)
      Fail("driver " + std::string(kUserDriverType) +
           " is not registered (its unregister returned 0) but a zpool of its type exists");
    return o;
  }

  void Teardown() {
    if (!pool_dead) {
      for (auto &[id, ob] : objs)
        if (ob.live) subject->Free(ob.handle, id);
      subject->Destroy();
    }
    if (user_pool != nullptr) zpool_destroy_pool(user_pool);
    user_pool = nullptr;
    if (const char *problem = ResetUserDriver(); *problem) Fail(std::string("teardown: ") + problem);
  }
};

// ---- the runner ---------------------------------------------------------------------------------

Runner::Runner(const Scenario &scenario) : scenario_(scenario) {
  for (size_t t = 0; t < scenario.threads.size(); t++)
    for (size_t k = 0; k < scenario.threads[t].size(); k++)
      ops_.push_back({static_cast<int>(t), static_cast<int>(k)});
}

Runner::~Runner() = default;

Outcome Runner::RunOnce(kc::ScheduleStrategy *strategy,
                        const kc::DeterministicScheduler::Options *options,
                        const std::vector<int> *order, uint64_t absent_mask, std::string *failure,
                        kc::DeterministicScheduler **scheduler_out) {
  ResetKernelState();
  const unsigned long pages_before = kc_pages_in_use(), meta_before = kc_meta_in_use();
  World w(scenario_);
  w.obs.assign(ops_.size(), "");
  w.absent.assign(ops_.size(), false);
  w.subject = MakeSubject(scenario_.backend, 0);
  if (!w.subject->Create(/*with_evict=*/true)) {
    *failure = "pool creation failed";
    return {};
  }
  w.subject->set_evict([&w](unsigned long handle) { return w.Evict(handle); });
  w.Prepare();
  // Index of each (thread, op) in thread-major order.
  std::vector<std::vector<size_t>> index(scenario_.threads.size());
  for (size_t i = 0; i < ops_.size(); i++)
    index[static_cast<size_t>(ops_[i].first)].push_back(i);
  if (strategy != nullptr) {
    std::vector<std::function<void()>> bodies;
    for (size_t t = 0; t < scenario_.threads.size(); t++) {
      bodies.push_back([&w, &index, t] {
        char prefix[16];
        snprintf(prefix, sizeof(prefix), "[t%zu] ", t);
        SetTracePrefix(prefix);
        kc_set_cpu(static_cast<int>(t) % kc_nr_cpus());
        for (size_t k = 0; k < w.s.threads[t].size(); k++)
          w.Do(static_cast<int>(t), static_cast<int>(k), index[t][k]);
        SetTracePrefix("");
      });
    }
    auto *scheduler = new kc::DeterministicScheduler(*strategy, *options);
    scheduler->Run(std::move(bodies));
    *scheduler_out = scheduler;
  } else {
    for (int i : *order) {
      if (absent_mask & (uint64_t{1} << i)) {
        w.obs[static_cast<size_t>(i)] = "*";
        w.absent[static_cast<size_t>(i)] = true;
        continue;
      }
      auto [t, k] = ops_[static_cast<size_t>(i)];
      kc_set_cpu(t % kc_nr_cpus());
      w.Do(t, k, static_cast<size_t>(i));
    }
    kc_set_cpu(0);
  }
  Outcome outcome = w.Observe();
  w.Teardown();
  ResetKernelState();
  if (w.failure.empty() &&
      (kc_pages_in_use() != pages_before || kc_meta_in_use() != meta_before)) {
    char buf[160];
    snprintf(buf, sizeof(buf), "leak after teardown: pages %lu -> %lu, metadata %lu -> %lu",
             pages_before, kc_pages_in_use(), meta_before, kc_meta_in_use());
    w.failure = buf;
  }
  *failure = w.failure;
  return outcome;
}

const std::vector<Outcome> &Runner::Sequential(uint64_t absent_mask) {
  auto it = sequential_.find(absent_mask);
  if (it != sequential_.end()) return it->second;
  std::vector<Outcome> &outs = sequential_[absent_mask];
  // Every merge of the threads' op lists that keeps each thread's order.
  std::vector<int> order;
  std::vector<size_t> next(scenario_.threads.size(), 0);
  std::vector<std::vector<int>> per_thread(scenario_.threads.size());
  for (size_t i = 0; i < ops_.size(); i++)
    per_thread[static_cast<size_t>(ops_[i].first)].push_back(static_cast<int>(i));
  std::function<void()> rec = [&] {
    if (order.size() == ops_.size()) {
      std::string failure;
      kc::DeterministicScheduler *none = nullptr;
      Outcome o = RunOnce(nullptr, nullptr, &order, absent_mask, &failure, &none);
      if (!failure.empty()) {
        // The sequential specification itself fails: the code is wrong without any race.
        o.state += " [sequential run failed: " + failure + "]";
      }
      outs.push_back(std::move(o));
      return;
    }
    for (size_t t = 0; t < per_thread.size(); t++) {
      if (next[t] == per_thread[t].size()) continue;
      order.push_back(per_thread[t][next[t]++]);
      rec();
      next[t]--;
      order.pop_back();
    }
  };
  rec();
  return outs;
}

void Runner::Prepare() {
  uint64_t optional = 0;  // operations a comparison may leave out: weak or refusable
  for (size_t i = 0; i < ops_.size(); i++) {
    OpKind k = scenario_.threads[static_cast<size_t>(ops_[i].first)]
                   [static_cast<size_t>(ops_[i].second)].kind;
    if (k == OpKind::kCompact || k == OpKind::kReclaim || k == OpKind::kDestroy ||
        k == OpKind::kUnregister)
      optional |= uint64_t{1} << i;
  }
  for (uint64_t sub = optional;; sub = (sub - 1) & optional) {
    Sequential(sub);
    if (sub == 0) break;
  }
}

namespace {

bool Matches(const Outcome &c, const Outcome &q) {
  std::set<int> evicted = c.evicted;
  evicted.insert(q.evicted.begin(), q.evicted.end());
  if (c.state != q.state) return false;
  // How much an eviction took decides the pages; with evictions the validator and the teardown's
  // leak check judge them instead.
  if (evicted.empty() && c.pages != q.pages) return false;
  for (size_t i = 0; i < c.ops.size(); i++) {
    if (c.ops[i] == "*" || q.ops[i] == "*") continue;
    if (c.ops[i] == "evicted" || q.ops[i] == "evicted") continue;
    if (c.ops[i] != q.ops[i]) return false;
  }
  for (const auto &[id, v] : c.objects) {
    if (evicted.count(id)) continue;
    auto it = q.objects.find(id);
    if (it == q.objects.end() || it->second != v) return false;
  }
  for (const auto &[id, v] : q.objects)
    if (!evicted.count(id) && !c.objects.count(id)) return false;
  return true;
}

}  // namespace

std::string Runner::Judge(const Outcome &concurrent) {
  uint64_t mask = 0, weak = 0;
  for (size_t i = 0; i < concurrent.absent.size(); i++) {
    if (concurrent.absent[i]) mask |= uint64_t{1} << i;
    if (concurrent.ops[i] == "*") weak |= uint64_t{1} << i;
  }
  weak &= ~mask;
  // Compaction and reclaim may have done nothing at all (best effort): also every order without
  // any subset of them.
  for (uint64_t sub = weak;; sub = (sub - 1) & weak) {
    for (const Outcome &q : Sequential(mask | sub))
      if (Matches(concurrent, q)) return "";
    if (sub == 0) break;
  }
  const std::vector<Outcome> &seq = Sequential(mask);
  std::string why = "not linearizable: this execution observed\n    " +
                    concurrent.Describe(scenario_) + "\n  and none of the " +
                    std::to_string(seq.size()) + " sequential orders did; they observe";
  std::set<std::string> distinct;
  for (const Outcome &q : seq) distinct.insert(q.Describe(scenario_));
  int shown = 0;
  for (const std::string &d : distinct) {
    if (shown++ == 4) {
      why += "\n    ...";
      break;
    }
    why += "\n    " + d;
  }
  return why;
}

kc::ExecutionReport Runner::Execute(kc::ScheduleStrategy &strategy,
                                    const kc::DeterministicScheduler::Options &options) {
  std::string failure;
  kc::DeterministicScheduler *scheduler = nullptr;
  Outcome outcome = RunOnce(&strategy, &options, nullptr, 0, &failure, &scheduler);
  std::unique_ptr<kc::DeterministicScheduler> owned(scheduler);
  if (failure.empty() && scheduler != nullptr && !scenario_.misuse) failure = Judge(outcome);
  kc::ExecutionReport r;
  r.failure = failure;
  if (scheduler != nullptr) {
    r.choices = scheduler->choices();
    r.points = scheduler->points();
    r.preemptions = scheduler->preemptions();
    if (!failure.empty()) r.interleaving = scheduler->FormatInterleaving();
  }
  return r;
}

kc::ExploreResult Runner::Explore(const kc::ExploreOptions &options) {
  return kc::Explore(
      [this](kc::ScheduleStrategy &strategy, const kc::DeterministicScheduler::Options &o) {
        return Execute(strategy, o);
      },
      options);
}

void InitializeExplorer() {
  InitializeHarness(KC_WARN_RECORD);
  // Destroying a non-empty pool is part of some scenarios: its pr_err lines are expected, every
  // execution would print them. WARNs are counted (record policy) and compared instead.
  kc_set_console_loglevel(KC_LOG_ERR);
}

}  // namespace zfuzz::explore

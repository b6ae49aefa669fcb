// SPDX-License-Identifier: GPL-2.0-only
// Scenarios for the systematic explorer: two or three threads of one to three API operations
// each, on a pool prepared so that the operations really interact (compaction has objects to
// move, a zbud page has both buddies, a driver is registered), and the oracle that judges every
// explored execution.
//
// The oracle is linearizability in the manner of Line-Up (Burckhardt, Dern, Musuvathi and Tan,
// PLDI 2010): the sequential specification is the implementation itself, run one operation at a
// time in every order that keeps each thread's own order. An execution passes when its
// observations equal those of one of those sequential runs:
//   - per operation: malloc's result, what a map read (the version of the object's bytes, or
//     "garbage"), whether a map returned NULL, unregister's return value, whether a zpool create
//     succeeded, has_pool's answer, whether a destroy happened;
//   - at quiescence: every live object's bytes, the page count after compacting to a fixpoint
//     (zsmalloc: the placement compaction chose does not matter, the minimum it reaches does),
//     the WARN count and each misuse kind's count, and the registry (driver registered or not,
//     zpools of its type alive).
// Some results are not linearizable in the kernel either, and are checked by their own
// invariants instead of by comparison: zs_compact() and reclaim drop their locks between steps
// and may do nothing (their return values are not compared, and orders without them count too;
// the objects an eviction took, in either run, and then the page count are left out of the
// comparison), and a refusal that changed nothing is compared as if the call had not been made:
// a destroy refused because a call was in flight (destroy-busy), and an unregister refused with
// -EBUSY because of a transient driver reference (the kernel's zpool_has_pool() takes one, so a
// lookup racing an unregister makes it fail: not linearizable in the kernel either). Besides linearizability, every
// execution must leave the backend's validator clean, no page or metadata leaked after teardown,
// and the registry's own invariants true (a driver's refcount never below zero; a driver that
// is not registered has no pool).
#ifndef FUZZ_EXPLORE_SCENARIO_H_
#define FUZZ_EXPLORE_SCENARIO_H_

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "fuzz/api/subject.h"
#include "zpool/kernel/explore.h"
#include "zpool/kernel/scheduler.h"

namespace zfuzz::explore {

enum class OpKind {
  kMalloc,        // a new object of `size`, WO-filled with version 0
  kFree,          // object `obj`
  kMapRO,         // map, read (the version seen), unmap
  kMapWO,         // map, write the next version, unmap
  kMapRW,         // map, read, write the next version, unmap
  kCompact,       // zs_compact (zsmalloc backends)
  kReclaim,       // zbud_reclaim_page(1) / zpool_shrink(1)
  kDestroy,       // the backend pool
  kZpoolCreate,   // a zpool of the user driver's type
  kZpoolDestroy,  // the zpool a kZpoolCreate of this scenario made (if it did)
  kRegister,      // the user driver
  kUnregister,    // the user driver
  kHasPool,       // zpool_has_pool(user type)
};
const char *OpName(OpKind kind);

// Objects: the prepared ones are 0 .. n-1 in the order Prep made them (see Prep); a malloc in a
// thread makes object 100 + 10 * thread + its index in the thread.
struct Op {
  OpKind kind;
  int obj = -1;
  size_t size = 0;
};

// The pool state every execution starts from (built before the threads start, one thread).
enum class Prep {
  kEmpty,        // a new pool
  kFragmented,   // zsmalloc: slots of PAGE_SIZE/2 (2 per one-page zspage): object 0 alone in its
                 // zspage (compaction's source), object 1 in a half-full one (destination),
                 // objects 2 and 3 in a full one
  kSpanning,     // zsmalloc: slots of 3/8 page (8 per 3-page zspage): object 0 spans two pages,
                 // alone in its zspage; objects 1 .. 4 half-fill another
  kHuge,         // zsmalloc: objects 0 .. 2 of the huge class, one page each
  kBuddies,      // zbud: objects 0 and 1 are the first and last buddy of the LRU's tail page,
                 // 2 and 3 of the next one
  kRegistered,   // the user driver registered (no pool of its type yet)
  kRegisteredInUse,  // the user driver registered, and a zpool of its type holding object 0
};
const char *PrepName(Prep prep);

enum class Evict {
  kRefuse,  // the evict callback returns -EBUSY: reclaim changes no object
  kFree,    // it frees the object (unless its owner freed it already) and returns 0
};

struct Scenario {
  std::string name;
  Kind backend = Kind::kZsmalloc;
  Prep prep = Prep::kEmpty;
  Evict evict = Evict::kRefuse;
  std::vector<std::vector<Op>> threads;
  std::string covers;  // one line: what interaction it is for
  // The operations race a destroy of their pool: a user bug the kernel forbids but cannot stop.
  // Judged by everything but linearizability (no crash or sanitizer report, the validator, no
  // leak, the registry's invariants): a call cut off by the destroy has no sequential meaning.
  bool misuse = false;
};

// The catalogue (catalogue.cc): every pair, and the triples that matter, of the operations
// above, each from a prepared state where they interact.
const std::vector<Scenario> &Catalogue();
const Scenario *FindScenario(const std::string &name);

// What one execution observed.
struct Outcome {
  std::vector<std::string> ops;  // per operation, thread-major; "*" where not compared
  std::vector<bool> absent;      // per operation: had no effect (a refused destroy)
  std::set<int> evicted;         // objects an eviction took
  std::map<int, std::string> objects;  // live object -> its bytes' version ("v3", "garbage")
  unsigned long pages = 0;             // after compacting to a fixpoint (zsmalloc)
  std::string state;                   // WARNs, misuse counts, registry
  std::string Describe(const Scenario &s) const;
};

// Runs a scenario's executions and judges them.
class Runner {
 public:
  explicit Runner(const Scenario &scenario);
  ~Runner();
  Runner(const Runner &) = delete;
  Runner &operator=(const Runner &) = delete;

  // One execution under `strategy`: the explorer's ExploreRun.
  kc::ExecutionReport Execute(kc::ScheduleStrategy &strategy,
                              const kc::DeterministicScheduler::Options &options);
  // Explores the scenario.
  kc::ExploreResult Explore(const kc::ExploreOptions &options);
  // The sequential outcomes (every order of the operations), for tests and the summary.
  const std::vector<Outcome> &Sequential(uint64_t absent_mask);
  // Computes every sequential outcome Judge can ask for, now: a fuzz target does this once at
  // start-up, so that no input runs code (or covers lines) that another input did not.
  void Prepare();
  size_t ops() const { return ops_.size(); }

 private:
  struct World;
  Outcome RunOnce(kc::ScheduleStrategy *strategy, const kc::DeterministicScheduler::Options *o,
                  const std::vector<int> *order, uint64_t absent_mask, std::string *failure,
                  kc::DeterministicScheduler **scheduler_out);
  std::string Judge(const Outcome &concurrent);

  const Scenario &scenario_;
  std::vector<std::pair<int, int>> ops_;  // (thread, index) in thread-major order
  std::map<uint64_t, std::vector<Outcome>> sequential_;
};

// Process set-up for exploration (warning policy record, virtual CPUs, prewarmed memory).
void InitializeExplorer();

}  // namespace zfuzz::explore

#endif  // FUZZ_EXPLORE_SCENARIO_H_

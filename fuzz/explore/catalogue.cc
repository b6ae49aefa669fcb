// SPDX-License-Identifier: GPL-2.0-only
// The scenario catalogue: every pair, and the triples that matter, of the API's operations, each
// from a prepared state in which they meet (scenario.h describes the states). Names read
// "<backend>/<prep>/<thread 0 ops>|<thread 1 ops>[|<thread 2 ops>]".
#include <string>
#include <vector>

#include "fuzz/explore/scenario.h"

namespace zfuzz::explore {

namespace {

Op M(size_t size) { return Op{OpKind::kMalloc, -1, size}; }
Op F(int obj) { return Op{OpKind::kFree, obj, 0}; }
Op RO(int obj) { return Op{OpKind::kMapRO, obj, 0}; }
Op WO(int obj) { return Op{OpKind::kMapWO, obj, 0}; }
Op RW(int obj) { return Op{OpKind::kMapRW, obj, 0}; }
Op Compact() { return Op{OpKind::kCompact, -1, 0}; }
Op Reclaim() { return Op{OpKind::kReclaim, -1, 0}; }
Op Destroy() { return Op{OpKind::kDestroy, -1, 0}; }
Op ZCreate() { return Op{OpKind::kZpoolCreate, -1, 0}; }
Op ZDestroy() { return Op{OpKind::kZpoolDestroy, -1, 0}; }
Op Register() { return Op{OpKind::kRegister, -1, 0}; }
Op Unregister() { return Op{OpKind::kUnregister, -1, 0}; }
Op HasPool() { return Op{OpKind::kHasPool, -1, 0}; }

std::string OpText(const Op &op) {
  std::string s = OpName(op.kind);
  if (op.obj >= 0) s += std::to_string(op.obj);
  return s;
}

std::string BackendName(Kind k) {
  switch (k) {
    case Kind::kZsmalloc: return "zsmalloc";
    case Kind::kZbud: return "zbud";
    case Kind::kZpoolZsmalloc: return "zpool-zsmalloc";
    case Kind::kZpoolZbud: return "zpool-zbud";
    case Kind::kUpstreamZsmalloc:  // no scenarios on the kernel's files yet (docs/upstream.md)
    case Kind::kUpstreamZpoolZsmalloc:
    case Kind::kUpstreamZpoolZbud:
    case Kind::kUpstreamZpoolZ3fold: break;
  }
  return "?";
}

struct Builder {
  std::vector<Scenario> out;
  void Add(Kind backend, Prep prep, std::vector<std::vector<Op>> threads, std::string covers,
           Evict evict = Evict::kRefuse) {
    Scenario s;
    s.backend = backend;
    s.prep = prep;
    s.evict = evict;
    s.threads = std::move(threads);
    s.covers = std::move(covers);
    for (const auto &ops : s.threads)
      for (const Op &op : ops) s.misuse = s.misuse || op.kind == OpKind::kDestroy;
    s.name = BackendName(backend) + "/" + PrepName(prep) + (evict == Evict::kFree ? "+evict" : "");
    for (size_t t = 0; t < s.threads.size(); t++) {
      s.name += t == 0 ? "/" : "|";
      for (size_t k = 0; k < s.threads[t].size(); k++)
        s.name += (k ? "," : "") + OpText(s.threads[t][k]);
    }
    out.push_back(std::move(s));
  }
};

std::vector<Scenario> Build() {
  Builder b;
  const size_t half = PAGE_SIZE / 2 - 8;
  const size_t quarter = PAGE_SIZE / 4;
  for (Kind k : {Kind::kZsmalloc, Kind::kZpoolZsmalloc}) {
    using P = Prep;
    // zpool has no compaction call (the kernel's zsmalloc compacts from its own shrinker): the
    // compaction scenarios are zsmalloc's, the others run through zpool too.
    const bool compacts = k == Kind::kZsmalloc;
    auto add = [&](Prep prep, std::vector<std::vector<Op>> threads, std::string covers) {
      bool uses_compact = false;
      for (const auto &ops : threads)
        for (const Op &op : ops) uses_compact = uses_compact || op.kind == OpKind::kCompact;
      if (compacts || !uses_compact) b.Add(k, prep, std::move(threads), std::move(covers));
    };
    // Compaction moves object 0 or 1 (each alone in a half-full zspage) into the other's zspage.
    add(P::kFragmented, {{F(0)}, {Compact()}}, "free of an object compaction moves");
    add(P::kFragmented, {{F(1)}, {Compact()}}, "free of the destination's object");
    add(P::kFragmented, {{RO(0)}, {Compact()}}, "read of an object compaction moves");
    add(P::kFragmented, {{RW(1)}, {Compact()}}, "read-write while compaction moves");
    add(P::kSpanning, {{RO(0)}, {Compact()}}, "read of a spanning object being moved");
    add(P::kSpanning, {{WO(0)}, {Compact()}}, "write of a spanning object being moved");
    add(P::kSpanning, {{F(1)}, {Compact()}}, "free into the spanning source's class");
    add(P::kFragmented, {{M(half)}, {Compact()}}, "malloc into a class being compacted");
    add(P::kFragmented, {{M(half)}, {F(1)}}, "malloc and free in one class");
    add(P::kFragmented, {{F(0)}, {F(1)}}, "two frees emptying two zspages");
    add(P::kFragmented, {{RW(2)}, {F(3)}}, "map and free of neighbours in one zspage");
    add(P::kFragmented, {{Compact()}, {Compact()}}, "two compactions");
    add(P::kHuge, {{F(0)}, {RO(1)}}, "huge-class free and map");
    add(P::kHuge, {{RW(0)}, {Compact()}}, "huge class under compaction (nothing moves)");
    add(P::kFragmented, {{Destroy()}, {RO(2)}}, "destroy racing a map");
    add(P::kFragmented, {{Destroy()}, {F(0)}}, "destroy racing a free");
    add(P::kEmpty, {{Destroy()}, {M(half)}}, "destroy racing a malloc");
    // Triples and longer threads.
    add(P::kFragmented, {{F(0)}, {Compact()}, {RO(1)}}, "free and read during compaction");
    add(P::kSpanning, {{RW(0), F(0)}, {Compact(), RO(1)}},
          "map then free a spanning object across a compaction");
    add(P::kFragmented, {{RO(0), F(0), M(half)}, {RW(1), Compact(), F(1)}},
          "three operations a side: a freed slot reused around a compaction");
  }
  for (Kind k : {Kind::kZbud, Kind::kZpoolZbud}) {
    using P = Prep;
    // The LRU's tail page holds objects 0 (first buddy) and 1 (last buddy).
    b.Add(k, P::kBuddies, {{F(1)}, {Reclaim()}}, "free of a buddy of the page under reclaim");
    b.Add(k, P::kBuddies, {{F(0)}, {Reclaim()}}, "free of the buddy being evicted", Evict::kFree);
    b.Add(k, P::kBuddies, {{F(1)}, {Reclaim()}}, "free while the other buddy is evicted",
          Evict::kFree);
    b.Add(k, P::kBuddies, {{RW(1)}, {Reclaim()}}, "map of a buddy under reclaim");
    b.Add(k, P::kBuddies, {{M(quarter)}, {Reclaim()}}, "malloc while a page is off its lists");
    b.Add(k, P::kBuddies, {{F(0)}, {F(1)}}, "both buddies freed at once");
    b.Add(k, P::kBuddies, {{RO(0)}, {F(1)}}, "map and free of the two buddies");
    b.Add(k, P::kBuddies, {{Reclaim()}, {Reclaim()}}, "two reclaims", Evict::kFree);
    b.Add(k, P::kBuddies, {{Destroy()}, {F(2)}}, "destroy racing a free");
    b.Add(k, P::kBuddies, {{F(1)}, {Reclaim()}, {M(quarter)}}, "free, reclaim and malloc");
  }
  // The registry (zpool over the user driver "zfuzz_explore").
  {
    using P = Prep;
    const Kind k = Kind::kZsmalloc;  // the backend pool is a bystander here
    b.Add(k, P::kRegistered, {{ZCreate()}, {Unregister()}}, "create racing unregister");
    b.Add(k, P::kRegistered, {{HasPool()}, {Unregister()}}, "lookup racing unregister");
    b.Add(k, P::kRegistered, {{ZCreate(), ZDestroy()}, {Unregister()}},
          "a pool's whole life racing unregister");
    b.Add(k, P::kEmpty, {{Register()}, {ZCreate()}}, "create racing register");
    b.Add(k, P::kRegisteredInUse, {{ZDestroy()}, {Unregister()}}, "last destroy racing unregister");
    b.Add(k, P::kRegistered, {{ZCreate()}, {Unregister()}, {HasPool()}},
          "create, unregister and lookup");
  }
  return b.out;
}

}  // namespace

const std::vector<Scenario> &Catalogue() {
  static const std::vector<Scenario> catalogue = Build();
  return catalogue;
}

const Scenario *FindScenario(const std::string &name) {
  for (const Scenario &s : Catalogue())
    if (s.name == name) return &s;
  return nullptr;
}

}  // namespace zfuzz::explore

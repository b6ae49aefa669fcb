// SPDX-License-Identifier: GPL-2.0-only
// The seed programs of the API fuzz targets, written as operation scripts.
//
// `generate_seeds TARGET` runs each script through the real decoder and executor (ScriptChoices)
// and prints the input bytes that replay it, one seed a line: "<name> <hex>". corpus/generate.py
// names the files by SHA-1 and merges them into corpus/<target>/ with libFuzzer's -merge=1. When
// the language changes, rerunning the generator rewrites the seeds to match: the decoder is the
// only definition of the language.
#include <stdio.h>
#include <string.h>

#include <string>
#include <vector>

#include "fuzz/api/program.h"
#ifdef ZFUZZ_UPSTREAM_SEEDS
#include "fuzz/api/upstream_subjects.h"
#include "zpool/upstream/bridge.h"
#endif

namespace zfuzz {
namespace {

class Script {
 public:
  std::vector<uint64_t> values;

  Script &Raw(uint64_t v) {
    values.push_back(v);
    return *this;
  }
  Script &Op(ProgramOp op) { return Raw(op); }

  // Sizes (see SizeKind).
  struct Size {
    std::vector<uint64_t> v;
  };
  static Size Any(size_t n) { return {{kSizeAny, n}}; }
  static Size Class(size_t k, int adjust = 0) {
    return {{kSizeClassBoundary, k, static_cast<uint64_t>(adjust + 1)}};
  }
  static Size Chunk(size_t n, int adjust = 0) {
    return {{kSizeChunkBoundary, n, static_cast<uint64_t>(adjust + 1)}};
  }
  static Size Span(size_t den, size_t num, int adjust = 0) {
    return {{kSizeSpan, den, num, static_cast<uint64_t>(adjust + 1)}};
  }
  static Size Maxima(size_t which) { return {{kSizeMaxima, which}}; }
  static Size Zero() { return {{kSizeZero}}; }
  static Size TooBig(size_t extra) { return {{kSizeTooBig, extra}}; }
  static Size Small(size_t n) { return {{kSizeSmall, n}}; }

  Script &Append(const Size &size) {
    values.insert(values.end(), size.v.begin(), size.v.end());
    return *this;
  }
  Script &Create(int slot, bool with_evict) { return Op(kCreate).Raw(slot).Raw(with_evict); }
  Script &Destroy(int slot) { return Op(kDestroy).Raw(slot); }
  Script &Malloc(int slot, const Size &size, int gfp = 0) {
    return Op(kMalloc).Raw(slot).Append(size).Raw(gfp);
  }
  Script &Free(int slot, size_t index) { return Op(kFree).Raw(slot).Raw(index); }
  Script &Map(int slot, int mode, size_t index) {
    return Op(kMapAccess).Raw(slot).Raw(mode).Raw(index);
  }
  Script &Compact(int slot) { return Op(kCompact).Raw(slot); }
  Script &Reclaim(int slot, unsigned arg, int policy) {
    return Op(kReclaim).Raw(slot).Raw(arg).Raw(policy);
  }
  Script &Stats(int slot) { return Op(kStats).Raw(slot); }
  Script &Cpu(int cpu) { return Op(kSetCpu).Raw(cpu); }
  Script &FailNth(unsigned n) { return Op(kFailNth).Raw(n); }
  Script &Validate() { return Op(kValidate); }
  Script &MallocMany(int slot, int count, const Size &size, int gfp = 0) {
    return Op(kMallocMany).Raw(slot).Raw(count).Append(size).Raw(gfp);
  }
  Script &FreeMany(int slot, int stride) { return Op(kFreeMany).Raw(slot).Raw(stride); }
  Script &Properties(int slot) { return Op(kProperties).Raw(slot); }
  Script &Migrate(unsigned long page, int action) { return Op(kMigrate).Raw(page).Raw(action); }
};

using S = Script;

struct Seed {
  std::string name;
  Script script;
  // The upstream targets read one more byte, the input's last, before the program: the backend
  // (upstream_api_fuzz) or the pair (upstream_diff_fuzz). -1: none.
  int tail = -1;
  // This seed's options when they differ from the target's (the upstream targets: per backend).
  bool own_options = false;
  ProgramOptions options;
};

std::vector<Seed> CommonSeeds(bool zbud_limits) {
  std::vector<Seed> seeds;
  seeds.push_back({"basic", S()
                                .Malloc(0, S::Small(20))
                                .Malloc(0, S::Any(1200))
                                .Malloc(0, S::Class(40))
                                .Map(0, 0, 1)
                                .Map(0, 1, 0)
                                .Map(0, 2, 2)
                                .Free(0, 1)
                                .Stats(0)
                                .Validate()});
  seeds.push_back({"errors", S()
                                 .Malloc(0, S::Zero())
                                 .Malloc(0, S::TooBig(1))
                                 .Malloc(0, S::TooBig(100))
                                 .Malloc(0, S::Any(100), 5)  // __GFP_HIGHMEM
                                 .Malloc(0, S::Maxima(0))
                                 .Malloc(0, S::Maxima(1))
                                 .Malloc(0, S::Maxima(2))
                                 .Stats(0)});
  {
    Script s;
    for (size_t k : {3, 10, 63, 64, 100, 127, 128, 200, 230, 247})
      s.MallocMany(0, 12, S::Class(k, static_cast<int>(k % 3) - 1));
    s.Stats(0).FreeMany(0, 2).Compact(0).Stats(0).Validate().FreeMany(0, 3).Compact(0);
    seeds.push_back({"classes-fragment-compact", s});
  }
  {
    Script s;
    for (size_t den = 2; den <= 7; den++)
      for (size_t num = 1; num < den; num++) s.Malloc(0, S::Span(den, num, 0));
    for (size_t i = 0; i < 8; i++) s.Map(0, static_cast<int>(i % 3), i);
    s.FreeMany(0, 2).Compact(0).Validate();
    seeds.push_back({"spans", s});
  }
  {
    Script s;
    for (size_t n = 1; n <= 62; n += 7) s.Malloc(0, S::Chunk(n, static_cast<int>(n % 3) - 1));
    s.Stats(0).Free(0, 3).Malloc(0, S::Chunk(20)).Stats(0);
    seeds.push_back({"chunks", s});
  }
  for (unsigned nth = 1; nth <= 6; nth++) {
    Script s;
    s.FailNth(nth).MallocMany(0, 3, S::Any(zbud_limits ? 900 : 3000));
    s.FailNth(nth).Destroy(0).Create(0, true).Malloc(0, S::Small(64)).Stats(0);
    seeds.push_back({"fault-" + std::to_string(nth), s});
  }
  {
    Script s;
    for (int cpu = 0; cpu < 2; cpu++)
      s.Cpu(cpu).Malloc(0, S::Any(700 + 100 * cpu)).Map(0, 0, static_cast<size_t>(cpu));
    s.Cpu(1).Free(0, 0).Cpu(0).Map(0, 1, 0);
    seeds.push_back({"cpus", s});
  }
  seeds.push_back({"two-pools", S()
                                    .Create(1, false)
                                    .MallocMany(1, 5, S::Any(333))
                                    .MallocMany(0, 5, S::Any(2000))
                                    .Destroy(0)
                                    .Map(1, 0, 2)
                                    .Create(0, true)
                                    .Malloc(0, S::Small(9))
                                    .Destroy(1)
                                    .Validate()});
  seeds.push_back({"huge", S()
                               .MallocMany(0, 6, S::Maxima(4))
                               .MallocMany(0, 4, S::Maxima(3))
                               .FreeMany(0, 2)
                               .Compact(0)
                               .Map(0, 0, 1)
                               .Validate()});
  return seeds;
}

std::vector<Seed> ReclaimSeeds() {
  std::vector<Seed> seeds;
  for (int policy = 0; policy < 3; policy++) {
    Script s;
    s.MallocMany(0, 6, S::Any(1500)).Reclaim(0, 1, policy).Stats(0).Reclaim(0, 3, policy);
    s.Create(1, false).Malloc(1, S::Any(10)).Reclaim(1, 2, policy).Reclaim(0, 0, policy);
    seeds.push_back({"reclaim-policy-" + std::to_string(policy), s});
  }
  return seeds;
}

#ifdef ZFUZZ_UPSTREAM_SEEDS
// Page migration of the kernel's files under the program: every page in turn, each action.
std::vector<Seed> MigrationSeeds() {
  std::vector<Seed> seeds;
  for (int action = 0; action < 3; action++) {
    Script s;
    s.MallocMany(0, 10, S::Any(700)).MallocMany(0, 6, S::Span(3, 2)).Malloc(0, S::Maxima(3));
    for (unsigned long page = 0; page < 12; page++) s.Migrate(page, action);
    s.Map(0, 0, 3).FreeMany(0, 2).Compact(0).Migrate(1, action).Stats(0).Validate();
    seeds.push_back({"migrate-" + std::to_string(action), s});
  }
  return seeds;
}

// One copy of each seed per backend (the tail byte that picks it), with that backend's options.
void PerBackend(const std::vector<Seed> &base, const std::vector<ProgramOptions> &backends,
                std::vector<Seed> *out) {
  for (size_t b = 0; b < backends.size(); b++) {
    for (const Seed &seed : base) {
      Seed copy = seed;
      copy.name += "-" + std::to_string(b);
      copy.tail = static_cast<int>(b);
      copy.own_options = true;
      copy.options = backends[b];
      out->push_back(copy);
    }
  }
}
#endif

std::vector<Seed> SeedsFor(const std::string &target, ProgramOptions *options) {
  std::vector<Seed> seeds;
#ifdef ZFUZZ_UPSTREAM_SEEDS
  if (target == "upstream_api_fuzz" || target == "upstream_diff_fuzz") {
    const bool diff = target == "upstream_diff_fuzz";
    std::vector<Seed> base = CommonSeeds(true);
    for (Seed &s : MigrationSeeds()) base.push_back(s);
    base.push_back({"properties", S().Properties(0).Create(1, false).Properties(1)});
    std::vector<ProgramOptions> backends;
    // The backends and pairs in the order of the harnesses' tables.
    if (diff) {
      for (auto [model, upstream] : {std::pair{Kind::kZsmalloc, Kind::kUpstreamZsmalloc},
                                     std::pair{Kind::kZpoolZbud, Kind::kUpstreamZpoolZbud},
                                     std::pair{Kind::kZpoolZsmalloc,
                                               Kind::kUpstreamZpoolZsmalloc}})
        backends.push_back({.kinds = {model, upstream}, .fault_injection = false, .exact = true,
                            .migration = true});
    } else {
      for (Kind kind : {Kind::kUpstreamZsmalloc, Kind::kUpstreamZpoolZsmalloc,
                        Kind::kUpstreamZpoolZbud, Kind::kUpstreamZpoolZ3fold})
        backends.push_back({.kinds = {kind}, .migration = true});
    }
    if (diff) {  // fault injection is off there: those seeds would only repeat others
      std::vector<Seed> kept;
      for (Seed &s : base)
        if (s.name.rfind("fault-", 0) != 0) kept.push_back(s);
      base = kept;
    }
    PerBackend(base, backends, &seeds);
    return seeds;
  }
#endif
  if (target == "zbud_api_fuzz") {
    options->kinds = {Kind::kZbud};
    seeds = CommonSeeds(true);
    for (Seed &s : ReclaimSeeds()) seeds.push_back(s);
  } else if (target == "zsmalloc_api_fuzz") {
    options->kinds = {Kind::kZsmalloc};
    seeds = CommonSeeds(false);
  } else if (target == "zpool_api_fuzz") {
    options->kinds = {Kind::kZpoolZbud, Kind::kZpoolZsmalloc};
    options->fault_injection = false;
    seeds = CommonSeeds(true);
    for (Seed &s : ReclaimSeeds()) seeds.push_back(s);
    seeds.push_back({"properties", S().Properties(0).Create(1, false).Properties(1)});
  }
  return seeds;
}

}  // namespace
}  // namespace zfuzz

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: generate_seeds TARGET  (zbud_api_fuzz, zsmalloc_api_fuzz, "
                    "zpool_api_fuzz; generate_upstream_seeds: upstream_api_fuzz, "
                    "upstream_diff_fuzz)\n");
    return 2;
  }
  zfuzz::ProgramOptions options;
  std::vector<zfuzz::Seed> seeds = zfuzz::SeedsFor(argv[1], &options);
  if (seeds.empty()) {
    fprintf(stderr, "generate_seeds: unknown target %s\n", argv[1]);
    return 2;
  }
  kc_set_warn_policy(KC_WARN_ABORT);  // a seed must itself be a legal program
  kc_set_console_loglevel(KC_LOG_WARNING);
#ifdef ZFUZZ_UPSTREAM_SEEDS
  zfuzz::InitializeHarness(KC_WARN_ABORT);
  zfuzz::UseUpstreamSubjects();
  upstream_set_migration("z3fold", false);  // as the target runs (upstream finding Z1)
  upstream_report_known_findings(false);
#endif
  for (zfuzz::Seed &seed : seeds) {
    zfuzz::ScriptChoices choices(seed.script.values);
    zfuzz::RunChoices(choices, 0, seed.own_options ? seed.options : options);
    std::vector<uint8_t> bytes = choices.Bytes();
    if (seed.tail >= 0) bytes.push_back(static_cast<uint8_t>(seed.tail));
    printf("%s ", seed.name.c_str());
    for (uint8_t b : bytes) printf("%02x", b);
    printf("\n");
  }
  return 0;
}

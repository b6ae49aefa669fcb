// SPDX-License-Identifier: GPL-2.0-only
// explore: the systematic explorer over the scenario catalogue (tools/zfuzz explore runs it).
//
//   explore --list
//   explore [--bound N] [--time-per-scenario S] [--total-time S] [--no-reduction]
//           [--shard I/N] [--json FILE] [--skip NAME]... [--progress S] [SCENARIO-SUBSTRING...]
//   explore --replay SCENARIO --schedule TEXT [--runs N]
//
// Exit status: 0 clean, 1 a scenario failed (its schedule is printed), 2 bad arguments.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <algorithm>
#include <chrono>
#include <string>
#include <vector>

#include "fuzz/api/subject.h"
#include "fuzz/explore/scenario.h"
#include "zpool/kernel/explore.h"
#include "zpool/kernel/scheduler.h"

namespace {

using zfuzz::explore::Catalogue;
using zfuzz::explore::Runner;
using zfuzz::explore::Scenario;

void Usage(FILE *out) {
  fputs("usage: explore --list\n"
        "       explore [--bound N] [--time-per-scenario S] [--total-time S] [--no-reduction]\n"
        "               [--shard I/N] [--json FILE] [--skip NAME]... [--progress S]\n"
        "               [SCENARIO-SUBSTRING...]\n"
        "       explore --replay SCENARIO --schedule TEXT [--runs N]\n",
        out);
}

[[noreturn]] void Bad(const char *fmt, const char *arg) {
  fputs("explore: error: ", stderr);
  fputs(fmt, stderr);
  if (arg) fprintf(stderr, " '%s'", arg);
  fputs(" (see explore --help)\n", stderr);
  exit(2);
}

bool ParseNumber(const char *text, double *out) {
  char *end = nullptr;
  *out = strtod(text, &end);
  return end != text && *end == '\0' && *out >= 0;
}

std::string JsonString(const std::string &s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char buf[8];
      snprintf(buf, sizeof(buf), "\\u%04x", c);
      out += buf;
    } else {
      out += c;
    }
  }
  return out + "\"";
}

const Scenario *g_current = nullptr;  // being explored (for the fatal hook)
int g_bound = 0;

// A BUG or a sanitizer report ends the process: say which scenario, after the scheduler's hook
// printed the interleaving and the schedule.
void OnFatal() {
  if (g_current == nullptr) return;
  fprintf(stderr,
          "explore: FAILED (crash) in scenario '%s' at preemption bound %d: replay it with "
          "explore --replay '%s' --schedule <the schedule line above>\n",
          g_current->name.c_str(), g_bound, g_current->name.c_str());
  fflush(stderr);
}

int Replay(const std::string &name, const std::string &schedule, int runs) {
  const Scenario *s = zfuzz::explore::FindScenario(name);
  if (s == nullptr) Bad("no such scenario (explore --list names them):", name.c_str());
  std::vector<uint8_t> choices;
  std::string error;
  if (!kc::ParseSchedule(schedule, &choices, &error)) Bad(error.c_str(), nullptr);
  Runner runner(*s);
  int failed = 0;
  std::string first;
  for (int i = 0; i < runs; i++) {
    zfuzz::SetTracing(i == 0);  // the call lines of the first run
    kc::ReplayStrategy replay(choices);
    kc::ExecutionReport r = runner.Execute(replay, kc::ExploreSchedulerOptions());
    if (i == 0) {
      printf("== interleaving ==\n%s", r.interleaving.empty() ? "(passed: no interleaving kept)\n"
                                                               : r.interleaving.c_str());
      first = r.failure;
      if (replay.divergences() != 0)
        printf("note: the schedule diverged %llu time(s) from this build's execution\n",
               static_cast<unsigned long long>(replay.divergences()));
    }
    if (!r.failure.empty()) failed++;
  }
  zfuzz::SetTracing(false);
  printf("== verdict ==\n%s\nreproduced %d/%d\n",
         first.empty() ? "passed" : first.c_str(), failed, runs);
  return failed ? 1 : 0;
}

}  // namespace

int main(int argc, char **argv) {
  int bound = 2;
  double per_scenario = 0, total = 0;
  bool reduce = true, list = false;
  int shard = 0, shards = 1, runs = 20;
  std::string json, replay, schedule;
  std::vector<std::string> filters, skips;
  double progress_every = 30;
  for (int i = 1; i < argc; i++) {
    std::string a = argv[i];
    auto value = [&]() -> const char * {
      if (i + 1 >= argc) Bad("missing value after", argv[i]);
      return argv[++i];
    };
    double d;
    if (a == "--help" || a == "-h") {
      Usage(stdout);
      return 0;
    } else if (a == "--list") {
      list = true;
    } else if (a == "--bound") {
      const char *v = value();
      if (!ParseNumber(v, &d) || d > 16 || d != static_cast<int>(d)) Bad("--bound: not 0..16:", v);
      bound = static_cast<int>(d);
    } else if (a == "--time-per-scenario") {
      const char *v = value();
      if (!ParseNumber(v, &per_scenario)) Bad("--time-per-scenario: not seconds:", v);
    } else if (a == "--total-time") {
      const char *v = value();
      if (!ParseNumber(v, &total)) Bad("--total-time: not seconds:", v);
    } else if (a == "--no-reduction") {
      reduce = false;
    } else if (a == "--shard") {
      const char *v = value();
      if (sscanf(v, "%d/%d", &shard, &shards) != 2 || shards < 1 || shard < 0 || shard >= shards)
        Bad("--shard: not I/N with 0 <= I < N:", v);
    } else if (a == "--json") {
      json = value();
    } else if (a == "--skip") {
      skips.push_back(value());
    } else if (a == "--progress") {
      const char *v = value();
      if (!ParseNumber(v, &progress_every)) Bad("--progress: not seconds:", v);
    } else if (a == "--replay") {
      replay = value();
    } else if (a == "--schedule") {
      schedule = value();
    } else if (a == "--runs") {
      const char *v = value();
      if (!ParseNumber(v, &d) || d < 1 || d != static_cast<int>(d)) Bad("--runs: not 1 or more:", v);
      runs = static_cast<int>(d);
    } else if (!a.empty() && a[0] == '-') {
      Bad("unknown flag", argv[i]);
    } else {
      filters.push_back(a);
    }
  }
  zfuzz::explore::InitializeExplorer();
  kc::SetFatalHook(&OnFatal);
  if (list) {
    for (const Scenario &s : Catalogue())
      printf("%-64s %s\n", s.name.c_str(), s.covers.c_str());
    return 0;
  }
  if (!replay.empty() || !schedule.empty()) {
    if (replay.empty() || schedule.empty()) Bad("--replay and --schedule go together", nullptr);
    return Replay(replay, schedule, runs);
  }

  std::vector<const Scenario *> chosen;
  size_t index = 0;
  for (const Scenario &s : Catalogue()) {
    bool match = filters.empty();
    for (const std::string &f : filters) match = match || s.name.find(f) != std::string::npos;
    for (const std::string &k : skips) match = match && s.name != k;
    if (match && static_cast<int>(index++ % static_cast<size_t>(shards)) == shard)
      chosen.push_back(&s);
  }
  if (chosen.empty()) Bad("no scenario matches", filters.empty() ? nullptr : filters[0].c_str());

  using Clock = std::chrono::steady_clock;
  const Clock::time_point start = Clock::now();
  auto elapsed = [&] { return std::chrono::duration<double>(Clock::now() - start).count(); };
  printf("explore: %zu scenario(s), preemption bounds 0..%d in passes%s\n", chosen.size(), bound,
         reduce ? ", sleep sets" : ", no reduction");
  struct Row {
    kc::ExploreResult last;  // of the highest pass reached
    uint64_t executions = 0;
    double seconds = 0;
    bool done = false;  // failed, or out of time
  };
  std::vector<Row> rows(chosen.size());
  uint64_t executions = 0;
  int failed = 0;
  // Iterative context bounding across the catalogue: every scenario at bound 0, then 1, ...: a
  // bug that needs few preemptions is found before any deep search starts.
  std::vector<size_t> order(chosen.size());
  for (size_t i = 0; i < order.size(); i++) order[i] = i;
  std::vector<double> last_pass(chosen.size(), 0);
  for (int b = 0; b <= bound; b++) {
    // Cheapest first: a pass costs what the last one did, times a factor; deep searches last.
    std::sort(order.begin(), order.end(), [&](size_t x, size_t y) {
      return last_pass[x] != last_pass[y] ? last_pass[x] < last_pass[y] : x < y;
    });
    for (size_t i : order) {
      Row &row = rows[i];
      if (row.done) continue;
      const Scenario *s = chosen[i];
      double left = total > 0 ? total - elapsed() : 0;
      if (total > 0 && left <= 0) {
        row.done = true;
        continue;
      }
      double budget = per_scenario > 0 ? per_scenario - row.seconds : 0;
      if (per_scenario > 0 && budget <= 0) {
        row.done = true;
        continue;
      }
      if (total > 0 && (budget == 0 || left < budget)) budget = left;
      g_current = s;
      g_bound = b;
      Runner runner(*s);
      kc::ExploreOptions options;
      options.first_bound = b;
      options.preemption_bound = b;
      options.reduce = reduce;
      options.max_seconds = budget;
      double next_progress = elapsed() + progress_every;
      options.progress = [&](uint64_t n, int) {
        if (progress_every <= 0 || elapsed() < next_progress) return;
        next_progress = elapsed() + progress_every;
        printf("explore: ... bound %d, %s: %llu executions, %.0fs into the run\n", b,
               s->name.c_str(), static_cast<unsigned long long>(n), elapsed());
        fflush(stdout);
      };
      kc::ExploreResult r = runner.Explore(options);
      g_current = nullptr;
      row.last = r;
      last_pass[i] = r.seconds;
      row.executions += r.executions;
      row.seconds += r.seconds;
      executions += r.executions;
      if (r.failed) {
        row.done = true;
        failed++;
        printf("\n== FAILED: %s (%s) at preemption bound %d, after %.2fs ==\n%s\n"
               "== interleaving (%llu preemptions) ==\n%sreplay: explore --replay '%s' "
               "--schedule %s\n\n",
               s->name.c_str(), s->covers.c_str(), b, elapsed(), r.failure.c_str(),
               static_cast<unsigned long long>(r.failure_preemptions), r.interleaving.c_str(),
               s->name.c_str(), r.schedule.c_str());
        fflush(stdout);
      } else if (!r.complete) {
        row.done = true;  // out of time at this bound
      }
    }
    printf("explore: pass at bound %d done: %llu executions so far, %.1fs\n", b,
           static_cast<unsigned long long>(executions), elapsed());
    fflush(stdout);
  }
  int incomplete = 0;
  std::string json_rows;
  for (size_t i = 0; i < chosen.size(); i++) {
    const Row &row = rows[i];
    const kc::ExploreResult &r = row.last;
    const bool complete = !r.failed && r.complete && r.bound_reached == bound;
    const char *verdict = r.failed ? "FAILED" : complete ? "ok" : "incomplete";
    incomplete += !r.failed && !complete;
    printf("  %-64s %-10s %8llu executions  %6.2fs  longest %llu points\n",
           chosen[i]->name.c_str(), verdict, static_cast<unsigned long long>(row.executions),
           row.seconds, static_cast<unsigned long long>(r.max_points));
    if (!json.empty()) {
      json_rows += std::string(json_rows.empty() ? "" : ",\n") + "  {\"scenario\": " +
                   JsonString(chosen[i]->name) + ", \"verdict\": \"" + verdict +
                   "\", \"executions\": " + std::to_string(row.executions) +
                   ", \"seconds\": " + std::to_string(row.seconds) +
                   ", \"bound_reached\": " + std::to_string(r.bound_reached) +
                   ", \"max_points\": " + std::to_string(r.max_points) +
                   ", \"failure\": " + JsonString(r.failure) +
                   ", \"schedule\": " + JsonString(r.schedule) +
                   ", \"preemptions\": " + std::to_string(r.failure_preemptions) + "}";
    }
  }
  std::string &rows_json = json_rows;
  double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  printf("explore: %zu scenario(s), %llu executions in %.1fs: %d failed, %d incomplete\n",
         chosen.size(), static_cast<unsigned long long>(executions), seconds, failed, incomplete);
  if (!json.empty()) {
    FILE *f = fopen(json.c_str(), "w");
    if (f == nullptr) {
      fprintf(stderr, "explore: error: cannot write --json %s\n", json.c_str());
      return 2;
    }
    fprintf(f, "{\"bound\": %d, \"seconds\": %.3f, \"scenarios\": [\n%s\n]}\n", bound, seconds,
            rows_json.c_str());
    fclose(f);
  }
  return failed ? 1 : 0;
}

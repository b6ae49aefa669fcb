// SPDX-License-Identifier: GPL-2.0-only
// DeterministicScheduler: one thread at a time, switching where a strategy says.
#include "zpool/kernel/scheduler.h"

#include <stdio.h>
#include <string.h>

#include <algorithm>
#include <atomic>
#include <string>
#include <thread>

#include "zpool/kernel/kernel.h"

namespace kc {

namespace {

std::atomic<DeterministicScheduler *> g_active{nullptr};
std::atomic<DeterministicScheduler::SwitchObserver> g_observer{nullptr};
thread_local int t_index = -1;  // this thread's index in the active scheduler, or -1

uint64_t SplitMix64(uint64_t &state) {
  uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// "unsigned long zs_malloc(struct zs_pool *, size_t, gfp_t)" -> "zs_malloc".
std::string ShortFunction(const char *pretty) {
  std::string s = pretty ? pretty : "?";
  for (const char *noise : {"(anonymous namespace)::", "kc::"}) {
    for (size_t at; (at = s.find(noise)) != std::string::npos;) s.erase(at, strlen(noise));
  }
  size_t paren = s.find('(');
  if (paren != std::string::npos) s.resize(paren);
  size_t space = s.rfind(' ');
  if (space != std::string::npos) s.erase(0, space + 1);
  while (!s.empty() && (s[0] == '*' || s[0] == '&')) s.erase(0, 1);  // a returned pointer
  return s.empty() ? "?" : s;
}

std::string DescribePoint(const SchedPoint &p) {
  std::string out = ShortFunction(p.site.function_name());
  out += " ";
  out += SiteBaseName(p.site);
  out += " ";
  out += SchedEventName(p.event);
  return out;
}

}  // namespace

bool Decision::IsEnabled(int t) const {
  return std::find(enabled.begin(), enabled.end(), t) != enabled.end();
}

// ---- strategies ---------------------------------------------------------------------------------

bool InputStrategy::Next(uint8_t *byte) {
  if (next_ >= bytes_.size()) return false;
  *byte = bytes_[next_++];
  return true;
}

int InputStrategy::Pick(const Decision &d) {
  uint8_t byte;
  if (d.must_leave) {
    if (d.enabled.empty()) return -1;
    if (Next(&byte)) return d.enabled[byte % d.enabled.size()];
    // Out of decisions: the next thread after this one in index order (a true round-robin:
    // every thread gets its turn, so a waiter cannot keep missing the one that would progress).
    for (int c : d.enabled)
      if (c > d.current) return c;
    return d.enabled.front();
  }
  if (!Next(&byte) || byte < kStayThreshold) return d.current;
  // Switch to thread (byte % live threads), which may be this one or a waiting one.
  int live[kMaxScheduledThreads];
  int n = 0;
  for (int i = 0; i < static_cast<int>(d.threads.size()); i++)
    if (d.threads[static_cast<size_t>(i)].alive) live[n++] = i;
  return live[byte % n];
}

PctStrategy::PctStrategy(std::vector<int> priorities, std::vector<uint64_t> change_points)
    : initial_(priorities),
      priorities_(std::move(priorities)),
      change_points_(std::move(change_points)) {}

PctStrategy PctStrategy::FromSeed(uint64_t seed, int nthreads, int depth, uint64_t max_steps) {
  uint64_t state = seed;
  depth = std::max(depth, 1);
  std::vector<int> priorities(static_cast<size_t>(nthreads));
  for (int i = 0; i < nthreads; i++) priorities[static_cast<size_t>(i)] = depth + i;
  for (int i = nthreads - 1; i > 0; i--)  // Fisher-Yates
    std::swap(priorities[static_cast<size_t>(i)],
              priorities[SplitMix64(state) % static_cast<uint64_t>(i + 1)]);
  std::vector<uint64_t> points;
  for (int i = 1; i < depth; i++) points.push_back(1 + SplitMix64(state) % std::max<uint64_t>(max_steps, 1));
  return PctStrategy(std::move(priorities), std::move(points));
}

int PctStrategy::Pick(const Decision &d) {
  const uint64_t step = d.step + 1;  // the paper's steps are 1-based
  for (size_t i = 0; i < change_points_.size(); i++) {
    if (change_points_[i] == step && d.current >= 0 &&
        static_cast<size_t>(d.current) < priorities_.size())
      priorities_[static_cast<size_t>(d.current)] = static_cast<int>(i) + 1;
  }
  int best = -1;
  for (int t : d.enabled) {
    int p = static_cast<size_t>(t) < priorities_.size() ? priorities_[static_cast<size_t>(t)] : 0;
    if (best < 0 || p > priorities_[static_cast<size_t>(best)]) best = t;
  }
  return best;
}

std::string PctStrategy::Describe() const {
  std::string out = "d=" + std::to_string(depth()) + " priorities";
  for (size_t i = 0; i < initial_.size(); i++)
    out += (i ? "," : " ") + std::to_string(initial_[i]);
  out += " change points";
  if (change_points_.empty()) out += " none";
  for (size_t i = 0; i < change_points_.size(); i++)
    out += (i ? "," : " ") + std::to_string(change_points_[i]);
  return out;
}

int ReplayStrategy::Pick(const Decision &d) {
  if (d.step < choices_.size()) {
    int c = choices_[d.step];
    if (static_cast<size_t>(c) < d.threads.size() && d.threads[static_cast<size_t>(c)].alive &&
        !(c == d.current && d.must_leave))
      return c;
  }
  if (d.step < choices_.size()) divergences_++;
  if (!d.must_leave) return d.current;
  return d.enabled.empty() ? -1 : d.enabled.front();
}

std::string FormatSchedule(std::span<const uint8_t> choices) {
  std::string out;
  for (size_t i = 0; i < choices.size();) {
    size_t j = i;
    while (j < choices.size() && choices[j] == choices[i]) j++;
    if (!out.empty()) out += '.';
    out += std::to_string(choices[i]) + "x" + std::to_string(j - i);
    i = j;
  }
  return out.empty() ? "-" : out;
}

bool ParseSchedule(const std::string &text, std::vector<uint8_t> *choices, std::string *error) {
  choices->clear();
  if (text == "-") return true;
  if (text.empty() || text.back() == '.') {
    *error = "bad schedule run '' (expected THREADxCOUNT, e.g. 0x14.1x6)";
    return false;
  }
  size_t i = 0;
  while (i < text.size()) {
    size_t end = text.find('.', i);
    if (end == std::string::npos) end = text.size();
    std::string run = text.substr(i, end - i);
    size_t x = run.find('x');
    char *stop = nullptr;
    unsigned long thread = 0, count = 0;
    bool ok = x != std::string::npos && x > 0 && x + 1 < run.size();
    if (ok) {
      thread = strtoul(run.c_str(), &stop, 10);
      ok = stop == run.c_str() + x && thread < kMaxScheduledThreads;
    }
    if (ok) {
      count = strtoul(run.c_str() + x + 1, &stop, 10);
      ok = *stop == '\0' && count > 0 && count <= (1u << 24);
    }
    if (!ok) {
      *error = "bad schedule run '" + run + "' (expected THREADxCOUNT, e.g. 0x14.1x6)";
      return false;
    }
    choices->insert(choices->end(), count, static_cast<uint8_t>(thread));
    i = end + 1;
  }
  return true;
}

// ---- the runtime --------------------------------------------------------------------------------

DeterministicScheduler::DeterministicScheduler(std::span<const uint8_t> decisions)
    : own_(std::make_unique<InputStrategy>(decisions)), strategy_(*own_), options_() {}

DeterministicScheduler::DeterministicScheduler(ScheduleStrategy &strategy, Options options)
    : strategy_(strategy), options_(options) {}

DeterministicScheduler::~DeterministicScheduler() = default;

DeterministicScheduler::SwitchObserver DeterministicScheduler::SetSwitchObserver(
    SwitchObserver observer) {
  return g_observer.exchange(observer, std::memory_order_acq_rel);
}

void DeterministicScheduler::Hook(const SchedPoint &point) {
  if (t_index < 0) return;  // not one of our threads
  DeterministicScheduler *self = g_active.load(std::memory_order_acquire);
  if (self != nullptr) self->OnPoint(t_index, point);
}

void DeterministicScheduler::OnFatal() {
  DeterministicScheduler *self = g_active.load(std::memory_order_acquire);
  if (self == nullptr) return;
  // The failing thread holds the baton (or, for a deadlock report, mu_ itself): the others are
  // parked, so the state can be read as it is.
  std::string text = "== schedule (" + std::string(self->strategy_.name()) + ", " +
                     std::to_string(self->points_) + " points, " +
                     std::to_string(self->preemptions_) + " preemptions) ==\n";
  text += self->FormatInterleaving();
  text += "schedule: " + FormatSchedule(self->choices_) + "\n";
  fputs(text.c_str(), stderr);
  fflush(stderr);
  if (self->previous_fatal_ != nullptr) self->previous_fatal_();  // the caller's own context
}

void DeterministicScheduler::WakeWaitersLocked(int self, const void *obj) {
  if (obj == nullptr) return;
  for (size_t t = 0; t < threads_.size(); t++) {
    if (static_cast<int>(t) != self && threads_[t].waiting && waiting_on_[t] == obj)
      threads_[t].waiting = false;
  }
}

void DeterministicScheduler::OnPoint(int self, const SchedPoint &point) {
  std::unique_lock<std::mutex> lock(mu_);
  points_++;
  if (options_.max_steps != 0 && points_ > options_.max_steps) {
    // Not pr_err: a harness may silence the console, and this is the finding's headline.
    fprintf(stderr,
            "DeterministicScheduler: more than %llu scheduling points in one run (a livelock, or "
            "a scenario that does not end)\n",
            static_cast<unsigned long long>(options_.max_steps));
    BUG();
  }
  ThreadView &me = threads_[static_cast<size_t>(self)];
  me.pending = point;
  if (prologue_ == self) {  // at its first point: the next thread runs to its own
    EndPrologueStepLocked(lock, self);
    return;
  }
  if (point.event == SchedEvent::kWait) {
    me.waiting = true;
    waiting_on_[static_cast<size_t>(self)] = point.obj;
    DecideLocked(lock, self, &point, /*must_leave=*/true);
    return;
  }
  me.waiting = false;
  waiting_on_[static_cast<size_t>(self)] = nullptr;
  wait_rounds_ = 0;
  WakeWaitersLocked(self, point.obj);
  DecideLocked(lock, self, &point, /*must_leave=*/false);
}

void DeterministicScheduler::DecideLocked(std::unique_lock<std::mutex> &lock, int self,
                                          const SchedPoint *point, bool must_leave) {
  const size_t n = threads_.size();
  int live = 0;
  for (const ThreadView &t : threads_) live += t.alive;
  if (must_leave && threads_[static_cast<size_t>(self)].alive &&
      ++wait_rounds_ > kMaxWaitRounds * std::max(live, 1)) {
    std::string states;
    for (size_t i = 0; i < n; i++) {
      char buf[200];
      snprintf(buf, sizeof(buf), " thread %zu: %s%s%s;", i,
               !threads_[i].alive ? "finished" : (threads_[i].waiting ? "waiting at " : "runnable"),
               threads_[i].alive && threads_[i].waiting ? SiteBaseName(threads_[i].pending.site)
                                                        : "",
               "");
      states += buf;
    }
    fprintf(stderr,
            "DeterministicScheduler: deadlock: every live thread keeps waiting after %d "
            "hand-offs;%s\n",
            wait_rounds_, states.c_str());
    BUG();
  }
  int enabled[kMaxScheduledThreads];
  int count = 0;
  for (size_t t = 0; t < n; t++)
    if (threads_[t].alive && !threads_[t].waiting && !(must_leave && static_cast<int>(t) == self))
      enabled[count++] = static_cast<int>(t);
  if (count == 0) {  // every live thread waits: all of them re-check
    for (size_t t = 0; t < n; t++)
      if (threads_[t].alive && !(must_leave && static_cast<int>(t) == self))
        enabled[count++] = static_cast<int>(t);
  }
  int next = -1;
  if (count > 0) {
    Decision d;
    d.current = self;
    d.must_leave = must_leave;
    d.step = choices_.size();
    d.threads = std::span<const ThreadView>(threads_.data(), n);
    d.enabled = std::span<const int>(enabled, static_cast<size_t>(count));
    next = strategy_.Pick(d);
    bool valid = next >= 0 && static_cast<size_t>(next) < n &&
                 threads_[static_cast<size_t>(next)].alive && !(must_leave && next == self);
    if (!valid) next = enabled[0];
  }
  const bool preempted = next >= 0 && next != self && !must_leave;
  if (next >= 0) choices_.push_back(static_cast<uint8_t>(next));
  if (steps_.size() >= options_.record_steps && !steps_.empty()) {
    size_t drop = steps_.size() / 2;
    steps_.erase(steps_.begin(), steps_.begin() + static_cast<std::ptrdiff_t>(drop));
    steps_dropped_ += drop;
  }
  SchedPoint at = point ? *point : SchedPoint{SchedEvent::kYield, nullptr, Site{}};
  steps_.push_back(Step{self, at, next, preempted});
  if (next == self) return;
  if (preempted) preemptions_++;
  if (next >= 0) {
    if (SwitchObserver observer = g_observer.load(std::memory_order_acquire))
      observer(self, at, next, threads_[static_cast<size_t>(next)].pending, preempted);
    trace_.push_back(next);
  }
  running_ = next;
  cv_.notify_all();
  if (threads_[static_cast<size_t>(self)].alive) cv_.wait(lock, [&] { return running_ == self; });
}

void DeterministicScheduler::EndPrologueStepLocked(std::unique_lock<std::mutex> &lock, int self) {
  // Thread `self` reached its first point (or ended before any): hand the baton to the next
  // thread's prologue; after the last, the first live thread makes the first decision at the
  // point it is parked at. No decision, no preemption: these switches only move threads to where
  // they would be anyway.
  const int n = static_cast<int>(threads_.size());
  int next = self + 1;
  while (next < n && !threads_[static_cast<size_t>(next)].alive) next++;
  if (next < n) {
    prologue_ = next;
  } else {
    prologue_ = -1;
    next = 0;
    while (next < n && !threads_[static_cast<size_t>(next)].alive) next++;
    if (next == n) next = -1;
    first_decision_ = next;
  }
  if (next != self) {
    running_ = next;
    cv_.notify_all();
    if (!threads_[static_cast<size_t>(self)].alive) return;
    cv_.wait(lock, [&] { return running_ == self; });
  }
  if (first_decision_ == self) {
    first_decision_ = -1;
    const SchedPoint at = threads_[static_cast<size_t>(self)].pending;
    DecideLocked(lock, self, &at, /*must_leave=*/false);
  }
}

void DeterministicScheduler::ThreadMain(int self, const std::function<void()> &body) {
  t_index = self;
  {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return running_ == self; });
  }
  body();
  t_index = -1;
  std::unique_lock<std::mutex> lock(mu_);
  threads_[static_cast<size_t>(self)].alive = false;
  threads_[static_cast<size_t>(self)].waiting = false;
  wait_rounds_ = 0;
  if (prologue_ == self) {  // ended before its first point
    EndPrologueStepLocked(lock, self);
    return;
  }
  DecideLocked(lock, self, nullptr, /*must_leave=*/true);
}

void DeterministicScheduler::Run(std::vector<std::function<void()>> bodies) {
  DeterministicScheduler *expected = nullptr;
  BUG_ON(!g_active.compare_exchange_strong(expected, this));  // one scheduler at a time
  BUG_ON(bodies.size() > kMaxScheduledThreads);
  SchedHook previous = SetSchedHook(&DeterministicScheduler::Hook);
  previous_fatal_ = SetFatalHook(&DeterministicScheduler::OnFatal);
  size_t n = bodies.size();
  {
    std::lock_guard<std::mutex> guard(mu_);
    threads_.assign(n, ThreadView{});
    for (ThreadView &t : threads_) t.alive = true;
    waiting_on_.assign(n, nullptr);
    running_ = n > 0 ? 0 : -1;
    prologue_ = options_.run_to_first_point && n > 1 ? 0 : -1;
    if (n > 0) trace_.push_back(0);
  }
  std::vector<std::thread> threads;
  threads.reserve(n);
  for (size_t i = 0; i < n; i++)
    threads.emplace_back([this, i, &bodies] { ThreadMain(static_cast<int>(i), bodies[i]); });
  for (auto &t : threads) t.join();
  SetFatalHook(previous_fatal_);
  SetSchedHook(previous);
  g_active.store(nullptr, std::memory_order_release);
}

std::string DeterministicScheduler::FormatInterleaving(size_t max_lines) const {
  // Stretches: consecutive steps of one thread, ending where it was switched out or finished.
  struct Stretch {
    int thread;
    const Step *first;
    const Step *last;
    size_t points;
  };
  std::vector<Stretch> stretches;
  for (const Step &s : steps_) {
    if (stretches.empty() || stretches.back().thread != s.thread ||
        stretches.back().last->next != s.thread) {
      stretches.push_back(Stretch{s.thread, &s, &s, 1});
    } else {
      stretches.back().last = &s;
      stretches.back().points++;
    }
  }
  const size_t n = threads_.size();
  const size_t width = n <= 2 ? 58 : (n <= 3 ? 40 : 30);
  std::string out;
  for (size_t t = 0; t < std::min<size_t>(n, 4); t++) {
    std::string head = "t" + std::to_string(t);
    out += head + std::string(t + 1 < std::min<size_t>(n, 4) ? width - head.size() : 0, ' ');
  }
  out += "\n";
  size_t begin = stretches.size() > max_lines ? stretches.size() - max_lines : 0;
  if (begin > 0 || steps_dropped_ > 0)
    out += "... (" + std::to_string(begin) + " earlier stretches not shown)\n";
  auto cell = [&](int thread, const std::string &text) {
    size_t col = static_cast<size_t>(thread);
    std::string line;
    if (col < 4) {
      line = std::string(col * width, ' ') + text;
    } else {
      line = "t" + std::to_string(thread) + ": " + text;
    }
    out += line + "\n";
  };
  for (size_t i = begin; i < stretches.size(); i++) {
    const Stretch &s = stretches[i];
    bool finished = s.last->point.obj == nullptr && s.last->point.site.line() == 0;
    std::string first = DescribePoint(s.first->point);
    cell(s.thread, first);
    if (s.points > 1 || finished) {
      std::string last = finished ? "(finished)" : DescribePoint(s.last->point);
      cell(s.thread, " .. " + last + " (" + std::to_string(s.points) + " points)");
    }
    if (s.last->preempted) cell(s.thread, " ~~ preempted here ~~");
  }
  return out;
}

}  // namespace kc

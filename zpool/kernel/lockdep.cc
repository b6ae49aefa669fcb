// SPDX-License-Identifier: GPL-2.0-only
// The lock-order checker (in the spirit of the kernel's lockdep).
//
// State: a per-thread stack of held locks, and a process-wide graph over lock classes where an
// edge B -> A means "A was taken while B was held". The hot path (every acquire) reads one atomic
// byte per held lock to see whether its edge is known; only a new edge takes the graph mutex,
// records the stack that created it, and searches for a path A ->* B, which would close a cycle:
// an inversion. The inversion is reported once per pair of classes, with the current stack and
// the stack that recorded the first edge of the opposite path.
#include <stdio.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "zpool/kernel/lock.h"
#include "zpool/kernel/percpu.h"
#include "zpool/kernel/stack.h"

namespace kc {

namespace {

std::atomic<unsigned> g_next_class_id{1};

struct Held {
  const LockClass *cls;
  const void *lock;
  lockdep::Mode mode;
};

thread_local Held t_held[kMaxHeldLocks];
thread_local int t_depth = 0;
thread_local int t_overflow = 0;  // acquisitions beyond kMaxHeldLocks (not tracked)

std::atomic<bool> g_enabled{true};

// edge[b][a] != 0: a was taken while b was held.
std::atomic<unsigned char> g_edge[kMaxLockClasses][kMaxLockClasses];
std::atomic<unsigned char> g_reported[kMaxLockClasses][kMaxLockClasses];

struct Graph {
  std::mutex mu;
  // The stack that first recorded each edge (index b * kMaxLockClasses + a).
  std::unique_ptr<StackTrace> edge_stack[kMaxLockClasses * kMaxLockClasses];
  const char *class_name[kMaxLockClasses] = {};
  std::vector<unsigned> recorded;  // indices of the edges set, so a reset touches only those
};

Graph &graph() {
  static Graph *g = new Graph();  // never destroyed: locks may be used during exit
  return *g;
}

// Depth-first search for a path from -> ... -> to over recorded edges. REQUIRES: graph().mu.
bool FindPath(unsigned from, unsigned to, std::vector<unsigned> &path,
              std::vector<bool> &seen) {
  if (from == to) {
    path.push_back(to);
    return true;
  }
  if (seen[from]) return false;
  seen[from] = true;
  for (unsigned next = 1; next < kMaxLockClasses; next++) {
    if (g_edge[from][next].load(std::memory_order_relaxed) && FindPath(next, to, path, seen)) {
      path.push_back(from);
      return true;
    }
  }
  return false;
}

void RecordEdge(const LockClass &held, const LockClass &acquired) {
  unsigned b = held.id(), a = acquired.id();
  Graph &g = graph();
  std::string report;
  {
    std::lock_guard<std::mutex> guard(g.mu);
    if (g_edge[b][a].load(std::memory_order_relaxed)) return;
    g.class_name[a] = acquired.name();
    g.class_name[b] = held.name();
    auto stack = std::make_unique<StackTrace>(CaptureStack());
    // Does a path a ->* b exist? Then b -> a closes a cycle.
    std::vector<unsigned> path;
    std::vector<bool> seen(kMaxLockClasses, false);
    bool inversion = FindPath(a, b, path, seen);
    if (inversion && !g_reported[b][a].load(std::memory_order_relaxed)) {
      g_reported[b][a].store(1, std::memory_order_relaxed);
      g_reported[a][b].store(1, std::memory_order_relaxed);
      // path is reversed: path.back() == a, path.front() == b.
      std::string order;
      for (auto it = path.rbegin(); it != path.rend(); ++it) {
        if (!order.empty()) order += " -> ";
        order += g.class_name[*it] ? g.class_name[*it] : "?";
      }
      unsigned first_to = path.size() >= 2 ? path[path.size() - 2] : b;
      const StackTrace *earlier = g.edge_stack[a * kMaxLockClasses + first_to].get();
      char head[512];
      snprintf(head, sizeof(head),
               "possible circular locking dependency detected: tid %d is acquiring %s while "
               "holding %s, but the order %s was recorded before",
               static_cast<int>(CurrentTid()), acquired.name(), held.name(), order.c_str());
      report = head;
      report += "\nthis acquisition:\n" + FormatStack(*stack);
      report += "the earlier order, first seen at:\n";
      report += earlier ? FormatStack(*earlier) : std::string("    (no stack)\n");
    }
    g.edge_stack[b * kMaxLockClasses + a] = std::move(stack);
    g.recorded.push_back(b * kMaxLockClasses + a);
    g_edge[b][a].store(1, std::memory_order_release);
  }
  if (!report.empty()) WARN(true, "%s", report.c_str());
}

}  // namespace

unsigned LockClass::id() const {
  unsigned id = id_.load(std::memory_order_acquire);
  if (__builtin_expect(id != 0, 1)) return id;
  unsigned fresh = g_next_class_id.fetch_add(1, std::memory_order_relaxed);
  BUG_ON(fresh >= kMaxLockClasses);  // raise kMaxLockClasses
  if (id_.compare_exchange_strong(id, fresh, std::memory_order_acq_rel)) return fresh;
  return id;  // another thread assigned it first (one id is wasted)
}

namespace lockdep {

void Acquire(const LockClass &cls, const void *lock, Mode mode) {
  if (g_enabled.load(std::memory_order_relaxed)) {
    unsigned a = cls.id();
    for (int i = 0; i < t_depth; i++) {
      const Held &h = t_held[i];
      unsigned b = h.cls->id();
      if (b == a) continue;  // nesting within a class is not an ordering between classes
      if (!g_edge[b][a].load(std::memory_order_acquire)) RecordEdge(*h.cls, cls);
    }
  }
  if (t_depth >= kMaxHeldLocks) {
    WARN_ONCE(true, "lockdep: more than %d locks held; not tracking %s", kMaxHeldLocks,
              cls.name());
    t_overflow++;
    return;
  }
  t_held[t_depth++] = Held{&cls, lock, mode};
}

// A successful trylock: joins this thread's held locks (so later acquisitions record edges from
// it) but records no edge itself, as in the kernel's lockdep ("trylock can be done in any order":
// it never waits, so it cannot close a deadlock cycle).
void AcquireTrylock(const LockClass &cls, const void *lock, Mode mode) {
  if (t_depth >= kMaxHeldLocks) {
    WARN_ONCE(true, "lockdep: more than %d locks held; not tracking %s", kMaxHeldLocks,
              cls.name());
    t_overflow++;
    return;
  }
  t_held[t_depth++] = Held{&cls, lock, mode};
}

bool Release(const void *lock) {
  for (int i = t_depth - 1; i >= 0; i--) {
    if (t_held[i].lock == lock) {
      for (int j = i; j + 1 < t_depth; j++) t_held[j] = t_held[j + 1];
      t_depth--;
      return true;
    }
  }
  if (t_overflow > 0) {
    t_overflow--;
    return true;
  }
  WARN(true, "lockdep: tid %d releases lock %p, which it does not hold",
       static_cast<int>(CurrentTid()), lock);
  return false;
}

bool Holds(const void *lock) {
  for (int i = 0; i < t_depth; i++)
    if (t_held[i].lock == lock) return true;
  return false;
}

int HeldCount() { return t_depth + t_overflow; }

void SetEnabled(bool enabled) { g_enabled.store(enabled, std::memory_order_relaxed); }
bool Enabled() { return g_enabled.load(std::memory_order_relaxed); }

void ResetForTest() {
  Graph &g = graph();
  std::lock_guard<std::mutex> guard(g.mu);
  for (unsigned index : g.recorded) {
    unsigned b = index / kMaxLockClasses, a = index % kMaxLockClasses;
    g_edge[b][a].store(0, std::memory_order_relaxed);
    g_reported[b][a].store(0, std::memory_order_relaxed);
    g_reported[a][b].store(0, std::memory_order_relaxed);
    g.edge_stack[index].reset();
  }
  g.recorded.clear();
}

}  // namespace lockdep

}  // namespace kc

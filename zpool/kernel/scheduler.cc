// SPDX-License-Identifier: GPL-2.0-only
// DeterministicScheduler: one thread at a time, switching where the decision bytes say.
#include "zpool/kernel/scheduler.h"

#include <stdio.h>

#include <atomic>
#include <string>
#include <thread>

#include "zpool/kernel/kernel.h"

namespace kc {

namespace {

std::atomic<DeterministicScheduler *> g_active{nullptr};
thread_local int t_index = -1;  // this thread's index in the active scheduler, or -1

}  // namespace

DeterministicScheduler::DeterministicScheduler(std::span<const uint8_t> decisions)
    : decisions_(decisions.begin(), decisions.end()) {}

DeterministicScheduler::~DeterministicScheduler() = default;

bool DeterministicScheduler::NextByte(uint8_t *byte) {
  if (next_decision_ >= decisions_.size()) return false;
  *byte = decisions_[next_decision_++];
  return true;
}

void DeterministicScheduler::Hook(SchedEvent event, const void *) {
  if (t_index < 0) return;  // not one of our threads
  DeterministicScheduler *self = g_active.load(std::memory_order_acquire);
  if (self != nullptr) self->OnPoint(t_index, event);
}

int DeterministicScheduler::PickLocked(int self, bool must_leave) {
  std::vector<int> candidates;
  // A thread that cannot progress hands over to one that can: waiting threads are candidates
  // only when every other live thread waits too (else two waiters could pass the baton back and
  // forth forever while the lock holder never runs).
  if (must_leave) {
    for (int i = 0; i < static_cast<int>(alive_.size()); i++)
      if (alive_[i] && i != self && !waiting_[static_cast<size_t>(i)]) candidates.push_back(i);
  }
  if (candidates.empty()) {
    for (int i = 0; i < static_cast<int>(alive_.size()); i++)
      if (alive_[i] && (!must_leave || i != self)) candidates.push_back(i);
  }
  if (candidates.empty()) return self;
  uint8_t byte;
  if (NextByte(&byte)) return candidates[byte % candidates.size()];
  // Out of decisions: the next candidate after this thread in index order (a true round-robin:
  // every thread gets its turn, so a waiter cannot keep missing the one that would progress).
  for (int c : candidates)
    if (c > self) return c;
  return candidates.front();
}

void DeterministicScheduler::SwitchLocked(std::unique_lock<std::mutex> &lock, int self,
                                          bool must_leave) {
  int next = PickLocked(self, must_leave);
  if (must_leave) {
    if (++wait_rounds_ > kMaxWaitRounds * static_cast<int>(alive_.size())) {
      std::string states;
      for (size_t i = 0; i < alive_.size(); i++) {
        char buf[64];
        snprintf(buf, sizeof(buf), " thread %zu: %s;", i,
                 !alive_[i] ? "finished" : (waiting_[i] ? "waiting" : "runnable"));
        states += buf;
      }
      pr_err("DeterministicScheduler: deadlock: every live thread keeps waiting after %d "
             "hand-offs;%s\n",
             wait_rounds_, states.c_str());
      BUG();
    }
  }
  if (next == self) return;
  running_ = next;
  trace_.push_back(next);
  cv_.notify_all();
  cv_.wait(lock, [&] { return running_ == self; });
}

void DeterministicScheduler::OnPoint(int self, SchedEvent event) {
  std::unique_lock<std::mutex> lock(mu_);
  points_++;
  if (event == SchedEvent::kWait) {
    waiting_[static_cast<size_t>(self)] = true;
    SwitchLocked(lock, self, /*must_leave=*/true);
    return;
  }
  waiting_[static_cast<size_t>(self)] = false;
  wait_rounds_ = 0;
  uint8_t byte;
  if (!NextByte(&byte) || byte < kStayThreshold) return;
  // Switch to thread (byte % live threads), which may be this one.
  std::vector<int> live;
  for (int i = 0; i < static_cast<int>(alive_.size()); i++)
    if (alive_[i]) live.push_back(i);
  int next = live[byte % live.size()];
  if (next == self) return;
  running_ = next;
  trace_.push_back(next);
  cv_.notify_all();
  cv_.wait(lock, [&] { return running_ == self; });
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
  alive_[static_cast<size_t>(self)] = false;
  waiting_[static_cast<size_t>(self)] = false;
  wait_rounds_ = 0;
  int next = PickLocked(self, /*must_leave=*/true);
  if (next != self) {
    running_ = next;
    trace_.push_back(next);
  } else {
    running_ = -1;  // everyone finished
  }
  cv_.notify_all();
}

void DeterministicScheduler::Run(std::vector<std::function<void()>> bodies) {
  DeterministicScheduler *expected = nullptr;
  BUG_ON(!g_active.compare_exchange_strong(expected, this));  // one scheduler at a time
  SchedHook previous = SetSchedHook(&DeterministicScheduler::Hook);
  size_t n = bodies.size();
  {
    std::lock_guard<std::mutex> guard(mu_);
    alive_.assign(n, true);
    waiting_.assign(n, false);
    running_ = n > 0 ? 0 : -1;
    if (n > 0) trace_.push_back(0);
  }
  std::vector<std::thread> threads;
  threads.reserve(n);
  for (size_t i = 0; i < n; i++)
    threads.emplace_back([this, i, &bodies] { ThreadMain(static_cast<int>(i), bodies[i]); });
  for (auto &t : threads) t.join();
  SetSchedHook(previous);
  g_active.store(nullptr, std::memory_order_release);
}

}  // namespace kc

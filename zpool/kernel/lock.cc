// SPDX-License-Identifier: GPL-2.0-only
// spinlock_t, rwlock_t and struct mutex.
#include "zpool/kernel/lock.h"

#include "zpool/kernel/percpu.h"
#include "zpool/kernel/sched.h"

using kc::lockdep::Mode;
using kc::SchedEvent;

namespace {

int Me() { return static_cast<int>(kc::CurrentTid()); }

}  // namespace

// ---- spinlock_t ------------------------------------------------------------------------------

void spinlock_t::lock(const kc::Site &site) {
  kc::sched_point(SchedEvent::kLockAcquire, this, site);
  kc::internal::PreemptCountInc();
  BUG_ON(owner_.load(std::memory_order_relaxed) == Me());  // recursion: a self-deadlock
  kc::lockdep::Acquire(*cls_, this, Mode::kExclusive);
  if (locked_.exchange(1, std::memory_order_acquire) != 0) lock_slow(site);
  owner_.store(Me(), std::memory_order_relaxed);
}

void spinlock_t::lock_slow(const kc::Site &site) {
  waiters_.fetch_add(1, std::memory_order_relaxed);
  unsigned spins = 0;
  do {
    while (locked_.load(std::memory_order_relaxed) != 0) kc::WaitSpin(spins, this, site);
  } while (locked_.exchange(1, std::memory_order_acquire) != 0);
  waiters_.fetch_sub(1, std::memory_order_relaxed);
}

bool spinlock_t::trylock(const kc::Site &site) {
  kc::sched_point(SchedEvent::kLockAcquire, this, site);
  if (locked_.load(std::memory_order_relaxed) != 0 ||
      locked_.exchange(1, std::memory_order_acquire) != 0)
    return false;
  kc::internal::PreemptCountInc();
  kc::lockdep::AcquireTrylock(*cls_, this, Mode::kExclusive);
  owner_.store(Me(), std::memory_order_relaxed);
  return true;
}

void spinlock_t::unlock(const kc::Site &site) {
  if (WARN(owner_.load(std::memory_order_relaxed) != Me(),
           "spin_unlock of %s (%p) by tid %d, which does not hold it (holder tid %d)",
           cls_->name(), static_cast<void *>(this), Me(),
           owner_.load(std::memory_order_relaxed)))
    return;
  owner_.store(0, std::memory_order_relaxed);
  locked_.store(0, std::memory_order_release);
  kc::lockdep::Release(this);
  kc::internal::PreemptCountDec();
  kc::sched_point(SchedEvent::kLockRelease, this, site);
}

bool spinlock_t::held_by_me() const { return owner_.load(std::memory_order_relaxed) == Me(); }

void lockdep_assert_held(const spinlock_t *lock) {
  WARN(!lock->held_by_me(), "lockdep_assert_held: %s (%p) is not held by tid %d",
       lock->lock_class().name(), static_cast<const void *>(lock), Me());
}

// ---- rwlock_t --------------------------------------------------------------------------------

void rwlock_t::read_lock(const kc::Site &site) {
  kc::sched_point(SchedEvent::kLockAcquire, this, site);
  kc::internal::PreemptCountInc();
  kc::lockdep::Acquire(*cls_, this, Mode::kShared);
  unsigned spins = 0;
  bool counted = false;
  for (;;) {
    uint32_t s = state_.load(std::memory_order_relaxed);
    if ((s & kWriter) == 0 && writers_waiting_.load(std::memory_order_relaxed) == 0) {
      if (state_.compare_exchange_weak(s, s + 1, std::memory_order_acquire)) break;
      continue;
    }
    if (!counted) {
      waiters_.fetch_add(1, std::memory_order_relaxed);
      counted = true;
    }
    kc::WaitSpin(spins, this, site);
  }
  if (counted) waiters_.fetch_sub(1, std::memory_order_relaxed);
}

bool rwlock_t::read_trylock(const kc::Site &site) {
  kc::sched_point(SchedEvent::kLockAcquire, this, site);
  // Fails only for a writer (holding or waiting), as the kernel's: a CAS lost to another reader
  // is retried.
  uint32_t s = state_.load(std::memory_order_relaxed);
  do {
    if ((s & kWriter) != 0 || writers_waiting_.load(std::memory_order_relaxed) != 0) return false;
  } while (!state_.compare_exchange_weak(s, s + 1, std::memory_order_acquire));
  kc::internal::PreemptCountInc();
  kc::lockdep::AcquireTrylock(*cls_, this, Mode::kShared);
  return true;
}

void rwlock_t::read_unlock(const kc::Site &site) {
  if (WARN(!kc::lockdep::Holds(this) || (state_.load(std::memory_order_relaxed) & kReaders) == 0,
           "read_unlock of %s (%p) by tid %d, which does not hold it for reading", cls_->name(),
           static_cast<void *>(this), Me()))
    return;
  state_.fetch_sub(1, std::memory_order_release);
  kc::lockdep::Release(this);
  kc::internal::PreemptCountDec();
  kc::sched_point(SchedEvent::kLockRelease, this, site);
}

void rwlock_t::write_lock(const kc::Site &site) {
  kc::sched_point(SchedEvent::kLockAcquire, this, site);
  kc::internal::PreemptCountInc();
  BUG_ON(writer_.load(std::memory_order_relaxed) == Me());  // recursion: a self-deadlock
  kc::lockdep::Acquire(*cls_, this, Mode::kExclusive);
  uint32_t expected = 0;
  if (!state_.compare_exchange_strong(expected, kWriter, std::memory_order_acquire)) {
    writers_waiting_.fetch_add(1, std::memory_order_relaxed);
    waiters_.fetch_add(1, std::memory_order_relaxed);
    unsigned spins = 0;
    do {
      kc::WaitSpin(spins, this, site);
      expected = 0;
    } while (!state_.compare_exchange_weak(expected, kWriter, std::memory_order_acquire));
    waiters_.fetch_sub(1, std::memory_order_relaxed);
    writers_waiting_.fetch_sub(1, std::memory_order_relaxed);
  }
  writer_.store(Me(), std::memory_order_relaxed);
}

bool rwlock_t::write_trylock(const kc::Site &site) {
  kc::sched_point(SchedEvent::kLockAcquire, this, site);
  uint32_t expected = 0;
  if (!state_.compare_exchange_strong(expected, kWriter, std::memory_order_acquire)) return false;
  kc::internal::PreemptCountInc();
  kc::lockdep::AcquireTrylock(*cls_, this, Mode::kExclusive);
  writer_.store(Me(), std::memory_order_relaxed);
  return true;
}

void rwlock_t::write_unlock(const kc::Site &site) {
  if (WARN(writer_.load(std::memory_order_relaxed) != Me(),
           "write_unlock of %s (%p) by tid %d, which does not hold it (writer tid %d)",
           cls_->name(), static_cast<void *>(this), Me(),
           writer_.load(std::memory_order_relaxed)))
    return;
  writer_.store(0, std::memory_order_relaxed);
  state_.fetch_and(~kWriter, std::memory_order_release);
  kc::lockdep::Release(this);
  kc::internal::PreemptCountDec();
  kc::sched_point(SchedEvent::kLockRelease, this, site);
}

bool rwlock_t::held_by_me() const { return kc::lockdep::Holds(this); }

// ---- struct mutex --------------------------------------------------------------------------------

void mutex::lock(const kc::Site &site) {
  might_sleep();
  kc::sched_point(SchedEvent::kLockAcquire, this, site);
  BUG_ON(owner_.load(std::memory_order_relaxed) == Me());  // recursion: a self-deadlock
  kc::lockdep::Acquire(*cls_, this, Mode::kExclusive);
  uint32_t expected = 0;
  if (!state_.compare_exchange_strong(expected, 1, std::memory_order_acquire)) {
    if (kc::SchedHookInstalled()) {
      unsigned spins = 0;
      do {
        kc::WaitSpin(spins, this, site);
        expected = 0;
      } while (!state_.compare_exchange_weak(expected, 1, std::memory_order_acquire));
    } else {
      // Futex-style: mark "locked with waiters" and sleep until woken.
      while (state_.exchange(2, std::memory_order_acquire) != 0) state_.wait(2);
    }
  }
  owner_.store(Me(), std::memory_order_relaxed);
}

bool mutex::trylock(const kc::Site &site) {
  kc::sched_point(SchedEvent::kLockAcquire, this, site);
  uint32_t expected = 0;
  if (!state_.compare_exchange_strong(expected, 1, std::memory_order_acquire)) return false;
  kc::lockdep::AcquireTrylock(*cls_, this, Mode::kExclusive);
  owner_.store(Me(), std::memory_order_relaxed);
  return true;
}

void mutex::unlock(const kc::Site &site) {
  if (WARN(owner_.load(std::memory_order_relaxed) != Me(),
           "mutex_unlock of %s (%p) by tid %d, which does not hold it (holder tid %d)",
           cls_->name(), static_cast<void *>(this), Me(),
           owner_.load(std::memory_order_relaxed)))
    return;
  owner_.store(0, std::memory_order_relaxed);
  if (state_.exchange(0, std::memory_order_release) == 2) state_.notify_one();
  kc::lockdep::Release(this);
  kc::sched_point(SchedEvent::kLockRelease, this, site);
}

bool mutex::held_by_me() const { return owner_.load(std::memory_order_relaxed) == Me(); }

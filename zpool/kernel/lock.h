// SPDX-License-Identifier: GPL-2.0-only
// Locks: spinlock_t, rwlock_t and the sleeping mutex, with lock classes and an order checker.
//
// - Every lock belongs to a LockClass (lockdep's "class": all zs_pool class locks are one class).
//   The order checker records, the first time a thread takes class A while holding class B, that
//   B comes before A. A later acquisition that closes a cycle in that order (A while holding B
//   after B while holding A, or a longer cycle) WARNs once for that pair, printing the stack of
//   the acquisition now and the stack that first recorded the opposite order. It needs no
//   deadlock to happen: one run of each order is enough.
// - spin_lock/read_lock/write_lock put the thread in atomic context (preempt_count), where
//   might_sleep() WARNs; mutex_lock() calls might_sleep() itself.
// - Every acquire and release is a scheduling point (zpool/kernel/sched.h), and a contended wait
//   hands control to the scheduling hook when one is installed, so a test that decides the
//   interleaving cannot deadlock on a lock held by a thread it parked.
// - Releasing a lock this thread does not hold WARNs and does nothing.
//
// Cost with the checker on, per uncontended acquire+release: one pass over this thread's held
// locks (usually 0-2) reading one atomic byte per pair; the graph is only touched the first time
// a pair of classes is seen (bench/lock_bench.cc prints the figures).
#ifndef ZPOOL_KERNEL_LOCK_H_
#define ZPOOL_KERNEL_LOCK_H_

#include <atomic>
#include <cstdint>

#include "zpool/kernel/kernel.h"
#include "zpool/kernel/sched.h"
#include "zpool/kernel/thread_annotations.h"

namespace kc {

// A lock class. Declare one per kind of lock, with static storage; constant-initialised, so it
// can be used during static initialisation of other objects.
class LockClass {
 public:
  constexpr explicit LockClass(const char *name) : name_(name) {}
  LockClass(const LockClass &) = delete;
  LockClass &operator=(const LockClass &) = delete;

  const char *name() const { return name_; }
  // 1..kMaxLockClasses-1, assigned on first use.
  unsigned id() const;

 private:
  const char *name_;
  mutable std::atomic<unsigned> id_{0};
};

inline constexpr unsigned kMaxLockClasses = 128;
inline constexpr int kMaxHeldLocks = 48;

namespace lockdep {

enum class Mode : unsigned char { kExclusive, kShared };

// Called before a lock is taken (so an inversion is reported before it can deadlock).
void Acquire(const LockClass &cls, const void *lock, Mode mode);
// A successful trylock: joins this thread's held locks (later acquisitions record edges from it)
// but records no edge itself, as in the kernel: a trylock never waits, so it cannot close a
// deadlock cycle.
void AcquireTrylock(const LockClass &cls, const void *lock, Mode mode);
// Called after a lock was released. Returns false (after a WARN) if this thread does not hold it.
bool Release(const void *lock);
// Whether this thread holds `lock`.
bool Holds(const void *lock);
// Number of locks this thread holds.
int HeldCount();

// Turns the checker off or on (process-wide; for measuring its cost). On by default.
void SetEnabled(bool enabled);
bool Enabled();
// Forgets every recorded order and re-arms the once-per-pair reports. Tests only.
void ResetForTest();

}  // namespace lockdep

}  // namespace kc

// ---- spinlock_t ------------------------------------------------------------------------------
class KC_CAPABILITY("spinlock") spinlock_t {
 public:
  constexpr explicit spinlock_t(const kc::LockClass &cls) : cls_(&cls) {}
  spinlock_t(const spinlock_t &) = delete;
  spinlock_t &operator=(const spinlock_t &) = delete;

  void lock(const kc::Site &site = kc::Site::current()) KC_ACQUIRE();
  void unlock(const kc::Site &site = kc::Site::current()) KC_RELEASE();
  bool trylock(const kc::Site &site = kc::Site::current()) KC_TRY_ACQUIRE(true);
  bool is_locked() const { return locked_.load(std::memory_order_relaxed) != 0; }
  bool is_contended() const { return waiters_.load(std::memory_order_relaxed) != 0; }
  // True when the calling thread holds this lock.
  bool held_by_me() const;
  const kc::LockClass &lock_class() const { return *cls_; }

 private:
  void lock_slow(const kc::Site &site);

  const kc::LockClass *cls_;
  std::atomic<uint32_t> locked_{0};
  std::atomic<uint32_t> waiters_{0};
  std::atomic<int> owner_{0};  // tid of the holder (for held_by_me and bad-unlock checks)
};

inline void spin_lock(spinlock_t *lock, const kc::Site &site = kc::Site::current()) KC_ACQUIRE(*lock) {
  lock->lock(site);
}
inline void spin_unlock(spinlock_t *lock, const kc::Site &site = kc::Site::current()) KC_RELEASE(*lock) {
  lock->unlock(site);
}
inline bool spin_trylock(spinlock_t *lock, const kc::Site &site = kc::Site::current()) KC_TRY_ACQUIRE(true, *lock) {
  return lock->trylock(site);
}
inline bool spin_is_contended(const spinlock_t *lock) { return lock->is_contended(); }
// Asserts (for the analysis and, with a WARN, at run time) that this thread holds the lock.
void lockdep_assert_held(const spinlock_t *lock) KC_ASSERT_CAPABILITY(*lock);

// ---- rwlock_t --------------------------------------------------------------------------------
// A spinning reader-writer lock. Writers have priority: once a writer waits, new readers wait,
// so compaction (a writer) cannot be starved by a stream of maps (readers).
class KC_CAPABILITY("rwlock") rwlock_t {
 public:
  constexpr explicit rwlock_t(const kc::LockClass &cls) : cls_(&cls) {}
  rwlock_t(const rwlock_t &) = delete;
  rwlock_t &operator=(const rwlock_t &) = delete;

  void read_lock(const kc::Site &site = kc::Site::current()) KC_ACQUIRE_SHARED();
  void read_unlock(const kc::Site &site = kc::Site::current()) KC_RELEASE_SHARED();
  bool read_trylock(const kc::Site &site = kc::Site::current()) KC_TRY_ACQUIRE_SHARED(true);
  void write_lock(const kc::Site &site = kc::Site::current()) KC_ACQUIRE();
  void write_unlock(const kc::Site &site = kc::Site::current()) KC_RELEASE();
  bool write_trylock(const kc::Site &site = kc::Site::current()) KC_TRY_ACQUIRE(true);
  // Someone waits for the lock (the kernel's rwlock_is_contended).
  bool is_contended() const { return waiters_.load(std::memory_order_relaxed) != 0; }
  bool is_write_locked() const {
    return (state_.load(std::memory_order_relaxed) & kWriter) != 0;
  }
  int readers() const { return static_cast<int>(state_.load(std::memory_order_relaxed) & kReaders); }
  bool held_by_me() const;
  const kc::LockClass &lock_class() const { return *cls_; }

 private:
  static constexpr uint32_t kWriter = 1u << 31;
  static constexpr uint32_t kReaders = kWriter - 1;

  const kc::LockClass *cls_;
  std::atomic<uint32_t> state_{0};  // kWriter | number of readers
  std::atomic<uint32_t> waiters_{0};
  std::atomic<uint32_t> writers_waiting_{0};
  std::atomic<int> writer_{0};  // tid of the writer
};

inline void read_lock(rwlock_t *lock, const kc::Site &site = kc::Site::current()) KC_ACQUIRE_SHARED(*lock) {
  lock->read_lock(site);
}
inline void read_unlock(rwlock_t *lock, const kc::Site &site = kc::Site::current()) KC_RELEASE_SHARED(*lock) {
  lock->read_unlock(site);
}
inline void write_lock(rwlock_t *lock, const kc::Site &site = kc::Site::current()) KC_ACQUIRE(*lock) {
  lock->write_lock(site);
}
inline void write_unlock(rwlock_t *lock, const kc::Site &site = kc::Site::current()) KC_RELEASE(*lock) {
  lock->write_unlock(site);
}
inline bool read_trylock(rwlock_t *lock, const kc::Site &site = kc::Site::current()) KC_TRY_ACQUIRE_SHARED(true, *lock) {
  return lock->read_trylock(site);
}
inline bool write_trylock(rwlock_t *lock, const kc::Site &site = kc::Site::current()) KC_TRY_ACQUIRE(true, *lock) {
  return lock->write_trylock(site);
}
inline bool rwlock_is_contended(const rwlock_t *lock) { return lock->is_contended(); }

// ---- struct mutex (sleeping) -------------------------------------------------------------------
// A sleeping lock: taking it may sleep, so mutex_lock() calls might_sleep() (WARN in atomic
// context). Holding it does not put the thread in atomic context. Waits block in the OS (futex)
// unless a scheduling hook is installed, in which case they go through the hook.
struct KC_CAPABILITY("mutex") mutex {
 public:
  constexpr explicit mutex(const kc::LockClass &cls) : cls_(&cls) {}
  mutex(const mutex &) = delete;
  mutex &operator=(const mutex &) = delete;

  void lock(const kc::Site &site = kc::Site::current()) KC_ACQUIRE();
  void unlock(const kc::Site &site = kc::Site::current()) KC_RELEASE();
  bool trylock(const kc::Site &site = kc::Site::current()) KC_TRY_ACQUIRE(true);
  bool is_locked() const { return state_.load(std::memory_order_relaxed) != 0; }
  bool held_by_me() const;

 private:
  const kc::LockClass *cls_;
  std::atomic<uint32_t> state_{0};  // 0 free, 1 locked, 2 locked with waiters
  std::atomic<int> owner_{0};
};

inline void mutex_lock(struct mutex *lock, const kc::Site &site = kc::Site::current()) KC_ACQUIRE(*lock) {
  lock->lock(site);
}
inline void mutex_unlock(struct mutex *lock, const kc::Site &site = kc::Site::current()) KC_RELEASE(*lock) {
  lock->unlock(site);
}
inline bool mutex_trylock(struct mutex *lock, const kc::Site &site = kc::Site::current()) KC_TRY_ACQUIRE(true, *lock) {
  return lock->trylock(site);
}
inline bool mutex_is_locked(const struct mutex *lock) { return lock->is_locked(); }

// ---- RAII guards -------------------------------------------------------------------------------
namespace kc {

class KC_SCOPED_CAPABILITY SpinLockGuard {
 public:
  explicit SpinLockGuard(spinlock_t &lock, const Site &site = Site::current()) KC_ACQUIRE(lock)
      : lock_(lock), site_(site) {
    lock_.lock(site_);
  }
  ~SpinLockGuard() KC_RELEASE() { lock_.unlock(site_); }
  SpinLockGuard(const SpinLockGuard &) = delete;
  SpinLockGuard &operator=(const SpinLockGuard &) = delete;

 private:
  spinlock_t &lock_;
  Site site_;
};

class KC_SCOPED_CAPABILITY ReadLockGuard {
 public:
  explicit ReadLockGuard(rwlock_t &lock, const Site &site = Site::current())
      KC_ACQUIRE_SHARED(lock)
      : lock_(lock), site_(site) {
    lock_.read_lock(site_);
  }
  ~ReadLockGuard() KC_RELEASE() { lock_.read_unlock(site_); }
  ReadLockGuard(const ReadLockGuard &) = delete;
  ReadLockGuard &operator=(const ReadLockGuard &) = delete;

 private:
  rwlock_t &lock_;
  Site site_;
};

class KC_SCOPED_CAPABILITY WriteLockGuard {
 public:
  explicit WriteLockGuard(rwlock_t &lock, const Site &site = Site::current()) KC_ACQUIRE(lock)
      : lock_(lock), site_(site) {
    lock_.write_lock(site_);
  }
  ~WriteLockGuard() KC_RELEASE() { lock_.write_unlock(site_); }
  WriteLockGuard(const WriteLockGuard &) = delete;
  WriteLockGuard &operator=(const WriteLockGuard &) = delete;

 private:
  rwlock_t &lock_;
  Site site_;
};

class KC_SCOPED_CAPABILITY MutexGuard {
 public:
  explicit MutexGuard(struct mutex &lock, const Site &site = Site::current()) KC_ACQUIRE(lock)
      : lock_(lock), site_(site) {
    lock_.lock(site_);
  }
  ~MutexGuard() KC_RELEASE() { lock_.unlock(site_); }
  MutexGuard(const MutexGuard &) = delete;
  MutexGuard &operator=(const MutexGuard &) = delete;

 private:
  struct mutex &lock_;
  Site site_;
};

}  // namespace kc

#endif  // ZPOOL_KERNEL_LOCK_H_

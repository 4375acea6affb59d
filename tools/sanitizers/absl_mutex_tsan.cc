// ThreadSanitizer annotations for Debian's uninstrumented absl::Mutex and absl::CondVar (linked
// into every executable of a -DPODGATE_SANITIZE=thread build only; see docs/architecture.md,
// "Sanitizer builds").
//
// Debian's libabsl_synchronization.so is not built with -fsanitize=thread, so TSan sees neither
// its lock and unlock nor its futex waits, and reports every access guarded by an absl::Mutex as a
// race. This file defines the public lock, unlock, wait and signal functions under their exact
// mangled names (nm -D libabsl_synchronization.so.20220623). The executable's definitions take
// precedence over the library's for every caller: podgate's code, gRPC (whose grpc_core::Mutex
// and gpr_mu are absl::Mutex) and abseil itself (absl::Notification calls Lock/LockWhen/Unlock
// through the PLT). Each one forwards to the library's function (dlsym(RTLD_NEXT)) between the
// annotations abseil itself uses when it is built with TSan (__tsan_mutex_pre_lock/post_lock,
// pre_unlock/post_unlock, destroy), so TSan models each absl::Mutex as a reader-writer mutex:
// happens-before from every unlock to the next lock, lock-order (deadlock) checks included.
//
// Calls made inside an annotated call (AwaitWithTimeout -> AwaitWithDeadline, CondVar waits
// relocking) only forward. Between pre_lock and post_lock TSan ignores the thread's accesses,
// which covers the absl::Condition functions abseil evaluates while it waits (they only read
// state guarded by the mutex); the waiter acquires the mutex's history when the wait returns.
//
// The mangled names contain Debian's inline namespace (debian3, abseil 20220623): with another
// abseil the lookup fails and the process stops at its first lock with a message saying so.

#include <dlfcn.h>
#include <sanitizer/tsan_interface.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"

namespace {

using absl::Condition;
using absl::Duration;
using absl::Time;

// How deep this thread is in annotated calls; nested calls only forward.
thread_local int depth = 0;

// The mutexes this thread holds in reader mode (an Await or CondVar wait must release and
// reacquire in the mode it holds). Small: nobody holds many reader locks at once.
constexpr int kMaxReaderHeld = 32;
thread_local void* reader_held[kMaxReaderHeld];
thread_local int reader_count = 0;

void NoteReaderLocked(void* mu) {
  if (reader_count < kMaxReaderHeld) {
    reader_held[reader_count++] = mu;
  }
}

void NoteReaderUnlocked(void* mu) {
  for (int i = reader_count - 1; i >= 0; --i) {
    if (reader_held[i] == mu) {
      reader_held[i] = reader_held[--reader_count];
      return;
    }
  }
}

unsigned HeldMode(void* mu) {
  for (int i = 0; i < reader_count; ++i) {
    if (reader_held[i] == mu) {
      return __tsan_mutex_read_lock;
    }
  }
  return 0;
}

void* Real(const char* name) {
  void* fn = dlsym(RTLD_NEXT, name);
  if (fn == nullptr) {
    std::fprintf(stderr,
                 "absl_mutex_tsan: %s not found in the abseil this process loaded (the "
                 "interposer is written for Debian's abseil 20220623): %s\n",
                 name, dlerror());
    std::abort();
  }
  return fn;
}

// The library's function `name`, typed as a free function taking `this` first (Itanium ABI).
template <typename Fn>
Fn RealFn(const char* name) {
  return reinterpret_cast<Fn>(Real(name));
}

struct Nested {
  Nested() { ++depth; }
  ~Nested() { --depth; }
  Nested(const Nested&) = delete;
  Nested& operator=(const Nested&) = delete;
};

// Lock-like calls: the mutex is held (in `mode`) when `call` returns; `call` returns whatever
// the real function returns.
template <typename Call>
auto Acquire(void* mu, unsigned mode, Call call) {
  if (depth > 0) {
    return call();
  }
  Nested nested;
  __tsan_mutex_pre_lock(mu, mode);
  auto result = call();
  __tsan_mutex_post_lock(mu, mode, 0);
  if (mode & __tsan_mutex_read_lock) {
    NoteReaderLocked(mu);
  }
  return result;
}

// Waits entered with the mutex held and left with it held again (Await*, CondVar::Wait*).
template <typename Call>
auto Rewait(void* mu, Call call) {
  if (depth > 0) {
    return call();
  }
  Nested nested;
  const unsigned mode = HeldMode(mu);
  __tsan_mutex_pre_unlock(mu, mode);
  __tsan_mutex_post_unlock(mu, mode);
  __tsan_mutex_pre_lock(mu, mode);
  auto result = call();
  __tsan_mutex_post_lock(mu, mode, 0);
  return result;
}

void Release(void* mu, unsigned mode, void (*real)(void*)) {
  if (depth > 0) {
    real(mu);
    return;
  }
  Nested nested;
  if (mode & __tsan_mutex_read_lock) {
    NoteReaderUnlocked(mu);
  }
  __tsan_mutex_pre_unlock(mu, mode);
  real(mu);
  __tsan_mutex_post_unlock(mu, mode);
}

bool TryAcquire(void* mu, unsigned mode, bool (*real)(void*)) {
  if (depth > 0) {
    return real(mu);
  }
  Nested nested;
  __tsan_mutex_pre_lock(mu, mode | __tsan_mutex_try_lock);
  const bool locked = real(mu);
  __tsan_mutex_post_lock(
      mu, mode | __tsan_mutex_try_lock | (locked ? 0 : __tsan_mutex_try_lock_failed), 0);
  if (locked && (mode & __tsan_mutex_read_lock)) {
    NoteReaderLocked(mu);
  }
  return locked;
}

// After a CondVar wait (outside the ignored region of the relock): what the signaller did before
// signalling happens before what the waiter does next.
void Signalled(void* cv) {
  if (depth == 0) {
    __tsan_acquire(cv);
  }
}

using Void = void (*)(void*);
using Bool = bool (*)(void*);
using WithCond = void (*)(void*, const Condition&);
using WithCondDuration = bool (*)(void*, const Condition&, Duration);
using WithCondTime = bool (*)(void*, const Condition&, Time);

#define PODGATE_REAL(type, name)               \
  static const type real = RealFn<type>(name); \
  (void)0

}  // namespace

// The definitions, under the library's mangled names. `mu` is the Mutex (or CondVar) `this`.
#define PODGATE_ABSL(sym) __asm__(sym) __attribute__((visibility("default"), used))

extern "C" {

void podgate_absl_mutex_lock(void* mu) PODGATE_ABSL("_ZN4absl7debian35Mutex4LockEv");
void podgate_absl_mutex_lock(void* mu) {
  PODGATE_REAL(Void, "_ZN4absl7debian35Mutex4LockEv");
  Acquire(mu, 0, [&] {
    real(mu);
    return 0;
  });
}

void podgate_absl_mutex_reader_lock(void* mu) PODGATE_ABSL("_ZN4absl7debian35Mutex10ReaderLockEv");
void podgate_absl_mutex_reader_lock(void* mu) {
  PODGATE_REAL(Void, "_ZN4absl7debian35Mutex10ReaderLockEv");
  Acquire(mu, __tsan_mutex_read_lock, [&] {
    real(mu);
    return 0;
  });
}

void podgate_absl_mutex_unlock(void* mu) PODGATE_ABSL("_ZN4absl7debian35Mutex6UnlockEv");
void podgate_absl_mutex_unlock(void* mu) {
  PODGATE_REAL(Void, "_ZN4absl7debian35Mutex6UnlockEv");
  Release(mu, 0, real);
}

void podgate_absl_mutex_reader_unlock(void* mu)
    PODGATE_ABSL("_ZN4absl7debian35Mutex12ReaderUnlockEv");
void podgate_absl_mutex_reader_unlock(void* mu) {
  PODGATE_REAL(Void, "_ZN4absl7debian35Mutex12ReaderUnlockEv");
  Release(mu, __tsan_mutex_read_lock, real);
}

bool podgate_absl_mutex_try_lock(void* mu) PODGATE_ABSL("_ZN4absl7debian35Mutex7TryLockEv");
bool podgate_absl_mutex_try_lock(void* mu) {
  PODGATE_REAL(Bool, "_ZN4absl7debian35Mutex7TryLockEv");
  return TryAcquire(mu, 0, real);
}

bool podgate_absl_mutex_reader_try_lock(void* mu)
    PODGATE_ABSL("_ZN4absl7debian35Mutex13ReaderTryLockEv");
bool podgate_absl_mutex_reader_try_lock(void* mu) {
  PODGATE_REAL(Bool, "_ZN4absl7debian35Mutex13ReaderTryLockEv");
  return TryAcquire(mu, __tsan_mutex_read_lock, real);
}

void podgate_absl_mutex_lock_when(void* mu, const Condition& cond)
    PODGATE_ABSL("_ZN4absl7debian35Mutex8LockWhenERKNS0_9ConditionE");
void podgate_absl_mutex_lock_when(void* mu, const Condition& cond) {
  PODGATE_REAL(WithCond, "_ZN4absl7debian35Mutex8LockWhenERKNS0_9ConditionE");
  Acquire(mu, 0, [&] {
    real(mu, cond);
    return 0;
  });
}

void podgate_absl_mutex_reader_lock_when(void* mu, const Condition& cond)
    PODGATE_ABSL("_ZN4absl7debian35Mutex14ReaderLockWhenERKNS0_9ConditionE");
void podgate_absl_mutex_reader_lock_when(void* mu, const Condition& cond) {
  PODGATE_REAL(WithCond, "_ZN4absl7debian35Mutex14ReaderLockWhenERKNS0_9ConditionE");
  Acquire(mu, __tsan_mutex_read_lock, [&] {
    real(mu, cond);
    return 0;
  });
}

bool podgate_absl_mutex_lock_when_timeout(void* mu, const Condition& cond, Duration timeout)
    PODGATE_ABSL("_ZN4absl7debian35Mutex19LockWhenWithTimeoutERKNS0_9ConditionENS0_8DurationE");
bool podgate_absl_mutex_lock_when_timeout(void* mu, const Condition& cond, Duration timeout) {
  PODGATE_REAL(WithCondDuration,
               "_ZN4absl7debian35Mutex19LockWhenWithTimeoutERKNS0_9ConditionENS0_8DurationE");
  return Acquire(mu, 0, [&] { return real(mu, cond, timeout); });
}

bool podgate_absl_mutex_lock_when_deadline(void* mu, const Condition& cond, Time deadline)
    PODGATE_ABSL("_ZN4absl7debian35Mutex20LockWhenWithDeadlineERKNS0_9ConditionENS0_4TimeE");
bool podgate_absl_mutex_lock_when_deadline(void* mu, const Condition& cond, Time deadline) {
  PODGATE_REAL(WithCondTime,
               "_ZN4absl7debian35Mutex20LockWhenWithDeadlineERKNS0_9ConditionENS0_4TimeE");
  return Acquire(mu, 0, [&] { return real(mu, cond, deadline); });
}

bool podgate_absl_mutex_reader_lock_when_timeout(void* mu, const Condition& cond, Duration timeout)
    PODGATE_ABSL(
        "_ZN4absl7debian35Mutex25ReaderLockWhenWithTimeoutERKNS0_9ConditionENS0_8DurationE");
bool podgate_absl_mutex_reader_lock_when_timeout(void* mu, const Condition& cond,
                                                 Duration timeout) {
  PODGATE_REAL(WithCondDuration,
               "_ZN4absl7debian35Mutex25ReaderLockWhenWithTimeoutERKNS0_9ConditionENS0_8DurationE");
  return Acquire(mu, __tsan_mutex_read_lock, [&] { return real(mu, cond, timeout); });
}

bool podgate_absl_mutex_reader_lock_when_deadline(void* mu, const Condition& cond, Time deadline)
    PODGATE_ABSL("_ZN4absl7debian35Mutex26ReaderLockWhenWithDeadlineERKNS0_9ConditionENS0_4TimeE");
bool podgate_absl_mutex_reader_lock_when_deadline(void* mu, const Condition& cond, Time deadline) {
  PODGATE_REAL(WithCondTime,
               "_ZN4absl7debian35Mutex26ReaderLockWhenWithDeadlineERKNS0_9ConditionENS0_4TimeE");
  return Acquire(mu, __tsan_mutex_read_lock, [&] { return real(mu, cond, deadline); });
}

void podgate_absl_mutex_await(void* mu, const Condition& cond)
    PODGATE_ABSL("_ZN4absl7debian35Mutex5AwaitERKNS0_9ConditionE");
void podgate_absl_mutex_await(void* mu, const Condition& cond) {
  PODGATE_REAL(WithCond, "_ZN4absl7debian35Mutex5AwaitERKNS0_9ConditionE");
  Rewait(mu, [&] {
    real(mu, cond);
    return 0;
  });
}

bool podgate_absl_mutex_await_timeout(void* mu, const Condition& cond, Duration timeout)
    PODGATE_ABSL("_ZN4absl7debian35Mutex16AwaitWithTimeoutERKNS0_9ConditionENS0_8DurationE");
bool podgate_absl_mutex_await_timeout(void* mu, const Condition& cond, Duration timeout) {
  PODGATE_REAL(WithCondDuration,
               "_ZN4absl7debian35Mutex16AwaitWithTimeoutERKNS0_9ConditionENS0_8DurationE");
  return Rewait(mu, [&] { return real(mu, cond, timeout); });
}

bool podgate_absl_mutex_await_deadline(void* mu, const Condition& cond, Time deadline)
    PODGATE_ABSL("_ZN4absl7debian35Mutex17AwaitWithDeadlineERKNS0_9ConditionENS0_4TimeE");
bool podgate_absl_mutex_await_deadline(void* mu, const Condition& cond, Time deadline) {
  PODGATE_REAL(WithCondTime,
               "_ZN4absl7debian35Mutex17AwaitWithDeadlineERKNS0_9ConditionENS0_4TimeE");
  return Rewait(mu, [&] { return real(mu, cond, deadline); });
}

// Whether `caller` is code of this executable (podgate's), not of a shared library.
static bool FromExecutable(void* caller) {
  static const void* const self_base = [] {
    Dl_info info{};
    dladdr(reinterpret_cast<void*>(&FromExecutable), &info);
    return info.dli_fbase;
  }();
  Dl_info info{};
  return dladdr(caller, &info) != 0 && info.dli_fbase == self_base;
}

// Both destructor symbols. TSan forgets the mutex (a later mutex at the same address is new) and
// checks the destruction against the mutex's last use, for podgate's mutexes only: gRPC orders
// its own teardown (refcounts in its uninstrumented code) in ways TSan cannot see, so for a
// mutex destroyed by a library the destruction is not annotated (its memory, when freed, is
// forgotten by TSan anyway).
void podgate_absl_mutex_d1(void* mu) PODGATE_ABSL("_ZN4absl7debian35MutexD1Ev");
void podgate_absl_mutex_d1(void* mu) {
  PODGATE_REAL(Void, "_ZN4absl7debian35MutexD1Ev");
  if (FromExecutable(__builtin_return_address(0))) {
    __tsan_mutex_destroy(mu, 0);
  }
  real(mu);
}

void podgate_absl_mutex_d2(void* mu) PODGATE_ABSL("_ZN4absl7debian35MutexD2Ev");
void podgate_absl_mutex_d2(void* mu) {
  PODGATE_REAL(Void, "_ZN4absl7debian35MutexD2Ev");
  if (FromExecutable(__builtin_return_address(0))) {
    __tsan_mutex_destroy(mu, 0);
  }
  real(mu);
}

// CondVar: the wait releases and reacquires the mutex; a signal happens before the wake-up it
// causes.
void podgate_absl_condvar_wait(void* cv, void* mu)
    PODGATE_ABSL("_ZN4absl7debian37CondVar4WaitEPNS0_5MutexE");
void podgate_absl_condvar_wait(void* cv, void* mu) {
  using Fn = void (*)(void*, void*);
  PODGATE_REAL(Fn, "_ZN4absl7debian37CondVar4WaitEPNS0_5MutexE");
  Rewait(mu, [&] {
    real(cv, mu);
    return 0;
  });
  Signalled(cv);
}

bool podgate_absl_condvar_wait_timeout(void* cv, void* mu, Duration timeout)
    PODGATE_ABSL("_ZN4absl7debian37CondVar15WaitWithTimeoutEPNS0_5MutexENS0_8DurationE");
bool podgate_absl_condvar_wait_timeout(void* cv, void* mu, Duration timeout) {
  using Fn = bool (*)(void*, void*, Duration);
  PODGATE_REAL(Fn, "_ZN4absl7debian37CondVar15WaitWithTimeoutEPNS0_5MutexENS0_8DurationE");
  const bool timed_out = Rewait(mu, [&] { return real(cv, mu, timeout); });
  Signalled(cv);
  return timed_out;
}

bool podgate_absl_condvar_wait_deadline(void* cv, void* mu, Time deadline)
    PODGATE_ABSL("_ZN4absl7debian37CondVar16WaitWithDeadlineEPNS0_5MutexENS0_4TimeE");
bool podgate_absl_condvar_wait_deadline(void* cv, void* mu, Time deadline) {
  using Fn = bool (*)(void*, void*, Time);
  PODGATE_REAL(Fn, "_ZN4absl7debian37CondVar16WaitWithDeadlineEPNS0_5MutexENS0_4TimeE");
  const bool timed_out = Rewait(mu, [&] { return real(cv, mu, deadline); });
  Signalled(cv);
  return timed_out;
}

void podgate_absl_condvar_signal(void* cv) PODGATE_ABSL("_ZN4absl7debian37CondVar6SignalEv");
void podgate_absl_condvar_signal(void* cv) {
  PODGATE_REAL(Void, "_ZN4absl7debian37CondVar6SignalEv");
  __tsan_release(cv);
  real(cv);
}

void podgate_absl_condvar_signal_all(void* cv) PODGATE_ABSL("_ZN4absl7debian37CondVar9SignalAllEv");
void podgate_absl_condvar_signal_all(void* cv) {
  PODGATE_REAL(Void, "_ZN4absl7debian37CondVar9SignalAllEv");
  __tsan_release(cv);
  real(cv);
}

// absl::Notification: Notify releases on the notification's flag before setting it, and every
// wait that returns notified acquires on it. Its waits check the flag first without locking
// (inlined in the library), so the mutex annotations alone miss an already-notified wait. The
// flag follows the notification's mutex (abseil 20220623's layout, checked below).
static_assert(sizeof(absl::Notification) == sizeof(absl::Mutex) + sizeof(void*),
              "absl::Notification is {Mutex mutex_; std::atomic<bool> notified_yet_;}");
static void* NotificationFlag(const void* notification) {
  return const_cast<char*>(static_cast<const char*>(notification)) + sizeof(absl::Mutex);
}

void podgate_absl_notify(void* n) PODGATE_ABSL("_ZN4absl7debian312Notification6NotifyEv");
void podgate_absl_notify(void* n) {
  PODGATE_REAL(Void, "_ZN4absl7debian312Notification6NotifyEv");
  __tsan_release(NotificationFlag(n));
  real(n);
}

void podgate_absl_wait_for_notification(const void* n)
    PODGATE_ABSL("_ZNK4absl7debian312Notification19WaitForNotificationEv");
void podgate_absl_wait_for_notification(const void* n) {
  using Fn = void (*)(const void*);
  PODGATE_REAL(Fn, "_ZNK4absl7debian312Notification19WaitForNotificationEv");
  real(n);
  __tsan_acquire(NotificationFlag(n));
}

bool podgate_absl_wait_for_notification_timeout(const void* n, Duration timeout)
    PODGATE_ABSL("_ZNK4absl7debian312Notification30WaitForNotificationWithTimeoutENS0_8DurationE");
bool podgate_absl_wait_for_notification_timeout(const void* n, Duration timeout) {
  using Fn = bool (*)(const void*, Duration);
  PODGATE_REAL(Fn,
               "_ZNK4absl7debian312Notification30WaitForNotificationWithTimeoutENS0_8DurationE");
  const bool notified = real(n, timeout);
  if (notified) {
    __tsan_acquire(NotificationFlag(n));
  }
  return notified;
}

bool podgate_absl_wait_for_notification_deadline(const void* n, Time deadline)
    PODGATE_ABSL("_ZNK4absl7debian312Notification31WaitForNotificationWithDeadlineENS0_4TimeE");
bool podgate_absl_wait_for_notification_deadline(const void* n, Time deadline) {
  using Fn = bool (*)(const void*, Time);
  PODGATE_REAL(Fn, "_ZNK4absl7debian312Notification31WaitForNotificationWithDeadlineENS0_4TimeE");
  const bool notified = real(n, deadline);
  if (notified) {
    __tsan_acquire(NotificationFlag(n));
  }
  return notified;
}

// HasBeenNotified() (inline in the header) and the waits' fast path read the flag here.
bool podgate_absl_has_been_notified(const void* flag)
    PODGATE_ABSL("_ZN4absl7debian312Notification23HasBeenNotifiedInternalEPKSt6atomicIbE");
bool podgate_absl_has_been_notified(const void* flag) {
  const bool notified =
      static_cast<const std::atomic<bool>*>(flag)->load(std::memory_order_acquire);
  if (notified) {
    __tsan_acquire(const_cast<void*>(flag));
  }
  return notified;
}

}  // extern "C"

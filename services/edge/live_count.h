// How many objects of one kind are alive, for a shutdown that must wait until every one of them
// is gone (edge's audit follow streams and readiness probes hold connections of the I/O context
// that main destroys last).
#pragma once

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace podgate::edge {

class LiveCount {
 public:
  constexpr LiveCount() = default;
  LiveCount(const LiveCount&) = delete;
  LiveCount& operator=(const LiveCount&) = delete;

  // Counts its object from construction until its last member is gone when it is the object's
  // first member (destroyed after the others). A count dropped in the destructor's body would
  // let the waiter go on while later members (a timer of the I/O context) still exist.
  // A thread that posts an object's last reference to an I/O thread holds a Member of its own
  // until it returns: the posted handler may destroy the object at once, while the posting
  // thread still holds executor copies that must not outlive the I/O context.
  class Member {
   public:
    explicit Member(LiveCount& count) : count_(count) {
      absl::MutexLock lock(&count_.mu_);
      ++count_.live_;
    }
    ~Member() {
      absl::MutexLock lock(&count_.mu_);
      --count_.live_;
    }
    Member(const Member&) = delete;
    Member& operator=(const Member&) = delete;

   private:
    LiveCount& count_;
  };

  // Waits until none is alive or until `deadline`; true when none is.
  bool WaitNone(absl::Time deadline) {
    absl::MutexLock lock(&mu_);
    auto none = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return live_ == 0; };
    return mu_.AwaitWithDeadline(absl::Condition(&none), deadline);
  }

 private:
  absl::Mutex mu_{absl::kConstInit};
  int live_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace podgate::edge

// A process-wide timer queue: one thread runs callbacks at their deadlines, so that sessions,
// stream clients and limits can have timeouts without a thread each.
//
// Callbacks run on the timer thread and must not block (post real work elsewhere). Cancel()
// guarantees the callback will not start afterwards; a callback already running may finish.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <thread>
#include <utility>

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace podgate::runtime {

class TimerQueue {
 public:
  using Id = uint64_t;

  TimerQueue();
  // Stops the thread; pending callbacks do not run.
  ~TimerQueue();

  TimerQueue(const TimerQueue&) = delete;
  TimerQueue& operator=(const TimerQueue&) = delete;

  // Runs `fn` at `when` (or at once if it is past). Returns an id for Cancel.
  Id Schedule(absl::Time when, std::function<void()> fn);
  Id After(absl::Duration delay, std::function<void()> fn) {
    return Schedule(absl::Now() + delay, std::move(fn));
  }

  // Returns true when the callback was removed before it started.
  bool Cancel(Id id);

  // How many callbacks are waiting.
  size_t pending() const;

  // The shared instance, started on first use.
  static TimerQueue& Default();

 private:
  void Run();

  mutable std::mutex mu_;
  std::condition_variable cv_;
  // (deadline, id) → callback; ordered by deadline.
  std::map<std::pair<absl::Time, Id>, std::function<void()>> timers_;
  std::map<Id, absl::Time> deadlines_;
  Id next_id_ = 1;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace podgate::runtime

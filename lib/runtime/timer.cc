#include "runtime/timer.h"

namespace podgate::runtime {

TimerQueue::TimerQueue() : thread_([this] { Run(); }) {}

TimerQueue::~TimerQueue() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

TimerQueue::Id TimerQueue::Schedule(absl::Time when, std::function<void()> fn) {
  Id id;
  bool earliest;
  {
    std::lock_guard<std::mutex> lock(mu_);
    id = next_id_++;
    timers_.emplace(std::make_pair(when, id), std::move(fn));
    deadlines_.emplace(id, when);
    earliest = timers_.begin()->first.second == id;
  }
  if (earliest) {
    cv_.notify_all();
  }
  return id;
}

bool TimerQueue::Cancel(Id id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = deadlines_.find(id);
  if (it == deadlines_.end()) {
    return false;
  }
  timers_.erase({it->second, id});
  deadlines_.erase(it);
  return true;
}

size_t TimerQueue::pending() const {
  std::lock_guard<std::mutex> lock(mu_);
  return timers_.size();
}

TimerQueue& TimerQueue::Default() {
  static auto* queue = new TimerQueue();
  return *queue;
}

void TimerQueue::Run() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stop_) {
    if (timers_.empty()) {
      cv_.wait(lock);
      continue;
    }
    const absl::Time next = timers_.begin()->first.first;
    const absl::Time now = absl::Now();
    if (next > now) {
      cv_.wait_for(lock, absl::ToChronoNanoseconds(next - now));
      continue;
    }
    auto node = timers_.extract(timers_.begin());
    deadlines_.erase(node.key().second);
    lock.unlock();
    node.mapped()();
    lock.lock();
  }
}

}  // namespace podgate::runtime

// A fixed pool of threads with a bounded job queue, for the blocking store reads (Query,
// Verify) that must not run on gRPC's callback threads.
#pragma once

#include <deque>
#include <functional>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace podgate::audit {

class Executor {
 public:
  Executor(int threads, size_t max_queued);
  // Runs what is queued, then joins the threads.
  ~Executor();

  // False when the queue is full: the caller answers RESOURCE_EXHAUSTED.
  bool TrySubmit(std::function<void()> job);

 private:
  void Run();

  const size_t max_queued_;
  absl::Mutex mu_;
  std::deque<std::function<void()>> jobs_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
};

}  // namespace podgate::audit

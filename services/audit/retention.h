// Age-based retention: a thread that periodically removes records older than the retention
// period through Store::DeleteBefore, which keeps each chain verifiable by moving its
// checkpoint to the last removed record.
#pragma once

#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "audit/store.h"

namespace podgate::audit {

class Retention {
 public:
  // Runs a pass right away and then every `interval`; removes records stored more than
  // `keep` ago. With `sign` (the checkpointer's SignCut), every cut is signed.
  Retention(Store* store, absl::Duration keep, absl::Duration interval, CutSigner sign = nullptr);
  ~Retention();

 private:
  void Run();

  Store* const store_;
  const absl::Duration keep_;
  const absl::Duration interval_;
  const CutSigner sign_;
  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace podgate::audit

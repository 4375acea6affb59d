#include "audit/retention.h"

#include "runtime/log.h"

namespace podgate::audit {

Retention::Retention(Store* store, absl::Duration keep, absl::Duration interval, CutSigner sign)
    : store_(store), keep_(keep), interval_(interval), sign_(std::move(sign)), thread_([this] {
        Run();
      }) {}

Retention::~Retention() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  thread_.join();
}

void Retention::Run() {
  while (true) {
    absl::StatusOr<int64_t> removed =
        store_->DeleteBefore(absl::ToUnixMicros(absl::Now() - keep_), sign_);
    if (removed.ok()) {
      if (*removed > 0) {
        log::Info("retention removed records", {{"records", *removed}});
      }
    } else {
      log::Warn("retention failed", {{"error", std::string(removed.status().message())}});
    }
    absl::MutexLock lock(&mu_);
    if (mu_.AwaitWithTimeout(absl::Condition(&stopping_), interval_)) {
      return;
    }
  }
}

}  // namespace podgate::audit

#include "exec/credential.h"

#include <utility>

namespace podgate::exec {

namespace {

// Re-checks every 20 ms whether the fetch is over (or the wait is), then verifies once more.
void AwaitKeys(const auth::Verifier* verifier, runtime::TimerQueue* timers, std::string token,
               absl::Time deadline, std::function<void(absl::StatusOr<auth::VerifiedToken>)> done) {
  timers->After(absl::Milliseconds(20), [verifier, timers, token = std::move(token), deadline,
                                         done = std::move(done)]() mutable {
    if (verifier->KeysBeingFetched() && absl::Now() < deadline) {
      AwaitKeys(verifier, timers, std::move(token), deadline, std::move(done));
      return;
    }
    done(verifier->Verify(token));
  });
}

}  // namespace

void VerifyCredential(const auth::Verifier* verifier, runtime::TimerQueue* timers,
                      std::string token,
                      std::function<void(absl::StatusOr<auth::VerifiedToken>)> done) {
  absl::StatusOr<auth::VerifiedToken> verified = verifier->Verify(token);
  if (verified.ok() || auth::AuthFailureReason(verified.status()) != "unknown_key") {
    done(std::move(verified));
    return;
  }
  // The fetch may be over already: one more verification either way.
  AwaitKeys(verifier, timers, std::move(token), absl::Now() + kKeyFetchWait, std::move(done));
}

}  // namespace podgate::exec

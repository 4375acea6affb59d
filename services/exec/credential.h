// exec verifies the end user's credential itself wherever one arrives (a session's open,
// ListTargets): it never trusts a caller's word for who the user is.
//
// A token naming a key id that exec's key set lacks may come just after the identity provider
// rotated its key. Its refusal asked the key source to fetch the set again (rate-limited); the
// credential is then verified once more when that fetch is over, on the hub's timer thread so
// that no caller blocks, at most kKeyFetchWait later. A made-up key id within the rate limit
// asks for no fetch and is refused at the next timer tick.
#pragma once

#include <functional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "auth/jwt.h"
#include "runtime/timer.h"

namespace podgate::exec {

// How long a credential waits for a key set fetch its unknown key id asked for.
inline constexpr absl::Duration kKeyFetchWait = absl::Seconds(5);

// Calls `done` once with the verified credential or the refusal: at once, or (for an unknown
// key id) from `timers`' thread. `verifier` and `timers` must outlive the call.
void VerifyCredential(const auth::Verifier* verifier, runtime::TimerQueue* timers,
                      std::string token,
                      std::function<void(absl::StatusOr<auth::VerifiedToken>)> done);

}  // namespace podgate::exec

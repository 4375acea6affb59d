// Answers one authorization request against the policy version in force, applies the deciding
// rule's rate limit (rate_limiter.h), and records the decision's metrics and a log line.
// Shared by the unary and the streaming RPC.
//
// It runs once per decision, tens of thousands of times a second: what only a log line needs
// (the call's trace, whose new ids cost random bytes; the line's fields) is computed only when
// the line is written.
#pragma once

#include "absl/functional/function_ref.h"
#include "podgate/policy/v1/policy.pb.h"
#include "policy/policy_metrics.h"
#include "policy/policy_store.h"
#include "policy/rate_limiter.h"
#include "runtime/trace.h"

namespace podgate::policy {

class Authorizer {
 public:
  // Neither is owned; `metrics` may be null. Allowed decisions are logged at debug level and
  // denials at info: `log_allowed` says whether debug lines are written at all (the service's
  // --log_level is debug), so that a line the logger would drop is not built.
  Authorizer(const PolicyStore* store, PolicyMetrics* metrics, bool log_allowed = true)
      : store_(store), metrics_(metrics), log_allowed_(log_allowed) {}

  // `trace`: the calling session's trace (its ids go on the decision's log line), asked for
  // only when a line is logged.
  podgate::policy::v1::AuthorizeResponse Authorize(
      const podgate::policy::v1::AuthorizeRequest& request,
      absl::FunctionRef<runtime::TraceContext()> trace) const;
  podgate::policy::v1::AuthorizeResponse Authorize(
      const podgate::policy::v1::AuthorizeRequest& request,
      const runtime::TraceContext& trace = {}) const {
    return Authorize(request, [&trace] { return trace; });
  }

 private:
  const PolicyStore* store_;
  PolicyMetrics* metrics_;
  const bool log_allowed_;
  // Mutable: counting is the one side effect of answering.
  mutable RateLimiter limiter_;
};

}  // namespace podgate::policy

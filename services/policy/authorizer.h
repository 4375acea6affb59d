// Answers one authorization request against the policy version in force, applies the deciding
// rule's rate limit (rate_limiter.h), and records the decision's metrics and a log line.
// Shared by the unary and the streaming RPC.
#pragma once

#include "podgate/policy/v1/policy.pb.h"
#include "policy/policy_metrics.h"
#include "policy/policy_store.h"
#include "policy/rate_limiter.h"
#include "runtime/trace.h"

namespace podgate::policy {

class Authorizer {
 public:
  // Neither is owned; `metrics` may be null.
  Authorizer(const PolicyStore* store, PolicyMetrics* metrics) : store_(store), metrics_(metrics) {}

  // `trace`: the calling session's trace (its ids go on the decision's log line).
  podgate::policy::v1::AuthorizeResponse Authorize(
      const podgate::policy::v1::AuthorizeRequest& request,
      const runtime::TraceContext& trace = {}) const;

 private:
  const PolicyStore* store_;
  PolicyMetrics* metrics_;
  // Mutable: counting is the one side effect of answering.
  mutable RateLimiter limiter_;
};

}  // namespace podgate::policy

#include "policy/authorizer.h"

#include <string>
#include <string_view>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "runtime/log.h"

namespace podgate::policy {

podgate::policy::v1::AuthorizeResponse Authorizer::Authorize(
    const podgate::policy::v1::AuthorizeRequest& request,
    absl::FunctionRef<runtime::TraceContext()> trace) const {
  const absl::Time start = absl::Now();
  const std::shared_ptr<const CompiledPolicy> policy = store_->Current();
  podgate::policy::v1::AuthorizeResponse response;
  std::vector<std::string> explanation;
  *response.mutable_decision() =
      policy->Evaluate(request, request.explain() ? &explanation : nullptr);
  podgate::common::v1::Decision& decision = *response.mutable_decision();
  if (decision.verdict() == podgate::common::v1::VERDICT_ALLOW) {
    if (const Rule* rule = policy->FindRule(decision.rule()); rule && rule->rate_limit) {
      if (std::optional<std::string> why =
              limiter_.Admit(*rule, request.principal().user(), request.target(), absl::Now())) {
        podgate::common::v1::Decision refused;
        refused.set_verdict(podgate::common::v1::VERDICT_DENY);
        refused.set_rule(rule->id);
        refused.set_reason(absl::StrCat("rate limit: ", *why));
        refused.set_policy_version(decision.policy_version());
        decision = std::move(refused);
        if (request.explain()) {
          explanation.push_back(absl::StrCat("decision: deny by ", rule->id, ": rate limit"));
        }
        if (metrics_ != nullptr) {
          metrics_->RateLimited(rule->id);
        }
      }
    }
  }
  for (std::string& line : explanation) {
    response.add_explanation(std::move(line));
  }
  const podgate::common::v1::Decision& d = response.decision();
  if (metrics_ != nullptr) {
    metrics_->RecordDecision(d, absl::Now() - start);
  }
  const bool allowed = d.verdict() == podgate::common::v1::VERDICT_ALLOW;
  if (allowed && !log_allowed_) {
    return response;
  }
  // Only the program and the rule are logged: arguments (and reasons, which quote them) may
  // carry secrets and belong to the audit trail.
  const std::string_view program = request.has_command() && request.command().argv_size() > 0
                                       ? std::string_view(request.command().argv(0)).substr(0, 64)
                                       : (request.has_shell() ? "<shell>" : "");
  const runtime::TraceContext call_trace = trace();
  (allowed ? log::Debug : log::Info)("decision", {{"user", request.principal().user()},
                                                  {"cluster", request.target().cluster()},
                                                  {"namespace", request.target().namespace_()},
                                                  {"pod", request.target().pod()},
                                                  {"container", request.target().container()},
                                                  {"program", program},
                                                  {"verdict", allowed ? "allow" : "deny"},
                                                  {"rule", d.rule()},
                                                  {"policy_version", d.policy_version()},
                                                  {"trace_id", call_trace.trace_id},
                                                  {"span_id", call_trace.span_id}});
  return response;
}

}  // namespace podgate::policy

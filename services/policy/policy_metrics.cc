#include "policy/policy_metrics.h"

namespace podgate::policy {
namespace {

// Every metric of the service: name and help, in one table.
struct MetricInfo {
  const char* name;
  const char* help;
};
constexpr MetricInfo kDecisions = {"podgate_policy_decisions_total",
                                   "Policy decisions, by verdict (allow, deny) and deciding rule."};
constexpr MetricInfo kLatency = {"podgate_policy_evaluation_duration_seconds",
                                 "Time to evaluate one authorization request."};
constexpr MetricInfo kVersionInfo = {
    "podgate_policy_version_info",
    "The policy version in force (SHA-256 of the document) and its source; value 1."};
constexpr MetricInfo kReloadFailures = {
    "podgate_policy_reload_failures_total",
    "Policy documents refused on reload; each leaves the previous version in force."};
constexpr MetricInfo kReloads = {"podgate_policy_reloads_total",
                                 "New policy versions accepted, the first load included."};
constexpr MetricInfo kRules = {"podgate_policy_rules", "Rules in the policy version in force."};
constexpr MetricInfo kRateLimited = {
    "podgate_policy_rate_limited_total",
    "Decisions a rule's grammar allowed but its rateLimit refused, by rule."};

// 1 us to ~65 ms, doubling: decisions take microseconds, the tail shows contention.
prometheus::Histogram::BucketBoundaries LatencyBuckets() {
  prometheus::Histogram::BucketBoundaries b;
  for (double v = 1e-6; v < 0.1; v *= 2) {
    b.push_back(v);
  }
  return b;
}

}  // namespace

PolicyMetrics::PolicyMetrics(prometheus::Registry& registry)
    : decisions_(prometheus::BuildCounter()
                     .Name(kDecisions.name)
                     .Help(kDecisions.help)
                     .Register(registry)),
      latency_(prometheus::BuildHistogram()
                   .Name(kLatency.name)
                   .Help(kLatency.help)
                   .Register(registry)
                   .Add({}, LatencyBuckets())),
      version_info_(prometheus::BuildGauge()
                        .Name(kVersionInfo.name)
                        .Help(kVersionInfo.help)
                        .Register(registry)),
      reload_failures_(prometheus::BuildCounter()
                           .Name(kReloadFailures.name)
                           .Help(kReloadFailures.help)
                           .Register(registry)
                           .Add({})),
      reloads_(prometheus::BuildCounter()
                   .Name(kReloads.name)
                   .Help(kReloads.help)
                   .Register(registry)
                   .Add({})),
      rules_(
          prometheus::BuildGauge().Name(kRules.name).Help(kRules.help).Register(registry).Add({})),
      rate_limited_(prometheus::BuildCounter()
                        .Name(kRateLimited.name)
                        .Help(kRateLimited.help)
                        .Register(registry)) {}

void PolicyMetrics::RecordDecision(const podgate::common::v1::Decision& decision,
                                   absl::Duration latency) {
  DecisionCounter(decision.verdict() == podgate::common::v1::VERDICT_ALLOW, decision.rule())
      .Increment();
  latency_.Observe(absl::ToDoubleSeconds(latency));
}

prometheus::Counter& PolicyMetrics::DecisionCounter(bool allow, const std::string& rule) {
  {
    absl::ReaderMutexLock lock(&counters_mu_);
    if (auto it = counters_[allow].find(rule); it != counters_[allow].end()) {
      return *it->second;
    }
  }
  // Rule ids are bounded by the documents (plus three built-in names), so the label sets are.
  prometheus::Counter& counter =
      decisions_.Add({{"verdict", allow ? "allow" : "deny"}, {"rule", rule}});
  absl::MutexLock lock(&counters_mu_);
  counters_[allow].try_emplace(rule, &counter);
  return counter;
}

void PolicyMetrics::SetVersion(const std::string& version, const std::string& source, int rules) {
  absl::MutexLock lock(&mu_);
  if (current_version_ != nullptr) {
    version_info_.Remove(current_version_);
  }
  current_version_ = &version_info_.Add({{"version", version}, {"source", source}});
  current_version_->Set(1);
  reloads_.Increment();
  rules_.Set(rules);
}

void PolicyMetrics::ReloadFailed() { reload_failures_.Increment(); }

void PolicyMetrics::RateLimited(const std::string& rule) {
  rate_limited_.Add({{"rule", rule}}).Increment();
}

}  // namespace podgate::policy

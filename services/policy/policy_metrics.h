// The policy service's Prometheus metrics, declared in one place (policy_metrics.cc):
//
//   podgate_policy_decisions_total{verdict,rule}        counter
//   podgate_policy_evaluation_duration_seconds          histogram
//   podgate_policy_version_info{version,source}         gauge, 1 for the version in force
//   podgate_policy_reload_failures_total                counter
//   podgate_policy_reloads_total                        counter (accepted new versions)
//   podgate_policy_rules                                gauge
//   podgate_policy_rate_limited_total{rule}             counter (allowances refused by rateLimit)
#pragma once

#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "podgate/common/v1/common.pb.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"

namespace podgate::policy {

class PolicyMetrics {
 public:
  explicit PolicyMetrics(prometheus::Registry& registry);

  // Counts a decision and observes its latency: on the path of every decision, so the counter
  // of each (verdict, rule) is looked up once and kept (decisions_counters_), not rebuilt from
  // a label map under the family's lock each time.
  void RecordDecision(const podgate::common::v1::Decision& decision, absl::Duration latency);
  // Marks `version` as the one in force (and the previous one as gone).
  void SetVersion(const std::string& version, const std::string& source, int rules);
  void ReloadFailed();
  void RateLimited(const std::string& rule);

 private:
  prometheus::Family<prometheus::Counter>& decisions_;
  prometheus::Histogram& latency_;
  prometheus::Family<prometheus::Gauge>& version_info_;
  prometheus::Counter& reload_failures_;
  prometheus::Counter& reloads_;
  prometheus::Gauge& rules_;
  prometheus::Family<prometheus::Counter>& rate_limited_;

  // The counter of decisions_ for a rule, allow or deny.
  prometheus::Counter& DecisionCounter(bool allow, const std::string& rule);

  absl::Mutex mu_;
  prometheus::Gauge* current_version_ ABSL_GUARDED_BY(mu_) = nullptr;
  // decisions_'s counters by rule, [0] deny and [1] allow. Rule ids are bounded by the documents
  // loaded (plus the built-in names), as the family's own label sets are.
  absl::Mutex counters_mu_;
  absl::flat_hash_map<std::string, prometheus::Counter*> counters_[2] ABSL_GUARDED_BY(counters_mu_);
};

}  // namespace podgate::policy

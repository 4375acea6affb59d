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

  absl::Mutex mu_;
  prometheus::Gauge* current_version_ ABSL_GUARDED_BY(mu_) = nullptr;
};

}  // namespace podgate::policy

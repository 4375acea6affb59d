// Every audit metric, declared in one place and registered on the server's registry.
//
//   podgate_audit_events_stored_total          events made durable (the ingest rate)
//   podgate_audit_events_acked_total           ids acked (resent ids count again)
//   podgate_audit_batch_size_events            events per committed transaction (histogram)
//   podgate_audit_commit_latency_seconds       time one transaction took (histogram)
//   podgate_audit_queue_depth_events           events waiting for the writer
//   podgate_audit_errors_total{kind}           store_unavailable, store_conflict, store_other,
//                                              invalid_event, query_failed, verify_failed,
//                                              executor_full
//   podgate_audit_record_streams               Record streams open
//   podgate_audit_followers                    Query streams following new records (live tail)
//   podgate_audit_follow_records_sent_total    records written to followers, backlog included
//   podgate_audit_followers_dropped_total      followers ended because they fell behind
#pragma once

#include <string>

#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"

namespace podgate::audit {

class AuditMetrics {
 public:
  explicit AuditMetrics(prometheus::Registry& registry);

  prometheus::Counter& events_stored() { return *events_stored_; }
  prometheus::Counter& events_acked() { return *events_acked_; }
  prometheus::Histogram& batch_size() { return *batch_size_; }
  prometheus::Histogram& commit_latency() { return *commit_latency_; }
  prometheus::Gauge& queue_depth() { return *queue_depth_; }
  prometheus::Gauge& record_streams() { return *record_streams_; }
  prometheus::Gauge& followers() { return *followers_; }
  prometheus::Counter& follow_records_sent() { return *follow_records_sent_; }
  prometheus::Counter& followers_dropped() { return *followers_dropped_; }
  prometheus::Counter& Error(const std::string& kind) { return errors_->Add({{"kind", kind}}); }

 private:
  prometheus::Counter* events_stored_;
  prometheus::Counter* events_acked_;
  prometheus::Histogram* batch_size_;
  prometheus::Histogram* commit_latency_;
  prometheus::Gauge* queue_depth_;
  prometheus::Gauge* record_streams_;
  prometheus::Gauge* followers_;
  prometheus::Counter* follow_records_sent_;
  prometheus::Counter* followers_dropped_;
  prometheus::Family<prometheus::Counter>* errors_;
};

}  // namespace podgate::audit

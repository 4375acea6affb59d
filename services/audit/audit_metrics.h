// Every audit metric, declared in one place and registered on the server's registry.
//
//   podgate_audit_events_stored_total          events made durable (the ingest rate)
//   podgate_audit_events_acked_total           ids acked (resent ids count again)
//   podgate_audit_batch_size_events            events per committed transaction (histogram)
//   podgate_audit_commit_latency_seconds       time one transaction took (histogram)
//   podgate_audit_ack_latency_seconds{stage}   a batch's oldest event from the writer's queue to
//                                              durable, by stage: queued, commit, sync_wait,
//                                              sync, total (histogram, one sample per batch)
//   podgate_audit_queue_depth_events           events waiting for the writer
//   podgate_audit_errors_total{kind}           store_unavailable, store_conflict, store_other,
//                                              invalid_event, query_failed, verify_failed,
//                                              checkpoint_failed, foreign_records,
//                                              executor_full, export_blocking
//   podgate_audit_store_rechecks_total{outcome}  re-checks of an unusable store by the writer
//                                              (--store_recheck_interval): ok, failed
//   podgate_audit_record_streams               Record streams open
//   podgate_audit_checkpoints_signed_total{kind}  checkpoints signed: head, retention_cut
//   podgate_audit_checkpoint_head_sequence     the sequence of the last head signed
//
// Export, per sink (label sink):
//   podgate_audit_export_lag_records           records stored but not yet delivered (all chains)
//   podgate_audit_export_lag_seconds           age of the oldest undelivered record
//   podgate_audit_export_delivered_records_total      records delivered (duplicates included)
//   podgate_audit_export_delivered_checkpoints_total  signed checkpoints delivered
//   podgate_audit_export_retries_total         deliveries that repeated a failed batch
//   podgate_audit_export_failures_total        deliveries that failed
//   podgate_audit_export_lost_records_total    records retention removed before delivery
//   podgate_audit_export_lease_held            1 while this replica holds the sink's lease
//   podgate_audit_export_blocking              1 while the sink's lag blocks Record
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
  // Where an ack's time goes (one sample per batch, for its oldest event): waiting in the queue
  // for the committer, the transaction, waiting for the syncer, the sync, and all of it.
  enum class AckStage { kQueued, kCommit, kSyncWait, kSync, kTotal };
  prometheus::Histogram& ack_latency(AckStage stage) {
    return *ack_latency_[static_cast<int>(stage)];
  }
  prometheus::Gauge& queue_depth() { return *queue_depth_; }
  prometheus::Gauge& record_streams() { return *record_streams_; }
  prometheus::Gauge& followers() { return *followers_; }
  prometheus::Counter& follow_records_sent() { return *follow_records_sent_; }
  prometheus::Counter& followers_dropped() { return *followers_dropped_; }
  prometheus::Counter& Error(const std::string& kind) { return errors_->Add({{"kind", kind}}); }
  prometheus::Counter& checkpoints_signed(const std::string& kind) {
    return checkpoints_signed_->Add({{"kind", kind}});
  }
  prometheus::Gauge& checkpoint_head_sequence() { return *checkpoint_head_sequence_; }
  // outcome: "ok" (readiness comes back) or "failed".
  prometheus::Counter& store_rechecks(const std::string& outcome) {
    return store_rechecks_->Add({{"outcome", outcome}});
  }

 private:
  prometheus::Counter* events_stored_;
  prometheus::Counter* events_acked_;
  prometheus::Histogram* batch_size_;
  prometheus::Histogram* commit_latency_;
  prometheus::Histogram* ack_latency_[5];
  prometheus::Gauge* queue_depth_;
  prometheus::Gauge* record_streams_;
  prometheus::Gauge* followers_;
  prometheus::Counter* follow_records_sent_;
  prometheus::Counter* followers_dropped_;
  prometheus::Family<prometheus::Counter>* errors_;
  prometheus::Family<prometheus::Counter>* checkpoints_signed_;
  prometheus::Gauge* checkpoint_head_sequence_;
  prometheus::Family<prometheus::Counter>* store_rechecks_;
};

// One sink's export metrics.
struct SinkMetrics {
  prometheus::Gauge* lag_records;
  prometheus::Gauge* lag_seconds;
  prometheus::Counter* delivered_records;
  prometheus::Counter* delivered_checkpoints;
  prometheus::Counter* retries;
  prometheus::Counter* failures;
  prometheus::Counter* lost_records;
  prometheus::Gauge* lease_held;
  prometheus::Gauge* blocking;
};

class ExportMetrics {
 public:
  explicit ExportMetrics(prometheus::Registry& registry);
  // The metrics labelled sink=`sink` (created on first use; same pointers afterwards).
  SinkMetrics ForSink(const std::string& sink);

 private:
  prometheus::Family<prometheus::Gauge>* lag_records_;
  prometheus::Family<prometheus::Gauge>* lag_seconds_;
  prometheus::Family<prometheus::Counter>* delivered_records_;
  prometheus::Family<prometheus::Counter>* delivered_checkpoints_;
  prometheus::Family<prometheus::Counter>* retries_;
  prometheus::Family<prometheus::Counter>* failures_;
  prometheus::Family<prometheus::Counter>* lost_records_;
  prometheus::Family<prometheus::Gauge>* lease_held_;
  prometheus::Family<prometheus::Gauge>* blocking_;
};

}  // namespace podgate::audit

#include "audit/audit_metrics.h"

#include <map>

namespace podgate::audit {

AuditMetrics::AuditMetrics(prometheus::Registry& registry) {
  events_stored_ = &prometheus::BuildCounter()
                        .Name("podgate_audit_events_stored_total")
                        .Help("Audit events made durable.")
                        .Register(registry)
                        .Add({});
  events_acked_ = &prometheus::BuildCounter()
                       .Name("podgate_audit_events_acked_total")
                       .Help("Event ids acked to clients, resent ids included.")
                       .Register(registry)
                       .Add({});
  batch_size_ = &prometheus::BuildHistogram()
                     .Name("podgate_audit_batch_size_events")
                     .Help("Events per group-commit transaction.")
                     .Register(registry)
                     .Add({}, prometheus::Histogram::BucketBoundaries{1, 2, 4, 8, 16, 32, 64, 128,
                                                                      256, 512, 1024});
  commit_latency_ =
      &prometheus::BuildHistogram()
           .Name("podgate_audit_commit_latency_seconds")
           .Help("Time one group-commit transaction took, fsync included.")
           .Register(registry)
           .Add({}, prometheus::Histogram::BucketBoundaries{0.0005, 0.001, 0.002, 0.005, 0.01, 0.02,
                                                            0.05, 0.1, 0.25, 0.5, 1, 2.5});
  auto& ack_latency =
      prometheus::BuildHistogram()
          .Name("podgate_audit_ack_latency_seconds")
          .Help(
              "A batch's oldest event from its entry into the writer's queue to durable, by "
              "stage: queued (waiting for the committer), commit (the transaction), sync_wait "
              "(waiting for the syncer), sync (the fsync), total. One sample per batch.")
          .Register(registry);
  // Fine from 0.5 to 20 ms, where a strict ack falls, so that a percentile read from the
  // buckets (histogram_quantile) is close to the truth there.
  const prometheus::Histogram::BucketBoundaries ack_buckets = {
      0.0001, 0.00025, 0.0005, 0.00075, 0.001, 0.0015, 0.002, 0.003, 0.004, 0.005,
      0.0075, 0.01,    0.015,  0.02,    0.025, 0.05,   0.1,   0.25,  1};
  const char* const ack_stages[] = {"queued", "commit", "sync_wait", "sync", "total"};
  for (int i = 0; i < 5; ++i) {
    ack_latency_[i] = &ack_latency.Add({{"stage", ack_stages[i]}}, ack_buckets);
  }
  queue_depth_ = &prometheus::BuildGauge()
                      .Name("podgate_audit_queue_depth_events")
                      .Help("Events waiting for the group-commit writer.")
                      .Register(registry)
                      .Add({});
  record_streams_ = &prometheus::BuildGauge()
                         .Name("podgate_audit_record_streams")
                         .Help("Record streams open.")
                         .Register(registry)
                         .Add({});
  followers_ = &prometheus::BuildGauge()
                    .Name("podgate_audit_followers")
                    .Help("Query streams following new records (live tail).")
                    .Register(registry)
                    .Add({});
  follow_records_sent_ = &prometheus::BuildCounter()
                              .Name("podgate_audit_follow_records_sent_total")
                              .Help("Records written to following Query streams.")
                              .Register(registry)
                              .Add({});
  followers_dropped_ = &prometheus::BuildCounter()
                            .Name("podgate_audit_followers_dropped_total")
                            .Help("Following Query streams ended because they fell behind.")
                            .Register(registry)
                            .Add({});
  errors_ = &prometheus::BuildCounter()
                 .Name("podgate_audit_errors_total")
                 .Help("Audit failures by kind.")
                 .Register(registry);
  checkpoints_signed_ = &prometheus::BuildCounter()
                             .Name("podgate_audit_checkpoints_signed_total")
                             .Help("Checkpoints signed with the checkpoint key, by kind.")
                             .Register(registry);
  checkpoint_head_sequence_ = &prometheus::BuildGauge()
                                   .Name("podgate_audit_checkpoint_head_sequence")
                                   .Help("The sequence number of the last chain head signed.")
                                   .Register(registry)
                                   .Add({});
  store_rechecks_ = &prometheus::BuildCounter()
                         .Name("podgate_audit_store_rechecks_total")
                         .Help(
                             "Re-checks of an unusable store by the writer, by outcome: ok "
                             "(readiness returns), failed.")
                         .Register(registry);
}

ExportMetrics::ExportMetrics(prometheus::Registry& registry) {
  auto gauge = [&](const char* name, const char* help) {
    return &prometheus::BuildGauge().Name(name).Help(help).Register(registry);
  };
  auto counter = [&](const char* name, const char* help) {
    return &prometheus::BuildCounter().Name(name).Help(help).Register(registry);
  };
  lag_records_ = gauge("podgate_audit_export_lag_records",
                       "Records stored but not yet delivered to the sink, over every chain.");
  lag_seconds_ = gauge("podgate_audit_export_lag_seconds",
                       "Age of the oldest record not yet delivered to the sink.");
  delivered_records_ = counter("podgate_audit_export_delivered_records_total",
                               "Records delivered to the sink, re-deliveries included.");
  delivered_checkpoints_ = counter("podgate_audit_export_delivered_checkpoints_total",
                                   "Signed checkpoints delivered to the sink.");
  retries_ = counter("podgate_audit_export_retries_total",
                     "Deliveries that repeated a batch whose delivery had failed.");
  failures_ = counter("podgate_audit_export_failures_total", "Deliveries that failed.");
  lost_records_ = counter("podgate_audit_export_lost_records_total",
                          "Records retention removed before the sink received them.");
  lease_held_ = gauge("podgate_audit_export_lease_held",
                      "1 while this replica holds the sink's export lease.");
  blocking_ = gauge("podgate_audit_export_blocking",
                    "1 while the sink lags beyond blocking_max_lag_records and Record refuses "
                    "new events.");
}

SinkMetrics ExportMetrics::ForSink(const std::string& sink) {
  const std::map<std::string, std::string> labels = {{"sink", sink}};
  return SinkMetrics{&lag_records_->Add(labels),       &lag_seconds_->Add(labels),
                     &delivered_records_->Add(labels), &delivered_checkpoints_->Add(labels),
                     &retries_->Add(labels),           &failures_->Add(labels),
                     &lost_records_->Add(labels),      &lease_held_->Add(labels),
                     &blocking_->Add(labels)};
}

}  // namespace podgate::audit

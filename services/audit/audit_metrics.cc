#include "audit/audit_metrics.h"

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
}

}  // namespace podgate::audit

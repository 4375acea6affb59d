// The server side of one AuditService.Record stream.
//
// Reads one message at a time (one event, or a batch of up to kMaxBatchEvents) and queues its
// events on the group-commit writer; reads the next only once the writer took every event of it
// (backpressure) and while fewer than kMaxOutbound responses wait to be written (a client that
// does not read its acks stops being read). Each event of a batch is validated, acked or
// rejected on its own, as if it had come alone. Acks go out as the writer
// reports batches durable; a failed batch ends the stream with UNAVAILABLE after the acks
// already queued. A half-close ends the stream with OK once every queued event is acked.
// Drain (at shutdown) stops reading and ends the stream with UNAVAILABLE once every event it
// took is acked, so the client resends the rest to another replica without waiting for the
// drain timeout.
#pragma once

#include <deque>
#include <memory>
#include <optional>
#include <set>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "audit/audit_metrics.h"
#include "audit/writer.h"
#include "grpcpp/grpcpp.h"
#include "podgate/audit/v1/audit.grpc.pb.h"

namespace podgate::audit {

class RecordReactor;

// The open Record streams, so that shutdown can drain them.
class RecordStreams {
 public:
  // Drains every open stream and every stream opened later.
  void DrainAll();

 private:
  friend class RecordReactor;
  // Returns false when draining: the new stream must end right away.
  bool Add(RecordReactor* reactor);
  void Remove(RecordReactor* reactor);

  absl::Mutex mu_;
  std::set<RecordReactor*> streams_ ABSL_GUARDED_BY(mu_);
  bool draining_ ABSL_GUARDED_BY(mu_) = false;
};

class RecordReactor final : public grpc::ServerBidiReactor<podgate::audit::v1::RecordRequest,
                                                           podgate::audit::v1::RecordResponse> {
 public:
  static constexpr size_t kMaxOutbound = 64;
  // Events in one batch message, at most (a larger batch ends the stream with
  // INVALID_ARGUMENT). Memory held per stream stays bounded by the message size limit.
  static constexpr int kMaxBatchEvents = 1024;
  // The initial metadata that tells the client this (its value: kMaxBatchEvents); sent at once,
  // before any response.
  static constexpr char kBatchMetadata[] = "podgate-record-batch-max";

  RecordReactor(Writer* writer, AuditMetrics* metrics, RecordStreams* streams);

  // Stops reading; ends the stream with UNAVAILABLE once what was read is acked.
  void Drain();

  void OnReadDone(bool ok) override;
  void OnSendInitialMetadataDone(bool /*ok*/) override {}
  void OnWriteDone(bool ok) override;
  void OnCancel() override;
  void OnDone() override;

 private:
  class Sink;
  friend class Sink;

  void OnCommitted(std::vector<std::string> ids);
  void OnFailed(const absl::Status& status);
  void OnSpace();

  // Validates `event` and holds it for the writer, or queues its rejection.
  void TakeEventLocked(podgate::common::v1::AuditEvent* event) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool HoldingLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return held_next_ < held_.size();
  }
  void TryQueueHeldLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void MaybeReadLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void QueueWriteLocked(podgate::audit::v1::RecordResponse response)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void MaybeFinishLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  Writer* const writer_;
  AuditMetrics* const metrics_;
  RecordStreams* const streams_;
  std::shared_ptr<Sink> sink_;

  absl::Mutex mu_;
  podgate::audit::v1::RecordRequest request_ ABSL_GUARDED_BY(mu_);
  // The events of the last message read that the writer has not taken yet: held_[held_next_..].
  std::vector<podgate::common::v1::AuditEvent> held_ ABSL_GUARDED_BY(mu_);
  size_t held_next_ ABSL_GUARDED_BY(mu_) = 0;
  std::deque<podgate::audit::v1::RecordResponse> outbound_ ABSL_GUARDED_BY(mu_);
  podgate::audit::v1::RecordResponse writing_message_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool reading_ ABSL_GUARDED_BY(mu_) = false;
  bool read_done_ ABSL_GUARDED_BY(mu_) = false;
  bool draining_ ABSL_GUARDED_BY(mu_) = false;
  int64_t unacked_ ABSL_GUARDED_BY(mu_) = 0;
  std::optional<grpc::Status> finish_status_ ABSL_GUARDED_BY(mu_);
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace podgate::audit

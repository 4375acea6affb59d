#include "audit/record_reactor.h"

#include "absl/strings/str_cat.h"
#include "audit/chain.h"
#include "runtime/log.h"
#include "wire/enum_label.h"

namespace podgate::audit {

// Outlives the reactor when the writer still holds events of a finished stream: the writer
// talks to the Sink, and the Sink forwards only while the reactor exists.
class RecordReactor::Sink final : public CommitSink {
 public:
  explicit Sink(RecordReactor* reactor) : reactor_(reactor) {}

  void OnCommitted(std::vector<std::string> ids) override {
    absl::MutexLock lock(&mu_);
    if (reactor_ != nullptr) {
      reactor_->OnCommitted(std::move(ids));
    }
  }
  void OnFailed(const absl::Status& status) override {
    absl::MutexLock lock(&mu_);
    if (reactor_ != nullptr) {
      reactor_->OnFailed(status);
    }
  }
  void OnSpace() override {
    absl::MutexLock lock(&mu_);
    if (reactor_ != nullptr) {
      reactor_->OnSpace();
    }
  }
  void Detach() {
    absl::MutexLock lock(&mu_);
    reactor_ = nullptr;
  }

 private:
  absl::Mutex mu_;
  RecordReactor* reactor_ ABSL_GUARDED_BY(mu_);
};

void RecordStreams::DrainAll() {
  absl::MutexLock lock(&mu_);
  draining_ = true;
  // Reactors leave the set in OnDone under this lock, so each one here is alive.
  for (RecordReactor* reactor : streams_) {
    reactor->Drain();
  }
}

bool RecordStreams::Add(RecordReactor* reactor) {
  absl::MutexLock lock(&mu_);
  streams_.insert(reactor);
  return !draining_;
}

void RecordStreams::Remove(RecordReactor* reactor) {
  absl::MutexLock lock(&mu_);
  streams_.erase(reactor);
}

RecordReactor::RecordReactor(Writer* writer, AuditMetrics* metrics, RecordStreams* streams)
    : writer_(writer), metrics_(metrics), streams_(streams), sink_(std::make_shared<Sink>(this)) {
  metrics_->record_streams().Increment();
  const bool accepting = streams_->Add(this);
  absl::MutexLock lock(&mu_);
  draining_ = !accepting;
  StartSendInitialMetadata();  // kBatchMetadata, added by AuditServiceImpl::Record
  MaybeReadLocked();
  MaybeFinishLocked();
}

void RecordReactor::Drain() {
  absl::MutexLock lock(&mu_);
  draining_ = true;
  MaybeFinishLocked();
}

void RecordReactor::OnReadDone(bool ok) {
  absl::MutexLock lock(&mu_);
  reading_ = false;
  if (!ok) {
    read_done_ = true;  // half-close, or the call broke (OnCancel says which)
    MaybeFinishLocked();
    return;
  }
  if (finish_status_.has_value()) {
    return;
  }
  if (request_.has_batch() && request_.batch().events_size() > kMaxBatchEvents) {
    metrics_->Error("invalid_event").Increment();
    finish_status_ = grpc::Status(
        grpc::StatusCode::INVALID_ARGUMENT,
        absl::StrCat("a batch carries at most ", kMaxBatchEvents, " events; this one had ",
                     request_.batch().events_size(), " (none of them was stored)"));
    MaybeFinishLocked();
    return;
  }
  // Blocking mode: an export sink lags too far; refuse before the events are stored so that the
  // client (exec) fails closed with the reason and resends once audit accepts again.
  if (absl::Status admitted = writer_->Admission(); !admitted.ok()) {
    metrics_->Error("export_blocking").Increment();
    finish_status_ = grpc::Status(grpc::StatusCode::UNAVAILABLE, std::string(admitted.message()));
    MaybeFinishLocked();
    return;
  }
  held_.clear();
  held_next_ = 0;
  if (request_.has_batch()) {
    held_.reserve(static_cast<size_t>(request_.batch().events_size()));
    for (auto& event : *request_.mutable_batch()->mutable_events()) {
      TakeEventLocked(&event);
    }
  } else if (request_.has_event()) {
    TakeEventLocked(request_.mutable_event());
  } else {
    metrics_->Error("invalid_event").Increment();
    podgate::audit::v1::RecordResponse response;
    response.mutable_rejection()->set_reason("request has no event");
    QueueWriteLocked(std::move(response));
  }
  request_.Clear();
  if (HoldingLocked()) {
    TryQueueHeldLocked();
  } else {
    MaybeReadLocked();
  }
}

void RecordReactor::TakeEventLocked(podgate::common::v1::AuditEvent* event) {
  if (absl::Status valid = ValidateEvent(*event); !valid.ok()) {
    metrics_->Error("invalid_event").Increment();
    podgate::audit::v1::RecordResponse response;
    response.mutable_rejection()->set_id(event->id().size() <= 128 ? event->id() : "");
    response.mutable_rejection()->set_reason(std::string(valid.message()));
    QueueWriteLocked(std::move(response));
    return;
  }
  // The event's own trace id (its service's session or request), not the stream's: one Record
  // stream carries every session of its client.
  log::Debug("event received", {{"event_id", event->id()},
                                {"kind", wire::EnumLabel(event->kind())},
                                {"source_service", event->source_service()},
                                {"session_id", event->session_id()},
                                {"command_id", event->command_id()},
                                {"trace_id", event->trace_id()}});
  ++unacked_;
  held_.emplace_back().Swap(event);
}

void RecordReactor::TryQueueHeldLocked() {
  if (finish_status_.has_value()) {
    return;
  }
  if (HoldingLocked()) {
    held_next_ += writer_->TryEnqueueMany(&held_[held_next_], held_.size() - held_next_, sink_);
    if (HoldingLocked()) {
      return;  // OnSpace retries; no read is outstanding meanwhile, which is the backpressure
    }
  }
  held_.clear();
  held_next_ = 0;
  MaybeReadLocked();
}

void RecordReactor::MaybeReadLocked() {
  if (reading_ || read_done_ || draining_ || HoldingLocked() || finish_status_.has_value() ||
      outbound_.size() >= kMaxOutbound) {
    return;
  }
  reading_ = true;
  StartRead(&request_);
}

void RecordReactor::QueueWriteLocked(podgate::audit::v1::RecordResponse response) {
  outbound_.push_back(std::move(response));
  if (!writing_) {
    writing_message_ = std::move(outbound_.front());
    outbound_.pop_front();
    writing_ = true;
    StartWrite(&writing_message_);
  }
}

void RecordReactor::OnWriteDone(bool ok) {
  absl::MutexLock lock(&mu_);
  writing_ = false;
  if (!ok) {
    outbound_.clear();
    if (!finish_status_.has_value()) {
      finish_status_ = grpc::Status(grpc::StatusCode::CANCELLED, "the client stopped reading");
    }
  } else if (!outbound_.empty()) {
    writing_message_ = std::move(outbound_.front());
    outbound_.pop_front();
    writing_ = true;
    StartWrite(&writing_message_);
  }
  MaybeReadLocked();
  MaybeFinishLocked();
}

void RecordReactor::OnCommitted(std::vector<std::string> ids) {
  absl::MutexLock lock(&mu_);
  if (finish_status_.has_value()) {
    return;  // the stream is failing: the client resends what it did not see acked
  }
  unacked_ -= static_cast<int64_t>(ids.size());
  podgate::audit::v1::RecordResponse response;
  for (std::string& id : ids) {
    response.mutable_ack()->add_ids(std::move(id));
  }
  QueueWriteLocked(std::move(response));
  MaybeFinishLocked();
}

void RecordReactor::OnFailed(const absl::Status& status) {
  absl::MutexLock lock(&mu_);
  if (finish_status_.has_value()) {
    return;
  }
  finish_status_ = grpc::Status(
      grpc::StatusCode::UNAVAILABLE,
      absl::StrCat("audit store unavailable; events not acked were not stored durably: ",
                   status.message()));
  MaybeFinishLocked();
}

void RecordReactor::OnSpace() {
  absl::MutexLock lock(&mu_);
  TryQueueHeldLocked();
}

void RecordReactor::OnCancel() {
  absl::MutexLock lock(&mu_);
  if (!finish_status_.has_value()) {
    finish_status_ = grpc::Status(grpc::StatusCode::CANCELLED, "cancelled");
  }
  outbound_.clear();
  MaybeFinishLocked();
}

void RecordReactor::MaybeFinishLocked() {
  if (finished_ || writing_) {
    return;
  }
  if (finish_status_.has_value()) {
    if (outbound_.empty()) {
      finished_ = true;
      Finish(*finish_status_);
    }
    return;
  }
  if (unacked_ > 0 || !outbound_.empty()) {
    return;
  }
  if (read_done_) {
    finish_status_ = grpc::Status::OK;
  } else if (draining_) {
    // A read may still be outstanding; finish_status_ makes OnReadDone drop what it brings.
    finish_status_ = grpc::Status(grpc::StatusCode::UNAVAILABLE,
                                  "audit replica shutting down; every event read was acked, "
                                  "send the rest on a new stream");
  } else {
    return;
  }
  finished_ = true;
  Finish(*finish_status_);
}

void RecordReactor::OnDone() {
  streams_->Remove(this);
  sink_->Detach();
  metrics_->record_streams().Decrement();
  delete this;
}

}  // namespace podgate::audit

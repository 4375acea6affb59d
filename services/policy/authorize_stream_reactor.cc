#include "policy/authorize_stream_reactor.h"

#include <utility>

#include "policy/compiled_policy.h"

namespace podgate::policy {

namespace {
constexpr char kShuttingDown[] = "the policy service is shutting down; reconnect";
}  // namespace

void StreamRegistry::DrainAll() {
  std::vector<AuthorizeStreamReactor*> streams;
  {
    absl::MutexLock lock(&mu_);
    draining_ = true;
    for (AuthorizeStreamReactor* r : streams_) {
      r->Ref();  // keeps it alive outside the lock, even if OnDone runs meanwhile
      streams.push_back(r);
    }
  }
  for (AuthorizeStreamReactor* r : streams) {
    r->Drain();
    r->Unref();
  }
}

bool StreamRegistry::Add(AuthorizeStreamReactor* reactor) {
  absl::MutexLock lock(&mu_);
  if (draining_) {
    return false;
  }
  streams_.insert(reactor);
  return true;
}

void StreamRegistry::Remove(AuthorizeStreamReactor* reactor) {
  absl::MutexLock lock(&mu_);
  streams_.erase(reactor);
}

AuthorizeStreamReactor::AuthorizeStreamReactor(const Authorizer* authorizer,
                                               StreamRegistry* registry,
                                               runtime::TraceContext trace)
    : AuthorizeStreamReactor(
          [authorizer](const podgate::policy::v1::AuthorizeRequest& request,
                       const runtime::TraceContext& stream_trace) {
            return authorizer->Authorize(request, stream_trace);
          },
          registry, std::move(trace)) {}

AuthorizeStreamReactor::AuthorizeStreamReactor(Answer answer, StreamRegistry* registry,
                                               runtime::TraceContext trace)
    : answer_(std::move(answer)), registry_(registry), trace_(std::move(trace)) {
  if (!registry_->Add(this)) {
    absl::MutexLock lock(&mu_);
    reading_ = false;
    FinishOnceLocked(grpc::Status(grpc::StatusCode::UNAVAILABLE, kShuttingDown));
    return;
  }
  StartRead(&request_);
}

void AuthorizeStreamReactor::Drain() {
  bool finish_now = false;
  {
    absl::MutexLock lock(&mu_);
    draining_ = true;
    if (!finished_ && !writing_ && queue_.empty()) {
      finished_ = true;
      finish_now = true;
    }
  }
  // Otherwise the last OnWriteDone finishes the stream.
  if (finish_now) {
    Finish(grpc::Status(grpc::StatusCode::UNAVAILABLE, kShuttingDown));
  }
}

void AuthorizeStreamReactor::OnReadDone(bool ok) {
  absl::MutexLock lock(&mu_);
  reading_ = false;
  if (!ok) {
    // Half-close (or a broken stream): answer what is queued, then finish.
    half_closed_ = true;
    PumpLocked();
    return;
  }
  podgate::policy::v1::AuthorizeStreamResponse response;
  response.set_correlation_id(request_.correlation_id());
  if (!request_.has_request()) {
    // Every question gets an answer; one without content is denied, not dropped.
    podgate::common::v1::Decision* d = response.mutable_response()->mutable_decision();
    d->set_verdict(podgate::common::v1::VERDICT_DENY);
    d->set_rule(kInvalidRequestRule);
    d->set_reason("the stream message carries no request");
  } else {
    *response.mutable_response() = answer_(request_.request(), trace_);
  }
  queue_.push_back(std::move(response));
  if (finished_ || draining_) {
    // No new reads while shutting down; what is queued is still sent.
  } else if (queue_.size() < kMaxQueued) {
    reading_ = true;
    StartRead(&request_);
  } else {
    read_paused_ = true;
  }
  PumpLocked();
}

void AuthorizeStreamReactor::OnWriteDone(bool ok) {
  absl::MutexLock lock(&mu_);
  writing_ = false;
  if (!ok) {
    // The client is gone; nothing more can be delivered.
    queue_.clear();
    FinishOnceLocked(grpc::Status(grpc::StatusCode::CANCELLED, "the stream broke"));
    return;
  }
  queue_.pop_front();
  if (read_paused_ && !half_closed_ && !draining_ && queue_.size() < kMaxQueued) {
    read_paused_ = false;
    reading_ = true;
    StartRead(&request_);
  }
  PumpLocked();
}

void AuthorizeStreamReactor::PumpLocked() {
  if (finished_ || writing_) {
    return;
  }
  if (!queue_.empty()) {
    writing_ = true;
    StartWrite(&queue_.front());
    return;
  }
  if (half_closed_ && !reading_) {
    FinishOnceLocked(grpc::Status::OK);
  } else if (draining_) {
    FinishOnceLocked(grpc::Status(grpc::StatusCode::UNAVAILABLE, kShuttingDown));
  }
}

void AuthorizeStreamReactor::FinishOnceLocked(grpc::Status status) {
  if (finished_) {
    return;
  }
  finished_ = true;
  Finish(std::move(status));
}

void AuthorizeStreamReactor::OnDone() {
  registry_->Remove(this);
  Unref();
}

}  // namespace podgate::policy

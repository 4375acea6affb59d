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
    {
      absl::MutexLock lock(&mu_);
      reading_ = false;
      draining_ = true;
    }
    Pump();  // finishes with UNAVAILABLE
    return;
  }
  StartRead(&request_);
}

void AuthorizeStreamReactor::Drain() {
  {
    absl::MutexLock lock(&mu_);
    draining_ = true;
  }
  // Ends the stream now if nothing is being written; otherwise once the queue is sent.
  Pump();
}

podgate::policy::v1::AuthorizeStreamResponse AuthorizeStreamReactor::AnswerRequest() {
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
  return response;
}

void AuthorizeStreamReactor::OnReadDone(bool ok) {
  if (!ok) {
    // Half-close (or a broken stream): answer what is queued, then finish.
    absl::MutexLock lock(&mu_);
    reading_ = false;
    half_closed_ = true;
  } else {
    // Decided outside the lock: a write's completion (and the next write's send) never waits
    // behind a decision, nor a decision behind a send.
    podgate::policy::v1::AuthorizeStreamResponse response = AnswerRequest();
    absl::MutexLock lock(&mu_);
    reading_ = false;
    queue_.push_back(std::move(response));
  }
  Pump();
}

void AuthorizeStreamReactor::OnWriteDone(bool ok) {
  {
    absl::MutexLock lock(&mu_);
    writing_ = false;
    if (ok) {
      wrote_first_ = true;
      queue_.pop_front();
    } else {
      // The client is gone; nothing more can be delivered.
      queue_.clear();
      broken_ = true;
    }
  }
  Pump();
}

AuthorizeStreamReactor::Step AuthorizeStreamReactor::NextLocked() {
  Step step;
  if (finished_) {
    return step;
  }
  if (broken_) {
    finished_ = true;
    step.kind = Step::kFinish;
    step.status = grpc::Status(grpc::StatusCode::CANCELLED, "the stream broke");
    return step;
  }
  // No new reads while shutting down; what is queued is still sent.
  if (!reading_ && !half_closed_ && !draining_ && queue_.size() < kMaxQueued) {
    reading_ = true;
    step.kind = Step::kRead;
    return step;
  }
  if (writing_) {
    return step;
  }
  if (!queue_.empty()) {
    writing_ = true;
    step.kind = Step::kWrite;
    step.write = &queue_.front();  // stays put: the deque only grows at the back meanwhile
    if (queue_.size() > 1 && wrote_first_) {
      // More follows at once (its write starts when this one completes), so this answer may
      // wait in gRPC's buffer and leave in the same socket write; the last of a run never does.
      // Never the stream's first write: it carries the response headers, and gRPC does not
      // start a socket write for headers batched with a buffered message, nor complete the
      // write before the headers are sent, so the stream would wait for a socket write that
      // only some unrelated traffic on the connection would cause.
      step.options.set_buffer_hint();
    }
    return step;
  }
  if (half_closed_ && !reading_) {
    finished_ = true;
    step.kind = Step::kFinish;
    step.status = grpc::Status::OK;
  } else if (draining_) {
    finished_ = true;
    step.kind = Step::kFinish;
    step.status = grpc::Status(grpc::StatusCode::UNAVAILABLE, kShuttingDown);
  }
  return step;
}

void AuthorizeStreamReactor::Pump() {
  {
    absl::MutexLock lock(&mu_);
    if (pumping_) {
      return;  // the pump re-reads the state under mu_ before it stops, so it sees ours
    }
    pumping_ = true;
  }
  Ref();  // Finish may lead to OnDone before the pump's last look at the state
  for (;;) {
    Step step;
    {
      absl::MutexLock lock(&mu_);
      step = NextLocked();
      if (step.kind == Step::kNothing) {
        pumping_ = false;
        break;
      }
    }
    switch (step.kind) {
      case Step::kRead:
        StartRead(&request_);
        break;
      case Step::kWrite:
        StartWrite(step.write, step.options);
        break;
      case Step::kFinish:
        Finish(std::move(step.status));
        break;
      case Step::kNothing:
        break;
    }
  }
  Unref();
}

void AuthorizeStreamReactor::OnDone() {
  registry_->Remove(this);
  Unref();
}

}  // namespace podgate::policy

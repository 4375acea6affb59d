#include "clients/audit_client.h"

#include <deque>
#include <map>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "runtime/ids.h"

namespace podgate::clients {

using podgate::audit::v1::RecordRequest;
using podgate::audit::v1::RecordResponse;

class AuditClient::Core : public std::enable_shared_from_this<AuditClient::Core> {
 public:
  Core(std::shared_ptr<grpc::Channel> channel, AuditClientOptions options,
       runtime::TimerQueue* timers)
      : stub_(podgate::audit::v1::AuditService::NewStub(channel)),
        options_(std::move(options)),
        timers_(timers),
        backoff_(options_.initial_backoff) {}

  void Record(podgate::common::v1::AuditEvent event, Callback done);
  void Shutdown();
  size_t pending() const {
    absl::MutexLock lock(&mu_);
    return pending_.size();
  }
  int64_t streams_opened() const {
    absl::MutexLock lock(&mu_);
    return streams_opened_;
  }

 private:
  class Stream;
  struct Pending {
    uint64_t seq;
    RecordRequest request;
    Callback done;
    runtime::TimerQueue::Id timer;
  };
  struct Completion {
    Callback done;
    absl::Status status;
  };
  // Work to do once the lock is released.
  struct Actions {
    Stream* write_on = nullptr;
    Stream* release_hold_on = nullptr;
    std::vector<Completion> completions;
    void Run();
  };

  void StartStreamLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void NextWriteLocked(Actions* actions) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RetireLocked(Stream* stream, Actions* actions) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void OnResponse(Stream* stream, const RecordResponse& response);
  void OnReadFailed(Stream* stream);
  void OnWriteDone(Stream* stream, bool ok);
  void OnStreamDone(Stream* stream, const grpc::Status& status);
  void OnTimeout(const std::string& id);
  void Reconnect();

  std::unique_ptr<podgate::audit::v1::AuditService::Stub> stub_;
  const AuditClientOptions options_;
  runtime::TimerQueue* const timers_;

  mutable absl::Mutex mu_;
  std::map<std::string, Pending> pending_ ABSL_GUARDED_BY(mu_);
  // Ids not yet written on the current stream, oldest first.
  std::deque<std::string> unsent_ ABSL_GUARDED_BY(mu_);
  Stream* stream_ ABSL_GUARDED_BY(mu_) = nullptr;
  std::shared_ptr<grpc::ClientContext> stream_context_ ABSL_GUARDED_BY(mu_);
  bool reconnect_scheduled_ ABSL_GUARDED_BY(mu_) = false;
  runtime::TimerQueue::Id reconnect_timer_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Duration backoff_ ABSL_GUARDED_BY(mu_);
  uint64_t next_seq_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t streams_opened_ ABSL_GUARDED_BY(mu_) = 0;
  int live_streams_ ABSL_GUARDED_BY(mu_) = 0;
  bool shutting_down_ ABSL_GUARDED_BY(mu_) = false;
};

// One Record stream. Holds its Core alive until OnDone. All fields but the gRPC buffers are
// guarded by the Core's mutex.
class AuditClient::Core::Stream final : public grpc::ClientBidiReactor<RecordRequest, RecordResponse> {
 public:
  Stream(std::shared_ptr<Core> core, std::shared_ptr<grpc::ClientContext> context)
      : context_(std::move(context)), core_(std::move(core)) {
    core_->stub_->async()->Record(context_.get(), this);
    StartRead(&response_);
    // The write flow runs outside reactions: hold the stream open until it is retired.
    AddHold();
    StartCall();
  }

  void OnReadDone(bool ok) override {
    if (!ok) {
      core_->OnReadFailed(this);
      return;
    }
    core_->OnResponse(this, response_);
    StartRead(&response_);
  }
  void OnWriteDone(bool ok) override { core_->OnWriteDone(this, ok); }
  void OnDone(const grpc::Status& status) override {
    std::shared_ptr<Core> core = std::move(core_);
    core->OnStreamDone(this, status);
    delete this;
  }

  // Shared with the Core so that it can cancel without touching a reactor that may be gone.
  std::shared_ptr<grpc::ClientContext> context_;
  RecordRequest request_;
  RecordResponse response_;
  std::shared_ptr<Core> core_;
  bool write_in_flight = false;
  bool retired = false;
  bool hold_released = false;
  // Ids written on this stream and not yet acked.
  std::vector<std::string> written;
};

void AuditClient::Core::Actions::Run() {
  if (write_on != nullptr) {
    write_on->StartWrite(&write_on->request_);
  }
  if (release_hold_on != nullptr) {
    release_hold_on->RemoveHold();
  }
  for (Completion& c : completions) {
    c.done(c.status);
  }
}

void AuditClient::Core::Record(podgate::common::v1::AuditEvent event, Callback done) {
  Actions actions;
  {
    absl::MutexLock lock(&mu_);
    if (shutting_down_) {
      actions.completions.push_back({std::move(done), absl::CancelledError("audit client is shutting down")});
    } else if (pending_.size() >= options_.max_pending) {
      actions.completions.push_back(
          {std::move(done),
           absl::ResourceExhaustedError(absl::StrCat(
               "audit: ", pending_.size(), " events already wait for an ack (limit ",
               options_.max_pending, ")"))});
    } else {
      if (event.id().empty()) {
        event.set_id(runtime::RandomId());
      }
      if (pending_.count(event.id()) != 0) {
        actions.completions.push_back(
            {std::move(done),
             absl::InvalidArgumentError(absl::StrCat("audit: event id ", event.id(),
                                                     " is already waiting for an ack"))});
      } else {
        if (!event.has_time()) {
          const absl::Time now = absl::Now();
          event.mutable_time()->set_seconds(absl::ToUnixSeconds(now));
          event.mutable_time()->set_nanos(
              static_cast<int32_t>((now - absl::FromUnixSeconds(absl::ToUnixSeconds(now))) /
                                   absl::Nanoseconds(1)));
        }
        if (event.source_service().empty()) {
          event.set_source_service(options_.source_service);
        }
        const std::string id = event.id();
        Pending p;
        p.seq = next_seq_++;
        *p.request.mutable_event() = std::move(event);
        p.done = std::move(done);
        std::weak_ptr<Core> weak = weak_from_this();
        p.timer = timers_->After(options_.ack_timeout, [weak, id] {
          if (auto core = weak.lock()) {
            core->OnTimeout(id);
          }
        });
        pending_.emplace(id, std::move(p));
        unsent_.push_back(id);
        StartStreamLocked();
        NextWriteLocked(&actions);
      }
    }
  }
  // An outcome known at once still reaches the caller later, on the timer thread: callers may
  // hold their own locks around Record, and their callbacks may take them.
  std::vector<Completion> now = std::move(actions.completions);
  actions.completions.clear();
  actions.Run();
  for (Completion& c : now) {
    timers_->After(absl::ZeroDuration(),
                   [done = std::move(c.done), status = std::move(c.status)]() mutable {
                     done(std::move(status));
                   });
  }
}

void AuditClient::Core::StartStreamLocked() {
  if (stream_ != nullptr || reconnect_scheduled_ || shutting_down_ || unsent_.empty()) {
    return;
  }
  ++streams_opened_;
  ++live_streams_;
  stream_context_ = std::make_shared<grpc::ClientContext>();
  stream_ = new Stream(shared_from_this(), stream_context_);
}

void AuditClient::Core::NextWriteLocked(Actions* actions) {
  Stream* s = stream_;
  if (s == nullptr || s->retired || s->write_in_flight) {
    return;
  }
  while (!unsent_.empty()) {
    const std::string id = unsent_.front();
    unsent_.pop_front();
    auto it = pending_.find(id);
    if (it == pending_.end()) {
      continue;  // timed out meanwhile
    }
    s->request_ = it->second.request;
    s->write_in_flight = true;
    s->written.push_back(id);
    actions->write_on = s;
    return;
  }
}

void AuditClient::Core::RetireLocked(Stream* stream, Actions* actions) {
  if (!stream->retired) {
    stream->retired = true;
    if (stream_ == stream) {
      stream_ = nullptr;
    }
  }
  if (!stream->write_in_flight && !stream->hold_released) {
    stream->hold_released = true;
    actions->release_hold_on = stream;
  }
}

void AuditClient::Core::OnResponse(Stream* stream, const RecordResponse& response) {
  Actions actions;
  {
    absl::MutexLock lock(&mu_);
    auto complete = [&](const std::string& id, absl::Status status) {
      auto it = pending_.find(id);
      if (it == pending_.end()) {
        return;  // already timed out, or a duplicate ack
      }
      timers_->Cancel(it->second.timer);
      actions.completions.push_back({std::move(it->second.done), std::move(status)});
      pending_.erase(it);
    };
    if (response.has_ack()) {
      for (const std::string& id : response.ack().ids()) {
        complete(id, absl::OkStatus());
      }
      backoff_ = options_.initial_backoff;
    } else if (response.has_rejection()) {
      complete(response.rejection().id(),
               absl::InvalidArgumentError(
                   absl::StrCat("audit rejected the event: ", response.rejection().reason())));
    }
    (void)stream;
  }
  actions.Run();
}

void AuditClient::Core::OnReadFailed(Stream* stream) {
  Actions actions;
  {
    absl::MutexLock lock(&mu_);
    RetireLocked(stream, &actions);
  }
  actions.Run();
}

void AuditClient::Core::OnWriteDone(Stream* stream, bool ok) {
  Actions actions;
  {
    absl::MutexLock lock(&mu_);
    stream->write_in_flight = false;
    if (!ok) {
      RetireLocked(stream, &actions);
    } else if (stream->retired) {
      RetireLocked(stream, &actions);  // releases the hold now that no write is in flight
    } else {
      NextWriteLocked(&actions);
    }
  }
  actions.Run();
}

void AuditClient::Core::OnStreamDone(Stream* stream, const grpc::Status& status) {
  Actions actions;
  {
    absl::MutexLock lock(&mu_);
    --live_streams_;
    if (stream_ == stream) {
      stream_ = nullptr;
    }
    if (shutting_down_) {
      return;
    }
    // Everything not acked goes out again, oldest first, on a new stream after a backoff.
    std::vector<std::pair<uint64_t, std::string>> again;
    for (const auto& [id, p] : pending_) {
      again.emplace_back(p.seq, id);
    }
    std::sort(again.begin(), again.end());
    unsent_.clear();
    for (auto& [seq, id] : again) {
      unsent_.push_back(std::move(id));
    }
    if (!unsent_.empty() && !reconnect_scheduled_) {
      reconnect_scheduled_ = true;
      const absl::Duration wait = backoff_;
      backoff_ = std::min(backoff_ * 2, options_.max_backoff);
      std::weak_ptr<Core> weak = weak_from_this();
      reconnect_timer_ = timers_->After(wait, [weak] {
        if (auto core = weak.lock()) {
          core->Reconnect();
        }
      });
    }
    (void)status;
  }
  actions.Run();
}

void AuditClient::Core::Reconnect() {
  Actions actions;
  {
    absl::MutexLock lock(&mu_);
    reconnect_scheduled_ = false;
    StartStreamLocked();
    NextWriteLocked(&actions);
  }
  actions.Run();
}

void AuditClient::Core::OnTimeout(const std::string& id) {
  Callback done;
  {
    absl::MutexLock lock(&mu_);
    auto it = pending_.find(id);
    if (it == pending_.end()) {
      return;
    }
    done = std::move(it->second.done);
    pending_.erase(it);
  }
  done(absl::DeadlineExceededError(absl::StrCat(
      "audit did not acknowledge the event within ", absl::FormatDuration(options_.ack_timeout))));
}

void AuditClient::Core::Shutdown() {
  std::vector<Completion> completions;
  std::shared_ptr<grpc::ClientContext> context;
  {
    absl::MutexLock lock(&mu_);
    shutting_down_ = true;
    if (reconnect_scheduled_) {
      timers_->Cancel(reconnect_timer_);
    }
    for (auto& [id, p] : pending_) {
      timers_->Cancel(p.timer);
      completions.push_back({std::move(p.done), absl::CancelledError("audit client is shutting down")});
    }
    pending_.clear();
    unsent_.clear();
    context = stream_context_;
  }
  // Outside the lock: cancelling may run the stream's reactions on this thread.
  if (context != nullptr) {
    context->TryCancel();
  }
  {
    absl::MutexLock lock(&mu_);
    auto no_streams = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return live_streams_ == 0; };
    mu_.Await(absl::Condition(&no_streams));
  }
  for (Completion& c : completions) {
    c.done(c.status);
  }
}

AuditClient::AuditClient(std::shared_ptr<grpc::Channel> channel, AuditClientOptions options,
                         runtime::TimerQueue* timers)
    : core_(std::make_shared<Core>(std::move(channel), std::move(options), timers)) {}

AuditClient::~AuditClient() { core_->Shutdown(); }

void AuditClient::Record(podgate::common::v1::AuditEvent event, Callback done) {
  core_->Record(std::move(event), std::move(done));
}

size_t AuditClient::pending() const { return core_->pending(); }

int64_t AuditClient::streams_opened() const { return core_->streams_opened(); }

}  // namespace podgate::clients

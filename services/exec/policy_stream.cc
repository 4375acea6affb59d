#include "exec/policy_stream.h"

#include <deque>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"

namespace podgate::exec {

using podgate::policy::v1::AuthorizeResponse;
using podgate::policy::v1::AuthorizeStreamRequest;
using podgate::policy::v1::AuthorizeStreamResponse;

class PolicyStream::Core : public std::enable_shared_from_this<PolicyStream::Core> {
 public:
  Core(podgate::policy::v1::PolicyService::StubInterface* stub, runtime::TimerQueue* timers)
      : stub_(stub), timers_(timers) {}

  void Ask(podgate::policy::v1::AuthorizeRequest request, absl::Duration timeout, Callback done);
  void Shutdown();

 private:
  class Stream;
  struct Pending {
    Callback done;
    runtime::TimerQueue::Id timer;
  };
  struct Completion {
    Callback done;
    absl::StatusOr<AuthorizeResponse> result;
  };
  struct Actions {
    Stream* write_on = nullptr;
    Stream* release_hold_on = nullptr;
    std::vector<Completion> completions;
    void Run();
  };

  void NextWriteLocked(Actions* actions) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RetireLocked(Stream* stream, Actions* actions) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void OnResponse(const AuthorizeStreamResponse& response);
  void OnReadFailed(Stream* stream);
  void OnWriteDone(Stream* stream, bool ok);
  void OnStreamDone(Stream* stream, const grpc::Status& status);
  void OnTimeout(const std::string& id, absl::Duration timeout);

  podgate::policy::v1::PolicyService::StubInterface* const stub_;
  runtime::TimerQueue* const timers_;

  absl::Mutex mu_;
  std::map<std::string, Pending> pending_ ABSL_GUARDED_BY(mu_);
  std::deque<AuthorizeStreamRequest> unsent_ ABSL_GUARDED_BY(mu_);
  Stream* stream_ ABSL_GUARDED_BY(mu_) = nullptr;
  std::shared_ptr<grpc::ClientContext> stream_context_ ABSL_GUARDED_BY(mu_);
  uint64_t next_id_ ABSL_GUARDED_BY(mu_) = 1;
  int live_streams_ ABSL_GUARDED_BY(mu_) = 0;
  bool shutting_down_ ABSL_GUARDED_BY(mu_) = false;
};

class PolicyStream::Core::Stream final
    : public grpc::ClientBidiReactor<AuthorizeStreamRequest, AuthorizeStreamResponse> {
 public:
  Stream(std::shared_ptr<Core> core, std::shared_ptr<grpc::ClientContext> context)
      : context_(std::move(context)), core_(std::move(core)) {
    core_->stub_->async()->AuthorizeStream(context_.get(), this);
    StartRead(&response_);
    AddHold();
    StartCall();
  }
  void OnReadDone(bool ok) override {
    if (!ok) {
      core_->OnReadFailed(this);
      return;
    }
    core_->OnResponse(response_);
    StartRead(&response_);
  }
  void OnWriteDone(bool ok) override { core_->OnWriteDone(this, ok); }
  void OnDone(const grpc::Status& status) override {
    std::shared_ptr<Core> core = std::move(core_);
    core->OnStreamDone(this, status);
    delete this;
  }

  std::shared_ptr<grpc::ClientContext> context_;
  AuthorizeStreamRequest request_;
  AuthorizeStreamResponse response_;
  std::shared_ptr<Core> core_;
  bool write_in_flight = false;
  bool retired = false;
  bool hold_released = false;
  bool writes_done = false;
};

void PolicyStream::Core::Actions::Run() {
  if (write_on != nullptr) {
    write_on->StartWrite(&write_on->request_);
  }
  if (release_hold_on != nullptr) {
    release_hold_on->RemoveHold();
  }
  for (Completion& c : completions) {
    c.done(std::move(c.result));
  }
}

void PolicyStream::Core::Ask(podgate::policy::v1::AuthorizeRequest request,
                             absl::Duration timeout, Callback done) {
  Actions actions;
  {
    absl::MutexLock lock(&mu_);
    if (shutting_down_) {
      timers_->After(absl::ZeroDuration(), [done = std::move(done)] {
        done(absl::CancelledError("session closing"));
      });
    } else {
      const std::string id = absl::StrCat(next_id_++);
      AuthorizeStreamRequest req;
      req.set_correlation_id(id);
      *req.mutable_request() = std::move(request);
      std::weak_ptr<Core> weak = weak_from_this();
      Pending p;
      p.done = std::move(done);
      p.timer = timers_->After(timeout, [weak, id, timeout] {
        if (auto core = weak.lock()) {
          core->OnTimeout(id, timeout);
        }
      });
      pending_.emplace(id, std::move(p));
      unsent_.push_back(std::move(req));
      if (stream_ == nullptr) {
        ++live_streams_;
        stream_context_ = std::make_shared<grpc::ClientContext>();
        stream_ = new Stream(shared_from_this(), stream_context_);
      }
      NextWriteLocked(&actions);
    }
  }
  actions.Run();
}

void PolicyStream::Core::NextWriteLocked(Actions* actions) {
  Stream* s = stream_;
  if (s == nullptr || s->retired || s->write_in_flight || unsent_.empty()) {
    return;
  }
  s->request_ = std::move(unsent_.front());
  unsent_.pop_front();
  s->write_in_flight = true;
  actions->write_on = s;
}

void PolicyStream::Core::RetireLocked(Stream* stream, Actions* actions) {
  if (!stream->retired) {
    stream->retired = true;
    if (stream_ == stream) {
      stream_ = nullptr;
    }
    // Questions asked on this stream can no longer be answered: fail closed now.
    for (auto& [id, p] : pending_) {
      timers_->Cancel(p.timer);
      actions->completions.push_back(
          {std::move(p.done), absl::UnavailableError("the policy stream broke")});
    }
    pending_.clear();
    unsent_.clear();
  }
  if (!stream->write_in_flight && !stream->hold_released) {
    stream->hold_released = true;
    actions->release_hold_on = stream;
  }
}

void PolicyStream::Core::OnResponse(const AuthorizeStreamResponse& response) {
  Actions actions;
  {
    absl::MutexLock lock(&mu_);
    auto it = pending_.find(response.correlation_id());
    if (it != pending_.end()) {
      timers_->Cancel(it->second.timer);
      actions.completions.push_back({std::move(it->second.done), response.response()});
      pending_.erase(it);
    }
  }
  actions.Run();
}

void PolicyStream::Core::OnReadFailed(Stream* stream) {
  Actions actions;
  {
    absl::MutexLock lock(&mu_);
    RetireLocked(stream, &actions);
  }
  actions.Run();
}

void PolicyStream::Core::OnWriteDone(Stream* stream, bool ok) {
  Actions actions;
  {
    absl::MutexLock lock(&mu_);
    stream->write_in_flight = false;
    if (!ok || stream->retired) {
      RetireLocked(stream, &actions);
    } else {
      NextWriteLocked(&actions);
    }
  }
  actions.Run();
}

void PolicyStream::Core::OnStreamDone(Stream* stream, const grpc::Status& status) {
  Actions actions;
  {
    absl::MutexLock lock(&mu_);
    --live_streams_;
    if (stream_ == stream) {
      stream_ = nullptr;
    }
    (void)status;
  }
  actions.Run();
}

void PolicyStream::Core::OnTimeout(const std::string& id, absl::Duration timeout) {
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
  done(absl::DeadlineExceededError(
      absl::StrCat("policy did not answer within ", absl::FormatDuration(timeout))));
}

void PolicyStream::Core::Shutdown() {
  std::vector<Completion> completions;
  std::shared_ptr<grpc::ClientContext> context;
  {
    absl::MutexLock lock(&mu_);
    shutting_down_ = true;
    for (auto& [id, p] : pending_) {
      timers_->Cancel(p.timer);
      completions.push_back({std::move(p.done), absl::CancelledError("session closing")});
    }
    pending_.clear();
    unsent_.clear();
    context = stream_context_;
  }
  // No waiting for the stream to end (this may run inside a reaction): the stream keeps the
  // Core alive until its OnDone, and the stub outlives every session.
  if (context != nullptr) {
    context->TryCancel();
  }
  // Answered on the timer thread: the owner may be destroying this stream under its own lock.
  for (Completion& c : completions) {
    timers_->After(absl::ZeroDuration(),
                   [done = std::move(c.done), result = std::move(c.result)]() mutable {
                     done(std::move(result));
                   });
  }
}

PolicyStream::PolicyStream(podgate::policy::v1::PolicyService::StubInterface* stub,
                           runtime::TimerQueue* timers)
    : core_(std::make_shared<Core>(stub, timers)) {}

PolicyStream::~PolicyStream() { core_->Shutdown(); }

void PolicyStream::Ask(podgate::policy::v1::AuthorizeRequest request, absl::Duration timeout,
                       Callback done) {
  core_->Ask(std::move(request), timeout, std::move(done));
}

}  // namespace podgate::exec

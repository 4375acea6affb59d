// A long-lived client bidi stream that carries many requests, each settled by id: the one
// stream mechanism under the audit recorder (acks, resends) and exec's policy questions.
//
// Each submitted request waits, keyed by its id, until a response settles it, its timeout
// passes, its stream breaks (the protocol decides per entry: fail it now, or send it again on
// the next stream, oldest first), or the owner closes. Every callback runs exactly once and
// never under the stream's lock, nor inside Submit or Close: an outcome known at once goes
// through the timer queue, so a caller may hold a lock around those calls that its callback
// takes. Responses and deadlines settle entries on gRPC and timer threads; only CloseAndWait,
// for owners that need every callback done when it returns, calls them itself.
//
// One stream is open at a time, opened when there is something to send; it keeps one read
// outstanding and one write in flight, the rest queued in order. A stream that ends with
// entries to send again is reopened after a backoff that doubles up to a limit and starts
// over whenever the protocol sees the peer healthy; otherwise the next Submit reopens it.
//
// What differs per RPC is a small protocol class (see StreamProtocol): which RPC to open, an
// entry's id, what a response settles, what a broken stream means for an entry, and the
// wording of the errors.
#pragma once

#include <algorithm>
#include <concepts>
#include <cstdint>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "grpcpp/client_context.h"
#include "grpcpp/support/client_callback.h"
#include "runtime/timer.h"

namespace podgate::clients {

// The hooks a CorrelatedStream needs from its RPC.
template <typename P>
concept StreamProtocol = requires(
    const P& p, grpc::ClientContext* context,
    grpc::ClientBidiReactor<typename P::Request, typename P::Response>* reactor,
    const typename P::Request& request, const typename P::Response& response,
    std::vector<std::pair<std::string, typename P::Result>>* settled, absl::Duration timeout) {
  // What a callback receives: a result, or the error statuses below.
  requires std::constructible_from<typename P::Result, absl::Status>;
  // Starts the RPC on `reactor` (stub->async()->Method(context, reactor)). The protocol points
  // at a stub its owner keeps; it must not own the stub or channel: the stream's state may be
  // released last by a reactor's OnDone on a gRPC callback thread, and the last reference to a
  // grpc::Channel dropped there tears down gRPC's callback completion queue under that thread.
  p.Open(context, reactor);
  // The id an entry waits under; unique among waiting entries.
  { p.IdOf(request) } -> std::convertible_to<std::string>;
  // Appends the (id, outcome) pairs a response settles; returns whether the response shows
  // the peer healthy (the reconnect backoff then starts over).
  { p.Settle(response, settled) } -> std::same_as<bool>;
  // For an entry waiting when its stream broke: its error, or nullopt to send it again on the
  // next stream.
  { p.OnBreak(request) } -> std::same_as<std::optional<absl::Status>>;
  // The errors: the owner closed; no answer within `timeout`.
  { p.Closing() } -> std::same_as<absl::Status>;
  { p.TimedOut(timeout) } -> std::same_as<absl::Status>;
  // Optional, for a protocol that words the refusals of Submit itself (else a generic text):
  //   absl::Status Full(size_t waiting, size_t limit) const;   // max_pending entries wait
  //   absl::Status AlreadyWaiting(const std::string& id) const;
  // Optional, for a protocol whose requests can travel several to a message (what queued while
  // the previous write was in flight goes out as one message, never waiting for more):
  //   // Entries one message may carry on a stream whose server sent this initial metadata
  //   // (0 or 1: one entry per message, e.g. a server that does not know batches).
  //   size_t BatchLimit(const std::multimap<grpc::string_ref, grpc::string_ref>& md) const;
  //   size_t max_batch_bytes() const;  // the entries' encoded sizes, summed, at most (a first
  //                                    // entry always goes, however large)
  //   void Append(Request* batch, const Request& next) const;  // batch holds one entry or more
};

struct CorrelatedStreamOptions {
  // Entries waiting to be settled; past this, Submit fails at once with RESOURCE_EXHAUSTED.
  // 0: no limit.
  size_t max_pending = 0;
  // What a timeout ends. false: the entry is gone (a question nobody waits for any more).
  // true: the caller hears TimedOut, but the entry keeps waiting and is sent again on every
  // new stream until a response settles it (an audit event must not be forgotten because the
  // caller stopped waiting); it still counts against max_pending, so the bound holds.
  bool keep_until_settled = false;
  // First wait before reopening a stream that ended with entries to send again; doubles up to
  // max_backoff. At most a second, so that the stream is back within about a second of its
  // peer (the chaos test measures it; 5 s left callers refused for 4-15 s after an outage).
  absl::Duration initial_backoff = absl::Milliseconds(100);
  absl::Duration max_backoff = absl::Seconds(1);
};

template <StreamProtocol Protocol>
class CorrelatedStream {
 public:
  using Request = typename Protocol::Request;
  using Response = typename Protocol::Response;
  using Result = typename Protocol::Result;
  using Callback = std::function<void(Result)>;

  CorrelatedStream(Protocol protocol, CorrelatedStreamOptions options, runtime::TimerQueue* timers)
      : core_(std::make_shared<Core>(std::move(protocol), options, timers)) {}
  // Close(); a no-op once closed.
  ~CorrelatedStream() { core_->Close(/*wait=*/false); }

  CorrelatedStream(const CorrelatedStream&) = delete;
  CorrelatedStream& operator=(const CorrelatedStream&) = delete;

  // Queues `request` and calls `done` once with its outcome. Never blocks.
  void Submit(Request request, absl::Duration timeout, Callback done) {
    core_->Submit(std::move(request), timeout, std::move(done));
  }

  // Cancels the stream without waiting for it to end (so it may run inside a reaction); every
  // waiting entry gets Protocol::Closing through the timer queue, and later Submits too.
  // The stream keeps what it touches alive until it ends.
  void Close() { core_->Close(/*wait=*/false); }

  // Cancels the stream, waits until every stream has ended, then calls every waiting entry's
  // callback with Protocol::Closing on this thread: when it returns, no callback of an entry
  // is left to run. For owners destroyed outside any reaction and holding no lock that a
  // callback takes.
  void CloseAndWait() { core_->Close(/*wait=*/true); }

  // Entries waiting to be settled (those whose caller already heard TimedOut included).
  size_t pending() const { return core_->pending(); }
  // keep_until_settled: entries settled after their caller heard TimedOut, and entries still
  // unsettled when the stream was closed (lost: the owner should say so).
  int64_t settled_late() const { return core_->settled_late(); }
  int64_t unsettled_at_close() const { return core_->unsettled_at_close(); }
  // Streams opened so far (1 + reconnects).
  int64_t streams_opened() const { return core_->streams_opened(); }

 private:
  class Reactor;

  // All state, shared with the stream reactors and timer callbacks so that none of them can
  // outlive what it touches.
  class Core : public std::enable_shared_from_this<Core> {
   public:
    Core(Protocol protocol, CorrelatedStreamOptions options, runtime::TimerQueue* timers)
        : protocol_(std::move(protocol)),
          options_(options),
          timers_(timers),
          backoff_(options.initial_backoff) {}

    void Submit(Request request, absl::Duration timeout, Callback done);
    void Close(bool wait);
    size_t pending() const {
      absl::MutexLock lock(&mu_);
      return pending_.size();
    }
    int64_t streams_opened() const {
      absl::MutexLock lock(&mu_);
      return streams_opened_;
    }
    int64_t settled_late() const {
      absl::MutexLock lock(&mu_);
      return settled_late_;
    }
    int64_t unsettled_at_close() const {
      absl::MutexLock lock(&mu_);
      return unsettled_at_close_;
    }

    // From the reactor.
    void OnResponse(const Response& response);
    void OnReadFailed(Reactor* stream);
    void OnWriteDone(Reactor* stream, bool ok);
    void SetBatchLimit(Reactor* stream, size_t limit) {
      absl::MutexLock lock(&mu_);
      stream->batch_limit = std::max<size_t>(limit, 1);
    }
    void OnStreamDone(Reactor* stream, grpc::ClientContext* context);

    const Protocol protocol_;

   private:
    struct Entry {
      // Submission order, for sending again oldest first.
      uint64_t seq;
      Request request;
      Callback done;
      runtime::TimerQueue::Id timer;
    };
    struct Completion {
      Callback done;
      Result result;
    };
    // Work to do once the lock is released.
    struct Actions {
      Reactor* write_on = nullptr;
      Reactor* release_hold_on = nullptr;
      std::vector<Completion> completions;
      void Run();
    };

    void StartStreamLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
    void NextWriteLocked(Actions* actions) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
    // Drops ids at the front of unsent_ that no longer wait (timed out); true if any is left.
    bool HasUnsentLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
    void RetireLocked(Reactor* stream, Actions* actions) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
    void OnTimeout(const std::string& id, absl::Duration timeout);
    absl::Status Full(size_t waiting) const;
    absl::Status AlreadyWaiting(const std::string& id) const;
    void Reconnect();
    // Delivers `status` to `done` on the timer thread.
    void Later(Callback done, absl::Status status);

    const CorrelatedStreamOptions options_;
    runtime::TimerQueue* const timers_;

    mutable absl::Mutex mu_;
    std::map<std::string, Entry> pending_ ABSL_GUARDED_BY(mu_);
    // Ids not yet written on the current stream, oldest first.
    // A list, not a deque: libstdc++'s deque allocates 512 bytes as it is built, and exec holds
    // one of these streams per session.
    std::list<std::string> unsent_ ABSL_GUARDED_BY(mu_);
    Reactor* stream_ ABSL_GUARDED_BY(mu_) = nullptr;
    std::shared_ptr<grpc::ClientContext> stream_context_ ABSL_GUARDED_BY(mu_);
    bool reconnect_scheduled_ ABSL_GUARDED_BY(mu_) = false;
    runtime::TimerQueue::Id reconnect_timer_ ABSL_GUARDED_BY(mu_) = 0;
    absl::Duration backoff_ ABSL_GUARDED_BY(mu_);
    uint64_t next_seq_ ABSL_GUARDED_BY(mu_) = 0;
    int64_t streams_opened_ ABSL_GUARDED_BY(mu_) = 0;
    int live_streams_ ABSL_GUARDED_BY(mu_) = 0;
    bool closing_ ABSL_GUARDED_BY(mu_) = false;
    int64_t settled_late_ ABSL_GUARDED_BY(mu_) = 0;
    int64_t unsettled_at_close_ ABSL_GUARDED_BY(mu_) = 0;
  };

  // One stream. Holds its Core alive until OnDone. The flags and request_ are guarded by the
  // Core's mutex; response_ belongs to the read in flight.
  class Reactor final : public grpc::ClientBidiReactor<Request, Response> {
   public:
    Reactor(std::shared_ptr<Core> core, std::shared_ptr<grpc::ClientContext> context)
        : context_(std::move(context)), core_(std::move(core)) {
      core_->protocol_.Open(context_.get(), this);
      this->StartRead(&response_);
      // The write flow runs outside reactions: hold the stream open until it is retired.
      this->AddHold();
      this->StartCall();
    }

    void OnReadDone(bool ok) override {
      if (!ok) {
        core_->OnReadFailed(this);
        return;
      }
      core_->OnResponse(response_);
      this->StartRead(&response_);
    }
    void OnWriteDone(bool ok) override { core_->OnWriteDone(this, ok); }
    void OnReadInitialMetadataDone(bool ok) override {
      if constexpr (requires {
                      core_->protocol_.BatchLimit(context_->GetServerInitialMetadata());
                    }) {
        if (ok) {
          core_->SetBatchLimit(this,
                               core_->protocol_.BatchLimit(context_->GetServerInitialMetadata()));
        }
      }
    }
    void OnDone(const grpc::Status& status) override {
      std::shared_ptr<Core> core = std::move(core_);
      // A protocol may keep why the server ended the stream, to say it in TimedOut.
      if constexpr (requires { core->protocol_.OnStreamEnded(status); }) {
        core->protocol_.OnStreamEnded(status);
      }
      // The call's context holds a reference to the channel: it goes before the Core hears that
      // the stream ended, so an owner returning from CloseAndWait never leaves the last channel
      // reference to this gRPC thread (see StreamProtocol::Open).
      grpc::ClientContext* const context = context_.get();
      context_.reset();
      core->OnStreamDone(this, context);
      delete this;
    }

    Request request_;
    // Entries one message may carry (Protocol::BatchLimit), once the server's initial metadata
    // came; one until then.
    size_t batch_limit = 1;
    bool write_in_flight = false;
    bool retired = false;
    bool hold_released = false;

   private:
    // Shared with the Core so that it can cancel without touching a reactor that may be gone.
    std::shared_ptr<grpc::ClientContext> context_;
    Response response_;
    std::shared_ptr<Core> core_;
  };

  std::shared_ptr<Core> core_;
};

template <StreamProtocol Protocol>
void CorrelatedStream<Protocol>::Core::Actions::Run() {
  if (write_on != nullptr) {
    write_on->StartWrite(&write_on->request_);
  }
  if (release_hold_on != nullptr) {
    release_hold_on->RemoveHold();
  }
  for (Completion& c : completions) {
    if (c.done) {  // empty: the caller already heard TimedOut (keep_until_settled)
      c.done(std::move(c.result));
    }
  }
}

template <StreamProtocol Protocol>
void CorrelatedStream<Protocol>::Core::Submit(Request request, absl::Duration timeout,
                                              Callback done) {
  Actions actions;
  std::optional<absl::Status> refused;
  {
    absl::MutexLock lock(&mu_);
    std::string id = protocol_.IdOf(request);
    if (closing_) {
      refused = protocol_.Closing();
    } else if (options_.max_pending != 0 && pending_.size() >= options_.max_pending) {
      refused = Full(pending_.size());
    } else if (pending_.count(id) != 0) {
      refused = AlreadyWaiting(id);
    } else {
      std::weak_ptr<Core> weak = this->weak_from_this();
      const runtime::TimerQueue::Id timer = timers_->After(timeout, [weak, id, timeout] {
        if (auto core = weak.lock()) {
          core->OnTimeout(id, timeout);
        }
      });
      pending_.emplace(id, Entry{next_seq_++, std::move(request), std::move(done), timer});
      unsent_.push_back(std::move(id));
      StartStreamLocked();
      NextWriteLocked(&actions);
    }
  }
  actions.Run();
  // An outcome known at once still reaches the caller later, on the timer thread: callers may
  // hold their own locks around Submit, and their callbacks may take them.
  if (refused.has_value()) {
    Later(std::move(done), *std::move(refused));
  }
}

template <StreamProtocol Protocol>
absl::Status CorrelatedStream<Protocol>::Core::Full(size_t waiting) const {
  if constexpr (requires { protocol_.Full(waiting, options_.max_pending); }) {
    return protocol_.Full(waiting, options_.max_pending);
  } else {
    return absl::ResourceExhaustedError(
        absl::StrCat(waiting, " requests already wait (limit ", options_.max_pending, ")"));
  }
}

template <StreamProtocol Protocol>
absl::Status CorrelatedStream<Protocol>::Core::AlreadyWaiting(const std::string& id) const {
  if constexpr (requires { protocol_.AlreadyWaiting(id); }) {
    return protocol_.AlreadyWaiting(id);
  } else {
    return absl::InvalidArgumentError(absl::StrCat("id ", id, " is already waiting"));
  }
}

template <StreamProtocol Protocol>
void CorrelatedStream<Protocol>::Core::Later(Callback done, absl::Status status) {
  timers_->After(absl::ZeroDuration(),
                 [done = std::move(done), result = Result(std::move(status))]() mutable {
                   done(std::move(result));
                 });
}

template <StreamProtocol Protocol>
bool CorrelatedStream<Protocol>::Core::HasUnsentLocked() {
  while (!unsent_.empty() && pending_.count(unsent_.front()) == 0) {
    unsent_.pop_front();
  }
  return !unsent_.empty();
}

template <StreamProtocol Protocol>
void CorrelatedStream<Protocol>::Core::StartStreamLocked() {
  if (stream_ != nullptr || reconnect_scheduled_ || closing_ || !HasUnsentLocked()) {
    return;
  }
  ++streams_opened_;
  ++live_streams_;
  stream_context_ = std::make_shared<grpc::ClientContext>();
  // A stream opened while the peer is away waits for the channel to connect instead of failing
  // at once: it starts the moment the peer is back. Entries still time out on their own timers.
  stream_context_->set_wait_for_ready(true);
  stream_ = new Reactor(this->shared_from_this(), stream_context_);
}

template <StreamProtocol Protocol>
void CorrelatedStream<Protocol>::Core::NextWriteLocked(Actions* actions) {
  Reactor* s = stream_;
  if (s == nullptr || s->retired || s->write_in_flight || !HasUnsentLocked()) {
    return;
  }
  s->request_ = pending_.at(unsent_.front()).request;
  unsent_.pop_front();
  if constexpr (requires(Request * batch) {
                  protocol_.Append(batch, s->request_);
                  { protocol_.max_batch_bytes() } -> std::convertible_to<size_t>;
                }) {
    size_t entries = 1;
    size_t bytes = s->request_.ByteSizeLong();
    while (entries < s->batch_limit && HasUnsentLocked()) {
      const Request& next = pending_.at(unsent_.front()).request;
      const size_t next_bytes = next.ByteSizeLong();
      if (bytes + next_bytes > protocol_.max_batch_bytes()) {
        break;
      }
      protocol_.Append(&s->request_, next);
      unsent_.pop_front();
      ++entries;
      bytes += next_bytes;
    }
  }
  s->write_in_flight = true;
  actions->write_on = s;
}

template <StreamProtocol Protocol>
void CorrelatedStream<Protocol>::Core::RetireLocked(Reactor* stream, Actions* actions) {
  if (!stream->retired) {
    stream->retired = true;
    if (stream_ == stream) {
      stream_ = nullptr;
      // Everything waiting was on this stream: the protocol fails each entry now, or it goes
      // out again on the next stream, oldest first.
      std::vector<std::pair<uint64_t, std::string>> again;
      for (auto it = pending_.begin(); it != pending_.end();) {
        if (std::optional<absl::Status> error = protocol_.OnBreak(it->second.request)) {
          timers_->Cancel(it->second.timer);
          actions->completions.push_back({std::move(it->second.done), Result(*std::move(error))});
          it = pending_.erase(it);
        } else {
          again.emplace_back(it->second.seq, it->first);
          ++it;
        }
      }
      std::sort(again.begin(), again.end());
      unsent_.clear();
      for (auto& [seq, id] : again) {
        unsent_.push_back(std::move(id));
      }
    }
  }
  if (!stream->write_in_flight && !stream->hold_released) {
    stream->hold_released = true;
    actions->release_hold_on = stream;
  }
}

template <StreamProtocol Protocol>
void CorrelatedStream<Protocol>::Core::OnResponse(const Response& response) {
  std::vector<std::pair<std::string, Result>> settled;
  const bool healthy = protocol_.Settle(response, &settled);
  Actions actions;
  {
    absl::MutexLock lock(&mu_);
    for (auto& [id, result] : settled) {
      auto it = pending_.find(id);
      if (it == pending_.end()) {
        continue;  // already timed out, or settled twice
      }
      timers_->Cancel(it->second.timer);
      if (!it->second.done) {
        ++settled_late_;
      }
      actions.completions.push_back({std::move(it->second.done), std::move(result)});
      pending_.erase(it);
    }
    if (healthy) {
      backoff_ = options_.initial_backoff;
    }
  }
  actions.Run();
}

template <StreamProtocol Protocol>
void CorrelatedStream<Protocol>::Core::OnReadFailed(Reactor* stream) {
  Actions actions;
  {
    absl::MutexLock lock(&mu_);
    RetireLocked(stream, &actions);
  }
  actions.Run();
}

template <StreamProtocol Protocol>
void CorrelatedStream<Protocol>::Core::OnWriteDone(Reactor* stream, bool ok) {
  Actions actions;
  {
    absl::MutexLock lock(&mu_);
    stream->write_in_flight = false;
    if (!ok || stream->retired) {
      // A retired stream's hold is released now that no write is in flight.
      RetireLocked(stream, &actions);
    } else {
      NextWriteLocked(&actions);
    }
  }
  actions.Run();
}

template <StreamProtocol Protocol>
void CorrelatedStream<Protocol>::Core::OnStreamDone(Reactor* stream, grpc::ClientContext* context) {
  absl::MutexLock lock(&mu_);
  if (stream_context_.get() == context) {
    stream_context_.reset();  // the last reference to the ended call's context
  }
  --live_streams_;
  // The hold keeps a stream open until it is retired, so it is no longer stream_ here.
  (void)stream;
  if (closing_ || stream_ != nullptr || reconnect_scheduled_ || !HasUnsentLocked()) {
    return;
  }
  // What the broken stream left to send goes out on a new stream after a backoff.
  reconnect_scheduled_ = true;
  const absl::Duration wait = backoff_;
  backoff_ = std::min(backoff_ * 2, options_.max_backoff);
  std::weak_ptr<Core> weak = this->weak_from_this();
  reconnect_timer_ = timers_->After(wait, [weak] {
    if (auto core = weak.lock()) {
      core->Reconnect();
    }
  });
}

template <StreamProtocol Protocol>
void CorrelatedStream<Protocol>::Core::Reconnect() {
  Actions actions;
  {
    absl::MutexLock lock(&mu_);
    reconnect_scheduled_ = false;
    StartStreamLocked();
    NextWriteLocked(&actions);
  }
  actions.Run();
}

template <StreamProtocol Protocol>
void CorrelatedStream<Protocol>::Core::OnTimeout(const std::string& id, absl::Duration timeout) {
  Callback done;
  {
    absl::MutexLock lock(&mu_);
    auto it = pending_.find(id);
    if (it == pending_.end() || !it->second.done) {
      return;
    }
    done = std::move(it->second.done);
    it->second.done = nullptr;
    if (!options_.keep_until_settled) {
      pending_.erase(it);
    }
    // else the entry stays: sent again on each new stream until a response settles it.
  }
  done(Result(protocol_.TimedOut(timeout)));
}

template <StreamProtocol Protocol>
void CorrelatedStream<Protocol>::Core::Close(bool wait) {
  std::vector<Callback> waiting;
  std::shared_ptr<grpc::ClientContext> context;
  {
    absl::MutexLock lock(&mu_);
    // Closing again only waits (if asked): nothing has been let in since.
    if (!closing_) {
      context = stream_context_;
    }
    closing_ = true;
    if (reconnect_scheduled_) {
      timers_->Cancel(reconnect_timer_);
      reconnect_scheduled_ = false;
    }
    for (auto& [id, entry] : pending_) {
      timers_->Cancel(entry.timer);
      if (entry.done) {
        waiting.push_back(std::move(entry.done));
      } else {
        ++unsettled_at_close_;  // its caller heard TimedOut; now it is lost
      }
    }
    pending_.clear();
    unsent_.clear();
  }
  // Outside the lock: cancelling may run the stream's reactions on this thread.
  if (context != nullptr) {
    context->TryCancel();
  }
  if (!wait) {
    // The owner may be closing under its own lock, which the callbacks take.
    for (Callback& done : waiting) {
      Later(std::move(done), protocol_.Closing());
    }
    return;
  }
  {
    absl::MutexLock lock(&mu_);
    auto no_streams = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return live_streams_ == 0; };
    mu_.Await(absl::Condition(&no_streams));
  }
  for (Callback& done : waiting) {
    done(Result(protocol_.Closing()));
  }
}

}  // namespace podgate::clients

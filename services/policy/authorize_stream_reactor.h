// The server side of PolicyService.AuthorizeStream: answers each request, in order, with its
// correlation id.
//
// Flow control: one write in flight and at most kMaxQueued answers waiting behind it. While
// the queue is full the reactor stops reading, so a client that does not read its answers
// gets back-pressure (gRPC flow control) instead of growing the server's memory. Evaluation
// takes microseconds and never blocks, so it runs inside the read reaction.
//
// Concurrency: a read's completion and a write's completion run on different threads. Neither
// holds the stream's lock while it decides a question or calls into gRPC (a write sends on the
// socket inside StartWrite): the lock guards only the queue and the flags. The gRPC calls
// (StartRead, StartWrite, Finish) are made by one thread at a time, the pump: whoever finds
// no pump running becomes it and keeps starting what the state asks for until nothing is left,
// so the other reaction only updates the state and returns.
//
// What answers a question is a function: podgate-policy's Authorizer, or in the benchmark's
// stream floor (tools/bench/stream_floor.cc) a fixed answer, so that the floor measures this
// stream's I/O with no decision.
#pragma once

#include <atomic>
#include <deque>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/functional/any_invocable.h"
#include "absl/synchronization/mutex.h"
#include "grpcpp/support/server_callback.h"
#include "podgate/policy/v1/policy.grpc.pb.h"
#include "policy/authorizer.h"
#include "runtime/trace.h"

namespace podgate::policy {

class AuthorizeStreamReactor;

// The open AuthorizeStreams, so that shutdown can end them: each sends what it has queued and
// then ends with UNAVAILABLE (the client reconnects to another replica) instead of waiting for
// the drain deadline to cancel it.
class StreamRegistry {
 public:
  // Ends every open stream and refuses new ones. Safe to call more than once.
  void DrainAll();
  // Registers a new stream; false once draining.
  bool Add(AuthorizeStreamReactor* reactor);
  void Remove(AuthorizeStreamReactor* reactor);

 private:
  absl::Mutex mu_;
  absl::flat_hash_set<AuthorizeStreamReactor*> streams_ ABSL_GUARDED_BY(mu_);
  bool draining_ ABSL_GUARDED_BY(mu_) = false;
};

class AuthorizeStreamReactor final
    : public grpc::ServerBidiReactor<podgate::policy::v1::AuthorizeStreamRequest,
                                     podgate::policy::v1::AuthorizeStreamResponse> {
 public:
  static constexpr size_t kMaxQueued = 32;

  // The answer to one question; `trace` is the stream's.
  using Answer = absl::AnyInvocable<podgate::policy::v1::AuthorizeResponse(
      const podgate::policy::v1::AuthorizeRequest& request, const runtime::TraceContext& trace)>;

  // Answers with `authorizer` (not owned). `trace`: the stream's (from the caller's
  // traceparent metadata, runtime/trace_metadata.h).
  AuthorizeStreamReactor(const Authorizer* authorizer, StreamRegistry* registry,
                         runtime::TraceContext trace = {});
  // Answers with `answer`.
  AuthorizeStreamReactor(Answer answer, StreamRegistry* registry, runtime::TraceContext trace = {});

  // Sends what is queued, then ends the stream with UNAVAILABLE. Called by StreamRegistry,
  // which holds a reference meanwhile.
  void Drain();
  void Ref() { refs_.fetch_add(1); }
  void Unref() {
    if (refs_.fetch_sub(1) == 1) {
      delete this;
    }
  }

  void OnReadDone(bool ok) override;
  void OnWriteDone(bool ok) override;
  void OnCancel() override {}
  void OnDone() override;

 private:
  // The next gRPC call the pump makes.
  struct Step {
    enum Kind { kNothing, kRead, kWrite, kFinish } kind = kNothing;
    const podgate::policy::v1::AuthorizeStreamResponse* write = nullptr;  // kWrite
    grpc::WriteOptions options;                                           // kWrite
    grpc::Status status;                                                  // kFinish
  };

  // Makes the gRPC calls the state asks for, unless another thread is already doing so.
  // Called without mu_.
  void Pump() ABSL_LOCKS_EXCLUDED(mu_);
  // The next call to make, with the state updated as if it were made.
  Step NextLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The answer to request_, which no read is filling while this runs.
  podgate::policy::v1::AuthorizeStreamResponse AnswerRequest();

  Answer answer_;
  StreamRegistry* const registry_;
  const runtime::TraceContext trace_;
  // One reference for gRPC (released in OnDone), one per DrainAll in progress.
  std::atomic<int> refs_{1};
  // Filled by a read; read by OnReadDone before the next read is started.
  podgate::policy::v1::AuthorizeStreamRequest request_;

  absl::Mutex mu_;
  // Answers not yet written; the front one is being written while writing_.
  std::deque<podgate::policy::v1::AuthorizeStreamResponse> queue_ ABSL_GUARDED_BY(mu_);
  bool pumping_ ABSL_GUARDED_BY(mu_) = false;  // a thread is making the gRPC calls
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  // The first write (with the response headers) has completed: later ones may be buffered.
  bool wrote_first_ ABSL_GUARDED_BY(mu_) = false;
  bool reading_ ABSL_GUARDED_BY(mu_) = true;  // a read is in flight
  bool half_closed_ ABSL_GUARDED_BY(mu_) = false;
  bool broken_ ABSL_GUARDED_BY(mu_) = false;    // a write failed: the client is gone
  bool finished_ ABSL_GUARDED_BY(mu_) = false;  // Finish was called (or is being called)
  bool draining_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace podgate::policy

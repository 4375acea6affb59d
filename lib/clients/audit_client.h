// The client every podgate service uses to record audit events: one `audit.v1.Record` stream
// per process, multiplexing every session's events, with acks routed back per event.
//
// Nothing is lost while the audit service is away: an event that is not acked when its stream
// breaks is resent on the next stream (ids make resends idempotent), and keeps being resent
// until it is acked — past its ack timeout too. The caller learns an outcome exactly once: OK
// once durable, or an error — DEADLINE_EXCEEDED (no ack within the ack timeout: the caller
// stops waiting, the event does not stop trying), RESOURCE_EXHAUSTED (max_pending events wait
// already: the bound on memory; exec then refuses new commands rather than forget records),
// INVALID_ARGUMENT (audit rejected it), CANCELLED (the client is shutting down). Events still
// unacked at shutdown are counted and logged. In strict mode, exec lets nothing reach a pod
// until the relevant event is acked.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "grpcpp/channel.h"
#include "podgate/audit/v1/audit.grpc.pb.h"
#include "runtime/timer.h"

namespace podgate::clients {

struct AuditClientOptions {
  // Written into each event's source_service when empty ("exec", "edge", "policy").
  std::string source_service;
  // Events waiting for an ack; past this, Record fails at once with RESOURCE_EXHAUSTED.
  size_t max_pending = 10000;
  // An event not acked within this fails with DEADLINE_EXCEEDED.
  absl::Duration ack_timeout = absl::Seconds(10);
  // First wait before reconnecting a broken stream; doubles up to max_backoff. One second at
  // most: with 5 s, exec still refused commands 4-15 s after audit came back from an outage
  // of 7-12 s (strict mode waits for these acks), where recovery must take at most 2 s.
  absl::Duration initial_backoff = absl::Milliseconds(100);
  absl::Duration max_backoff = absl::Seconds(1);
};

class AuditClient {
 public:
  using Callback = std::function<void(absl::Status)>;

  AuditClient(std::shared_ptr<grpc::Channel> channel, AuditClientOptions options,
              runtime::TimerQueue* timers = &runtime::TimerQueue::Default());
  // Cancels the stream and fails every waiting event with CANCELLED.
  ~AuditClient();

  AuditClient(const AuditClient&) = delete;
  AuditClient& operator=(const AuditClient&) = delete;

  // Queues `event` (an id and time are filled in when missing) and calls `done` once with
  // its outcome, on a gRPC or timer thread — never inside Record itself, so a caller may hold
  // a lock that `done` takes. Never blocks.
  void Record(podgate::common::v1::AuditEvent event, Callback done);

  // Cancels the stream and fails every waiting event with CANCELLED now, on this thread, as the
  // destructor does (which then has nothing left to do). For owners whose callbacks reach
  // objects that are destroyed before the client.
  void Close();

  // Events waiting for an ack (those whose caller already heard DEADLINE_EXCEEDED included).
  size_t pending() const;
  // Whether max_pending events wait: Record refuses until acks drain the backlog.
  bool saturated() const;
  // Events acked after their caller heard DEADLINE_EXCEEDED.
  int64_t acked_late() const;
  // Streams opened so far (1 + reconnects).
  int64_t streams_opened() const;

 private:
  // The Record stream (a clients::CorrelatedStream) and the options.
  class Core;
  std::unique_ptr<Core> core_;
};

}  // namespace podgate::clients

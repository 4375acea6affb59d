// What carries one session's messages to and from its client: a gRPC Session call
// (StartSession, session.h), or one lane of a Sessions call (session_lanes.h). The session
// (session_reactor.h) drives it as gRPC's server reactor API is driven, and it reports back
// through the session's OnReadDone, OnWriteDone, OnCancel and OnDone.
#pragma once

#include <string>

#include "grpcpp/support/status.h"
#include "podgate/exec/v1/exec.pb.h"
#include "runtime/trace.h"

namespace podgate::exec {

class SessionCall {
 public:
  virtual ~SessionCall() = default;

  // As grpc::ServerBidiReactor's: at most one read and one write outstanding, Finish once (also
  // after a cancellation); each completion comes later, on another thread, never inside these
  // calls (the session calls them with its lock held). After Finish and the last completion
  // comes OnDone; nothing is called on the call after that.
  virtual void StartRead(podgate::exec::v1::SessionRequest* request) = 0;
  virtual void StartWrite(const podgate::exec::v1::SessionResponse* response) = 0;
  virtual void Finish(const grpc::Status& status) = 0;
  // Whether the client left (or the call broke) rather than half-closing.
  virtual bool IsCancelled() const = 0;
  // The client's network address, as gRPC names it.
  virtual std::string peer() const = 0;
  // The session's trace: a child span of the client's traceparent, or a new trace.
  virtual runtime::TraceContext trace() const = 0;
};

}  // namespace podgate::exec

// The exec side of one browser session: a Session call of its own (ExecCallStream, below) or a
// lane of the edge's Sessions stream to exec (exec_lanes.h). Both behave the same to the
// session.
//
// gRPC calls the reactions on its own threads; each is handed, unchanged, to the session's
// strand through `ExecStreamEvents` so the session's state lives on one strand with the
// WebSocket's. A stream is never destroyed while the strand may still call it: it lives until
// `Release` and its last event (OnExecDone). The session starts at most one read and one write
// at a time.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <functional>
#include <memory>

#include "grpcpp/grpcpp.h"
#include "podgate/exec/v1/exec.grpc.pb.h"
#include "runtime/trace.h"

namespace podgate::edge {

// What the stream reports; every call runs on the executor given to the stream.
class ExecStreamEvents {
 public:
  virtual ~ExecStreamEvents() = default;
  virtual void OnExecRead(bool ok, podgate::exec::v1::SessionResponse response) = 0;
  virtual void OnExecWriteDone(bool ok) = 0;
  // The RPC (or lane) is over; the stream is gone.
  virtual void OnExecDone(grpc::Status status) = 0;
};

class ExecStream {
 public:
  virtual ~ExecStream() = default;
  // From the executor only, before Release. The open (given when the stream was made) is the
  // first write, and the first read is started with it: their events come like any other.
  virtual void Write(podgate::exec::v1::SessionRequest request) = 0;
  virtual void Read() = 0;
  virtual void CloseWrites() = 0;
  // Leaves the session as a client that went away does (exec keeps it for a resume).
  virtual void Cancel() = 0;
  // Lets the stream end and delete itself; nothing may be called afterwards.
  virtual void Release() = 0;
};

// A Session call of its own.
class ExecCallStream final : public ExecStream,
                             public grpc::ClientBidiReactor<podgate::exec::v1::SessionRequest,
                                                            podgate::exec::v1::SessionResponse> {
 public:
  // Starts the call with `open` as its first message and the first read; the call carries
  // `trace` as its traceparent.
  ExecCallStream(podgate::exec::v1::ExecService::StubInterface* stub,
                 std::shared_ptr<ExecStreamEvents> events, boost::asio::any_io_executor executor,
                 podgate::exec::v1::SessionRequest open, const runtime::TraceContext& trace = {});

  void Write(podgate::exec::v1::SessionRequest request) override;
  void Read() override;
  void CloseWrites() override;
  void Cancel() override;
  void Release() override;

  void OnReadDone(bool ok) override;
  void OnWriteDone(bool ok) override;
  void OnDone(const grpc::Status& status) override;

 private:
  // Unregisters the call (edge/backend_calls.h) after dropping the executor (a strand's
  // destructor touches the I/O context).
  ~ExecCallStream() override;

  grpc::ClientContext context_;
  std::shared_ptr<ExecStreamEvents> events_;
  boost::asio::any_io_executor executor_;
  podgate::exec::v1::SessionRequest request_;
  podgate::exec::v1::SessionResponse response_;
};

}  // namespace podgate::edge

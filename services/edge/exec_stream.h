// The client side of one exec.v1.ExecService/Session stream, for a browser session.
//
// gRPC calls the reactions on its own threads; each is handed, unchanged, to the session's
// strand through `ExecStreamEvents` so the session's state lives on one strand with the
// WebSocket's. The stream holds a gRPC "hold" until `Release`: it is never destroyed while the
// strand may still call it. The session starts at most one read and one write at a time.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <functional>
#include <memory>

#include "grpcpp/grpcpp.h"
#include "podgate/exec/v1/exec.grpc.pb.h"
#include "runtime/trace.h"

namespace podgate::edge {

// What the stream reports; every call runs on the executor given to ExecStream.
class ExecStreamEvents {
 public:
  virtual ~ExecStreamEvents() = default;
  virtual void OnExecRead(bool ok, podgate::exec::v1::SessionResponse response) = 0;
  virtual void OnExecWriteDone(bool ok) = 0;
  // The RPC is over; the ExecStream is gone.
  virtual void OnExecDone(grpc::Status status) = 0;
};

class ExecStream : public grpc::ClientBidiReactor<podgate::exec::v1::SessionRequest,
                                                  podgate::exec::v1::SessionResponse> {
 public:
  // Starts the call with `open` as its first message and the first read; the call carries
  // `trace` as its traceparent.
  ExecStream(podgate::exec::v1::ExecService::StubInterface* stub,
             std::shared_ptr<ExecStreamEvents> events, boost::asio::any_io_executor executor,
             podgate::exec::v1::SessionRequest open, const runtime::TraceContext& trace = {});

  // From the executor only, before Release.
  void Write(podgate::exec::v1::SessionRequest request);
  void Read();
  void CloseWrites();
  void Cancel();
  // Lets the RPC finish and the stream delete itself; nothing may be called afterwards.
  void Release();

  void OnReadDone(bool ok) override;
  void OnWriteDone(bool ok) override;
  void OnDone(const grpc::Status& status) override;

 private:
  // Unregisters the call (edge/backend_calls.h) after dropping the executor (a strand's
  // destructor touches the I/O context).
  ~ExecStream() override;

  grpc::ClientContext context_;
  std::shared_ptr<ExecStreamEvents> events_;
  boost::asio::any_io_executor executor_;
  podgate::exec::v1::SessionRequest request_;
  podgate::exec::v1::SessionResponse response_;
};

}  // namespace podgate::edge

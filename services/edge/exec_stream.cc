#include "edge/exec_stream.h"

#include <boost/asio/post.hpp>

#include "edge/backend_calls.h"
#include "runtime/trace_metadata.h"

namespace podgate::edge {

ExecCallStream::ExecCallStream(podgate::exec::v1::ExecService::StubInterface* stub,
                               std::shared_ptr<ExecStreamEvents> events,
                               boost::asio::any_io_executor executor,
                               podgate::exec::v1::SessionRequest open,
                               const runtime::TraceContext& trace)
    : events_(std::move(events)), executor_(std::move(executor)), request_(std::move(open)) {
  RegisterBackendCall(&context_);
  runtime::AddTraceMetadata(&context_, trace);
  stub->async()->Session(&context_, this);
  AddHold();
  StartWrite(&request_);
  StartRead(&response_);
  StartCall();
}

ExecCallStream::~ExecCallStream() {
  executor_ = boost::asio::any_io_executor();
  UnregisterBackendCall(&context_);
}

void ExecCallStream::Write(podgate::exec::v1::SessionRequest request) {
  request_ = std::move(request);
  StartWrite(&request_);
}

void ExecCallStream::Read() { StartRead(&response_); }

void ExecCallStream::CloseWrites() { StartWritesDone(); }

void ExecCallStream::Cancel() { context_.TryCancel(); }

void ExecCallStream::Release() { RemoveHold(); }

void ExecCallStream::OnReadDone(bool ok) {
  // Take the message and leave response_ empty before posting: once posted, the strand may
  // start the next read into response_ at any moment.
  podgate::exec::v1::SessionResponse response;
  response.Swap(&response_);
  boost::asio::post(executor_, [events = events_, ok, response = std::move(response)]() mutable {
    events->OnExecRead(ok, std::move(response));
  });
}

void ExecCallStream::OnWriteDone(bool ok) {
  // The written message is not needed again: an idle stream keeps no copy of the last request
  // (the open carries the credential). The next Write comes only after the event posted below.
  podgate::exec::v1::SessionRequest().Swap(&request_);
  boost::asio::post(executor_, [events = events_, ok] { events->OnExecWriteDone(ok); });
}

void ExecCallStream::OnDone(const grpc::Status& status) {
  // The session's reference moves into the last event: once this stream has left the set of
  // live streams, nothing it still holds refers to the session or its executor.
  boost::asio::post(executor_,
                    [events = std::move(events_), status] { events->OnExecDone(status); });
  delete this;
}

}  // namespace podgate::edge

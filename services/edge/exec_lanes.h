// Browser sessions as lanes of one exec.v1 ExecService/Sessions stream (exec.proto, docs/exec.md
// "Many sessions on one stream"): gRPC's memory for a stream is paid once per stream to exec,
// not once per browser session. Each lane is an ExecStream, so a session behaves the same on a
// lane as on a Session call of its own.
//
// One stream at a time carries the new lanes; when it ends (exec restarted, a broken
// connection), its lanes end with it (their sessions see exec lost and may resume) and the next
// lane opens a new stream. Flow control is per lane: edge gives exec credit for a lane's
// responses as the session reads them (one read at a time, each after the browser took the
// last), so a slow browser holds up only its own session; edge's writes on a lane wait for
// exec's credit. No thread: gRPC's reactions route the frames, and every event goes to its
// session's executor.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <cstdint>
#include <memory>

#include "edge/exec_stream.h"
#include "podgate/exec/v1/exec.grpc.pb.h"
#include "runtime/trace.h"
#include "wire/lanes.h"

namespace podgate::edge {

class ExecLanes {
 public:
  // The lanes' windows (exec.proto).
  static constexpr int64_t kResponseWindowBytes = wire::kLaneResponseWindowBytes;
  static constexpr int64_t kRequestWindowBytes = wire::kLaneRequestWindowBytes;

  // `stub` is not owned and must outlive every stream this opens.
  explicit ExecLanes(podgate::exec::v1::ExecService::StubInterface* stub);
  // Cancels the stream in use; its lanes end with it.
  ~ExecLanes();
  ExecLanes(const ExecLanes&) = delete;
  ExecLanes& operator=(const ExecLanes&) = delete;

  // A lane whose first message is `open` (moved from only on success), reporting to `events`
  // on `executor`. Null when exec answered that it serves no Sessions (an exec from before
  // them): the caller opens a Session call instead, and so does every later session.
  ExecStream* Open(std::shared_ptr<ExecStreamEvents> events, boost::asio::any_io_executor executor,
                   podgate::exec::v1::SessionRequest& open, const runtime::TraceContext& trace);

  // Lanes open now, on every stream.
  int64_t lanes() const;

  // Edge is shutting down and its sessions have ended: the stream in use is half-closed once
  // its queued frames are written, and exec ends it (OK) once its lanes have ended, so that no
  // call waits for the drain's deadline. A later Open starts a new stream.
  void CloseStreams();

  class Call;
  struct Shared;

 private:
  podgate::exec::v1::ExecService::StubInterface* const stub_;
  std::shared_ptr<Shared> shared_;
};

}  // namespace podgate::edge

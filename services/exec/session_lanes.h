// The Sessions call (exec.v1 ExecService.Sessions): many sessions on one gRPC stream, each a
// lane with the conversation of a Session stream and flow control of its own. A lane is a
// SessionCall (session_call.h), so a session behaves the same on a lane as on a stream of its
// own: opening, commands, shells, resume, joining, closing.
//
// No thread: the stream's reactions (gRPC's) route each lane's messages; what a lane reports to
// its session runs in order, one report at a time per Sessions call (on the thread of the
// stream's reaction that caused it, or on the timer thread when a session's own call caused
// it), never inside a call the session made.
#pragma once

#include <cstddef>
#include <cstdint>

#include "exec/session_hub.h"
#include "podgate/exec/v1/exec.grpc.pb.h"
#include "wire/lanes.h"

namespace podgate::exec {

// The lanes' windows, in encoded bytes of the lane's messages (see exec.proto).
inline constexpr int64_t kLaneResponseWindowBytes = wire::kLaneResponseWindowBytes;
inline constexpr int64_t kLaneRequestWindowBytes = wire::kLaneRequestWindowBytes;
// At most this many lanes are open on one Sessions call.
inline constexpr size_t kMaxLanesPerStream = 65536;

// Creates the reactor for one Sessions call.
grpc::ServerBidiReactor<podgate::exec::v1::SessionsRequest, podgate::exec::v1::SessionsResponse>*
StartSessions(SessionHub* hub, grpc::CallbackServerContext* context);

}  // namespace podgate::exec

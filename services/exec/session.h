// One exec.v1 Session stream: a callback reactor that verifies the user, resolves the target,
// and then runs commands (command mode) or a TTY shell (shell mode), asking policy before
// every command and recording to audit before anything reaches the pod.
//
// The parts, each in its own files:
//   options.h          ExecOptions: the sessions' limits and behaviour;
//   session_hub.h      SessionHub: what every session shares (dependencies, admission, live
//                      sessions, the drain, the root guard);
//   session_open.h     the steps that open a session (scope, root guard);
//   command_run.h      command mode: one command from request to result;
//   shell_run.h        shell mode and its recording;
//   session_reactor.h  the Session reactor itself: per-stream state and dispatch (internal).
#pragma once

#include <functional>
#include <vector>

#include "absl/status/statusor.h"
#include "exec/session_hub.h"
#include "podgate/exec/v1/exec.grpc.pb.h"

namespace podgate::exec {

// Creates the reactor for one Session call.
grpc::ServerBidiReactor<podgate::exec::v1::SessionRequest, podgate::exec::v1::SessionResponse>*
StartSession(SessionHub* hub, grpc::CallbackServerContext* context);

// The open sessions of other users that `principal` may join (policy's JoinAction on each
// session's target), oldest first, each with may_moderate; `done` runs once, on whichever
// thread answers last. UNAVAILABLE when policy cannot be asked (nothing is listed then).
void ListJoinableSessions(
    SessionHub* hub, const podgate::common::v1::Principal& principal,
    std::function<void(absl::StatusOr<std::vector<podgate::exec::v1::LiveSession>>)> done);

}  // namespace podgate::exec

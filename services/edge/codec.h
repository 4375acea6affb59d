// exec's answers as the browser protocols' messages (docs/protocol.md, "Edge → client" and
// "Seed-compatible protocol"), as pure functions: BrowserSession bridges the streams and
// decides when to send, these decide what the bytes are, and are tested on their own.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "grpcpp/support/status.h"
#include "podgate/exec/v1/exec.pb.h"

namespace podgate::edge {

// What a browser is told when a session's exec stream breaks (docs/protocol.md, "Exec lost").
inline constexpr char kExecLostCommandMessage[] =
    "the exec service was lost while the command ran; its outcome is unknown";
inline constexpr char kExecLostMessage[] =
    "the connection to the exec service was lost; reconnect to continue";

// The words an exit with termination error carries: exec's CommandExit.error, or a generic
// sentence from an exec that does not fill it in. Empty for any other termination.
std::string ExitReason(const podgate::exec::v1::CommandExit& exit);

// v1 control messages (JSON text; bytes that are not UTF-8 become U+FFFD).
std::string V1Ready(const podgate::exec::v1::SessionReady& ready, const std::string& trace_id = "");
// `resumed` (docs/protocol.md, "Resuming a session"): `ready`'s fields with the next resume
// token, what was replayed and lost, and the position the replay continues from (`seq` and
// `offset` of the last message before it: ResumeSession's plus what was lost).
std::string V1Resumed(const podgate::exec::v1::SessionResumed& resumed, const std::string& trace_id,
                      uint64_t seq, uint64_t offset);
// A JSON control message (one object) with the exec message's position added as "seq" and
// "offset"; unchanged when seq is 0 (the session cannot be resumed).
std::string WithPosition(std::string message, uint64_t seq, uint64_t offset);
std::string V1Exit(const podgate::exec::v1::CommandExit& exit);
std::string V1Denied(const podgate::exec::v1::CommandDenied& denied);
std::string V1CommandError(const podgate::exec::v1::CommandError& error);
// An `error`; `id` names the command it answers, empty for one about the session.
std::string V1Error(std::string_view code, std::string_view message, std::string_view id = {});
std::string V1Closed(std::string_view reason, std::string_view message);
// `participants` (docs/protocol.md, "Joining a session"): who is in the session, with roles
// owner|observer|moderator, and whether a moderated shell waits for a moderator.
std::string V1Participants(const podgate::exec::v1::Participants& participants);
// `command`: a command line the session's owner ran, as those who joined see it.
std::string V1CommandStarted(const podgate::exec::v1::CommandStarted& command);
// GET /api/v1/sessions' answer: {"sessions":[{"session_id","user","groups","cluster",
// "namespace","pod","container","mode","opened","participants":[..],"waiting_for_moderator",
// "may_moderate"}]} (docs/protocol.md, "Joining a session").
std::string SessionsJson(const podgate::exec::v1::ListSessionsResponse& response);
// A participant role's word: owner, observer, moderator ("unknown" for anything else).
std::string_view RoleLabel(podgate::common::v1::ParticipantRole role);
// The `exit` of command `id` whose exec stream broke: termination error, no code or duration.
std::string V1ExecLostExit(std::string_view id);

// The seed reply to an exit: nothing for a command that exited on its own (the seed protocol
// has no exit codes), else `{"stderr": "Command ended: <termination>"}` (with the reason for
// an error).
std::optional<std::string> SeedExit(const podgate::exec::v1::CommandExit& exit);

// The seed line telling the browser its running command's exec stream broke.
std::string SeedExecLostCommand();

// What exec's answers mean for the command they end, for any protocol: whether `kind` ends a
// command (exit, denied, error: exec answers every command with exactly one), and the id of
// the command it ends (empty for other kinds).
bool EndsCommand(podgate::exec::v1::SessionResponse::KindCase kind);
const std::string& CommandIdOf(const podgate::exec::v1::SessionResponse& response);

// The WebSocket close code for an exec stream that ended with `code` (not OK): 1008 for a
// refused credential or permission, 1013 for exec unavailable or out of resources or time,
// 1011 for the rest.
uint16_t CloseCodeForStatus(grpc::StatusCode code);

// A gRPC status code number as its name ("UNAVAILABLE").
std::string StatusCodeName(int code);

}  // namespace podgate::edge

#include "edge/codec.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "edge/protocol.h"
#include "google/protobuf/util/time_util.h"
#include "nlohmann/json.hpp"

namespace podgate::edge {

namespace {

using google::protobuf::util::TimeUtil;

std::string Dump(const nlohmann::json& j) {
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace

std::string SeedExecLostCommand() {
  return SeedReply("stderr", absl::StrCat("Command ended: error: ", kExecLostCommandMessage));
}

bool EndsCommand(podgate::exec::v1::SessionResponse::KindCase kind) {
  using podgate::exec::v1::SessionResponse;
  return kind == SessionResponse::kExit || kind == SessionResponse::kDenied ||
         kind == SessionResponse::kError;
}

const std::string& CommandIdOf(const podgate::exec::v1::SessionResponse& response) {
  using podgate::exec::v1::SessionResponse;
  switch (response.kind_case()) {
    case SessionResponse::kExit:
      return response.exit().command_id();
    case SessionResponse::kDenied:
      return response.denied().command_id();
    case SessionResponse::kError:
      return response.error().command_id();
    default:
      return SessionResponse::default_instance().error().command_id();
  }
}

uint16_t CloseCodeForStatus(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::UNAUTHENTICATED:
    case grpc::StatusCode::PERMISSION_DENIED:
      return kClosePolicy;
    case grpc::StatusCode::UNAVAILABLE:
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return kCloseTryAgainLater;
    default:
      return kCloseInternal;
  }
}

std::string StatusCodeName(int code) {
  return absl::StatusCodeToString(static_cast<absl::StatusCode>(code));
}

std::string ExitReason(const podgate::exec::v1::CommandExit& exit) {
  if (exit.termination() != podgate::common::v1::TERMINATION_ERROR) {
    return "";
  }
  return exit.error().empty() ? "the stream to the container failed; the exit status is unknown"
                              : exit.error();
}

namespace {

// `ready`'s fields, for `ready` and `resumed` (which only adds to them).
nlohmann::json ReadyJson(const podgate::exec::v1::SessionReady& r, const std::string& trace_id) {
  nlohmann::json j = {
      {"type", "ready"},
      {"session_id", r.session_id()},
      {"user", r.principal().user()},
      {"groups", r.principal().groups()},
      {"namespace", r.target().namespace_()},
      {"pod", r.target().pod()},
      {"container", r.target().container()},
      {"mode", r.mode() == podgate::common::v1::SESSION_MODE_SHELL ? "shell" : "command"}};
  if (!r.target().cluster().empty()) {
    j["cluster"] = r.target().cluster();
  }
  if (r.has_expires_time()) {
    j["expires"] = TimeUtil::ToString(r.expires_time());
  }
  if (!trace_id.empty()) {
    j["trace_id"] = trace_id;
  }
  if (!r.resume_token().empty()) {
    j["resume"] = {{"token", r.resume_token()}, {"grace_seconds", r.resume_grace().seconds()}};
  }
  if (r.role() != podgate::common::v1::PARTICIPANT_ROLE_UNSPECIFIED) {
    j["role"] = RoleLabel(r.role());
  }
  j["moderator_required"] = r.moderator_required();
  return j;
}

}  // namespace

std::string V1Ready(const podgate::exec::v1::SessionReady& r, const std::string& trace_id) {
  return Dump(ReadyJson(r, trace_id));
}

std::string V1Resumed(const podgate::exec::v1::SessionResumed& r, const std::string& trace_id,
                      uint64_t seq, uint64_t offset) {
  nlohmann::json j = ReadyJson(r.ready(), trace_id);
  j["type"] = "resumed";
  j["replayed_messages"] = r.replayed_messages();
  j["lost_messages"] = r.lost_messages();
  j["lost_bytes"] = r.lost_bytes();
  j["seq"] = seq;
  j["offset"] = offset;
  return Dump(j);
}

std::string WithPosition(std::string message, uint64_t seq, uint64_t offset) {
  if (seq == 0 || message.size() < 2 || message.back() != '}') {
    return message;
  }
  message.pop_back();
  absl::StrAppend(&message, ",\"seq\":", seq, ",\"offset\":", offset, "}");
  return message;
}

std::string V1Exit(const podgate::exec::v1::CommandExit& e) {
  nlohmann::json j = {{"type", "exit"},
                      {"id", e.command_id()},
                      {"termination", std::string(TerminationLabel(e.termination()))},
                      {"code", e.exit_code()},
                      {"duration_ms", TimeUtil::DurationToMilliseconds(e.duration())},
                      {"output_bytes", e.output_bytes()}};
  // A failure always says why, even from an exec that does not fill the field in.
  if (e.termination() == podgate::common::v1::TERMINATION_ERROR) {
    j["reason"] = ExitReason(e);
  }
  // The output limit cut the output: how much was shown of how much (all of it, or at least).
  if (e.termination() == podgate::common::v1::TERMINATION_OUTPUT_LIMIT) {
    j["shown_bytes"] = e.shown_bytes();
    j["output_complete"] = e.output_complete();
    if (e.kept_end()) {
      j["kept_end"] = true;  // the last shown_bytes, not the first
    }
  }
  return Dump(j);
}

std::string V1Denied(const podgate::exec::v1::CommandDenied& d) {
  nlohmann::json j = {
      {"type", "denied"}, {"id", d.command_id()}, {"rule", d.rule()}, {"reason", d.reason()}};
  // What helps the user recover, only when policy gave it.
  if (!d.rule_description().empty()) {
    j["description"] = d.rule_description();
  }
  if (!d.contact().empty()) {
    j["contact"] = d.contact();
  }
  if (!d.request_url().empty()) {
    j["requestUrl"] = d.request_url();
  }
  return Dump(j);
}

std::string V1CommandError(const podgate::exec::v1::CommandError& e) {
  return V1Error(StatusCodeName(e.status().code()), e.status().message(), e.command_id());
}

std::string V1Error(std::string_view code, std::string_view message, std::string_view id) {
  nlohmann::json j = {{"type", "error"}, {"code", code}, {"message", message}};
  if (!id.empty()) {
    j["id"] = id;
  }
  return Dump(j);
}

std::string V1Closed(std::string_view reason, std::string_view message) {
  return Dump({{"type", "closed"}, {"reason", reason}, {"message", message}});
}

std::string_view RoleLabel(podgate::common::v1::ParticipantRole role) {
  switch (role) {
    case podgate::common::v1::PARTICIPANT_ROLE_OWNER:
      return "owner";
    case podgate::common::v1::PARTICIPANT_ROLE_OBSERVER:
      return "observer";
    case podgate::common::v1::PARTICIPANT_ROLE_MODERATOR:
      return "moderator";
    default:
      return "unknown";
  }
}

namespace {

nlohmann::json ParticipantsJson(
    const google::protobuf::RepeatedPtrField<podgate::exec::v1::Participant>& participants) {
  nlohmann::json list = nlohmann::json::array();
  for (const podgate::exec::v1::Participant& p : participants) {
    nlohmann::json one = {{"user", p.user()}, {"role", RoleLabel(p.role())}};
    if (p.has_joined_time()) {
      one["joined"] = TimeUtil::ToString(p.joined_time());
    }
    list.push_back(std::move(one));
  }
  return list;
}

}  // namespace

std::string SessionsJson(const podgate::exec::v1::ListSessionsResponse& response) {
  nlohmann::json sessions = nlohmann::json::array();
  for (const podgate::exec::v1::LiveSession& s : response.sessions()) {
    sessions.push_back(
        {{"session_id", s.session_id()},
         {"user", s.principal().user()},
         {"groups", s.principal().groups()},
         {"cluster", s.target().cluster()},
         {"namespace", s.target().namespace_()},
         {"pod", s.target().pod()},
         {"container", s.target().container()},
         {"mode", s.mode() == podgate::common::v1::SESSION_MODE_SHELL ? "shell" : "command"},
         {"opened", TimeUtil::ToString(s.opened_time())},
         {"participants", ParticipantsJson(s.participants())},
         {"waiting_for_moderator", s.waiting_for_moderator()},
         {"may_moderate", s.may_moderate()}});
  }
  return Dump({{"sessions", std::move(sessions)}});
}

std::string V1Participants(const podgate::exec::v1::Participants& participants) {
  return Dump({{"type", "participants"},
               {"participants", ParticipantsJson(participants.participants())},
               {"waiting_for_moderator", participants.waiting_for_moderator()}});
}

std::string V1CommandStarted(const podgate::exec::v1::CommandStarted& command) {
  return Dump({{"type", "command"}, {"id", command.command_id()}, {"line", command.line()}});
}

std::string V1ExecLostExit(std::string_view id) {
  return Dump({{"type", "exit"},
               {"id", id},
               {"termination", "error"},
               {"reason", kExecLostCommandMessage}});
}

std::optional<std::string> SeedExit(const podgate::exec::v1::CommandExit& e) {
  if (e.termination() == podgate::common::v1::TERMINATION_EXITED) {
    return std::nullopt;
  }
  if (e.termination() == podgate::common::v1::TERMINATION_ERROR) {
    return SeedReply("stderr", absl::StrCat("Command ended: error: ", ExitReason(e)));
  }
  return SeedReply("stderr",
                   absl::StrCat("Command ended: ", std::string(TerminationLabel(e.termination()))));
}

}  // namespace podgate::edge

#include "audit/cli.h"

#include <map>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/time.h"
#include "audit/checkpoint_sign.h"
#include "google/protobuf/util/json_util.h"
#include "google/protobuf/util/time_util.h"
#include "grpcpp/grpcpp.h"
#include "wire/enum_label.h"
#include "wire/status.h"

namespace podgate::audit::cli {
namespace {

using google::protobuf::util::TimeUtil;
using podgate::common::v1::AuditEvent;

// Control characters in stored text would let a record rewrite the investigator's terminal.
std::string Printable(const std::string& text) {
  std::string out;
  for (unsigned char c : text) {
    if (c < 0x20 || c == 0x7f) {
      absl::StrAppend(&out, absl::StrFormat("\\x%02x", c));
    } else {
      out.push_back(static_cast<char>(c));
    }
  }
  return out;
}

std::string Detail(const AuditEvent& e) {
  switch (e.detail_case()) {
    case AuditEvent::kCommandRequest:
      return e.command_request().parse_error().empty()
                 ? e.command_request().line()
                 : absl::StrCat(e.command_request().line(), " (", e.command_request().parse_error(),
                                ")");
    case AuditEvent::kCommandResult:
      return absl::StrCat("exit=", e.command_result().exit_code(), " ",
                          podgate::common::v1::Termination_Name(e.command_result().termination()));
    case AuditEvent::kSessionOpen:
      return podgate::common::v1::SessionMode_Name(e.session_open().mode());
    case AuditEvent::kSessionClose:
      return podgate::common::v1::CloseReason_Name(e.session_close().reason());
    case AuditEvent::kSessionDetach:
      return e.session_detach().reason();
    case AuditEvent::kSessionResume:
      return absl::StrCat("replayed=", e.session_resume().replayed_messages(),
                          " lost_bytes=", e.session_resume().lost_bytes());
    case AuditEvent::kSessionJoin:
      return absl::StrCat(podgate::common::v1::ParticipantRole_Name(e.session_join().role()),
                          " of ", e.session_join().session_user(), "'s session (rule ",
                          e.session_join().rule(), ")");
    case AuditEvent::kSessionLeave:
      return absl::StrCat(podgate::common::v1::ParticipantRole_Name(e.session_leave().role()),
                          " left: ", e.session_leave().reason());
    case AuditEvent::kAuthFailure:
      return absl::StrCat(e.auth_failure().reason(), ": ", e.auth_failure().message());
    case AuditEvent::kPolicyChange:
      return absl::StrCat(e.policy_change().accepted() ? "accepted " : "refused ",
                          e.policy_change().version());
    default:
      return "";
  }
}

}  // namespace

absl::StatusOr<Format> ParseFormat(const std::string& text) {
  if (text == "table") {
    return Format::kTable;
  }
  if (text == "json") {
    return Format::kJsonLines;
  }
  return absl::InvalidArgumentError(absl::StrCat("--format: \"", text, "\" is not table or json"));
}

absl::StatusOr<podgate::common::v1::EventKind> ParseKind(const std::string& text) {
  const std::optional<int> kind =
      wire::EnumFromLabel(*podgate::common::v1::EventKind_descriptor(), text, true);
  if (!kind.has_value()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--kind: \"", text, "\" is not an event kind (e.g. command_request, decision)"));
  }
  return static_cast<podgate::common::v1::EventKind>(*kind);
}

absl::StatusOr<podgate::common::v1::Verdict> ParseVerdict(const std::string& text) {
  const std::optional<int> verdict =
      wire::EnumFromLabel(*podgate::common::v1::Verdict_descriptor(), text, true);
  if (!verdict.has_value()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--verdict: \"", text, "\" is not allow or deny"));
  }
  return static_cast<podgate::common::v1::Verdict>(*verdict);
}

absl::StatusOr<google::protobuf::Timestamp> ParseTime(const std::string& text) {
  google::protobuf::Timestamp ts;
  if (!TimeUtil::FromString(text, &ts)) {
    return absl::InvalidArgumentError(
        absl::StrCat("\"", text, "\" is not an RFC 3339 time like 2026-11-28T04:00:00Z"));
  }
  return ts;
}

std::string TableHeader() {
  return absl::StrFormat("%-24s %-12s %-32s %-16s %-6s %-14s %s", "TIME", "USER",
                         "NAMESPACE/POD/CONTAINER", "KIND", "VERDICT", "RULE", "DETAIL");
}

std::string TableRow(const podgate::audit::v1::AuditRecord& record) {
  const AuditEvent& e = record.event();
  const std::string where = e.has_target()
                                ? absl::StrCat(e.target().namespace_(), "/", e.target().pod(), "/",
                                               e.target().container())
                                : "-";
  const std::string verdict =
      e.has_decision() ? wire::EnumLabel(e.decision().verdict(), "unspecified") : "-";
  const std::string time = absl::FormatTime(
      "%Y-%m-%dT%H:%M:%E3SZ", absl::FromUnixMicros(TimeUtil::TimestampToMicroseconds(e.time())),
      absl::UTCTimeZone());
  return absl::StrFormat("%-24s %-12s %-32s %-16s %-6s %-14s %s", time,
                         Printable(e.principal().user().empty() ? "-" : e.principal().user()),
                         Printable(where), wire::EnumLabel(e.kind(), "unspecified"), verdict,
                         Printable(e.has_decision() ? e.decision().rule() : "-"),
                         Printable(Detail(e)));
}

namespace {

absl::Status PrintRecord(const podgate::audit::v1::AuditRecord& record, Format format,
                         std::ostream& out) {
  if (format == Format::kTable) {
    out << TableRow(record) << "\n";
    return absl::OkStatus();
  }
  google::protobuf::util::JsonPrintOptions json;
  json.preserve_proto_field_names = true;
  std::string line;
  if (auto s = google::protobuf::util::MessageToJsonString(record, &line, json); !s.ok()) {
    return absl::InternalError(std::string(s.message()));
  }
  out << line << "\n";
  return absl::OkStatus();
}

}  // namespace

absl::Status CheckLines(int lines) {
  if (lines < 1 || lines > 1000) {
    return absl::InvalidArgumentError(
        absl::StrCat("--lines: ", lines, " is out of range (1 to 1000)"));
  }
  return absl::OkStatus();
}

absl::StatusOr<int64_t> RunTail(podgate::audit::v1::AuditService::StubInterface& stub,
                                podgate::audit::v1::QueryRequest request, int lines, bool follow,
                                Format format, std::ostream& out, grpc::ClientContext* ctx) {
  if (absl::Status s = CheckLines(lines); !s.ok()) {
    return s;
  }
  request.set_page_size(lines);
  request.clear_page_token();
  // Without follow: the newest page, printed oldest first, like a follow's backlog.
  request.set_follow(follow);
  request.set_newest_first(!follow);
  if (format == Format::kTable) {
    out << TableHeader() << "\n" << std::flush;
  }
  auto reader = stub.Query(ctx, request);
  podgate::audit::v1::QueryResponse response;
  std::vector<podgate::audit::v1::AuditRecord> newest;
  int64_t printed = 0;
  while (reader->Read(&response)) {
    if (!response.has_record()) {
      continue;  // page_end: the backlog is complete
    }
    if (!follow) {
      newest.push_back(response.record());
      continue;
    }
    if (absl::Status s = PrintRecord(response.record(), format, out); !s.ok()) {
      ctx->TryCancel();
      reader->Finish();
      return s;
    }
    out << std::flush;
    ++printed;
  }
  grpc::Status status = reader->Finish();
  if (!status.ok() && !(follow && status.error_code() == grpc::StatusCode::CANCELLED)) {
    return wire::ToAbslStatus(status, "tail");
  }
  for (auto it = newest.rbegin(); it != newest.rend(); ++it) {
    if (absl::Status s = PrintRecord(*it, format, out); !s.ok()) {
      return s;
    }
    ++printed;
  }
  out << std::flush;
  return printed;
}

void SetTimeout(grpc::ClientContext& ctx, absl::Duration timeout) {
  if (timeout != absl::InfiniteDuration()) {
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + timeout));
  }
}

absl::StatusOr<int64_t> RunQuery(podgate::audit::v1::AuditService::StubInterface& stub,
                                 podgate::audit::v1::QueryRequest request, int64_t limit,
                                 Format format, std::ostream& out, absl::Duration timeout) {
  int64_t printed = 0;
  if (format == Format::kTable) {
    out << TableHeader() << "\n";
  }
  google::protobuf::util::JsonPrintOptions json;
  json.preserve_proto_field_names = true;
  while (true) {
    grpc::ClientContext ctx;
    SetTimeout(ctx, timeout);
    auto reader = stub.Query(&ctx, request);
    podgate::audit::v1::QueryResponse response;
    std::string next;
    bool stop = false;
    while (reader->Read(&response)) {
      if (response.has_page_end()) {
        next = response.page_end().next_page_token();
        continue;
      }
      if (stop) {
        continue;
      }
      if (format == Format::kTable) {
        out << TableRow(response.record()) << "\n";
      } else {
        std::string line;
        if (auto s = google::protobuf::util::MessageToJsonString(response.record(), &line, json);
            !s.ok()) {
          return absl::InternalError(std::string(s.message()));
        }
        out << line << "\n";
      }
      ++printed;
      stop = limit > 0 && printed >= limit;
    }
    grpc::Status status = reader->Finish();
    if (!status.ok() && !(stop && status.error_code() == grpc::StatusCode::CANCELLED)) {
      return wire::ToAbslStatus(status, "query");
    }
    if (stop || next.empty()) {
      return printed;
    }
    request.set_page_token(next);
  }
}

absl::StatusOr<bool> RunVerify(podgate::audit::v1::AuditService::StubInterface& stub,
                               const std::string& chain_id, std::ostream& out) {
  VerifyFlags flags;
  flags.chain_id = chain_id;
  return RunVerify(stub, flags, out);
}

absl::StatusOr<bool> RunVerify(podgate::audit::v1::AuditService::StubInterface& stub,
                               const VerifyFlags& flags, std::ostream& out) {
  if (!flags.checkpoint_files.empty() && flags.public_key_files.empty()) {
    return absl::InvalidArgumentError(
        "--checkpoint needs --public_key: a checkpoint is only evidence once its signature is "
        "checked");
  }
  if (flags.max_unsigned_records < 0) {
    return absl::InvalidArgumentError("--max_unsigned_records: must be 0 or more");
  }
  std::vector<std::shared_ptr<const CheckpointKey>> keys;
  for (const std::string& path : flags.public_key_files) {
    absl::StatusOr<std::shared_ptr<const CheckpointKey>> key = CheckpointKey::LoadPublic(path);
    if (!key.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("--public_key: ", key.status().message()));
    }
    keys.push_back(*std::move(key));
  }
  bool ok = true;
  podgate::audit::v1::VerifyRequest request;
  request.set_chain_id(flags.chain_id);
  request.set_max_unsigned_records(flags.max_unsigned_records);
  std::map<std::string, podgate::audit::v1::SignedCheckpoint> newest;
  for (const std::string& path : flags.checkpoint_files) {
    absl::StatusOr<std::vector<podgate::audit::v1::SignedCheckpoint>> checkpoints =
        ReadCheckpointFile(path);
    if (!checkpoints.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--checkpoint: ", checkpoints.status().message()));
    }
    for (auto& checkpoint : *checkpoints) {
      if (absl::Status s = CheckCheckpoint(keys, checkpoint); !s.ok()) {
        // A forged or damaged checkpoint is itself evidence of tampering: reported, not used.
        out << "checkpoint " << Printable(path) << ": BAD: " << Printable(std::string(s.message()))
            << "\n";
        ok = false;
        continue;
      }
      // Only each chain's newest counts: a checkpoint collection kept for months stays one
      // request of one checkpoint a chain.
      auto [it, inserted] = newest.try_emplace(checkpoint.chain_id(), checkpoint);
      if (!inserted && checkpoint.sequence() > it->second.sequence()) {
        it->second = std::move(checkpoint);
      }
    }
  }
  for (auto& [chain, checkpoint] : newest) {
    *request.add_checkpoints() = std::move(checkpoint);
  }
  if (!flags.checkpoint_files.empty() && request.checkpoints_size() == 0) {
    out << "no valid signed checkpoint in the files given\n";
    ok = false;
  }
  grpc::ClientContext ctx;
  SetTimeout(ctx, flags.timeout);
  podgate::audit::v1::VerifyResponse response;
  grpc::Status status = stub.Verify(&ctx, request, &response);
  if (!status.ok()) {
    return wire::ToAbslStatus(status, "verify");
  }
  for (const auto& chain : response.chains()) {
    if (chain.intact()) {
      out << "chain " << Printable(chain.chain_id()) << ": intact, " << chain.records()
          << " records\n";
    } else {
      out << "chain " << Printable(chain.chain_id()) << ": BROKEN at sequence "
          << chain.first_broken_sequence() << ": " << Printable(chain.problem()) << " ("
          << chain.records() << " records checked)\n";
    }
    // Retention's cut is only trusted when signed: a cut written into the database by
    // someone else would hide the deletion of a chain's oldest records.
    if (!keys.empty() && chain.retention_cut().sequence() > 0) {
      if (absl::Status s = CheckCheckpoint(keys, chain.retention_cut()); !s.ok()) {
        out << "chain " << Printable(chain.chain_id()) << ": BROKEN at sequence "
            << chain.retention_cut().sequence()
            << ": retention checkpoint not trusted: " << Printable(std::string(s.message()))
            << "\n";
        ok = false;
      }
    }
  }
  for (const auto& problem : response.problems()) {
    out << Printable(problem) << "\n";
  }
  for (const auto& problem : response.integrity_problems()) {
    out << "database integrity check: " << Printable(problem) << "\n";
  }
  return ok && response.intact();
}

absl::StatusOr<podgate::audit::v1::SignedCheckpoint> RunCheckpoint(
    podgate::audit::v1::AuditService::StubInterface& stub, std::ostream& out,
    absl::Duration timeout) {
  grpc::ClientContext ctx;
  SetTimeout(ctx, timeout);
  podgate::audit::v1::CreateCheckpointResponse response;
  grpc::Status status =
      stub.CreateCheckpoint(&ctx, podgate::audit::v1::CreateCheckpointRequest(), &response);
  if (!status.ok()) {
    return wire::ToAbslStatus(status, "checkpoint");
  }
  out << CheckpointJson(response.checkpoint()) << "\n";
  return response.checkpoint();
}

}  // namespace podgate::audit::cli

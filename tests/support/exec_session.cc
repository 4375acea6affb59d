#include "support/exec_session.h"

#include <fstream>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace podgate::testing {

namespace pb = podgate::exec::v1;
namespace common = podgate::common::v1;

ExecSession::ExecSession(std::shared_ptr<grpc::Channel> channel, absl::Duration deadline)
    : stub_(pb::ExecService::NewStub(std::move(channel))) {
  ctx_.set_deadline(absl::ToChronoTime(absl::Now() + deadline));
  stream_ = stub_->Session(&ctx_);
}

ExecSession::~ExecSession() {
  if (!finished_) {
    ctx_.TryCancel();
    stream_->Finish();
  }
}

absl::StatusOr<pb::SessionReady> ExecSession::Open(const std::string& token, const std::string& ns,
                                                   const std::string& pod,
                                                   const std::string& container) {
  pb::SessionRequest req;
  req.mutable_open()->mutable_credential()->set_bearer_token(token);
  req.mutable_open()->mutable_target()->set_namespace_(ns);
  req.mutable_open()->mutable_target()->set_pod(pod);
  req.mutable_open()->mutable_target()->set_container(container);
  req.mutable_open()->set_mode(common::SESSION_MODE_COMMAND);
  req.mutable_open()->set_client("podgate-bench");
  stream_->Write(req);
  pb::SessionResponse res;
  if (stream_->Read(&res) && res.has_ready()) {
    return res.ready();
  }
  grpc::Status status = stream_->Finish();
  finished_ = true;
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                      absl::StrCat("open: ", status.error_message()));
}

CommandOutcome ExecSession::Run(const std::string& line, const std::string& id) {
  CommandOutcome o;
  if (finished_) {
    o.stream_ended = true;
    return o;
  }
  pb::SessionRequest req;
  req.mutable_command()->set_line(line);
  req.mutable_command()->set_command_id(id);
  stream_->Write(req);
  pb::SessionResponse res;
  while (stream_->Read(&res)) {
    switch (res.kind_case()) {
      case pb::SessionResponse::kStdout:
        o.stdout_text += res.stdout().data();
        break;
      case pb::SessionResponse::kStderr:
        o.stderr_text += res.stderr().data();
        break;
      case pb::SessionResponse::kExit:
        o.exit = res.exit();
        return o;
      case pb::SessionResponse::kDenied:
        o.denied = res.denied();
        return o;
      case pb::SessionResponse::kError:
        o.error = res.error();
        return o;
      default:
        break;
    }
  }
  o.stream_ended = true;
  return o;
}

common::CloseReason ExecSession::Close(grpc::Status* status) {
  common::CloseReason reason = common::CLOSE_REASON_UNSPECIFIED;
  if (!finished_) {
    pb::SessionRequest req;
    req.mutable_close();
    stream_->Write(req);
    stream_->WritesDone();
    pb::SessionResponse res;
    while (stream_->Read(&res)) {
      if (res.has_closed()) {
        reason = res.closed().reason();
      }
    }
    grpc::Status s = stream_->Finish();
    finished_ = true;
    if (status != nullptr) {
      *status = s;
    }
  }
  return reason;
}

std::shared_ptr<grpc::Channel> LoopbackChannel(int port) {
  return grpc::CreateChannel(absl::StrCat("127.0.0.1:", port), grpc::InsecureChannelCredentials());
}

int64_t ResidentKiB(int pid) { return ProcStatus(pid, "VmRSS"); }

int64_t ProcStatus(int pid, const std::string& field) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  const std::string prefix = field + ":";
  while (std::getline(in, line)) {
    if (absl::StartsWith(line, prefix)) {
      std::vector<std::string> parts =
          absl::StrSplit(line.substr(prefix.size()), absl::ByAnyChar(" \t"), absl::SkipEmpty());
      int64_t kib = 0;
      if (!parts.empty() && absl::SimpleAtoi(parts[0], &kib)) {
        return kib;
      }
    }
  }
  return -1;
}

}  // namespace podgate::testing

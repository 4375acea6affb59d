#include "support/exec_session.h"

#include <dirent.h>
#include <sys/resource.h>

#include <fstream>
#include <map>
#include <mutex>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace podgate::testing {

namespace pb = podgate::exec::v1;
namespace common = podgate::common::v1;

namespace {

// A Session stream of its own.
class GrpcSessionStream final : public SessionStream {
 public:
  GrpcSessionStream(const std::shared_ptr<grpc::Channel>& channel, absl::Duration deadline)
      : stub_(pb::ExecService::NewStub(channel)) {
    ctx_.set_deadline(absl::ToChronoTime(absl::Now() + deadline));
    stream_ = stub_->Session(&ctx_);
  }
  bool Write(const pb::SessionRequest& request) override { return stream_->Write(request); }
  bool Read(pb::SessionResponse* response) override { return stream_->Read(response); }
  bool WritesDone() override { return stream_->WritesDone(); }
  grpc::Status Finish() override { return stream_->Finish(); }
  void TryCancel() override { ctx_.TryCancel(); }

 private:
  std::unique_ptr<pb::ExecService::Stub> stub_;
  grpc::ClientContext ctx_;
  std::unique_ptr<grpc::ClientReaderWriter<pb::SessionRequest, pb::SessionResponse>> stream_;
};

}  // namespace

ExecSession::ExecSession(std::shared_ptr<grpc::Channel> channel, absl::Duration deadline) {
  if (ExecSessionsOverLanes()) {
    stream_ = ExecLanes::For(channel)->Open(deadline);
  } else {
    stream_ = std::make_unique<GrpcSessionStream>(channel, deadline);
  }
}

namespace {

// Over lanes, the sessions to one port share a channel, hence one Sessions stream (as edge's
// sessions to one exec do).
std::shared_ptr<grpc::Channel> ChannelFor(int port) {
  if (!ExecSessionsOverLanes()) {
    return LoopbackChannel(port);
  }
  static std::mutex mu;
  static std::map<int, std::shared_ptr<grpc::Channel>> channels;
  std::lock_guard<std::mutex> lock(mu);
  std::shared_ptr<grpc::Channel>& channel = channels[port];
  if (channel == nullptr) {
    channel = LoopbackChannel(port);
  }
  return channel;
}

}  // namespace

ExecSession::ExecSession(int port, absl::Duration deadline)
    : ExecSession(ChannelFor(port), deadline) {}

ExecSession::ExecSession(std::unique_ptr<SessionStream> stream) : stream_(std::move(stream)) {}

ExecSession::~ExecSession() {
  if (!finished_) {
    stream_->TryCancel();
    stream_->Finish();
  }
}

absl::StatusOr<pb::SessionReady> ExecSession::Open(const std::string& token, const std::string& ns,
                                                   const std::string& pod,
                                                   const std::string& container,
                                                   common::SessionMode mode) {
  common::Target target;
  target.set_namespace_(ns);
  target.set_pod(pod);
  target.set_container(container);
  return Open(token, target, mode);
}

absl::StatusOr<pb::SessionReady> ExecSession::Open(const std::string& token,
                                                   const common::Target& target,
                                                   common::SessionMode mode) {
  pb::SessionRequest req;
  req.mutable_open()->mutable_credential()->set_bearer_token(token);
  *req.mutable_open()->mutable_target() = target;
  req.mutable_open()->set_mode(mode);
  req.mutable_open()->set_client("podgate-test");
  stream_->Write(req);
  pb::SessionResponse res;
  if (stream_->Read(&res) && res.has_ready()) {
    return res.ready();
  }
  grpc::Status status = stream_->Finish();
  finished_ = true;
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()), status.error_message());
}

absl::StatusOr<pb::SessionResumed> ExecSession::Resume(const std::string& token,
                                                       const std::string& session_id,
                                                       const std::string& resume_token,
                                                       uint64_t last_seq, uint64_t output_offset) {
  pb::SessionRequest req;
  req.mutable_open()->mutable_credential()->set_bearer_token(token);
  req.mutable_open()->set_client("podgate-test");
  pb::ResumeSession* resume = req.mutable_open()->mutable_resume();
  resume->set_session_id(session_id);
  resume->set_token(resume_token);
  resume->set_last_seq(last_seq);
  resume->set_output_offset(output_offset);
  stream_->Write(req);
  pb::SessionResponse res;
  if (stream_->Read(&res) && res.has_resumed()) {
    return res.resumed();
  }
  grpc::Status status = stream_->Finish();
  finished_ = true;
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()), status.error_message());
}

absl::StatusOr<pb::SessionReady> ExecSession::Join(const std::string& token,
                                                   const std::string& session_id, bool moderator) {
  pb::SessionRequest req;
  req.mutable_open()->mutable_credential()->set_bearer_token(token);
  req.mutable_open()->set_client("podgate-test");
  req.mutable_open()->mutable_join()->set_session_id(session_id);
  req.mutable_open()->mutable_join()->set_moderator(moderator);
  stream_->Write(req);
  pb::SessionResponse res;
  if (stream_->Read(&res) && res.has_ready()) {
    return res.ready();
  }
  grpc::Status status = stream_->Finish();
  finished_ = true;
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()), status.error_message());
}

CommandOutcome ExecSession::Run(const std::string& line, const std::string& id) {
  if (finished_) {
    CommandOutcome o;
    o.stream_ended = true;
    return o;
  }
  Command(line, id);
  return Wait();
}

void ExecSession::Send(const pb::SessionRequest& request) { stream_->Write(request); }

void ExecSession::Command(const std::string& line, const std::string& id) {
  pb::SessionRequest req;
  req.mutable_command()->set_line(line);
  req.mutable_command()->set_command_id(id);
  stream_->Write(req);
}

void ExecSession::Interrupt() {
  pb::SessionRequest req;
  req.mutable_interrupt();
  stream_->Write(req);
}

CommandOutcome ExecSession::Wait(int64_t* bytes_seen) {
  CommandOutcome o;
  pb::SessionResponse res;
  while (stream_->Read(&res)) {
    switch (res.kind_case()) {
      case pb::SessionResponse::kStdout:
        if (bytes_seen != nullptr) {
          *bytes_seen += static_cast<int64_t>(res.stdout().data().size());
        } else {
          o.stdout_text += res.stdout().data();
        }
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

grpc::Status ExecSession::Finish() {
  if (finished_) {
    return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, "the stream was finished before");
  }
  finished_ = true;
  return stream_->Finish();
}

std::shared_ptr<grpc::Channel> LoopbackChannel(int port) {
  return grpc::CreateChannel(absl::StrCat("127.0.0.1:", port), grpc::InsecureChannelCredentials());
}

int64_t ResidentKiB(int pid) { return ProcStatus(pid, "VmRSS"); }

int OpenDescriptors(int pid) {
  DIR* dir = opendir(absl::StrCat("/proc/", pid, "/fd").c_str());
  if (dir == nullptr) {
    return -1;
  }
  int count = 0;
  while (dirent* entry = readdir(dir)) {
    if (entry->d_name[0] != '.') {
      ++count;
    }
  }
  closedir(dir);
  return count;
}

int64_t RaiseDescriptorLimit() {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0) {
    return -1;
  }
  if (limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    setrlimit(RLIMIT_NOFILE, &limit);
    getrlimit(RLIMIT_NOFILE, &limit);
  }
  return static_cast<int64_t>(limit.rlim_cur);
}

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

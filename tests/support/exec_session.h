// A blocking client of exec's Session stream, as another backend drives it: open, run commands
// one at a time, close; every call bounded by one deadline for the whole stream. For the
// benchmark, soak and chaos tools, which run thousands of sessions.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "grpcpp/grpcpp.h"
#include "podgate/exec/v1/exec.grpc.pb.h"

namespace podgate::testing {

// What one command produced.
struct CommandOutcome {
  std::string stdout_text;
  std::string stderr_text;
  std::optional<podgate::exec::v1::CommandExit> exit;
  std::optional<podgate::exec::v1::CommandDenied> denied;
  std::optional<podgate::exec::v1::CommandError> error;
  // The stream ended before the command did.
  bool stream_ended = false;
};

class ExecSession {
 public:
  // `channel` may be shared by many sessions.
  ExecSession(std::shared_ptr<grpc::Channel> channel, absl::Duration deadline);
  ~ExecSession();

  // Sends open; returns ready, or the stream's final status as an error.
  absl::StatusOr<podgate::exec::v1::SessionReady> Open(const std::string& token,
                                                       const std::string& ns,
                                                       const std::string& pod,
                                                       const std::string& container = "");

  // Runs `line` as command `id` (empty: none) and reads until it ends.
  CommandOutcome Run(const std::string& line, const std::string& id = "");

  // Closes; returns the close reason (UNSPECIFIED when the stream ended without one) and sets
  // `status` to the stream's final status when given.
  podgate::common::v1::CloseReason Close(grpc::Status* status = nullptr);

 private:
  std::unique_ptr<podgate::exec::v1::ExecService::Stub> stub_;
  grpc::ClientContext ctx_;
  std::unique_ptr<grpc::ClientReaderWriter<podgate::exec::v1::SessionRequest,
                                           podgate::exec::v1::SessionResponse>>
      stream_;
  bool finished_ = false;
};

// An insecure channel to 127.0.0.1:`port`.
std::shared_ptr<grpc::Channel> LoopbackChannel(int port);

// VmRSS of `pid` in KiB (-1 when unreadable).
int64_t ResidentKiB(int pid);

// The number of a /proc/<pid>/status field ("VmRSS", "Threads"), -1 when unreadable.
int64_t ProcStatus(int pid, const std::string& field);

}  // namespace podgate::testing

// A blocking client of exec's Session stream, as another backend drives it: open, run commands
// one at a time, close; every call bounded by one deadline for the whole stream. The one such
// client of the tests (unit and integration) and of the benchmark, soak and chaos tools. With
// PODGATE_TEST_EXEC_LANES=1 in the environment each session is a lane of one Sessions stream per
// channel instead (support/exec_lanes.h): the same suites then run over lanes.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "grpcpp/grpcpp.h"
#include "podgate/exec/v1/exec.grpc.pb.h"
#include "support/exec_lanes.h"

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
  // A session of its own channel to exec on 127.0.0.1:`port`.
  explicit ExecSession(int port, absl::Duration deadline = absl::Seconds(60));
  // A session on `stream` (e.g. a lane: ExecLanes::Open).
  explicit ExecSession(std::unique_ptr<SessionStream> stream);
  ~ExecSession();

  // Sends open; returns ready, or the stream's final status (code and message) as an error.
  absl::StatusOr<podgate::exec::v1::SessionReady> Open(
      const std::string& token, const std::string& ns, const std::string& pod,
      const std::string& container = "",
      podgate::common::v1::SessionMode mode = podgate::common::v1::SESSION_MODE_COMMAND);
  // The same for a whole target (its cluster included).
  absl::StatusOr<podgate::exec::v1::SessionReady> Open(
      const std::string& token, const podgate::common::v1::Target& target,
      podgate::common::v1::SessionMode mode = podgate::common::v1::SESSION_MODE_COMMAND);

  // Sends an open that resumes session `session_id` (exec's --resume_grace) with its latest
  // resume token and the last message and output offset received; returns `resumed`, or the
  // stream's final status as an error.
  absl::StatusOr<podgate::exec::v1::SessionResumed> Resume(const std::string& token,
                                                           const std::string& session_id,
                                                           const std::string& resume_token,
                                                           uint64_t last_seq = 0,
                                                           uint64_t output_offset = 0);

  // Sends an open that joins another user's session `session_id` (to watch it, or as a
  // moderator); returns the session's `ready`, or the stream's final status as an error.
  absl::StatusOr<podgate::exec::v1::SessionReady> Join(const std::string& token,
                                                       const std::string& session_id,
                                                       bool moderator = false);

  // Runs `line` as command `id` (empty: none) and reads until it ends.
  CommandOutcome Run(const std::string& line, const std::string& id = "");

  // The parts of Run, for tests that act while a command runs.
  void Send(const podgate::exec::v1::SessionRequest& request);
  void Command(const std::string& line, const std::string& id = "");
  void Interrupt();
  // Reads until the command ends (exit, denied or error) or the stream does; with `bytes_seen`
  // stdout is counted there instead of kept.
  CommandOutcome Wait(int64_t* bytes_seen = nullptr);

  // Closes; returns the close reason (UNSPECIFIED when the stream ended without one) and sets
  // `status` to the stream's final status when given.
  podgate::common::v1::CloseReason Close(grpc::Status* status = nullptr);

  // The stream itself, for tests that drive it message by message; end such a test with
  // Finish (a stream is finished once, and the destructor finishes one that was not).
  SessionStream* stream() { return stream_.get(); }
  grpc::Status Finish();

 private:
  std::unique_ptr<SessionStream> stream_;
  bool finished_ = false;
};

// An insecure channel to 127.0.0.1:`port`.
std::shared_ptr<grpc::Channel> LoopbackChannel(int port);

// VmRSS of `pid` in KiB (-1 when unreadable).
int64_t ResidentKiB(int pid);

// Open file descriptors of `pid` (-1 when unreadable).
int OpenDescriptors(int pid);

// Raises this process's RLIMIT_NOFILE soft limit to the hard limit (children inherit it);
// returns the soft limit in force, -1 when unreadable.
int64_t RaiseDescriptorLimit();

// The number of a /proc/<pid>/status field ("VmRSS", "Threads"), -1 when unreadable.
int64_t ProcStatus(int pid, const std::string& field);

}  // namespace podgate::testing

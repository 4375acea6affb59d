// podgate-run's conversation with exec: open a session, run one command, forward its output
// (stdout and stderr apart) and, with -i, podgate-run's standard input; the exit status says
// how it ended.
#pragma once

#include <string>
#include <vector>

#include "absl/time/time.h"
#include "podgate/exec/v1/exec.grpc.pb.h"

namespace podgate::run {

// podgate-run's exit statuses besides the command's own.
inline constexpr int kExitUsage = 2;          // a usage error, nothing sent
inline constexpr int kExitCouldNotRun = 125;  // no credential, exec refused or unreachable, ...
inline constexpr int kExitRefused = 126;      // policy refused the command
inline constexpr int kExitStopped = 130;      // stopped: interrupted, time or output limit

struct RunOptions {
  // The user's token (never printed).
  std::string token;
  std::string namespace_name;
  std::string pod;
  std::string container;  // empty: the pod's default container
  std::string cluster;    // empty: exec's default cluster
  // The command's argv.
  std::vector<std::string> command;
  // -i: `stdin_fd` is forwarded to the command and its end closes the command's stdin.
  // Without it, the command's stdin is closed at once (it reads end of file).
  bool forward_stdin = false;
  int stdin_fd = 0;
  int stdout_fd = 1;
  int stderr_fd = 2;
  absl::Duration timeout = absl::Minutes(10);
  // SIGINT/SIGTERM while the command runs interrupt it (exec stops the remote process; exit
  // 130); a second one ends podgate-run at once. The handlers are restored before returning.
  bool interrupt_on_signals = true;
  // How long the end of a run waits for the stdin forwarder to stop writing before it cancels
  // the call (a peer that no longer reads).
  absl::Duration stdin_stop_grace = absl::Seconds(5);
};

// Quotes each argument for exec's POSIX word splitting, so argv arrives unchanged.
std::string QuoteLine(const std::vector<std::string>& argv);

// Runs the command; returns the command's exit status, or one of the kExit* statuses with one
// line on stderr_fd saying why.
int RunInPod(podgate::exec::v1::ExecService::StubInterface& stub, const RunOptions& options);

}  // namespace podgate::run

// The clients podgate-bench-chain measures side by side (docs/performance.md, "Chain"):
//   - DirectExec: one `pods/exec` WebSocket per command straight to the API server, speaking
//     v5.channel.k8s.io with the project's own client code (lib/http's WebSocketClient, lib/k8s's
//     frame and status codec), authenticated with the kubeconfig's token;
//   - EdgeSession: one v1 browser-protocol WebSocket to edge (docs/protocol.md, "v1"), commands
//     one after another over it, through the same WebSocketClient;
//   - RunProcess: a binary (podgate-run, kubectl) spawned per command, its stdout read from a
//     pipe and counted, so the process's start-up is part of what is measured.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "http/client.h"

namespace podgate::bench {

// What one command gave back.
struct CommandResult {
  int exit_code = -1;
  int64_t stdout_bytes = 0;
  // The first bytes of stdout (at most 4 KiB), for checks such as `echo`.
  std::string stdout_head;
  // DirectExec only: the call to the WebSocket upgrade (TCP, TLS, HTTP upgrade), and with
  // `answer_launch_report` the upgrade to the launch wrapper's pid report: the stages exec
  // calls `upgrade` and `launch`, timed by the client.
  absl::Duration upgrade;
  absl::Duration launch;
};

class DirectExec {
 public:
  // Reads the API server, its CA and the bearer token from `kubeconfig`.
  static absl::StatusOr<DirectExec> FromKubeconfig(const std::string& kubeconfig);

  // Runs `argv` in ns/pod/container (stdout and stderr, no stdin, no TTY) on a connection of its
  // own, and reads until the status on channel 3; the exit code from it.
  // With `answer_launch_report`, stdin is open too and "go\n" is written to it once a stderr
  // line starting "podgate-pid " arrived: exec's launch wrapper (LaunchWrapperArgv) runs as
  // exec runs it, report and answer included.
  absl::StatusOr<CommandResult> Run(const std::string& ns, const std::string& pod,
                                    const std::string& container,
                                    const std::vector<std::string>& argv, absl::Duration timeout,
                                    bool answer_launch_report = false) const;

 private:
  http::ClientOptions options_;
};

class EdgeSession {
 public:
  // A v1 session at /ws/v1/{ns}/{pod}, the token in the sub-protocol offer, `origin` sent as
  // Origin; returns once edge has sent `ready`.
  static absl::StatusOr<std::unique_ptr<EdgeSession>> Open(int port, const std::string& origin,
                                                           const std::string& token,
                                                           const std::string& ns,
                                                           const std::string& pod,
                                                           absl::Duration timeout);

  // Sends `line` as command `id` and reads stdout/stderr frames until its `exit`; a `denied` or
  // `error` is returned as an error naming it.
  absl::StatusOr<CommandResult> Run(const std::string& line, const std::string& id,
                                    absl::Duration timeout);

  // Drops the connection without a close frame (many sessions at the end of a run).
  void Abort() { ws_->Abort(); }

 private:
  explicit EdgeSession(std::unique_ptr<http::WebSocketClient> ws) : ws_(std::move(ws)) {}
  std::unique_ptr<http::WebSocketClient> ws_;
};

// Spawns `argv` (argv[0] a path) with the current environment minus PODGATE_* plus `env`,
// stdin /dev/null, stdout a pipe read (and counted) here, stderr kept in memory; waits for it
// to exit within `timeout` (killed past it). The exit code is the process's (128+signal when
// killed by one); a non-zero one comes back as an error with its stderr.
absl::StatusOr<CommandResult> RunProcess(const std::vector<std::string>& argv,
                                         const std::map<std::string, std::string>& env,
                                         absl::Duration timeout);

}  // namespace podgate::bench

// Starts a container's processes as real child processes: argv executed directly (no shell),
// pipes or a pty for the standard streams, the container's identity (an unprivileged uid, or
// uid 0 inside a fresh user namespace for a root container), its environment and working
// directory, and a pidfd so the caller can reap the child asynchronously.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace podgate::kubesim {

struct ProcessSpec {
  std::vector<std::string> argv;
  std::vector<std::pair<std::string, std::string>> env;  // the whole environment
  std::string working_dir;
  bool root = false;    // uid 0 in a new user namespace
  int64_t uid = 65534;  // non-root: switch to it when kubesim runs as root
  bool tty = false;
  bool stdin = false;       // a pipe (or the pty) for stdin; otherwise /dev/null
  std::string output_file;  // non-empty: stdout and stderr appended to it (main processes)
};

struct Process {
  pid_t pid = -1;
  int pidfd = -1;
  int stdin_fd = -1;   // write end, or the pty master (dup) when tty
  int stdout_fd = -1;  // read end, or the pty master when tty
  int stderr_fd = -1;  // read end; -1 when tty (merged) or output_file
};

// Forks and executes. A command that cannot be executed (not found, not permitted) makes the
// child print `exec: "<argv0>": <reason>` on its stderr and exit 127 (126 when found but not
// executable), as a shell would. Fails only when kubesim itself cannot create the process.
absl::StatusOr<Process> SpawnProcess(const ProcessSpec& spec);

// Reaps `pid` if it has exited, without blocking: its exit code (128+signal when killed), or
// nullopt while it runs. A readable pidfd is not proof enough to wait for it (see WaitForExit
// in exec_session.h).
std::optional<int> TryReapProcess(pid_t pid);

// Whether this process can run children under other uids (it is root).
bool CanSwitchUser();

// Sets signal `sig`'s action to `handler` (SIG_DFL or SIG_IGN) through the kernel's own call,
// which also reaches the signals glibc keeps for itself (32 and 33) and refuses to change.
// Async-signal-safe (it runs between fork and exec). 0, or -1 with errno.
int SetKernelSignalAction(int sig, void (*handler)(int));

}  // namespace podgate::kubesim

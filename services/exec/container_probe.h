// Small programs exec runs in a container on its own behalf, and the strict parsers of their
// output: the root guard's `id -u`, the launch wrapper every command runs in and the stop helper
// that signals exactly the process a command started, and the probes of the checks policy asks for
// (is this pid a JVM, where does this path really lead).
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace podgate::exec {

// The argv of the root guard's probe.
std::vector<std::string> UidProbeArgv();

// Parses `id -u` output strictly: ASCII digits, one optional trailing newline, nothing else,
// at most 10 digits, no leading zeros (but "0"). Anything else is an error — and the root
// guard treats any error as "could be root".
absl::StatusOr<int64_t> ParseUid(absl::string_view stdout_text);

// The argv that runs a command: a fixed POSIX sh wrapper (builtins only) with `argv` passed as
// separate arguments, never interpolated. The wrapper reports its pid and start time as the
// first line of stderr ("podgate-pid <pid> <start>\n", see LaunchReport), then waits for the
// line "go\n" on stdin and only then `exec`s `argv`: the pid reported is the command's own.
// Without that line (EOF, anything else) it exits 125 and the command never runs. Needs
// /bin/sh in the container: in an image without one, nothing runs.
std::vector<std::string> LaunchWrapperArgv(const std::vector<std::string>& argv);

// Parses the launch wrapper's report strictly from the first bytes of a command's stderr.
class LaunchReport {
 public:
  enum class Status { kPending, kReported, kInvalid };
  static constexpr size_t kMaxLine = 64;
  // Feeds stderr bytes. Once the report is complete (kReported), `rest` gets the bytes after
  // it (the command's own stderr); while kPending, nothing is the command's yet. kInvalid: the
  // first line is not exactly "podgate-pid <pid> <start>\n" (pid 1..kMaxPid, start a decimal),
  // or is longer than kMaxLine.
  Status Feed(absl::string_view data, std::string* rest);
  Status status() const { return status_; }
  const std::string& pid() const { return pid_; }
  const std::string& start_ticks() const { return start_; }

 private:
  Status status_ = Status::kPending;
  std::string line_;
  std::string pid_;
  std::string start_;
};

// The argv of the stop helper: a fixed POSIX sh program (builtins only) that sends `signal`
// ("INT", "KILL") to exactly the process `pid` that started at `start_ticks` (as the launch
// wrapper reported) — to its process group when it leads one — and never to anything else: a
// pid that exited or now belongs to another process (another start time) is "gone" (exit 3).
// Exit 0 when signalled, printing "group <pid>" or "process <pid>". With `led_group` (an
// earlier stop answered "group"), a group whose leader has exited and whose pid is not in use
// by any process is signalled too ("orphans <pid>"): children that ignored SIGINT.
std::vector<std::string> StopHelperArgv(const std::string& pid, const std::string& start_ticks,
                                        const std::string& signal, bool led_group = false);

// The largest pid Linux hands out (PID_MAX_LIMIT).
inline constexpr int64_t kMaxPid = 4194304;

// The argv of the JVM probe for `pid`: a fixed POSIX sh program (builtins only: `read`, `case`,
// `[`) with the pid as its one argument, never pasted into the script. It succeeds, printing
// "jvm <pid>\n", only when /proc/<pid> is a process (not a thread of one) whose memory map
// holds libjvm.so (every HotSpot JVM) and which catches SIGQUIT (so the attach signal cannot
// kill it). INVALID_ARGUMENT, with a sentence for the user, when `pid` is not a strict positive
// decimal pid (digits only, no sign, no leading zero, at most kMaxPid): nothing runs then.
absl::StatusOr<std::vector<std::string>> JvmProbeArgv(absl::string_view pid);

// What the JVM probe found.
enum class JvmProbeVerdict {
  kJvm,            // a JVM that handles SIGQUIT: attaching is safe
  kNotJvm,         // no libjvm.so in its memory map
  kNoProcess,      // no /proc/<pid>
  kThread,         // a thread id, not a process id
  kUnreadable,     // its memory map cannot be read (another user's process, or exiting)
  kNoQuitHandler,  // libjvm.so is mapped but SIGQUIT is not caught (-Xrs, or still starting)
};

// Parses the JVM probe's exit status and stdout strictly: each verdict has one exit status,
// kJvm also exactly "jvm <pid>\n" on stdout. Anything else (a shell without /proc, a missing
// /bin/sh, stray output) is an error.
absl::StatusOr<JvmProbeVerdict> ParseJvmProbe(absl::string_view pid, int exit_code,
                                              absl::string_view stdout_text);

// The argv of the path probe: a fixed POSIX sh program with `path` as its one argument that
// refuses (exit 3) a path that does not exist — a dangling symbolic link included — and
// otherwise prints the path with every symbolic link resolved (`readlink -f`, GNU coreutils
// or BusyBox; exit 6 when the image has no readlink), then one newline.
std::vector<std::string> PathProbeArgv(absl::string_view path);

// Parses the path probe's answer strictly: exit 0 and exactly one canonical absolute path
// (UTF-8 without the characters policy never accepts, no "//", "." or ".." component, no
// trailing '/') and one newline, which is
// returned; exit 3 is NOT_FOUND; anything else is an error.
absl::StatusOr<std::string> ParsePathProbe(int exit_code, absl::string_view stdout_text);

}  // namespace podgate::exec

// Small programs exec runs in a container on its own behalf, and the strict parsers of their
// output: the root guard's `id -u`, the interrupt helper that signals a running command, and the
// probes of the checks policy asks for (is this pid a JVM, where does this path really lead).
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

// The argv of the interrupt helper: a fixed POSIX sh program (no external commands), with
// every value passed as a separate argument and never interpolated into the script, that
// finds the process running `target_argv` which started at most `started_ago` (+1s) ago,
// sends it `signal` ("INT", "KILL", ...) and prints its pid; exit status 3 when no process
// matches. The target is the oldest matching process younger than the bound, so an identical
// command started later by someone else is left alone. With `only_pid`, only that pid is
// considered (the SIGKILL follow-up: a recycled pid running something else is never hit).
// Needs /bin/sh in the container; shell-less images cannot be interrupted this way.
std::vector<std::string> InterruptHelperArgv(const std::vector<std::string>& target_argv,
                                             absl::Duration started_ago, const std::string& signal,
                                             const std::string& only_pid = "");

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
// (printable ASCII, no "//", "." or ".." component, no trailing '/') and one newline, which is
// returned; exit 3 is NOT_FOUND; anything else is an error.
absl::StatusOr<std::string> ParsePathProbe(int exit_code, absl::string_view stdout_text);

}  // namespace podgate::exec

// Small programs exec runs in a container on its own behalf, and the strict parsers of their
// output: the root guard's `id -u`, and the interrupt helper that signals a running command.
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
                                             absl::Duration started_ago,
                                             const std::string& signal,
                                             const std::string& only_pid = "");

}  // namespace podgate::exec

// podgate-run's --token_file: the user's token read from a file (a secret mounted by a CI
// system, `--token_file=<(pass show podgate)`), so it never has to be on the command line,
// where every user of the machine can read it in the process list.
#pragma once

#include <string>

#include "absl/status/statusor.h"

namespace podgate::run {

// The most a token file may hold: a JWT with many groups is a few KiB.
inline constexpr size_t kMaxTokenFileBytes = 64 * 1024;

// Reads the token in `path`, read once at start (a pipe or FIFO is fine). Surrounding
// whitespace (the trailing newline of `echo`) is dropped. The file's mode is not checked, as
// kubectl does not check its --token-file: a projected service-account token is mode 0644.
// Errors name the path and the problem, never the content: NotFound / PermissionDenied (the
// errno's words) when it cannot be read, InvalidArgument when it is empty, holds whitespace or
// control characters inside the token (more than one line), or is larger than
// kMaxTokenFileBytes.
absl::StatusOr<std::string> ReadTokenFile(const std::string& path);

}  // namespace podgate::run

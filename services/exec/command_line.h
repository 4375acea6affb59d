// Splits a command line typed in command mode into argv, with POSIX shell word rules for
// quoting, and refuses everything a shell would have interpreted.
//
// podgate never runs a shell in command mode: the argv goes to the container as is. So the
// principle is "what you type behaves as a shell would, or is refused": quotes and backslashes
// work as in sh; an unquoted operator (`;` `|` `&` `<` `>` `(` `)`), a command substitution
// (`` ` `` or `$(`), a parameter expansion (`$x`, `${x}`), a glob (`*` `?` `[`), a brace
// (`{` `}`), a leading `~` or a `#` comment is refused with a message saying how to quote it.
// Control characters (including NUL, tab and newline), bidirectional-text controls and
// invalid UTF-8 are refused anywhere, quoted or not.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace podgate::exec {

struct CommandLineLimits {
  // Longest line, in bytes.
  size_t max_line_bytes = 8192;
  // Most argv elements.
  size_t max_args = 256;
  // Longest single argv element, in bytes.
  size_t max_arg_bytes = 4096;
};

// Returns argv (at least one element), or InvalidArgument whose message names the 1-based
// column (in characters) and says what to do, e.g.
// "column 12: unquoted ';' — podgate runs one program, not a shell; quote it ('…') to pass it".
absl::StatusOr<std::vector<std::string>> SplitCommandLine(absl::string_view line,
                                                          const CommandLineLimits& limits = {});

}  // namespace podgate::exec

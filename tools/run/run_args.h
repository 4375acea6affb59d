// podgate-run's command line in kubectl's shape, turned into what Abseil's flag parser reads.
//
// kubectl (pflag) users type `-n shop`, `-nshop`, `-n=shop`, `--namespace shop`, `-ic app`, and
// name the pod as a positional argument: `podgate-run -n shop -c app api-7d9 -- jmap -histo 1`.
// Abseil parses none of the short or space-separated forms, so the words before `--` are
// rewritten here into `--name=value` flags (for runtime::ParseFlags), the pod, a `login` or
// `logout` verb, and the command after `--`, which is never looked at: a `-n` after `--` is the
// command's.
#pragma once

#include <cstddef>
#include <functional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace podgate::run {

// What a long flag name is to the parser that follows.
enum class FlagKind {
  kUnknown,  // no such flag: refused here (exit 2), with the name
  kBool,     // `--x`, `--nox`, `--x=false`; never takes the next word
  kValue,    // `--x=v` or `--x v`
};
using FlagKindLookup = std::function<FlagKind(absl::string_view name)>;

struct RunArgs {
  // argv[0], then every flag spelt `--name=value` or `--name` (and Abseil's usage flags as
  // given), for runtime::ParseFlags. Never a positional word.
  std::vector<std::string> flags;
  // "login" or "logout" when the line is one of those (the first positional word, on a line
  // without `--`); empty for a run.
  std::string verb;
  // The pod named positionally (`POD` or `pod/POD`); empty when none was.
  std::string pod;
  // Whether `--` was given, and every word after it.
  bool has_separator = false;
  std::vector<std::string> command;
  // The long names of the flags the command line set (negated booleans by their own name), so
  // the caller can tell them from the same flag set through the environment.
  std::set<std::string> given;
  // Where the command line carries a token: (index in argv, offset of the value in that word),
  // so the caller can overwrite it and keep it out of `ps` from then on.
  std::vector<std::pair<size_t, size_t>> secrets;
};

// Reads argv (argv[0] first). InvalidArgument, in one line naming the word, for: an unknown
// short or long flag, a flag that needs a value and has none (`-n` at the end or before `--`),
// `-t` (podgate-run has no terminal mode), a second positional word before `--` (the command
// goes after it), a pod given as another TYPE/NAME, and words after `login`/`logout`. `-h` is
// spelt `--help` and left with Abseil's usage flags (--help, --helpfull, --version, ...) for
// ParseFlags. `kind` says which long names exist and whether they take a value.
absl::StatusOr<RunArgs> NormaliseArgs(const std::vector<std::string>& argv,
                                      const FlagKindLookup& kind);

// A FlagKindLookup over the flags linked into the binary (Abseil's registry).
FlagKind RegisteredFlagKind(absl::string_view name);

}  // namespace podgate::run

// Command-line flags with environment overrides, shared by every podgate binary.
//
// Precedence: command line > environment > the flag's default. Flag `grpc_address` is
// overridden by the environment variable `PODGATE_GRPC_ADDRESS`, so a Helm chart or a systemd
// unit can configure a service without rewriting its command line.
//
// Every binary follows the same conventions (ParseFlags): `--help` and `-h` print the usage and
// the binary's own flags to stdout and exit 0; `--version` prints `<program> <version>
// (<commit>)` and exits 0; an unknown flag, a bad value or a missing value prints one line
// `<program>: <what is wrong> (see --help)` to stderr and exits 2.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace podgate::runtime {

// The environment variable that overrides flag `flag_name`: `PODGATE_` + upper case name.
std::string EnvVarForFlag(std::string_view flag_name);

// Looks an environment variable up; returns nullopt when it is not set.
using EnvLookup = std::function<std::optional<std::string>(const std::string&)>;

// The process environment.
EnvLookup ProcessEnv();

// Sets every podgate flag (Abseil's own flags are skipped) whose environment variable is set
// to that variable's value. Returns InvalidArgument naming the variable and the flag when a
// value does not parse; no flag is changed by a failing call.
absl::Status ApplyEnvOverrides(const EnvLookup& env);

// What a command line asks for, once its flags are set.
struct CommandLine {
  enum class Action { kRun, kHelp, kVersion };
  Action action = Action::kRun;
  // --help=FILTER: only the flags whose name or defining file contains FILTER.
  std::string help_filter;
  // argv[0], then the arguments that are not flags, in order ("--" ends the flags and is
  // dropped; everything after it is positional).
  std::vector<char*> positional;
};

// Parses argv and sets the flags it names, as Abseil spells them: `--name=value`,
// `--name value`, `-name=value`, `--bool`, `--nobool`, `--bool=false`. Stops at the first
// `--help`/`-h`/`--helpfull` or `--version`. InvalidArgument naming the argument for an unknown
// flag, a value that does not parse, a missing value, or an Abseil flag podgate does not
// support (--flagfile, --fromenv, ...: use the environment variables instead).
absl::StatusOr<CommandLine> ParseCommandLineArgs(int argc, char** argv);

// The --help text: `usage`, then every podgate flag linked into the binary (Abseil's own
// skipped), sorted by name, each with its type, default, environment variable and help text.
std::string HelpText(std::string_view usage, std::string_view filter = "");

// "<program> <version> (<commit>)".
std::string VersionLine(std::string_view program);

// Applies environment overrides, then parses the command line; returns the positional
// arguments (argv[0] first). Handles --help/-h/--helpfull and --version (stdout, exit 0);
// prints one line `<program>: <problem> (see --help)` to stderr and exits with status 2 on a
// bad environment value, an unknown flag, a bad value or a missing value.
std::vector<char*> ParseFlags(int argc, char** argv, std::string_view usage);

}  // namespace podgate::runtime

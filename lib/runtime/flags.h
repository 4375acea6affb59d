// Command-line flags with environment overrides, shared by every podgate binary.
//
// Precedence: command line > environment > the flag's default. Flag `grpc_address` is
// overridden by the environment variable `PODGATE_GRPC_ADDRESS`, so a Helm chart or a systemd
// unit can configure a service without rewriting its command line.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"

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

// Parses the command line after applying environment overrides; returns the positional
// arguments (argv[0] first). Prints one clear line to stderr and exits with status 2 on a
// bad environment value; Abseil reports bad command-line values the same way (status 1).
std::vector<char*> ParseFlags(int argc, char** argv, std::string_view usage);

}  // namespace podgate::runtime

#include "runtime/flags.h"

#include <cstdio>
#include <cstdlib>
#include <utility>

#include "absl/flags/commandlineflag.h"
#include "absl/flags/parse.h"
#include "absl/flags/reflection.h"
#include "absl/flags/usage.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace podgate::runtime {
namespace {

// Abseil's own flags (--flagfile, --helpfull, ...) are not configuration of a service.
bool IsAbseilFlag(const absl::CommandLineFlag& flag) {
  const std::string file = flag.Filename();
  return absl::StrContains(file, "absl/") || file.empty();
}

}  // namespace

std::string EnvVarForFlag(std::string_view flag_name) {
  std::string name = absl::AsciiStrToUpper(std::string(flag_name));
  for (char& c : name) {
    if (c == '-') {
      c = '_';
    }
  }
  return absl::StrCat("PODGATE_", name);
}

EnvLookup ProcessEnv() {
  return [](const std::string& name) -> std::optional<std::string> {
    const char* value = std::getenv(name.c_str());
    if (value == nullptr) {
      return std::nullopt;
    }
    return std::string(value);
  };
}

absl::Status ApplyEnvOverrides(const EnvLookup& env) {
  // Parse everything first so that one bad variable changes no flag at all.
  std::vector<std::pair<absl::CommandLineFlag*, std::string>> updates;
  for (const auto& [name, flag] : absl::GetAllFlags()) {
    if (IsAbseilFlag(*flag)) {
      continue;
    }
    const std::string var = EnvVarForFlag(std::string(name));
    std::optional<std::string> value = env(var);
    if (!value.has_value()) {
      continue;
    }
    updates.emplace_back(flag, *std::move(value));
  }
  for (auto& [flag, value] : updates) {
    const std::string previous = flag->CurrentValue();
    std::string error;
    if (!flag->ParseFrom(value, &error)) {
      return absl::InvalidArgumentError(absl::StrCat("environment variable ",
                                                     EnvVarForFlag(std::string(flag->Name())),
                                                     " (flag --", flag->Name(), "): ", error));
    }
    // Restore so that a later failure leaves everything untouched; re-applied below.
    flag->ParseFrom(previous, &error);
  }
  for (auto& [flag, value] : updates) {
    std::string error;
    flag->ParseFrom(value, &error);
  }
  return absl::OkStatus();
}

std::vector<char*> ParseFlags(int argc, char** argv, std::string_view usage) {
  absl::SetProgramUsageMessage(std::string(usage));
  if (absl::Status status = ApplyEnvOverrides(ProcessEnv()); !status.ok()) {
    std::fprintf(stderr, "%s: %s\n", argc > 0 ? argv[0] : "podgate",
                 std::string(status.message()).c_str());
    std::exit(2);
  }
  return absl::ParseCommandLine(argc, argv);
}

}  // namespace podgate::runtime

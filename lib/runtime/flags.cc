#include "runtime/flags.h"

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <utility>

#include "absl/flags/commandlineflag.h"
#include "absl/flags/reflection.h"
#include "absl/flags/usage.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "runtime/version.h"

namespace podgate::runtime {
namespace {

// Abseil's own flags (--flagfile, --helpfull, ...) are not configuration of a service.
bool IsAbseilFlag(const absl::CommandLineFlag& flag) {
  const std::string file = flag.Filename();
  return absl::StrContains(file, "absl/") || file.empty();
}

// The flags a user may set: podgate's, not retired.
bool IsPodgateFlag(const absl::CommandLineFlag& flag) {
  return !flag.IsRetired() && !IsAbseilFlag(flag);
}

std::string TypeName(const absl::CommandLineFlag& flag) {
  if (flag.IsOfType<bool>()) {
    return "bool";
  }
  if (flag.IsOfType<std::string>()) {
    return "string";
  }
  if (flag.IsOfType<absl::Duration>()) {
    return "duration";
  }
  if (flag.IsOfType<int32_t>() || flag.IsOfType<int64_t>() || flag.IsOfType<int16_t>()) {
    return "int";
  }
  if (flag.IsOfType<uint32_t>() || flag.IsOfType<uint64_t>() || flag.IsOfType<uint16_t>()) {
    return "uint";
  }
  if (flag.IsOfType<double>() || flag.IsOfType<float>()) {
    return "number";
  }
  if (flag.IsOfType<std::vector<std::string>>()) {
    return "list";
  }
  return "value";
}

// `text` wrapped at word boundaries to lines of at most `width` characters after `indent`.
std::string Wrap(absl::string_view text, size_t indent, size_t width) {
  std::string out;
  std::string line;
  for (absl::string_view word : absl::StrSplit(text, absl::ByAnyChar(" \n"), absl::SkipEmpty())) {
    if (!line.empty() && line.size() + 1 + word.size() > width) {
      absl::StrAppend(&out, std::string(indent, ' '), line, "\n");
      line.clear();
    }
    absl::StrAppend(&line, line.empty() ? "" : " ", word);
  }
  if (!line.empty()) {
    absl::StrAppend(&out, std::string(indent, ' '), line, "\n");
  }
  return out;
}

absl::Status Bad(absl::string_view what) { return absl::InvalidArgumentError(std::string(what)); }

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
      return absl::InvalidArgumentError(absl::StrCat(
          "environment variable ", EnvVarForFlag(std::string(flag->Name())), " (flag --",
          flag->Name(), "): '", value, "' is not a valid ", TypeName(*flag)));
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

absl::StatusOr<CommandLine> ParseCommandLineArgs(int argc, char** argv) {
  CommandLine out;
  if (argc > 0) {
    out.positional.push_back(argv[0]);
  }
  for (int i = 1; i < argc; ++i) {
    absl::string_view arg = argv[i];
    if (arg == "--") {
      for (++i; i < argc; ++i) {
        out.positional.push_back(argv[i]);
      }
      break;
    }
    if (arg.size() < 2 || arg[0] != '-') {
      out.positional.push_back(argv[i]);  // "-" (stdin, by convention) included
      continue;
    }
    absl::string_view body = arg.substr(arg[1] == '-' ? 2 : 1);
    const size_t eq = body.find('=');
    const std::string name(body.substr(0, eq));
    const bool has_value = eq != absl::string_view::npos;
    const absl::string_view inline_value = has_value ? body.substr(eq + 1) : absl::string_view();
    if (name == "h" || name == "help" || name == "helpfull" || name == "helpshort") {
      out.action = CommandLine::Action::kHelp;
      if (name == "help" && has_value) {
        out.help_filter = std::string(inline_value);
      }
      return out;
    }
    if (name == "version") {
      out.action = CommandLine::Action::kVersion;
      return out;
    }
    if (name.empty() || body.front() == '-') {
      return Bad(absl::StrCat("'", arg, "' is not a flag"));
    }
    absl::CommandLineFlag* flag = absl::FindCommandLineFlag(name);
    bool negated = false;
    if ((flag == nullptr || flag->IsRetired()) && absl::StartsWith(name, "no")) {
      absl::CommandLineFlag* positive = absl::FindCommandLineFlag(name.substr(2));
      if (positive != nullptr && IsPodgateFlag(*positive) && positive->IsOfType<bool>()) {
        if (has_value) {
          return Bad(
              absl::StrCat("--", name, " takes no value (use --", name.substr(2), "=true|false)"));
        }
        flag = positive;
        negated = true;
      }
    }
    if (flag == nullptr || flag->IsRetired()) {
      return Bad(absl::StrCat("unknown flag --", name));
    }
    if (IsAbseilFlag(*flag)) {
      return Bad(absl::StrCat("--", name,
                              " is not supported; set flags on the command line or as "
                              "PODGATE_<FLAG> environment variables"));
    }
    std::string value;
    if (negated) {
      value = "false";
    } else if (has_value) {
      value = std::string(inline_value);
    } else if (flag->IsOfType<bool>()) {
      value = "true";
    } else if (i + 1 < argc && !absl::StartsWith(argv[i + 1], "--")) {
      value = argv[++i];
    } else {
      return Bad(absl::StrCat("--", name, " needs a value (--", name, "=", TypeName(*flag), ")"));
    }
    std::string error;
    if (!flag->ParseFrom(value, &error)) {
      return Bad(
          absl::StrCat("--", flag->Name(), ": '", value, "' is not a valid ", TypeName(*flag)));
    }
  }
  return out;
}

std::string HelpText(std::string_view usage_text, std::string_view filter_text) {
  const absl::string_view usage(usage_text.data(), usage_text.size());
  const absl::string_view filter(filter_text.data(), filter_text.size());
  std::vector<absl::CommandLineFlag*> flags;
  for (const auto& [name, flag] : absl::GetAllFlags()) {
    if (!IsPodgateFlag(*flag)) {
      continue;
    }
    if (!filter.empty() && !absl::StrContains(name, filter) &&
        !absl::StrContains(flag->Filename(), filter)) {
      continue;
    }
    flags.push_back(flag);
  }
  std::sort(flags.begin(), flags.end(),
            [](const absl::CommandLineFlag* a, const absl::CommandLineFlag* b) {
              return a->Name() < b->Name();
            });
  std::string out = absl::StrCat(usage, absl::EndsWith(usage, "\n") ? "" : "\n");
  absl::StrAppend(&out,
                  "\nFlags (each may also be set by the environment variable shown; the command "
                  "line wins):\n");
  for (const absl::CommandLineFlag* flag : flags) {
    const std::string type = TypeName(*flag);
    std::string def = flag->DefaultValue();
    if (type == "string" || type == "list") {
      def = absl::StrCat("\"", def, "\"");
    }
    absl::StrAppend(&out, "  --", flag->Name(), " (", type, ", default ", def, ", env ",
                    EnvVarForFlag(std::string(flag->Name())), ")\n", Wrap(flag->Help(), 6, 94));
  }
  if (flags.empty()) {
    absl::StrAppend(&out, "  (none", filter.empty() ? "" : " matching the filter", ")\n");
  }
  absl::StrAppend(&out,
                  "\n  --help, -h   print this help and exit (--help=TEXT: only flags whose "
                  "name or file contains TEXT)\n"
                  "  --version    print the version and the commit built and exit\n");
  return out;
}

std::string VersionLine(std::string_view program) {
  return absl::StrCat(absl::string_view(program.data(), program.size()), " ",
                      absl::string_view(Version().data(), Version().size()), " (",
                      absl::string_view(Commit().data(), Commit().size()), ")");
}

std::vector<char*> ParseFlags(int argc, char** argv, std::string_view usage) {
  std::string program = argc > 0 ? argv[0] : "podgate";
  if (const size_t slash = program.rfind('/'); slash != std::string::npos) {
    program = program.substr(slash + 1);
  }
  absl::SetProgramUsageMessage(std::string(usage));
  auto fail = [&](const absl::Status& status) {
    std::fprintf(stderr, "%s: %s (see --help)\n", program.c_str(),
                 std::string(status.message()).c_str());
    std::fflush(stderr);
    std::exit(2);
  };
  // The command line is read first for --help and --version, so that a bad environment does
  // not hide them; the environment is then applied under it and the command line again on top.
  absl::StatusOr<CommandLine> line = ParseCommandLineArgs(argc, argv);
  if (line.ok() && line->action == CommandLine::Action::kHelp) {
    std::fputs(HelpText(usage, line->help_filter).c_str(), stdout);
    std::fflush(stdout);
    std::exit(0);
  }
  if (line.ok() && line->action == CommandLine::Action::kVersion) {
    std::printf("%s\n", VersionLine(program).c_str());
    std::fflush(stdout);
    std::exit(0);
  }
  if (!line.ok()) {
    fail(line.status());
  }
  if (absl::Status status = ApplyEnvOverrides(ProcessEnv()); !status.ok()) {
    fail(status);
  }
  line = ParseCommandLineArgs(argc, argv);
  if (!line.ok()) {
    fail(line.status());
  }
  return std::move(line->positional);
}

}  // namespace podgate::runtime

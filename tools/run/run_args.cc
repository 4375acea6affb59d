#include "run/run_args.h"

#include <algorithm>

#include "absl/flags/commandlineflag.h"
#include "absl/flags/reflection.h"
#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

namespace podgate::run {
namespace {

constexpr char kUsageLine[] = "podgate-run [flags] POD -- COMMAND [ARGS...]";
constexpr char kNoTerminal[] =
    "podgate-run has no terminal mode; it runs one command with stdout and stderr apart (use "
    "-i to give it standard input; a shell is the web terminal's)";

// Abseil's usage flags: handed to ParseFlags as written (it prints and exits on them).
constexpr absl::string_view kUsageFlags[] = {"help",   "helpfull",  "helpshort", "helppackage",
                                             "helpon", "helpmatch", "version",   "only_check_args"};

bool IsUsageFlag(absl::string_view name) {
  return std::find(std::begin(kUsageFlags), std::end(kUsageFlags), name) != std::end(kUsageFlags);
}

// kubectl's short flags that podgate-run has.
struct ShortFlag {
  char letter;
  absl::string_view name;
  absl::string_view value_name;  // empty: a boolean
};
constexpr ShortFlag kShortFlags[] = {
    {'n', "namespace", "NAMESPACE"},
    {'c', "container", "CONTAINER"},
    {'i', "stdin", ""},
    {'h', "help", ""},
};

const ShortFlag* FindShort(char letter) {
  for (const ShortFlag& f : kShortFlags) {
    if (f.letter == letter) {
      return &f;
    }
  }
  return nullptr;
}

// A word from the command line as an error message shows it: quoted, at most 64 characters,
// control characters as '?'.
std::string Shown(absl::string_view word) {
  std::string out = "\"";
  for (size_t i = 0; i < word.size() && i < 64; ++i) {
    const unsigned char c = static_cast<unsigned char>(word[i]);
    out += (c < 0x20 || c == 0x7f) ? '?' : static_cast<char>(c);
  }
  if (word.size() > 64) {
    out += "...";
  }
  return out + "\"";
}

// Shown without its quotes (a flag name: the runtime's messages name flags unquoted).
std::string Bare(const std::string& shown) { return shown.substr(1, shown.size() - 2); }

// A name Abseil's flag syntax would read as a long flag: a flag, a negated boolean, a usage flag.
bool IsLongName(absl::string_view name, const FlagKindLookup& kind) {
  return IsUsageFlag(name) || kind(name) != FlagKind::kUnknown ||
         (absl::StartsWith(name, "no") && kind(name.substr(2)) == FlagKind::kBool);
}

}  // namespace

absl::StatusOr<RunArgs> NormaliseArgs(const std::vector<std::string>& argv,
                                      const FlagKindLookup& kind) {
  RunArgs out;
  out.flags.push_back(argv.empty() ? "podgate-run" : argv[0]);
  std::vector<std::string> positionals;
  auto add_value = [&out](absl::string_view name, absl::string_view value, size_t index,
                          size_t offset) {
    out.flags.push_back(absl::StrCat("--", name, "=", value));
    out.given.insert(std::string(name));
    if (name == "token") {
      out.secrets.emplace_back(index, offset);
    }
  };
  auto next_value = [&argv](size_t i) { return i + 1 < argv.size() && argv[i + 1] != "--"; };
  size_t i = 1;
  for (; i < argv.size(); ++i) {
    const std::string& word = argv[i];
    if (word == "--") {
      out.has_separator = true;
      ++i;
      break;
    }
    if (word.size() < 2 || word[0] != '-') {
      positionals.push_back(word);  // "-" alone is a word too
      continue;
    }
    // --name[=value], or Abseil's -name[=value] when `name` is a long flag (a single letter is
    // always a short flag, as in pflag).
    const bool two_dashes = word[1] == '-';
    const absl::string_view body = absl::string_view(word).substr(two_dashes ? 2 : 1);
    const size_t eq = body.find('=');
    const absl::string_view name = body.substr(0, eq);
    if (two_dashes || (name.size() > 1 && IsLongName(name, kind))) {
      if (IsUsageFlag(name)) {
        out.flags.push_back(absl::StrCat("--", body));
        continue;
      }
      const FlagKind k = kind(name);
      if (k == FlagKind::kUnknown && absl::StartsWith(name, "no") &&
          kind(name.substr(2)) == FlagKind::kBool) {
        if (eq != absl::string_view::npos) {
          return absl::InvalidArgumentError(
              absl::StrCat("--", name, " takes no value (write --", name.substr(2), "=false)"));
        }
        out.flags.push_back(absl::StrCat("--", name));
        out.given.insert(std::string(name.substr(2)));
        continue;
      }
      if (k == FlagKind::kUnknown && name == "tty") {
        return absl::InvalidArgumentError(kNoTerminal);
      }
      if (k == FlagKind::kUnknown) {
        return absl::InvalidArgumentError(
            absl::StrCat("unknown flag ", Bare(Shown(absl::StrCat("--", name))), " (see --help)"));
      }
      if (k == FlagKind::kBool) {
        out.flags.push_back(absl::StrCat("--", body));
        out.given.insert(std::string(name));
        continue;
      }
      if (eq != absl::string_view::npos) {
        add_value(name, body.substr(eq + 1), i, (two_dashes ? 2 : 1) + eq + 1);
        continue;
      }
      if (!next_value(i)) {
        return absl::InvalidArgumentError(absl::StrCat(
            "--", name, " needs a value: --", name, "=VALUE or --", name, " VALUE (see --help)"));
      }
      add_value(name, argv[i + 1], i + 1, 0);
      ++i;
      continue;
    }
    // Short flags, grouped as pflag groups them: -i, -in ns, -nns, -n=ns, -ic app.
    for (size_t j = 1; j < word.size(); ++j) {
      const ShortFlag* f = FindShort(word[j]);
      if (f == nullptr) {
        if (word[j] == 't') {
          return absl::InvalidArgumentError(absl::StrCat("-t: ", kNoTerminal));
        }
        return absl::InvalidArgumentError(absl::StrCat(
            "unknown short flag ", Shown(absl::StrCat("-", absl::string_view(&word[j], 1))), " in ",
            Shown(word),
            " (short flags: -n NAMESPACE, -c CONTAINER, -i, -h; --help lists the others)"));
      }
      size_t offset = j + 1;
      const bool has_equals = offset < word.size() && word[offset] == '=';
      if (has_equals) {
        ++offset;
      }
      if (f->value_name.empty()) {
        if (has_equals) {  // -i=false
          out.flags.push_back(absl::StrCat("--", f->name, "=", word.substr(offset)));
          out.given.insert(std::string(f->name));
          break;
        }
        out.flags.push_back(absl::StrCat("--", f->name));
        if (f->letter != 'h') {
          out.given.insert(std::string(f->name));
        }
        continue;
      }
      if (has_equals || offset < word.size()) {
        add_value(f->name, absl::string_view(word).substr(offset), i, offset);
      } else if (next_value(i)) {
        add_value(f->name, argv[i + 1], i + 1, 0);
        ++i;
      } else {
        return absl::InvalidArgumentError(
            absl::StrCat("-", absl::string_view(&word[j], 1), " needs a value: -",
                         absl::string_view(&word[j], 1), " ", f->value_name));
      }
      break;
    }
  }
  for (; i < argv.size(); ++i) {
    out.command.push_back(argv[i]);
  }
  if (positionals.empty()) {
    return out;
  }
  const std::string& first = positionals[0];
  if (!out.has_separator && (first == "login" || first == "logout")) {
    if (positionals.size() > 1) {
      return absl::InvalidArgumentError(absl::StrCat(
          first, " takes no arguments besides flags (found ", Shown(positionals[1]), ")"));
    }
    out.verb = first;
    return out;
  }
  if (positionals.size() > 1) {
    return absl::InvalidArgumentError(
        absl::StrCat(Shown(positionals[1]),
                     out.has_separator ? ": one pod before --, the command after it: "
                                       : ": the command goes after --: ",
                     kUsageLine));
  }
  if (!out.has_separator) {
    return absl::InvalidArgumentError(absl::StrCat("no command after the pod ", Shown(first),
                                                   " (it goes after --): ", kUsageLine));
  }
  absl::string_view pod = first;
  if (absl::ConsumePrefix(&pod, "pod/") || absl::ConsumePrefix(&pod, "pods/")) {
    // kubectl's TYPE/NAME for a pod.
  } else if (absl::StrContains(pod, '/')) {
    return absl::InvalidArgumentError(absl::StrCat(
        Shown(first), ": podgate-run reaches pods only; name the pod (POD or pod/POD)"));
  }
  out.pod = std::string(pod);
  return out;
}

FlagKind RegisteredFlagKind(absl::string_view name) {
  absl::CommandLineFlag* flag = absl::FindCommandLineFlag(name);
  if (flag == nullptr || flag->IsRetired()) {
    return FlagKind::kUnknown;
  }
  return flag->IsOfType<bool>() ? FlagKind::kBool : FlagKind::kValue;
}

}  // namespace podgate::run

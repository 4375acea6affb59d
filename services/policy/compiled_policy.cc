#include "policy/compiled_policy.h"

#include <algorithm>
#include <iterator>
#include <string_view>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "policy/text_checks.h"
#include "wire/time.h"

namespace podgate::policy {
namespace {

using podgate::common::v1::Decision;
using podgate::common::v1::Principal;
using podgate::common::v1::Target;
using podgate::policy::v1::AuthorizeRequest;

// Quotes a user-supplied value for a reason, shortened so that a long argument cannot flood
// logs and audit records. Values are valid UTF-8 by then (CheckArgv ran first); a cut never
// splits a character, so the reason stays valid UTF-8 too.
std::string Quote(std::string_view value) {
  constexpr size_t kMax = 64;
  if (value.size() <= kMax) {
    return absl::StrCat("'", std::string(value), "'");
  }
  size_t cut = kMax;
  while (cut > 0 && (static_cast<unsigned char>(value[cut]) & 0xC0) == 0x80) {
    --cut;  // a continuation byte: back to the start of its character
  }
  return absl::StrCat("'", std::string(value.substr(0, cut)), "...'");
}

std::string Where(const Target& target) {
  return absl::StrCat(target.namespace_(), "/", target.pod(), target.container().empty() ? "" : "/",
                      target.container(), target.cluster().empty() ? "" : " in cluster ",
                      target.cluster());
}

bool AnyGlob(const std::vector<std::string>& patterns, const std::string& text) {
  for (const std::string& p : patterns) {
    if (GlobMatch(p, text)) {
      return true;
    }
  }
  return false;
}

std::string Basename(const std::string& path) { return std::string(ProgramBasename(path)); }

int DefaultPort(const std::string& scheme) {
  if (scheme == "http") {
    return 80;
  }
  if (scheme == "https") {
    return 443;
  }
  return 0;
}

// The words of a program that joins its arguments with spaces and splits them again (jcmd).
std::vector<std::string> JoinedWords(const std::vector<std::string>& argv) {
  std::vector<std::string> words;
  std::string joined;
  for (size_t i = 1; i < argv.size(); ++i) {
    absl::StrAppend(&joined, i > 1 ? " " : "", argv[i]);
  }
  for (absl::string_view w : absl::StrSplit(joined, absl::ByAnyChar(" \t"), absl::SkipEmpty())) {
    words.emplace_back(w);
  }
  return words;
}

}  // namespace

std::optional<std::string> ValueType::CheckReach(const net::Host& host) const {
  std::string why;
  const bool admitted = hosts ? hosts->Admits(host, &why) : net::AdmitsByDefault(host, &why);
  if (admitted) {
    return std::nullopt;
  }
  return absl::StrCat("is refused: ", why);
}

namespace {

// The one table of kind names; indexed by the enum's value.
using Kind = ValueType::Kind;
constexpr std::pair<Kind, std::string_view> kKindNames[] = {
    {Kind::kInteger, "integer"},   {Kind::kPid, "pid"},         {Kind::kPort, "port"},
    {Kind::kHostName, "hostname"}, {Kind::kIp, "ip"},           {Kind::kHost, "host"},
    {Kind::kUrl, "url"},           {Kind::kPath, "path"},       {Kind::kEnum, "enum"},
    {Kind::kRegex, "regex"},       {Kind::kLiteral, "literal"},
};
static_assert(std::size(kKindNames) == static_cast<size_t>(Kind::kLiteral) + 1);

}  // namespace

std::string_view KindName(ValueType::Kind kind) {
  const auto index = static_cast<size_t>(kind);
  return index < std::size(kKindNames) && kKindNames[index].first == kind ? kKindNames[index].second
                                                                          : "literal";
}

std::optional<ValueType::Kind> KindFromName(std::string_view name) {
  for (const auto& [kind, kind_name] : kKindNames) {
    if (kind_name == name) {
      return kind;
    }
  }
  return std::nullopt;
}

std::string KindNames() {
  return absl::StrJoin(kKindNames, ", ",
                       [](std::string* out, const auto& entry) { out->append(entry.second); });
}

std::string ValueType::DescribePorts() const {
  std::vector<std::string> parts;
  for (const auto& [lo, hi] : ports) {
    parts.push_back(lo == hi ? absl::StrCat(lo) : absl::StrCat(lo, "-", hi));
  }
  return absl::StrJoin(parts, ", ");
}

bool DeniedOption::Matches(std::string_view arg) const {
  if (arg.size() < 2 || arg[0] != '-') {
    return false;
  }
  switch (form) {
    case Form::kLong: {
      if (arg.size() < 3 || arg[1] != '-') {
        return false;
      }
      std::string_view given = arg.substr(2);
      given = given.substr(0, given.find('='));
      // Every prefix a program could expand to this option (getopt_long and curl accept an
      // unambiguous prefix; an ambiguous one is refused by the program anyway).
      return !given.empty() && std::string_view(name).starts_with(given);
    }
    case Form::kShort:
      // A cluster of short options ("-sSo/tmp/x"): attached values cannot be told apart from
      // further options without the program's option table, so any occurrence counts.
      return arg[1] != '-' && arg.find(name[0], 1) != std::string_view::npos;
    case Form::kSingleDashLong:
      return arg[1] != '-' && arg.substr(1).starts_with(name);
  }
  return false;
}

void DenyMatcher::Index() {
  short_letters.fill(false);
  long_names.clear();
  single_dash_names.clear();
  for (const DeniedOption& o : options) {
    switch (o.form) {
      case DeniedOption::Form::kShort:
        short_letters[static_cast<unsigned char>(o.name[0])] = true;
        break;
      case DeniedOption::Form::kLong:
        long_names.push_back(o.name);
        break;
      case DeniedOption::Form::kSingleDashLong:
        single_dash_names.push_back(o.name);
        break;
    }
  }
  std::sort(long_names.begin(), long_names.end());
}

bool DenyMatcher::MatchesOption(std::string_view arg) const {
  if (arg.size() < 2 || arg[0] != '-') {
    return false;
  }
  if (arg[1] == '-') {
    std::string_view given = arg.substr(2);
    given = given.substr(0, given.find('='));
    if (given.empty()) {
      return false;
    }
    // The first name not below `given` is the only candidate that can start with it.
    auto it = std::lower_bound(long_names.begin(), long_names.end(), given,
                               [](const std::string& a, std::string_view b) { return a < b; });
    return it != long_names.end() && std::string_view(*it).starts_with(given);
  }
  for (size_t i = 1; i < arg.size(); ++i) {
    if (short_letters[static_cast<unsigned char>(arg[i])]) {
      return true;
    }
  }
  for (const std::string& name : single_dash_names) {
    if (arg.substr(1).starts_with(name)) {
      return true;
    }
  }
  return false;
}

bool DenyMatcher::MatchesProgram(const std::string& program) const {
  const std::string_view base = ProgramBasename(program);
  return MatchesProgram(program, base, StripVersionSuffix(base));
}

bool DenyMatcher::MatchesProgram(const std::string& program, std::string_view base,
                                 std::string_view stripped) const {
  for (const std::string& p : programs) {
    if (p == program || p == base || p == stripped) {
      return true;
    }
  }
  for (ProgramClass c : classes) {
    if (InProgramClass(c, base, stripped)) {
      return true;
    }
  }
  return false;
}

std::optional<std::string> DenyMatcher::DeniedArgument(const std::vector<std::string>& argv) const {
  const auto hit = [&](const std::string& arg) {
    if (!options.empty() && MatchesOption(arg)) {
      return true;
    }
    if (any_arg_union != nullptr) {
      return RE2::FullMatch(arg, *any_arg_union);
    }
    for (const auto& re : any_arg) {
      if (RE2::FullMatch(arg, *re)) {
        return true;
      }
    }
    return false;
  };
  for (size_t a = 1; a < argv.size(); ++a) {
    if (hit(argv[a])) {
      return argv[a];
    }
  }
  // Joined and split again, the words differ from the arguments only when an argument holds
  // whitespace (or is empty).
  const bool regroups = std::any_of(argv.begin() + 1, argv.end(), [](const std::string& a) {
    return a.empty() || a.find_first_of(" \t") != std::string::npos;
  });
  if (join_args && regroups) {
    for (const std::string& word : JoinedWords(argv)) {
      if (hit(word)) {
        return word;
      }
    }
  }
  return std::nullopt;
}

std::optional<std::string> ValueType::Check(const std::string& value) const {
  // CheckArgv refused the characters that are never accepted; other non-ASCII text (a file name
  // or a search string in Chinese) only goes where the type can hold it.
  if (!AcceptsNonAscii() && !IsAscii(value)) {
    return "contains non-ASCII text; only path, enum, literal and regex values may";
  }
  switch (kind) {
    case Kind::kInteger:
    case Kind::kPid:
    case Kind::kPort: {
      const std::optional<long long> v = ParseStrictInteger(value);
      if (!v) {
        return "is not a decimal integer";
      }
      if (*v < min || *v > max) {
        return absl::StrCat("is out of range ", min, "..", max);
      }
      return std::nullopt;
    }
    case Kind::kHostName:
    case Kind::kIp:
    case Kind::kHost: {
      std::string error;
      std::optional<net::Host> host = net::CanonicaliseHostArgument(value, &error);
      if (!host) {
        return error;
      }
      if (kind == Kind::kHostName && host->kind == net::Host::Kind::kIp) {
        return absl::StrCat("is the IP address ", host->ToString(), ", not a host name");
      }
      if (kind == Kind::kIp && host->kind == net::Host::Kind::kName) {
        return "is not an IP address";
      }
      return CheckReach(*host);
    }
    case Kind::kUrl: {
      // Rules for one program compete (a team each), and each would parse the same argument:
      // the last parse on this thread is kept, as ParseUrl depends on the text alone.
      struct LastParse {
        std::string text;
        std::optional<net::Url> url;
        std::string error;
        bool valid = false;
      };
      thread_local LastParse last;
      if (!last.valid || last.text != value) {
        last.text = value;
        last.error.clear();
        last.url = net::ParseUrl(value, &last.error);
        last.valid = true;
      }
      const std::optional<net::Url>& url = last.url;
      if (!url) {
        return absl::StrCat("is not an acceptable URL: it ", last.error);
      }
      if (std::find(schemes.begin(), schemes.end(), url->scheme) == schemes.end()) {
        return absl::StrCat("uses scheme ", url->scheme,
                            ", allowed: ", absl::StrJoin(schemes, ", "));
      }
      if (url->has_glob && !glob) {
        return "uses curl's globbing syntax ([...] or {...}), which turns one command into many "
               "requests";
      }
      if (auto bad = CheckReach(url->host)) {
        return bad;
      }
      const int default_port = DefaultPort(url->scheme);
      if (ports.empty()) {
        if (url->explicit_port && url->port != default_port) {
          return absl::StrCat("uses port ", url->port, "; this rule allows only the ", url->scheme,
                              " default port ", default_port);
        }
      } else {
        const bool listed = std::any_of(ports.begin(), ports.end(), [&](const auto& range) {
          return url->port >= range.first && url->port <= range.second;
        });
        if (!listed) {
          return absl::StrCat("uses port ", url->port, ", allowed: ", DescribePorts());
        }
      }
      if (!paths.empty()) {
        if (url->path.find_first_of("%;") != std::string::npos) {
          return "has '%' or ';' in its path, which servers decode in ways policy cannot follow";
        }
        const bool listed = std::any_of(paths.begin(), paths.end(), [&](const std::string& glob) {
          return GlobMatch(glob, url->path);
        });
        if (!listed) {
          return absl::StrCat("has path ", Quote(url->path),
                              ", allowed: ", absl::StrJoin(paths, " "));
        }
      }
      return std::nullopt;
    }
    case Kind::kPath: {
      std::optional<std::string> norm = NormaliseAbsolutePath(value);
      if (!norm) {
        return "is not an absolute path without '..'";
      }
      for (const std::string& prefix : prefixes) {
        if (PathIsUnder(*norm, prefix)) {
          return std::nullopt;
        }
      }
      return absl::StrCat("is outside ", absl::StrJoin(prefixes, ", "));
    }
    case Kind::kEnum:
    case Kind::kLiteral:
      if (std::find(values.begin(), values.end(), value) != values.end()) {
        return std::nullopt;
      }
      return absl::StrCat("is not one of ", absl::StrJoin(values, ", "));
    case Kind::kRegex:
      return RE2::FullMatch(value, *regex)
                 ? std::nullopt
                 : std::optional<std::string>(absl::StrCat("does not match /", regex_source, "/"));
  }
  return "has an unknown type";
}

std::string ValueType::Describe() const {
  switch (kind) {
    case Kind::kInteger:
      return absl::StrCat("integer(", min, "..", max, ")");
    case Kind::kPid:
    case Kind::kPort:
    case Kind::kHostName:
    case Kind::kIp:
    case Kind::kHost:
      return std::string(KindName(kind));
    case Kind::kUrl:
      return absl::StrCat("url(", absl::StrJoin(schemes, ","), hosts ? " to listed hosts" : "",
                          ")");
    case Kind::kPath:
      return absl::StrCat("path(", absl::StrJoin(prefixes, ","), ")");
    case Kind::kEnum:
      return absl::StrCat("enum(", absl::StrJoin(values, "|"), ")");
    case Kind::kRegex:
      return absl::StrCat("regex(", regex_source, ")");
    case Kind::kLiteral:
      return values.empty() ? "" : values[0];
  }
  return "";
}

std::optional<std::string> Grammar::Match(const std::vector<std::string>& argv,
                                          std::vector<ArgCheck>* checks) const {
  std::vector<ArgCheck> found;
  const auto needs_check = [](const ValueType& t) {
    return t.kind == ValueType::Kind::kPath || (t.kind == ValueType::Kind::kPid && t.jvm);
  };
  std::vector<int> seen(flags.size(), 0);
  std::vector<const std::string*> args;
  bool flags_done = false;
  for (size_t i = 1; i < argv.size(); ++i) {
    const std::string& arg = argv[i];
    if (flags_done || arg.size() < 2 || arg[0] != '-') {
      args.push_back(&arg);
      continue;
    }
    if (arg == "--") {
      if (!double_dash) {
        return absl::StrCat("'--' is not allowed for ", program);
      }
      flags_done = true;
      continue;
    }
    auto it = flag_index.find(arg);
    std::optional<std::string> joined;
    if (it == flag_index.end() && arg.rfind("--", 0) == 0) {
      const size_t eq = arg.find('=');
      if (eq != std::string::npos) {
        it = flag_index.find(arg.substr(0, eq));
        if (it != flag_index.end()) {
          joined = arg.substr(eq + 1);
        }
      }
    }
    if (it == flag_index.end()) {
      const std::string shown = arg.size() > 64 ? arg.substr(0, 64) + "..." : arg;
      return absl::StrCat("flag ", shown, " is not allowed for ", program);
    }
    const FlagSpec& spec = flags[it->second];
    if (seen[it->second]++ > 0 && !spec.repeatable) {
      return absl::StrCat("flag ", spec.name, " is given more than once");
    }
    if (!spec.value) {
      if (joined) {
        return absl::StrCat("flag ", spec.name, " takes no value");
      }
      continue;
    }
    std::string value;
    if (joined) {
      if (needs_check(*spec.value)) {
        return absl::StrCat("give the value of flag ", spec.name,
                            " as a separate argument, not after '='");
      }
      value = *joined;
    } else if (i + 1 < argv.size()) {
      value = argv[++i];
      if (needs_check(*spec.value)) {
        found.push_back({i, &*spec.value});
      }
    } else {
      return absl::StrCat("flag ", spec.name, " needs a value (", spec.value->Describe(), ")");
    }
    const bool numeric = spec.value->kind == ValueType::Kind::kInteger;
    if (!value.empty() && value[0] == '-' && !(numeric && ParseStrictInteger(value))) {
      return absl::StrCat("value ", Quote(value), " of flag ", spec.name, " starts with '-'");
    }
    if (auto bad = spec.value->Check(value)) {
      return absl::StrCat("value ", Quote(value), " of flag ", spec.name, " ", *bad);
    }
  }
  for (size_t f = 0; f < flags.size(); ++f) {
    if (flags[f].required && seen[f] == 0) {
      return absl::StrCat("flag ", flags[f].name, " is required for ", program);
    }
  }
  size_t next = 0;
  for (const PositionalSpec& spec : positionals) {
    const size_t remaining = args.size() - next;
    size_t take = spec.repeat ? remaining : std::min<size_t>(remaining, 1);
    if (take == 0) {
      if (spec.optional) {
        continue;
      }
      return absl::StrCat("<", spec.name, "> is missing (", spec.type.Describe(), ")");
    }
    if (spec.repeat && take > static_cast<size_t>(spec.max_count)) {
      return absl::StrCat("too many <", spec.name, "> arguments (at most ", spec.max_count, ")");
    }
    for (size_t k = 0; k < take; ++k) {
      const std::string& value = *args[next++];
      if (!value.empty() && value[0] == '-' && !flags_done &&
          spec.type.kind != ValueType::Kind::kEnum && spec.type.kind != ValueType::Kind::kLiteral) {
        return absl::StrCat("<", spec.name, "> ", Quote(value), " starts with '-'");
      }
      if (auto bad = spec.type.Check(value)) {
        return absl::StrCat("<", spec.name, "> ", Quote(value), " ", *bad);
      }
      if (needs_check(spec.type)) {
        found.push_back({static_cast<size_t>(args[next - 1] - argv.data()), &spec.type});
      }
    }
  }
  if (next < args.size()) {
    return absl::StrCat("unexpected argument ", Quote(*args[next]), " for ", program);
  }
  if (checks != nullptr) {
    *checks = std::move(found);
  }
  return std::nullopt;
}

std::string Grammar::Usage() const {
  std::string out = program;
  for (const FlagSpec& f : flags) {
    std::string part = f.name;
    if (f.value) {
      absl::StrAppend(&part, " <", f.value->Describe(), ">");
    }
    absl::StrAppend(&out, " ", f.required ? part : absl::StrCat("[", part, "]"));
  }
  for (const PositionalSpec& p : positionals) {
    std::string part = p.type.kind == ValueType::Kind::kLiteral ? p.type.Describe()
                       : p.type.kind == ValueType::Kind::kEnum  ? absl::StrJoin(p.type.values, "|")
                                                                : absl::StrCat("<", p.name, ">");
    if (p.repeat) {
      absl::StrAppend(&part, "...");
    }
    absl::StrAppend(&out, " ", p.optional ? absl::StrCat("[", part, "]") : part);
  }
  return out;
}

bool Rule::AppliesToSubject(const Principal& principal) const {
  if (any_user || users.contains(principal.user())) {
    return true;
  }
  for (const std::string& g : principal.groups()) {
    if (groups.contains(g)) {
      return true;
    }
  }
  return false;
}

std::optional<std::string> Rule::TargetMismatch(const Target& target) const {
  if (!clusters.empty()) {
    // Fail closed: a request that does not say where it runs is outside a rule that does.
    if (target.cluster().empty()) {
      return "the request names no cluster and the rule names clusters";
    }
    if (!AnyGlob(clusters, target.cluster())) {
      return absl::StrCat("cluster ", target.cluster(), " is not in scope");
    }
  }
  if (!AnyGlob(namespaces, target.namespace_())) {
    return absl::StrCat("namespace ", target.namespace_(), " is not in scope");
  }
  if (!pods.empty() && !AnyGlob(pods, target.pod())) {
    return absl::StrCat("pod ", target.pod(), " is not in scope");
  }
  for (const auto& [key, value] : pod_labels) {
    auto it = target.pod_labels().find(key);
    if (it == target.pod_labels().end() || it->second != value) {
      return absl::StrCat("pod label ", key, "=", value, " is not present");
    }
  }
  if (!containers.empty()) {
    if (target.container().empty()) {
      return "the request names no container and the rule names containers";
    }
    if (!AnyGlob(containers, target.container())) {
      return absl::StrCat("container ", target.container(), " is not in scope");
    }
  }
  return std::nullopt;
}

CompiledPolicy::CompiledPolicy(std::vector<Rule> rules, std::string version, std::string source,
                               Contact contact)
    : rules_(std::move(rules)),
      version_(std::move(version)),
      source_(std::move(source)),
      contact_(std::move(contact)),
      loaded_time_(absl::Now()) {
  for (size_t i = 0; i < rules_.size(); ++i) {
    const Rule& r = rules_[i];
    by_id_[r.id] = i;
    if (r.effect == Rule::Effect::kDeny) {
      deny_rules_.push_back(i);
    } else if (r.kind == Rule::Kind::kSuperuser) {
      superuser_rules_.push_back(i);
    } else if (r.kind == Rule::Kind::kShell) {
      shell_rules_.push_back(i);
    } else if (r.kind == Rule::Kind::kJoin) {
      join_rules_.push_back(i);
    } else {
      command_rules_[r.grammar.program].push_back(i);
      for (const std::string& path : r.grammar.program_paths) {
        command_rules_[path].push_back(i);
      }
    }
  }
}

std::shared_ptr<const CompiledPolicy> CompiledPolicy::Empty(std::string source) {
  return std::make_shared<const CompiledPolicy>(std::vector<Rule>{}, "none", std::move(source));
}

Decision CompiledPolicy::Make(bool allow, const Rule* rule, std::string rule_id,
                              std::string reason) const {
  Decision d;
  d.set_verdict(allow ? podgate::common::v1::VERDICT_ALLOW : podgate::common::v1::VERDICT_DENY);
  d.set_rule(std::move(rule_id));
  d.set_reason(std::move(reason));
  d.set_policy_version(version_);
  if (allow && rule != nullptr) {
    if (rule->time_limit) {
      *d.mutable_limits()->mutable_time_limit() = wire::ToProtoDuration(*rule->time_limit);
    }
    d.mutable_limits()->set_output_limit_bytes(rule->output_limit_bytes);
    d.mutable_limits()->set_output_keep_end(rule->output_keep_end);
    d.set_root_allowed(rule->allow_root);
  }
  return d;
}

Decision CompiledPolicy::MakeCommandAllow(const Rule& rule, const std::vector<std::string>& argv,
                                          const std::vector<ArgCheck>& checks,
                                          std::string reason) const {
  Decision d = Make(true, &rule, rule.id, std::move(reason));
  const std::vector<std::string>& prepend = rule.grammar.prepend_args;
  if (!prepend.empty()) {
    d.add_argv(argv[0]);
    for (const std::string& a : prepend) {
      d.add_argv(a);
    }
    for (size_t i = 1; i < argv.size(); ++i) {
      d.add_argv(argv[i]);
    }
  }
  for (const ArgCheck& c : checks) {
    podgate::common::v1::ContainerCheck* check = d.add_checks();
    check->set_arg_index(static_cast<uint32_t>(c.index + prepend.size()));
    if (c.type->kind == ValueType::Kind::kPath) {
      check->set_kind(podgate::common::v1::ContainerCheck::KIND_PATH_UNDER);
      for (const std::string& prefix : c.type->prefixes) {
        check->add_prefixes(prefix);
      }
    } else {
      check->set_kind(podgate::common::v1::ContainerCheck::KIND_JVM_PID);
    }
  }
  return d;
}

void CompiledPolicy::AddJvmChecksForAttachTools(const std::vector<std::string>& argv, Decision* d) {
  // Superuser rules have no grammar, yet a JVM attach tool given a pid that is not a JVM
  // kills it (SIGQUIT); so every pid-like argument of one is checked like a `jvm: true` pid.
  static const auto* tools =
      new absl::flat_hash_set<std::string>{"jstack", "jmap", "jcmd", "jinfo"};
  if (!tools->contains(Basename(argv[0]))) {
    return;
  }
  for (size_t i = 1; i < argv.size(); ++i) {
    std::optional<long long> pid = ParseStrictInteger(argv[i]);
    if (pid && *pid > 0) {
      podgate::common::v1::ContainerCheck* check = d->add_checks();
      check->set_kind(podgate::common::v1::ContainerCheck::KIND_JVM_PID);
      check->set_arg_index(static_cast<uint32_t>(i));
    }
  }
}

const Rule* CompiledPolicy::FindRule(const std::string& id) const {
  auto it = by_id_.find(id);
  return it == by_id_.end() ? nullptr : &rules_[it->second];
}

Decision CompiledPolicy::DecideJoin(const AuthorizeRequest& request,
                                    std::vector<std::string>* explanation) const {
  const Principal& principal = request.principal();
  const Target& target = request.target();
  for (size_t i : deny_rules_) {
    const Rule& r = rules_[i];
    if (r.deny.join && ApplicableTo(r, request, explanation)) {
      return Make(false, &r, r.id, absl::StrCat("joining sessions is denied (rule ", r.id, ")"));
    }
  }
  // A `moderate` rule in scope wins over an `observe` one: the answer says the most the user
  // may do, and exec lets them choose less.
  const Rule* observe = nullptr;
  for (size_t i : join_rules_) {
    const Rule& r = rules_[i];
    if (!ApplicableTo(r, request, explanation)) {
      continue;
    }
    if (r.join_moderate) {
      Decision d =
          Make(true, &r, r.id, absl::StrCat("joining as a moderator is allowed (rule ", r.id, ")"));
      d.set_moderator(true);
      return d;
    }
    if (observe == nullptr) {
      observe = &r;
    }
  }
  if (observe != nullptr) {
    return Make(true, observe, observe->id,
                absl::StrCat("watching is allowed (rule ", observe->id, ")"));
  }
  return Make(false, nullptr, kDefaultDenyRule,
              absl::StrCat("no rule lets ", principal.user(), " join sessions on ", Where(target)));
}

bool CompiledPolicy::ApplicableTo(const Rule& rule, const AuthorizeRequest& request,
                                  std::vector<std::string>* explanation) const {
  if (!rule.AppliesToSubject(request.principal())) {
    if (explanation != nullptr) {
      explanation->push_back(absl::StrCat("rule ", rule.id, ": user ", request.principal().user(),
                                          " and their groups are not subjects"));
    }
    return false;
  }
  if (auto why = rule.TargetMismatch(request.target())) {
    if (explanation != nullptr) {
      explanation->push_back(absl::StrCat("rule ", rule.id, ": ", *why));
    }
    return false;
  }
  return true;
}

Decision CompiledPolicy::Evaluate(const AuthorizeRequest& request,
                                  std::vector<std::string>* explanation) const {
  Decision d = Decide(request, explanation);
  if (d.verdict() != podgate::common::v1::VERDICT_ALLOW) {
    // What helps the user recover: the deciding rule's own words and whom to ask.
    const Rule* rule = FindRule(d.rule());
    if (rule != nullptr) {
      d.set_rule_description(rule->description);
    }
    const Contact* own = rule != nullptr ? &rule->contact : nullptr;
    d.set_contact(own != nullptr && !own->contact.empty() ? own->contact : contact_.contact);
    d.set_request_url(own != nullptr && !own->request_url.empty() ? own->request_url
                                                                  : contact_.request_url);
  }
  if (explanation != nullptr) {
    explanation->push_back(absl::StrCat(
        "decision: ", d.verdict() == podgate::common::v1::VERDICT_ALLOW ? "allow" : "deny", " by ",
        d.rule(), ": ", d.reason()));
  }
  return d;
}

Decision CompiledPolicy::Decide(const AuthorizeRequest& request,
                                std::vector<std::string>* explanation) const {
  const Principal& principal = request.principal();
  const Target& target = request.target();
  if (principal.user().empty()) {
    return Make(false, nullptr, kInvalidRequestRule, "the request names no user");
  }
  if (target.namespace_().empty() || target.pod().empty()) {
    return Make(false, nullptr, kInvalidRequestRule, "the request names no namespace or pod");
  }
  if (request.action_case() == AuthorizeRequest::kJoin) {
    return DecideJoin(request, explanation);
  }
  const bool shell = request.action_case() == AuthorizeRequest::kShell;
  if (!shell && request.action_case() != AuthorizeRequest::kCommand) {
    return Make(false, nullptr, kInvalidRequestRule, "the request names no action");
  }
  // Refuse a huge argv by its count before copying a single element.
  if (!shell && static_cast<size_t>(request.command().argv_size()) > kMaxArgc) {
    return Make(false, nullptr, kArgvCheckRule,
                absl::StrCat("the command has ", request.command().argv_size(),
                             " arguments (the limit is ", kMaxArgc, ")"));
  }
  const std::vector<std::string> argv =
      shell ? std::vector<std::string>{}
            : std::vector<std::string>(request.command().argv().begin(),
                                       request.command().argv().end());
  if (!shell) {
    if (auto bad = CheckArgv(argv)) {
      return Make(false, nullptr, kArgvCheckRule, *bad);
    }
  }
  const std::string program = shell ? "" : argv[0];
  const std::string base = shell ? "" : Basename(program);
  const std::string stripped = StripVersionSuffix(base);

  // 2. Explicit denials win over everything.
  for (size_t i : deny_rules_) {
    const Rule& r = rules_[i];
    if (shell) {
      if (!r.deny.shell || !ApplicableTo(r, request, explanation)) {
        continue;
      }
      return Make(false, &r, r.id, absl::StrCat("shells are denied (rule ", r.id, ")"));
    }
    if (r.deny.programs.empty() && r.deny.classes.empty()) {
      continue;
    }
    if (!r.deny.MatchesProgram(program, base, stripped)) {
      continue;
    }
    if (!ApplicableTo(r, request, explanation)) {
      continue;
    }
    if (!r.deny.HasArgumentConditions()) {
      return Make(false, &r, r.id, absl::StrCat(base, " is denied (rule ", r.id, ")"));
    }
    if (std::optional<std::string> arg = r.deny.DeniedArgument(argv)) {
      return Make(
          false, &r, r.id,
          absl::StrCat("argument ", Quote(*arg), " is denied for ", base, " (rule ", r.id, ")"));
    }
    if (explanation != nullptr) {
      explanation->push_back(absl::StrCat("rule ", r.id, ": no denied argument present"));
    }
  }

  if (shell) {
    for (size_t i : shell_rules_) {
      const Rule& r = rules_[i];
      if (ApplicableTo(r, request, explanation)) {
        Decision d = Make(true, &r, r.id,
                          absl::StrCat(r.moderated ? "a moderated shell is allowed (rule "
                                                   : "a shell is allowed (rule ",
                                       r.id, ")"));
        d.set_moderator_required(r.moderated);
        return d;
      }
    }
    return Make(
        false, nullptr, kDefaultDenyRule,
        absl::StrCat("no rule allows a shell for ", principal.user(), " on ", Where(target)));
  }

  // argv[0] is matched exactly: a relative path, a backslash escape or a path form no rule
  // lists never reaches a grammar.
  if (program.find('\\') != std::string::npos) {
    return Make(false, nullptr, kDefaultDenyRule,
                absl::StrCat("program ", Quote(program), " contains a backslash"));
  }
  if (program.find('/') != std::string::npos && program[0] != '/') {
    return Make(
        false, nullptr, kDefaultDenyRule,
        absl::StrCat("program ", Quote(program), " is a relative path; name the program exactly"));
  }
  if (program[0] == '-') {
    return Make(false, nullptr, kDefaultDenyRule,
                absl::StrCat("program ", Quote(program), " starts with '-'"));
  }

  for (size_t i : superuser_rules_) {
    const Rule& r = rules_[i];
    if (!ApplicableTo(r, request, explanation)) {
      continue;
    }
    if (!r.allow_program_runners && InProgramClass(ProgramClass::kProgramRunners, base, stripped)) {
      // A superuser rule is not a shell: programs that run other programs stay out unless the
      // rule says otherwise. Command rules below may still allow this one with a grammar.
      if (explanation != nullptr) {
        explanation->push_back(absl::StrCat("rule ", r.id, ": ", base,
                                            " runs other programs, which superuser rules do "
                                            "not allow"));
      }
      if (!command_rules_.contains(program)) {
        return Make(false, &r, r.id,
                    absl::StrCat(base,
                                 " runs other programs or code (a shell, an interpreter or a "
                                 "wrapper), which superuser rule ",
                                 r.id, " does not allow"));
      }
      continue;
    }
    Decision d = Make(true, &r, r.id,
                      absl::StrCat(principal.user(), " is a superuser here (rule ", r.id, ")"));
    AddJvmChecksForAttachTools(argv, &d);
    return d;
  }

  const Rule* closest = nullptr;
  std::string complaint;
  if (auto it = command_rules_.find(program); it != command_rules_.end()) {
    for (size_t i : it->second) {
      const Rule& r = rules_[i];
      if (!ApplicableTo(r, request, explanation)) {
        continue;
      }
      std::vector<ArgCheck> checks;
      std::optional<std::string> bad = r.grammar.Match(argv, &checks);
      if (!bad) {
        if (explanation != nullptr) {
          explanation->push_back(absl::StrCat("rule ", r.id, ": the grammar accepts the argv"));
        }
        return MakeCommandAllow(r, argv, checks,
                                absl::StrCat(r.grammar.program, " is allowed (rule ", r.id, ")"));
      }
      if (explanation != nullptr) {
        explanation->push_back(absl::StrCat("rule ", r.id, ": ", *bad));
      }
      if (closest == nullptr) {
        closest = &r;
        complaint = *bad;
      }
    }
  }
  if (closest != nullptr) {
    return Make(false, closest, closest->id, absl::StrCat(complaint, " (rule ", closest->id, ")"));
  }
  if (program[0] == '/' && command_rules_.contains(base)) {
    return Make(false, nullptr, kDefaultDenyRule,
                absl::StrCat("program ", Quote(program), " is a path no rule lists; run ", base,
                             " by name"));
  }
  return Make(false, nullptr, kDefaultDenyRule,
              absl::StrCat("no rule allows ", Quote(program), " for ", principal.user(), " on ",
                           Where(target)));
}

podgate::policy::v1::ListAllowedResponse CompiledPolicy::ListAllowed(
    const podgate::policy::v1::ListAllowedRequest& request) const {
  podgate::policy::v1::ListAllowedResponse out;
  out.set_policy_version(version_);
  out.set_contact(contact_.contact);
  out.set_request_url(contact_.request_url);
  AuthorizeRequest probe;
  *probe.mutable_principal() = request.principal();
  *probe.mutable_target() = request.target();
  probe.mutable_shell();
  out.set_shell_allowed(Evaluate(probe).verdict() == podgate::common::v1::VERDICT_ALLOW);
  if (request.principal().user().empty()) {
    return out;
  }
  // An empty container means "any container of the pod", and labels not known yet
  // (ignore_pod_labels) mean "any labels": rules naming containers or selecting pods by label
  // still count when they allow, and never when they deny (a deny for one container or for some
  // pods must not hide what the others allow; exec asks again with the labels unless
  // pod_labels_irrelevant, and decides each command with the resolved container).
  Target any_container = request.target();
  const bool ignore_labels = request.ignore_pod_labels();
  const auto in_scope_as = [&](const Rule& r, bool any_labels_match, bool any_container_match) {
    if (!r.AppliesToSubject(request.principal())) {
      return false;
    }
    const bool any_of_containers =
        any_container_match && request.target().container().empty() && !r.containers.empty();
    const bool any_labels = any_labels_match && !r.pod_labels.empty();
    if (any_of_containers || any_labels) {
      Rule copy_scope;
      copy_scope.clusters = r.clusters;
      copy_scope.namespaces = r.namespaces;
      copy_scope.pods = r.pods;
      if (!any_labels) {
        copy_scope.pod_labels = r.pod_labels;
      }
      if (!any_of_containers) {
        copy_scope.containers = r.containers;
      }
      return !copy_scope.TargetMismatch(any_container).has_value();
    }
    return !r.TargetMismatch(any_container).has_value();
  };
  const auto in_scope = [&](const Rule& r) {
    const bool allows = r.effect == Rule::Effect::kAllow;
    return in_scope_as(r, ignore_labels && allows, allows);
  };
  // Labels matter when a rule that would be in scope whatever they are selects by them.
  bool labels_matter = false;
  for (const Rule& r : rules_) {
    if (!r.pod_labels.empty() && in_scope_as(r, true, true)) {
      labels_matter = true;
      break;
    }
  }
  out.set_pod_labels_irrelevant(!labels_matter);
  if (!out.shell_allowed() && (ignore_labels || request.target().container().empty())) {
    // A shell the labels or the container may allow: a shell rule in scope that way, and no
    // deny of shells that applies whichever they are.
    const bool allowed = std::any_of(shell_rules_.begin(), shell_rules_.end(),
                                     [&](size_t i) { return in_scope(rules_[i]); });
    const bool denied = std::any_of(deny_rules_.begin(), deny_rules_.end(), [&](size_t i) {
      return rules_[i].deny.shell && in_scope(rules_[i]);
    });
    out.set_shell_allowed(allowed && !denied);
  }
  for (size_t i : superuser_rules_) {
    if (in_scope(rules_[i])) {
      out.set_superuser(true);
    }
  }
  for (const Rule& r : rules_) {
    if (r.effect != Rule::Effect::kAllow || r.kind != Rule::Kind::kCommand || !in_scope(r)) {
      continue;
    }
    bool denied_outright = false;
    for (size_t d : deny_rules_) {
      const Rule& deny = rules_[d];
      if (!deny.deny.HasArgumentConditions() && deny.deny.MatchesProgram(r.grammar.program) &&
          in_scope(deny)) {
        denied_outright = true;
      }
    }
    if (denied_outright) {
      continue;
    }
    podgate::policy::v1::AllowedCommand* cmd = out.add_commands();
    cmd->set_rule(r.id);
    cmd->set_program(r.grammar.program);
    cmd->set_usage(r.grammar.Usage());
    cmd->set_description(r.description);
    for (const FlagSpec& f : r.grammar.flags) {
      podgate::policy::v1::FlagHint* hint = cmd->add_flags();
      hint->set_name(f.name);
      hint->set_takes_value(f.value.has_value());
      if (f.value) {
        hint->set_value_type(f.value->Describe());
      }
      hint->set_description(f.description);
    }
    for (const PositionalSpec& p : r.grammar.positionals) {
      if (p.type.kind == ValueType::Kind::kEnum || p.type.kind == ValueType::Kind::kLiteral) {
        for (const std::string& v : p.type.values) {
          cmd->add_subcommands(v);
        }
        break;
      }
    }
    for (const PositionalSpec& p : r.grammar.positionals) {
      podgate::policy::v1::ArgHint* hint = cmd->add_args();
      hint->set_name(p.name);
      hint->set_kind(std::string(KindName(p.type.kind)));
      hint->set_value_type(p.type.Describe());
      if (p.type.kind == ValueType::Kind::kPath) {
        for (const std::string& prefix : p.type.prefixes) {
          hint->add_path_prefixes(prefix);
        }
      }
      hint->set_jvm(p.type.kind == ValueType::Kind::kPid && p.type.jvm);
      hint->set_optional(p.optional);
      hint->set_repeated(p.repeat);
    }
  }
  std::stable_sort(out.mutable_commands()->begin(), out.mutable_commands()->end(),
                   [](const auto& a, const auto& b) {
                     return std::tie(a.program(), a.rule()) < std::tie(b.program(), b.rule());
                   });
  return out;
}

}  // namespace podgate::policy

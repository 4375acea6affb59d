#include "policy/policy_loader.h"

#include <algorithm>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/time.h"
#include "crypto/sha256.h"
#include "http/url.h"
#include "policy/net_address.h"
#include "policy/program_classes.h"
#include "policy/text_checks.h"
#include "yaml-cpp/yaml.h"

namespace podgate::policy {
namespace {

using podgate::policy::v1::SEVERITY_ERROR;
using podgate::policy::v1::SEVERITY_WARNING;

constexpr char kApiVersion[] = "podgate.io/v1";
constexpr char kKind[] = "CommandPolicy";
constexpr long long kMaxPid = 4194304;  // Linux PID_MAX_LIMIT
constexpr size_t kMaxPrependArgs = 16;
constexpr long long kMaxRateCount = 10000;

// Walks the YAML tree, collecting issues instead of stopping at the first one.
class Parser {
 public:
  std::vector<LoadIssue>& issues() { return issues_; }
  bool has_errors() const { return errors_ > 0; }

  void Error(const YAML::Node& at, std::string message) {
    Add(SEVERITY_ERROR, at, std::move(message));
  }
  void Warning(const YAML::Node& at, std::string message) {
    Add(SEVERITY_WARNING, at, std::move(message));
  }

  void ErrorAt(int line, int column, std::string message) {
    LoadIssue issue;
    issue.line = line;
    issue.column = column;
    issue.message = std::move(message);
    issues_.push_back(std::move(issue));
    ++errors_;
  }

  // Refuses keys outside `allowed`, and duplicated keys (yaml-cpp keeps both silently).
  bool CheckKeys(const YAML::Node& map, const std::set<std::string>& allowed,
                 const std::string& where) {
    if (!map.IsMap()) {
      Error(map, absl::StrCat(where, " must be a mapping"));
      return false;
    }
    std::set<std::string> seen;
    for (const auto& kv : map) {
      const std::string key = kv.first.IsScalar() ? kv.first.Scalar() : "";
      if (!allowed.contains(key)) {
        Error(kv.first, absl::StrCat("unknown key '", key, "' in ", where));
      } else if (!seen.insert(key).second) {
        Error(kv.first, absl::StrCat("duplicate key '", key, "' in ", where));
      }
    }
    return true;
  }

  // A name, a glob or a value of a type that holds only ASCII: printable ASCII.
  std::optional<std::string> String(const YAML::Node& node, const std::string& what) {
    return Scalar(node, what, /*text=*/false);
  }

  // Text for people (descriptions, contact) and the values of types that may hold non-ASCII
  // text (path prefixes, enum and literal values, regex patterns): UTF-8 without the characters
  // that are never accepted (DescribeUnsafeCharacter).
  std::optional<std::string> Text(const YAML::Node& node, const std::string& what) {
    return Scalar(node, what, /*text=*/true);
  }

  std::optional<std::string> Scalar(const YAML::Node& node, const std::string& what, bool text) {
    if (!node.IsScalar()) {
      Error(node, absl::StrCat(what, " must be a string"));
      return std::nullopt;
    }
    const std::string& s = node.Scalar();
    if (auto bad = text ? DescribeUnsafeCharacter(s) : DescribeForbiddenCharacter(s)) {
      Error(node, absl::StrCat(what, " contains a ", *bad));
      return std::nullopt;
    }
    return s;
  }

  std::optional<bool> Bool(const YAML::Node& node, const std::string& what) {
    if (node.IsScalar()) {
      const std::string& s = node.Scalar();
      if (s == "true") {
        return true;
      }
      if (s == "false") {
        return false;
      }
    }
    Error(node, absl::StrCat(what, " must be true or false"));
    return std::nullopt;
  }

  std::optional<long long> Integer(const YAML::Node& node, const std::string& what) {
    if (node.IsScalar()) {
      if (auto v = ParseStrictInteger(node.Scalar())) {
        return v;
      }
    }
    Error(node, absl::StrCat(what, " must be a decimal integer"));
    return std::nullopt;
  }

  std::vector<std::string> StringList(const YAML::Node& node, const std::string& what,
                                      bool allow_empty = false, bool text = false) {
    std::vector<std::string> out;
    if (!node.IsSequence()) {
      Error(node, absl::StrCat(what, " must be a list"));
      return out;
    }
    std::set<std::string> seen;
    for (const auto& item : node) {
      if (auto s = Scalar(item, absl::StrCat("an entry of ", what), text)) {
        if (s->empty()) {
          Error(item, absl::StrCat("an entry of ", what, " is empty"));
        } else if (!seen.insert(*s).second) {
          Warning(item, absl::StrCat("'", *s, "' is listed twice in ", what));
        } else {
          out.push_back(*s);
        }
      }
    }
    if (out.empty() && !allow_empty && node.size() == 0) {
      Error(node, absl::StrCat(what, " is empty"));
    }
    return out;
  }

  std::optional<absl::Duration> Duration(const YAML::Node& node, const std::string& what) {
    absl::Duration d;
    if (!node.IsScalar() || !absl::ParseDuration(node.Scalar(), &d) || d <= absl::ZeroDuration() ||
        d > absl::Hours(24)) {
      Error(node,
            absl::StrCat(what, " must be a duration such as 30s or 5m, above 0 and at most 24h"));
      return std::nullopt;
    }
    return d;
  }

 private:
  void Add(podgate::policy::v1::Severity severity, const YAML::Node& at, std::string message) {
    LoadIssue issue;
    issue.severity = severity;
    const YAML::Mark mark = at.Mark();
    if (!mark.is_null()) {
      issue.line = mark.line + 1;
      issue.column = mark.column + 1;
    }
    issue.message = std::move(message);
    issues_.push_back(std::move(issue));
    if (severity == SEVERITY_ERROR) {
      ++errors_;
    }
  }

  std::vector<LoadIssue> issues_;
  int errors_ = 0;
};

// The keys of a value type, shared by flag values and positional arguments.
const std::set<std::string> kTypeKeys = {"type",   "min",     "max",   "schemes", "prefixes",
                                         "values", "pattern", "value", "hosts",   "ports",
                                         "paths",  "glob",    "jvm"};

// The parameters each type takes; every other key of kTypeKeys is refused for it.
const std::set<std::string>& TypeParams(ValueType::Kind kind) {
  using K = ValueType::Kind;
  static const auto* params = new std::map<K, std::set<std::string>>{
      {K::kInteger, {"min", "max"}},
      {K::kPid, {"jvm"}},
      {K::kPort, {}},
      {K::kHostName, {"hosts"}},
      {K::kIp, {"hosts"}},
      {K::kHost, {"hosts"}},
      {K::kUrl, {"schemes", "hosts", "ports", "paths", "glob"}},
      {K::kPath, {"prefixes"}},
      {K::kEnum, {"values"}},
      {K::kRegex, {"pattern"}},
      {K::kLiteral, {"value"}},
  };
  return params->at(kind);
}

// `hosts`: see net::HostList.
void ParseHosts(Parser& p, const YAML::Node& node, ValueType& t) {
  const std::vector<std::string> entries = p.StringList(node, "hosts");
  std::string error;
  std::optional<net::HostList> hosts = net::HostList::Parse(entries, &error);
  if (!hosts) {
    p.Error(node, absl::StrCat("bad hosts: ", error));
    return;
  }
  t.hosts = std::move(*hosts);
}

// `ports`: integers and "low-high" ranges within 1..65535.
void ParsePorts(Parser& p, const YAML::Node& node, ValueType& t) {
  for (const std::string& entry : p.StringList(node, "ports")) {
    const size_t dash = entry.find('-');
    std::optional<long long> lo = ParseStrictInteger(entry.substr(0, dash));
    std::optional<long long> hi =
        dash == std::string::npos ? lo : ParseStrictInteger(entry.substr(dash + 1));
    if (!lo || !hi || *lo < 1 || *hi > 65535 || *lo > *hi) {
      p.Error(node, absl::StrCat("port '", entry,
                                 "' must be a port 1..65535 or a range such as 8080-8090"));
      continue;
    }
    t.ports.emplace_back(static_cast<int>(*lo), static_cast<int>(*hi));
  }
}

// `paths`: globs over the URL path after dot-segment removal, each starting with '/'.
void ParseUrlPaths(Parser& p, const YAML::Node& node, ValueType& t) {
  for (const std::string& glob : p.StringList(node, "paths")) {
    if (glob[0] != '/' || glob.find_first_of("%;?#") != std::string::npos ||
        glob.find("/./") != std::string::npos || glob.find("/../") != std::string::npos) {
      p.Error(node, absl::StrCat("path '", glob,
                                 "' must start with '/' and hold no '%', ';', '?', '#' or dot "
                                 "segments"));
      continue;
    }
    t.paths.push_back(glob);
  }
}

std::optional<ValueType> ParseValueType(Parser& p, const YAML::Node& node, const std::string& what,
                                        const std::set<std::string>& extra_keys) {
  ValueType t;
  // Copy-constructed, never assigned: assigning a YAML::Node writes through to the node it
  // refers to.
  const YAML::Node type_node = node.IsMap() ? node["type"] : node;
  if (node.IsMap()) {
    std::set<std::string> keys = kTypeKeys;
    keys.insert(extra_keys.begin(), extra_keys.end());
    p.CheckKeys(node, keys, what);
    if (!type_node) {
      p.Error(node, absl::StrCat(what, " has no 'type'"));
      return std::nullopt;
    }
  }
  auto name = p.String(type_node, absl::StrCat("the type of ", what));
  if (!name) {
    return std::nullopt;
  }
  const std::optional<ValueType::Kind> kind = KindFromName(*name);
  if (!kind) {
    p.Error(type_node,
            absl::StrCat("unknown type '", *name, "' in ", what, " (", KindNames(), ")"));
    return std::nullopt;
  }
  t.kind = *kind;
  const bool is_map = node.IsMap();
  const auto has = [&](const char* key) { return is_map && static_cast<bool>(node[key]); };
  const auto param = [&](const char* key) { return node[key]; };
  if (is_map) {
    const std::set<std::string>& allowed = TypeParams(t.kind);
    for (const auto& kv : node) {
      const std::string key = kv.first.IsScalar() ? kv.first.Scalar() : "";
      if (key != "type" && kTypeKeys.contains(key) && !allowed.contains(key)) {
        p.Error(kv.first, absl::StrCat("'", key, "' does not apply to type ", *name, " in ", what));
      }
    }
  }
  if (has("hosts") && TypeParams(t.kind).contains("hosts")) {
    ParseHosts(p, param("hosts"), t);
  }
  switch (t.kind) {
    case ValueType::Kind::kInteger: {
      t.min = 0;
      t.max = std::numeric_limits<int32_t>::max();
      if (has("min")) {
        t.min = p.Integer(param("min"), "min").value_or(t.min);
      }
      if (has("max")) {
        t.max = p.Integer(param("max"), "max").value_or(t.max);
      }
      if (t.min > t.max) {
        p.Error(node, absl::StrCat("min ", t.min, " is above max ", t.max, " in ", what));
      }
      break;
    }
    case ValueType::Kind::kPid:
      t.min = 1;
      t.max = kMaxPid;
      if (has("jvm")) {
        t.jvm = p.Bool(param("jvm"), "jvm").value_or(false);
      }
      break;
    case ValueType::Kind::kPort:
      t.min = 1;
      t.max = 65535;
      break;
    case ValueType::Kind::kHostName:
    case ValueType::Kind::kIp:
    case ValueType::Kind::kHost:
      break;
    case ValueType::Kind::kUrl:
      t.schemes = has("schemes") ? p.StringList(param("schemes"), "schemes")
                                 : std::vector<std::string>{"http", "https"};
      for (const std::string& s : t.schemes) {
        if (s == "file") {
          p.Warning(param("schemes"), "scheme 'file' lets a URL read any file in the container");
        }
      }
      if (has("ports")) {
        ParsePorts(p, param("ports"), t);
      }
      if (has("paths")) {
        ParseUrlPaths(p, param("paths"), t);
      }
      if (has("glob")) {
        t.glob = p.Bool(param("glob"), "glob").value_or(false);
      }
      if (!has("hosts")) {
        p.Warning(node.IsMap() ? node : type_node,
                  absl::StrCat(what,
                               " is a url without 'hosts': it may reach any host that is not "
                               "sensitive (every cluster service, the internet); list the hosts "
                               "it may reach"));
      }
      break;
    case ValueType::Kind::kPath: {
      if (!has("prefixes")) {
        p.Error(node.IsMap() ? node : type_node,
                absl::StrCat(what, " of type path needs 'prefixes'"));
        return std::nullopt;
      }
      for (const std::string& prefix :
           p.StringList(param("prefixes"), "prefixes", false, /*text=*/true)) {
        auto norm = NormaliseAbsolutePath(prefix);
        if (!norm || *norm != prefix) {
          p.Error(param("prefixes"),
                  absl::StrCat("prefix '", prefix, "' must be an absolute normalised path"));
        } else {
          t.prefixes.push_back(prefix);
        }
      }
      break;
    }
    case ValueType::Kind::kEnum:
      if (!has("values")) {
        p.Error(node.IsMap() ? node : type_node,
                absl::StrCat(what, " of type enum needs 'values'"));
        return std::nullopt;
      }
      t.values = p.StringList(param("values"), "values", false, /*text=*/true);
      break;
    case ValueType::Kind::kLiteral:
      if (!has("value")) {
        p.Error(node.IsMap() ? node : type_node,
                absl::StrCat(what, " of type literal needs 'value'"));
        return std::nullopt;
      }
      if (auto v = p.Text(param("value"), "value")) {
        t.values = {*v};
      }
      break;
    case ValueType::Kind::kRegex: {
      if (!has("pattern")) {
        p.Error(node.IsMap() ? node : type_node,
                absl::StrCat(what, " of type regex needs 'pattern'"));
        return std::nullopt;
      }
      auto pattern = p.Text(param("pattern"), "pattern");
      if (!pattern) {
        return std::nullopt;
      }
      RE2::Options options;
      options.set_log_errors(false);
      auto re = std::make_shared<const RE2>(*pattern, options);
      if (!re->ok()) {
        p.Error(param("pattern"), absl::StrCat("bad regex '", *pattern, "': ", re->error()));
        return std::nullopt;
      }
      t.regex = std::move(re);
      t.regex_source = *pattern;
      break;
    }
  }
  return t;
}

// The contact and requestUrl keys of `node` (the metadata or a rule), printed with denials: a
// contact is one line of text for people; a request URL is an http(s) URL (http/url.h) the
// page shows as a link.
constexpr size_t kMaxContactBytes = 256;

void ParseContact(Parser& p, const YAML::Node& node, Contact* contact) {
  if (node["contact"]) {
    if (auto text = p.Text(node["contact"], "contact")) {
      if (text->empty() || text->size() > kMaxContactBytes) {
        p.Error(node["contact"],
                absl::StrCat("contact must be 1 to ", kMaxContactBytes, " bytes of text"));
      } else {
        contact->contact = *text;
      }
    }
  }
  if (node["requestUrl"]) {
    if (auto text = p.String(node["requestUrl"], "requestUrl")) {
      absl::StatusOr<http::HttpUrl> url = http::ParseHttpUrl(*text);
      if (!url.ok()) {
        p.Error(node["requestUrl"], absl::StrCat("requestUrl: ", url.status().message()));
      } else {
        contact->request_url = *text;
      }
    }
  }
}

bool IsRuleId(const std::string& id) {
  if (id.empty() || id.size() > 63) {
    return false;
  }
  for (char c : id) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_')) {
      return false;
    }
  }
  return id[0] != '-';
}

bool IsProgramName(const std::string& name) {
  return !name.empty() && name[0] != '-' && name.find('/') == std::string::npos &&
         name.find('\\') == std::string::npos && name.find(' ') == std::string::npos &&
         name != "." && name != "..";
}

struct Defaults {
  std::optional<absl::Duration> time_limit;
  int64_t output_limit_bytes = 0;
  bool output_keep_end = false;
};

// exec holds a kept end in memory until the command ends: at most this much.
constexpr int64_t kMaxKeepEndBytes = 8 << 20;

void ParseLimits(Parser& p, const YAML::Node& node, std::optional<absl::Duration>* time_limit,
                 int64_t* output_limit_bytes, bool* output_keep_end, const std::string& where) {
  p.CheckKeys(node, {"timeLimit", "outputLimitBytes", "outputKeep"}, where);
  if (!node.IsMap()) {
    return;
  }
  if (node["timeLimit"]) {
    if (auto d = p.Duration(node["timeLimit"], "timeLimit")) {
      *time_limit = d;
    }
  }
  if (node["outputLimitBytes"]) {
    if (auto v = p.Integer(node["outputLimitBytes"], "outputLimitBytes")) {
      if (*v < 1 || *v > (int64_t{1} << 34)) {
        p.Error(node["outputLimitBytes"], "outputLimitBytes must be between 1 and 17179869184");
      } else {
        *output_limit_bytes = *v;
      }
    }
  }
  if (node["outputKeep"]) {
    const std::string keep = p.String(node["outputKeep"], "outputKeep").value_or("");
    if (keep == "start" || keep == "end") {
      *output_keep_end = keep == "end";
    } else {
      p.Error(node["outputKeep"], "outputKeep must be start or end");
    }
  }
  if (*output_keep_end && *output_limit_bytes > kMaxKeepEndBytes) {
    p.Error(node, absl::StrCat("outputKeep: end holds the output in exec until the command ends: ",
                               "outputLimitBytes must be at most ", kMaxKeepEndBytes, " with it (",
                               where, ")"));
  }
}

void ParseGrammar(Parser& p, const YAML::Node& node, Rule& rule) {
  const std::string where = absl::StrCat("the command of rule ", rule.id);
  if (!p.CheckKeys(node, {"program", "paths", "flags", "args", "doubleDash", "prependArgs"},
                   where)) {
    return;
  }
  Grammar& g = rule.grammar;
  if (!node["program"]) {
    p.Error(node, absl::StrCat(where, " has no 'program'"));
    return;
  }
  if (auto program = p.String(node["program"], "program")) {
    if (!IsProgramName(*program)) {
      p.Error(node["program"], absl::StrCat("program '", *program,
                                            "' must be a bare name (no '/', '\\', spaces or "
                                            "leading '-'); list absolute forms under 'paths'"));
    }
    g.program = *program;
  }
  if (node["paths"]) {
    for (const std::string& path : p.StringList(node["paths"], "paths")) {
      auto norm = NormaliseAbsolutePath(path);
      if (!norm || *norm != path) {
        p.Error(node["paths"], absl::StrCat("path '", path, "' must be absolute and normalised"));
      } else if (path.substr(path.rfind('/') + 1) != g.program) {
        p.Error(node["paths"],
                absl::StrCat("path '", path, "' does not end in the program name ", g.program));
      } else {
        g.program_paths.push_back(path);
      }
    }
  }
  if (node["doubleDash"]) {
    g.double_dash = p.Bool(node["doubleDash"], "doubleDash").value_or(false);
  }
  if (node["prependArgs"]) {
    const YAML::Node list = node["prependArgs"];
    if (!list.IsSequence() || list.size() == 0 || list.size() > kMaxPrependArgs) {
      p.Error(list,
              absl::StrCat("prependArgs must be a list of 1 to ", kMaxPrependArgs, " arguments"));
    } else {
      for (const auto& item : list) {
        // Not StringList: a fixed argument may repeat ("-H", ..., "-H", ...).
        if (auto a = p.String(item, "an entry of prependArgs")) {
          if (a->empty() || a->size() > kMaxArgBytes) {
            p.Error(item, "an entry of prependArgs must be 1 to 4096 printable ASCII bytes");
          } else {
            g.prepend_args.push_back(*a);
          }
        }
      }
    }
  }
  if (node["flags"]) {
    if (!node["flags"].IsSequence()) {
      p.Error(node["flags"], "flags must be a list");
    } else {
      for (const auto& f : node["flags"]) {
        FlagSpec spec;
        const std::string fwhere = absl::StrCat("a flag of rule ", rule.id);
        if (f.IsScalar()) {
          spec.name = p.String(f, "a flag").value_or("");
        } else if (p.CheckKeys(f, {"name", "value", "required", "repeatable", "description"},
                               fwhere)) {
          if (!f["name"]) {
            p.Error(f, absl::StrCat(fwhere, " has no 'name'"));
            continue;
          }
          spec.name = p.String(f["name"], "name").value_or("");
          if (f["value"]) {
            spec.value =
                ParseValueType(p, f["value"], absl::StrCat("the value of flag ", spec.name), {});
          }
          if (f["required"]) {
            spec.required = p.Bool(f["required"], "required").value_or(false);
          }
          if (f["repeatable"]) {
            spec.repeatable = p.Bool(f["repeatable"], "repeatable").value_or(false);
          }
          if (f["description"]) {
            spec.description = p.Text(f["description"], "description").value_or("");
          }
        } else {
          continue;
        }
        if (spec.name.size() < 2 || spec.name[0] != '-' || spec.name == "--" ||
            spec.name.find(' ') != std::string::npos || spec.name.find('=') != std::string::npos) {
          p.Error(f, absl::StrCat("flag '", spec.name,
                                  "' must start with '-', be longer than one character and "
                                  "contain no '=' or space"));
          continue;
        }
        if (g.flag_index.contains(spec.name)) {
          p.Error(f, absl::StrCat("conflicting: flag ", spec.name, " is listed twice in rule ",
                                  rule.id));
          continue;
        }
        g.flag_index[spec.name] = g.flags.size();
        g.flags.push_back(std::move(spec));
      }
    }
  }
  if (node["args"]) {
    if (!node["args"].IsSequence()) {
      p.Error(node["args"], "args must be a list");
      return;
    }
    bool saw_optional = false;
    bool saw_repeat = false;
    for (const auto& a : node["args"]) {
      PositionalSpec spec;
      const std::string awhere = absl::StrCat("an argument of rule ", rule.id);
      if (!a.IsMap()) {
        p.Error(a, absl::StrCat(awhere, " must be a mapping with 'name' and 'type'"));
        continue;
      }
      if (saw_repeat) {
        p.Error(a, absl::StrCat("unreachable: an argument after a repeated one in rule ", rule.id));
      }
      spec.name = a["name"] ? p.String(a["name"], "name").value_or("arg") : "arg";
      auto type = ParseValueType(p, a, awhere, {"name", "optional", "repeat", "maxCount"});
      if (!type) {
        continue;
      }
      spec.type = std::move(*type);
      if (a["optional"]) {
        spec.optional = p.Bool(a["optional"], "optional").value_or(false);
      }
      if (a["repeat"]) {
        spec.repeat = p.Bool(a["repeat"], "repeat").value_or(false);
      }
      spec.max_count = spec.repeat ? 16 : 1;
      if (a["maxCount"]) {
        if (!spec.repeat) {
          p.Error(a["maxCount"], "maxCount needs repeat: true");
        }
        auto v = p.Integer(a["maxCount"], "maxCount");
        if (v && (*v < 1 || *v > static_cast<long long>(kMaxArgc))) {
          p.Error(a["maxCount"], absl::StrCat("maxCount must be between 1 and ", kMaxArgc));
        } else if (v) {
          spec.max_count = static_cast<int>(*v);
        }
      }
      if (saw_optional && !spec.optional) {
        p.Error(a, absl::StrCat("a required argument after an optional one is ambiguous in rule ",
                                rule.id));
      }
      saw_optional = saw_optional || spec.optional;
      saw_repeat = saw_repeat || spec.repeat;
      g.positionals.push_back(std::move(spec));
    }
  }
}

// One entry of a deny rule's `options`: "--output", "-o" or "-dump" (docs/policy.md).
std::optional<DeniedOption> ParseDeniedOption(const std::string& text) {
  const auto word_char = [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_' || c == '.' || c == ':';
  };
  DeniedOption o;
  o.source = text;
  if (text.size() >= 3 && text.rfind("--", 0) == 0) {
    o.form = DeniedOption::Form::kLong;
    o.name = text.substr(2);
  } else if (text.size() == 2 && text[0] == '-' && text[1] != '-') {
    o.form = DeniedOption::Form::kShort;
    o.name = text.substr(1);
  } else if (text.size() > 2 && text[0] == '-' && text[1] != '-') {
    o.form = DeniedOption::Form::kSingleDashLong;
    o.name = text.substr(1);
  } else {
    return std::nullopt;
  }
  if (o.name.empty() || o.name[0] == '-' || !std::all_of(o.name.begin(), o.name.end(), word_char)) {
    return std::nullopt;
  }
  return o;
}

void ParseDeny(Parser& p, const YAML::Node& node, Rule& rule) {
  const std::string where = absl::StrCat("the deny of rule ", rule.id);
  if (!p.CheckKeys(node, {"programs", "classes", "anyArg", "options", "joinArgs", "shell", "join"},
                   where)) {
    return;
  }
  if (node["join"]) {
    rule.deny.join = p.Bool(node["join"], "join").value_or(false);
  }
  if (node["shell"]) {
    rule.deny.shell = p.Bool(node["shell"], "shell").value_or(false);
  }
  if (node["programs"]) {
    for (const std::string& program : p.StringList(node["programs"], "programs")) {
      if (!IsProgramName(program)) {
        p.Error(node["programs"], absl::StrCat("program '", program, "' must be a bare name"));
      }
      rule.deny.programs.push_back(program);
    }
  }
  if (node["classes"]) {
    for (const std::string& name : p.StringList(node["classes"], "classes")) {
      if (std::optional<ProgramClass> c = ParseProgramClass(name)) {
        rule.deny.classes.push_back(*c);
      } else {
        p.Error(node["classes"],
                absl::StrCat("unknown program class '", name, "' (known: program-runners)"));
      }
    }
  }
  const bool names_programs = node["programs"] || node["classes"];
  if (node["anyArg"]) {
    if (!names_programs) {
      p.Error(node["anyArg"], "anyArg needs programs or classes");
    }
    if (node["anyArg"].IsSequence()) {
      for (const auto& item : node["anyArg"]) {
        auto pattern = p.Text(item, "an anyArg pattern");
        if (!pattern) {
          continue;
        }
        RE2::Options options;
        options.set_log_errors(false);
        auto re = std::make_shared<const RE2>(*pattern, options);
        if (!re->ok()) {
          p.Error(item, absl::StrCat("bad regex '", *pattern, "': ", re->error()));
          continue;
        }
        rule.deny.any_arg.push_back(std::move(re));
        rule.deny.any_arg_sources.push_back(*pattern);
      }
    } else {
      p.Error(node["anyArg"], "anyArg must be a list of regular expressions");
    }
    if (rule.deny.any_arg.size() > 1) {
      std::string alternation;
      for (const std::string& source : rule.deny.any_arg_sources) {
        absl::StrAppend(&alternation, alternation.empty() ? "" : "|", "(?:", source, ")");
      }
      RE2::Options options;
      options.set_log_errors(false);
      auto re = std::make_shared<const RE2>(alternation, options);
      if (re->ok()) {
        rule.deny.any_arg_union = std::move(re);
      }
    }
  }
  if (node["options"]) {
    if (!names_programs) {
      p.Error(node["options"], "options needs programs or classes");
    }
    for (const std::string& text : p.StringList(node["options"], "options")) {
      if (std::optional<DeniedOption> o = ParseDeniedOption(text)) {
        rule.deny.options.push_back(std::move(*o));
      } else {
        p.Error(node["options"],
                absl::StrCat("option '", text,
                             "' must be --name (long, prefixes match too), -x (one letter, "
                             "matched inside clusters) or -name (one dash, matched as a prefix)"));
      }
    }
  }
  rule.deny.Index();
  if (node["joinArgs"]) {
    rule.deny.join_args = p.Bool(node["joinArgs"], "joinArgs").value_or(false);
    if (rule.deny.join_args && !rule.deny.HasArgumentConditions()) {
      p.Error(node["joinArgs"], "joinArgs needs anyArg or options to match");
    }
  }
  if (rule.deny.programs.empty() && rule.deny.classes.empty() && !rule.deny.shell &&
      !rule.deny.join) {
    p.Error(node, absl::StrCat(
                      where, " denies nothing: give programs, classes, shell: true or join: true"));
  }
}

// `rateLimit: {count: 2, per: 1h, scope: target}`.
void ParseRateLimit(Parser& p, const YAML::Node& node, Rule& rule) {
  const std::string where = absl::StrCat("the rateLimit of rule ", rule.id);
  if (!p.CheckKeys(node, {"count", "per", "scope"}, where)) {
    return;
  }
  RateLimit limit;
  bool ok = true;
  if (!node["count"] || !node["per"]) {
    p.Error(node, absl::StrCat(where, " needs count and per"));
    return;
  }
  if (auto count = p.Integer(node["count"], "count")) {
    if (*count < 1 || *count > kMaxRateCount) {
      p.Error(node["count"], absl::StrCat("count must be between 1 and ", kMaxRateCount));
      ok = false;
    } else {
      limit.count = static_cast<int>(*count);
    }
  } else {
    ok = false;
  }
  if (auto per = p.Duration(node["per"], "per")) {
    limit.per = *per;
  } else {
    ok = false;
  }
  if (node["scope"]) {
    const std::string scope = p.String(node["scope"], "scope").value_or("");
    if (scope == "target") {
      limit.scope = RateLimit::Scope::kTarget;
    } else if (scope == "user") {
      limit.scope = RateLimit::Scope::kUser;
    } else if (scope == "user-target") {
      limit.scope = RateLimit::Scope::kUserTarget;
    } else {
      p.Error(node["scope"], "scope must be target (per pod), user, or user-target");
      ok = false;
    }
  }
  if (ok) {
    rule.rate_limit = limit;
  }
}

void ParseSubjects(Parser& p, const YAML::Node& node, Rule& rule) {
  if (!p.CheckKeys(node, {"users", "groups"}, absl::StrCat("the subjects of rule ", rule.id))) {
    return;
  }
  if (node["users"]) {
    for (const std::string& u : p.StringList(node["users"], "users")) {
      if (u == "*") {
        rule.any_user = true;
      } else {
        rule.users.insert(u);
      }
    }
  }
  if (node["groups"]) {
    for (const std::string& g : p.StringList(node["groups"], "groups")) {
      if (g == "*") {
        p.Error(node["groups"], "groups cannot be '*'; use users: ['*'] for every user");
      }
      rule.groups.insert(g);
    }
  }
  if (!rule.any_user && rule.users.empty() && rule.groups.empty()) {
    p.Error(node, absl::StrCat("rule ", rule.id, " names no users or groups"));
  }
}

// `clusters`: globs over cluster names. The glob syntax is * and ? only, so brackets and braces
// (which other glob dialects read as classes and alternatives) and spaces are refused rather
// than matched literally: `eu-[a-z]*` would otherwise match no cluster and say nothing.
void ParseClusters(Parser& p, const YAML::Node& node, Rule& rule) {
  const std::string what = absl::StrCat("clusters of rule ", rule.id);
  if (node.IsSequence() && node.size() == 0) {
    p.Error(node, absl::StrCat(what,
                               " is empty; leave 'clusters' out for a rule that applies to "
                               "every cluster"));
    return;
  }
  for (const std::string& glob : p.StringList(node, what)) {
    const size_t bad = glob.find_first_of("[]{} \t");
    if (bad != std::string::npos) {
      p.Error(node, absl::StrCat("cluster glob '", glob, "' in rule ", rule.id, " contains ",
                                 glob[bad] == ' ' ? std::string("a space")
                                                  : absl::StrCat("'", glob.substr(bad, 1), "'"),
                                 ": clusters are globs with * and ? only"));
      continue;
    }
    rule.clusters.push_back(glob);
  }
}

void ParseTargets(Parser& p, const YAML::Node& node, Rule& rule) {
  if (!p.CheckKeys(node, {"clusters", "namespaces", "pods", "podLabels", "containers"},
                   absl::StrCat("the targets of rule ", rule.id))) {
    return;
  }
  if (node["clusters"]) {
    ParseClusters(p, node["clusters"], rule);
  }
  if (!node["namespaces"]) {
    p.Error(node, absl::StrCat("the targets of rule ", rule.id, " need 'namespaces'"));
  } else {
    rule.namespaces = p.StringList(node["namespaces"], "namespaces");
  }
  if (node["pods"]) {
    rule.pods = p.StringList(node["pods"], "pods");
  }
  if (node["containers"]) {
    rule.containers = p.StringList(node["containers"], "containers");
  }
  if (node["podLabels"]) {
    if (!node["podLabels"].IsMap()) {
      p.Error(node["podLabels"], "podLabels must be a mapping of label to value");
    } else {
      for (const auto& kv : node["podLabels"]) {
        auto k = p.String(kv.first, "a label name");
        auto v = p.String(kv.second, "a label value");
        if (k && v) {
          rule.pod_labels[*k] = *v;
        }
      }
    }
  }
}

template <typename T>
bool Subset(const std::vector<T>& a, const std::vector<T>& b) {
  for (const T& x : a) {
    if (std::find(b.begin(), b.end(), x) == b.end()) {
      return false;
    }
  }
  return true;
}

// Whether every (principal, target) that `inner` applies to is also covered by `outer`.
bool ScopeCovers(const Rule& outer, const Rule& inner) {
  if (!outer.any_user) {
    if (inner.any_user) {
      return false;
    }
    for (const std::string& u : inner.users) {
      if (!outer.users.contains(u)) {
        return false;
      }
    }
    for (const std::string& g : inner.groups) {
      if (!outer.groups.contains(g)) {
        return false;
      }
    }
  }
  // A rule without clusters applies in every cluster (and to requests naming none); one with
  // clusters only where a glob matches, so it covers only rules listing a subset of them.
  if (!outer.clusters.empty() &&
      (inner.clusters.empty() || !Subset(inner.clusters, outer.clusters))) {
    return false;
  }
  const bool all_ns =
      std::find(outer.namespaces.begin(), outer.namespaces.end(), "*") != outer.namespaces.end();
  if (!all_ns && !Subset(inner.namespaces, outer.namespaces)) {
    return false;
  }
  if (!outer.pods.empty() && (inner.pods.empty() || !Subset(inner.pods, outer.pods))) {
    return false;
  }
  if (!outer.containers.empty() &&
      (inner.containers.empty() || !Subset(inner.containers, outer.containers))) {
    return false;
  }
  for (const auto& [k, v] : outer.pod_labels) {
    auto it = inner.pod_labels.find(k);
    if (it == inner.pod_labels.end() || it->second != v) {
      return false;
    }
  }
  return true;
}

bool SameScope(const Rule& a, const Rule& b) { return ScopeCovers(a, b) && ScopeCovers(b, a); }

}  // namespace

std::string LoadIssue::ToString() const {
  return absl::StrCat(line, ":", column, ": ",
                      severity == SEVERITY_WARNING ? "warning: " : "error: ", message);
}

std::string LoadResult::FirstError() const {
  for (const LoadIssue& issue : issues) {
    if (issue.severity == SEVERITY_ERROR) {
      return absl::StrCat(issue.line, ":", issue.column, ": ", issue.message);
    }
  }
  return "";
}

std::string DocumentVersion(std::string_view document) { return crypto::Sha256Hex(document); }

LoadResult LoadPolicy(std::string_view document, std::string source) {
  LoadResult result;
  result.version = DocumentVersion(document);
  Parser p;
  const auto fail = [&](int line, int column, std::string message) {
    LoadIssue issue;
    issue.line = line;
    issue.column = column;
    issue.message = std::move(message);
    result.issues.push_back(std::move(issue));
    return result;
  };
  if (document.size() > kMaxDocumentBytes) {
    return fail(0, 0,
                absl::StrCat("the document is ", document.size(), " bytes long (the limit is ",
                             kMaxDocumentBytes, ")"));
  }
  YAML::Node root;
  try {
    root = YAML::Load(std::string(document));
  } catch (const YAML::Exception& e) {
    return fail(e.mark.is_null() ? 0 : e.mark.line + 1, e.mark.is_null() ? 0 : e.mark.column + 1,
                absl::StrCat("YAML syntax: ", e.msg));
  }
  try {
    if (!root || root.IsNull()) {
      return fail(1, 1, "the document is empty");
    }
    if (!p.CheckKeys(root, {"apiVersion", "kind", "metadata", "defaults", "rules"},
                     "the document")) {
      result.issues = std::move(p.issues());
      return result;
    }
    if (!root["apiVersion"] || root["apiVersion"].Scalar() != kApiVersion) {
      p.Error(root["apiVersion"] ? root["apiVersion"] : root,
              absl::StrCat("apiVersion must be ", kApiVersion));
    }
    if (!root["kind"] || root["kind"].Scalar() != kKind) {
      p.Error(root["kind"] ? root["kind"] : root, absl::StrCat("kind must be ", kKind));
    }
    Contact contact;
    if (root["metadata"]) {
      if (p.CheckKeys(root["metadata"], {"name", "description", "contact", "requestUrl"},
                      "metadata")) {
        ParseContact(p, root["metadata"], &contact);
      }
    }
    Defaults defaults;
    if (root["defaults"]) {
      ParseLimits(p, root["defaults"], &defaults.time_limit, &defaults.output_limit_bytes,
                  &defaults.output_keep_end, "defaults");
    }
    std::vector<Rule> rules;
    std::map<std::string, int> ids;
    if (!root["rules"] || !root["rules"].IsSequence()) {
      p.Error(root["rules"] ? root["rules"] : root, "rules must be a list");
    } else {
      for (const auto& node : root["rules"]) {
        Rule rule;
        rule.line = node.Mark().line + 1;
        if (!p.CheckKeys(node,
                         {"id", "description", "effect", "subjects", "targets", "command", "shell",
                          "superuser", "join", "moderated", "deny", "limits", "allowRoot",
                          "rateLimit", "allowProgramRunners", "contact", "requestUrl"},
                         "a rule")) {
          continue;
        }
        if (!node["id"]) {
          p.Error(node, "a rule has no 'id'");
        } else {
          rule.id = p.String(node["id"], "id").value_or("");
          if (!IsRuleId(rule.id) || rule.id == kDefaultDenyRule || rule.id == kArgvCheckRule ||
              rule.id == kInvalidRequestRule) {
            p.Error(node["id"], absl::StrCat("rule id '", rule.id,
                                             "' must be lower-case [a-z0-9._-], at most 63 "
                                             "characters, and not a built-in rule name"));
          } else if (auto [it, inserted] = ids.emplace(rule.id, rule.line); !inserted) {
            p.Error(node["id"], absl::StrCat("duplicate rule id '", rule.id, "' (first on line ",
                                             it->second, ")"));
          }
        }
        if (node["description"]) {
          rule.description = p.Text(node["description"], "description").value_or("");
        }
        ParseContact(p, node, &rule.contact);
        const std::string effect =
            node["effect"] ? p.String(node["effect"], "effect").value_or("") : "";
        if (effect == "allow") {
          rule.effect = Rule::Effect::kAllow;
        } else if (effect == "deny") {
          rule.effect = Rule::Effect::kDeny;
        } else {
          p.Error(node["effect"] ? node["effect"] : node,
                  absl::StrCat("rule ", rule.id, ": effect must be allow or deny"));
          continue;
        }
        if (!node["subjects"]) {
          p.Error(node, absl::StrCat("rule ", rule.id, " has no 'subjects'"));
        } else {
          ParseSubjects(p, node["subjects"], rule);
        }
        if (!node["targets"]) {
          p.Error(node, absl::StrCat("rule ", rule.id, " has no 'targets'"));
        } else {
          ParseTargets(p, node["targets"], rule);
        }
        rule.time_limit = defaults.time_limit;
        rule.output_limit_bytes = defaults.output_limit_bytes;
        rule.output_keep_end = defaults.output_keep_end;
        if (node["limits"]) {
          ParseLimits(p, node["limits"], &rule.time_limit, &rule.output_limit_bytes,
                      &rule.output_keep_end, absl::StrCat("the limits of rule ", rule.id));
        }
        if (node["allowRoot"]) {
          rule.allow_root = p.Bool(node["allowRoot"], "allowRoot").value_or(false);
        }
        if (rule.effect == Rule::Effect::kDeny) {
          for (const char* key : {"command", "shell", "superuser", "join", "moderated", "limits",
                                  "allowRoot", "rateLimit", "allowProgramRunners"}) {
            if (node[key]) {
              p.Error(node[key], absl::StrCat("'", key, "' does not apply to deny rule ", rule.id));
            }
          }
          if (!node["deny"]) {
            p.Error(node, absl::StrCat("deny rule ", rule.id, " needs 'deny'"));
          } else {
            ParseDeny(p, node["deny"], rule);
          }
        } else {
          if (node["deny"]) {
            p.Error(node["deny"], absl::StrCat("'deny' does not apply to allow rule ", rule.id));
          }
          const bool shell = node["shell"] && p.Bool(node["shell"], "shell").value_or(false);
          const bool super =
              node["superuser"] && p.Bool(node["superuser"], "superuser").value_or(false);
          std::string join;
          if (node["join"]) {
            join = p.String(node["join"], "join").value_or("");
            if (join != "observe" && join != "moderate") {
              p.Error(node["join"], absl::StrCat("rule ", rule.id,
                                                 ": join must be observe or "
                                                 "moderate, not '",
                                                 join, "'"));
              continue;
            }
          }
          const int kinds = (node["command"] ? 1 : 0) + (shell ? 1 : 0) + (super ? 1 : 0) +
                            (join.empty() ? 0 : 1);
          if (kinds != 1) {
            p.Error(node, absl::StrCat("allow rule ", rule.id,
                                       " needs exactly one of command, shell: true, superuser: "
                                       "true, join: observe|moderate"));
            continue;
          }
          if (node["moderated"]) {
            if (!shell) {
              p.Error(node["moderated"],
                      absl::StrCat("moderated applies only to shell rules (rule ", rule.id, ")"));
            } else {
              rule.moderated = p.Bool(node["moderated"], "moderated").value_or(false);
            }
          }
          if (!join.empty()) {
            rule.kind = Rule::Kind::kJoin;
            rule.join_moderate = join == "moderate";
            for (const char* key : {"limits", "allowRoot"}) {
              if (node[key]) {
                p.Error(node[key],
                        absl::StrCat("'", key, "' does not apply to join rule ", rule.id));
              }
            }
          } else if (shell) {
            rule.kind = Rule::Kind::kShell;
          } else if (super) {
            rule.kind = Rule::Kind::kSuperuser;
          } else {
            rule.kind = Rule::Kind::kCommand;
            ParseGrammar(p, node["command"], rule);
          }
          if (node["allowProgramRunners"]) {
            if (!super) {
              p.Error(node["allowProgramRunners"],
                      absl::StrCat("allowProgramRunners applies only to superuser rules (rule ",
                                   rule.id, ")"));
            } else {
              rule.allow_program_runners =
                  p.Bool(node["allowProgramRunners"], "allowProgramRunners").value_or(false);
            }
          }
          if (node["rateLimit"]) {
            if (rule.kind != Rule::Kind::kCommand) {
              p.Error(node["rateLimit"],
                      absl::StrCat("rateLimit applies only to command rules (rule ", rule.id, ")"));
            } else {
              ParseRateLimit(p, node["rateLimit"], rule);
            }
          }
        }
        // Reachability: an allow rule that an explicit denial fully covers never decides,
        // and one that repeats an earlier rule's program, grammar and scope never decides.
        if (rule.effect == Rule::Effect::kAllow) {
          for (const Rule& earlier : rules) {
            if (earlier.effect == Rule::Effect::kDeny) {
              continue;
            }
            if (earlier.kind == rule.kind && rule.kind == Rule::Kind::kCommand &&
                earlier.grammar.program == rule.grammar.program &&
                earlier.grammar.Usage() == rule.grammar.Usage() && SameScope(earlier, rule)) {
              p.Error(node, absl::StrCat("unreachable: rule ", rule.id, " repeats rule ",
                                         earlier.id, " (same program, grammar and scope)"));
            }
          }
        }
        rules.push_back(std::move(rule));
      }
      // Shadowing by deny rules regardless of order: denials always win.
      for (const Rule& allow : rules) {
        if (allow.effect != Rule::Effect::kAllow || allow.kind == Rule::Kind::kSuperuser) {
          continue;
        }
        for (const Rule& deny : rules) {
          if (deny.effect != Rule::Effect::kDeny || deny.deny.HasArgumentConditions()) {
            continue;
          }
          const bool same_action = allow.kind == Rule::Kind::kShell ? deny.deny.shell
                                   : allow.kind == Rule::Kind::kJoin
                                       ? deny.deny.join
                                       : deny.deny.MatchesProgram(allow.grammar.program);
          if (same_action && ScopeCovers(deny, allow)) {
            p.ErrorAt(allow.line, 1,
                      absl::StrCat("unreachable: rule ", allow.id,
                                   " is always overridden by deny rule ", deny.id));
          }
        }
      }
    }
    result.rule_count = static_cast<int>(rules.size());
    if (!p.has_errors()) {
      result.policy = std::make_shared<const CompiledPolicy>(std::move(rules), result.version,
                                                             std::move(source), contact);
    }
  } catch (const YAML::Exception& e) {
    p.Error(YAML::Node(), absl::StrCat("unexpected document structure: ", e.what()));
  }
  result.issues = std::move(p.issues());
  std::stable_sort(result.issues.begin(), result.issues.end(),
                   [](const LoadIssue& a, const LoadIssue& b) {
                     return std::tie(a.line, a.column) < std::tie(b.line, b.column);
                   });
  return result;
}

}  // namespace podgate::policy

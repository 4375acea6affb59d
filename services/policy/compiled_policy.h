// The policy document model in compiled form, and its evaluator.
//
// A CompiledPolicy is built once per document version by the loader (policy_loader.h) and is
// immutable afterwards, so any number of threads evaluate it without locks. Evaluation order:
//
//  1. Structural checks on the request and the built-in argv checks (sizes, printable ASCII):
//     refused with rule "invalid-request" or "argv-check".
//  2. Deny rules that apply to the principal and target: the first that matches the action
//     denies (programs by name, version-stripped name or class; arguments by regex or by
//     option syntax). Deny rules win over everything, superusers included.
//  3. Superuser rules (commands only): allow any argv[0] that is a bare name or absolute path,
//     except program-runners (program_classes.h) unless the rule allows them.
//  4. Allow rules for argv[0]: the first whose argv grammar accepts the argv allows; the
//     decision carries the argv to run (prependArgs) and the container checks (JVM pids,
//     paths) exec must pass first.
//  5. Otherwise deny: with the closest rule's grammar complaint when a rule for the program
//     applied, else rule "default-deny".
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/time/time.h"
#include "podgate/common/v1/common.pb.h"
#include "podgate/policy/v1/policy.pb.h"
#include "policy/net_address.h"
#include "policy/program_classes.h"
#include "re2/re2.h"

namespace podgate::policy {

// Rule names used by decisions that no document rule made.
inline constexpr char kDefaultDenyRule[] = "default-deny";
inline constexpr char kArgvCheckRule[] = "argv-check";
inline constexpr char kInvalidRequestRule[] = "invalid-request";

// The type of a flag value or a positional argument.
struct ValueType {
  enum class Kind {
    kInteger,
    kPid,
    kPort,
    kHostName,
    kIp,
    kHost,
    kUrl,
    kPath,
    kEnum,
    kRegex,
    kLiteral
  };
  Kind kind = Kind::kLiteral;
  // kInteger bounds (inclusive).
  long long min = 0;
  long long max = 0;
  // kUrl allowed schemes.
  std::vector<std::string> schemes;
  // kUrl, kHost, kHostName, kIp: the hosts that may be reached (`hosts`); without a listing,
  // any host that is not sensitive (net::AdmitsByDefault).
  std::optional<net::HostList> hosts;
  // kUrl: allowed ports as inclusive ranges (`ports`); empty means the scheme's default port.
  std::vector<std::pair<int, int>> ports;
  // kUrl: allowed paths as globs (`paths`); empty means any path.
  std::vector<std::string> paths;
  // kUrl: whether curl's globbing syntax ([] {}) is accepted (`glob: true`).
  bool glob = false;
  // kPid: exec must verify the pid is a JVM in the container (`jvm: true`).
  bool jvm = false;
  // kPath allowed prefixes, normalised.
  std::vector<std::string> prefixes;
  // kEnum values; kLiteral uses values[0].
  std::vector<std::string> values;
  // kRegex, full match.
  std::shared_ptr<const RE2> regex;
  std::string regex_source;

  // Checks `value`; returns why it is refused, or nullopt.
  std::optional<std::string> Check(const std::string& value) const;
  // Whether values of this type may hold non-ASCII text (file names, search strings): paths,
  // enum and literal values (as written in the policy) and regex matches. Numbers, hosts and
  // URLs are ASCII only.
  bool AcceptsNonAscii() const {
    return kind == Kind::kPath || kind == Kind::kEnum || kind == Kind::kLiteral ||
           kind == Kind::kRegex;
  }
  // Whether `host` may be reached under `hosts` (or the default); the refusal names it.
  std::optional<std::string> CheckReach(const net::Host& host) const;
  // "80, 8080-8090".
  std::string DescribePorts() const;
  // e.g. "integer(1..60)", "url(http,https)", "path(/var/log/app)".
  std::string Describe() const;
};

// A kind's name in the policy language (`type: url`) and in ListAllowed's argument hints.
std::string_view KindName(ValueType::Kind kind);
// The kind a policy names, or nullopt for an unknown name.
std::optional<ValueType::Kind> KindFromName(std::string_view name);
// Every kind's name, in declaration order: "integer, pid, ..., literal".
std::string KindNames();

// Where an accepted argv needs a check in the container (podgate::common::v1::ContainerCheck):
// the argv index and the type that asked for it.
struct ArgCheck {
  size_t index = 0;
  const ValueType* type = nullptr;
};

struct FlagSpec {
  // Exactly as typed, e.g. "-c", "--max-time", "-histo:live".
  std::string name;
  std::optional<ValueType> value;
  bool required = false;
  bool repeatable = false;
  std::string description;
};

struct PositionalSpec {
  std::string name;
  ValueType type;
  bool optional = false;
  // Takes every remaining positional (at most max_count of them).
  bool repeat = false;
  int max_count = 1;
};

// What an allow rule lets a principal run: one program with an argv grammar.
struct Grammar {
  std::string program;
  // Absolute forms of argv[0] accepted as the same program, e.g. /usr/bin/curl.
  std::vector<std::string> program_paths;
  std::vector<FlagSpec> flags;
  absl::flat_hash_map<std::string, size_t> flag_index;
  std::vector<PositionalSpec> positionals;
  // Whether "--" ends the flags (only for programs known to honour it).
  bool double_dash = false;
  // Fixed arguments inserted right after argv[0] in the argv exec runs (`prependArgs`), e.g.
  // curl's -q, which curl honours only as its first argument.
  std::vector<std::string> prepend_args;

  // Checks argv (argv[0] already matched); returns the complaint or nullopt when accepted.
  // When accepted and `checks` is non-null, appends the arguments that exec must check in the
  // container (JVM pids, paths), by their index in `argv`.
  std::optional<std::string> Match(const std::vector<std::string>& argv,
                                   std::vector<ArgCheck>* checks = nullptr) const;
  // One-line usage, e.g. "jmap -histo[:live] <pid>".
  std::string Usage() const;
};

// An option a deny rule names, matched the way programs parse options (docs/policy.md):
// "--output" also matches "--output=x" and every prefix a program could take for it ("--out",
// "--o=x"); "-o" matches any short-option cluster that contains 'o' ("-so/tmp/x", "-Kfile");
// "-dump" (one dash, several letters) matches every argument that starts with it
// ("-dump:file=x").
struct DeniedOption {
  enum class Form { kLong, kShort, kSingleDashLong };
  Form form = Form::kShort;
  // "output" for --output, 'o' for -o, "dump" for -dump.
  std::string name;
  std::string source;

  bool Matches(std::string_view arg) const;
};

// What a deny rule refuses.
struct DenyMatcher {
  // The programs denied: argv[0], its basename when argv[0] is a path, or that basename
  // without a version suffix ("python3.11" is python); empty with `shell` only for shell
  // denials.
  std::vector<std::string> programs;
  // Built-in program classes denied (program_classes.h), e.g. program-runners.
  std::vector<ProgramClass> classes;
  // When any of any_arg/options is set, the rule denies only if some argument matches.
  // any_arg: RE2, full match against an argument; any_arg_union is all of them as one
  // alternation, so an argument costs one match however many patterns the rule lists.
  std::vector<std::shared_ptr<const RE2>> any_arg;
  std::vector<std::string> any_arg_sources;
  std::shared_ptr<const RE2> any_arg_union;
  std::vector<DeniedOption> options;
  // `options` indexed for lookups: the letters of short options, long names sorted (a prefix
  // given is found by binary search), one-dash long names. Built by Index().
  std::array<bool, 256> short_letters{};
  std::vector<std::string> long_names;
  std::vector<std::string> single_dash_names;
  // The program joins its arguments with spaces and splits them again on whitespace (jcmd):
  // patterns and options are matched against those words as well.
  bool join_args = false;
  bool shell = false;
  // Refuses joining sessions (JoinAction) in the rule's scope.
  bool join = false;

  bool HasArgumentConditions() const { return !any_arg.empty() || !options.empty(); }
  // Builds the lookup fields from `options`; the loader calls it once.
  void Index();
  // Whether `arg` is one of `options`, as DeniedOption::Matches would say for any of them.
  bool MatchesOption(std::string_view arg) const;
  // Whether the program (argv[0]) is one this matcher names.
  bool MatchesProgram(const std::string& program) const;
  // The same with argv[0]'s basename and its version-stripped form already computed.
  bool MatchesProgram(const std::string& program, std::string_view base,
                      std::string_view stripped) const;
  // The first argument that makes the rule deny, or nullopt.
  std::optional<std::string> DeniedArgument(const std::vector<std::string>& argv) const;
};

// At most `count` allowed decisions of a rule per `per`, counted per pod, per user, or per
// user and pod (`rateLimit`). Enforced by the policy replica that answers (rate_limiter.h).
struct RateLimit {
  enum class Scope { kTarget, kUser, kUserTarget };
  int count = 0;
  absl::Duration per;
  Scope scope = Scope::kTarget;
};

// Whom a user denied a command asks for access: free text (a team, a chat channel, an address)
// and a link to a request form. Either may be empty.
struct Contact {
  std::string contact;
  std::string request_url;
};

struct Rule {
  enum class Effect { kAllow, kDeny };
  // kJoin: may join other users' sessions on the targets (`join: observe|moderate`).
  enum class Kind { kCommand, kShell, kSuperuser, kJoin };
  std::string id;
  std::string description;
  // Overrides the document's contact on this rule's denials, field by field.
  Contact contact;
  Effect effect = Effect::kAllow;
  Kind kind = Kind::kCommand;
  int line = 0;

  // Subjects: "*" in users means every authenticated user.
  absl::flat_hash_set<std::string> users;
  absl::flat_hash_set<std::string> groups;
  bool any_user = false;

  // Targets.
  // Globs over the target's cluster; empty = any cluster. A request without a cluster (from an
  // exec that predates clusters) is outside every rule that names clusters.
  std::vector<std::string> clusters;
  std::vector<std::string> namespaces;            // globs, at least one
  std::vector<std::string> pods;                  // globs; empty = any pod
  std::map<std::string, std::string> pod_labels;  // all must match
  std::vector<std::string> containers;            // globs; empty = any (a request must name it)

  Grammar grammar;   // kCommand allow rules
  DenyMatcher deny;  // deny rules

  std::optional<absl::Duration> time_limit;
  int64_t output_limit_bytes = 0;
  // `outputKeep: end`: the last output_limit_bytes are shown instead of the first.
  bool output_keep_end = false;
  bool allow_root = false;
  // Superuser rules: whether program-runners (shells, interpreters, wrappers) are allowed too.
  bool allow_program_runners = false;
  std::optional<RateLimit> rate_limit;
  // Shell rules: a shell this rule allows starts only with a moderator present (`moderated`).
  bool moderated = false;
  // Join rules: `join: moderate` (else `observe`, watching only).
  bool join_moderate = false;

  bool AppliesToSubject(const podgate::common::v1::Principal& principal) const;
  // Returns why the target is out of scope, or nullopt.
  std::optional<std::string> TargetMismatch(const podgate::common::v1::Target& target) const;
};

class CompiledPolicy {
 public:
  // Rules in document order; `version` is the SHA-256 hex of the document bytes.
  // `contact` (metadata.contact and metadata.requestUrl) goes with every denial.
  CompiledPolicy(std::vector<Rule> rules, std::string version, std::string source,
                 Contact contact = {});

  // A policy with no rules: denies everything. Used before any document is loaded.
  static std::shared_ptr<const CompiledPolicy> Empty(std::string source);

  // Decides; with `explanation` non-null, appends one line per rule considered.
  podgate::common::v1::Decision Evaluate(const podgate::policy::v1::AuthorizeRequest& request,
                                         std::vector<std::string>* explanation = nullptr) const;

  // The commands the principal may run on the target, ordered by program then rule.
  podgate::policy::v1::ListAllowedResponse ListAllowed(
      const podgate::policy::v1::ListAllowedRequest& request) const;

  const std::string& version() const { return version_; }
  const std::string& source() const { return source_; }
  const std::vector<Rule>& rules() const { return rules_; }
  // The rule with this id, or null (built-in rule names included).
  const Rule* FindRule(const std::string& id) const;
  absl::Time loaded_time() const { return loaded_time_; }
  const Contact& contact() const { return contact_; }

 private:
  podgate::common::v1::Decision Decide(const podgate::policy::v1::AuthorizeRequest& request,
                                       std::vector<std::string>* explanation) const;
  // A JoinAction: deny rules with `join`, then `join` rules (moderate before observe).
  podgate::common::v1::Decision DecideJoin(const podgate::policy::v1::AuthorizeRequest& request,
                                           std::vector<std::string>* explanation) const;
  podgate::common::v1::Decision Make(bool allow, const Rule* rule, std::string rule_id,
                                     std::string reason) const;
  // An allow decision of command rule `rule` for `argv`, with the argv to run and its checks.
  podgate::common::v1::Decision MakeCommandAllow(const Rule& rule,
                                                 const std::vector<std::string>& argv,
                                                 const std::vector<ArgCheck>& checks,
                                                 std::string reason) const;
  // Superuser allowances of jstack, jmap, jcmd and jinfo: a JVM check for every pid argument.
  static void AddJvmChecksForAttachTools(const std::vector<std::string>& argv,
                                         podgate::common::v1::Decision* d);
  bool ApplicableTo(const Rule& rule, const podgate::policy::v1::AuthorizeRequest& request,
                    std::vector<std::string>* explanation) const;

  std::vector<Rule> rules_;
  std::string version_;
  std::string source_;
  Contact contact_;
  absl::Time loaded_time_;
  std::vector<size_t> deny_rules_;
  std::vector<size_t> superuser_rules_;
  std::vector<size_t> shell_rules_;
  std::vector<size_t> join_rules_;
  absl::flat_hash_map<std::string, std::vector<size_t>> command_rules_;  // by program
  absl::flat_hash_map<std::string, size_t> by_id_;
};

}  // namespace podgate::policy
